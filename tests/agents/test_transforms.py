"""The MEC observation transform agents train on, and the fast greedy teacher for cloning."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from edgeft.agents.bc import MECGreedyFastTeacher, make_teacher, permute_users
from edgeft.agents.transforms import get_transform, transformed_size
from edgeft.baselines.mec import solver as S
from edgeft.envs.common import config_in_force
from edgeft.envs.mec.observation import observation_layout
from edgeft.envs.mec.resources import fast_resource_rule

import edgeft

MEC = "edgeft/MECOffloading-v0"


def _env(n: int = 7, m: int = 3) -> gym.Env:
    return gym.make(MEC, num_users=n, num_servers=m, episode_rounds=4, action_mode="discrete")


def _observations(env: gym.Env, seeds: range, steps: int = 2) -> np.ndarray:
    rows = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        rows.append(obs)
        for k in range(steps):  # a fixed action sequence, so equal seeds give equal states
            obs, *_ = env.step(np.full(env.action_space.shape, k % 2, dtype=np.int64))
            rows.append(obs)
    return np.stack(rows)


def _section(config, obs: np.ndarray, name: str) -> np.ndarray:
    return observation_layout(config).sections(obs)[name]


def test_mec_users_shape_and_gain_blocks():
    env = _env()
    config = config_in_force(env)
    n, m = config.num_users, config.num_servers
    obs = _observations(env, range(3))
    feats = get_transform("mec-users", config)(obs)
    assert feats.shape == (len(obs), n * (m + 9) + 3 * m + 1)
    assert transformed_size("mec-users", config, obs.shape[1]) == feats.shape[1]
    assert np.all(np.isfinite(feats))
    user = feats[:, : n * (m + 9)].reshape(len(obs), n, m + 9)
    gain_db = _section(config, obs, "gain_db")
    # best gain (dB) and the linear ratio to it reproduce the gains (lossless); ratio 1 at argmax
    ratio = user[:, :, 1 : m + 1]
    np.testing.assert_allclose(user[:, :, :1] + 10 * np.log10(ratio), gain_db, atol=1e-9)
    np.testing.assert_array_equal(np.argmax(ratio, axis=2), gain_db.argmax(axis=2))
    np.testing.assert_allclose(ratio.max(axis=2), 1.0)
    assert np.all((ratio > 0) & (ratio <= 1))
    np.testing.assert_allclose(user[:, :, m + 2], np.log(_section(config, obs, "samples")))
    np.testing.assert_allclose(feats[:, -1], _section(config, obs, "round_index")[:, 0] / 4)


def test_mec_users_is_a_pure_function_of_the_observation():
    env = _env()
    config = config_in_force(env)
    f = get_transform("mec-users", config)
    obs = _observations(env, range(2))
    batch = f(obs)
    # one by one = batched, repeatable, and the input is not modified
    copy = obs.copy()
    np.testing.assert_array_equal(np.stack([f(o) for o in obs]), batch)
    np.testing.assert_array_equal(f(obs), batch)
    np.testing.assert_array_equal(obs, copy)
    # a fresh env with the same seeds gives the same observations, hence the same features
    np.testing.assert_array_equal(
        get_transform("mec-users", config)(_observations(_env(), range(2))), batch
    )


def test_mec_users_permutes_with_the_users():
    env = _env()
    config = config_in_force(env)
    n, m = config.num_users, config.num_servers
    obs = _observations(env, range(1), steps=0)
    perm = np.random.default_rng(0).permutation(n)
    permuted = obs.copy()
    layout = observation_layout(config)
    for name, shape in layout:
        if shape[0] == n:
            block = getattr(layout, name)
            permuted[:, block] = obs[:, block].reshape((1,) + shape)[:, perm].reshape(1, -1)
    f = get_transform("mec-users", config)
    a, b = f(obs), f(permuted)
    ua = a[:, : n * (m + 9)].reshape(n, m + 9)
    ub = b[:, : n * (m + 9)].reshape(n, m + 9)
    np.testing.assert_allclose(ub, ua[perm], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b[:, n * (m + 9) :], a[:, n * (m + 9) :])


def test_mec_users_rejects_the_other_family():
    config = config_in_force(gym.make("edgeft/FedLoRAScheduling-v0"))
    with pytest.raises(ValueError, match="mec"):
        get_transform("mec-users", config)


def test_fast_teacher_costs_what_greedy_costs_in_discrete_mode():
    env = _env(n=6, m=2)
    config = config_in_force(env)
    teacher = make_teacher("mec-greedy-fast", config)
    assert isinstance(teacher, MECGreedyFastTeacher)
    greedy = edgeft.make_policy("greedy", env, seed=0)
    w, ud, n = config.weights, config.upload_delay, config.num_users
    obs = _observations(env, range(3), steps=1)
    acts = teacher.predict(obs)[0]
    assert acts.shape == (len(obs), 2 * n) and env.action_space.contains(acts[0])
    for o, a in zip(obs, acts):
        inst = env.unwrapped.instance_of(o)
        g = greedy.predict(o)[0]
        np.testing.assert_array_equal(a[n:], S.greedy_association(inst))

        def cost(act, inst=inst):
            dec = fast_resource_rule(inst, act[:n] + 1.0, act[n:], w, ud)
            return S.cost_of(inst, dec, w, ud)

        # greedy's FP-AO alpha, rounded, is at best as good under the exact resource rule
        assert cost(a) <= cost(g) * (1 + 1e-6)
        # and integer alpha one layer off in any user's entry never helps (coordinate optimum)
        for k in range(n):
            for step in (-1, 1):
                b = a.copy()
                b[k] = np.clip(b[k] + step, 0, config.num_layers - 2)
                assert cost(a) <= cost(b) * (1 + 1e-9)


def test_fast_teacher_needs_the_mec_discrete_mode():
    env = gym.make(MEC, num_users=4, num_servers=2, action_mode="full")
    with pytest.raises(ValueError, match="discrete"):
        make_teacher("mec-greedy-fast", config_in_force(env))


def test_permute_users_gives_the_same_rounds_with_renamed_users():
    env = _env()
    config = config_in_force(env)
    n = config.num_users
    teacher = make_teacher("mec-greedy-fast", config)
    obs = _observations(env, range(2), steps=1)
    labels = teacher.predict(obs)[0]
    pobs, plab = permute_users(obs, labels, config, np.random.default_rng(0))
    assert not np.array_equal(pobs, obs)
    w, ud = config.weights, config.upload_delay
    for o, lab, po, pl in zip(obs, labels, pobs, plab):
        inst, pinst = env.unwrapped.instance_of(o), env.unwrapped.instance_of(po)
        # the same users: same multiset of per-user values, same servers
        np.testing.assert_array_equal(np.sort(pinst.tokens), np.sort(inst.tokens))
        np.testing.assert_array_equal(pinst.b_max, inst.b_max)
        # the permuted labels are the teacher's decision for the permuted round, same cost
        np.testing.assert_array_equal(teacher.predict(po)[0][n:], pl[n:])
        costs = [
            S.cost_of(i, fast_resource_rule(i, a[:n] + 1.0, a[n:], w, ud), w, ud)
            for i, a in ((inst, lab), (pinst, pl))
        ]
        np.testing.assert_allclose(costs[1], costs[0], rtol=1e-12)
    with pytest.raises(ValueError, match="discrete"):
        permute_users(
            obs,
            labels,
            config_in_force(gym.make(MEC, action_mode="full")),
            np.random.default_rng(0),
        )
