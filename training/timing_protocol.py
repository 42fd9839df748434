"""The timing protocol: does *when* devices take part change real fine-tuning, and does the
surrogate follow it?

Fixed on 2026-12-07, before any of its runs, and never changed after them. Everything that
decides which runs exist and how they are judged is written here.

Why: FT Theorem 1 (and surrogate v3, built on it) weighs later rounds more, so a schedule's final
loss depends on how its participation is spread over the episode, not only on its average. Every
schedule the v3 calibration saw (fitted or held out) is constant in time; this protocol checks
timing in real training before a leaderboard rewards it.

Runs (real split-LoRA rounds, :class:`~edgeft.training.learner.SplitLoRALearner`):

* settings ``TIMING_SETTINGS`` = ``iid-h1`` and ``dir-h1`` of :mod:`edgeft.training.protocol`
  (the calibrated regime: MiniLM on the tweets task, K = 20, 100 rounds, i.i.d. or
  Dirichlet(0.5) shards), at the calibrated horizon of 100 rounds;
* seeds ``TIMING_SEEDS`` = 100-109, never used by any earlier run (the calibration used 0-7);
* schedules of equal average participation (``TIMING_MEAN`` = 10 devices per round, 1000
  device-rounds per episode) that differ only in timing: in round t, N(t) devices drawn
  uniformly at random, N(t) proportional to ``exp(g t / T)`` (clipped to [1, K], rounded so that
  the total stays 1000):

  - ``flat-10`` (g = 0; the reference every difference is taken from),
  - ``front-2``, ``front-4`` (g = -2, -4: front-loaded, N from 20 down to 3 / 1),
  - ``back-2``, ``back-4`` (g = +2, +4: back-loaded, the mirror images);

* the masks of the reference policies ``lyapunov``, ``gs``, ``aaba`` and of the late-loading
  rule ``gs-profile-2`` (``gs-profile`` with growth 2: GS against a per-round budget growing as
  exp(2 t / T), mean D-bar) in ``FedLoRAScheduling-v0`` with K = 20, the default budget and
  channels, 100 rounds, from ``reset(seed)`` (stored with each run).

Criteria (those of the calibration protocol), per setting, surrogate = the shipped calibration
of that partition (surrogate v3, ``envs/fedlora/calibration/{iid,dirichlet}.json``) simulated on
each run's own masks, final loss as ``edgeft.envs.fedlora.family.final_loss``:

* Spearman >= 0.9 between real and surrogate mean final loss over the nine schedules;
* for each schedule other than ``flat-10``: the surrogate's mean paired difference from
  ``flat-10`` within 25% of the real one, or inside the real difference's 95% interval (paired
  Student t over the seeds);
* power, reported per row: the half-width h of the real interval beside the surrogate's
  difference |s|. A row can fail only if h < |s| (else a reality with no effect at all would
  pass), so the table marks the rows where the criterion could fail.

Timing matters in real training on a setting iff the real paired 95% interval of
``back-4 - front-4`` or of ``gs-profile-2 - gs`` excludes 0; the leaderboard rewards timing
(through the final loss) on the suites of that partition only where it does.

If surrogate v3 fails a criterion on a setting, a new surrogate version is fitted (the old ones
kept by name) on the v3 fit runs (const-2, const-5, const-K, seeds 0-4) plus ``flat-10``,
``front-4`` and ``back-4`` at seeds 100-109, and judged by the same criteria on what it was not
fitted on: ``front-2``, ``back-2`` (the other growth rate) and the four policy masks (another
kind) at seeds 100-109, and the v3 held-out schedules at seeds 0-4.

Every run is appended to ``envs/fedlora/calibration/timing/runs-SETTING.jsonl.gz`` as one gzip
member (as the calibration cache; a killed
batch resumes), with its commit and the time it finished. Run one process per setting, one torch
thread each::

    OMP_NUM_THREADS=1 python -m edgeft.training.timing_protocol --settings dir-h1
    python -m edgeft.training.timing_protocol --table      # the criteria from the cache
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.training.protocol import (
    NUM_DEVICES,
    SETTINGS,
    append_row,
    final_of,
    parse_seeds,
    read_cache,
    run_key,
    run_one,
)

TIMING_SETTINGS = ("iid-h1", "dir-h1")
TIMING_SEEDS = tuple(range(100, 110))
TIMING_MEAN = 10
TIMING_ROUNDS = 100
#: schedule -> growth g of N(t) ~ exp(g t / T)
TIMING_PROFILES = {"flat-10": 0.0, "front-2": -2.0, "front-4": -4.0, "back-2": 2.0, "back-4": 4.0}
#: schedule -> (registered policy, its options)
TIMING_POLICIES: dict[str, tuple[str, dict[str, Any]]] = {
    "lyapunov": ("lyapunov", {}),
    "gs": ("gs", {}),
    "aaba": ("aaba", {}),
    "gs-profile-2": ("gs-profile", {"growth": 2.0}),
}
TIMING_SCHEDULES = (*TIMING_PROFILES, *TIMING_POLICIES)
REFERENCE = "flat-10"
#: the pairs whose real interval decides whether timing matters on a setting
TIMING_CONTRASTS = (("back-4", "front-4"), ("gs-profile-2", "gs"))
SPEARMAN_GOAL = 0.9
DIFF_TOLERANCE = 0.25
#: the runs of a refit, should v3 fail (see the module docstring)
REFIT_FIT = ("flat-10", "front-4", "back-4")
REFIT_HELDOUT = ("front-2", "back-2", *TIMING_POLICIES)

_DIR = Path(__file__).resolve().parents[1] / "envs" / "fedlora" / "calibration" / "timing"
#: one cache file per setting (one process per setting appends to it)
TIMING_DIR = _DIR
TIMING_SUMMARY = _DIR / "summary.json"


def cache_path(directory: Path, setting: str) -> Path:
    """The run cache of ``setting`` in ``directory``."""
    return Path(directory) / f"runs-{setting}.jsonl.gz"


def read_runs(directory: Path = TIMING_DIR) -> dict[str, dict[str, Any]]:
    """Every cached run of the protocol's settings, by key."""
    rows: dict[str, dict[str, Any]] = {}
    for setting in TIMING_SETTINGS:
        rows.update(read_cache(cache_path(directory, setting)))
    return rows


def timing_counts(
    growth: float,
    num_devices: int = NUM_DEVICES,
    rounds: int = TIMING_ROUNDS,
    mean: int = TIMING_MEAN,
) -> np.ndarray:
    """N(t), t = 0..T-1: proportional to exp(growth t / T), clipped to [1, K], integers summing
    to exactly ``mean * T`` (largest remainders round up)."""
    t = (np.arange(rounds) + 0.5) / rounds
    w = np.exp(growth * t)
    scale = mean / w.mean()
    for _ in range(200):  # the scale at which the clipped profile has the right mean
        x = np.clip(w * scale, 1.0, num_devices)
        scale *= mean / x.mean()
    x = np.clip(w * scale, 1.0, num_devices)
    base = np.floor(x).astype(np.int64)
    rest = int(mean * rounds - base.sum())
    if rest > 0:
        base[np.argsort(-(x - base), kind="stable")[:rest]] += 1
    elif rest < 0:
        base[np.argsort(x - base, kind="stable")[:-rest]] -= 1
    return base


def profile_masks(name: str, num_devices: int, rounds: int, seed: int) -> np.ndarray:
    """(rounds, K) masks of a timing profile: N(t) devices drawn uniformly each round."""
    counts = timing_counts(TIMING_PROFILES[name], num_devices, rounds)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    masks = np.zeros((rounds, num_devices), dtype=bool)
    for t, n in enumerate(counts):
        masks[t, rng.choice(num_devices, size=int(n), replace=False)] = True
    return masks


def policy_masks(name: str, num_devices: int, rounds: int, seed: int) -> np.ndarray:
    """(rounds, K) masks the reference policy of schedule ``name`` plays in
    ``FedLoRAScheduling-v0`` (K devices, default budget and channels) from ``reset(seed)``."""
    import gymnasium as gym
    from edgeft.baselines import reference_policy
    from edgeft.envs.common import config_in_force

    policy, options = TIMING_POLICIES[name]
    env = gym.make(
        "edgeft/FedLoRAScheduling-v0", num_devices=num_devices, episode_rounds=max(rounds, 1)
    )
    try:
        pol = reference_policy(policy, config_in_force(env), seed=seed, **options)
        obs, _ = env.reset(seed=seed)
        out = np.zeros((rounds, num_devices), dtype=bool)
        for t in range(rounds):
            action, _ = pol.predict(obs, deterministic=True)
            obs, _, _, _, info = env.step(action)
            out[t] = np.asarray(info["scheduled"], dtype=bool)
        return out
    finally:
        env.close()


def timing_masks(
    name: str, num_devices: int = NUM_DEVICES, rounds: int = TIMING_ROUNDS, seed: int = 0
) -> np.ndarray:
    """(rounds, K) bool masks of the timing schedule ``name`` for one seed (deterministic)."""
    if name in TIMING_PROFILES:
        return profile_masks(name, num_devices, rounds, seed)
    if name in TIMING_POLICIES:
        return policy_masks(name, num_devices, rounds, seed)
    raise ValueError(f"unknown timing schedule {name!r}; known: {list(TIMING_SCHEDULES)}")


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _masks_of(row: dict[str, Any]) -> np.ndarray:
    masks = np.zeros((row["rounds"], row["devices"]), dtype=bool)
    for t, idx in enumerate(row["masks"]):
        masks[t, idx] = True
    return masks


def _t_interval(d: np.ndarray) -> tuple[float, float]:
    """Half-width of the paired Student-t 95% interval of the mean of ``d``."""
    from scipy import stats

    if d.size < 2:
        return float("inf"), float("nan")
    se = float(d.std(ddof=1) / np.sqrt(d.size))
    return float(stats.t.ppf(0.975, d.size - 1) * se), se


def evaluate(
    rows: dict[str, dict[str, Any]],
    params_by_setting: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
) -> dict[str, Any]:
    """The protocol's table and criteria per setting from the cached runs (``seeds``: default
    :data:`TIMING_SEEDS`; ``params_by_setting``: the surrogate to judge, default the shipped
    v3 calibration of the setting's partition)."""
    from edgeft.envs.fedlora.family import final_loss
    from edgeft.envs.fedlora.surrogate import SurrogateParams, simulate_masks
    from scipy import stats

    seeds = list(TIMING_SEEDS) if seeds is None else seeds
    out: dict[str, Any] = {}
    for setting in TIMING_SETTINGS:
        if params_by_setting and setting in params_by_setting:
            params = params_by_setting[setting]
        else:
            partition = SETTINGS[setting][0]["partition"]
            params = SurrogateParams.resolve("dirichlet" if partition == "dirichlet" else "iid")
        real: dict[str, dict[int, float]] = {}
        surr: dict[str, dict[int, float]] = {}
        for r in rows.values():
            if (
                r["setting"] != setting
                or r["seed"] not in seeds
                or r["schedule"] not in TIMING_SCHEDULES
                or r["key"] != run_key(setting, r["schedule"], r["seed"])
            ):
                continue
            real.setdefault(r["schedule"], {})[r["seed"]] = final_of(r)
            loss, _ = simulate_masks(_masks_of(r), params)
            at = np.asarray(r["rounds_at"])
            surr.setdefault(r["schedule"], {})[r["seed"]] = final_loss(at, loss[at])
        if not real:
            continue
        table = []
        ref = real.get(REFERENCE, {})
        for name in TIMING_SCHEDULES:
            if name not in real:
                continue
            vals = np.array(list(real[name].values()))
            row: dict[str, Any] = {
                "schedule": name,
                "seeds": sorted(real[name]),
                "n": int(vals.size),
                "mean_n": None,
                "real_final": float(vals.mean()),
                "surrogate_final": float(np.mean(list(surr[name].values()))),
            }
            common = sorted(set(real[name]) & set(ref))
            if name != REFERENCE and len(common) >= 2:
                d_real = np.array([real[name][k] - ref[k] for k in common])
                d_surr = np.array([surr[name][k] - surr[REFERENCE][k] for k in common])
                h, se = _t_interval(d_real)
                r_diff, s_diff = float(d_real.mean()), float(d_surr.mean())
                within = abs(s_diff - r_diff) <= DIFF_TOLERANCE * abs(r_diff)
                inside = r_diff - h <= s_diff <= r_diff + h
                row.update(
                    real_diff=r_diff,
                    real_diff_ci95=[r_diff - h, r_diff + h],
                    real_diff_se=se,
                    surrogate_diff=s_diff,
                    diff_ok=bool(within or inside),
                    could_fail=bool(h < abs(s_diff)),
                    paired_seeds=len(common),
                )
            table.append(row)
        for row in table:
            masks = [
                _masks_of(r)
                for r in rows.values()
                if r["setting"] == setting
                and r["schedule"] == row["schedule"]
                and r["seed"] in seeds
            ]
            row["mean_n"] = float(np.mean([m.sum(1).mean() for m in masks]))
        contrasts = {}
        for a, b in TIMING_CONTRASTS:
            common = sorted(set(real.get(a, {})) & set(real.get(b, {})))
            if len(common) >= 2:
                d = np.array([real[a][k] - real[b][k] for k in common])
                ds = np.array([surr[a][k] - surr[b][k] for k in common])
                h, _ = _t_interval(d)
                contrasts[f"{a} - {b}"] = {
                    "real": float(d.mean()),
                    "ci95": [float(d.mean() - h), float(d.mean() + h)],
                    "surrogate": float(ds.mean()),
                    "excludes_zero": bool(abs(d.mean()) > h),
                    "seeds": common,
                }
        means_r = [r["real_final"] for r in table]
        means_s = [r["surrogate_final"] for r in table]
        rho = float(stats.spearmanr(means_r, means_s)[0]) if len(table) > 2 else float("nan")
        complete = all(len(real.get(s, {})) == len(seeds) for s in TIMING_SCHEDULES)
        diffs_ok = all(r.get("diff_ok", True) for r in table)
        out[setting] = {
            "surrogate": params.source,
            "seeds": seeds,
            "complete": complete,
            "rows": table,
            "spearman": rho,
            "spearman_goal": SPEARMAN_GOAL,
            "diff_tolerance": DIFF_TOLERANCE,
            "met": bool(complete and rho >= SPEARMAN_GOAL and diffs_ok),
            "contrasts": contrasts,
            "timing_matters": bool(any(c["excludes_zero"] for c in contrasts.values())),
        }
    return out


def print_table(summary: dict[str, Any]) -> None:
    """The protocol's table, one block per setting."""
    for setting, s in summary.items():
        state = "complete" if s["complete"] else "INCOMPLETE"
        print(f"\n{setting} ({state}; surrogate: {s['surrogate'][:60]})")
        print(
            f"{'schedule':<13} {'N':>5} {'seeds':>5} {'real':>7} {'surr':>7} {'real diff':>9} "
            f"{'95% half':>8} {'surr diff':>9} {'ok':>3} {'could fail':>10}"
        )
        for r in s["rows"]:
            if "real_diff" in r:
                tail = (
                    f"{r['real_diff']:>+9.4f} {r['real_diff_ci95'][1] - r['real_diff']:>8.4f} "
                    f"{r['surrogate_diff']:>+9.4f} {'yes' if r['diff_ok'] else 'NO':>3} "
                    f"{'yes' if r['could_fail'] else 'no':>10}"
                )
            else:
                tail = f"{'(ref)':>9}"
            print(
                f"{r['schedule']:<13} {r['mean_n']:>5.2f} {r['n']:>5} {r['real_final']:>7.4f} "
                f"{r['surrogate_final']:>7.4f} {tail}"
            )
        print(
            f"Spearman {s['spearman']:.3f} (goal >= {s['spearman_goal']}); criteria met: {s['met']}"
        )
        for name, c in s["contrasts"].items():
            print(
                f"  {name}: real {c['real']:+.4f} [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}]"
                f", surrogate {c['surrogate']:+.4f}"
            )
        print(f"timing matters in real training: {s['timing_matters']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="schedules: " + ", ".join(TIMING_SCHEDULES),
    )
    p.add_argument(
        "--settings",
        default=",".join(TIMING_SETTINGS),
        help="comma-separated, from " + ", ".join(TIMING_SETTINGS),
    )
    p.add_argument(
        "--schedules",
        default=",".join(TIMING_SCHEDULES),
        help="comma-separated subset of the protocol's schedules (default: all)",
    )
    p.add_argument("--seeds", default=None, help="default: the protocol's (100-109)")
    p.add_argument(
        "--cache",
        type=Path,
        default=TIMING_DIR,
        help="folder of the run caches (runs-SETTING.jsonl.gz)",
    )
    p.add_argument(
        "--summary", type=Path, default=TIMING_SUMMARY, help="JSON summary written after every run"
    )
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--table", action="store_true", help="only print the table from the cache")
    args = p.parse_args(argv)
    settings = [s for s in args.settings.split(",") if s]
    schedules = [s for s in args.schedules.split(",") if s]
    for s in settings:
        if s not in TIMING_SETTINGS:
            p.error(f"unknown setting {s!r}; the protocol's: {', '.join(TIMING_SETTINGS)}")
    for s in schedules:
        if s not in TIMING_SCHEDULES:
            p.error(f"unknown schedule {s!r}; the protocol's: {', '.join(TIMING_SCHEDULES)}")
    seeds = parse_seeds(args.seeds) if args.seeds else list(TIMING_SEEDS)
    rows = read_runs(args.cache)
    if not args.table:
        import torch
        from edgeft.training.learner import SplitLoRALearner

        torch.set_num_threads(args.threads)
        commit = _commit()
        todo = [
            (st, sc, sd)
            for sd in seeds
            for st in settings
            for sc in schedules
            if run_key(st, sc, sd) not in rows
        ]
        print(f"{len(rows)} runs cached, {len(todo)} to run", flush=True)
        learners: dict[str, Any] = {}
        t_start = time.perf_counter()
        for i, (st, sc, sd) in enumerate(todo, start=1):
            if st not in learners:
                learners[st] = SplitLoRALearner(SETTINGS[st][0], NUM_DEVICES)
            masks = timing_masks(sc, NUM_DEVICES, SETTINGS[st][1], sd)
            row = run_one(learners[st], st, sc, sd, masks=masks)
            row["commit"] = commit
            row["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            append_row(cache_path(args.cache, st), row)
            rows[row["key"]] = row
            args.summary.parent.mkdir(parents=True, exist_ok=True)
            elapsed = time.perf_counter() - t_start
            print(
                f"[{i}/{len(todo)}] {st} {sc} seed {sd}: final {final_of(row):.4f} "
                f"({row['wall_s']:.0f} s, {elapsed / 60:.1f} min so far)",
                flush=True,
            )
    summary = evaluate(rows, seeds=seeds)
    if not args.table and len(settings) == len(TIMING_SETTINGS):
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=1) + "\n")
    print_table(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
