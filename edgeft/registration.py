"""Registration of the edgeft environment ids with Gymnasium."""

from __future__ import annotations

import gymnasium as gym

ENV_IDS = {
    "edgeft/FedLoRAScheduling-v0": {
        "entry_point": "edgeft.envs.fedlora.env:FedLoRASchedulingEnv",
        "vector_entry_point": "edgeft.envs.fedlora.vector:FedLoRAVectorEnv",
    },
    "edgeft/MECOffloading-v0": {
        "entry_point": "edgeft.envs.mec.env:MECOffloadingEnv",
        "vector_entry_point": None,
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
        kwargs = {"id": env_id, "entry_point": spec["entry_point"], "disable_env_checker": True,
                  "order_enforce": False}
        if spec["vector_entry_point"] is not None:
            kwargs["vector_entry_point"] = spec["vector_entry_point"]
        gym.register(**kwargs)
