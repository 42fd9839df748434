"""The MEC env: Gymnasium API, seeding, observation decoding, actions, queues, config errors."""

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs.mec import reward as R
from edgeft.envs.mec.actions import decision_to_fractions
from edgeft.envs.mec.config import MECConfig
from edgeft.envs.mec.env import MECOffloadingEnv
from edgeft.envs.mec.resources import fast_resource_rule
from gymnasium.utils.env_checker import check_env

import edgeft  # noqa: F401  (registers the ids)

ENV_ID = "edgeft/MECOffloading-v0"
MODES = MECConfig.ACTION_MODES
SMALL = {"num_users": 6, "num_servers": 3, "episode_rounds": 5}


@pytest.mark.parametrize("mode", MODES)
def test_check_env(mode):
    env = gym.make(ENV_ID, action_mode=mode, **SMALL)
    check_env(env.unwrapped, skip_render_check=True)


def _rollout(mode, seed, steps=5):
    env = gym.make(ENV_ID, action_mode=mode, **SMALL)
    env.action_space.seed(123)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        out += [obs, np.array([r]), info["energy_queue"]]
    return out


@pytest.mark.parametrize("mode", MODES)
def test_seeding(mode):
    a, b, c = _rollout(mode, 7), _rollout(mode, 7), _rollout(mode, 8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_truncates_after_episode_rounds_and_rounds_are_linked():
    env = gym.make(ENV_ID, **SMALL)
    obs, _ = env.reset(seed=0)
    s0 = env.unwrapped.decode_observation(obs)
    trunc, steps = False, 0
    while not trunc:
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        steps += 1
        assert not term
    assert steps == SMALL["episode_rounds"]
    s1 = env.unwrapped.decode_observation(obs)
    # users moved a little, fading correlated, static parameters kept
    assert 0 < np.abs(s1.user_pos - s0.user_pos).max() < 1000
    np.testing.assert_array_equal(s1.p_max, s0.p_max)
    rho = np.corrcoef(s0.fading_re.ravel(), s1.fading_re.ravel())[0, 1]
    assert rho > 0.3  # 0.9^5 ~ 0.59 in expectation


def test_observation_decodes_exactly_to_the_env_state():
    env = gym.make(ENV_ID, **SMALL).unwrapped
    obs, _ = env.reset(seed=3)
    state = env.decode_observation(obs)
    for name in ("user_pos", "fading_re", "tokens", "energy_budget", "b_max"):
        np.testing.assert_array_equal(getattr(state, name), getattr(env.state, name))
    np.testing.assert_array_equal(env.instance_of(obs).gain, env.instance_of(obs).gain)


def test_full_mode_expresses_a_decision_exactly_and_cost_matches_formula():
    env = gym.make(ENV_ID, **SMALL).unwrapped
    obs, _ = env.reset(seed=1)
    inst = env.instance_of(obs)
    dec = fast_resource_rule(
        inst, np.array([1, 2, 3, 4, 5, 6.0]), np.array([0, 1, 2, 0, 1, 2]), env.config.weights
    )
    _, reward, _, _, info = env.step(decision_to_fractions(inst, dec))
    np.testing.assert_allclose(info["bandwidth"], dec.bandwidth, rtol=1e-14)
    np.testing.assert_allclose(info["freq_edge"], dec.freq_edge, rtol=1e-14)
    assert not info["action_projected"] or max(info["projection"].values()) < 1e-12
    want = R.weighted_cost(inst, dec, env.config.weights)
    assert info["objective"] == pytest.approx(want, rel=1e-12)
    for key in (
        "alpha",
        "server",
        "power",
        "bandwidth",
        "freq_user",
        "freq_edge",
        "energy",
        "delay",
        "stability",
        "cost",
        "energy_queue",
    ):
        assert key in info


def test_energy_queue_dynamics_and_reward_against_a_loop():
    env = gym.make(ENV_ID, **SMALL).unwrapped
    obs, _ = env.reset(seed=2)
    q = np.zeros(6)
    total_queue_term = 0.0
    for _ in range(5):
        budget = env.state.energy_budget.copy()
        obs, reward, _, _, info = env.step(env.action_space.sample())
        q_new = np.array([max(0.0, q[n] + info["device_energy"][n] - budget[n]) for n in range(6)])
        np.testing.assert_allclose(info["energy_queue"], q_new, rtol=1e-12)
        term = np.mean((q_new - q) / budget)
        assert reward == pytest.approx(-(info["objective"] + env.config.energy_penalty * term))
        total_queue_term += term
        q = q_new
    assert total_queue_term == pytest.approx(np.mean(q / budget))  # telescopes


def test_projection_is_reported():
    env = gym.make(ENV_ID, **SMALL).unwrapped
    env.reset(seed=0)
    # alpha and server fractional; bandwidth and GPU shares of 0.9 on one server sum to more than 1
    a = np.tile([30.6, 1.7, 1.0, 0.9, 1.0, 0.9], (6, 1))
    _, _, _, _, info = env.step(a)
    assert info["action_projected"]
    assert info["projection"]["alpha"] == pytest.approx(0.4)
    assert info["projection"]["server"] == pytest.approx(0.3)
    assert info["projection"]["bandwidth"] > 0.5  # 6 users x 0.9 on one server scaled to 1/6
    assert max(info["violations"].values()) < 1e-12
    np.testing.assert_allclose(info["bandwidth"].sum(), env.state.b_max[2], rtol=1e-12)
    # beyond the bounds the action is refused, not projected
    with pytest.raises(ValueError, match=r"user 0's alpha = 40\.0, outside \[1, 31\]"):
        env.step(np.tile([40.0, 9.0, 2.0, 0.9, 1.5, 0.9], (6, 1)))


@pytest.mark.parametrize(
    "mode,bad",
    [
        ("full", np.zeros((5, 6))),
        ("full", np.full((6, 6), np.nan)),
        ("box", np.zeros(7, dtype=np.float32)),
        ("box", np.full(36, np.inf)),
        ("discrete", np.full(12, 0.5)),
        ("discrete", np.full(12, 99)),
        ("full", "not an action"),
    ],
)
def test_malformed_actions_raise(mode, bad):
    env = gym.make(ENV_ID, action_mode=mode, **SMALL).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(bad)


@pytest.mark.parametrize(
    "field,value",
    [
        ("num_users", 0),
        ("num_servers", 1.5),
        ("num_layers", 1),
        ("w_energy", -1.0),
        ("episode_rounds", 0),
        ("action_mode", "continuous"),
        ("preset", "nope"),
        ("mode", "fake"),
        ("fading_correlation", 1.5),
        ("p_max_range_w", (2.0, 1.0)),
        ("tokens_max", 10),
        ("upload_delay", "yes"),
    ],
)
def test_invalid_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field.split("_range")[0]):
        MECOffloadingEnv(**{field: value})


def test_all_weights_zero_rejected_and_unknown_field():
    with pytest.raises(ValueError, match="w_energy"):
        MECConfig(w_energy=0.0, w_delay=0.0, w_stability=0.0)
    with pytest.raises(ValueError, match="unknown"):
        MECOffloadingEnv(num_user=3)


def test_paper_preset_values():
    env = gym.make(ENV_ID, preset="paper").unwrapped
    c = env.config
    assert (c.num_users, c.num_servers, c.num_layers) == (50, 10, 32)
    assert c.flops_per_cycle_user == 1.0 and c.upload_delay is False and c.w_stability == 1.0


def test_real_mode_without_the_engine_raises_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "edgeft.training.mec", None)  # as if torch were missing
    with pytest.raises(RuntimeError, match="training engine"):
        MECOffloadingEnv(mode="real", **SMALL)


def test_training_config_is_validated():
    with pytest.raises(ValueError, match="unknown training field"):
        MECConfig(training={"modle": "tiny-bert"})
    with pytest.raises(ValueError, match="training.lr"):
        MECConfig(training={"lr": -1.0})
    assert MECConfig(mode="real", training={"model": "tiny-bert"}).training.model == "tiny-bert"


def test_render_ansi():
    env = gym.make(ENV_ID, render_mode="ansi", **SMALL)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert "cost" in env.render()
