"""Type-check edgeft as the one package it is installed as, with mypy.

The subpackages live in top-level folders (``envs/``, ``baselines/``, ``agents/``,
``training/``) mapped into ``edgeft`` by ``[tool.setuptools.package-dir]``; mypy does not read that
mapping and would see ``envs/fedlora/config.py`` as a module ``envs.fedlora.config`` (every
``edgeft.envs.*`` import an ``Any``). This script lays the package out as it is installed, a
tree of symbolic links in a temporary folder (``edgeft/`` -> the package root's files,
``edgeft/envs`` -> ``envs/`` ...), runs mypy on it with the ``[tool.mypy]`` settings of
``pyproject.toml``, and prints its messages with the repository's own paths. It then checks that
mypy resolves a config class to its real type (``reveal_type`` is not ``Any``).

Usage::

    python tools/typecheck.py            # exit status 0 = no errors, 1 = errors, 2 = no mypy
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: import package -> folder in the repository
MAPPING = {
    "edgeft": "edgeft",
    "edgeft.envs": "envs",
    "edgeft.baselines": "baselines",
    "edgeft.agents": "agents",
    "edgeft.training": "training",
}
PROBE = "from edgeft.envs.fedlora.config import FedLoRAConfig\nreveal_type(FedLoRAConfig)\n"


def link_tree(dest: Path) -> None:
    """``dest/edgeft``: the package as installed, every entry a link into the repository."""
    pkg = dest / "edgeft"
    pkg.mkdir()
    for entry in (ROOT / "edgeft").iterdir():
        if entry.name != "__pycache__":
            os.symlink(entry, pkg / entry.name)
    for name, folder in MAPPING.items():
        if name != "edgeft":
            os.symlink(ROOT / folder, pkg / name.split(".", 1)[1])


def repo_path(line: str) -> str:
    """A mypy message with ``edgeft/envs/...`` written as ``envs/...`` (the repository's path)."""
    for name, folder in sorted(MAPPING.items(), key=lambda kv: -len(kv[0])):
        prefix = name.replace(".", "/") + "/"
        if line.startswith(prefix):
            return folder + "/" + line[len(prefix) :]
    return line


def run_mypy(tree: Path, *targets: str) -> tuple[int, str]:
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(ROOT / ".mypy_cache"),
        *targets,
    ]
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=False)
    out = "\n".join(repo_path(line) for line in (proc.stdout + proc.stderr).splitlines())
    return proc.returncode, out


def main() -> int:
    if importlib.util.find_spec("mypy") is None:
        print("typecheck: mypy is not installed (python -m pip install mypy)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="edgeft-typecheck-") as tmp:
        tree = Path(tmp)
        link_tree(tree)
        code, out = run_mypy(tree, "-p", "edgeft")
        print(out)
        (tree / "probe.py").write_text(PROBE)
        _, probe = run_mypy(tree, "probe.py")
    revealed = re.search(r'Revealed type is "(.*)"', probe)
    if revealed is None or revealed.group(1) == "Any" or "FedLoRAConfig" not in revealed.group(1):
        print(
            f"typecheck: mypy does not resolve edgeft.envs to its real types:\n{probe}",
            file=sys.stderr,
        )
        return 1
    print("typecheck: edgeft.envs.fedlora.config.FedLoRAConfig resolves to its real type")
    return code


if __name__ == "__main__":
    sys.exit(main())
