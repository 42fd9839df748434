"""Run (or resume) a suite for a list of policies into a results folder."""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeft import scoring
from edgeft.envs.family import family_of_env_id
from edgeft.leaderboard.backends import execute
from edgeft.leaderboard.errors import LeaderboardError
from edgeft.leaderboard.page import write_page
from edgeft.leaderboard.report import write_plots, write_summary
from edgeft.leaderboard.store import (
    EPISODES_FILE,
    append_row,
    check_out,
    default_out,
    folder_lock,
    make_folder,
    prepare_out,
    read_rows,
    set_aside_incomplete_row,
    write_error,
)
from edgeft.leaderboard.summary import summarize
from edgeft.leaderboard.tasks import (
    HINDSIGHT,
    make_env_and_policy,
    make_tasks,
    task_cost,
    task_key,
)
from edgeft.registration import register_envs
from edgeft.suites import Suite, get_suite


def check_policies(suite: Suite, policies: Sequence[str]) -> None:
    """Fail fast, before any episode, on a policy name that cannot play every scenario."""
    register_envs()  # the env ids of families registered since import
    for sc in suite.scenarios:
        try:
            family_of_env_id(sc.env_id)
        except ValueError as err:
            raise LeaderboardError(f"suite {suite.name} scenario {sc.name}: {err}") from err
        for pol in policies:
            if pol == HINDSIGHT:
                continue
            task = {"env_id": sc.env_id, "config": sc.config, "policy": pol, "seed": 0}
            try:
                env, _ = make_env_and_policy(task)
                env.close()
            except (ValueError, FileNotFoundError) as err:
                # make_policy's message lists the family's policies for an unknown name
                raise LeaderboardError(
                    f"policy {pol!r} cannot play suite {suite.name} scenario {sc.name}: {err}"
                ) from err


def default_policies(suite: Suite) -> list[str]:
    """The suite's own policies if it names them, else the family's reference policies; then
    the suite's shipped agents that are installed."""
    import edgeft

    refs = list(suite.policies) or [n for n in edgeft.list_policies(suite.family) if ":" not in n]
    agents = []
    for name in suite.agents:
        algo, _, model = name.partition(":")
        try:
            from edgeft.agents.loader import resolve_model_path

            resolve_model_path(algo, model)
            agents.append(name)
        except (FileNotFoundError, ImportError):
            pass
    return refs + agents


def scored_policies(suite: Suite, policies: Sequence[str]) -> list[str]:
    """``policies`` plus what the score needs: the family's anchor policy (scored 0) and the
    ``hindsight`` bound rows (scored 100), when the family has a headline and a bound."""
    out = list(policies)
    if not scoring.is_scored(suite.family, suite.headline):
        return out
    head = scoring.headline_of(suite.family, suite.headline)
    if head.anchor not in out:
        out.append(head.anchor)
    if HINDSIGHT not in out:
        out.append(HINDSIGHT)
    return out


def check_workers(workers: int | None) -> int | None:
    """``workers`` as an int, or None (all CPUs).

    Raises:
        ValueError: not a whole number of 1 or more (the message names the allowed range).
    """
    if workers is None:
        return None
    try:
        if isinstance(workers, bool):
            raise TypeError
        n = operator.index(workers)
    except TypeError:
        n = None
    if n is None or n < 1:
        raise ValueError(
            f"--workers must be a whole number from 1 up (got {workers!r}): the number of "
            f"worker processes (Ray CPUs with --backend ray); leave it out to use all "
            f"{os.cpu_count() or 1} CPUs"
        )
    return n


def run_leaderboard(
    suite: str | Suite,
    policies: Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
    plots: bool = True,
    max_episodes: int | None = None,
    score: bool = True,
    ray_nice: int | None = None,
    ship_code: bool = True,
) -> dict[str, Any]:
    """Run (or resume) ``suite`` for ``policies`` into ``out``; returns the summary.

    The results folder is held by one run at a time (an OS lock on ``out/.lock``, released on
    return or when the process dies). Every input is checked before anything is written.

    Args:
        suite: a suite name (:func:`edgeft.suites.list_suites`) or a :class:`Suite`.
        policies: policy names (default: :func:`default_policies`).
        out: results folder (default: :func:`default_out`); must be empty unless ``resume``.
        resume: continue the run in ``out`` (which must hold one): only episodes missing from
            ``episodes.jsonl`` run. A last row cut off by a full disk or a file-size limit is
            moved to ``episodes.jsonl.incomplete-<time>`` (reported on stderr) and its episode
            runs again.
        backend: "local" (process pool), "serial" or "ray".
        workers: processes / Ray CPUs, 1 or more (default: all CPUs); on a Ray cluster joined
            with ``address``, the most episodes running at once.
        address: Ray cluster to join (``"auto"``, ``"HOST:PORT"``); None: a private local Ray
            instance (``edgeft.leaderboard.backends``).
        progress: show a progress bar.
        plots: write PNG plots (also embedded in ``index.html``).
        max_episodes: stop after this many new episodes (for tests and partial runs).
        score: score the policies (families with a headline, ``edgeft.scoring``): adds the
            anchor policy (``random``) if missing and the ``hindsight`` bound rows.
        ray_nice: the Ray workers' niceness, -20 to 19 (default: the process pool's on a local
            instance, the cluster's own on a cluster).
        ship_code: ship this edgeft to the Ray workers (default); False: the nodes' own.

    Raises:
        LeaderboardError: a non-empty ``out`` without ``resume``, a missing or empty ``out``
            with ``resume``, a folder in use by another run, a corrupt results file, a results
            folder of another suite, an unknown policy or backend, Ray options without
            ``backend="ray"``, a folder that cannot be written (one line, no traceback in the
            CLI).
        ValueError: an unknown suite name, ``workers`` below 1, ``ray_nice`` out of range.
    """
    return run_leaderboards(
        [suite],
        policies,
        [out],
        resume=resume,
        backend=backend,
        workers=workers,
        address=address,
        progress=progress,
        plots=plots,
        max_episodes=max_episodes,
        score=score,
        ray_nice=ray_nice,
        ship_code=ship_code,
    )[0]


def run_leaderboards(
    suites: Sequence[str | Suite],
    policies: Sequence[str] | None = None,
    outs: Sequence[str | os.PathLike | None] | None = None,
    *,
    resume: bool | Sequence[bool] = False,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
    plots: bool = True,
    max_episodes: int | None = None,
    score: bool = True,
    ray_nice: int | None = None,
    ship_code: bool = True,
) -> list[dict[str, Any]]:
    """Run (or resume) several suites as one pool of tasks; returns their summaries in order.

    The episodes of every suite go to one :func:`~edgeft.leaderboard.backends.execute`,
    costliest first, so a long suite does not wait for a short one to finish and the last
    episodes of one suite overlap the first of the next; each row is appended to its own
    suite's ``episodes.jsonl`` as it finishes. Each folder ends up with the files a run of its
    suite alone writes. Arguments as :func:`run_leaderboard`'s, per suite where they are
    sequences (``outs``: None entries get :func:`default_out`; ``resume``: one flag for all or
    one per suite); ``max_episodes`` counts the episodes of all suites together.

    Raises:
        LeaderboardError, ValueError: as :func:`run_leaderboard`, for any suite, before
            anything is written; a suite listed twice, or two suites given one folder.
    """
    resolved = [get_suite(s) for s in suites]  # names -> Suite records, once
    names = [s.name for s in resolved]
    if len(set(names)) != len(names):
        raise LeaderboardError(f"suite listed twice in {names}")
    outs = list(outs) if outs is not None else [None] * len(resolved)
    resumes = [resume] * len(resolved) if isinstance(resume, bool) else list(resume)
    if len(outs) != len(resolved) or len(resumes) != len(resolved):
        raise ValueError(f"outs and resume need one entry per suite ({len(resolved)})")
    workers = check_workers(workers)
    _check_backend(backend, address, ray_nice)
    runs = [
        _plan_run(suite, policies, out, res, score)
        for suite, out, res in zip(resolved, outs, resumes)
    ]
    folders = [r.out.resolve() for r in runs]
    if len(set(folders)) != len(folders):
        raise LeaderboardError(
            "two suites cannot share one results folder; give each its own "
            "--out (with several suites, --out holds one subfolder each)"
        )
    with contextlib.ExitStack() as held:
        for r in runs:  # everything that can be checked, before anything is written
            if r.resume:  # the folder exists: hold it, then validate its rows
                held.enter_context(folder_lock(r.out))
                read_rows(r.episodes, skip_incomplete_last=True)
            check_policies(r.suite, r.policies)
        todo = [t for r in runs for t in _open_run(r, held)]
        if max_episodes is not None:
            todo = sorted(todo, key=task_cost, reverse=True)[:max_episodes]
        desc = f"{names[0]} episodes" if len(names) == 1 else f"episodes of {len(names)} suites"
        _play(
            todo,
            {r.suite.name: r.episodes for r in runs},
            desc,
            progress,
            dict(
                backend=backend,
                workers=workers,
                address=address,
                ray_nice=ray_nice,
                ship_code=ship_code,
            ),
        )
        return [_finish(r, plots) for r in runs]


def _check_backend(backend: str, address: str | None, ray_nice: int | None) -> None:
    """The backend's name and the Ray-only options, checked before anything is written."""
    from edgeft.leaderboard.backends import BACKENDS, check_nice

    check_nice(ray_nice)
    if backend not in BACKENDS:
        raise LeaderboardError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend != "ray" and (address is not None or ray_nice is not None):
        raise LeaderboardError("--address and --ray-nice are options of --backend ray")


def _plan_run(
    suite: Suite,
    policies: Sequence[str] | None,
    out: str | os.PathLike | None,
    resume: bool,
    score: bool,
) -> _SuiteRun:
    """One suite's policies (with the scoring rows) and results folder, checked."""
    pols = list(policies) if policies else default_policies(suite)
    if len(set(pols)) != len(pols):
        raise LeaderboardError(f"policy listed twice in {pols}")
    if score:
        pols = scored_policies(suite, pols)
    folder = Path(out) if out is not None else default_out(suite)
    check_out(folder, resume)
    return _SuiteRun(suite, pols, folder, resume)


def _open_run(r: _SuiteRun, held: contextlib.ExitStack) -> list[dict[str, Any]]:
    """Create (or take up again) one suite's folder, held by ``held``; its episodes to play."""
    if not r.resume:
        if make_folder(r.out):  # removed again if nothing gets written (a failure below)
            held.callback(_remove_if_empty, r.out)
        held.enter_context(folder_lock(r.out))
    r.policies = prepare_out(r.out, r.suite, r.policies, r.resume)
    if r.resume:
        aside = set_aside_incomplete_row(r.episodes)
        if aside is not None:
            print(
                f"edgeft leaderboard: 1 incomplete row from an interrupted write was "
                f"set aside in {aside}; its episode runs again",
                file=sys.stderr,
            )
    done = {task_key(row) for row in read_rows(r.episodes)}
    return [t for t in make_tasks(r.suite, r.policies) if task_key(t) not in done]


def _play(
    todo: list[dict[str, Any]],
    dest: dict[str, Path],
    desc: str,
    progress: bool,
    options: dict[str, Any],
) -> None:
    """Play ``todo`` on the backend (``options``: ``execute``'s), each row appended to its
    suite's ``episodes.jsonl`` (``dest``) as it finishes, with a progress bar."""
    from tqdm import tqdm

    with (
        tqdm(
            total=len(todo), desc=desc, unit="ep", disable=not progress, dynamic_ncols=True
        ) as bar,
        contextlib.closing(execute(todo, **options)) as results,
    ):
        for row in results:
            append_row(dest[row["suite"]], row)
            bar.update()


@dataclasses.dataclass
class _SuiteRun:
    """One suite's part of a run: its policies and results folder."""

    suite: Suite
    policies: list[str]
    out: Path
    resume: bool

    @property
    def episodes(self) -> Path:
        return self.out / EPISODES_FILE


def _finish(run: _SuiteRun, plots: bool) -> dict[str, Any]:
    """Summary, plots and page of a suite whose episodes have all run."""
    rows = read_rows(run.episodes)
    summary = summarize(run.suite, run.policies, rows)
    write_summary(run.out, run.suite, summary)
    written = []
    if plots:
        try:
            written = write_plots(run.out, run.suite, summary, rows)
        except OSError as err:
            raise write_error(err, f"the plots in {run.out / 'plots'}") from err
    write_page(run.out, summary, written)
    return summary


def _remove_if_empty(out: Path) -> None:
    with contextlib.suppress(OSError):
        out.rmdir()  # only if empty: a run that failed before writing leaves no folder
