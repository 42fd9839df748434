"""The FedLoRA env: Gymnasium API, seeding, action handling, config validation, vector env."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs.fedlora import dynamics
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.fedlora.formulas import device_delay
from edgeft.envs.fedlora.surrogate import SurrogateParams, contraction
from gymnasium.utils.env_checker import check_env

import edgeft  # noqa: F401  (registers the ids)

ENV_ID = "edgeft/FedLoRAScheduling-v0"
MODES = ("bandwidth", "count", "subset")


@pytest.mark.parametrize("mode", MODES)
def test_check_env(mode):
    env = gym.make(ENV_ID, action_mode=mode, num_devices=8)
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("mode", MODES)
def test_sb3_check_env(mode):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    sb3_check_env(gym.make(ENV_ID, action_mode=mode, num_devices=6).unwrapped, warn=False)


def _rollout(seed, mode="bandwidth", steps=15, **kw):
    env = gym.make(ENV_ID, action_mode=mode, **kw)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(123)
    out = [obs]
    for _ in range(steps):
        obs, r, _, _, info = env.step(env.action_space.sample())
        out += [obs, np.array([r, info["delay"]])]
    return out


@pytest.mark.parametrize("mode", MODES)
def test_equal_seeds_equal_trajectories_different_seeds_differ(mode):
    a, b, c = _rollout(5, mode), _rollout(5, mode), _rollout(6, mode)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_observation_decodes_to_the_state_the_env_uses():
    env = gym.make(ENV_ID, num_devices=10)
    obs, _ = env.reset(seed=0)
    u = env.unwrapped
    for _ in range(5):
        dec = u.decode_observation(obs)
        action = np.full(10, 0.1)
        obs, _, _, _, info = env.step(action)
        np.testing.assert_array_equal(dec.gain, info["channel_gain"])
        np.testing.assert_array_equal(dec.bits, info["bits"])
        assert u.decode_observation(obs).queue == info["delay_queue"]
        assert u.decode_observation(obs).round == dec.round + 1


def test_step_info_is_consistent_with_the_formulas():
    cfg = FedLoRAConfig(num_devices=12)
    env = gym.make(ENV_ID, config=cfg)
    obs, _ = env.reset(seed=1)
    q = 0.0
    for _ in range(10):
        action = np.random.default_rng(0).random(12) * (np.arange(12) % 3 != 0) / 6
        obs, r, term, trunc, info = env.step(action)
        for key in ("channel_gain", "scheduled", "bandwidth", "delay", "delay_queue", "cost"):
            assert key in info
        np.testing.assert_allclose(info["bandwidth"], action * cfg.bandwidth_hz)
        np.testing.assert_array_equal(info["scheduled"], action > 0)
        d = device_delay(info["bits"], info["bandwidth"], info["channel_gain"], cfg.noise_psd)
        assert info["delay"] == pytest.approx(d[info["scheduled"]].max(), rel=1e-14)
        assert info["cost"] == pytest.approx(info["delay"] / cfg.budget_s)
        q = max(0.0, q + info["delay"] / cfg.budget_s - 1.0)
        assert info["delay_queue"] == pytest.approx(q)
        assert np.isfinite(r) and not term and not trunc


def test_progress_reward_and_drift_plus_penalty_reward():
    env = gym.make(ENV_ID, num_devices=6, reward="drift-plus-penalty", zeta=0.7)
    obs, _ = env.reset(seed=2)
    q = 0.0
    for _ in range(6):
        obs, r, _, _, info = env.step(np.full(6, 1 / 6))
        x = info["delay_ratio"]
        assert r == pytest.approx(6 - 0.7 * (q * x + 0.5 * (x - 1) ** 2))
        q = info["delay_queue"]
    env = gym.make(ENV_ID, num_devices=6, delay_penalty=2.0, reward="progress")
    env.reset(seed=2)
    params = env.unwrapped.config.surrogate
    loss = params.initial_loss
    for _ in range(4):
        _, r, _, _, info = env.step(np.full(6, 1 / 6))
        gap = params.initial_loss - params.loss_floor
        want = 100.0 * (loss - info["loss"]) / gap - 2.0 * max(0.0, info["delay_ratio"] - 1)
        assert r == pytest.approx(want)
        loss = info["loss"]


@pytest.mark.parametrize("vector", [False, True])
def test_progress_budget_reward_prices_the_time_average_excess(vector):
    """The default reward: per-round progress minus the growth of max(0, sum of (x - 1)); over
    an episode the penalties add up to delay_penalty x T x max(0, mean x - 1) exactly, so rounds
    under the budget pay for rounds over it (a per-round penalty would not)."""
    T, K, pen = 30, 6, 3.0
    actions = np.random.default_rng(0).integers(0, K + 1, size=T)  # devices per round
    if vector:
        env = gym.make_vec(
            ENV_ID,
            num_envs=2,
            vectorization_mode="vector_entry_point",
            num_devices=K,
            episode_rounds=T,
            delay_penalty=pen,
            action_mode="count",
        )
        env.reset(seed=5)
        steps = [env.step(np.array([a, a])) for a in actions]
        rewards = np.array([s[1][0] for s in steps])
        infos = [{k: v[0] for k, v in s[4].items() if not k.startswith("_")} for s in steps]
        sur = env.unwrapped.config.surrogate
        gap = sur.initial_loss - sur.loss_floor
    else:
        env = gym.make(
            ENV_ID, num_devices=K, episode_rounds=T, delay_penalty=pen, action_mode="count"
        )
        assert env.unwrapped.config.reward == "progress-budget"
        env.reset(seed=5)
        steps = [env.step(int(a)) for a in actions]
        rewards = np.array([s[1] for s in steps])
        infos = [s[4] for s in steps]
        p = env.unwrapped.config.surrogate
        gap = p.initial_loss - p.loss_floor
    x = np.array([i["delay_ratio"] for i in infos])
    loss = np.array([i["loss"] for i in infos])
    p = env.unwrapped.config.surrogate
    progress = 100.0 * (p.initial_loss - loss[-1]) / gap
    assert x.mean() > 1.0 and x.min() < 1.0  # some rounds over, some under the budget
    assert rewards.sum() == pytest.approx(progress - pen * T * max(0.0, x.mean() - 1.0))
    running = np.maximum(0.0, np.cumsum(x - 1.0))
    penalties = np.diff(np.r_[0.0, running]) * pen
    drops = -np.diff(np.r_[p.initial_loss, loss]) * 100.0 / gap
    np.testing.assert_allclose(rewards, drops - penalties, rtol=1e-9, atol=1e-9)


def test_truncation_after_episode_rounds():
    env = gym.make(ENV_ID, episode_rounds=4)
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[3] for _ in range(4)]
    assert flags == [False, False, False, True]


@pytest.mark.parametrize(
    "mode,bad,match",
    [
        ("bandwidth", np.ones(5), "shape"),
        ("bandwidth", np.full(8, np.nan), "finite"),
        ("bandwidth", np.r_[np.ones(7), np.inf], "finite"),
        ("bandwidth", "lots", "could not convert"),
        ("count", 2.5, "integer"),
        ("count", [1, 2], "shape"),
        ("count", np.nan, "finite"),
        ("subset", np.ones(3), "shape"),
    ],
)
def test_malformed_actions_raise(mode, bad, match):
    env = gym.make(ENV_ID, num_devices=8, action_mode=mode)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.unwrapped.step(bad)


def test_over_full_shares_are_projected_and_reported_out_of_range_refused():
    env = gym.make(ENV_ID, num_devices=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"entry 2 = -0\.3, outside \[0, 1\]"):
        env.unwrapped.step(np.array([0.8, 0.8, -0.3, 0.4]))
    _, _, _, _, info = env.unwrapped.step(np.array([0.8, 0.8, 0.0, 0.4]))
    np.testing.assert_allclose(info["bandwidth"] / 10e6, [0.4, 0.4, 0.0, 0.2])
    assert info["action_projected"] and not info["scheduled"][2]
    _, _, _, _, info = env.unwrapped.step(np.array([0.2, 0.2, 0.0, 0.1]))
    assert not info["action_projected"]
    env = gym.make(ENV_ID, num_devices=4, action_mode="count")
    env.reset(seed=0)
    _, _, _, _, info = env.unwrapped.step(4)
    assert info["num_scheduled"] == 4 and not info["action_projected"]
    assert info["bandwidth"].sum() == pytest.approx(10e6)


@pytest.mark.parametrize(
    "mode,action,match",
    [
        ("count", 99, r"integer count in \[0, 20\]"),
        ("count", -1, r"integer count in \[0, 20\]"),
        ("count", 2.5, r"integer count in \[0, 20\]"),
        ("count", np.array([3, 4]), "integer count"),
        ("subset", np.full(20, 0.5), "entries other than 0 and 1"),
        ("subset", np.r_[-1.0, np.zeros(19)], "entries other than 0 and 1"),
        ("subset", np.r_[2.0, np.zeros(19)], "entries other than 0 and 1"),
        ("subset", np.zeros((20, 1)), r"of shape \((1, )?20,?\), got shape"),
        ("bandwidth", np.zeros((20, 1)), r"of shape \((1, )?20,?\), got shape"),
        ("bandwidth", np.zeros(21), r"of shape \((1, )?20,?\), got shape"),
    ],
)
def test_actions_outside_the_space_raise_naming_the_allowed_values(mode, action, match):
    for env in (
        gym.make(ENV_ID, action_mode=mode),
        gym.make_vec(ENV_ID, num_envs=1, vectorization_mode="vector_entry_point", action_mode=mode),
    ):
        env.reset(seed=0)
        vector = hasattr(env, "num_envs")
        with pytest.raises(ValueError, match=match):
            env.step(np.asarray(action)[None] if vector else action)


def test_valid_count_and_subset_actions_in_every_accepted_form():
    env = gym.make(ENV_ID, action_mode="count")
    env.reset(seed=0)
    for a in (3, np.int64(3), np.array(3), np.array([3]), 3.0):
        assert env.step(a)[4]["num_scheduled"] == 3
    env = gym.make(ENV_ID, action_mode="subset")
    env.reset(seed=0)
    pick = np.zeros(20, dtype=np.int8)
    pick[[1, 5]] = 1
    for a in (pick, pick.astype(bool), pick.astype(np.float64)):
        info = env.step(a)[4]
        assert np.array_equal(info["scheduled"], pick.astype(bool))
        assert not info["action_projected"]


def test_training_needs_real_mode_and_known_fields():
    with pytest.raises(ValueError, match="only used with mode='real'"):
        gym.make(ENV_ID, training={"lr": 0.1})
    with pytest.raises(ValueError, match=r"unknown training field\(s\) \['lrr'\]"):
        gym.make(ENV_ID, mode="real", training={"lrr": 0.1})


def test_count_mode_schedules_the_strongest_devices():
    env = gym.make(ENV_ID, num_devices=10, action_mode="count")
    obs, _ = env.reset(seed=3)
    gain = env.unwrapped.decode_observation(obs).gain
    _, _, _, _, info = env.step(4)
    assert set(np.flatnonzero(info["scheduled"])) == set(np.argsort(-gain)[:4])
    # min-max-delay split: every scheduled device has the same delay
    d = info["device_delay"][info["scheduled"]]
    np.testing.assert_allclose(d, d.max(), rtol=1e-9)


@pytest.mark.parametrize(
    "field,value",
    [
        ("num_devices", 0),
        ("num_devices", 2.5),
        ("bandwidth_hz", -1.0),
        ("noise_psd", 0.0),
        ("bits_per_round", float("nan")),
        ("delay_budget", -2.0),
        ("delay_budget_per_bit", 0.0),
        ("episode_rounds", 0),
        ("action_mode", "shares"),
        ("reward", "loss"),
        ("zeta", -1.0),
        ("cell_radius_m", 400.0),
        ("mode", "fast"),
        ("preset", "icml"),
        ("tx_power_w", True),
    ],
)
def test_invalid_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        gym.make(ENV_ID, **{field: value})


def test_config_sources_and_presets():
    with pytest.raises(ValueError, match="unknown FedLoRAConfig field"):
        gym.make(ENV_ID, num_device=3)
    env = gym.make(ENV_ID, config={"num_devices": 5}, zeta=2.0)
    assert env.unwrapped.config.num_devices == 5 and env.unwrapped.config.zeta == 2.0
    paper = gym.make(ENV_ID, preset="paper").unwrapped.config
    assert paper.delay_budget_per_bit == 0.05e-3 and paper.episode_rounds == 5000
    assert paper.budget_s == pytest.approx(0.05e-3 * paper.bits_per_round)
    cfg = dataclasses.replace(FedLoRAConfig(), num_devices=7)
    assert gym.make(ENV_ID, config=cfg).unwrapped.config.num_devices == 7
    with pytest.raises(ValueError, match="surrogate.rate"):
        gym.make(ENV_ID, surrogate={"rate": 2.0})


def test_surrogate_follows_theorem1_shape():
    """rho(N) = 2 tau sigma(N) up to scale: compare with the printed sigma(N) of FT eq. (14)."""
    k, lip, eta, tau = 20, 0.5, 1.0, 0.01
    sigma = lambda n: -(lip * eta**2 - eta) / k**2 - (k - n) * lip / (2 * n * (k - 1) * k**2)  # noqa: E731
    a = (eta - lip * eta**2) / k**2
    params = SurrogateParams(rate=2 * tau * a, gap_ratio=lip / (2 * a * k**2), loss_floor=0.1)
    n = np.arange(1, k + 1)
    np.testing.assert_allclose(contraction(n, k, params), 2 * tau * sigma(n), rtol=1e-12)
    rho = contraction(np.arange(0, k + 1), k, params)
    assert rho[0] == 0 and np.all(np.diff(rho) > 0) and np.all(np.diff(rho[1:], 2) < 0)


def test_surrogate_head_share_adds_the_linear_head_term():
    """rho = rate ((1 - h) theorem1(N) + h N / K): the scalar and array paths, increasing,
    concave."""
    k = 20
    base = SurrogateParams(rate=0.05, gap_ratio=0.4, head_share=0.0)
    heads = SurrogateParams(rate=0.05, gap_ratio=0.4, head_share=1.0)
    mix = SurrogateParams(rate=0.05, gap_ratio=0.4, head_share=0.3)
    n = np.arange(0, k + 1)
    t1, lin = contraction(n, k, base), contraction(n, k, heads)
    np.testing.assert_allclose(lin, 0.05 * n / k, rtol=1e-15)
    np.testing.assert_allclose(contraction(n, k, mix), 0.7 * t1 + 0.3 * lin, rtol=1e-14)
    for m in range(0, k + 1):  # the single env's scalar path equals the array path
        assert contraction(m, k, mix) == pytest.approx(contraction(n, k, mix)[m], rel=1e-14)
    rho = contraction(n, k, mix)
    assert rho[0] == 0 and np.all(np.diff(rho) > 0) and np.all(np.diff(rho[1:], 2) <= 1e-18)
    assert rho[k] == pytest.approx(0.05)  # every device: the full rate, whatever h
    with pytest.raises(ValueError, match="surrogate.head_share"):
        SurrogateParams(head_share=1.5)


def test_surrogate_onset_warm_up():
    """w(gap) = onset + (1 - onset)(1 - gap/gap_0): slow first rounds, full rate near the floor;
    onset = 1 is the plain geometric step; scalar and array paths agree."""
    from edgeft.envs.fedlora.surrogate import step_loss

    k = 20
    plain = SurrogateParams(initial_loss=0.7, loss_floor=0.3, rate=0.05, onset=1.0)
    warm = SurrogateParams(initial_loss=0.7, loss_floor=0.3, rate=0.05, onset=0.1)
    rho = contraction(k, k, plain)
    assert step_loss(0.7, k, k, plain) == pytest.approx(0.3 + (1 - rho) * 0.4, rel=1e-15)
    assert step_loss(0.7, k, k, warm) == pytest.approx(0.3 + (1 - 0.1 * rho) * 0.4, rel=1e-15)
    mid = 0.3 + 0.5 * 0.4  # half the gap closed: w = 0.1 + 0.9 * 0.5
    assert step_loss(mid, k, k, warm) == pytest.approx(0.3 + (1 - 0.55 * rho) * 0.2, rel=1e-15)
    losses = np.array([0.7, mid, 0.31])
    counts = np.array([k, k, 3])
    batch = step_loss(losses, counts, k, warm)
    for i in range(3):
        assert step_loss(float(losses[i]), int(counts[i]), k, warm) == pytest.approx(
            batch[i], rel=1e-14
        )
    with pytest.raises(ValueError, match="surrogate.onset"):
        SurrogateParams(onset=0.0)


def test_more_devices_learn_faster_in_the_surrogate():
    losses = {}
    for n in (1, 10, 20):
        env = gym.make(ENV_ID, num_devices=20, action_mode="count")
        env.reset(seed=0)
        for _ in range(50):
            _, _, _, _, info = env.step(n)
        losses[n] = info["loss"]
    assert losses[20] < losses[10] < losses[1]


def test_vector_env_equals_single_env_and_autoresets():
    v = gym.make_vec(ENV_ID, num_envs=1, vectorization_mode="vector_entry_point", episode_rounds=5)
    s = gym.make(ENV_ID, episode_rounds=5)
    ov, _ = v.reset(seed=11)
    os_, _ = s.reset(seed=11)
    rng = np.random.default_rng(0)
    for _ in range(5):
        np.testing.assert_array_equal(ov[0], os_)
        a = rng.random(20) / 10
        ov, rv, _, tv, iv = v.step(a[None])
        os_, rs, _, ts, is_ = s.step(a)
        assert rv[0] == pytest.approx(rs, rel=1e-12) and tv[0] == ts
        assert iv["delay"][0] == pytest.approx(is_["delay"], rel=1e-12)
    # next step resets the finished copy (NEXT_STEP autoreset)
    ov, rv, _, tv, _ = v.step(np.zeros((1, 20)))
    assert rv[0] == 0.0 and not tv[0] and v.unwrapped.decode_observation(ov).round[0] == 0


@pytest.mark.parametrize("noise", [0.0, 0.05])
@pytest.mark.parametrize("mode", MODES)
def test_vector_env_batches_match_per_copy_dynamics(mode, noise):
    """The single and the vector env step the same typed State to the same result: copy i's
    state of a vector env, put into a single env, steps to the same reward, info and state (with
    loss noise: the single env's generator placed at copy i's own generator's state)."""
    for seed in range(6):
        v = gym.make_vec(
            ENV_ID,
            num_envs=8,
            vectorization_mode="vector_entry_point",
            action_mode=mode,
            num_devices=6,
            episode_rounds=5,
            surrogate={"noise": noise},
        )
        v.reset(seed=seed)
        v.action_space.seed(seed)
        cfg = v.unwrapped.config
        single = gym.make(ENV_ID, config=cfg).unwrapped
        single.reset(seed=0)
        for _ in range(7):  # across an autoreset (episodes of 5 rounds)
            before = v.unwrapped.state
            rng_before = [r.bit_generator.state for r in v.unwrapped._rngs]
            live = ~v.unwrapped._needs_reset
            a = v.action_space.sample()
            if mode == "bandwidth":
                a[a < 0.2] = 0.0  # some devices unscheduled
            _, r, _, _, info = v.step(a)
            after = v.unwrapped.state
            assert set(info) == {*dynamics.INFO_KEYS, *(f"_{k}" for k in dynamics.INFO_KEYS)}
            for i in np.flatnonzero(live):
                single._state = before.index(i)
                rng = np.random.default_rng()
                rng.bit_generator.state = rng_before[i]  # each copy draws from its own
                single._np_random = rng
                _, rs, _, _, inf_s = single.step(a[i])
                assert rs == r[i]
                assert set(inf_s) == set(dynamics.INFO_KEYS)
                for key, val in inf_s.items():
                    np.testing.assert_array_equal(val, info[key][i], err_msg=key)
                s_after = single._state
                for name in ("age", "queue", "t", "loss", "accuracy"):
                    np.testing.assert_array_equal(
                        getattr(s_after, name), getattr(after.index(i), name), err_msg=name
                    )
            if noise:  # the noise is drawn (a round without devices leaves the loss as it is)
                moved = live & (info["num_scheduled"] > 0)
                assert np.unique(info["loss"][moved]).size == moved.sum()


def test_checkpoint_resume_is_exact(tmp_path):
    from tests.fedlora.checkpointing import play

    def run(split):
        return play(
            {"num_devices": 6, "surrogate": {"noise": 0.01}},
            tmp_path / "ck.pkl",
            split_at=6 if split else None,
            steps=12,
            seed=9,
        )[0]

    np.testing.assert_array_equal(run(False), run(True))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        gym.make(ENV_ID).unwrapped.load_checkpoint(tmp_path / "missing.pkl")


@pytest.mark.parametrize(
    "algo,mode",
    [("PPO", "bandwidth"), ("A2C", "bandwidth"), ("SAC", "bandwidth"), ("DQN", "count")],
)
def test_sb3_algorithms_accept_the_env(algo, mode):
    import stable_baselines3 as sb3

    env = gym.make(ENV_ID, action_mode=mode, num_devices=5, episode_rounds=16)
    kwargs = (
        {"learning_starts": 8, "buffer_size": 200, "batch_size": 8}
        if algo in ("SAC", "DQN")
        else {}
    )
    if algo in ("PPO",):
        kwargs = {"n_steps": 16, "batch_size": 8}
    if algo == "A2C":
        kwargs = {"n_steps": 8}
    from stable_baselines3.common.logger import Logger

    model = getattr(sb3, algo)("MlpPolicy", env, seed=0, device="cpu", **kwargs)
    model.set_logger(Logger(None, []))  # no SB3-* log folder in the temp dir
    model.learn(total_timesteps=32)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(np.asarray(action).astype(env.action_space.dtype))
    env.step(action)


def test_single_env_projection_equals_the_batched_rule():
    from edgeft.envs.fedlora.actions import project_shares

    rng = np.random.default_rng(0)
    for _ in range(2000):
        a = rng.normal(0.3, 0.6, size=rng.integers(1, 8))
        single, p_single = project_shares(a)
        batched, p_batched = project_shares(a[None])
        np.testing.assert_array_equal(single, batched[0])
        assert bool(p_single) == bool(p_batched[0])
        assert np.all(single >= 0) and single.sum() <= 1 + 1e-15


def test_vector_info_keys_have_masks_and_match_the_single_env():
    v = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", num_devices=5)
    v.reset(seed=0)
    _, _, _, _, info = v.step(v.action_space.sample())
    keys = {k for k in info if not k.startswith("_")}
    assert all(f"_{k}" in info for k in keys)
    single = gym.make(ENV_ID, num_devices=5)
    single.reset(seed=0)
    _, _, _, _, info_s = single.step(single.action_space.sample())
    assert keys <= set(info_s)
