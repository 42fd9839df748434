"""edgeft.agents: stable-baselines3 training and loading for the edgeft envs.

Importing this package registers the ``ppo:``, ``a2c:``, ``sac:``, ``td3:`` and ``dqn:`` prefixes
with :func:`edgeft.make_policy` (``make_policy("ppo:runs/x/model.zip", env)``) without importing
torch; the model is loaded when the policy is made. ``edgeft train`` (``edgeft.agents.train``)
trains and saves models; shipped models live in ``edgeft/agents/models``.
"""

from __future__ import annotations

from functools import partial

from edgeft.agents.loader import (
    ALGOS,
    SB3Policy,
    load_meta,
    load_policy,
    saved_action_mode,
    shipped_models,
)

from edgeft.policy import register_policy_prefix

for _algo in ALGOS:
    register_policy_prefix(_algo, partial(load_policy, _algo))

__all__ = ["ALGOS", "SB3Policy", "load_meta", "load_policy", "saved_action_mode", "shipped_models"]
