"""Checkpoints: the typed State with a format version, in a file that runs no code when read
(zip of JSON, npz and the learner's tensors); checkpoints of earlier releases (pickle files:
format 0, written before the State existed, tests/fedlora/data; format 1) load only with the
opt-in and continue exactly."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs.fedlora import checkpoint
from edgeft.envs.fedlora.surrogate import V2_CALIBRATION
from edgeft.envs.fedlora.types import STATE_FORMAT, State

ENV_ID = "edgeft/FedLoRAScheduling-v0"
DATA = Path(__file__).with_name("data")
TRAINING = {
    "model": "tiny-bert",
    "task": "synthetic-text",
    "batch_size": 4,
    "eval_every": 2,
    "eval_size": 64,
    "lr": 0.3,
    "dtype": "float64",
}
# the fixtures were written with the then defaults: the version-2 calibration, the per-round
# "progress" reward
V2 = str(V2_CALIBRATION)
CONFIGS = {
    "surrogate": {"num_devices": 6, "episode_rounds": 30, "surrogate": V2, "reward": "progress"},
    "real": {
        "num_devices": 4,
        "episode_rounds": 12,
        "mode": "real",
        "training": TRAINING,
        "surrogate": V2,
        "reward": "progress",
    },
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
    with pytest.raises(ValueError, match="trust_pickle=True"):
        env.unwrapped.load_checkpoint(DATA / f"checkpoint-v0-{name}.pkl")
    env.unwrapped.load_checkpoint(DATA / f"checkpoint-v0-{name}.pkl", trust_pickle=True)
    rtol = 1e-12 if name == "real" else 0.0
    for t, action in enumerate(expected["actions"]):
        obs, reward, _, _, info = env.step(action)
        np.testing.assert_allclose(obs, expected["obs"][t], rtol=rtol, atol=0.0)
        np.testing.assert_allclose(
            [reward, info["loss"]],
            [expected["reward"][t], expected["loss"][t]],
            rtol=rtol,
            atol=0.0,
        )


def test_checkpoint_holds_the_typed_state_and_refuses_unknown_formats(tmp_path):
    env = gym.make(ENV_ID, num_devices=5)
    env.reset(seed=1)
    env.step(np.full(5, 0.2))
    path = tmp_path / "ck.zip"
    env.unwrapped.save_checkpoint(path)
    assert zipfile.is_zipfile(path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["arrays.npz", "checkpoint.json"]
        meta = json.loads(zf.read("checkpoint.json"))
    assert meta["format"] == checkpoint.FILE_FORMAT and meta["state_format"] == STATE_FORMAT
    data = checkpoint.read(path, env.unwrapped.config)
    assert isinstance(data["state"], State) and data["state"].t == 1
    meta["format"] = checkpoint.FILE_FORMAT + 1
    with zipfile.ZipFile(path, "a") as zf:  # a later entry of the same name wins on read
        zf.writestr("checkpoint.json", json.dumps(meta))
    with pytest.raises(ValueError, match=f"format {checkpoint.FILE_FORMAT + 1} is not supported"):
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
    for name in (
        "gain_db",
        "gain",
        "snr",
        "bits_mbit",
        "bits",
        "bits_ln2",
        "age",
        "queue",
        "t",
        "loss",
        "accuracy",
    ):
        object.__setattr__(old, name, getattr(data["state"], name))
    data["state"], data["format"] = old, 1
    path = tmp_path / "ck1.pkl"
    path.write_bytes(pickle.dumps(data))  # how that release wrote its checkpoints
    env.unwrapped.load_checkpoint(path, trust_pickle=True)
    s = env.unwrapped.state
    np.testing.assert_array_equal(s.heads, np.zeros(5))
    assert np.isnan(s.shared) and s.excess_sum == s.queue
    env.step(np.full(5, 0.2))


def test_a_pickle_planted_as_a_checkpoint_does_not_run(tmp_path):
    """A pickle whose loading runs code is refused without the opt-in, and nothing runs."""
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "payload ran"))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps(Payload()))
    env = gym.make(ENV_ID, num_devices=5)
    env.reset(seed=1)
    with pytest.raises(ValueError, match="pickle file"):
        env.unwrapped.load_checkpoint(path)
    assert not marker.exists()
    # a zip dressed as a checkpoint whose arrays hold pickled objects: refused, nothing runs
    bad = tmp_path / "bad.zip"
    buf = __import__("io").BytesIO()
    np.save(buf, np.array([Payload()], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("checkpoint.json", json.dumps({"format": checkpoint.FILE_FORMAT}))
        zf.writestr("arrays.npz", buf.getvalue())
    with pytest.raises(ValueError, match="not a readable edgeft checkpoint"):
        env.unwrapped.load_checkpoint(bad)
    assert not marker.exists()
