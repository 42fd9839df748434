"""Real mode's training engines, plugged into the envs from above.

The envs run ``mode="real"`` through an engine that trains a real model each round (the
split-LoRA engine of ``edgeft.training``). The env layer does not import that engine: it
declares what it needs here, and the training layer registers its engines
(``edgeft.training`` does on import; ``import edgeft`` imports it, without torch). A family's
engine is a factory ``engine(config) -> object`` with the methods that family's env calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_ENGINES: dict[str, Callable[[Any], Any]] = {}


def register_engine(family: str, factory: Callable[[Any], Any]) -> None:
    """Register the real-mode engine factory of ``family`` (replacing any earlier one)."""
    _ENGINES[family] = factory


def real_engine(family: str, config: Any) -> Any:
    """The real-mode engine of ``family`` built for ``config``.

    Raises:
        RuntimeError: no engine is registered for the family, or the engine's dependencies
            (torch, transformers, peft) are missing; the message says what to install.
    """
    factory = _ENGINES.get(family)
    if factory is None:
        raise RuntimeError(
            f"mode='real' needs the {family} training engine, and none is registered: import "
            "edgeft (which registers edgeft.training's engines) or use mode='surrogate'"
        )
    try:
        return factory(config)
    except ImportError as err:
        raise RuntimeError(
            f"mode='real' needs the split-LoRA training engine (edgeft.training) with torch, "
            f"transformers and peft installed ({err}); install them or use mode='surrogate'"
        ) from err
