"""Every Python snippet in README.md runs as pasted, each in a fresh interpreter.

Snippets that train a real model (``mode="real"``, the offline MiniLM) are marked slow."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _params():
    for i, code in enumerate(BLOCKS):
        first = next(line for line in code.splitlines() if "gym.make" in line or line.strip())
        marks = [pytest.mark.slow] if 'mode="real"' in code else []
        yield pytest.param(code, id=f"block{i}-{first.strip()[:40]}", marks=marks)


def test_readme_has_python_snippets():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("code", list(_params()))
def test_readme_snippet_runs_as_pasted(code, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"snippet failed:\n{code}\n--- stderr ---\n{proc.stderr[-3000:]}"
