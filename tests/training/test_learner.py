"""The learner contract: seeding, rounds, evaluation, exact resume, learning progress, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgeft.envs.real_config import TrainingConfig
from edgeft.training.learner import SplitLoRALearner

LEARN = {
    "model": "tiny-bert",
    "task": "synthetic-text",
    "lr": 0.3,
    "batch_size": 32,
    "eval_size": 400,
}


def _run(learner, seed, schedules):
    learner.reset(seed)
    out = []
    for s in schedules:
        bits = learner.draw_round()
        r = learner.run_round(s)
        out.append((bits, r["loss"], r["device_loss"]))
    return out


def test_equal_seeds_equal_trajectories_different_seeds_differ(text_learner):
    rng = np.random.default_rng(0)
    schedules = [rng.random(5) < 0.6 for _ in range(4)]
    a = _run(text_learner, 3, schedules)
    state_a = text_learner.state_dict()
    b = _run(text_learner, 3, schedules)
    state_b = text_learner.state_dict()
    c = _run(text_learner, 4, schedules)
    for (ba, _, da), (bb, _, db) in zip(a, b):
        np.testing.assert_array_equal(ba, bb)
        np.testing.assert_array_equal(da, db)
    for n in state_a["lora"]:
        assert torch.equal(state_a["lora"][n], state_b["lora"][n])
    assert torch.equal(state_a["W"], state_b["W"])
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))


def test_unscheduled_round_changes_nothing_and_reports_nan(text_learner):
    text_learner.reset(0)
    text_learner.run_round(np.ones(5, bool))
    before = text_learner.state_dict()
    out = text_learner.run_round(np.zeros(5, bool))
    after = text_learner.state_dict()
    assert np.isnan(out["loss"]) and np.isnan(out["device_loss"]).all()
    assert out["num_scheduled"] == 0
    for n in before["lora"]:
        assert torch.equal(before["lora"][n], after["lora"][n])
    assert torch.equal(before["W"], after["W"]) and torch.equal(before["b"], after["b"])


def test_draw_round_is_idempotent_until_run_round(text_learner):
    text_learner.reset(1)
    first = text_learner.draw_round()
    np.testing.assert_array_equal(first, text_learner.draw_round())
    pending = text_learner.pending.copy()
    text_learner.run_round(np.ones(5, bool))
    text_learner.draw_round()
    assert not np.array_equal(pending, text_learner.pending)


def test_evaluate_consumes_no_randomness_and_is_mean_over_heads(text_learner):
    text_learner.reset(2)
    W0 = text_learner.W.detach().clone()
    text_learner.run_round(np.array([1, 1, 0, 0, 0], bool))
    rng_before = text_learner.rng.bit_generator.state
    t_before = torch.get_rng_state()
    ev = text_learner.evaluate()
    assert text_learner.rng.bit_generator.state == rng_before
    assert torch.equal(torch.get_rng_state(), t_before)
    assert ev["test_loss"] == pytest.approx(ev["device_test_loss"].mean())
    assert 0.0 <= ev["test_accuracy"] <= 1.0
    assert len(ev["device_test_loss"]) == 5
    # devices 2-4 were never scheduled: their heads are still the initial heads (the default
    # head_init="shared": one common head, so equal losses)
    assert text_learner.config.head_init == "shared"
    assert torch.equal(text_learner.W[2:].detach(), W0[2:])
    assert not torch.equal(text_learner.W[:2].detach(), W0[:2])
    assert ev["device_test_loss"][2] == ev["device_test_loss"][3] == ev["device_test_loss"][4]
    assert ev["device_test_loss"][0] != ev["device_test_loss"][2]


@pytest.mark.parametrize("head_init", ["independent", "shared"])
def test_head_init_independent_draws_per_device_shared_copies_one(text_learner, head_init):
    from dataclasses import replace

    cfg = replace(text_learner.config, head_init=head_init)
    learner = SplitLoRALearner(cfg, text_learner.num_devices)
    learner.reset(4)
    W = learner.W.detach()
    same = [torch.equal(W[0], W[k]) for k in range(1, learner.num_devices)]
    assert (not any(same)) if head_init == "independent" else all(same)
    first = W.clone()
    learner.reset(4)
    assert torch.equal(learner.W.detach(), first)  # a function of the seed
    with pytest.raises(ValueError, match="head_init"):
        replace(cfg, head_init="zeros")


def test_resumed_run_ends_bit_identical(text_learner, tmp_path):
    rng = np.random.default_rng(7)
    schedules = [rng.random(5) < 0.5 for _ in range(8)]
    learner = text_learner
    learner.reset(9)
    for s in schedules:
        learner.run_round(s)
    straight = learner.state_dict()
    straight_eval = learner.evaluate()

    learner.reset(9)
    for s in schedules[:3]:
        learner.run_round(s)
    learner.draw_round()  # checkpoint in the middle of a step (minibatches drawn)
    torch.save(learner.state_dict(), tmp_path / "ckpt.pt")
    fresh = SplitLoRALearner(learner.config, learner.num_devices)  # a new process, in effect
    fresh.load_state_dict(torch.load(tmp_path / "ckpt.pt"))  # weights_only=True works
    for s in schedules[3:]:
        fresh.run_round(s)
    resumed = fresh.state_dict()
    for n in straight["lora"]:
        assert torch.equal(straight["lora"][n], resumed["lora"][n])
    assert torch.equal(straight["W"], resumed["W"]) and torch.equal(straight["b"], resumed["b"])
    assert torch.equal(straight["torch_rng"], resumed["torch_rng"])
    assert straight["numpy_rng"] == resumed["numpy_rng"]
    assert fresh.evaluate()["test_loss"] == straight_eval["test_loss"]


def test_load_state_rejects_another_config(text_learner):
    text_learner.reset(0)
    state = text_learner.state_dict()
    state["num_devices"] = 99
    with pytest.raises(ValueError, match="num_devices"):
        text_learner.load_state_dict(state)


def test_loss_falls_and_all_devices_beat_one_device():
    """Real training on the synthetic task with a tiny model: over 30 rounds with all K devices
    the training loss falls, and scheduling all devices ends with better held-out accuracy than
    scheduling one (random) device per round, on average over seeds (FT Theorem 1 direction)."""
    K, rounds, seeds = 5, 30, (0, 1, 2)
    learner = SplitLoRALearner(LEARN, K)
    acc = {"all": [], "one": []}
    for seed in seeds:
        for mode in acc:
            learner.reset(seed)
            rng = np.random.default_rng(100 + seed)
            losses = []
            for _ in range(rounds):
                s = np.ones(K, bool) if mode == "all" else np.eye(K, dtype=bool)[rng.integers(K)]
                losses.append(learner.run_round(s)["loss"])
            if mode == "all":
                assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.01
            acc[mode].append(learner.evaluate()["test_accuracy"])
    assert np.mean(acc["all"]) > np.mean(acc["one"]) + 0.02


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="training.lora_rank"):
        TrainingConfig(lora_rank=0)
    with pytest.raises(ValueError, match="training.task"):
        TrainingConfig(task="imagenet")
    with pytest.raises(ValueError, match="unknown training field"):
        TrainingConfig.from_any({"learning_rate": 1.0})
    cfg = TrainingConfig.from_any({"target_modules": ["query", "value"]})
    assert cfg.target_modules == ("query", "value")
    assert TrainingConfig.from_any(None) == TrainingConfig()
    assert TrainingConfig.from_any(cfg) is cfg
    with pytest.raises(ValueError, match="num_devices"):
        SplitLoRALearner({"model": "tiny-bert"}, 0)


def test_import_edgeft_training_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, edgeft, edgeft.training, edgeft.envs.real_config; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_eval_features_in_length_sorted_chunks_equal_one_padded_batch(text_learner, monkeypatch):
    from edgeft.training import learner as L

    learner = text_learner
    learner.reset(seed=0)
    test = learner.data.test
    idx = np.arange(min(40, len(test)))[::-1].copy()
    assert len(np.unique(test.lengths[idx])) > 1
    with torch.no_grad():
        batch = learner.make_batch(test, idx)
        learner.split.set_lora_dropout(False)
        ref = learner.split.server_forward(
            learner.split.device_embed(batch), batch["attention_mask"]
        )
    monkeypatch.setattr(L, "EVAL_CHUNK", 7)
    got = learner.features(test, idx)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) < 1e-10  # same rows, same order (float64 fixture)
