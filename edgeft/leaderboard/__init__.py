"""Evaluate policies on a named, versioned suite and write a leaderboard.

Every (scenario, policy, seed) episode is an independent task with its own seeds, so the results
do not depend on the backend, the worker count or the order in which episodes finish. Into
--out (default results/<suite>-v<version>, or the next free results/<suite>-v<version>-N):

    run.json        the suite's definition, the policies, versions
    episodes.jsonl  one row per finished episode, appended as it finishes (Ctrl-C or a kill
                    loses no finished episode; Ctrl-C prints the command that continues the
                    run, and --resume runs only the missing ones)
    summary.json    per (scenario, policy): mean and 95% interval (studentized bootstrap,
                    ``edgeft.scoring.bootstrap_ci``) of every metric; the headline, score and
                    paired differences of scored suites
    summary.csv     the same, one row per (scenario, policy)
    summary.md      the Markdown table (also printed)
    index.html      the same as a self-contained web page: a sortable table, the other metric
                    columns on demand, the plots, what each column means
    plots/metrics.png  the family's plot metrics and the decision time per policy (bars, or
                    lines vs the suite's sweep); FedLoRA also plots/curves_<scenario>.png, loss
                    and accuracy vs round
    .lock           held while a run writes to the folder (a second run on it stops at once)
    episodes.jsonl.incomplete-<time>   a last row cut off by an interrupted write, set aside
                    by --resume (its episode runs again)

MEC columns: "energy (J)" is a round's energy summed over the users (device + edge), "delay (s)"
a round's delay averaged over the users, both averaged over the episode's rounds.

Decision time is measured, so it differs from run to run: it is kept in the "timing" part of
each row and in the decide_ms columns, apart from the deterministic metrics; two runs of the
same suite give identical files except for those.

Examples:

    edgeft leaderboard --suite fedlora-default,mec-default
    edgeft leaderboard --suite fedlora-paper --policies lyapunov,gs,aaba --out results/paper
    edgeft leaderboard --suite mec-large --backend ray --address auto
    edgeft leaderboard --list
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the submodule defining it; imported on first use, so a worker process that
#: imports only ``edgeft.leaderboard.tasks`` pays for nothing else (scipy, matplotlib)
_EXPORTS = {
    "execute": "backends",
    "add_arguments": "cli",
    "interrupted_message": "cli",
    "run": "cli",
    "LeaderboardError": "errors",
    "markdown_table": "report",
    "summary_csv": "report",
    "write_plots": "report",
    "write_summary": "report",
    "write_page": "page",
    "check_policies": "runner",
    "default_policies": "runner",
    "run_leaderboard": "runner",
    "run_leaderboards": "runner",
    "scored_policies": "runner",
    "EPISODES_FILE": "store",
    "MANIFEST_FILE": "store",
    "default_out": "store",
    "read_rows": "store",
    "ranked": "summary",
    "summarize": "summary",
    "HINDSIGHT": "tasks",
    "make_tasks": "tasks",
    "run_task": "tasks",
    "task_cost": "tasks",
    "task_key": "tasks",
}

__all__ = sorted([*_EXPORTS, "bootstrap_ci"])


def __getattr__(name: str) -> Any:
    if name == "bootstrap_ci":
        from edgeft.scoring import bootstrap_ci

        return bootstrap_ci
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"edgeft.leaderboard.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'edgeft.leaderboard' has no attribute {name!r}")
