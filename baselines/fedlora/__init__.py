"""FT reference policies: :data:`REFERENCE_POLICIES` is what :func:`edgeft.make_policy` offers
for the "fedlora" family (the family record names this module)."""

from __future__ import annotations

from functools import partial
from typing import Any

from edgeft.baselines.fedlora.policies import (
    AABAPolicy,
    AllInPolicy,
    BudgetProfilePolicy,
    FedLoRAPolicy,
    GreedyPolicy,
    LyapunovPolicy,
    RandomPolicy,
)
from edgeft.baselines.fedlora.timing import DescendingZetaLyapunov, TunedBudgetProfile

#: name -> (factory(config, action_mode=..., **options), relative cost of a decision)
REFERENCE_POLICIES: dict[str, tuple[Any, float]] = {
    "lyapunov": (LyapunovPolicy, 1.0),
    "lyapunov-paper": (partial(LyapunovPolicy, objective="paper", search="first-decrease"), 1.0),
    "all-in": (AllInPolicy, 1.0),
    "aaba": (AABAPolicy, 1.0),
    "gs": (GreedyPolicy, 1.0),
    "random": (RandomPolicy, 1.0),
    "gs-profile": (TunedBudgetProfile, 1.0),
    "lyapunov-descending": (DescendingZetaLyapunov, 1.0),
}

__all__ = [
    "REFERENCE_POLICIES",
    "AABAPolicy",
    "AllInPolicy",
    "BudgetProfilePolicy",
    "DescendingZetaLyapunov",
    "FedLoRAPolicy",
    "GreedyPolicy",
    "LyapunovPolicy",
    "RandomPolicy",
]
