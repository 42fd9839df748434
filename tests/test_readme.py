"""Every Python snippet in README.md and docs/*.md runs as pasted, each in a fresh interpreter.

A snippet is a fenced block opened by a line of optional indentation then "```python" (blocks inside
list items are indented; the indentation is removed, nothing else is changed). Bash blocks are not
run. Snippets that build a real-mode env (``mode="real"``: the offline MiniLM model, torch) are
marked slow."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^( *)```python\n(.*?)^\1```", re.M | re.S)


def snippets(text: str) -> list[str]:
    """The Python blocks of a markdown text, dedented."""
    return [textwrap.dedent(m.group(2)) for m in FENCE.finditer(text)]


def _params():
    for doc in DOCS:
        for i, code in enumerate(snippets(doc.read_text(encoding="utf-8"))):
            first = next(line for line in code.splitlines() if "gym.make" in line or line.strip())
            marks = [pytest.mark.slow] if 'mode="real"' in code else []
            yield pytest.param(code, id=f"{doc.name}-{i}-{first.strip()[:40]}", marks=marks)


def test_the_extractor_finds_top_level_and_indented_blocks_only():
    text = (
        "```python\nprint(1)\n```\n\n```bash\nls\n```\n"
        "- item:\n\n  ```python\n  x = 2\n  if x:\n      print(x)\n  ```\n"
    )
    assert snippets(text) == ["print(1)\n", "x = 2\nif x:\n    print(x)\n"]


def test_the_docs_have_python_snippets():
    counts = {doc.name: len(snippets(doc.read_text(encoding="utf-8"))) for doc in DOCS}
    assert counts["README.md"] >= 4 and counts["corrections.md"] >= 3, counts


@pytest.mark.parametrize("code", list(_params()))
def test_snippet_runs_as_pasted(code, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"snippet failed:\n{code}\n--- stderr ---\n{proc.stderr[-3000:]}"
