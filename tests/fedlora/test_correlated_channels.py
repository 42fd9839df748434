"""Correlated channels in the FedLoRA env: AR(1) Rayleigh fading and Gauss-Markov mobility
(``edgeft.envs.channels``, shared with the MEC env) against plain references, the defaults bit for
bit as before, checkpoints of a correlated episode, and the hindsight replay on them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from edgeft.baselines.fedlora.hindsight import episode_channels, episode_hindsight
from edgeft.envs import channels as C
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.fedlora.formulas import gain_to_db
from edgeft.envs.fedlora.generator import (
    CopyBlocks,
    CopyChannels,
    CorrelatedChannel,
    FadingBlocks,
    cell_gain_db,
    copy_channels,
)

import edgeft  # noqa: F401  (registers the ids)
from tests.fedlora.checkpointing import play

ENV_ID = "edgeft/FedLoRAScheduling-v0"
MOBILE = {
    "fading_correlation": 0.9,
    "mobility_speed_mps": 3.0,
    "mobility_memory": 0.7,
    "round_duration_s": 2.0,
}


def _lag1(x: np.ndarray) -> float:
    """Lag-1 autocorrelation along axis 0, pooled over the other axes (each series scaled to
    mean 1, then centred, so that strong devices do not dominate)."""
    x = x / x.mean(axis=0)
    x = x - x.mean(axis=0)
    return float((x[1:] * x[:-1]).sum() / (x * x).sum())


def _rollout(env, seed, actions):
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for a in actions:
        out.append(env.step(a))
    return out


def _assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            if isinstance(u, dict):
                assert u.keys() == v.keys()
                for key in u:
                    np.testing.assert_array_equal(u[key], v[key], err_msg=key)
            else:
                np.testing.assert_array_equal(u, v)


# ------------------------------------------------------------------ defaults unchanged
@pytest.mark.parametrize("mode", ["bandwidth", "count"])
def test_zero_correlation_and_speed_give_the_default_episodes_bit_for_bit(mode):
    """fading_correlation=0 and mobility_speed_mps=0 given explicitly (memory and round duration
    changed too: unused when nothing moves) replay the default env exactly, across fading
    blocks (64 rounds) and an episode end, single and vector env, loss noise on."""
    explicit = {
        "fading_correlation": 0.0,
        "mobility_speed_mps": 0.0,
        "mobility_memory": 0.3,
        "round_duration_s": 7.0,
    }
    base = {"action_mode": mode, "episode_rounds": 70, "surrogate": {"noise": 0.02}}
    assert not FedLoRAConfig(**base, **explicit).correlated_channel
    for seed in (0, 1, 5):
        env = gym.make(ENV_ID, **base)
        env.action_space.seed(seed)
        acts = [env.action_space.sample() for _ in range(75)]
        _assert_same(
            _rollout(env, seed, acts), _rollout(gym.make(ENV_ID, **base, **explicit), seed, acts)
        )
        assert isinstance(env.unwrapped._fading, FadingBlocks)
        vec = [
            gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", **base, **kw)
            for kw in ({}, explicit)
        ]
        vec[0].action_space.seed(seed)
        vacts = [vec[0].action_space.sample() for _ in range(75)]
        _assert_same(_rollout(vec[0], seed, vacts), _rollout(vec[1], seed, vacts))


# ------------------------------------------------------------------ shared processes
def test_ar1_step_matches_the_complex_recursion_and_keeps_cn01():
    rng = np.random.default_rng(4)
    re, im = C.rayleigh_fading(rng, (3, 4))
    rho = 0.7
    ref = np.random.default_rng()
    ref.bit_generator.state = rng.bit_generator.state
    w = (ref.standard_normal((3, 4)) + 1j * ref.standard_normal((3, 4))) / np.sqrt(2.0)
    expected = rho * (re + 1j * im) + np.sqrt(1.0 - rho**2) * w
    re2, im2 = C.ar1_fading(rng, re, im, rho)
    np.testing.assert_allclose(re2 + 1j * im2, expected, rtol=1e-14, atol=1e-15)
    # stationary CN(0, 1): |h|^2 ~ Exp(1) after many steps
    re, im = np.zeros(20000), np.zeros(20000)
    for _ in range(60):
        re, im = C.ar1_fading(rng, re, im, 0.9)
    p = C.fading_power(re, im)
    assert abs(p.mean() - 1.0) < 0.03 and abs(p.var() - 1.0) < 0.08
    assert abs(np.mean(re * im)) < 0.02


def test_gauss_markov_velocity_matches_the_formula_and_its_stationary_law():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(5, 2))
    mean = np.array([1.0, -2.0])
    ref = np.random.default_rng()
    ref.bit_generator.state = rng.bit_generator.state
    w = ref.standard_normal((5, 2))
    a, sigma = 0.6, 1.5
    np.testing.assert_allclose(
        C.gauss_markov_velocity(rng, v, a, sigma, mean),
        a * v + (1 - a) * mean + np.sqrt(1 - a * a) * sigma * w,
        rtol=1e-13,
    )
    v = C.gauss_markov_start(rng, (40000, 2), sigma, mean)
    for _ in range(5):
        v = C.gauss_markov_velocity(rng, v, a, sigma, mean)
    np.testing.assert_allclose(v.mean(axis=0), mean, atol=0.03)
    np.testing.assert_allclose(v.std(axis=0), sigma, rtol=0.02)


def test_reflect_in_disc_against_a_plain_loop():
    rng = np.random.default_rng(7)
    center, radius = (300.0, 0.0), 50.0
    pos = np.array(center) + rng.uniform(-110, 110, (400, 2))
    vel = rng.normal(size=(400, 2))
    got_p, got_v = C.reflect_in_disc(pos, vel, center, radius)
    for p, v, gp, gv in zip(pos, vel, got_p, got_v):
        d = p - center
        r = np.hypot(*d)
        if r <= radius:
            assert np.array_equal(gp, p) and np.array_equal(gv, v)
            continue
        n = d / r
        np.testing.assert_allclose(gp, center + max(2 * radius - r, 0.0) * n, atol=1e-9)
        vn = v @ n
        np.testing.assert_allclose(gv, v - 2 * vn * n if vn > 0 else v, atol=1e-12)
        assert np.hypot(*(gp - center)) <= radius + 1e-9


# ------------------------------------------------------------------ the env's channels
@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_lag1_autocorrelation_of_the_gain_matches_rho_squared(rho):
    """Static devices: a device's gain is its path-loss gain times |h|^2, so the lag-1
    autocorrelation of info["channel_gain"] over a long episode is that of |h|^2, rho^2 for AR(1)
    complex Gaussian fading (the estimate's standard deviation over seeds is about 0.0035 at
    20 devices x 4000 rounds)."""
    env = gym.make(ENV_ID, fading_correlation=rho, episode_rounds=4000)
    env.reset(seed=11)
    zero = np.zeros(20)
    gains = np.array([env.step(zero)[-1]["channel_gain"] for _ in range(4000)])
    assert _lag1(gains) == pytest.approx(rho**2, abs=0.02)
    # the complex fading itself: corr(h_t, h_t+1) = rho
    ch = env.unwrapped._fading
    assert isinstance(ch, CorrelatedChannel) and ch.vel.size == 0  # static: no velocities drawn
    h = []
    for _ in range(3000):
        env.step(zero)
        h.append(ch.re + 1j * ch.im)
    h = np.array(h)
    corr = (h[1:] * h[:-1].conj()).mean().real / (np.abs(h) ** 2).mean()
    assert corr == pytest.approx(rho, abs=0.02)


def test_iid_blocks_have_no_memory():
    env = gym.make(ENV_ID, episode_rounds=3000)
    env.reset(seed=3)
    gains = np.array([env.step(np.zeros(20))[-1]["channel_gain"] for _ in range(3000)])
    assert abs(_lag1(gains)) < 0.03


def test_mobility_keeps_devices_in_the_cell_and_recomputes_path_loss():
    cfg = FedLoRAConfig(
        fading_correlation=0.5,
        mobility_speed_mps=25.0,
        mobility_memory=0.9,
        round_duration_s=2.0,
        episode_rounds=600,
    )
    env = gym.make(ENV_ID, config=cfg)
    env.reset(seed=1)
    ch = env.unwrapped._fading
    start = ch.pos.copy()
    center = np.array([cfg.cell_center_m, 0.0])
    dist = []
    for _ in range(600):
        obs, *_ = env.step(np.zeros(20))
        r = np.hypot(*(ch.pos - center).T)
        assert (r <= cfg.cell_radius_m + 1e-9).all()
        dist.append(r)
        np.testing.assert_array_equal(ch.mean_db, cell_gain_db(cfg, ch.pos))
        gain_db = env.unwrapped.decode_observation(obs).gain_db
        np.testing.assert_allclose(
            gain_db, ch.mean_db + gain_to_db(C.fading_power(ch.re, ch.im)), rtol=0, atol=1e-9
        )
    assert not np.array_equal(ch.pos, start)
    # devices visit the whole disc, and the stationary velocity has the configured RMS speed
    dist = np.array(dist)
    assert dist.max() > 0.95 * cfg.cell_radius_m and dist.min() < 0.3 * cfg.cell_radius_m
    speed = np.sqrt((ch.vel**2).sum(-1).mean())
    assert 0.5 * cfg.mobility_speed_mps < speed < 1.6 * cfg.mobility_speed_mps


def test_speed_zero_moves_nothing():
    env = gym.make(ENV_ID, fading_correlation=0.8, mobility_memory=0.2, round_duration_s=5.0)
    env.reset(seed=2)
    ch = env.unwrapped._fading
    pos, mean_db = ch.pos.copy(), ch.mean_db.copy()
    for _ in range(50):
        env.step(np.full(20, 0.05))
    np.testing.assert_array_equal(ch.pos, pos)
    np.testing.assert_array_equal(ch.mean_db, mean_db)
    assert ch.vel.size == 0


def test_correlated_vector_env_copy_equals_the_single_env():
    for seed in (0, 4):
        single = gym.make(ENV_ID, episode_rounds=30, **MOBILE)
        vec = gym.make_vec(
            ENV_ID, num_envs=1, vectorization_mode="vector_entry_point", episode_rounds=30, **MOBILE
        )
        os_, _ = single.reset(seed=seed)
        ov, _ = vec.reset(seed=seed)
        rng = np.random.default_rng(seed)
        for _ in range(30):
            np.testing.assert_array_equal(ov[0], os_)
            a = rng.random(20) / 10
            os_, rs, _, _, info_s = single.step(a)
            ov, rv, _, _, info_v = vec.step(a[None])
            assert rs == rv[0]
            np.testing.assert_array_equal(info_s["channel_gain"], info_v["channel_gain"][0])
        assert isinstance(vec.unwrapped._fading.channels[0], CorrelatedChannel)
    # a batch: every copy its own Markov channel; the restarted copies start anew
    vec = gym.make_vec(
        ENV_ID, num_envs=4, vectorization_mode="vector_entry_point", episode_rounds=3, **MOBILE
    )
    vec.reset(seed=9)
    copies = vec.unwrapped._fading
    for _ in range(4):
        vec.step(np.zeros((4, 20)))
    for ch in copies.channels:
        assert ch.pos.shape == (20, 2) and ch.vel.shape == (20, 2)
        np.testing.assert_array_equal(ch.mean_db, cell_gain_db(vec.unwrapped.config, ch.pos))


def test_copy_channels_follow_the_config():
    assert isinstance(copy_channels(FedLoRAConfig(), 2), CopyBlocks)
    assert isinstance(copy_channels(FedLoRAConfig(mobility_speed_mps=1.0), 2), CopyChannels)


def test_checkpoint_resumes_a_correlated_episode_exactly(tmp_path):
    kw = {"num_devices": 6, "surrogate": {"noise": 0.01}, **MOBILE}

    def run(split):  # the saved channel must not follow the live one: 3 live steps
        return play(
            kw, tmp_path / "ck.pkl", split_at=7 if split else None, steps=20, seed=9, live_steps=3
        )

    (whole, ch_whole), (resumed, ch_resumed) = run(False), run(True)
    np.testing.assert_array_equal(whole, resumed)
    assert isinstance(ch_resumed, CorrelatedChannel)
    for name in ("pos", "vel", "re", "im", "mean_db"):
        np.testing.assert_array_equal(getattr(ch_whole, name), getattr(ch_resumed, name))


@pytest.mark.parametrize(
    "field,value",
    [
        ("fading_correlation", 1.0),
        ("fading_correlation", -0.1),
        ("mobility_speed_mps", -1.0),
        ("mobility_memory", 1.0),
        ("round_duration_s", 0.0),
        ("mobility_speed_mps", 60.0),
    ],
)
def test_invalid_channel_fields_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        gym.make(ENV_ID, **{field: value})


# ------------------------------------------------------------------ hindsight on them
def test_hindsight_replays_the_correlated_channels_whatever_the_actions():
    """The hindsight bound replays an episode with all-zero actions; with correlated channels
    the channels still depend on the seed alone, and the bound holds for a policy's episode."""
    env = gym.make(ENV_ID, episode_rounds=40, **MOBILE)
    gain, bits = episode_channels(env, 5)
    env.reset(seed=5)
    env.action_space.seed(0)
    played = []
    for _ in range(40):
        played.append(env.step(env.action_space.sample())[-1]["channel_gain"])
    np.testing.assert_array_equal(gain, np.array(played))
    assert _lag1(gain) > 0.5  # persistent channels
    result = episode_hindsight(env, 5)
    assert result.value <= result.bound + 1e-9 and result.cost <= 40 * (1 + 1e-9)
