"""The MEC reference policies through the env: ranking claims, SB3 protocol, every mode."""

import gymnasium as gym
import numpy as np
import pytest
from edgeft.baselines.mec import POLICIES

import edgeft

ENV_ID = "edgeft/MECOffloading-v0"
NAMES = list(POLICIES)
#: the paper's method and benchmarks (the ranking claims are about these)
PAPER = ["fp-cccp", "ao", "alpha-only", "resource-only", "greedy", "random"]


def test_policies_are_registered_for_the_mec_family():
    names = edgeft.list_policies("mec")
    for name in NAMES:
        assert name in names


def _mean_costs(seeds, **size):
    costs = {name: [] for name in PAPER}
    env = gym.make(ENV_ID, **size)
    for seed in seeds:
        for name in PAPER:
            policy = edgeft.make_policy(name, env, seed=seed)
            obs, _ = env.reset(seed=seed)
            action, _ = policy.predict(obs, deterministic=True)
            _, _, _, _, info = env.step(action)
            assert max(info["violations"].values()) < 1e-9
            costs[name].append(info["objective"])
    return {k: float(np.mean(v)) for k, v in costs.items()}


def test_ranking_over_ten_seeds_reduced_scenario():
    """Default scenario at N = 20, M = 4 (the full size is the slow test below).

    fp-cccp is lowest (here CCCP moves users on 2 of 10 seeds: mean 12.21166 vs 12.21275 for
    ao/greedy); greedy beats random; fp-cccp strictly beats the one-block benchmarks.
    """
    mean = _mean_costs(range(10), num_users=20, num_servers=4)
    for name in PAPER:
        if name != "fp-cccp":
            assert mean["fp-cccp"] < mean[name], mean
    assert mean["fp-cccp"] < 0.99 * min(mean["alpha-only"], mean["resource-only"]), mean
    assert mean["greedy"] < mean["random"], mean


@pytest.mark.slow
def test_default_scenario_ranking_over_ten_seeds():
    """The issue's claim on the default scenario (N = 50, M = 10), 10 seeds (~3 min).

    Measured: fp-cccp 5.7448, ao 5.7686, greedy 5.7686, resource-only 6.2007, alpha-only
    9.1998, random 806.0; fp-cccp strictly lowest on 8 of 10 seeds (ties with greedy where
    CCCP keeps the greedy association).
    """
    mean = _mean_costs(range(10))
    for name in PAPER:
        if name != "fp-cccp":
            assert mean["fp-cccp"] < (1 - 1e-3) * mean[name], mean
    assert mean["greedy"] < mean["random"], mean


@pytest.mark.parametrize("mode", ["full", "discrete", "box"])
def test_predict_batched_and_in_every_mode(mode):
    env = gym.make(ENV_ID, num_users=5, num_servers=2, action_mode=mode)
    policy = edgeft.make_policy("greedy", env)
    obs, _ = env.reset(seed=0)
    single, state = policy.predict(obs)
    single_cost = policy.last_cost
    assert state is None
    assert env.action_space.contains(single.astype(env.action_space.dtype))
    batch, _ = policy.predict(np.stack([obs, obs]))
    assert batch.shape == (2, *single.shape)
    np.testing.assert_allclose(batch[0], batch[1], rtol=1e-9)
    # the first solve runs cvxpy's full compile, later ones its cached DPP map: the solver's
    # path differs in the last digits, and the AO stops at its tolerance
    np.testing.assert_allclose(batch[0], single, atol=2e-3)
    _, _, _, _, info = env.step(single)
    assert policy.solve_times and policy.last_solve_time > 0
    if mode == "full":
        assert info["objective"] == pytest.approx(single_cost, rel=1e-12)
    else:  # approximate modes stay close to the decision
        assert info["objective"] <= 1.5 * single_cost


def test_unknown_action_mode_rejected():
    env = gym.make(ENV_ID, num_users=3, num_servers=2)
    with pytest.raises(ValueError, match="action_mode"):
        edgeft.make_policy("greedy", env, action_mode="weird")


def test_fp_cccp_improves_on_greedy_where_association_matters():
    """N = 50, M = 10 (the paper's size), seed 1: CCCP moves users and lowers the cost."""
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=1)
    costs = {}
    for name in ("fp-cccp", "greedy"):
        policy = edgeft.make_policy(name, env, seed=0)
        policy.predict(obs)
        costs[name] = policy.last_cost
    assert costs["fp-cccp"] < costs["greedy"] * (1 - 1e-4), costs
