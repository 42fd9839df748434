"""One batched round equals the plain per-device loop (FT eqs. 2-4), in float64, dropout off."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def _params(learner):
    lora = {n: p.detach().clone() for n, p in learner.split.lora_named_parameters()}
    return lora, learner.W.detach().clone(), learner.b.detach().clone()


def _round(learner, method, state, scheduled):
    learner.load_state_dict(state)
    learner.method = method
    before = _params(learner)
    out = learner.run_round(scheduled)
    after = _params(learner)
    lora_delta = {n: after[0][n] - before[0][n] for n in before[0]}
    return out, lora_delta, after[1] - before[1], after[2] - before[2]


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(
    "fixture,scheduled,bucketed",
    [
        ("text_learner", [1, 1, 1, 1, 1], False),
        ("text_learner", [0, 1, 0, 1, 1], False),
        ("text_learner", [0, 0, 1, 0, 0], False),
        ("text_learner", [1, 1, 1, 1, 1], True),
        ("text_learner", [0, 1, 0, 1, 1], True),
        ("image_learner", [1, 0, 1], False),
    ],
)
def test_batched_round_equals_per_device_loop(
    request, monkeypatch, randomize_lora, fixture, scheduled, bucketed
):
    from edgeft.training import engine

    if bucketed:  # force length buckets on these small batches (normally >= 64 rows each)
        monkeypatch.setattr(engine, "BUCKET_MIN_ROWS", 1)
        monkeypatch.setattr(engine, "BUCKET_MIN_HIDDEN", 0)
        monkeypatch.setattr(engine, "MAX_BUCKETS", 3)
    learner = request.getfixturevalue(fixture)
    scheduled = np.array(scheduled, dtype=bool)
    learner.reset(seed=11)
    randomize_lora(learner.split)
    bits = learner.draw_round()
    state = learner.state_dict()
    if learner.split.modality == "text":  # the minibatches really have unequal lengths
        lengths = learner.data.train.lengths[learner.pending]
        assert len(np.unique(lengths.max(axis=1))) > 1 or len(np.unique(lengths)) > 1
        assert len(np.unique(lengths)) > 1
    out_b, dl_b, dW_b, db_b = _round(learner, "batched", state, scheduled)
    out_l, dl_l, dW_l, db_l = _round(learner, "loop", state, scheduled)
    learner.method = "batched"

    # LoRA update: the averaged gradient step, to 1e-6 relative (float64: in fact ~1e-14)
    for n in dl_l:
        assert dl_l[n].norm() > 0, n
        assert _rel(dl_b[n], dl_l[n]) < 1e-6, n
    # each scheduled head: its own step; unscheduled heads: exactly unchanged
    for k in range(learner.num_devices):
        if scheduled[k]:
            assert dW_l[k].norm() > 0
            assert _rel(dW_b[k], dW_l[k]) < 1e-6
            assert _rel(db_b[k], db_l[k]) < 1e-6
        else:
            assert torch.equal(dW_b[k], torch.zeros_like(dW_b[k]))
            assert torch.equal(db_b[k], torch.zeros_like(db_b[k]))
            assert torch.equal(dW_l[k], torch.zeros_like(dW_l[k]))
    np.testing.assert_allclose(out_b["device_loss"], out_l["device_loss"], rtol=1e-10)
    assert np.isnan(out_b["device_loss"][~scheduled]).all()
    # bits measured from the exchanged tensors = what draw_round announced (own unpadded length)
    np.testing.assert_array_equal(out_b["bits"][scheduled], bits[scheduled])
    np.testing.assert_array_equal(out_l["bits"][scheduled], bits[scheduled])
    assert (out_b["bits"][~scheduled] == 0).all()


def test_lora_step_is_the_average_of_per_device_gradients(text_learner, randomize_lora):
    """Independent check of eq. (4): the LoRA update with S = {a, b} is the mean of the updates
    with S = {a} and S = {b} (each a full one-device step from the same state)."""
    learner = text_learner
    learner.reset(seed=5)
    randomize_lora(learner.split, seed=2)
    learner.draw_round()
    state = learner.state_dict()
    _, both, _, _ = _round(learner, "batched", state, np.array([1, 0, 0, 1, 0], bool))
    _, only_a, _, _ = _round(learner, "batched", state, np.array([1, 0, 0, 0, 0], bool))
    _, only_b, _, _ = _round(learner, "batched", state, np.array([0, 0, 0, 1, 0], bool))
    for n in both:
        assert _rel(both[n], 0.5 * (only_a[n] + only_b[n])) < 1e-10


def test_bits_formula(text_learner):
    learner = text_learner
    learner.reset(seed=0)
    bits = learner.draw_round()
    hidden, bs = learner.split.hidden_size, learner.config.batch_size
    tokens = learner.data.train.lengths[learner.pending].sum(axis=1)
    expected = (tokens * hidden + 2 * bs * hidden) * 32
    np.testing.assert_array_equal(bits, expected)
    np.testing.assert_array_equal(learner.draw_round(), bits)  # same round, same draw


def test_length_buckets_cover_every_row_once_and_trim_padding():
    from edgeft.training.engine import length_buckets

    lengths = torch.tensor([5, 3, 9, 3, 7, 9, 4, 6, 2, 8])
    mask = (torch.arange(9)[None, :] < lengths[:, None]).long()
    buckets = length_buckets(mask, max_buckets=3, min_rows=2)
    assert buckets is not None and len(buckets) == 3
    rows = torch.cat([r for r, _ in buckets])
    assert sorted(rows.tolist()) == list(range(10))
    for r, width in buckets:
        assert width == int(lengths[r].max())
    assert sum(len(r) * w for r, w in buckets) < 10 * 9  # less padding than one padded batch
    assert length_buckets(mask, max_buckets=3, min_rows=8) is None  # too few rows
    assert length_buckets(torch.ones(200, 4, dtype=torch.long)) is None  # equal lengths
    assert length_buckets(None) is None
