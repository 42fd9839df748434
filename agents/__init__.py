"""edgeft.agents: stable-baselines3 training and loading for the edgeft envs.

:data:`PREFIX_LOADERS` gives :func:`edgeft.make_policy` its ``ppo:``, ``a2c:``, ``sac:``,
``td3:`` and ``dqn:`` prefixes (``make_policy("ppo:runs/x/model.agent.json", env)``) without
importing torch; the agent is loaded when the policy is made. Agents are stored in the safe agent
format (``edgeft.agents.agent_format``: JSON + safetensors, no pickle); ``edgeft train``
(``edgeft.train``) writes it, :func:`save_for_leaderboard` (``edgeft export``) turns a model
trained with plain stable-baselines3 into it; shipped agents live in ``edgeft/agents/models``.
"""

from __future__ import annotations

from functools import partial

from edgeft.agents.agent_format import TRUST_ENV, UntrustedCodeError
from edgeft.agents.loader import (
    ALGOS,
    SB3Policy,
    load_meta,
    load_policy,
    save_for_leaderboard,
    saved_action_mode,
    shipped_models,
)

#: policy-name prefix (``"ppo"`` in ``"ppo:PATH"``) -> loader(path, env=..., **kwargs)
PREFIX_LOADERS = {algo: partial(load_policy, algo) for algo in ALGOS}

__all__ = [
    "ALGOS",
    "PREFIX_LOADERS",
    "TRUST_ENV",
    "SB3Policy",
    "UntrustedCodeError",
    "load_meta",
    "load_policy",
    "save_for_leaderboard",
    "saved_action_mode",
    "shipped_models",
]
