"""A FedLoRA episode played whole or split by a checkpoint, for the exact-resume tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import edgeft  # noqa: F401  (registers the ids)

ENV_ID = "edgeft/FedLoRAScheduling-v0"


def play(
    config: dict[str, Any],
    path: Path,
    *,
    split_at: int | None,
    steps: int,
    seed: int,
    live_steps: int = 0,
) -> tuple[np.ndarray, Any]:
    """Rows ``[obs, reward, channel gains]`` of ``steps`` sampled actions from ``reset(seed)``,
    and the env's channel object at the end. With ``split_at``: before that step the env saves a
    checkpoint to ``path``, takes ``live_steps`` more steps (so the saved state must not follow
    the live one), and a fresh env, first reset to another episode, loads it and goes on."""
    env = gym.make(ENV_ID, **config)
    env.reset(seed=seed)
    env.action_space.seed(1)
    actions = [env.action_space.sample() for _ in range(steps)]
    rows = []
    for t, a in enumerate(actions):
        if t == split_at:
            env.unwrapped.save_checkpoint(path)
            for _ in range(live_steps):
                env.step(a)
            env = gym.make(ENV_ID, **config)
            env.reset(seed=0)
            env.unwrapped.load_checkpoint(path)
        obs, r, _, _, info = env.step(a)
        rows.append(np.r_[obs, r, info["channel_gain"]])
    return np.array(rows), env.unwrapped._fading
