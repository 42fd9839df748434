"""Registration of the edgeft environment ids with Gymnasium, from the family records
(``edgeft.envs.family``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from edgeft.envs.family import families


def register_envs() -> None:
    """Register the env ids of every registered family (idempotent).

    Episode length is a config value (``episode_rounds``) and the envs truncate by themselves,
    so no ``TimeLimit`` is added at registration: a keyword override of the length stays in
    one place.
    """
    for fam in families():
        for env_id, entry in fam.env_ids.items():
            if env_id in gym.registry:
                continue
            # The envs raise on step-before-reset themselves and pass Gymnasium's check_env in
            # the test suite, so the per-step OrderEnforcing / PassiveEnvChecker layers are left
            # out.
            kwargs: dict[str, Any] = {
                "id": env_id,
                "entry_point": entry.entry_point,
                "disable_env_checker": True,
                "order_enforce": False,
            }
            if entry.vector_entry_point is not None:
                kwargs["vector_entry_point"] = entry.vector_entry_point
            gym.register(**kwargs)
