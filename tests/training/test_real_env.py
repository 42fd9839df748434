"""``edgeft/FedLoRAScheduling-v0`` in ``mode="real"`` with a tiny model: Gymnasium's check_env and
equal seeds -> equal real trajectories."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("edgeft.envs.fedlora.env")

TRAINING = {
    "model": "tiny-bert",
    "task": "synthetic-text",
    "batch_size": 4,
    "eval_every": 2,
    "eval_size": 64,
    "lr": 0.3,
}


def _make(**kw):
    import edgeft  # noqa: F401  (registers the ids)

    return gym.make(
        "edgeft/FedLoRAScheduling-v0", mode="real", training=TRAINING, num_devices=4, **kw
    )


def test_check_env_real_mode():
    from gymnasium.utils.env_checker import check_env

    env = _make()
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_equal_seeds_equal_real_trajectories_and_info():
    def rollout(seed):
        env = _make()
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        traj = [obs]
        infos = []
        for _ in range(4):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            traj.append(obs)
            infos.append(info)
            traj.append(np.array([r]))
        env.close()
        return traj, infos

    a, ia = rollout(5)
    b, ib = rollout(5)
    c, _ = rollout(6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))
    for x, y in zip(ia, ib):
        assert np.array_equal(x["device_loss"], y["device_loss"], equal_nan=True)
        assert "train_loss" in x and np.all(np.asarray(x["bits"]) > 0)
    assert "test_accuracy" in ia[1]  # eval_every = 2
