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

from edgeft.leaderboard.backends import execute
from edgeft.leaderboard.cli import add_arguments, interrupted_message, run
from edgeft.leaderboard.errors import LeaderboardError
from edgeft.leaderboard.report import markdown_table, summary_csv, write_plots, write_summary
from edgeft.leaderboard.runner import (
    check_policies,
    default_policies,
    run_leaderboard,
    scored_policies,
)
from edgeft.leaderboard.store import EPISODES_FILE, MANIFEST_FILE, default_out, read_rows
from edgeft.leaderboard.summary import ranked, summarize
from edgeft.leaderboard.tasks import HINDSIGHT, make_tasks, run_task, task_cost, task_key
from edgeft.scoring import bootstrap_ci

__all__ = [
    "EPISODES_FILE",
    "HINDSIGHT",
    "MANIFEST_FILE",
    "LeaderboardError",
    "add_arguments",
    "bootstrap_ci",
    "check_policies",
    "default_out",
    "default_policies",
    "execute",
    "interrupted_message",
    "make_tasks",
    "markdown_table",
    "ranked",
    "read_rows",
    "run",
    "run_leaderboard",
    "run_task",
    "scored_policies",
    "summarize",
    "summary_csv",
    "task_cost",
    "task_key",
    "write_plots",
    "write_summary",
]
