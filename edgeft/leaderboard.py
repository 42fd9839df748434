"""Evaluate policies on a named, versioned suite and write a leaderboard.

Every (scenario, policy, seed) episode is an independent task with its own seeds, so the results
do not depend on the backend, the worker count or the order in which episodes finish. Into
--out (default results/<suite>-v<version>, or the next free results/<suite>-v<version>-N):

    run.json        the suite's definition, the policies, versions
    episodes.jsonl  one row per finished episode, appended as it finishes (Ctrl-C or a kill
                    loses no finished episode; Ctrl-C prints the command that continues the
                    run, and --resume runs only the missing ones)
    summary.json    per (scenario, policy): mean and bootstrap 95% interval of every metric
    summary.csv     the same, one row per (scenario, policy)
    summary.md      the Markdown table (also printed)
    plots/metrics.png  each metric and the decision time per policy (bars, or lines vs the
                    suite's sweep); FedLoRA also plots/curves_<scenario>.png, loss and
                    accuracy vs round

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

import argparse
import contextlib
import csv
import io
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeft import scoring
from edgeft.episodes import METRICS, TIMING
from edgeft.scoring import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, bootstrap_ci  # noqa: F401
from edgeft.suites import Suite, get_suite, list_suites, spec_differences

#: the row name of the hindsight bound (written like a policy's, never ranked)
HINDSIGHT = "hindsight"
EPISODES_FILE = "episodes.jsonl"
MANIFEST_FILE = "run.json"


class LeaderboardError(RuntimeError):
    """A problem with a results folder or the inputs of a leaderboard run."""


# ---------------------------------------------------------------------------- tasks
def make_tasks(suite: Suite, policies: Sequence[str]) -> list[dict[str, Any]]:
    """Every (scenario, policy, seed) episode of ``suite`` as a task dict."""
    tasks = []
    for sc in suite.scenarios:
        for pol in policies:
            for seed in suite.seeds:
                tasks.append({"suite": suite.name, "version": suite.version, "scenario": sc.name,
                              "env_id": sc.env_id, "config": dict(sc.config), "policy": pol,
                              "seed": int(seed)})
    return tasks


def task_key(row: dict[str, Any]) -> tuple[str, str, int]:
    """(scenario, policy, seed): what identifies an episode of a run."""
    return (str(row["scenario"]), str(row["policy"]), int(row["seed"]))


def make_env_and_policy(task: dict[str, Any]) -> tuple[Any, Any]:
    """The env and policy of a task (a trained agent gets the action mode it was trained in)."""
    from edgeft.episodes import make_env_and_policy as make

    return make(task["env_id"], task["config"], task["policy"], int(task["seed"]))


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Play one task's episode; returns its result row (deterministic apart from ``timing``)."""
    from edgeft.episodes import run_episode

    extra: dict[str, Any] = {}
    if task["policy"] == HINDSIGHT:
        from edgeft.policy import family_of
        from edgeft.registration import make_config

        t0 = time.perf_counter()
        family = family_of(make_config(task["env_id"], task["config"]))
        out = scoring.hindsight_row(family, task["env_id"], task["config"], int(task["seed"]))
        # its "decision time": computing the bound and replaying its schedule, per round
        out["timing"] = {"decide_ms": 1e3 * (time.perf_counter() - t0) / max(1, out["rounds"])}
        extra["bound"] = {"headline": float(out["headline"]), "gap": float(out["gap"])}
    else:
        out = run_episode(task["env_id"], task["config"], task["policy"], int(task["seed"]))
    return {"suite": task["suite"], "version": task["version"], "scenario": task["scenario"],
            "policy": task["policy"], "seed": task["seed"], "env_id": task["env_id"],
            "rounds": out["rounds"], "metrics": out["metrics"], "timing": out["timing"],
            "curves": out["curves"], **extra}


def _task_cost(task: dict[str, Any]) -> float:
    """Rough relative cost of a task's episode: policy cost x rounds x devices or users (only
    the order matters, within one suite)."""
    from edgeft.policy import family_of, policy_cost
    from edgeft.registration import make_config

    cfg = make_config(task["env_id"], task["config"])
    size = getattr(cfg, "num_devices", None) or getattr(cfg, "num_users", 1)
    cost = 1.0 if task["policy"] == HINDSIGHT else policy_cost(task["policy"], family_of(cfg))
    return cost * cfg.episode_rounds * size


def _worker_init() -> None:
    # Ctrl-C reaches every process of the terminal's group: the main process stops the run and
    # ends the workers, which must not each print a KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _torch_one_thread(task: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    return run_task(task)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while worker processes start (they inherit it; no start-up race)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _end_workers(pool: Any) -> None:
    """Stop a process pool's workers now (running episodes are abandoned, not waited for)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


# ---------------------------------------------------------------------------- backends
def execute(tasks: list[dict[str, Any]], backend: str = "local", workers: int | None = None,
            address: str | None = None) -> Generator[dict[str, Any], None, None]:
    """Run ``tasks``; yields result rows as they finish (in completion order).

    Args:
        backend: "local" (process pool), "serial" (this process) or "ray".
        workers: pool size (default: all CPUs); 1 = serial.
        address: Ray cluster address (``ray.init(address=...)``); None = a local Ray instance,
            or the one already initialised.
    """
    tasks = sorted(tasks, key=_task_cost, reverse=True)  # longest first: better load balance
    if backend not in ("local", "serial", "ray"):
        raise LeaderboardError(f"unknown backend {backend!r}; known: local, serial, ray")
    if backend == "ray":
        yield from _execute_ray(tasks, workers, address)
        return
    n = workers or os.cpu_count() or 1
    if backend == "serial" or n == 1 or len(tasks) <= 1:
        for t in tasks:
            yield run_task(t)
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # fork is fast and needs no `if __name__ == "__main__"` guard in the caller's script; once
    # torch is loaded (a trained agent was checked) forking is unsafe, so spawn then
    method = "spawn" if "torch" in sys.modules else "fork"
    with ProcessPoolExecutor(max_workers=min(n, len(tasks)), mp_context=mp.get_context(method),
                             initializer=_worker_init) as pool:
        with _sigint_ignored():
            pending = {pool.submit(run_task, t) for t in tasks}
        finished = False
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
            finished = True
        finally:
            if not finished:  # Ctrl-C, a failed episode, or the caller stopped early: the
                # pool marks the episodes not run as failed (cancelling them first would make
                # its manager thread trip over the cancelled futures, a traceback)
                _end_workers(pool)


def _execute_ray(tasks: list[dict[str, Any]], workers: int | None, address: str | None
                 ) -> Generator[dict[str, Any], None, None]:
    try:
        import ray
    except ImportError as err:
        raise LeaderboardError("--backend ray needs Ray: pip install 'edgeft[ray]'") from err
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kw["address"] = address
        else:
            kw["num_cpus"] = workers or os.cpu_count() or 1
        ray.init(**kw)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(_torch_one_thread)
        pending = [remote.remote(t) for t in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------------------- results folder
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


def _append_row(path: Path, row: dict[str, Any]) -> None:
    data = (json.dumps(row, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)  # one write per row: a kill leaves whole rows only
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
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


def _prepare_out(out: Path, suite: Suite, policies: list[str], resume: bool) -> list[str]:
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
    _write_atomic(man, json.dumps(_manifest(suite, policies), indent=1) + "\n")
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


def check_policies(suite: Suite, policies: Sequence[str]) -> None:
    """Fail fast, before any episode, on a policy name that cannot play every scenario."""
    import gymnasium as gym

    known_envs = sorted(k for k in gym.registry if k.startswith("edgeft/"))
    for sc in suite.scenarios:
        if sc.env_id not in known_envs:
            raise LeaderboardError(f"suite {suite.name} scenario {sc.name}: unknown env "
                                   f"{sc.env_id!r}; known: {known_envs}")
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
    head = scoring.HEADLINES.get(suite.family)
    if head is None or suite.family not in scoring.HINDSIGHT:
        return out
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
    policies = _prepare_out(out, suite, policies, resume)
    done = {task_key(r) for r in done_rows}
    todo = [t for t in make_tasks(suite, policies) if task_key(t) not in done]
    if max_episodes is not None:
        todo = sorted(todo, key=_task_cost, reverse=True)[:max_episodes]
    with tqdm(total=len(todo), desc=f"{suite.name} episodes", unit="ep", disable=not progress,
              dynamic_ncols=True) as bar, contextlib.closing(
            execute(todo, backend=backend, workers=workers, address=address)) as results:
        for row in results:
            _append_row(episodes, row)
            bar.update()
    rows = read_rows(episodes)
    summary = summarize(suite, policies, rows)
    write_summary(out, suite, summary)
    if plots:
        write_plots(out, suite, summary, rows)
    return summary


# ---------------------------------------------------------------------------- summary
def summarize(suite: Suite, policies: Sequence[str],
              rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Mean and bootstrap 95% interval per (scenario, policy, metric); timing kept apart; and,
    for families with a headline (``edgeft.scoring``), each policy's headline value, score and
    paired per-seed difference from the suite's reference policy."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["scenario"], r["policy"]), []).append(r)
    entries = []
    for sc in suite.scenarios:
        for pol in policies:
            rs = sorted(by.get((sc.name, pol), []), key=lambda r: int(r["seed"]))
            if not rs:
                continue
            entry: dict[str, Any] = {"scenario": sc.name, "policy": pol, "episodes": len(rs),
                                     "seeds": [int(r["seed"]) for r in rs], "metrics": {},
                                     "timing": {}}
            if sc.sweep_value is not None:
                entry["sweep_value"] = sc.sweep_value
            for part, names in (("metrics", METRICS[suite.family]), ("timing", TIMING)):
                for m in names:
                    vals = [float(r[part][m]) for r in rs]
                    lo, hi = bootstrap_ci(vals)
                    entry[part][m] = {"mean": float(np.mean(vals)), "ci_low": lo, "ci_high": hi}
            entries.append(entry)
    summary = {"suite": suite.name, "version": suite.version, "fingerprint": suite.fingerprint(),
               "family": suite.family, "description": suite.description,
               "policies": list(policies),
               "expected_episodes": len(suite.scenarios) * len(policies) * suite.num_seeds,
               "episodes": sum(e["episodes"] for e in entries), "results": entries}
    head = scoring.HEADLINES.get(suite.family)
    if head is not None:
        summary["headline"] = {"title": head.title, "higher_is_better": head.higher_is_better,
                               "constraint": head.constraint, "anchor": head.anchor,
                               "reference": head.reference, "bound": HINDSIGHT}
        _add_scores(suite.family, head, entries, by)
    return summary


def _headline_of(family: str, row: dict[str, Any]) -> float:
    if row["policy"] == HINDSIGHT:
        return float(row["bound"]["headline"])
    return scoring.headline_value(family, row["metrics"])


def _stat(values: Sequence[float]) -> dict[str, float]:
    lo, hi = bootstrap_ci(values)
    return {"mean": float(np.mean(values)), "ci_low": lo, "ci_high": hi}


def _add_scores(family: str, head: scoring.Headline, entries: list[dict[str, Any]],
                by: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
    """Adds "headline", "score", "vs_reference", "breaks_constraint" and "bound" to each entry
    (per seed: score = 100 (value - anchor) / (bound - anchor) on that seed; see
    ``edgeft.scoring``)."""
    def per_seed(key: tuple[str, str]) -> dict[int, float]:
        # in seed order: the means must not depend on the order episodes finished in
        rs = sorted(by.get(key, []), key=lambda r: int(r["seed"]))
        return {int(r["seed"]): _headline_of(family, r) for r in rs}

    for e in entries:
        sc = e["scenario"]
        values = per_seed((sc, e["policy"]))
        e["headline"] = _stat(list(values.values()))
        e["bound"] = e["policy"] == HINDSIGHT
        if not e["bound"]:
            e["breaks_constraint"] = sum(
                scoring.breaks_constraint(family, r["metrics"]) for r in by[(sc, e["policy"])])
        anchor = per_seed((sc, head.anchor))
        bound = per_seed((sc, HINDSIGHT))
        seeds = sorted(set(values) & set(anchor) & set(bound))
        if seeds:
            scores = scoring.score([values[s] for s in seeds], [anchor[s] for s in seeds],
                                   [bound[s] for s in seeds])
            finite = scores[np.isfinite(scores)]
            if finite.size:
                e["score"] = {**_stat(finite.tolist()), "episodes": int(finite.size)}
        ref = per_seed((sc, head.reference))
        if e["policy"] != head.reference and set(values) & set(ref):
            e["vs_reference"] = scoring.paired_difference(values, ref)


def _fmt(x: float) -> str:
    return f"{x:.4g}" if np.isfinite(x) else str(x)


def _cell(d: dict[str, float] | None, digits: str = ".4g") -> str:
    if d is None:
        return "-"
    half = (d["ci_high"] - d["ci_low"]) / 2
    mean = format(d["mean"], digits) if np.isfinite(d["mean"]) else str(d["mean"])
    return mean + (f" ± {half:.2g}" if half > 0 else "")


def ranked(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary's entries in table order: per scenario, the bound first, then by score
    (best first; unscored policies last, in run order)."""
    order = {sc: i for i, sc in enumerate(dict.fromkeys(e["scenario"] for e in summary["results"]))}

    def key(item: tuple[int, dict[str, Any]]) -> tuple[int, int, float, int]:
        i, e = item
        if e.get("bound"):
            return (order[e["scenario"]], 0, 0.0, i)
        sc = e.get("score")
        return (order[e["scenario"]], 1 if sc else 2, -sc["mean"] if sc else 0.0, i)

    return [e for _, e in sorted(enumerate(summary["results"]), key=key)]


def markdown_table(summary: dict[str, Any]) -> str:
    """The summary as Markdown: mean ± half-width of the bootstrap 95% interval; with a headline,
    sorted by score, with the headline, score and paired-difference columns first."""
    fam = summary["family"]
    cols = [(m, t) for m, (t, _) in METRICS[fam].items()] + [(m, t) for m, (t, _) in TIMING.items()]
    head = summary.get("headline")
    multi = len({e["scenario"] for e in summary["results"]}) > 1
    front = []
    if head is not None:
        front = ["score", head["title"], f"vs {head['reference']} (paired)"]
    titles = front + [t for _, t in cols]
    header = ("| " + ("scenario | " if multi else "") + "policy | " + " | ".join(titles) + " |")
    sep = "|" + ("---|" if multi else "") + "---|" + "|".join("---:" for _ in titles) + "|"
    lines = [f"**{summary['suite']}** v{summary['version']}: {summary['description']}; "
             f"{summary['episodes']}/{summary['expected_episodes']} episodes; mean ± half-width of "
             "the bootstrap 95% interval over test seeds", "", header, sep]
    entries = ranked(summary) if head is not None else summary["results"]
    for e in entries:
        cells = []
        name = e["policy"]
        if head is not None:
            if e.get("bound"):
                name = f"{name} (bound)"
            elif e.get("breaks_constraint"):
                name = f"{name} ✗"
            cells += [_cell(e.get("score"), ".1f"), _cell(e.get("headline")),
                      _cell(e.get("vs_reference"), "+.3g")]
        for m, _ in cols:
            d = e["timing"][m] if m in e["timing"] else e["metrics"][m]
            cells.append(_cell(d))
        lines.append("| " + (f"{e['scenario']} | " if multi else "") + f"{name} | "
                     + " | ".join(cells) + " |")
    if head is not None:
        lines += ["", f"score: 0 = `{head['anchor']}`, 100 = `{head['bound']}` (the episode's "
                  f"hindsight bound), per test seed, on {head['title']}; constraint: "
                  f"{head['constraint']}; ✗ = breaks it in at least one episode; paired: mean "
                  f"per-seed difference from `{head['reference']}`."]
    return "\n".join(lines) + "\n"


def summary_csv(summary: dict[str, Any]) -> str:
    """One row per (scenario, policy): mean, ci_low, ci_high of every metric, then timing."""
    fam = summary["family"]
    names = list(METRICS[fam]) + list(TIMING)
    header = ["suite", "version", "scenario", "policy", "episodes"]
    scored = summary.get("headline") is not None
    if scored:
        for m in ("score", "headline", "vs_reference"):
            header += [f"{m}_mean", f"{m}_ci_low", f"{m}_ci_high"]
        header += ["breaks_constraint", "bound"]
    for m in names:
        header += [f"{m}_mean", f"{m}_ci_low", f"{m}_ci_high"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for e in summary["results"]:
        row: list[Any] = [summary["suite"], summary["version"], e["scenario"], e["policy"],
                          e["episodes"]]
        if scored:
            for m in ("score", "headline", "vs_reference"):
                d = e.get(m)
                row += ["" if d is None else repr(d[k]) for k in ("mean", "ci_low", "ci_high")]
            row += [e.get("breaks_constraint", ""), int(bool(e.get("bound")))]
        for m in names:
            d = e["timing"][m] if m in TIMING else e["metrics"][m]
            row += [repr(d["mean"]), repr(d["ci_low"]), repr(d["ci_high"])]
        w.writerow(row)
    return buf.getvalue()


def write_summary(out: Path, suite: Suite, summary: dict[str, Any]) -> None:
    """summary.json, summary.csv and summary.md (derived from episodes.jsonl; rewritten)."""
    _write_atomic(out / "summary.json", json.dumps(summary, indent=1, sort_keys=True) + "\n")
    _write_atomic(out / "summary.csv", summary_csv(summary))
    _write_atomic(out / "summary.md", markdown_table(summary))


def write_plots(out: Path, suite: Suite, summary: dict[str, Any],
                rows: list[dict[str, Any]]) -> list[Path]:
    """PNG plots: metrics per policy (bars, or lines vs the sweep), curves vs round, decision
    time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pdir = out / "plots"
    pdir.mkdir(exist_ok=True)
    fam = suite.family
    written = []
    policies = summary["policies"]
    show = (["final_loss", "final_accuracy", "avg_scheduled", "avg_delay_ratio"] if fam == "fedlora"
            else ["cost", "energy", "delay", "stability"])
    fig, axes = plt.subplots(1, len(show) + 1, figsize=(4 * (len(show) + 1), 3.6))
    for ax, m in zip(axes, show + ["decide_ms"]):
        part = "timing" if m in TIMING else "metrics"
        title = (TIMING if m in TIMING else METRICS[fam])[m][0]
        if suite.sweep is not None:
            for pol in policies:
                es = [e for e in summary["results"] if e["policy"] == pol]
                if not es:
                    continue
                x = [e["sweep_value"] for e in es]
                y = [e[part][m]["mean"] for e in es]
                lo = [e[part][m]["ci_low"] for e in es]
                hi = [e[part][m]["ci_high"] for e in es]
                ax.plot(x, y, marker="o", label=pol)
                ax.fill_between(x, lo, hi, alpha=0.15)
            ax.set_xscale("log")
            ax.set_xlabel(suite.sweep[1])
        else:
            first = suite.scenarios[0].name
            es = [e for e in summary["results"] if e["scenario"] == first]
            means = np.array([e[part][m]["mean"] for e in es])
            err = np.array([[e[part][m]["mean"] - e[part][m]["ci_low"],
                             e[part][m]["ci_high"] - e[part][m]["mean"]] for e in es]).T
            ax.bar(range(len(es)), means, yerr=err, capsize=3, color="C0")
            ax.set_xticks(range(len(es)), [e["policy"] for e in es], rotation=45, ha="right",
                          fontsize=8)
        if m in ("decide_ms", "avg_delay_ratio", "cost", "energy", "delay"):
            ax.set_yscale("log")
        ax.set_title(title)
    if suite.sweep is not None:
        axes[0].legend(fontsize=7)
    fig.suptitle(f"{suite.name} v{suite.version}")
    fig.tight_layout()
    p = pdir / "metrics.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)
    if fam == "fedlora":
        for sc in suite.scenarios:
            fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
            for pol in policies:
                rs = [r for r in rows if r["scenario"] == sc.name and r["policy"] == pol]
                if not rs:
                    continue
                for ax, k in zip(axes, ("loss", "accuracy")):
                    y = np.mean([r["curves"][k] for r in rs], axis=0)
                    x = rs[0]["curves"].get("round", list(range(1, len(y) + 1)))
                    ax.plot(x, y, label=pol)
            for ax, k in zip(axes, ("loss", "accuracy")):
                ax.set_xlabel("round")
                ax.set_ylabel(k)
            axes[0].legend(fontsize=7)
            fig.suptitle(f"{suite.name}: {sc.name} (mean over seeds)")
            fig.tight_layout()
            p = pdir / f"curves_{sc.name}.png"
            fig.savefig(p, dpi=110)
            plt.close(fig)
            written.append(p)
    return written


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="fedlora-default",
                        help="suite name(s), comma-separated (default: %(default)s); see --list")
    parser.add_argument("--policies", default=None,
                        help="comma-separated policy names, ALGO:PATH for trained models "
                             "(default: the reference policies and the suite's shipped agents)")
    parser.add_argument("--out", default=None,
                        help="results folder (default: results/<suite>-v<version>, or the next "
                             "free -N); with several suites, one subfolder per suite")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--backend", default="local", choices=["local", "serial", "ray"],
                        help="local process pool (default), serial, or Ray tasks")
    parser.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-score", action="store_true",
                        help="do not score: no hindsight-bound rows and no anchor policy added "
                             "(by default both are added, see the score note under the table)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name in list_suites():
            s = get_suite(name)
            print(f"{name:16s} v{s.version}  {s.description}  ({len(s.scenarios)} scenario(s) x "
                  f"{s.num_seeds} seeds)")
        return 0
    names = [s.strip() for s in args.suite.split(",") if s.strip()]
    policies = [p.strip() for p in args.policies.split(",")] if args.policies else None
    suites: list[Suite] = []
    current: tuple[int, Path] | None = None  # (index in suites, folder) of the suite running
    try:
        suites = [get_suite(n) for n in names]
        if policies is not None and len({s.family for s in suites}) > 1:
            raise LeaderboardError("--policies with suites of both families: run them separately")
        for i, s in enumerate(suites):
            out = None
            if args.out:
                out = Path(args.out) / s.name if len(suites) > 1 else Path(args.out)
            if out is None and args.resume:
                raise LeaderboardError("--resume needs --out (the folder of the run to continue)")
            if out is None:
                out = default_out(s)
            current = (i, out)
            t0 = time.perf_counter()
            summary = run_leaderboard(s, policies, out,
                                      resume=args.resume, backend=args.backend,
                                      workers=args.workers,
                                      address=args.address, progress=not args.no_progress,
                                      plots=not args.no_plots, score=not args.no_score)
            where = out
            print()
            print(markdown_table(summary))
            print(f"({time.perf_counter() - t0:.0f} s; files in {where})\n")
    except (LeaderboardError, ValueError) as err:
        print(f"edgeft leaderboard: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_message(args, suites, current), file=sys.stderr)
        return 130
    return 0


def interrupted_message(args: argparse.Namespace, suites: Sequence[Suite],
                        current: tuple[int, Path] | None) -> str:
    """The one line printed on Ctrl-C: what is saved and the command that continues the run."""
    if current is None:
        return "edgeft leaderboard: interrupted before any episode ran; nothing was written"
    i, out = current
    suite = suites[i]
    try:
        saved = len(read_rows(out / EPISODES_FILE))
    except LeaderboardError:
        saved = -1
    try:
        planned = len(json.loads((out / MANIFEST_FILE).read_text())["policies"])
        total = f" of {planned * len(suite.scenarios) * suite.num_seeds}"
    except (OSError, ValueError, KeyError, TypeError):
        total = ""
    if saved < 0:
        return f"edgeft leaderboard: interrupted; {out / EPISODES_FILE} could not be read back"
    opts = ""
    if args.policies:
        opts += " --policies " + shlex.quote(args.policies)
    for flag, value in (("--backend", None if args.backend == "local" else args.backend),
                        ("--workers", args.workers), ("--address", args.address)):
        if value is not None:
            opts += f" {flag} {shlex.quote(str(value))}"
    opts += " --no-plots" * bool(args.no_plots) + " --no-progress" * bool(args.no_progress)
    if args.out:  # one --out covers every suite of the command (one subfolder each)
        names = ",".join(s.name for s in suites)
        cmd = f"edgeft leaderboard --suite {names} --out {shlex.quote(args.out)} --resume{opts}"
    else:
        cmd = (f"edgeft leaderboard --suite {suite.name} --out {shlex.quote(str(out))} "
               f"--resume{opts}")
        rest = [s.name for s in suites[i + 1:]]
        if rest:
            cmd += f", then edgeft leaderboard --suite {','.join(rest)}{opts}"
    return (f"edgeft leaderboard: interrupted; {saved}{total} episodes of {suite.name} are saved "
            f"in {out}. Continue with: {cmd}")
