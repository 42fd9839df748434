"""The suite score and paired differences (edgeft.scoring)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from edgeft.baselines.fedlora.hindsight import episode_hindsight
from edgeft.envs.fedlora.family import METRICS
from edgeft.envs.fedlora.family import headline_value as fedlora_headline

from edgeft.scoring import (
    bootstrap_ci,
    breaks_constraint,
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
    devices = {"avg_scheduled": 4.0, "avg_delay_ratio": 2.0}
    assert headline_value("fedlora", devices, "devices") == 2.0
    assert not breaks_constraint("fedlora", {"avg_delay_ratio": 1.005})
    assert breaks_constraint("fedlora", {"avg_delay_ratio": 1.03})
    # the v4 headline: the final loss
    assert headline_value("fedlora", {"final_loss": 0.9}) == 0.9
    with pytest.raises(ValueError, match="unknown env family 'nosuch'"):
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


def _row(policy, seed, scheduled, ratio, bound=None):
    metrics = dict.fromkeys(METRICS, 0.0)
    metrics.update(avg_scheduled=scheduled, avg_delay_ratio=ratio)
    row = {
        "scenario": "s",
        "policy": policy,
        "seed": seed,
        "metrics": metrics,
        "timing": {"decide_ms": 1.0},
    }
    if bound is not None:
        row["bound"] = {"headline": bound, "gap": 0.0}
    return row


def test_summary_scores_ranks_and_pairs_per_seed():
    from edgeft import leaderboard as lb
    from edgeft.suites import FEDLORA, Scenario, Suite

    suite = Suite(
        "t", 1, "fedlora", "test", (Scenario("s", FEDLORA, {}),), num_seeds=2, headline="devices"
    )
    rows = [
        _row("random", 0, 10.0, 10.0),
        _row("random", 1, 10.0, 5.0),  # headline 1, 2
        _row("hindsight", 0, 11.0, 1.0, bound=11.0),
        _row("hindsight", 1, 12.0, 1.0, bound=12.0),
        _row("gs", 0, 6.0, 1.0),
        _row("gs", 1, 7.0, 0.9),  # 6, 7
        _row("lyapunov", 0, 9.0, 1.5),
        _row("lyapunov", 1, 8.0, 1.0),  # 6, 8
    ]
    policies = ["gs", "lyapunov", "random", "hindsight"]
    summary = lb.summarize(suite, policies, rows)
    e = {x["policy"]: x for x in summary["results"]}
    # per seed: gs (6-1)/(11-1) = 50, (7-2)/(12-2) = 50; lyapunov 50 and 60
    assert e["gs"]["score"]["mean"] == pytest.approx(50.0)
    assert e["lyapunov"]["score"]["mean"] == pytest.approx(55.0)
    assert e["random"]["score"]["mean"] == 0.0 and e["hindsight"]["score"]["mean"] == 100.0
    assert e["gs"]["vs_reference"]["mean"] == pytest.approx(-0.5)  # (6-6 + 7-8) / 2
    assert "vs_reference" not in e["lyapunov"]
    assert e["lyapunov"]["breaks_constraint"] == 1 and e["gs"]["breaks_constraint"] == 0
    assert e["hindsight"]["bound"] and "breaks_constraint" not in e["hindsight"]
    order = [x["policy"] for x in lb.ranked(summary)]
    assert order == ["hindsight", "lyapunov", "gs", "random"]
    table = lb.markdown_table(summary)
    assert "| hindsight (bound) | 100.0 |" in table
    assert "| lyapunov ✗ | 55.0 ± 64 |" in table  # two seeds: Student t
    assert table.index("lyapunov ✗") < table.index("| gs |")
    assert "score: 0 = `random`, 100 = `hindsight`" in table
    header = lb.summary_csv(summary).splitlines()[0].split(",")
    assert header[5:8] == ["score_mean", "score_ci_low", "score_ci_high"]


def test_scored_policies_adds_the_anchors_once():
    from edgeft import leaderboard as lb
    from edgeft.suites import get_suite

    suite = get_suite("fedlora-default")  # v4: 0 = aaba
    assert lb.scored_policies(suite, ["gs"]) == ["gs", "aaba", "hindsight"]
    assert lb.scored_policies(suite, ["aaba", "gs"]) == ["aaba", "gs", "hindsight"]
    old = get_suite("fedlora-default-v3")  # v3: 0 = random
    assert lb.scored_policies(old, ["gs"]) == ["gs", "random", "hindsight"]
