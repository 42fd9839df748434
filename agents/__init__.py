"""edgeft.agents: stable-baselines3 training and loading for the edgeft envs.

:data:`PREFIX_LOADERS` gives :func:`edgeft.make_policy` its ``ppo:``, ``a2c:``, ``sac:``,
``td3:`` and ``dqn:`` prefixes (``make_policy("ppo:runs/x/model.zip", env)``) without importing
torch; the model is loaded when the policy is made. ``edgeft train`` (``edgeft.train``)
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

#: policy-name prefix (``"ppo"`` in ``"ppo:PATH"``) -> loader(path, env=..., **kwargs)
PREFIX_LOADERS = {algo: partial(load_policy, algo) for algo in ALGOS}

__all__ = ["ALGOS", "PREFIX_LOADERS", "SB3Policy", "load_meta", "load_policy",
           "saved_action_mode", "shipped_models"]
