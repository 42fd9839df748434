"""The ``"allowance"`` action mode of the FedLoRA env (Box(-1, 1, (1,)): the round's delay
allowance; the longest channel-ordered prefix that fits it, min-max-delay split), its features
(``fedlora-allowance``) and the instance distribution that draws K (``fedlora-sizes``)."""

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs.fedlora.actions import (
    ALLOWANCE_MAX,
    allowance_counts,
    channel_order,
    decision_to_action,
)
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.fedlora.formulas import min_common_delay
from gymnasium.utils.env_checker import check_env

import edgeft  # noqa: F401  (registers the envs)

ENV_ID = "edgeft/FedLoRAScheduling-v0"


def _prefix_delays(gain, bits, config):
    """D*(S_n) for n = 0..K by the batched solver on one mask per prefix (the reference)."""
    k = gain.shape[0]
    order = channel_order(gain, bits)
    masks = np.zeros((k + 1, k), dtype=bool)
    for n in range(1, k + 1):
        masks[n, order[:n]] = True
    delay, _ = min_common_delay(
        np.broadcast_to(bits, masks.shape),
        np.broadcast_to(gain, masks.shape),
        config.noise_psd,
        config.bandwidth_hz,
        masks,
    )
    return np.where(masks.any(axis=1), delay, 0.0), masks


def test_space_is_the_same_for_every_k_and_passes_the_checkers():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    assert "allowance" in FedLoRAConfig.ACTION_MODES
    spaces = [gym.make(ENV_ID, action_mode="allowance", num_devices=k).action_space for k in (1, 7)]
    assert spaces[0] == spaces[1] == gym.spaces.Box(-1.0, 1.0, (1,), np.float64)
    check_env(gym.make(ENV_ID, action_mode="allowance", num_devices=5).unwrapped)
    sb3_check_env(gym.make(ENV_ID, action_mode="allowance", num_devices=5).unwrapped, warn=False)


@pytest.mark.parametrize("k", [1, 4, 12])
def test_schedules_the_longest_prefix_that_fits_the_allowance(k):
    """Against brute force: every prefix's D* from the batched solver; the env schedules the
    longest prefix with D* <= a and splits B as min_common_delay does for it."""
    env = gym.make(ENV_ID, action_mode="allowance", num_devices=k, delay_budget_per_bit=1.5e-6)
    env.reset(seed=k)
    u = env.unwrapped
    cfg = u.config
    rng = np.random.default_rng(k)
    actions = np.r_[-1.0, 1.0, 0.0, rng.uniform(-1, 1, 30)]
    counts = set()
    for act in actions:
        state = u.state
        allowance = (act + 1.0) / 2.0 * ALLOWANCE_MAX * cfg.budget_s
        delays, masks = _prefix_delays(state.gain, state.bits, cfg)
        n = int(np.flatnonzero(delays <= allowance * (1 + 1e-12)).max())
        _, _, _, _, info = env.step(np.array([act]))
        np.testing.assert_array_equal(info["scheduled"], masks[n])
        if n:
            _, band = min_common_delay(
                state.bits, state.gain, cfg.noise_psd, cfg.bandwidth_hz, masks[n]
            )
            np.testing.assert_allclose(info["bandwidth"], band, rtol=1e-12)
            assert info["delay"] <= allowance * (1 + 1e-9)
        else:
            assert info["num_scheduled"] == 0 and info["delay"] == 0.0
        counts.add(n)
    assert 0 in counts and len(counts) >= min(k, 3)  # the actions reach several counts


def test_allowance_counts_match_gs_and_are_monotone():
    """At the allowance D-bar the count is GS's; counts never fall as the allowance grows."""
    from edgeft.policy import make_policy

    env = gym.make(ENV_ID, action_mode="count", num_devices=20)
    obs, _ = env.reset(seed=1)
    gs = make_policy("gs", env)
    cfg = env.unwrapped.config
    for _ in range(10):
        state = env.unwrapped.state
        levels = np.linspace(0.0, ALLOWANCE_MAX, 41) * cfg.budget_s
        n = allowance_counts(levels[None], cfg, state.gain[None], state.bits[None])[0]
        assert np.all(np.diff(n) >= 0) and n[0] == 0
        want, _ = gs.predict(obs)
        assert allowance_counts(np.array([cfg.budget_s]), cfg, state.gain, state.bits)[0] == want
        obs, *_ = env.step(want)


@pytest.mark.parametrize("name", ["lyapunov", "lyapunov-descending", "gs", "aaba"])
def test_reference_policies_play_allowance_mode_exactly(name):
    """decision_to_action's midpoint allowance reproduces each decision: the same schedules in
    "allowance" as in "count" mode over a whole episode."""
    from edgeft.policy import make_policy

    played = []
    for mode in ("count", "allowance"):
        env = gym.make(ENV_ID, action_mode=mode, episode_rounds=40)
        policy = make_policy(name, env)
        obs, _ = env.reset(seed=7)
        rows = []
        for _ in range(40):
            act, _ = policy.predict(obs)
            obs, _, _, _, info = env.step(act)
            rows.append(info["scheduled"].copy())
        played.append(np.array(rows))
    np.testing.assert_array_equal(played[0], played[1])
    assert played[0].sum(axis=1).std() > 0  # the schedules change from round to round


def test_decision_to_action_needs_the_round():
    cfg = FedLoRAConfig(action_mode="allowance", num_devices=3)
    with pytest.raises(ValueError, match="needs the round's gain and bits"):
        decision_to_action(np.ones(3, bool), np.ones(3), cfg)


def test_single_and_vector_env_agree():
    v = gym.make_vec(
        ENV_ID, num_envs=4, vectorization_mode="vector_entry_point", action_mode="allowance"
    )
    s = gym.make_vec(ENV_ID, num_envs=4, vectorization_mode="sync", action_mode="allowance")
    o1, _ = v.reset(seed=2)
    o2, _ = s.reset(seed=2)
    rng = np.random.default_rng(0)
    for _ in range(30):
        act = rng.uniform(-1.0, 1.0, (4, 1))
        o1, r1, *_ = v.step(act)
        o2, r2, *_ = s.step(act)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)


@pytest.mark.parametrize(
    "action,match",
    [
        (np.array([1.5]), r"outside \[-1, 1\]"),
        (np.array([0.1, 0.2]), "one delay allowance"),
        (np.array([np.nan]), "finite"),
        ("wide", "could not convert"),
    ],
)
def test_malformed_actions_raise_before_anything_changes(action, match):
    env = gym.make(ENV_ID, action_mode="allowance", num_devices=4)
    env.reset(seed=0)
    before = env.unwrapped.state
    with pytest.raises(ValueError, match=match):
        env.step(action)
    assert env.unwrapped.state.t == before.t
    _, _, _, _, info = env.step(0.25)  # a scalar is one allowance
    assert not info["action_projected"]


def test_features_have_one_length_for_every_k_and_read_the_counts():
    from edgeft.agents.transforms import ALLOWANCE_LEVELS, get_transform
    from edgeft.envs.common import config_in_force

    sizes = set()
    for k in (3, 20, 100):
        env = gym.make(ENV_ID, action_mode="allowance", num_devices=k)
        obs, _ = env.reset(seed=k)
        cfg = config_in_force(env)
        feats = get_transform("fedlora-allowance", cfg)(obs)
        sizes.add(feats.shape)
        state = env.unwrapped.state
        delays, _ = _prefix_delays(state.gain, state.bits, cfg)
        want = np.array(
            [int(np.flatnonzero(delays <= a * cfg.budget_s).max()) for a in ALLOWANCE_LEVELS]
        )
        np.testing.assert_allclose(feats[: ALLOWANCE_LEVELS.size], want / k)
        np.testing.assert_allclose(
            feats[ALLOWANCE_LEVELS.size : 2 * ALLOWANCE_LEVELS.size], np.log10(1 + want)
        )
        assert np.all(np.isfinite(get_transform("fedlora-allowance", cfg)(np.zeros_like(obs))))
    assert len(sizes) == 1


def test_sizes_distribution_draws_k_and_keeps_general_unchanged():
    from edgeft.envs.fedlora.scenarios import ScenarioDistribution, get_distribution

    sizes = get_distribution("fedlora-sizes")
    ks = [sizes.draw("train", i)["num_devices"] for i in range(200)]
    assert min(ks) >= 14 and max(ks) <= 60 and len(set(ks)) > 20
    assert sizes.covers("num_devices", 30) and not sizes.covers("num_devices", 10)
    assert not sizes.covers("num_devices", 100)
    general = get_distribution("fedlora-general")
    fixed = ScenarioDistribution(num_devices=20)
    for i in range(5):  # K drawn after every other field: the K = 20 draws are as before
        draw = sizes.draw("test", i)
        assert {**draw, "num_devices": 20} == general.draw("test", i) == fixed.draw("test", i)
    with pytest.raises(ValueError, match="num_devices must be"):
        ScenarioDistribution(num_devices=(5, 2))


def test_scenario_env_refuses_spaces_that_depend_on_k():
    from edgeft.agents.transforms import get_transform
    from edgeft.envs.fedlora.scenarios import ScenarioEnv

    # refused when the env is built, not at whichever reset first draws another K
    with pytest.raises(ValueError, match="has the action space .*action_mode='allowance'"):
        ScenarioEnv("fedlora-sizes", base={"action_mode": "count", "episode_rounds": 2})
    with pytest.raises(ValueError, match="observations of shape .*'fedlora-allowance'"):
        ScenarioEnv("fedlora-sizes", base={"action_mode": "allowance", "episode_rounds": 2})

    def transform(obs, config):
        return get_transform("fedlora-allowance", config)(obs)

    env = ScenarioEnv(
        "fedlora-sizes", base={"action_mode": "allowance", "episode_rounds": 2}, transform=transform
    )
    ks = set()
    for _ in range(6):
        obs, info = env.reset()
        assert obs.shape == env.observation_space.shape
        assert env.raw_observation.shape == (3 * info["scenario"]["num_devices"] + 3,)
        ks.add(info["scenario"]["num_devices"])
        env.step(np.array([0.0]))
    assert len(ks) > 1


def test_a_clone_on_the_sizes_distribution_trains_and_plays_any_k(tmp_path):
    from edgeft.cli import main
    from edgeft.policy import make_policy

    out = tmp_path / "run"
    args = ["train", "--algo", "ppo", "--scenarios", "fedlora-sizes", "--init"]
    args += [
        "bc:lyapunov-descending",
        "--set",
        "episode_rounds=6",
        "--set",
        "action_mode=allowance",
    ]
    args += ["--timesteps", "0", "--n-envs", "2", "--eval-episodes", "0", "--out", str(out)]
    args += ["--no-progress", "--hp", "n_steps=8", "--hp", "batch_size=16"]
    import json

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"obs_transform": "fedlora-allowance"}))
    assert main([*args, "--config", str(cfg)]) in (0, None)
    log = [json.loads(x) for x in (out / "bc.jsonl").read_text().splitlines()]
    assert len(log) == 6 and all(0.0 <= r["train_agreement"] <= 1.0 for r in log)  # ppo default
    assert (out / "bc.png").stat().st_size > 10_000  # the cloning curves
    for k in (2, 50):
        env = gym.make(ENV_ID, action_mode="allowance", num_devices=k, episode_rounds=6)
        policy = make_policy(f"ppo:{out}/model", env)
        obs, _ = env.reset(seed=0)
        act, _ = policy.predict(obs, deterministic=True)
        assert act.shape == (1,) and -1.0 <= float(act[0]) <= 1.0
        env.step(act)


def test_the_error_message_states_the_allowance_scale():
    from edgeft.envs.fedlora.actions import ACTION_WHAT

    assert f"1 = {ALLOWANCE_MAX:g} D-bar" in ACTION_WHAT["allowance"]


def test_the_shipped_generalist_plays_any_k_within_the_budget():
    """``ppo:fedlora-general`` loads for K it never saw (7, 100) and keeps a short episode's
    budget under the guard."""
    from edgeft.policy import make_policy

    for k in (7, 100):
        env = gym.make(
            ENV_ID, action_mode="allowance", num_devices=k, episode_rounds=12, budget_guard=True
        )
        policy = make_policy("ppo:fedlora-general", env)
        obs, _ = env.reset(seed=3)
        delays, scheduled = [], []
        for _ in range(12):
            act, _ = policy.predict(obs, deterministic=True)
            obs, _, _, _, info = env.step(act)
            delays.append(info["cost"])
            scheduled.append(info["num_scheduled"])
        assert np.mean(delays) <= 1.0 + 1e-9 and max(scheduled) > 0
