"""Run (or resume) a suite for a list of policies into a results folder."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeft import scoring
from edgeft.envs.family import family_of_env_id
from edgeft.leaderboard.backends import execute
from edgeft.leaderboard.errors import LeaderboardError
from edgeft.leaderboard.report import write_plots, write_summary
from edgeft.leaderboard.store import (
    EPISODES_FILE,
    append_row,
    default_out,
    prepare_out,
    read_rows,
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
    """The family's reference policies, then the suite's shipped agents that are installed."""
    import edgeft

    refs = [n for n in edgeft.list_policies(suite.family) if ":" not in n]
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
    if not scoring.is_scored(suite.family):
        return out
    head = scoring.headline_of(suite.family)
    if head.anchor not in out:
        out.append(head.anchor)
    if HINDSIGHT not in out:
        out.append(HINDSIGHT)
    return out


def run_leaderboard(suite: str | Suite, policies: Sequence[str] | None = None,
                    out: str | os.PathLike | None = None, *, resume: bool = False,
                    backend: str = "local", workers: int | None = None, address: str | None = None,
                    progress: bool = True, plots: bool = True, max_episodes: int | None = None,
                    score: bool = True) -> dict[str, Any]:
    """Run (or resume) ``suite`` for ``policies`` into ``out``; returns the summary.

    Args:
        suite: a suite name (:func:`edgeft.suites.list_suites`) or a :class:`Suite`.
        policies: policy names (default: :func:`default_policies`).
        out: results folder (default: :func:`default_out`); must be empty unless ``resume``.
        resume: continue the run in ``out``: only episodes missing from ``episodes.jsonl`` run.
        backend: "local" (process pool), "serial" or "ray".
        workers: processes / Ray CPUs (default: all CPUs).
        address: Ray cluster address.
        progress: show a progress bar.
        plots: write PNG plots.
        max_episodes: stop after this many new episodes (for tests and partial runs).
        score: score the policies (families with a headline, ``edgeft.scoring``): adds the
            anchor policy (``random``) if missing and the ``hindsight`` bound rows.

    Raises:
        LeaderboardError: a non-empty ``out`` without ``resume``, a corrupt results file, a
            results folder of another suite, an unknown policy or backend.
        ValueError: an unknown suite name.
    """
    from tqdm import tqdm

    suite = get_suite(suite)
    policies = list(policies) if policies else default_policies(suite)
    if len(set(policies)) != len(policies):
        raise LeaderboardError(f"policy listed twice in {policies}")
    if score:
        policies = scored_policies(suite, policies)
    if backend not in ("local", "serial", "ray"):
        raise LeaderboardError(f"unknown backend {backend!r}; known: local, serial, ray")
    out = Path(out) if out is not None else default_out(suite)
    episodes = out / EPISODES_FILE
    done_rows = read_rows(episodes) if resume else []  # validate before touching anything
    check_policies(suite, policies)
    policies = prepare_out(out, suite, policies, resume)
    done = {task_key(r) for r in done_rows}
    todo = [t for t in make_tasks(suite, policies) if task_key(t) not in done]
    if max_episodes is not None:
        todo = sorted(todo, key=task_cost, reverse=True)[:max_episodes]
    with tqdm(total=len(todo), desc=f"{suite.name} episodes", unit="ep", disable=not progress,
              dynamic_ncols=True) as bar, contextlib.closing(
            execute(todo, backend=backend, workers=workers, address=address)) as results:
        for row in results:
            append_row(episodes, row)
            bar.update()
    rows = read_rows(episodes)
    summary = summarize(suite, policies, rows)
    write_summary(out, suite, summary)
    if plots:
        write_plots(out, suite, summary, rows)
    return summary

