"""FT reference policies, registered with :func:`edgeft.make_policy` for the "fedlora" family."""

from __future__ import annotations

from functools import partial

from edgeft.baselines.fedlora.policies import (
    AABAPolicy,
    AllInPolicy,
    BudgetProfilePolicy,
    FedLoRAPolicy,
    GreedyPolicy,
    LyapunovPolicy,
    RandomPolicy,
)

from edgeft.policy import register_policy

register_policy("lyapunov", "fedlora", LyapunovPolicy)
register_policy("lyapunov-paper", "fedlora",
                partial(LyapunovPolicy, objective="paper", search="first-decrease"))
register_policy("all-in", "fedlora", AllInPolicy)
register_policy("aaba", "fedlora", AABAPolicy)
register_policy("gs", "fedlora", GreedyPolicy)
register_policy("random", "fedlora", RandomPolicy)
register_policy("gs-profile", "fedlora", BudgetProfilePolicy)

__all__ = [
    "AABAPolicy",
    "AllInPolicy",
    "BudgetProfilePolicy",
    "FedLoRAPolicy",
    "GreedyPolicy",
    "LyapunovPolicy",
    "RandomPolicy",
]
