"""The application layer (``edgeft/``) is made of small functions: none longer than
:data:`MAX_LINES` lines of code (its docstring aside) or of McCabe complexity above
:data:`MAX_COMPLEXITY` (ruff's C901)."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "edgeft"
MAX_LINES = 60
MAX_COMPLEXITY = 12


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the function's end."""
    body = fn.body
    first = body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
        and len(body) > 1
    ):
        first = body[1]
    return int(fn.end_lineno or fn.lineno) - first.lineno + 1


def test_no_application_function_is_longer_than_the_limit():
    long = []
    for path in sorted(APP.rglob("*.py")):
        for fn in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            if code_lines(fn) > MAX_LINES:
                long.append(
                    f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}: "
                    f"{code_lines(fn)} lines > {MAX_LINES}"
                )
    assert not long, "split these functions:\n" + "\n".join(long)


def test_no_application_function_is_more_complex_than_the_limit():
    """ruff's McCabe check (C901) over the application layer."""
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    res = subprocess.run(
        [
            ruff,
            "check",
            "--no-cache",
            "--select",
            "C901",
            "--config",
            f"lint.mccabe.max-complexity={MAX_COMPLEXITY}",
            "--output-format",
            "concise",
            str(APP),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    tangled = [line for line in res.stdout.splitlines() if "C901" in line]
    assert res.returncode in (0, 1) and not tangled, (
        "split these functions:\n" + "\n".join(tangled) + res.stderr
    )


def test_the_line_count_leaves_out_the_docstring():
    src = '''
def f(x):
    """Doc."""
    if x and x > 1:
        return [i for i in range(x) if i % 2]
    for i in range(3):
        try:
            pass
        except ValueError:
            pass
    return 0 if x else 1
'''
    fn = next(_functions(ast.parse(src)))
    assert code_lines(fn) == 8
