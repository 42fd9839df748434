"""Griffe extension of the documentation site: constants' ``#:`` comments as their docstrings, and
reStructuredText cross-reference roles as Markdown.

edgeft documents module constants and class attributes with a ``#:`` comment above the
assignment (the Sphinx convention, which griffe does not read); the extension makes such a
comment the attribute's docstring, so the API reference shows it.

edgeft's docstrings name other objects with Sphinx roles (``:class:`~edgeft.envs.mec.types.State```,
``:func:`make_policy```, ``:data:`STATE_FORMAT```). mkdocstrings renders Markdown, where such a
role would show as literal text. After the whole package is loaded, this extension rewrites every
role in every docstring: a target that names a public object of the package (resolved from the
docstring's own scope, as Sphinx would) becomes an autorefs link to its entry in the API
reference, and anything else (a private helper, an object of another library) becomes inline
code. Double-backquoted reST literals (````x````) are left alone: they render as code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|obj|exc|const|func):`(~?)([^`]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in the docstrings of the loaded package (see the module doc)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg, set()):
            if obj.is_attribute and obj.docstring is None:
                comment = _doc_comment(obj)
                if comment:
                    obj.docstring = griffe.Docstring(comment, parent=obj)
            doc = obj.docstring
            if doc is not None and ":" in doc.value and "`" in doc.value:
                doc.value = ROLE.sub(lambda m, o=obj: _replace(o, m), doc.value)


def _doc_comment(obj: griffe.Object) -> str:
    """The ``#:`` comment lines right above an attribute's assignment, without the markers."""
    try:
        lines = obj.lines_collection[obj.filepath]  # type: ignore[index]
    except (KeyError, TypeError):
        return ""
    found: list[str] = []
    i = (obj.lineno or 0) - 2
    while 0 <= i < len(lines) and lines[i].strip().startswith("#:"):
        found.insert(0, lines[i].strip()[2:].strip())
        i -= 1
    return "\n".join(found)


def _walk(obj: griffe.Object, seen: set[str]) -> Any:
    if obj.path in seen:
        return
    seen.add(obj.path)
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member, seen)


def _replace(obj: griffe.Object, match: re.Match[str]) -> str:
    short, target = match.group(1) == "~", match.group(2).strip()
    target = target.rstrip("()")
    title = target.rsplit(".", 1)[-1] if short else target
    path = _resolve(obj, target)
    if path is None:
        return f"`{title}`"
    return f"[`{title}`][{path}]"


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """The full path of a public, documented object of the package that ``target`` names."""
    collection = obj.modules_collection
    candidates = [target]
    scope: griffe.Object | None = obj
    while scope is not None:  # relative names: the object's scope, then its parents'
        candidates.append(f"{scope.path}.{target}")
        scope = scope.parent
    for path in candidates:
        try:
            found = collection[path]
        except (KeyError, ValueError):
            continue
        try:
            final = found.final_target if found.is_alias else found
        except griffe.AliasResolutionError:
            return None
        if any(part.startswith("_") for part in final.path.split(".")):
            return None
        return final.path
    return None
