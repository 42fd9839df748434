"""The MEC paper's reference policies (``fp-cccp``, ``ao``, ``alpha-only``, ``resource-only``,
``greedy``, ``random``), ``greedy-fast`` (greedy with the exact resource rule) and the
drift-plus-penalty policies on the energy budgets (``greedy-dpp``, ``fp-cccp-dpp``), registered
with :func:`edgeft.make_policy` for the ``"mec"`` family; the hindsight bound of an episode is
in ``hindsight``.

Importing this package does not import cvxpy; the solvers import it when first used.
"""

from __future__ import annotations

from typing import Any

from edgeft.policy import register_policy

from .policies import POLICIES, MECPolicy


def _factory(cls: type[MECPolicy]) -> Any:
    def make(config: Any, action_mode: str | None = None, **kwargs: Any) -> MECPolicy:
        return cls(config, action_mode=action_mode, **kwargs)

    make.__doc__ = cls.__doc__
    return make


for _name, _cls in POLICIES.items():
    register_policy(_name, "mec", _factory(_cls), cost=_cls.decision_cost)

__all__ = ["POLICIES", "MECPolicy"]
