"""The Gymnasium wrappers any SB3 user can apply, against plain loops over the raw env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from edgeft.agents.transforms import get_transform
from edgeft.agents.wrappers import FeatureObservation, TrainingReward, VecLagrangian
from edgeft.envs.common import config_in_force

import edgeft  # noqa: F401
from edgeft.suites import FEDLORA, MEC


def _sorted_by_gain(obs: np.ndarray, k: int) -> np.ndarray:
    """Plain-loop reference: devices strongest channel first (ties in index order), each of the
    three per-device blocks (gain dB, bits, age) reordered alike, the tail unchanged."""
    order = sorted(range(k), key=lambda i: (-obs[i], i))
    out = list(obs)
    for b in range(3):
        for j, i in enumerate(order):
            out[b * k + j] = obs[b * k + i]
    return np.array(out)


def test_sort_by_gain_wrapper_against_a_plain_loop():
    k = 6
    raw = gym.make(FEDLORA, num_devices=k, episode_rounds=5, action_mode="count")
    env = FeatureObservation(
        gym.make(FEDLORA, num_devices=k, episode_rounds=5, action_mode="count"), "sort-by-gain"
    )
    assert env.observation_space.shape == raw.observation_space.shape
    obs, _ = env.reset(seed=4)
    ref, _ = raw.reset(seed=4)
    for n in [3, 0, 6, 2, 5]:
        np.testing.assert_array_equal(obs, _sorted_by_gain(ref, k))
        assert env.observation_space.contains(obs)
        obs, _, term, trunc, _ = env.step(n)
        ref, *_ = raw.step(n)
    assert trunc and not term


def test_feature_wrapper_is_the_training_transform_for_both_families():
    for env_id, kw, name in (
        (FEDLORA, {"num_devices": 5}, "prefix-delay"),
        (
            MEC,
            {"num_users": 4, "num_servers": 2, "episode_rounds": 3, "action_mode": "discrete"},
            "mec-users",
        ),
    ):
        raw = gym.make(env_id, **kw)
        env = FeatureObservation(gym.make(env_id, **kw), name)
        fn = get_transform(name, config_in_force(raw))
        obs, _ = env.reset(seed=1)
        ref, _ = raw.reset(seed=1)
        np.testing.assert_array_equal(obs, fn(ref))
        assert obs.shape == env.observation_space.shape
    with pytest.raises(ValueError, match="for the mec envs"):
        FeatureObservation(gym.make(FEDLORA), "mec-users")


def test_training_reward_against_a_plain_loop():
    k = 5
    env = TrainingReward(gym.make(FEDLORA, num_devices=k, episode_rounds=8), {"type": "devices"})
    dpp = TrainingReward(
        gym.make(FEDLORA, num_devices=k, episode_rounds=8),
        {"type": "clipped-dpp", "zeta": 3.0, "clip": 2.0},
    )
    env.reset(seed=2)
    dpp.reset(seed=2)
    rng = np.random.default_rng(0)
    queue = 0.0
    for _ in range(8):
        act = rng.uniform(0, 1, k) * rng.integers(0, 2, k)
        _, r, _, _, info = env.step(act)
        _, r2, _, _, info2 = dpp.step(act)
        assert r == info["num_scheduled"] / k
        assert "cost" in info and info["cost"] == info["delay_ratio"]
        x = min(info2["delay_ratio"], 2.0)
        assert r2 == pytest.approx(
            info2["num_scheduled"] - 3.0 * (queue * x + 0.5 * (x - 1) ** 2), rel=1e-12, abs=1e-12
        )
        queue = info2["delay_queue"]
    with pytest.raises(ValueError, match="reward_shaping type must be one of"):
        TrainingReward(gym.make(FEDLORA), {"type": "progress"})


def test_readme_example_trains_ppo_lagrangian_on_plain_sb3():
    from edgeft.agents.lagrangian import PIDMultiplier
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    def make():
        env = gym.make(FEDLORA, action_mode="count", num_devices=4, episode_rounds=8)
        return FeatureObservation(TrainingReward(env, {"type": "devices"}), "prefix-delay")

    venv = VecLagrangian(
        DummyVecEnv([make] * 2), "fedlora", limit=1.0, multiplier=PIDMultiplier(limit=1.0, ki=0.05)
    )
    PPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0).learn(128)
    assert venv.multiplier is not None and venv.multiplier.updates == 128 // 16
    assert len(venv.log) == 8 and all(r["cost_limit"] == 1.0 for r in venv.log)


def test_participation_observation_counts_each_devices_rounds():
    from edgeft.agents.wrappers import ParticipationObservation

    k, T = 5, 8
    env = ParticipationObservation(
        gym.make(FEDLORA, num_devices=k, episode_rounds=T, action_mode="subset")
    )
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (4 * k + 3,)
    np.testing.assert_array_equal(obs[-k:], 0.0)
    rng = np.random.default_rng(0)
    counts = np.zeros(k)
    for _ in range(T):
        mask = (rng.random(k) < 0.5).astype(np.int8)
        obs, _, _, _, info = env.step(mask)
        counts += mask
        np.testing.assert_array_equal(obs[-k:], counts / T)
        np.testing.assert_array_equal(obs[:-k], env.unwrapped._obs())  # the env's own part
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(obs[-k:], 0.0)
    with pytest.raises(ValueError, match="needs a FedLoRA env"):
        ParticipationObservation(gym.make("edgeft/MECOffloading-v0"))
