"""The MEC reference policies take the recorded decisions (tests/mec/data/).

``decision_fixture.py`` recorded every reference policy's decisions and round objectives on a
sample of the leaderboard suites' test episodes with the earlier solvers (cvxpy: P4 compiled
with Parameters and solved by Clarabel, the congestion QP through cvxpy). Each case is replayed
through the env as the leaderboard plays it, and every round must cost what it cost then, to
1e-6 relative, with the same integer decisions (layers alpha, server).

Documented exceptions (:data:`TIES`): rounds where the earlier solver's own accuracy decided
between two decisions whose costs agree to that accuracy.
"""

from __future__ import annotations

import numpy as np
import pytest

from .decision_fixture import FIELDS, Case, load, play

ARRAYS, META = load()
CASES = [Case(c["suite"], c["scenario"], c["seed_index"], c["rounds"], tuple(c["policies"]))
         for c in META["cases"]]
SCENARIO = {(c["suite"], c["scenario"], c["seed_index"]): (c["env_id"], c["config"], c["seed"])
            for c in META["cases"]}
#: rounds whose objective may differ by more than 1e-6 relative or whose integer decisions may
#: differ, with the reason: key "suite|scenario|seed index|policy" -> (rounds, max relative)
TIES: dict[str, tuple[tuple[int, ...], float]] = {}
#: policies that take minutes per decision at N = 200 with the earlier solvers
SLOW = {"mec-large", "mec-paper"}

PARAMS = [pytest.param(case, policy, id=case.key(policy),
                       marks=[pytest.mark.slow] if case.suite in SLOW else [])
          for case in CASES for policy in case.policies]


def test_fixture_is_small_and_complete():
    from pathlib import Path

    from .decision_fixture import PATH

    assert Path(PATH).stat().st_size < 2_000_000
    assert {c.suite for c in CASES} == {"mec-default", "mec-paper", "mec-large"}
    for case in CASES:
        for policy in case.policies:
            for f in (*FIELDS, "objective"):
                assert f"{case.key(policy)}|{f}" in ARRAYS


@pytest.mark.parametrize("case,policy", PARAMS)
def test_policy_takes_the_recorded_decisions(case, policy):
    key = case.key(policy)
    want_obj = ARRAYS[f"{key}|objective"]
    rounds, tol = TIES.get(key, ((), 1e-6))
    scenario = SCENARIO[(case.suite, case.scenario, case.seed_index)]
    for t, (dec, obj, _) in enumerate(play(case, policy, scenario)):
        rel = 1e-6 if t not in rounds else tol
        assert obj == pytest.approx(want_obj[t], rel=rel), (key, t)
        if t in rounds:
            continue
        np.testing.assert_array_equal(dec.server, ARRAYS[f"{key}|server"][t], err_msg=key)
        np.testing.assert_array_equal(dec.alpha, ARRAYS[f"{key}|alpha"][t], err_msg=key)
