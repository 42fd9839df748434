"""The data types every task of the split-LoRA engine produces (``edgeft.training.data`` and
``edgeft.training.tweets`` build them)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DataNotFoundError(FileNotFoundError):
    """Dataset files are missing (the message says where to put them / what to install)."""


@dataclass
class TextSplit:
    """Tokenised text: ``ids`` (n, L) padded with ``pad_id``, true ``lengths``, optional token
    types."""

    ids: np.ndarray
    lengths: np.ndarray
    token_type: np.ndarray | None
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ImageSplit:
    """uint8 images (n, 3, 32, 32) and labels."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TaskData:
    """Train and held-out splits of one task."""

    train: TextSplit | ImageSplit
    test: TextSplit | ImageSplit
    num_classes: int
    modality: str
    pad_id: int = 0


def pack(
    seqs: list[list[int]], types: list[list[int]] | None, labels: np.ndarray, pad_id: int
) -> TextSplit:
    """Token sequences padded into one ``TextSplit`` (true lengths kept)."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    width = int(lengths.max()) if len(seqs) else 1
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    tt = np.zeros((len(seqs), width), dtype=np.int64) if types is not None else None
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        if tt is not None and types is not None:
            tt[i, : len(s)] = types[i]
    return TextSplit(ids=ids, lengths=lengths, token_type=tt, labels=np.asarray(labels, np.int64))
