"""Shared tiny learners for the training-engine tests (built once per module: the import of
transformers dominates the cost)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

TINY_TEXT = {
    "model": "tiny-bert",
    "task": "synthetic-text",
    "dtype": "float64",
    "lr": 0.5,
    "batch_size": 8,
    "eval_size": 400,
}
TINY_IMAGE = {
    "model": "tiny-vit",
    "task": "synthetic-image",
    "dtype": "float64",
    "lr": 0.5,
    "batch_size": 4,
    "eval_size": 200,
}


@pytest.fixture(scope="session")
def text_learner():
    from edgeft.training.learner import SplitLoRALearner

    return SplitLoRALearner(TINY_TEXT, num_devices=5)


@pytest.fixture(scope="session")
def image_learner():
    from edgeft.training.learner import SplitLoRALearner

    return SplitLoRALearner(TINY_IMAGE, num_devices=3)


def _randomize_lora(split, seed: int = 1, scale: float = 0.3) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in split.lora_parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.fixture
def randomize_lora():
    """Give every LoRA matrix (B included, which starts at zero) random values, so the LoRA
    branch actually changes the features and every LoRA gradient is non-zero."""
    return _randomize_lora
