"""The suite score and paired differences (edgeft.scoring)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from edgeft.baselines.fedlora.hindsight import episode_hindsight

from edgeft.scoring import (
    bootstrap_ci,
    breaks_constraint,
    fedlora_headline,
    headline_value,
    paired_difference,
    score,
)

ENV_ID = "edgeft/FedLoRAScheduling-v0"


def test_score_anchors_and_direction():
    assert score(5.0, 5.0, 15.0) == 0.0
    assert score(15.0, 5.0, 15.0) == 100.0
    assert score(10.0, 5.0, 15.0) == 50.0
    # lower-is-better headline: the bound lies below the anchor
    assert score(2.0, 4.0, 0.0) == 50.0
    assert np.isnan(score(1.0, 3.0, 3.0))
    np.testing.assert_allclose(score([5.0, 10.0], [5.0, 0.0], [15.0, 20.0]), [0.0, 50.0])


def test_fedlora_headline_divides_by_the_budget_excess():
    assert fedlora_headline({"avg_scheduled": 12.0, "avg_delay_ratio": 0.9}) == 12.0
    assert fedlora_headline({"avg_scheduled": 12.0, "avg_delay_ratio": 1.5}) == 8.0
    assert headline_value("fedlora", {"avg_scheduled": 4.0, "avg_delay_ratio": 2.0}) == 2.0
    assert not breaks_constraint("fedlora", {"avg_delay_ratio": 1.005})
    assert breaks_constraint("fedlora", {"avg_delay_ratio": 1.03})
    with pytest.raises(ValueError, match="no headline"):
        headline_value("nosuch", {})


def test_paired_difference_shows_consistent_gaps():
    ref = {s: 10.0 + s for s in range(5)}
    val = {s: 10.0 + s - 0.1 for s in range(5)}
    d = paired_difference(val, ref)
    assert d["mean"] == pytest.approx(-0.1)
    assert d["ci_low"] == pytest.approx(-0.1) and d["ci_high"] == pytest.approx(-0.1)
    assert d["episodes"] == 5
    # the unpaired intervals overlap although every seed shows the same gap
    lo_v, hi_v = bootstrap_ci(list(val.values()))
    lo_r, hi_r = bootstrap_ci(list(ref.values()))
    assert lo_r < hi_v
    with pytest.raises(ValueError, match="common seeds"):
        paired_difference({1: 0.0}, {2: 0.0})


def _play(env, policy, seed, rounds):
    obs, _ = env.reset(seed=seed)
    n, x = [], []
    for _ in range(rounds):
        action, _ = policy.predict(obs)
        obs, _, _, _, info = env.step(action)
        n.append(info["num_scheduled"])
        x.append(info["delay_ratio"])
    return {"avg_scheduled": float(np.mean(n)), "avg_delay_ratio": float(np.mean(x))}


@pytest.mark.parametrize("seed", [21, 22])
def test_no_policy_scores_above_the_hindsight_bound(seed):
    """devices / max(1, D/D-bar) <= bound / T for budget-breaking policies too (the bound is the
    linear relaxation's value, whose value per unit budget falls as the budget grows)."""
    import edgeft

    rounds = 50
    env = gym.make(ENV_ID, episode_rounds=rounds)
    bound = episode_hindsight(env, seed).bound / rounds
    values = {}
    for name in ("lyapunov", "lyapunov-paper", "gs", "aaba", "all-in", "random"):
        metrics = _play(env, edgeft.make_policy(name, env), seed, rounds)
        values[name] = fedlora_headline(metrics)
        assert values[name] <= bound + 1e-9, name
    assert values["all-in"] < values["gs"]  # all-in breaks the budget by orders of magnitude
    s = score(values["gs"], values["random"], bound)
    assert 0.0 < s < 100.0
