"""Real mode in the calibrated regime's shape: per-device heads, Dirichlet shards, the env's
``data`` agreeing with the training partition (tiny model; the regime itself is minilm/tweets)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import edgeft  # noqa: F401

ENV_ID = "edgeft/FedLoRAScheduling-v0"
TINY = {
    "model": "tiny-bert",
    "task": "synthetic-text",
    "batch_size": 4,
    "eval_every": 2,
    "eval_size": 32,
    "lr": 0.1,
    "head_init": "independent",
    "head_lr": 1.0,
    "partition": "dirichlet",
    "dirichlet_alpha": 0.5,
}


def test_data_and_training_partition_must_agree():
    with pytest.raises(ValueError, match="data='iid' but training.partition='dirichlet'"):
        gym.make(ENV_ID, mode="real", training=TINY)
    with pytest.raises(ValueError, match="data='dirichlet' but training.partition='iid'"):
        gym.make(ENV_ID, mode="real", data="dirichlet", training="tweets-iid")


def test_real_round_with_per_device_heads_on_dirichlet_shards():
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    env = gym.make(
        ENV_ID,
        mode="real",
        data="dirichlet",
        training=TINY,
        num_devices=4,
        episode_rounds=2,
        action_mode="subset",
    )
    env.reset(seed=0)
    info = {}
    for _ in range(2):
        _, reward, _, _, info = env.step(np.array([1, 1, 0, 0], dtype=np.int8))
        assert np.isfinite(reward)
    # the two unscheduled devices trained nothing this episode: no training loss for them
    dev = info["device_loss"]
    assert np.all(np.isfinite(dev[:2])) and np.all(np.isnan(dev[2:]))
    assert "test_loss" in info and np.isfinite(info["test_loss"])
    assert env.unwrapped.config.data == "dirichlet"
