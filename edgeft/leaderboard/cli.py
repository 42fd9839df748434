"""``edgeft leaderboard``: its arguments, the run over one or more suites, and the message that
says how to continue an interrupted run."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgeft.leaderboard.errors import LeaderboardError
from edgeft.leaderboard.page import PAGE_FILE
from edgeft.leaderboard.report import markdown_table
from edgeft.leaderboard.runner import check_workers, run_leaderboard, run_leaderboards
from edgeft.leaderboard.store import (
    EPISODES_FILE,
    MANIFEST_FILE,
    check_out,
    default_out,
    has_content,
    read_rows,
)
from edgeft.suites import Suite, get_suite, list_suites


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_what_to_run(parser.add_argument_group("what to run"))
    _add_execution(parser.add_argument_group("where it runs"))
    _add_output(parser.add_argument_group("output and trust"))


def _add_what_to_run(parser: argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--suite",
        default="fedlora-default",
        help="suite name(s), comma-separated: several run as one pool of "
        "episodes, costliest first (default: %(default)s); see --list",
    )
    parser.add_argument(
        "--policies",
        default=None,
        help="comma-separated policy names, ALGO:PATH for trained models "
        "(default: the reference policies and the suite's shipped agents)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="results folder (default: results/<suite>-v<version>, or the next "
        "free -N); with several suites, one subfolder per suite",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")


def _add_execution(parser: argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--backend",
        default="local",
        choices=["local", "serial", "ray"],
        help="local process pool (default), serial, or Ray tasks",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="with --backend ray: the Ray cluster to join, auto (the one started "
        "with ray start on this node) or HOST:PORT; edgeft's code is shipped "
        "to its workers, which need edgeft's dependencies only (see "
        "docs/cluster.md). Without it, a private local Ray instance starts",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes, 1 or more (default: all CPUs); with --backend ray "
        "--address, the most episodes running at once on the cluster "
        "(default: as many as it has CPUs)",
    )
    parser.add_argument(
        "--ray-nice",
        type=int,
        default=None,
        metavar="N",
        help="with --backend ray: the workers' niceness, -20 to 19 (default: "
        "this process's own on a local Ray instance, like the process "
        "pool's; with --address, the cluster's own: Ray's default, 15 "
        "above ray start's, starves the workers on a busy machine; "
        "lowering it there needs root on the nodes)",
    )
    parser.add_argument(
        "--ray-installed",
        action="store_true",
        help="with --backend ray: run the edgeft installed on the nodes instead "
        "of shipping this one to them",
    )


def _add_output(parser: argparse._ArgumentGroup) -> None:
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--no-score",
        action="store_true",
        help="do not score: no hindsight-bound rows and no anchor policy added "
        "(by default both are added, see the score note under the table)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--trust-agent-code",
        action="store_true",
        help="allow ALGO:PATH agents saved as stable-baselines3 zips, whose "
        "pickles run any code their author put in them when loaded (the "
        "same as EDGEFT_TRUST_AGENT_CODE=1); agents in the safe format "
        "(NAME.agent.json) never need it",
    )


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name in list_suites():
            s = get_suite(name)
            print(
                f"{name:16s} v{s.version}  {s.description}  ({len(s.scenarios)} scenario(s) x "
                f"{s.num_seeds} seeds)"
            )
        return 0
    if getattr(args, "trust_agent_code", False):
        with trusting_agent_code():
            return _run(args)
    return _run(args)


@contextlib.contextmanager
def trusting_agent_code() -> Iterator[None]:
    """``EDGEFT_TRUST_AGENT_CODE=1`` while the run lasts: the loader in this process and in the
    worker processes it starts reads it (Ray workers: through the runtime_env of the Ray job the
    run starts)."""
    from edgeft.agents.agent_format import TRUST_ENV

    old = os.environ.get(TRUST_ENV)
    os.environ[TRUST_ENV] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(TRUST_ENV, None)
        else:
            os.environ[TRUST_ENV] = old


def _run(args: argparse.Namespace) -> int:
    names = [s.strip() for s in args.suite.split(",") if s.strip()]
    policies = [p.strip() for p in args.policies.split(",")] if args.policies else None
    suites: list[Suite] = []
    folders: list[Path] | None = None  # the results folders of the run, once it starts
    try:
        suites = [get_suite(n) for n in names]
        if policies is not None and len({s.family for s in suites}) > 1:
            raise LeaderboardError("--policies with suites of both families: run them separately")
        check_workers(args.workers)
        if args.resume and not args.out:
            raise LeaderboardError("--resume needs --out (the folder of the run to continue)")
        if args.resume and len(suites) > 1:
            _check_multi_resume(Path(args.out), suites)
        outs, resumes = _folders(args, suites)
        folders = outs
        ray_kw = {
            "address": args.address,
            "ray_nice": getattr(args, "ray_nice", None),
            "ship_code": not getattr(args, "ray_installed", False),
        }
        kw = {
            "backend": args.backend,
            "workers": args.workers,
            "progress": not args.no_progress,
            "plots": not args.no_plots,
            "score": not args.no_score,
            **ray_kw,
        }
        t0 = time.perf_counter()
        if len(suites) == 1:
            summaries = [run_leaderboard(suites[0], policies, outs[0], resume=resumes[0], **kw)]
        else:  # one pool of tasks for all suites, costliest first
            summaries = run_leaderboards(suites, policies, outs, resume=resumes, **kw)
        _print_tables(summaries, outs, time.perf_counter() - t0)
    except (LeaderboardError, ValueError) as err:
        print(f"edgeft leaderboard: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file the run could not read or write (one line, no traceback)
        name = f" {err.filename}:" if err.filename else ""
        print(f"edgeft leaderboard: error: cannot use{name} {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_message(args, suites, folders), file=sys.stderr)
        return 130
    return 0


def _folders(args: argparse.Namespace, suites: Sequence[Suite]) -> tuple[list[Path], list[bool]]:
    """Each suite's results folder and whether it resumes: ``--out`` itself for one suite, one
    subfolder each for several (a suite the interrupted command had not reached starts anew)."""
    outs, resumes = [], []
    for s in suites:
        out = None
        resume = args.resume
        if args.out:
            out = Path(args.out) / s.name if len(suites) > 1 else Path(args.out)
            if resume and len(suites) > 1 and not has_content(out):
                resume = False  # a suite the interrupted command had not reached yet
        outs.append(out if out is not None else default_out(s))
        resumes.append(resume)
    return outs, resumes


def _print_tables(summaries: Sequence[dict[str, Any]], outs: Sequence[Path], took: float) -> None:
    """Each suite's Markdown table, with the time taken and where its files are."""
    for summary, where in zip(summaries, outs):
        print()
        print(markdown_table(summary))
        print(
            f"({took:.0f} s{' for all suites' * (len(outs) > 1)}; files in {where}; "
            f"the page: {where / PAGE_FILE})\n"
        )


def _check_multi_resume(out: Path, suites: Sequence[Suite]) -> None:
    """``--resume`` with several suites: ``out`` must hold the folder of at least one of them
    (the others start there: the interrupted command had not reached them)."""
    check_out(out, resume=True)
    if not any(has_content(out / s.name) for s in suites):
        raise LeaderboardError(
            f"--resume: {out} holds no run of the suites {', '.join(s.name for s in suites)} "
            "(one subfolder per suite); check --out and --suite, or leave out --resume to "
            "start new runs"
        )


def interrupted_message(
    args: argparse.Namespace, suites: Sequence[Suite], folders: Sequence[Path] | None
) -> str:
    """The one line printed on Ctrl-C: what is saved and the command that continues the run.

    Args:
        args: the command's arguments.
        suites: its suites.
        folders: their results folders (in order), or None when it stopped before they were
            known.
    """
    if not folders:
        return "edgeft leaderboard: interrupted before any episode ran; nothing was written"
    saved = []
    for suite, out in zip(suites, folders):
        try:
            n = len(read_rows(out / EPISODES_FILE))
        except LeaderboardError:
            return f"edgeft leaderboard: interrupted; {out / EPISODES_FILE} could not be read back"
        try:
            planned = len(json.loads((out / MANIFEST_FILE).read_text())["policies"])
            total = f" of {planned * len(suite.scenarios) * suite.num_seeds}"
        except (OSError, ValueError, KeyError, TypeError):
            total = ""
        saved.append(f"{n}{total} episodes of {suite.name} are saved in {out}")
    opts = ""
    if args.policies:
        opts += " --policies " + shlex.quote(args.policies)
    for flag, value in (
        ("--backend", None if args.backend == "local" else args.backend),
        ("--workers", args.workers),
        ("--address", args.address),
        ("--ray-nice", getattr(args, "ray_nice", None)),
    ):
        if value is not None:
            opts += f" {flag} {shlex.quote(str(value))}"
    opts += " --ray-installed" * bool(getattr(args, "ray_installed", False))
    opts += " --no-plots" * bool(args.no_plots) + " --no-progress" * bool(args.no_progress)
    opts += " --trust-agent-code" * bool(getattr(args, "trust_agent_code", False))
    if args.out:  # one --out covers every suite of the command (one subfolder each)
        names = ",".join(s.name for s in suites)
        cmd = f"edgeft leaderboard --suite {names} --out {shlex.quote(args.out)} --resume{opts}"
    else:  # each suite in its own default folder: one command each
        cmd = "; ".join(
            f"edgeft leaderboard --suite {s.name} --out {shlex.quote(str(out))} --resume{opts}"
            for s, out in zip(suites, folders)
        )
    return f"edgeft leaderboard: interrupted; {', '.join(saved)}. Continue with: {cmd}"
