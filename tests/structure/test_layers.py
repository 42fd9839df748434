"""The package's layers look down only: envs <- baselines <- training, agents <- the application
layer (``edgeft/``: episodes, scoring, suites, leaderboard, figures, CLI), at module level and
inside functions alike.

Every ``import`` and ``from ... import`` statement of every module (walked with ``ast``, so
imports made inside functions count) is checked against the layer of the module it names.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: folder (relative to the repository) -> its import package
FOLDERS = {
    "envs": "edgeft.envs",
    "baselines": "edgeft.baselines",
    "training": "edgeft.training",
    "agents": "edgeft.agents",
    "edgeft": "edgeft",
}
#: layer of each subpackage, bottom = 0; the rest of ``edgeft`` is the application layer
LAYERS = {"edgeft.envs": 0, "edgeft.baselines": 1, "edgeft.training": 2, "edgeft.agents": 2}
APP = 3


def layer_of(module: str) -> int:
    """The layer of an ``edgeft`` module (``edgeft`` itself and the rest: the application)."""
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return APP


def modules() -> list[tuple[str, Path]]:
    out = []
    for folder, package in FOLDERS.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if folder == "edgeft" and any(name.startswith(p) for p in LAYERS):
                continue
            out.append((name, path))
    return out


def imported(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, module) of every edgeft module ``path`` imports, absolute or relative."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
    return [(line, n) for line, n in out if n == "edgeft" or n.startswith("edgeft.")]


def test_the_walk_sees_every_layer():
    names = {layer_of(m) for m, _ in modules()}
    assert names == {0, 1, 2, APP}
    assert len(modules()) > 80


def test_no_module_imports_a_higher_layer():
    bad = []
    for module, path in modules():
        mine = layer_of(module)
        for line, name in imported(module, path):
            if layer_of(name) > mine:
                bad.append(
                    f"{path.relative_to(ROOT)}:{line} ({module}, layer {mine}) imports "
                    f"{name} (layer {layer_of(name)})"
                )
    assert not bad, "imports that look up:\n" + "\n".join(bad)


def test_training_and_agents_do_not_import_each_other():
    bad = []
    for module, path in modules():
        for line, name in imported(module, path):
            pair = {
                module.split(".")[1] if "." in module else "",
                name.split(".")[1] if name.count(".") else "",
            }
            if pair == {"training", "agents"}:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def import_graph() -> dict[str, set[str]]:
    """module -> the edgeft modules it imports (anywhere in it; ``from P import M`` of a
    submodule M counts as importing P.M, not the package P)."""
    mods = dict(modules())
    graph: dict[str, set[str]] = {}
    for module, path in mods.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("edgeft"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                if not name.startswith("edgeft"):
                    continue
                subs = {f"{name}.{a.name}" for a in node.names} & set(mods)
                deps.update(subs if subs else {name})
        graph[module] = (deps & set(mods)) - {module}
    return graph


def test_no_import_cycles_anywhere():
    """No cycle among the package's modules, counting imports inside functions (a package's
    ``__init__`` re-exporting its submodules is not an edge back from them)."""
    graph = import_graph()
    assert graph["edgeft.leaderboard.runner"] >= {"edgeft.leaderboard.tasks", "edgeft.suites"}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n) :] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
