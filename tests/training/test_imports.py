"""The dependency between the envs and the training engine runs one way at import time.

``edgeft.training`` may import from ``edgeft.envs`` (validation helpers, the FedLoRA surrogate the
calibration fits); ``edgeft.envs`` reaches the engine only inside functions, when a config is given
``training=`` or a real-mode env is built. So importing any env module, or running an env in
surrogate mode, never loads the engine, and there is no import-time cycle between the two."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import executed when the module is imported: statements outside
    functions and classes' methods, ``if TYPE_CHECKING:`` blocks excluded."""
    found: list[tuple[int, str]] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, (ast.With, ast.ClassDef)):
                visit(node.body)
            elif isinstance(node, ast.Import):
                found.extend((node.lineno, a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append((node.lineno, node.module))

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def test_the_parser_sees_module_level_imports_and_skips_lazy_ones(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "import edgeft.envs.real_config\n"
        "if TYPE_CHECKING:\n    from edgeft.training.mec import X\n"
        "def f():\n    from edgeft.training import learner\n"
        "class C:\n    from edgeft.training.data import y\n"
    )
    assert [m for _, m in _module_level_imports(src)] == [
        "typing",
        "edgeft.envs.real_config",
        "edgeft.training.data",
    ]


def test_no_env_module_imports_the_training_engine_at_import_time():
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / "envs").rglob("*.py"))
        for line, module in _module_level_imports(path)
        if module == "edgeft.training" or module.startswith("edgeft.training.")
    ]
    assert not offenders, "\n".join(offenders)


def test_env_modules_and_surrogate_episodes_never_load_the_engine():
    code = """
import importlib, pkgutil, sys
import gymnasium as gym
import numpy as np
import edgeft, edgeft.envs
for info in pkgutil.walk_packages(edgeft.envs.__path__, "edgeft.envs."):
    importlib.import_module(info.name)
for env_id in ("edgeft/FedLoRAScheduling-v0", "edgeft/MECOffloading-v0"):
    env = gym.make(env_id)
    env.reset(seed=0)
    env.step(env.action_space.sample())
# the package itself (plain Python: it registers the engines) may load; its engine never
loaded = sorted(m for m in sys.modules
                if (m.startswith("edgeft.training.") and m != "edgeft.training") or m == "torch")
assert not loaded, loaded
print("ok")
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_the_engine_config_imports_no_env_family():
    """TrainingConfig (built by the env configs' validation) needs only the shared helpers of
    ``edgeft.envs.common``, never a family's modules, which would close a cycle."""
    imports = [m for _, m in _module_level_imports(ROOT / "envs" / "real_config.py")]
    assert [m for m in imports if m.startswith("edgeft")] == ["edgeft.envs.common"]
