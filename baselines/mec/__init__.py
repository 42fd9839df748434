"""The MEC paper's reference policies (``fp-cccp``, ``ao``, ``alpha-only``, ``resource-only``,
``greedy``, ``random``), ``greedy-fast`` (greedy with the exact resource rule) and the
drift-plus-penalty policies on the energy budgets (``greedy-dpp``, ``fp-cccp-dpp``):
:data:`REFERENCE_POLICIES` is what :func:`edgeft.make_policy` offers for the ``"mec"`` family
(the family record names this module); the hindsight bound of an episode is in ``hindsight``.

Importing this package does not import cvxpy; the solvers import it when first used.
"""

from __future__ import annotations

from typing import Any

from .policies import POLICIES, MECPolicy


def _factory(cls: type[MECPolicy]) -> Any:
    def make(config: Any, action_mode: str | None = None, **kwargs: Any) -> MECPolicy:
        return cls(config, action_mode=action_mode, **kwargs)

    make.__doc__ = cls.__doc__
    return make


#: name -> (factory(config, action_mode=..., **options), relative cost of a decision)
REFERENCE_POLICIES: dict[str, tuple[Any, float]] = {
    name: (_factory(cls), cls.decision_cost) for name, cls in POLICIES.items()
}

__all__ = ["POLICIES", "REFERENCE_POLICIES", "MECPolicy"]
