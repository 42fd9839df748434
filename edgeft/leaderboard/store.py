"""The results folder of a leaderboard run: the manifest (``run.json``), the episode rows
(``episodes.jsonl``, appended as episodes finish) and the checks that keep a folder to one
suite's definition."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeft.leaderboard.errors import LeaderboardError
from edgeft.leaderboard.tasks import task_key
from edgeft.suites import Suite, spec_differences

EPISODES_FILE = "episodes.jsonl"
MANIFEST_FILE = "run.json"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an ``episodes.jsonl``.

    Raises:
        LeaderboardError: a line is not a valid row, or an episode appears twice (the file is
            left untouched; the message names the line).
    """
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, int], int] = {}
    if not path.is_file():
        return rows
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
                key = task_key(row)
                if not isinstance(row["metrics"], dict) or not isinstance(row["timing"], dict):
                    raise ValueError("metrics/timing are not objects")
                if not line.endswith("\n"):
                    raise ValueError("the line is incomplete (no newline): a write was cut off")
            except (ValueError, KeyError, TypeError) as err:
                raise LeaderboardError(
                    f"{path}:{lineno} is not a valid episode row ({err}); the file was left as it "
                    "is. Delete that line (the episode will be re-run with --resume), or write to "
                    "another --out") from err
            if key in seen:
                raise LeaderboardError(
                    f"{path}:{lineno} repeats the episode {key} of line {seen[key]}; the file was "
                    "left as it is. Delete one of them, or write to another --out")
            seen[key] = lineno
            rows.append(row)
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    data = (json.dumps(row, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)  # one write per row: a kill leaves whole rows only
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def default_out(suite: Suite, root: str | os.PathLike = "results") -> Path:
    """``results/<suite>-v<version>``, or the next free ``-N`` variant if that one is not empty."""
    base = Path(root) / f"{suite.name}-v{suite.version}"
    cand, i = base, 1
    while cand.exists() and any(cand.iterdir()):
        i += 1
        cand = base.with_name(f"{base.name}-{i}")
    return cand


def _manifest(suite: Suite, policies: Sequence[str]) -> dict[str, Any]:
    import edgeft

    return {"suite": suite.name, "version": suite.version, "fingerprint": suite.fingerprint(),
            "spec": suite.spec(), "policies": list(policies), "edgeft_version": edgeft.__version__}


def prepare_out(out: Path, suite: Suite, policies: list[str], resume: bool) -> list[str]:
    """Check/create the results folder; returns the policies of the run (resume: old + new)."""
    man = out / MANIFEST_FILE
    if out.exists() and any(out.iterdir()):
        if not resume:
            raise LeaderboardError(
                f"results folder {out} is not empty; pass --resume to continue the run in it, or "
                "choose another --out (nothing was overwritten)")
        if not man.is_file():
            raise LeaderboardError(f"{out} holds no leaderboard run ({MANIFEST_FILE} missing); "
                                   "choose another --out")
        try:
            old = json.loads(man.read_text())
            old_policies, old_fp = list(old["policies"]), old["fingerprint"]
            old_suite, old_version = old["suite"], old["version"]
        except (ValueError, KeyError, TypeError) as err:
            raise LeaderboardError(
                f"{man} is corrupt ({err}); the folder was left as it is") from err
        if (old_suite, old_version, old_fp) != (suite.name, suite.version, suite.fingerprint()):
            raise LeaderboardError(
                f"{out} holds a run of suite {old_suite} v{old_version}"
                f"{_what_differs(old.get('spec'), suite)}; nothing was changed there. Choose "
                "another --out for this run")
        policies = old_policies + [p for p in policies if p not in old_policies]
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(man, json.dumps(_manifest(suite, policies), indent=1) + "\n")
    return policies


def _what_differs(old_spec: Any, suite: Suite, at_most: int = 4) -> str:
    """" with other settings (field: old -> new, ...)" for the error of a foreign results folder."""
    if not isinstance(old_spec, dict):
        return ", not of this suite's definition"
    diffs = spec_differences(old_spec, suite.spec())
    if any(d.startswith("num_seeds:") for d in diffs):  # the seed list follows from num_seeds
        diffs = [d for d in diffs if not d.startswith("seeds")]
    if not diffs:
        return ", not of this suite's definition"
    more = f", and {len(diffs) - at_most} more" if len(diffs) > at_most else ""
    return " with other settings (" + "; ".join(diffs[:at_most]) + more + ")"

