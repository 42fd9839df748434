"""The MEC reference policies through the env: ranking claims, SB3 protocol, every mode."""

import gymnasium as gym
import numpy as np
import pytest
from edgeft.baselines.mec import POLICIES

import edgeft

ENV_ID = "edgeft/MECOffloading-v0"
NAMES = list(POLICIES)


def test_policies_are_registered_for_the_mec_family():
    names = edgeft.list_policies("mec")
    for name in NAMES:
        assert name in names


def test_default_scenario_ranking_over_ten_seeds():
    """fp-cccp has the lowest mean weighted cost; greedy beats random (reduced N = 12, M = 3)."""
    costs = {name: [] for name in NAMES}
    for seed in range(10):
        for name in NAMES:
            env = gym.make(ENV_ID, num_users=12, num_servers=3)
            policy = edgeft.make_policy(name, env, seed=seed)
            obs, _ = env.reset(seed=seed)
            action, _ = policy.predict(obs, deterministic=True)
            _, _, _, _, info = env.step(action)
            assert max(info["violations"].values()) < 1e-9
            costs[name].append(info["cost"])
    mean = {k: float(np.mean(v)) for k, v in costs.items()}
    for name in NAMES:  # ties with ao/greedy within the AO's stopping tolerance are allowed
        assert mean["fp-cccp"] <= mean[name] * (1 + 1e-6), mean
    assert mean["fp-cccp"] < mean["alpha-only"] and mean["fp-cccp"] < mean["resource-only"]
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
        assert info["cost"] == pytest.approx(single_cost, rel=1e-12)
    else:  # approximate modes stay close to the decision
        assert info["cost"] <= 1.5 * single_cost


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
