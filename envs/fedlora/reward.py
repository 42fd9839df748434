"""Reward and constraint cost of one FedLoRA round, from the state and the decision."""

from __future__ import annotations

from typing import Any

import numpy as np
from edgeft.envs.fedlora.config import FedLoRAConfig


def step_reward(
    config: FedLoRAConfig,
    gap: float,
    loss_before,
    loss_after,
    num_scheduled,
    x,
    excess,
    queue_before,
    over_before=0.0,
    over_after=0.0,
):
    """The env's reward (``config.reward``) for one round; scalars or arrays alike.

    "progress-budget": progress_scale x loss drop / initial gap - delay_penalty x
    (over_after - over_before), ``over = max(0, S)`` with S the running sum of (x - 1) (so the
    episode's penalties telescope to delay_penalty x max(0, S_T)); "progress": the same progress
    - delay_penalty x excess, with ``excess = max(0, x - 1)``; the drift-plus-penalty rewards:
    :func:`lyapunov_objective`.
    """
    if config.reward == "progress-budget":
        return config.progress_scale / gap * (loss_before - loss_after) - config.delay_penalty * (
            over_after - over_before
        )
    if config.reward == "progress":
        return (
            config.progress_scale / gap * (loss_before - loss_after) - config.delay_penalty * excess
        )
    variant = "paper" if config.reward == "drift-plus-penalty-paper" else "corrected"
    return lyapunov_objective(num_scheduled, x, queue_before, config.zeta, variant)


def lyapunov_objective(
    num_scheduled: float | np.ndarray,
    x: float | np.ndarray,
    queue: float | np.ndarray,
    zeta: float,
    variant: str = "corrected",
) -> Any:
    """Per-round drift-plus-penalty objective J (FT P1), delay normalised by D-bar.

    - "paper": J = N - zeta q x (P1, with the linear drift bound of Lemma 2).
    - "corrected": J = N - zeta [q x + (x - 1)^2 / 2], the term Lemma 2 drops:
      (1/2)[(q + x - 1)^+^2 - q^2] <= q (x - 1) + (x - 1)^2 / 2 (docs/corrections.md). Constant
      terms omitted.
    ``queue`` is q(t-1), the queue at the start of the round.
    """
    if variant == "paper":
        return num_scheduled - zeta * queue * x
    if variant == "corrected":
        return num_scheduled - zeta * (queue * x + 0.5 * (x - 1.0) ** 2)
    raise ValueError(f"variant must be 'corrected' or 'paper', got {variant!r}")
