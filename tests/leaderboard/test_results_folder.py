"""The leaderboard's results folder under bad conditions: a row cut off by a file-size limit (a
real RLIMIT_FSIZE) or a crash, a second run on the same folder, --resume on a folder that holds
no run, bad --workers, unwritable folders. Each gives one clear line, and nothing a user already
has is lost or overwritten."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeft import leaderboard as lb
from edgeft import suites
from edgeft.cli import main
from edgeft.leaderboard.store import LOCK_FILE, folder_lock, set_aside_incomplete_row
from edgeft.suites import FEDLORA, Scenario, Suite

SMALL = Suite(
    "rf-small",
    1,
    "fedlora",
    "test suite",
    (Scenario("k4", FEDLORA, {"num_devices": 4, "episode_rounds": 4}),),
    num_seeds=3,
)
OTHER = Suite(
    "rf-other",
    1,
    "fedlora",
    "test suite",
    (Scenario("k5", FEDLORA, {"num_devices": 5, "episode_rounds": 3}),),
    num_seeds=2,
)
KW = {"backend": "serial", "progress": False, "plots": False}
CLI = ["--backend", "serial", "--policies", "gs", "--no-plots", "--no-progress"]
ASIDE = "1 incomplete row from an interrupted write was set aside in "


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}


def _view(out: Path) -> list[dict]:
    """The episode rows without their measured timing, in a fixed order."""
    rows = lb.read_rows(out / lb.EPISODES_FILE)
    for r in rows:
        del r["timing"]
    return sorted(rows, key=lambda r: (r["scenario"], r["policy"], r["seed"]))


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def registered(monkeypatch):
    for s in (SMALL, OTHER):
        monkeypatch.setitem(suites.SUITES, s.name, s)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "run"
    lb.run_leaderboard(SMALL, ["gs"], out, **KW)
    return out


# ---------------------------------------------------------------------------- an incomplete row
_LIMITED = """
import resource, sys
from edgeft import suites
from edgeft.cli import main
from edgeft.suites import FEDLORA, Scenario, Suite
suites.SUITES["rf-small"] = Suite("rf-small", 1, "fedlora", "test suite",
    (Scenario("k4", FEDLORA, {"num_devices": 4, "episode_rounds": 4}),), num_seeds=3)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # no file may grow past this
sys.exit(main(["leaderboard", *sys.argv[2:]]))
"""


def test_a_file_size_limit_cuts_a_row_and_resume_sets_it_aside(tmp_path, clean, registered, capsys):
    script = tmp_path / "limited.py"
    script.write_text(_LIMITED)
    out = tmp_path / "run"
    first = (clean / lb.EPISODES_FILE).read_bytes().splitlines(keepends=True)
    limit = len(first[0]) + len(first[1]) + 100  # the third row is cut after 100 bytes
    proc = subprocess.run(
        [sys.executable, str(script), str(limit), "--suite", SMALL.name, "--out", str(out), *CLI],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"edgeft leaderboard: error: cannot write an episode row to {out / lb.EPISODES_FILE}: "
        "File too large; free some space (or raise the file-size limit), then continue with "
        "--resume: the episodes already saved are kept"
    ]
    data = (out / lb.EPISODES_FILE).read_bytes()
    *whole, cut = data.split(b"\n")
    assert len(data) == limit and len(whole) == 2 and 0 < len(cut) < len(first[2])
    for row, ref in zip(whole, first):  # the rows before it were written whole, in order
        assert {**json.loads(row), "timing": 0} == {**json.loads(ref), "timing": 0}
    # the file as it is: read_rows refuses, naming the line and what --resume does
    with pytest.raises(
        lb.LeaderboardError,
        match=r"episodes.jsonl:3 is an incomplete episode "
        r"row .*--resume sets it aside",
    ):
        lb.read_rows(out / lb.EPISODES_FILE)
    # --resume: the cut row is moved to a backup, reported, and its episode runs again
    assert main(["leaderboard", "--suite", SMALL.name, "--out", str(out), "--resume", *CLI]) == 0
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if ASIDE in x]
    backup = Path(line.split(ASIDE)[1].split(";")[0])
    assert line == f"edgeft leaderboard: {ASIDE}{backup}; its episode runs again"
    assert backup.parent == out and backup.name.startswith("episodes.jsonl.incomplete-")
    assert backup.read_bytes() == cut
    assert _view(out) == _view(clean)
    # a second resume finds nothing to set aside and runs nothing
    before = (out / lb.EPISODES_FILE).read_bytes()
    assert main(["leaderboard", "--suite", SMALL.name, "--out", str(out), "--resume", *CLI]) == 0
    assert ASIDE not in capsys.readouterr().err
    assert (out / lb.EPISODES_FILE).read_bytes() == before


def test_incomplete_last_rows_of_any_kind_are_set_aside_never_dropped(tmp_path, clean, capsys):
    good = (clean / lb.EPISODES_FILE).read_bytes()
    rows = good.splitlines(keepends=True)
    for i, tail in enumerate(
        [
            rows[5].rstrip(b"\n"),  # whole but for its newline
            b"\0" * 37,  # zeros left by a crash
            rows[5][:1],
        ]
    ):
        out = tmp_path / f"run{i}"
        out.mkdir()
        (out / lb.MANIFEST_FILE).write_bytes((clean / lb.MANIFEST_FILE).read_bytes())
        (out / lb.EPISODES_FILE).write_bytes(b"".join(rows[:5]) + tail)
        lb.run_leaderboard(SMALL, ["gs"], out, resume=True, **KW)
        backups = list(out.glob("episodes.jsonl.incomplete-*"))
        assert len(backups) == 1 and backups[0].read_bytes() == tail
        assert ASIDE + str(backups[0]) in capsys.readouterr().err
        assert _view(out) == _view(clean)
    # the function on its own: a file that ends whole is left alone
    assert set_aside_incomplete_row(out / lb.EPISODES_FILE) is None
    assert set_aside_incomplete_row(tmp_path / "missing.jsonl") is None
    # a second cut within the same second gets its own backup, the first is kept
    ep = out / lb.EPISODES_FILE
    ep.write_bytes(ep.read_bytes() + b'{"x"')
    first = set_aside_incomplete_row(ep)
    ep.write_bytes(ep.read_bytes() + b'{"y"')
    second = set_aside_incomplete_row(ep)
    assert first != second and first.read_bytes() == b'{"x"' and second.read_bytes() == b'{"y"'


def test_a_corrupt_row_before_the_last_still_refuses(tmp_path, clean):
    out = tmp_path / "run"
    out.mkdir()
    (out / lb.MANIFEST_FILE).write_bytes((clean / lb.MANIFEST_FILE).read_bytes())
    rows = (clean / lb.EPISODES_FILE).read_bytes().splitlines(keepends=True)
    (out / lb.EPISODES_FILE).write_bytes(
        rows[0] + b'{"scenario": "k4", "pol\n' + rows[1] + b'{"cut'
    )
    before = _files(out)
    with pytest.raises(
        lb.LeaderboardError, match=r"episodes.jsonl:2 is not a valid episode row .*left as it is"
    ):
        lb.run_leaderboard(SMALL, ["gs"], out, resume=True, **KW)
    assert _files(out) == before  # no backup made, nothing rewritten


# ---------------------------------------------------------------------------- the lock
_HOLD = """
import sys
from pathlib import Path
from edgeft.leaderboard.store import folder_lock
with folder_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_run_on_the_same_folder_stops_at_once(tmp_path, registered, capsys):
    out = tmp_path / "run"
    lb.run_leaderboard(SMALL, ["gs"], out, max_episodes=2, **KW)
    assert not (out / LOCK_FILE).exists()  # released on return
    before = _files(out)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(out)],
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = rf"results folder {out} is in use by another leaderboard run \(pid {holder.pid} "
        with pytest.raises(lb.LeaderboardError, match=busy):
            lb.run_leaderboard(SMALL, ["gs"], out, resume=True, **KW)
        rc = main(["leaderboard", "--suite", SMALL.name, "--out", str(out), "--resume", *CLI])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("edgeft leaderboard: error: ")
        assert (
            "wait for it to finish (then --resume continues it), or choose another --out" in err[0]
        )
        # without --resume the folder is refused too (busy or not empty), never written
        with pytest.raises(lb.LeaderboardError, match="in use|not empty"):
            lb.run_leaderboard(SMALL, ["gs"], out, **KW)
        assert {k: v for k, v in _files(out).items() if k != LOCK_FILE} == before
    finally:
        holder.kill()  # a killed holder: the OS releases its lock (its file stays)
        holder.wait()
    assert (out / LOCK_FILE).exists()
    s = lb.run_leaderboard(SMALL, ["gs"], out, resume=True, **KW)
    assert s["episodes"] == s["expected_episodes"] == 9 and not (out / LOCK_FILE).exists()


def test_the_lock_is_held_while_episodes_run(tmp_path, monkeypatch):
    from edgeft.leaderboard import runner

    out = tmp_path / "run"
    seen: list[Exception] = []
    append = runner.append_row

    def append_and_try_a_second_run(path, row):
        if not seen:  # mid-run: a second run on the folder must stop before writing
            with pytest.raises(lb.LeaderboardError, match="is in use by another") as exc:
                lb.run_leaderboard(SMALL, ["gs"], out, resume=True, **KW)
            seen.append(exc.value)
        append(path, row)

    monkeypatch.setattr(runner, "append_row", append_and_try_a_second_run)
    s = lb.run_leaderboard(SMALL, ["gs"], out, **KW)
    assert len(seen) == 1 and f"(pid {os.getpid()} since" in str(seen[0])
    assert s["episodes"] == 9 and len(lb.read_rows(out / lb.EPISODES_FILE)) == 9


def test_lock_file_replaced_between_open_and_lock_is_not_trusted(tmp_path):
    # a run that held the folder removes the lock file on exit; a run that opened the old file
    # just before must not take the removed file's lock as the folder's
    with folder_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().startswith(f"pid {os.getpid()} since ")
    assert not (tmp_path / LOCK_FILE).exists()
    with folder_lock(tmp_path), pytest.raises(lb.LeaderboardError, match="in use"):
        with folder_lock(tmp_path):
            pass


# ---------------------------------------------------------------------------- bad inputs
def test_resume_needs_a_folder_that_holds_a_run(tmp_path, registered, capsys):
    missing = tmp_path / "mistyped"
    with pytest.raises(
        lb.LeaderboardError,
        match=rf"--resume: results folder {missing} does "
        "not exist; check --out",
    ):
        lb.run_leaderboard(SMALL, ["gs"], missing, resume=True, **KW)
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / LOCK_FILE).write_text("")  # a stale lock file does not count as a run
    with pytest.raises(
        lb.LeaderboardError,
        match=rf"--resume: results folder {empty} is empty, "
        "there is no run to continue",
    ):
        lb.run_leaderboard(SMALL, ["gs"], empty, resume=True, **KW)
    assert [p.name for p in empty.iterdir()] == [LOCK_FILE]
    for out in (missing, empty):
        assert (
            main(["leaderboard", "--suite", SMALL.name, "--out", str(out), "--resume", *CLI]) == 2
        )
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "leave out --resume to start a new run there" in err
    # without --resume, an empty folder (or one with a stale lock file) is used
    s = lb.run_leaderboard(SMALL, ["gs"], empty, **KW)
    assert s["episodes"] == 9


def test_resume_of_several_suites_starts_the_ones_not_reached(tmp_path, registered, capsys):
    out = tmp_path / "both"
    both = f"{SMALL.name},{OTHER.name}"
    # the first suite was interrupted, the second not started
    lb.run_leaderboard(SMALL, ["gs"], out / SMALL.name, max_episodes=2, **KW)
    assert main(["leaderboard", "--suite", both, "--out", str(out), "--resume", *CLI]) == 0
    for s in (SMALL, OTHER):
        summary = json.loads((out / s.name / "summary.json").read_text())
        assert summary["episodes"] == summary["expected_episodes"]
    capsys.readouterr()
    for bad in (tmp_path / "nope", tmp_path / "unrelated"):
        if bad.name == "unrelated":
            (bad / "x").mkdir(parents=True)
        assert main(["leaderboard", "--suite", both, "--out", str(bad), "--resume", *CLI]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "--resume: " in err
    assert not (tmp_path / "nope").exists()
    assert [p.name for p in (tmp_path / "unrelated").iterdir()] == ["x"]


@pytest.mark.parametrize("workers", [0, -1, True, 1.5])
def test_workers_are_checked_before_anything_is_written(tmp_path, workers, capsys):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"--workers must be a whole number from 1 up \(got "):
        lb.run_leaderboard(SMALL, ["gs"], out, workers=workers, **KW)
    assert not out.exists()


def test_cli_workers_out_of_range_is_one_line(tmp_path, registered, capsys):
    out = tmp_path / "run"
    for value in ("0", "-1"):
        assert (
            main(
                ["leaderboard", "--suite", SMALL.name, "--out", str(out), *CLI, "--workers", value]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert err == (
            f"edgeft leaderboard: error: --workers must be a whole number from 1 up "
            f"(got {value}): the number of worker processes (Ray CPUs with --backend "
            f"ray); leave it out to use all {os.cpu_count()} CPUs\n"
        )
        assert not out.exists()
    # an existing run is not touched by a bad value either
    lb.run_leaderboard(SMALL, ["gs"], out, max_episodes=2, **KW)
    before = _files(out)
    assert (
        main(
            [
                "leaderboard",
                "--suite",
                SMALL.name,
                "--out",
                str(out),
                "--resume",
                *CLI,
                "--workers",
                "0",
            ]
        )
        == 2
    )
    assert _files(out) == before


def test_unwritable_folders_are_one_line_errors(tmp_path, registered, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    cases = {
        # --out is a file
        blocker: f"edgeft leaderboard: error: --out {blocker} is a file, not a folder; choose "
        "another --out (nothing was changed)",
        # a file where a parent folder should be
        blocker / "run": f"edgeft leaderboard: error: cannot write the results folder "
        f"{blocker / 'run'}: Not a directory; choose a writable --out",
    }
    for out, message in cases.items():
        assert main(["leaderboard", "--suite", SMALL.name, "--out", str(out), *CLI]) == 2
        assert capsys.readouterr().err.splitlines() == [message]
    assert blocker.read_text() == "mine"


_NO_WRITES = """
import resource, sys
from edgeft import suites
from edgeft.cli import main
from edgeft.suites import FEDLORA, Scenario, Suite
suites.SUITES["rf-small"] = Suite("rf-small", 1, "fedlora", "test suite",
    (Scenario("k4", FEDLORA, {"num_devices": 4, "episode_rounds": 4}),), num_seeds=3)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # not one byte may be written
sys.exit(main(["leaderboard", *sys.argv[1:]]))
"""


def test_no_room_at_all_is_one_line_and_leaves_no_folder(tmp_path):
    script = tmp_path / "nowrites.py"
    script.write_text(_NO_WRITES)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(script), "--suite", SMALL.name, "--out", str(out), *CLI],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"edgeft leaderboard: error: cannot write {out / lb.MANIFEST_FILE}: File too large; free "
        "some space (or raise the file-size limit), then continue with --resume: the episodes "
        "already saved are kept"
    ]
    assert not out.exists()  # the folder it created was removed again


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root writes into read-only folders (the other cases run as root)",
)
def test_read_only_folders_are_one_line_errors(tmp_path, registered, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    done = tmp_path / "done"
    lb.run_leaderboard(SMALL, ["gs"], done, max_episodes=2, **KW)
    before = _files(done)
    try:
        ro.chmod(0o555)
        done.chmod(0o555)
        for args in (["--out", str(ro / "run")], ["--out", str(done), "--resume"]):
            assert main(["leaderboard", "--suite", SMALL.name, *args, *CLI]) == 2
            err = capsys.readouterr().err.splitlines()
            assert len(err) == 1 and "Permission denied; choose a writable --out" in err[0]
    finally:
        ro.chmod(0o755)
        done.chmod(0o755)
    assert _files(done) == before and list(ro.iterdir()) == []


def test_read_only_file_system_message(tmp_path, monkeypatch, capsys, registered):
    """A read-only mount (EROFS) as the kernel reports it, for any user (root included)."""
    import errno

    from edgeft.leaderboard import store

    out = tmp_path / "run"
    lb.run_leaderboard(SMALL, ["gs"], out, max_episodes=2, **KW)
    before = _files(out)
    real_open = os.open

    def refuse_in_out(path, flags, *args, **kwargs):
        if Path(path).parent == out and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(store.os, "open", refuse_in_out)
    assert main(["leaderboard", "--suite", SMALL.name, "--out", str(out), "--resume", *CLI]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"edgeft leaderboard: error: cannot write the results folder {out} ({out / LOCK_FILE}): "
        "Read-only file system; choose a writable --out"
    ]
    assert _files(out) == before


def test_any_other_file_error_is_one_line(tmp_path, monkeypatch, capsys, registered):
    from edgeft.leaderboard import cli

    def fail(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x" / "run.json"))

    monkeypatch.setattr(cli, "run_leaderboard", fail)
    assert main(["leaderboard", "--suite", SMALL.name, "--out", str(tmp_path / "x"), *CLI]) == 2
    assert capsys.readouterr().err == (
        f"edgeft leaderboard: error: cannot use {tmp_path / 'x' / 'run.json'}: Permission denied\n"
    )
