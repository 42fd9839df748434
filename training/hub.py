"""Whether edgeft may contact the Hugging Face hub (plain Python, no torch).

By default edgeft reads models and datasets from local files and the local Hugging Face caches
only, so a name that is not installed fails at once with an error that says how to get it,
instead of after the hub client's connection retries (tens of seconds on a machine without
access). ``EDGEFT_ALLOW_DOWNLOADS=1`` turns hub look-ups on; the hub's own offline switches
(``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1``) still win over it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from typing import Any

#: the environment variable that lets edgeft look models and datasets up on the Hugging Face hub
ALLOW_DOWNLOADS_ENV = "EDGEFT_ALLOW_DOWNLOADS"

# (module, attribute) of the offline switches that the hub client and `datasets` read at call time
_OFFLINE_FLAGS = (
    ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
    ("datasets.config", "HF_HUB_OFFLINE"),
    ("datasets.config", "HF_DATASETS_OFFLINE"),
)


def _on(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() not in ("", "0", "false", "no")


def downloads_allowed() -> bool:
    """Whether a name that is not in the local caches may be looked up on the hub.

    Returns:
        True only when ``EDGEFT_ALLOW_DOWNLOADS=1`` is set and neither ``HF_HUB_OFFLINE`` nor
        ``TRANSFORMERS_OFFLINE`` is.
    """
    return _on(ALLOW_DOWNLOADS_ENV) and not (_on("HF_HUB_OFFLINE") or _on("TRANSFORMERS_OFFLINE"))


@contextlib.contextmanager
def hub_offline(offline: bool = True) -> Iterator[None]:
    """Within the block, the hub client and ``datasets`` work in offline mode (cache only).

    Sets the offline flags of the modules that are importable and restores them on exit; with
    ``offline=False`` it changes nothing. Used around ``datasets.load_dataset``, which has no
    ``local_files_only`` argument (models use ``from_pretrained(..., local_files_only=True)``).
    """
    saved: list[tuple[Any, str, Any]] = []
    if offline:
        for module_name, attr in _OFFLINE_FLAGS:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            if hasattr(module, attr):
                saved.append((module, attr, getattr(module, attr)))
                setattr(module, attr, True)
    try:
        yield
    finally:
        for module, attr, value in reversed(saved):
            setattr(module, attr, value)
