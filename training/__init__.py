"""edgeft.training — the federated split-LoRA engine behind ``mode="real"`` (FT Section II.A).

A pretrained encoder is split as in the paper: the frozen embedding module runs on each device,
the frozen encoder with peft LoRA adapters runs on the server, and each device keeps its own task
head. One round is FT eqs. (2)-(4), computed in one batched pass over the scheduled devices.

Importing this package does not import torch: ``TrainingConfig`` is plain Python, and
``SplitLoRALearner`` (torch, transformers, peft) is imported on first use. It registers the
real-mode engines of both env families with ``edgeft.envs.engines`` (``import edgeft`` imports
it), so ``gym.make(..., mode="real")`` finds them.
"""

from __future__ import annotations

from typing import Any

from edgeft.envs.engines import register_engine
from edgeft.envs.real_config import TrainingConfig

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
    "DataNotFoundError": "edgeft.training.task_data",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgeft.training' has no attribute {name!r}")


def _fedlora_engine(config: Any) -> Any:
    """The FedLoRA env's real-mode learner: split-LoRA rounds over ``config.num_devices``."""
    from edgeft.training.learner import SplitLoRALearner

    return SplitLoRALearner(TrainingConfig.from_any(config.training), config.num_devices)


def _mec_engine(config: Any) -> Any:
    """The MEC env's real-mode engine: layer-split LoRA rounds over the users."""
    from edgeft.training.mec import MECRealEngine

    return MECRealEngine(config)


register_engine("fedlora", _fedlora_engine)
register_engine("mec", _mec_engine)
