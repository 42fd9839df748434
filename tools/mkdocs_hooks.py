"""MkDocs hooks of the documentation site (``hooks:`` in ``mkdocs.yml``).

1. The package as installed. edgeft's subpackages live in top-level folders (``envs/``,
   ``baselines/``, ``agents/``, ``training/``) mapped into ``edgeft`` by
   ``[tool.setuptools.package-dir]`` in ``pyproject.toml``; griffe (what mkdocstrings reads the
   code with) does not read that mapping and would not find ``edgeft.envs``. Before the build,
   :func:`link_tree` lays the package out as it is installed, a tree of symbolic links in a
   temporary folder built from that table, and the Python handler's ``paths`` are pointed at it,
   so the API reference documents the real modules under their import names.
2. An extensible navigation. A nav entry whose page is listed in :data:`OPTIONAL_PAGES` and
   does not exist is dropped, and a page of ``docs/`` that the nav does not list is appended
   under "More" (and logged), so a new page is never left out of the site; move it to its
   section in ``mkdocs.yml``.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("mkdocs.hooks.edgeft")

#: pages the nav names before they exist (written by other changes); dropped while missing
OPTIONAL_PAGES = frozenset({"submitting-an-agent.md"})
#: the nav section that collects pages the nav does not list
EXTRA_SECTION = "More"


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """Import package -> its folder, from ``pyproject.toml``'s ``[tool.setuptools.package-dir]``."""
    with open(root / "pyproject.toml", "rb") as f:
        table = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    return {name: root / folder for name, folder in table.items()}


def link_tree(dest: Path, root: Path = ROOT) -> Path:
    """Lay out ``edgeft`` as installed under ``dest`` (links into ``root``); returns ``dest``.

    The top package's folder becomes ``dest/edgeft`` with a link per entry; each mapped
    subpackage (``edgeft.envs`` -> ``envs/``) becomes a link at its import path.
    """
    dirs = package_dirs(root)
    top = [name for name in dirs if "." not in name]
    if len(top) != 1:
        raise ValueError(f"expected one top-level package in package-dir, got {top}")
    for name in sorted(dirs, key=lambda n: n.count(".")):
        target = dest.joinpath(*name.split("."))
        if "." not in name:
            target.mkdir(parents=True)
            for entry in dirs[name].iterdir():
                if entry.name != "__pycache__" and not (target / entry.name).exists():
                    os.symlink(entry, target / entry.name)
        else:
            if target.is_symlink() or target.exists():
                target.unlink() if target.is_symlink() else shutil.rmtree(target)
            os.symlink(dirs[name], target)
    return dest


@event_priority(100)  # before mkdocstrings reads its handler options
def on_config(config: Any) -> Any:
    tree = Path(tempfile.mkdtemp(prefix="edgeft-docs-"))
    atexit.register(shutil.rmtree, tree, ignore_errors=True)
    link_tree(tree)
    handlers = config["plugins"]["mkdocstrings"].config["handlers"]
    python = handlers.setdefault("python", {})
    python["paths"] = [str(tree), *[p for p in python.get("paths", []) if p != "."]]
    if config["nav"] is not None:
        config["nav"] = _complete_nav(config["nav"], Path(config["docs_dir"]))
    return config


def _nav_pages(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(_nav_pages(item) for item in nav)) if nav else set()
    if isinstance(nav, dict):
        return set().union(*(_nav_pages(v) for v in nav.values())) if nav else set()
    return set()


def _drop_missing(nav: Any, docs: Path) -> Any:
    if isinstance(nav, list):
        kept = [_drop_missing(item, docs) for item in nav]
        return [item for item in kept if item is not None] or None
    if isinstance(nav, dict):
        kept = {k: _drop_missing(v, docs) for k, v in nav.items()}
        kept = {k: v for k, v in kept.items() if v is not None}
        return kept or None
    if isinstance(nav, str) and nav in OPTIONAL_PAGES and not (docs / nav).exists():
        return None
    return nav


def _complete_nav(nav: list[Any], docs: Path) -> list[Any]:
    nav = _drop_missing(nav, docs) or []
    listed = _nav_pages(nav)
    missing = sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*.md"))
    missing = [p for p in missing if p not in listed]
    if missing:
        log.info("pages not in mkdocs.yml's nav, listed under %r: %s", EXTRA_SECTION, missing)
        nav = [*nav, {EXTRA_SECTION: missing}]
    return nav
