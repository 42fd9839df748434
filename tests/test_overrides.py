"""``--set KEY=VALUE`` parsing (``edgeft.overrides``)."""

from __future__ import annotations

import pytest

from edgeft.overrides import parse_overrides


def test_values_are_literals_json_words_or_strings():
    got = parse_overrides(
        [
            "num_devices=50",
            "budget_guard=true",
            "fading_correlation=0.9",
            "guard=False",
            "x=null",
            "mode=real",
            "training={'model': 'minilm'}",
            "name=True story",
        ]
    )
    assert got == {
        "num_devices": 50,
        "budget_guard": True,
        "fading_correlation": 0.9,
        "guard": False,
        "x": None,
        "mode": "real",
        "training": {"model": "minilm"},
        "name": "True story",
    }


def test_an_item_without_equals_names_itself():
    with pytest.raises(SystemExit, match="budget_guard"):
        parse_overrides(["budget_guard"])
