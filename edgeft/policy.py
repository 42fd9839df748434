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
# modules that register policies when imported (kept lazy so `import edgeft` stays light)
_PROVIDERS = (
    "edgeft.baselines.fedlora",
    "edgeft.baselines.mec",
    "edgeft.agents",
)
_loaded = False


def register_policy(name: str, family: str, factory: Callable[..., Policy], *,
                    cost: float = 1.0) -> None:
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
    global _loaded
    if _loaded:
        return
    import importlib

    for mod in _PROVIDERS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:  # a family not built yet must not break the others
            if err.name is None or not mod.startswith(err.name):
                raise
    _loaded = True


def family_of(env_or_config: Any) -> str:
    """The env family (``"fedlora"`` / ``"mec"``) of an env, vector env or config."""
    base = getattr(env_or_config, "unwrapped", env_or_config)
    config = config_in_force(base) if hasattr(base, "config") else env_or_config
    family = getattr(config, "family", None)
    if family is None:
        raise TypeError(
            f"cannot tell the env family of {type(env_or_config).__name__}: pass an edgeft env "
            "(from gym.make) or its config"
        )
    return family


def list_policies(family: str | None = None) -> list[str]:
    """Names accepted by :func:`make_policy` (for one family, or all)."""
    _load_providers()
    names = [n for n, fams in _REGISTRY.items() if family is None or family in fams]
    return sorted(names) + [f"{p}:PATH" for p in sorted(_PREFIXES)]


def make_policy(name: str, env: Any = None, *, config: Any = None, **kwargs: Any) -> Policy:
    """Build a policy by name.

    Args:
        name: a registered name (``lyapunov``, ``gs``, ``fp-cccp`` … see :func:`list_policies`)
            or ``"ALGO:path/to/model.zip"`` for a trained stable-baselines3 model.
        env: the env the policy will act in (its config and action mode are read from it).
        config: the env config, when no env is at hand.
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
        return _PREFIXES[prefix](path, env=env, config=config, **kwargs)
    if env is None and config is None:
        raise ValueError(f"make_policy({name!r}) needs the env (or its config) it will act in")
    source = env if env is not None else config
    family = family_of(source)
    if name not in _REGISTRY or family not in _REGISTRY[name]:
        known = ", ".join(list_policies(family))
        if name in _REGISTRY:
            others = " and ".join(sorted(_REGISTRY[name]))
            raise ValueError(f"{name!r} is a policy of the {others} envs, not of the {family} "
                             f"envs; {family} policies: {known}")
        raise ValueError(f"unknown policy {name!r}; {family} policies: {known}")
    if config is None:
        config = config_in_force(env)
    if env is not None and "action_mode" not in kwargs:
        kwargs["action_mode"] = config.action_mode
    return _REGISTRY[name][family](config, **kwargs)
