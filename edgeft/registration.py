"""Registration of the edgeft environment ids with Gymnasium."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

#: env id -> entry points, and the family's config class (its module also holds its PRESETS)
ENV_IDS: dict[str, dict[str, str | None]] = {
    "edgeft/FedLoRAScheduling-v0": {
        "config": "edgeft.envs.fedlora.config:FedLoRAConfig",
        "entry_point": "edgeft.envs.fedlora.env:FedLoRASchedulingEnv",
        "vector_entry_point": "edgeft.envs.fedlora.vector:FedLoRAVectorEnv",
    },
    "edgeft/MECOffloading-v0": {
        "config": "edgeft.envs.mec.config:MECConfig",
        "entry_point": "edgeft.envs.mec.env:MECOffloadingEnv",
        "vector_entry_point": "edgeft.envs.mec.vector:MECVectorEnv",
    },
}


def register_envs() -> None:
    """Register every edgeft env id (idempotent).

    Episode length is a config value (``episode_rounds``) and the envs truncate by themselves,
    so no ``TimeLimit`` is added at registration: a keyword override of the length stays in
    one place.
    """
    for env_id, spec in ENV_IDS.items():
        if env_id in gym.registry:
            continue
        # The envs raise on step-before-reset themselves and pass Gymnasium's check_env in the
        # test suite, so the per-step OrderEnforcing / PassiveEnvChecker layers are left out.
        kwargs: dict[str, Any] = {"id": env_id, "entry_point": spec["entry_point"],
                                  "disable_env_checker": True, "order_enforce": False}
        if spec["vector_entry_point"] is not None:
            kwargs["vector_entry_point"] = spec["vector_entry_point"]
        gym.register(**kwargs)


def make_config(env_id: str, config: Mapping[str, Any] | None = None) -> Any:
    """The frozen, validated config ``gym.make(env_id, **config)`` starts from, without making
    the env (the family's defaults, its preset, then ``config``).

    Raises:
        ValueError: an unknown env id, field or preset (the message lists the valid ones).
    """
    from edgeft.envs.common import build_config

    if env_id not in ENV_IDS:
        raise ValueError(f"unknown env {env_id!r}; known: {sorted(ENV_IDS)}")
    module, _, name = str(ENV_IDS[env_id]["config"]).partition(":")
    mod = importlib.import_module(module)
    return build_config(getattr(mod, name), dict(config or {}), getattr(mod, "PRESETS", None))
