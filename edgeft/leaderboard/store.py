"""The results folder of a leaderboard run: the manifest (``run.json``), the episode rows
(``episodes.jsonl``, appended as episodes finish), the checks that keep a folder to one
suite's definition, the lock that keeps it to one run at a time (``.lock``), and the recovery
of a row cut off by a full disk or a file-size limit."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock
    fcntl = None  # type: ignore[assignment]

from edgeft.leaderboard.errors import LeaderboardError
from edgeft.leaderboard.tasks import task_key
from edgeft.suites import Suite, spec_differences

EPISODES_FILE = "episodes.jsonl"
MANIFEST_FILE = "run.json"
#: the lock file of a results folder (held with ``flock`` while a run writes there)
LOCK_FILE = ".lock"

_NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def write_error(err: OSError, what: str) -> LeaderboardError:
    """The one-line error for an ``OSError`` while writing ``what`` (a path, in words)."""
    reason = err.strerror or str(err)
    where = f" ({err.filename})" if err.filename and str(err.filename) not in what else ""
    if err.errno in _NO_SPACE:
        hint = (
            "free some space (or raise the file-size limit), then continue with --resume: "
            "the episodes already saved are kept"
        )
    else:
        hint = "choose a writable --out"
    return LeaderboardError(f"cannot write {what}{where}: {reason}; {hint}")


def has_content(folder: Path) -> bool:
    """Whether ``folder`` holds anything besides a lock file (False if it does not exist)."""
    if not folder.is_dir():
        return False
    return any(p.name != LOCK_FILE for p in folder.iterdir())


def read_rows(path: Path, *, skip_incomplete_last: bool = False) -> list[dict[str, Any]]:
    """The rows of an ``episodes.jsonl``.

    Args:
        path: the file (missing: no rows).
        skip_incomplete_last: ignore a last line without its newline (a write that was cut
            off; :func:`set_aside_incomplete_row` moves it out of the file) instead of failing.

    Raises:
        LeaderboardError: a line is not a valid row, or an episode appears twice (the file is
            left untouched; the message names the line).
    """
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, int], int] = {}
    if not path.is_file():
        return rows
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if skip_incomplete_last and not line.endswith("\n"):
                break  # only the last line can lack its newline
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
                key = task_key(row)
                if not isinstance(row["metrics"], dict) or not isinstance(row["timing"], dict):
                    raise ValueError("metrics/timing are not objects")
            except (ValueError, KeyError, TypeError) as err:
                if not line.endswith("\n"):
                    raise LeaderboardError(
                        f"{path}:{lineno} is an incomplete episode row (no newline: a write was "
                        "cut off); the file was left as it is. --resume sets it aside and "
                        "re-runs its episode"
                    ) from err
                raise LeaderboardError(
                    f"{path}:{lineno} is not a valid episode row ({err}); the file was left as it "
                    "is. Delete that line (the episode will be re-run with --resume), or write to "
                    "another --out"
                ) from err
            if not line.endswith("\n"):
                raise LeaderboardError(
                    f"{path}:{lineno} is an incomplete episode row (no newline: a write was cut "
                    "off); the file was left as it is. --resume sets it aside and re-runs its "
                    "episode"
                )
            if key in seen:
                raise LeaderboardError(
                    f"{path}:{lineno} repeats the episode {key} of line {seen[key]}; the file was "
                    "left as it is. Delete one of them, or write to another --out"
                )
            seen[key] = lineno
            rows.append(row)
    return rows


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)  # short under a file-size limit; the next write then fails
        view = view[n:]


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row to ``episodes.jsonl``, on disk when it returns.

    A kill leaves whole rows only (one write per row); a full disk or a file-size limit can
    leave the row cut off: the write fails, the cut row stays as the file's last line, and the
    next ``--resume`` sets it aside (:func:`set_aside_incomplete_row`).

    Raises:
        LeaderboardError: the row could not be written (the rows before it are kept).
    """
    data = (json.dumps(row, sort_keys=True) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise write_error(err, f"an episode row to {path}") from err


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` at once (a temporary file renamed over it).

    Raises:
        LeaderboardError: it could not be written (``path`` is left as it was).
    """
    tmp = path.with_name("." + path.name + ".tmp")
    try:
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    except OSError as err:
        raise write_error(err, str(path)) from err


def _incomplete_tail(path: Path) -> int | None:
    """The offset of the file's last line if it lacks its newline, else None."""
    size = path.stat().st_size
    if size == 0:
        return None
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return None
        end = size
        while end > 0:
            start = max(0, end - (1 << 16))
            fh.seek(start)
            i = fh.read(end - start).rfind(b"\n")
            if i >= 0:
                return start + i + 1
            end = start
    return 0


def set_aside_incomplete_row(path: Path) -> Path | None:
    """Move an incomplete last row of ``episodes.jsonl`` (no newline: its write was cut off by
    a full disk, a file-size limit or a crash) into ``episodes.jsonl.incomplete-<time>`` beside
    it; its episode then runs again. Returns the backup's path, or None if the file ends whole.

    The backup is on disk before the file is cut, so a failure in between leaves the row in
    both places, never in neither.

    Raises:
        LeaderboardError: the backup could not be written (the file is left as it was).
    """
    if not path.is_file():
        return None
    start = _incomplete_tail(path)
    if start is None:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.incomplete-{stamp}")
    i = 1
    while backup.exists():
        i += 1
        backup = path.with_name(f"{path.name}.incomplete-{stamp}-{i}")
    try:
        with open(path, "r+b") as fh:
            fh.seek(start)
            tail = fh.read()
            fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                _write_all(fd, tail)
                os.fsync(fd)
            finally:
                os.close(fd)
            fh.truncate(start)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise write_error(err, f"the incomplete last row of {path} aside to {backup}") from err
    return backup


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold the results folder ``out`` for this run: an exclusive ``flock`` on ``out/.lock``,
    released (and the file removed) on exit; the OS releases it if the process dies.

    Raises:
        LeaderboardError: another run holds the folder (the message names its process), or the
            lock file cannot be written.
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    path = out / LOCK_FILE
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise write_error(err, f"the results folder {out}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _lock_holder(fd)
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise write_error(err, f"the lock of {out}") from err
            raise LeaderboardError(
                f"results folder {out} is in use by another leaderboard run{holder}; wait for "
                "it to finish (then --resume continues it), or choose another --out (nothing "
                "was changed)"
            ) from None
        # the run that held it may have removed the file in between: then lock the new one
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        with contextlib.suppress(OSError):  # the holder's name is a courtesy (a full disk...)
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still held: a run waiting on this file retries (above)
        os.close(fd)


def _lock_holder(fd: int) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = os.pread(fd, 200, 0).decode().strip()
        if text:
            return f" ({text})"
    return ""


def default_out(suite: Suite, root: str | os.PathLike = "results") -> Path:
    """``results/<suite>-v<version>``, or the next free ``-N`` variant if that one is not empty."""
    base = Path(root) / f"{suite.name}-v{suite.version}"
    cand, i = base, 1
    while cand.exists() and (not cand.is_dir() or has_content(cand)):
        i += 1
        cand = base.with_name(f"{base.name}-{i}")
    return cand


def _manifest(suite: Suite, policies: Sequence[str]) -> dict[str, Any]:
    import edgeft

    return {
        "suite": suite.name,
        "version": suite.version,
        "fingerprint": suite.fingerprint(),
        "spec": suite.spec(),
        "policies": list(policies),
        "edgeft_version": edgeft.__version__,
    }


def prepare_out(out: Path, suite: Suite, policies: list[str], resume: bool) -> list[str]:
    """Check/create the results folder; returns the policies of the run (resume: old + new)."""
    man = out / MANIFEST_FILE
    if has_content(out):
        if not resume:
            raise LeaderboardError(
                f"results folder {out} is not empty; pass --resume to continue the run in it, or "
                "choose another --out (nothing was overwritten)"
            )
        if not man.is_file():
            raise LeaderboardError(
                f"{out} holds no leaderboard run ({MANIFEST_FILE} missing); choose another --out"
            )
        try:
            old = json.loads(man.read_text())
            old_policies, old_fp = list(old["policies"]), old["fingerprint"]
            old_suite, old_version = old["suite"], old["version"]
        except (ValueError, KeyError, TypeError) as err:
            raise LeaderboardError(
                f"{man} is corrupt ({err}); the folder was left as it is"
            ) from err
        if (old_suite, old_version, old_fp) != (suite.name, suite.version, suite.fingerprint()):
            raise LeaderboardError(
                f"{out} holds a run of suite {old_suite} v{old_version}"
                f"{_what_differs(old.get('spec'), suite)}; nothing was changed there. Choose "
                "another --out for this run"
            )
        policies = old_policies + [p for p in policies if p not in old_policies]
    make_folder(out)
    write_atomic(man, json.dumps(_manifest(suite, policies), indent=1) + "\n")
    return policies


def check_out(out: Path, resume: bool) -> None:
    """What can be told about ``--out`` before anything runs.

    Raises:
        LeaderboardError: ``out`` is a file; or ``resume`` and ``out`` is missing or empty.
    """
    if out.exists() and not out.is_dir():
        raise LeaderboardError(
            f"--out {out} is a file, not a folder; choose another --out (nothing was changed)"
        )
    if resume and not out.exists():
        raise LeaderboardError(
            f"--resume: results folder {out} does not exist; check --out (the folder of the "
            "run to continue), or leave out --resume to start a new run there"
        )
    if resume and not has_content(out):
        raise LeaderboardError(
            f"--resume: results folder {out} is empty, there is no run to continue; check "
            "--out, or leave out --resume to start a new run there"
        )


def make_folder(out: Path) -> bool:
    """Create ``out`` (and its parents); returns whether it was created.

    Raises:
        LeaderboardError: it cannot be created (read-only, a file in the way...).
    """
    if out.is_dir():
        return False
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(err, f"the results folder {out}") from err
    return True


def _what_differs(old_spec: Any, suite: Suite, at_most: int = 4) -> str:
    """The error's tail for a foreign results folder: ' with other settings (field: old -> new,
    ...)'."""
    if not isinstance(old_spec, dict):
        return ", not of this suite's definition"
    diffs = spec_differences(old_spec, suite.spec())
    if any(d.startswith("num_seeds:") for d in diffs):  # the seed list follows from num_seeds
        diffs = [d for d in diffs if not d.startswith("seeds")]
    if not diffs:
        return ", not of this suite's definition"
    more = f", and {len(diffs) - at_most} more" if len(diffs) > at_most else ""
    return " with other settings (" + "; ".join(diffs[:at_most]) + more + ")"
