"""The MEC reference policies take the recorded decisions (tests/mec/data/).

``decision_fixture.py`` recorded every reference policy's decisions and round objectives on a
sample of the leaderboard suites' test episodes with the earlier solvers (cvxpy: P4 compiled
with Parameters and solved by Clarabel, the congestion QP through cvxpy). Each case is replayed
through the env as the leaderboard plays it, and every round must cost what it cost then, to
1e-6 relative, with the same integer decisions (layers alpha, server), except the documented
departures in :data:`DEPARTURES`.
"""

from __future__ import annotations

import numpy as np
import pytest
from edgeft.baselines.mec import solver as S
from edgeft.envs.mec.types import MECDecision

from .decision_fixture import FIELDS, Case, load, play

ARRAYS, META = load()
CASES = [
    Case(c["suite"], c["scenario"], c["seed_index"], c["rounds"], tuple(c["policies"]))
    for c in META["cases"]
]
SCENARIO = {
    (c["suite"], c["scenario"], c["seed_index"]): (c["env_id"], c["config"], c["seed"])
    for c in META["cases"]
}
#: Rounds that depart from the recording, and why (key "suite|scenario|seed index|policy" ->
#: (reason, rounds)):
#:
#: * ``"solver"``: the recorded FP-AO stopped early because an inaccurate conic solve raised
#:   the cost (an exact P4 step never does, MEC Proposition 1): on the random associations'
#:   ill-conditioned rounds (users at far servers; Clarabel fell back to SCS) and in the
#:   literal model, whose AO never converges (the block AO of ``ao`` then took a different
#:   path). Measured with ``solver.use_backend("cvxpy")``: on mec-large ``random`` its first
#:   P4 solve raised the cost from 3212.415 to 3398.243, so the decision stayed at the AO's
#:   start (alpha = Upsilon / 2); on mec-paper corrected ``random`` it stopped after 2
#:   iterations. The exact solve converges: the round must cost less than recorded (by at most
#:   1e-3 relative; measured 9e-7 to 2e-4), integer decisions may differ.
#: * ``"priced"``: drift-plus-penalty rounds whose priced problem (cost plus the queue's price
#:   of device energy, 25x the cost here) stops at the AO's tolerance (1e-7 relative of the
#:   priced cost): the priced cost must match to 1e-6 relative and the objective to 1e-5
#:   (measured 2.3e-6); the integer decisions are equal.
DEPARTURES: dict[str, tuple[str, tuple[int, ...]]] = {
    "mec-paper|literal|0|ao": ("solver", (0,)),
    "mec-paper|literal|0|random": ("solver", (0, 1)),
    "mec-paper|corrected|0|random": ("solver", (0, 1)),
    "mec-large|n200-m20|0|random": ("solver", (0,)),
    "mec-paper|corrected|0|fp-cccp-dpp": ("priced", (1,)),
}
PARAMS = [
    pytest.param(case, policy, id=case.key(policy)) for case in CASES for policy in case.policies
]


def test_fixture_is_small_and_complete():
    from pathlib import Path

    from .decision_fixture import PATH

    assert Path(PATH).stat().st_size < 2_000_000
    assert {c.suite for c in CASES} == {"mec-default", "mec-paper", "mec-large"}
    for case in CASES:
        for policy in case.policies:
            for f in (*FIELDS, "objective"):
                assert f"{case.key(policy)}|{f}" in ARRAYS


def _recorded(key: str, t: int) -> MECDecision:
    return MECDecision(**{f: ARRAYS[f"{key}|{f}"][t] for f in FIELDS})


@pytest.mark.parametrize("case,policy", PARAMS)
def test_policy_takes_the_recorded_decisions(case, policy):
    key = case.key(policy)
    want_obj = ARRAYS[f"{key}|objective"]
    reason, rounds = DEPARTURES.get(key, ("", ()))
    scenario = SCENARIO[(case.suite, case.scenario, case.seed_index)]
    for t, (dec, obj, pol, inst) in enumerate(play(case, policy, scenario)):
        msg = (key, t, obj, want_obj[t])
        if t in rounds and reason == "solver":
            assert want_obj[t] * (1 - 1e-3) <= obj <= want_obj[t] * (1 + 1e-9), msg
            continue
        if t in rounds and reason == "priced":
            price = pol.energy_price(inst)
            new, old = (
                S.cost_of(inst, d, pol.weights, pol.upload_delay, price)
                for d in (dec, _recorded(key, t))
            )
            assert new == pytest.approx(old, rel=1e-6), msg
            assert obj == pytest.approx(want_obj[t], rel=1e-5), msg
        else:
            assert obj == pytest.approx(want_obj[t], rel=1e-6), msg
        np.testing.assert_array_equal(dec.server, ARRAYS[f"{key}|server"][t], err_msg=key)
        np.testing.assert_array_equal(dec.alpha, ARRAYS[f"{key}|alpha"][t], err_msg=key)


def test_cvxpy_backend_still_takes_the_recorded_decisions():
    """The earlier implementation stays reachable (``solver.use_backend("cvxpy")``, the
    benchmarks' "before") and still takes the recorded decisions (one mec-default case)."""
    case = CASES[0]
    key = case.key("fp-cccp")
    scenario = SCENARIO[(case.suite, case.scenario, case.seed_index)]
    with S.use_backend("cvxpy"):
        for t, (dec, obj, _, _) in enumerate(play(case, "fp-cccp", scenario)):
            assert obj == pytest.approx(ARRAYS[f"{key}|objective"][t], rel=1e-9)
            np.testing.assert_array_equal(dec.server, ARRAYS[f"{key}|server"][t])


def test_round_where_the_earlier_solver_failed_costs_less():
    """mec-default, test seed 1000000004, round 6, ``greedy``: the earlier solver's first P4
    solve returned a point costing 1.1e10 (measured with ``use_backend("cvxpy")``), so its
    FP-AO stopped at its start and the round cost 2.029143 (the leaderboard's recorded value);
    the exact P4 converges (21 iterations) to 1.917591, 5.5% less. The same round and
    decision are ``fp-cccp``'s (CCCP keeps the greedy association there)."""
    import gymnasium as gym

    import edgeft

    case = CASES[0]
    env_id, config, _ = SCENARIO[(case.suite, case.scenario, case.seed_index)]
    env = gym.make(env_id, **config)
    policy = edgeft.make_policy("greedy", env, seed=1_000_000_004)
    obs, _ = env.reset(seed=1_000_000_004)
    for _ in range(7):
        obs, _, _, _, info = env.step(policy.predict(obs)[0])
    assert info["objective"] == pytest.approx(1.917591, rel=1e-6)
    assert info["objective"] < 2.029143 * (1 - 0.05)
