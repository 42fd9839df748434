"""The MEC vector env against the single env: the same states step to the same results."""

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs.mec.config import MECConfig
from edgeft.envs.mec.vector import MECVectorEnv

import edgeft  # noqa: F401  (registers the ids)

ENV_ID = "edgeft/MECOffloading-v0"
SMALL = {"num_users": 5, "num_servers": 2, "episode_rounds": 3}
COPIES = 3
STEPS = 8  # crosses two autoresets of every copy


def _assert_state_equal(a, b):
    for name in a.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def _assert_info_equal(single, batched, i):
    for key, value in single.items():
        got = batched[key]
        if isinstance(value, dict):
            for k, v in value.items():
                assert got[k][i] == v, (key, k)
        else:
            np.testing.assert_array_equal(got[i], value, err_msg=key)
        assert batched[f"_{key}"][i]


@pytest.mark.parametrize("mode", MECConfig.ACTION_MODES)
@pytest.mark.parametrize("seed", [0, 7, 123, 2024])
def test_vector_copies_step_like_single_envs(mode, seed):
    """Copy i of the vector env, from reset(seed=seed), is the single env from reset(seed=seed + i):
    at every step the same State, and the same action gives the same next State, observation,
    reward, truncation and info; after truncation both restart (the vector env on the next
    step, NEXT_STEP autoreset) and continue with the same generator."""
    vec = gym.make_vec(
        ENV_ID, num_envs=COPIES, vectorization_mode="vector_entry_point", action_mode=mode, **SMALL
    )
    assert isinstance(vec.unwrapped, MECVectorEnv)
    singles = [gym.make(ENV_ID, action_mode=mode, **SMALL).unwrapped for _ in range(COPIES)]
    vec.action_space.seed(seed)
    obs, _ = vec.reset(seed=seed)
    for i, env in enumerate(singles):
        o, _ = env.reset(seed=seed + i)
        np.testing.assert_array_equal(obs[i], o)
    pending = np.zeros(COPIES, dtype=bool)
    for _ in range(STEPS):
        actions = vec.action_space.sample()
        for i, env in enumerate(singles):
            _assert_state_equal(vec.unwrapped.state.index(i), env.state)
        obs, reward, term, trunc, info = vec.step(actions)
        assert not term.any()
        for i, env in enumerate(singles):
            if pending[i]:  # the single env resets where the vector env autoresets
                o, reset_info = env.reset()
                assert reward[i] == 0.0 and not trunc[i]
                assert info["round"][i] == reset_info["round"] == 0
            else:
                o, r, _, t, single_info = env.step(actions[i])
                assert reward[i] == r and trunc[i] == t
                _assert_info_equal(single_info, info, i)
            np.testing.assert_array_equal(obs[i], o)
        pending = trunc.copy()


@pytest.mark.parametrize("mode", MECConfig.ACTION_MODES)
def test_vector_env_equals_gymnasium_sync_vector_env(mode):
    """Observations, rewards, truncations and every info entry and mask as Gymnasium's
    SyncVectorEnv over single envs returns them."""
    kw = dict(num_envs=COPIES, action_mode=mode, **SMALL)
    ours = gym.make_vec(ENV_ID, vectorization_mode="vector_entry_point", **kw)
    sync = gym.make_vec(ENV_ID, vectorization_mode="sync", **kw)
    ours.action_space.seed(5)
    a, ia = ours.reset(seed=11)
    b, ib = sync.reset(seed=11)
    np.testing.assert_array_equal(a, b)
    for _ in range(STEPS):
        act = ours.action_space.sample()
        ra, rb = ours.step(act), sync.step(act)
        for x, y in zip(ra[:4], rb[:4]):
            np.testing.assert_array_equal(x, y)
        assert set(ra[4]) == set(rb[4])
        for key, value in rb[4].items():
            if isinstance(value, dict):
                for k in value:
                    np.testing.assert_array_equal(ra[4][key][k], value[k], err_msg=f"{key}.{k}")
            else:
                np.testing.assert_array_equal(ra[4][key], value, err_msg=key)


def test_vector_env_state_decodes_from_its_observations():
    vec = MECVectorEnv(num_envs=2, **SMALL)
    obs, _ = vec.reset(seed=3)
    obs, *_ = vec.step(vec.action_space.sample())
    _assert_state_equal(vec.decode_observation(obs), vec.state)
    assert vec.state.batch_shape == (2,)
    assert vec.config_in_force is vec.config


def test_vector_env_refuses_real_mode_and_bad_sizes():
    with pytest.raises(ValueError, match="sync"):
        MECVectorEnv(num_envs=2, mode="real", **SMALL)
    with pytest.raises(ValueError, match="num_envs"):
        MECVectorEnv(num_envs=0, **SMALL)
    with pytest.raises(ValueError, match="num_envs"):
        MECVectorEnv(num_envs=2, **SMALL).reset(seed=[1, 2, 3])
    with pytest.raises(RuntimeError, match="reset"):
        MECVectorEnv(num_envs=2, **SMALL).step(np.zeros((2, 5, 6)))


def _assert_bitwise(got, want, what):
    """Equal values, and for floats equal signs of zero too (bit for bit)."""
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_array_equal(got, want, err_msg=what)
    if want.dtype.kind == "f":
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=what)


def _projected_actions(rng, mode, copies, n, m, y):
    """Actions that the projection changes: fractional alpha and server, shares of a server
    summing above 1, fractions below the floor; for the box mode, points of the whole box and
    some beyond its faces by round-off (which the projection clips)."""
    if mode == "box":
        x = rng.uniform(-1.0, 1.0, size=(copies, 6 * n))
        edge = rng.random((copies, 6 * n)) < 0.05
        x[edge] = np.sign(x[edge]) * (1.0 + 5e-10)
        return x
    a = np.empty((copies, n, 6))
    a[..., 0] = rng.uniform(1.0, y - 1.0, size=(copies, n))
    a[..., 1] = rng.uniform(0.0, m - 1.0, size=(copies, n))
    a[..., 2:] = rng.uniform(0.0, 1.0, size=(copies, n, 4))
    a[..., 2:][rng.random((copies, n, 4)) < 0.1] = 0.0  # below the 1e-3 floor
    return a


@pytest.mark.parametrize("mode", ["full", "box"])
def test_batched_copies_equal_single_envs_bit_for_bit_over_episodes(mode):
    """Several copies, random actions that the projection changes, three episodes each: every
    observation, reward, termination, truncation and info entry of copy i is the single env's
    from reset(seed=seed + i), bit for bit (signs of zero included), autoresets included."""
    cfg = {"num_users": 7, "num_servers": 3, "episode_rounds": 4}
    copies, seed = 5, 31
    vec = gym.make_vec(
        ENV_ID, num_envs=copies, vectorization_mode="vector_entry_point", action_mode=mode, **cfg
    )
    singles = [gym.make(ENV_ID, action_mode=mode, **cfg).unwrapped for _ in range(copies)]
    y = singles[0].config.num_layers
    obs, vinfo = vec.reset(seed=seed)
    for i, env in enumerate(singles):
        o, info = env.reset(seed=seed + i)
        _assert_bitwise(obs[i], o, "reset obs")
        for key, value in info.items():
            if not isinstance(value, dict):
                _assert_bitwise(vinfo[key][i], value, f"reset {key}")
    rng = np.random.default_rng(4)
    pending = np.zeros(copies, dtype=bool)
    projected = 0
    for _ in range(3 * (cfg["episode_rounds"] + 1)):
        actions = _projected_actions(rng, mode, copies, 7, 3, y)
        obs, reward, term, trunc, info = vec.step(actions)
        for i, env in enumerate(singles):
            if pending[i]:
                o, single_info = env.reset()
                r, te, tr = 0.0, False, False
            else:
                o, r, te, tr, single_info = env.step(actions[i])
                projected += bool(single_info["action_projected"])
            _assert_bitwise(obs[i], o, "obs")
            _assert_bitwise(reward[i], r, "reward")
            assert term[i] == te and trunc[i] == tr
            for key, value in single_info.items():
                assert info[f"_{key}"][i]
                if isinstance(value, dict):
                    for k, v in value.items():
                        _assert_bitwise(info[key][k][i], v, f"{key}.{k}")
                        assert info[key][f"_{k}"][i]
                else:
                    _assert_bitwise(info[key][i], value, key)
        pending = trunc.copy()
    assert projected > 10  # the projection was exercised


def test_malformed_actions_are_refused_before_anything_changes():
    """A malformed action of one copy raises ValueError naming that copy and entry; no copy
    has moved (the same state, the same next step)."""
    vec = MECVectorEnv(num_envs=3, action_mode="full", **SMALL)
    vec.reset(seed=2)
    before = vec.state
    good = np.tile(vec.single_action_space.low, (3, 1, 1))
    bad = good.copy()
    bad[2, 1, 2] = 1.5  # copy 2, user 1's power
    with pytest.raises(ValueError, match="copy 2: user 1's power"):
        vec.step(bad)
    nan = good.copy()
    nan[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        vec.step(nan)
    with pytest.raises(ValueError, match="shape"):
        vec.step(good[:2])
    _assert_state_equal(vec.state, before)
    twin = MECVectorEnv(num_envs=3, action_mode="full", **SMALL)
    twin.reset(seed=2)
    np.testing.assert_array_equal(vec.step(good)[0], twin.step(good)[0])
