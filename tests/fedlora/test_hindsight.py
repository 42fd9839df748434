"""Hindsight bound of the FedLoRA scheduling problem against brute force, exact dynamic
programming and the reference policies."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
from edgeft.baselines.fedlora.hindsight import (
    episode_channels,
    episode_hindsight,
    exact_offline_optimum,
    hindsight_bound,
    prefix_delays,
)
from edgeft.baselines.fedlora.reference import ref_min_common_delay

ENV_ID = "edgeft/FedLoRAScheduling-v0"


def _instance(rng, t, k, quantile=None):
    """Channels drawn like the env's (log-uniform gains), cost c_t(n) = D_t(n) / D-bar with D-bar
    at a random quantile of the prefix delays, so the budget binds in most instances."""
    gain = 10.0 ** rng.uniform(-8.0, -5.0, (t, k))
    bits = rng.uniform(0.5e6, 1.5e6, (t, k))
    delay = prefix_delays(gain, bits, 1e-11, 10e6)
    q = rng.uniform(0.1, 0.9) if quantile is None else quantile
    return delay / np.quantile(delay[:, 1:], q)


def _feasible(cost):
    return cost.min(axis=1).sum() <= cost.shape[0]


def test_prefix_delays_match_the_brentq_reference():
    rng = np.random.default_rng(3)
    gain = 10.0 ** rng.uniform(-8.0, -5.0, (4, 5))  # the env's range (-80 to -50 dB)
    bits = rng.uniform(0.5e6, 1.5e6, (4, 5))
    delay = prefix_delays(gain, bits, 1e-11, 10e6)
    assert np.all(delay[:, 0] == 0.0)
    for t in range(4):
        order = np.argsort(-(gain[t] / bits[t]), kind="stable")
        for n in range(1, 6):
            sel = order[:n]
            ref = ref_min_common_delay(bits[t, sel], gain[t, sel], 1e-11, 10e6)
            assert delay[t, n] == pytest.approx(ref, rel=1e-11)
    # a longer prefix never has a shorter common delay
    assert np.all(np.diff(delay, axis=1) >= -1e-12 * delay[:, 1:])


def test_dynamic_programme_equals_brute_force():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(60):
        t, k = int(rng.integers(2, 6)), int(rng.integers(1, 4))
        cost = _instance(rng, t, k)
        if not _feasible(cost):
            continue
        best = max(
            sum(p)
            for p in itertools.product(range(k + 1), repeat=t)
            if sum(cost[i, p[i]] for i in range(t)) <= t * (1 + 1e-12)
        )
        value, counts = exact_offline_optimum(cost)
        assert value == best
        assert counts.sum() == value and cost[np.arange(t), counts].sum() <= t * (1 + 1e-12)
        checked += 1
    assert checked >= 30


def test_bound_brackets_the_exact_optimum_and_primal_meets_budget():
    rng = np.random.default_rng(1)
    gaps = []
    for _ in range(80):
        t, k = int(rng.integers(2, 13)), int(rng.integers(1, 7))  # K <= 6, T <= 12
        cost = _instance(rng, t, k)
        if not _feasible(cost):
            continue
        exact, _ = exact_offline_optimum(cost)
        h = hindsight_bound(cost)
        assert h.bound >= exact - 1e-9
        assert h.value <= exact
        assert h.cost <= t * (1 + 1e-12)
        assert h.counts.sum() == h.value
        assert np.isclose(cost[np.arange(t), h.counts].sum(), h.cost)
        gaps.append(h.bound - exact)
    # the dual gap of a multiple-choice knapsack is below one round's largest utility step
    assert max(gaps) <= 6.0
    assert np.mean(gaps) < 1.0


def test_budget_that_does_not_bind_is_exact_and_infeasible_one_raises():
    cost = np.array([[0.0, 0.1, 0.2], [0.0, 0.3, 0.5]])
    h = hindsight_bound(cost)
    assert (h.bound, h.value, h.multiplier) == (4.0, 4.0, 0.0)
    assert h.counts.tolist() == [2, 2]
    with pytest.raises(ValueError, match="no schedule meets the budget"):
        hindsight_bound(np.array([[3.0, 4.0]]))
    with pytest.raises(ValueError, match="shape"):
        hindsight_bound(cost, utility=np.ones((3, 3)))


def test_weighted_utilities():
    rng = np.random.default_rng(7)
    for _ in range(20):
        cost = _instance(rng, 8, 4, quantile=0.4)
        if not _feasible(cost):
            continue
        w = rng.integers(1, 4, size=(8, 1))
        util = w * np.arange(5)[None, :]
        exact, _ = exact_offline_optimum(cost, util)
        h = hindsight_bound(cost, util)
        assert h.value <= exact <= h.bound + 1e-9


@pytest.mark.parametrize("seed", [5, 6])
def test_bound_dominates_budget_meeting_policies_on_env_episodes(seed):
    import edgeft

    env = gym.make(ENV_ID, episode_rounds=60)
    h = episode_hindsight(env, seed)
    gain, bits = episode_channels(env, seed)
    for name in ("gs", "aaba", "lyapunov"):
        policy = edgeft.make_policy(name, env)
        obs, _ = env.reset(seed=seed)
        total_n, total_x, gains = 0, 0.0, []
        for _ in range(60):
            action, _ = policy.predict(obs)
            obs, _, _, _, info = env.step(action)
            total_n += info["num_scheduled"]
            total_x += info["delay_ratio"]
            gains.append(info["channel_gain"])
        # the channels do not depend on the actions: every policy faces the replayed episode
        np.testing.assert_array_equal(np.array(gains), gain)
        if total_x <= 60 * (1 + 1e-9):  # gs and aaba meet the budget in every round
            assert total_n <= h.bound + 1e-9, name
    assert h.cost <= 60 * (1 + 1e-12)
    # the primal schedule replays in count mode with the same delays
    count_env = gym.make(ENV_ID, episode_rounds=60, action_mode="count")
    count_env.reset(seed=seed)
    total_x = 0.0
    for n in h.counts:
        *_, info = count_env.step(int(n))
        total_x += info["delay_ratio"]
    assert total_x == pytest.approx(h.cost, rel=1e-9)


def test_prefix_delays_match_the_first_implementation():
    """The O(T K)-memory prefix delays against the first implementation (every prefix of every
    round at once on T x K x K masks) at a size it still runs: within 1e-12, deep fades and
    unequal message sizes included, and the same bound and schedule from either."""
    from tests.fedlora.reference_split import reference_prefix_delays

    rng = np.random.default_rng(12)
    t, k = 40, 30
    gain = 10.0 ** rng.uniform(-8.0, -5.0, (t, k)) * rng.exponential(size=(t, k))
    gain[rng.random((t, k)) < 0.1] *= 1e-6
    bits = np.where(rng.random((t, 1)) < 0.5, 1e6, rng.uniform(0.3e6, 3e6, (t, k)))
    new = prefix_delays(gain, bits, 1e-11, 10e6)
    old = reference_prefix_delays(gain, bits, 1e-11, 10e6)
    assert new.shape == old.shape == (t, k + 1) and np.all(new[:, 0] == 0.0)
    np.testing.assert_allclose(new[:, 1:], old[:, 1:], rtol=1e-12, atol=0.0)
    budget = np.quantile(old[:, 1:], 0.4)
    h_new, h_old = hindsight_bound(new / budget), hindsight_bound(old / budget)
    assert h_new.bound == pytest.approx(h_old.bound, rel=1e-12)
    np.testing.assert_array_equal(h_new.counts, h_old.counts)
