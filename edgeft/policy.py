"""The one policy interface of edgeft, and the registry behind :func:`make_policy`.

Every policy — an analytical baseline, a trained stable-baselines3 model, a user's own — has
stable-baselines3's ``predict`` signature, accepts a single observation or a batch, and acts on
the observation alone (plus the env's static configuration given at construction). So baselines
and agents are interchangeable everywhere, SB3's ``evaluate_policy`` included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgeft.envs.common import config_in_force
from edgeft.envs.family import families, resolve
from edgeft.envs.family import family_of as _family_record


@runtime_checkable
class Policy(Protocol):
    """stable-baselines3's ``predict`` protocol."""

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """Return ``(action, state)`` for one observation or a batch of them."""
        ...


# name -> family -> factory(config, action_mode, **kwargs) -> Policy
_REGISTRY: dict[str, dict[str, Callable[..., Policy]]] = {}
# (name, family) -> relative cost of a decision, per round and device/user
_COSTS: dict[tuple[str, str], float] = {}
# prefix (e.g. "ppo") -> loader(path, env=..., **kwargs) -> Policy
_PREFIXES: dict[str, Callable[..., Policy]] = {}
#: the module whose ``PREFIX_LOADERS`` table holds the trained-model prefixes (``ppo:PATH`` ...);
#: the reference policies come from the modules the family records name (``EnvFamily.policies``).
#: Both are imported on first use, so ``import edgeft`` stays light.
_AGENT_PROVIDER = "edgeft.agents"
_loaded = False
_loaded_families: set[str] = set()


def register_policy(
    name: str, family: str, factory: Callable[..., Policy], *, cost: float = 1.0
) -> None:
    """Register ``factory`` under ``name`` for the env ``family`` (``"fedlora"`` or ``"mec"``).

    Args:
        name: the name :func:`make_policy` accepts.
        family: the env family the policy plays.
        factory: ``factory(config, action_mode=..., **kwargs) -> Policy``.
        cost: rough cost of one decision per round and device/user, relative to the family's
            other policies (1 = the cheapest). The leaderboard starts the costliest episodes
            first; results do not depend on it.
    """
    _REGISTRY.setdefault(name, {})[family] = factory
    _COSTS[(name, family)] = float(cost)


def policy_cost(name: str, family: str) -> float:
    """The ``cost`` ``name`` was registered with for ``family`` (1 for trained models)."""
    _load_providers()
    return _COSTS.get((name, family), 1.0)


def register_policy_prefix(prefix: str, loader: Callable[..., Policy]) -> None:
    """Register a loader for names of the form ``"prefix:path"`` (e.g. ``"ppo:model.zip"``)."""
    _PREFIXES[prefix] = loader


def _load_providers() -> None:
    """Register the reference policies of every family record (``EnvFamily.policies``: a module
    with a ``REFERENCE_POLICIES`` table) and the trained-model prefixes, once; a family
    registered later has its policies added on the next call."""
    global _loaded
    for fam in families():
        if fam.policies is None or fam.name in _loaded_families:
            continue
        for name, (factory, cost) in resolve(fam.policies).REFERENCE_POLICIES.items():
            _REGISTRY.setdefault(name, {}).setdefault(fam.name, factory)
            _COSTS.setdefault((name, fam.name), float(cost))
        _loaded_families.add(fam.name)
    if not _loaded:
        for prefix, loader in resolve(_AGENT_PROVIDER).PREFIX_LOADERS.items():
            _PREFIXES.setdefault(prefix, loader)
        _loaded = True


def family_of(env_or_config: Any) -> str:
    """The env family's name (``"fedlora"`` / ``"mec"``) of an env, vector env or config."""
    return _family_record(env_or_config).name


def list_policies(family: str | None = None) -> list[str]:
    """Names accepted by :func:`make_policy` (for one family, or all)."""
    _load_providers()
    names = [n for n, fams in _REGISTRY.items() if family is None or family in fams]
    return sorted(names) + [f"{p}:PATH" for p in sorted(_PREFIXES)]


def make_policy(
    name: str, env: Any = None, *, config: Any = None, trust_code: bool = False, **kwargs: Any
) -> Policy:
    """Build a policy by name.

    Args:
        name: a registered name (``lyapunov``, ``gs``, ``fp-cccp`` … see :func:`list_policies`)
            or ``"ALGO:path/to/model.zip"`` for a trained stable-baselines3 model.
        env: the env the policy will act in (its config and action mode are read from it).
        config: the env config, when no env is at hand.
        trust_code: for ``"ALGO:path"``: allow a legacy stable-baselines3 zip, whose pickles run
            any code their author put in them when loaded (also ``EDGEFT_TRUST_AGENT_CODE=1``);
            agents in the safe format (``NAME.agent.json``) never need it.
        **kwargs: policy options (e.g. ``action_mode``, ``seed``, ``zeta``).

    Raises:
        ValueError: unknown name (the message lists the env family's policies, and names the
            family a policy of another family belongs to).
    """
    _load_providers()
    if ":" in name:
        prefix, path = name.split(":", 1)
        if prefix not in _PREFIXES:
            raise ValueError(
                f"unknown policy prefix {prefix!r} in {name!r}; known prefixes: "
                f"{sorted(_PREFIXES) or 'none installed'}"
            )
        if trust_code:
            kwargs["trust_code"] = True
        return _PREFIXES[prefix](path, env=env, config=config, **kwargs)
    if env is None and config is None:
        raise ValueError(f"make_policy({name!r}) needs the env (or its config) it will act in")
    source = env if env is not None else config
    family = family_of(source)
    if name not in _REGISTRY or family not in _REGISTRY[name]:
        known = ", ".join(list_policies(family))
        if name in _REGISTRY:
            others = " and ".join(sorted(_REGISTRY[name]))
            raise ValueError(
                f"{name!r} is a policy of the {others} envs, not of the {family} "
                f"envs; {family} policies: {known}"
            )
        raise ValueError(f"unknown policy {name!r}; {family} policies: {known}")
    if config is None:
        config = config_in_force(env)
    if env is not None and "action_mode" not in kwargs:
        kwargs["action_mode"] = config.action_mode
    return _REGISTRY[name][family](config, **kwargs)
