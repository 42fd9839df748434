"""``--set KEY=VALUE`` command-line overrides, shared by every ``edgeft`` subcommand."""

from __future__ import annotations

import ast
from typing import Any

_JSON_WORDS = {"true": True, "false": False, "null": None}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; values parsed as Python literals where possible.

    ``"num_devices=50"`` gives ``{"num_devices": 50}``, ``"training={'model': 'minilm'}"`` a dict
    value, and a value that is not a literal (``"mode=real"``) stays a string. JSON's ``true``,
    ``false`` and ``null`` are read as ``True``, ``False`` and ``None`` (``budget_guard=true``).

    Raises:
        SystemExit: an item without ``=`` (the message names it).
    """
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        if value.strip() in _JSON_WORDS:
            out[key.strip()] = _JSON_WORDS[value.strip()]
            continue
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out
