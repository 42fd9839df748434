"""One record per env family, and the registry of them.

An :class:`EnvFamily` holds everything the rest of edgeft needs to know about a family of
environments: its env ids and entry points, its config class and presets, what an episode is
reduced to (metrics and per-round curves), the leaderboard's headline and constraint, where its
reference policies and hindsight bound live, the constraint cost's limit, the config fields that
only shape the reward, and the defaults of training-time evaluation and figures. The application
layer (episodes, scoring, suites, leaderboard, figures, ``edgeft train``, agent loading) reads
the record and never branches on a family's name; a new family is one record passed to
:func:`register_family` (``tests/leaderboard/test_family_registry.py`` registers a toy one and
plays it through the leaderboard).

Modules of higher layers (the reference policies, the hindsight bound) are named by their import
path (``"package.module:attribute"`` or a module), resolved by the application layer when it
needs them: the env layer never imports upwards.

The two shipped records are ``edgeft.envs.fedlora.family.FAMILY`` and
``edgeft.envs.mec.family.FAMILY``, registered on the registry's first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

#: relative excess of a time-average constraint above which an episode counts as breaking it
#: (the leaderboard's ✗ and the per-episode Lagrangian's target)
BUDGET_TOLERANCE = 0.01


@dataclass(frozen=True)
class Metric:
    """One per-episode metric: its column title and direction."""

    title: str
    lower_is_better: bool


@dataclass(frozen=True)
class Headline:
    """What a suite ranks policies by (``edgeft.scoring``); a family may offer several (a suite
    names the one it uses, so older suite versions keep theirs).

    Attributes:
        name: the headline's name in its family (what a suite's ``headline`` field says).
        title: column title of the headline value.
        higher_is_better: direction of the headline value.
        constraint: the constraint, in words (shown under the summary table).
        anchor: policy scored 0 (played on the same seeds).
        reference: policy that paired differences are taken from.
        value: the headline value of one episode's metrics.
        breaks_constraint: whether one episode breaks the constraint beyond
            :data:`BUDGET_TOLERANCE`.
        hindsight: ``"module:function"`` of the episode's hindsight bound on this headline
            (``fn(env_id, config, seed) -> HindsightPlan``), or None (no score).
        scenario: env config fields every suite ranking by this headline sets (e.g. the budget
            guard of the final-loss headline); training-time validation sets them too.
    """

    name: str
    title: str
    higher_is_better: bool
    constraint: str
    anchor: str
    reference: str
    value: Callable[[Mapping[str, Any]], float]
    breaks_constraint: Callable[[Mapping[str, Any]], bool]
    hindsight: str | None = None
    scenario: Mapping[str, Any] = field(default_factory=dict)


class EpisodeRecorder(Protocol):
    """Reduces one episode to its metrics (one fresh recorder per episode).

    The episode loop calls :meth:`before_step` with the env before each step, :meth:`after_step`
    with the step's info, and :meth:`metrics` once at the end.
    """

    def before_step(self, env: Any) -> None:
        """Read what the metrics need from the env before the step (e.g. its budgets)."""

    def after_step(self, info: Mapping[str, Any]) -> None:
        """Accumulate one step's info."""

    def metrics(
        self, last_info: Mapping[str, Any], total_reward: float, rounds: int
    ) -> dict[str, float]:
        """The episode's metrics (the keys of :attr:`EnvFamily.metrics`)."""


@dataclass(frozen=True)
class EnvEntry:
    """Gymnasium entry points of one env id (``"module:Class"``)."""

    entry_point: str
    vector_entry_point: str | None = None


@dataclass(frozen=True)
class EnvFamily:
    """Everything the application layer needs to know about one env family.

    Attributes:
        name: the family's name (``config.family``; e.g. ``"fedlora"``).
        env_ids: registered env id -> its entry points.
        config_class: the frozen config dataclass of the family's envs.
        presets: named presets of that config (``preset=...``).
        size_field: the config field that counts the agents of a round (devices, users).
        metrics: per-episode metric name -> :class:`Metric`, in display order.
        curves: per-round curve name -> the info key it reads (in order).
        recorder: a factory of the family's :class:`EpisodeRecorder`.
        headlines: the headlines a suite of the family may rank by, by name.
        default_headline: the name of the one suites use unless they name another (None: suites
            of the family are not scored).
        policies: module whose ``POLICIES`` table holds the reference policies (name ->
            ``(factory, relative decision cost)``), or None.
        cost_limit: the per-step limit of the constraint cost ``info["cost"]``.
        cost_info_keys: info keys a step must carry for constrained RL (``"cost"`` and what
            tells the constraint cost from the objective).
        reward_only_fields: config fields that only shape the training signal: an agent may play
            an env that differs from its training env in these.
        eval_policy: the reference policy ``edgeft train`` validates against by default.
        eval_columns: metrics ``edgeft train``'s validation line shows.
        figure_seeds: seeds per point of ``edgeft figures`` by default.
        plot_metrics: the metrics of the leaderboard's ``plots/metrics.png``.
        plot_curves: per-round curves the leaderboard plots per scenario (mean over seeds).
    """

    name: str
    env_ids: Mapping[str, EnvEntry]
    config_class: type
    presets: Mapping[str, Mapping[str, Any]]
    size_field: str
    metrics: Mapping[str, Metric]
    curves: Mapping[str, str]
    recorder: Callable[[], EpisodeRecorder]
    headlines: Mapping[str, Headline] = field(default_factory=dict)
    default_headline: str | None = None
    policies: str | None = None
    cost_limit: float = 1.0
    cost_info_keys: tuple[str, ...] = ("cost",)
    reward_only_fields: tuple[str, ...] = ()
    eval_policy: str | None = None
    eval_columns: tuple[str, ...] = ()
    figure_seeds: int = 1
    plot_metrics: tuple[str, ...] = ()
    plot_curves: tuple[str, ...] = field(default_factory=tuple)

    @property
    def headline(self) -> Headline | None:
        """The default headline (None for a family without one)."""
        return None if self.default_headline is None else self.headlines[self.default_headline]

    def get_headline(self, name: str | None = None) -> Headline:
        """The headline called ``name`` (None or ``""``: the default).

        Raises:
            ValueError: the family has no such headline (or none at all).
        """
        key = name or self.default_headline
        if key is None or key not in self.headlines:
            raise ValueError(
                f"the {self.name} family has no headline {key!r}; headlines: "
                f"{sorted(self.headlines)}"
            )
        return self.headlines[key]

    def make_config(self, config: Mapping[str, Any] | None = None) -> Any:
        """The validated config from the family's defaults, a preset and ``config``."""
        from edgeft.envs.common import build_config

        return build_config(self.config_class, dict(config or {}), self.presets)


@dataclass(frozen=True)
class HindsightPlan:
    """What a family's hindsight function returns for one episode.

    Attributes:
        bound: the certified bound on the headline value (in its units).
        policy: a policy that replays the feasible schedule found in hindsight.
        action_mode: the action mode ``policy`` plays in.
        gap: the bound's distance to that schedule's headline value, if the bound knows it
            exactly (else the leaderboard computes it from the replayed metrics).
        extra: more fields for the result row (e.g. the bound's own compute time).
    """

    bound: float
    policy: Any
    action_mode: str
    gap: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


_FAMILIES: dict[str, EnvFamily] = {}


def register_family(family: EnvFamily) -> None:
    """Add ``family`` to the registry (a record of the same name is replaced).

    Raises:
        ValueError: one of its env ids belongs to another registered family.
    """
    for other in _FAMILIES.values():
        clash = set(other.env_ids) & set(family.env_ids)
        if other.name != family.name and clash:
            raise ValueError(f"env id(s) {sorted(clash)} already belong to the {other.name} family")
    _FAMILIES[family.name] = family


def unregister_family(name: str) -> None:
    """Remove a family from the registry (no error if absent)."""
    _FAMILIES.pop(name, None)


def families() -> list[EnvFamily]:
    """The registered families, in registration order."""
    _load_shipped()
    return list(_FAMILIES.values())


def get_family(name: str) -> EnvFamily:
    """The record of the family called ``name``.

    Raises:
        ValueError: unknown family (the message lists the known ones).
    """
    _load_shipped()
    if name not in _FAMILIES:
        raise ValueError(f"unknown env family {name!r}; known: {sorted(_FAMILIES)}")
    return _FAMILIES[name]


def family_of_env_id(env_id: str) -> EnvFamily:
    """The family whose record lists ``env_id``.

    Raises:
        ValueError: an env id of no family (the message lists the known ids).
    """
    for fam in families():
        if env_id in fam.env_ids:
            return fam
    known = sorted(i for f in _FAMILIES.values() for i in f.env_ids)
    raise ValueError(f"unknown env {env_id!r}; known: {known}")


def family_of(env_or_config: Any) -> EnvFamily:
    """The family record of an env, vector env or config (read from ``config.family``).

    Raises:
        TypeError: not an edgeft env or config.
    """
    from edgeft.envs.common import config_in_force

    base = getattr(env_or_config, "unwrapped", env_or_config)
    config = config_in_force(base) if hasattr(base, "config") else env_or_config
    name = getattr(config, "family", None)
    if name is None:
        raise TypeError(
            f"cannot tell the env family of {type(env_or_config).__name__}: pass an edgeft env "
            "(from gym.make) or its config"
        )
    return get_family(name)


def make_config(env_id: str, config: Mapping[str, Any] | None = None) -> Any:
    """The frozen, validated config ``gym.make(env_id, **config)`` starts from, without making
    the env (the family's defaults, its preset, then ``config``).

    Raises:
        ValueError: an unknown env id, field or preset (the message lists the valid ones).
    """
    return family_of_env_id(env_id).make_config(config)


def resolve(target: str) -> Any:
    """The object an import path names: ``"package.module:attribute"`` or a module."""
    module, _, name = target.partition(":")
    mod = importlib.import_module(module)
    return getattr(mod, name) if name else mod


#: the modules of the shipped records (each defines ``FAMILY``), registered on first use
_SHIPPED = ("edgeft.envs.fedlora.family", "edgeft.envs.mec.family")


def _load_shipped() -> None:
    for module in _SHIPPED:
        record = importlib.import_module(module).FAMILY
        _FAMILIES.setdefault(record.name, record)
