"""The time-using FedLoRA reference policies: lyapunov-descending and the tuned gs-profile."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from edgeft.baselines.fedlora import timing
from edgeft.baselines.fedlora.policies import budget_profile

import edgeft

ENV_ID = "edgeft/FedLoRAScheduling-v0"


def _actions(policy_name, episode_rounds=30, seed=2, **options):
    env = gym.make(ENV_ID, episode_rounds=episode_rounds)
    pol = edgeft.make_policy(policy_name, env, **options)
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(episode_rounds):
        a, _ = pol.predict(obs)
        out.append(a)
        obs, *_ = env.step(a)
    return np.array(out)


def test_zeta_schedule_descends_from_zeta0():
    z = timing.zeta_schedule(10.0, 1.0, 100)
    assert z[0] == 10.0 and z[-1] == pytest.approx(10.0 * np.exp(-0.99))
    assert np.all(np.diff(z) < 0)
    np.testing.assert_array_equal(timing.zeta_schedule(3.0, 0.0, 5), np.full(5, 3.0))
    with pytest.raises(ValueError, match="zeta0"):
        timing.zeta_schedule(-1.0, 1.0, 5)


def test_without_decay_it_is_lyapunov_with_that_zeta():
    np.testing.assert_array_equal(
        _actions("lyapunov-descending", zeta=3.0, decay=0.0), _actions("lyapunov", zeta=3.0)
    )


def test_with_decay_it_schedules_more_devices_late():
    flat = _actions("lyapunov-descending", zeta=10.0, decay=0.0) > 0
    late = _actions("lyapunov-descending", zeta=10.0, decay=4.0) > 0
    assert late[-10:].sum() > flat[-10:].sum()


def test_gs_profile_mean_budget_is_d_bar_and_growth_zero_is_gs():
    for g in (-2.0, 0.5, 3.0):
        assert budget_profile(g, 100).mean() == pytest.approx(1.0)
    np.testing.assert_array_equal(_actions("gs-profile", growth=0.0), _actions("gs"))


def test_tuned_constants_are_grid_points_chosen_per_partition():
    from edgeft.tune_references import GRIDS, SEEDS

    table = json.loads(timing.TUNED_FILE.read_text())
    for policy, grid in GRIDS.items():
        assert table[policy]["grid"] == grid and table[policy]["seeds"] == list(range(SEEDS))
        for data in ("iid", "dirichlet"):
            chosen = table[policy]["values"][data]
            assert all(chosen[k] in grid[k] for k in grid)
            means = [m for opts, m in table[policy]["means"][data]]
            best = [m for opts, m in table[policy]["means"][data] if opts == chosen][0]
            assert best == min(means)
    # the policies read them for their env's partition
    for data in ("iid", "dirichlet"):
        env = gym.make(ENV_ID, data=data)
        pol = edgeft.make_policy("lyapunov-descending", env)
        assert (pol.zeta0, pol.decay) == tuple(
            table["lyapunov-descending"]["values"][data][k] for k in ("zeta", "decay")
        )
        assert (
            edgeft.make_policy("gs-profile", env).growth
            == table["gs-profile"]["values"][data]["growth"]
        )
    assert max(SEEDS - 1, 0) < 100_000_000  # training seeds only (edgeft.suites)
