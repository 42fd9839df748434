"""``training=`` is validated like the env config: a misspelt key fails at once, wherever the
settings enter (no model is loaded, no torch is needed before the error)."""

from __future__ import annotations

import dataclasses

import pytest
from edgeft.envs.real_config import TrainingConfig

VALID = sorted(f.name for f in dataclasses.fields(TrainingConfig))


def _entry_points():
    import gymnasium as gym
    from edgeft.envs.fedlora.config import FedLoRAConfig
    from edgeft.envs.mec.config import MECConfig

    import edgeft  # noqa: F401  (registers the env ids)

    return {
        "TrainingConfig.from_any": TrainingConfig.from_any,
        "FedLoRAConfig": lambda t: FedLoRAConfig(mode="real", training=t),
        "MECConfig": lambda t: MECConfig(mode="real", training=t),
        "gym.make FedLoRA": lambda t: gym.make(
            "edgeft/FedLoRAScheduling-v0", mode="real", training=t
        ),
        "gym.make MEC": lambda t: gym.make("edgeft/MECOffloading-v0", mode="real", training=t),
    }


@pytest.mark.parametrize("where", list(_entry_points()))
@pytest.mark.parametrize(
    "spec, bad",
    [
        ({"modle": "tiny-bert"}, "'modle'"),
        ({"model": "tiny-bert", "btach_size": 4, "lr": 0.1}, "'btach_size'"),
        ({"target_modules": ["query"], "learning_rate": 1.0}, "'learning_rate'"),
        ({1: 2, "lrr": 0.1}, "'lrr', 1"),  # mixed key types: still one clear message
    ],
)
def test_a_misspelt_training_key_names_itself_and_lists_the_valid_fields(where, spec, bad):
    make = _entry_points()[where]
    with pytest.raises(ValueError, match=r"unknown training field\(s\) \[") as err:
        make(spec)
    text = str(err.value)
    assert f"[{bad}]" in text
    assert f"valid fields: {VALID}" in text


def test_every_field_name_is_accepted_and_lists_become_tuples():
    cfg = TrainingConfig.from_any({"target_modules": ["query", "value"], "lr": 0.05})
    assert cfg.target_modules == ("query", "value") and cfg.lr == 0.05
    assert TrainingConfig.from_any(cfg.to_dict()) == cfg  # every key of to_dict is a field


def test_a_bad_value_is_named_too():
    with pytest.raises(ValueError, match="training.batch_size"):
        TrainingConfig.from_any({"batch_size": 0})
    with pytest.raises(ValueError, match="training must be None, a regime name"):
        TrainingConfig.from_any(["model", "minilm"])


def test_calibrated_regimes_by_name_are_the_protocol_settings():
    from edgeft.envs.real_config import REGIMES
    from edgeft.training import protocol

    for name, setting in {"tweets-iid": "iid-h1", "tweets-dirichlet": "dir-h1"}.items():
        assert REGIMES[name] == protocol.SETTINGS[setting][0]
        assert TrainingConfig.from_any(name) == TrainingConfig.from_any(
            protocol.SETTINGS[setting][0]
        )
    assert TrainingConfig.from_any("tweets-dirichlet").partition == "dirichlet"
    with pytest.raises(ValueError, match="unknown training regime 'tweets'; known"):
        TrainingConfig.from_any("tweets")
