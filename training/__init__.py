"""edgeft.training — the federated split-LoRA engine behind ``mode="real"`` (FT Section II.A).

A pretrained encoder is split as in the paper: the frozen embedding module runs on each device,
the frozen encoder with peft LoRA adapters runs on the server, and each device keeps its own task
head. One round is FT eqs. (2)-(4), computed in one batched pass over the scheduled devices.

Importing this package does not import torch: ``TrainingConfig`` is plain Python, and
``SplitLoRALearner`` (torch, transformers, peft) is imported on first use.
"""

from __future__ import annotations

from typing import Any

from edgeft.training.config import TrainingConfig

__all__ = [
    "TrainingConfig",
    "SplitLoRALearner",
    "ModelNotFoundError",
    "UnsupportedModelError",
    "DataNotFoundError",
]

_LAZY = {
    "SplitLoRALearner": "edgeft.training.learner",
    "ModelNotFoundError": "edgeft.training.models",
    "UnsupportedModelError": "edgeft.training.models",
    "DataNotFoundError": "edgeft.training.data",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgeft.training' has no attribute {name!r}")
