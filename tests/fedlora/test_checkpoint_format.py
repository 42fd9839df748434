"""Checkpoints: the typed State with a format version; checkpoints of the first release (format
0, written before the State existed: tests/fedlora/data) load and continue exactly."""

from __future__ import annotations

import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs.fedlora.surrogate import V2_CALIBRATION
from edgeft.envs.fedlora.types import STATE_FORMAT, State

ENV_ID = "edgeft/FedLoRAScheduling-v0"
DATA = Path(__file__).with_name("data")
TRAINING = {"model": "tiny-bert", "task": "synthetic-text", "batch_size": 4, "eval_every": 2,
            "eval_size": 64, "lr": 0.3, "dtype": "float64"}
# the fixtures were written with the then defaults: the version-2 calibration, the per-round
# "progress" reward
V2 = str(V2_CALIBRATION)
CONFIGS = {
    "surrogate": {"num_devices": 6, "episode_rounds": 30, "surrogate": V2, "reward": "progress"},
    "real": {"num_devices": 4, "episode_rounds": 12, "mode": "real", "training": TRAINING,
             "surrogate": V2, "reward": "progress"},
}


@pytest.fixture
def fixture_threads():
    """torch with the thread count the real-mode fixture was written with (2): the test loss's
    reductions, hence its last bit, depend on it."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_first_release_checkpoint_continues_exactly(name, request):
    """A checkpoint written by the env before the typed State (format 0, the dict of state and
    caches) loads into a fresh env of its config and continues bit for bit (real mode: to
    rounding, since the model's float arithmetic may change in the last bit between torch and
    transformers releases)."""
    if name == "real":
        request.getfixturevalue("fixture_threads")
    expected = np.load(DATA / f"checkpoint-v0-{name}.npz")
    env = gym.make(ENV_ID, **CONFIGS[name])
    env.reset(seed=0)
    env.unwrapped.load_checkpoint(DATA / f"checkpoint-v0-{name}.pkl")
    rtol = 1e-12 if name == "real" else 0.0
    for t, action in enumerate(expected["actions"]):
        obs, reward, _, _, info = env.step(action)
        np.testing.assert_allclose(obs, expected["obs"][t], rtol=rtol, atol=0.0)
        np.testing.assert_allclose([reward, info["loss"]],
                                   [expected["reward"][t], expected["loss"][t]], rtol=rtol,
                                   atol=0.0)


def test_checkpoint_holds_the_typed_state_and_refuses_unknown_formats(tmp_path):
    env = gym.make(ENV_ID, num_devices=5)
    env.reset(seed=1)
    env.step(np.full(5, 0.2))
    path = tmp_path / "ck.pkl"
    env.unwrapped.save_checkpoint(path)
    data = pickle.loads(path.read_bytes())
    assert data["format"] == STATE_FORMAT and isinstance(data["state"], State)
    assert data["state"].t == 1
    data["format"] = STATE_FORMAT + 1
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(ValueError, match=f"checkpoint format {STATE_FORMAT + 1} is not supported"):
        env.unwrapped.load_checkpoint(path)
    other = gym.make(ENV_ID, num_devices=5, zeta=3.0)
    env.unwrapped.save_checkpoint(path)
    with pytest.raises(ValueError, match="different config"):
        other.unwrapped.load_checkpoint(path)


def test_format1_checkpoint_gets_the_fields_it_lacks(tmp_path):
    """A format-1 State (written before heads / shared / excess_sum existed: those slots unset)
    loads with zero heads, no shared gap and the queue as the running excess."""
    env = gym.make(ENV_ID, num_devices=5, surrogate=V2, reward="progress")
    env.reset(seed=1)
    env.step(np.full(5, 0.2))
    data = env.unwrapped.state_dict()
    old = object.__new__(State)
    for name in ("gain_db", "gain", "snr", "bits_mbit", "bits", "bits_ln2", "age", "queue", "t",
                 "loss", "accuracy"):
        object.__setattr__(old, name, getattr(data["state"], name))
    data["state"], data["format"] = old, 1
    path = tmp_path / "ck1.pkl"
    path.write_bytes(pickle.dumps(data))
    env.unwrapped.load_checkpoint(path)
    s = env.unwrapped.state
    np.testing.assert_array_equal(s.heads, np.zeros(5))
    assert np.isnan(s.shared) and s.excess_sum == s.queue
    env.step(np.full(5, 0.2))
