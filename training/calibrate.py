"""Fit the FedLoRA learning-curve surrogate to real split-LoRA training runs.

The shipped calibrations (surrogate v3, ``envs/fedlora/calibration/iid.json`` and
``dirichlet.json``) come from ``edgeft calibrate --refit``: the runs of the calibration protocol
(``edgeft.training.protocol``: settings, fit and held-out schedules, seeds, all fixed before the
runs) are committed in ``envs/fedlora/calibration/pilot/runs.jsonl.gz`` and
``edgeft.training.surrogate_fit`` fits and measures from them in seconds.

What follows is the version-2 calibration of the first releases (one pooled loss, the synthetic
task; ``calibration/v2-synthetic.json``), still available with a training run or a file:

Protocol (``edgeft calibrate`` without ``--refit``):

* **Quantity.** The surrogate models the *global test loss* of FT eq. (1): the held-out
  cross-entropy averaged over the K devices' heads on the shared LoRA encoder
  (``SplitLoRALearner.evaluate``), on a fixed subset of ``--eval-size`` (default 512) test samples,
  measured every ``--eval-every`` rounds. It is low-noise and shows participation strongly (a device
  that is rarely scheduled keeps an untrained head). The per-round training loss of the scheduled
  devices is not used: it is noisy and biased toward the devices that happen to be scheduled. The
  real-mode env reports the same quantity (``info["loss"]``, the observation's loss and the
  progress reward use the latest test loss), so a calibrated surrogate and a real env agree on
  what "loss" means.
* **Settings.** The real-mode defaults of ``TrainingConfig`` (minilm, synthetic-text, plain SGD
  lr 0.1, batch 8 per device, eval on 512 samples): the paper's lr 1e-4 / batch 32 barely moves
  the loss in a few hundred rounds, and lr 0.3 makes the test loss jump erratically. K = 20 (the
  paper's). ``--threads`` (default 1) sets torch's intra-op threads: on a small shared CPU one
  thread is several times faster than oversubscribing.
* **Schedules.** Thirteen participation patterns over ``--rounds`` (default 150) rounds, scaled
  to K (levels for K = 20). Fit: constant N = 1, 4, 20; alternating 1/20; N ~ Binomial(20, 0.3).
  Held out (eight distinct mean participations, 1.5 .. 12, roughly log-spaced since the progress
  per round is concave in N): alternating 1/2; constant N = 2, 6 and 12; uniform random N in
  1..4 and in 4..12; a ramp 1 -> 6; alternating 1/8. Each schedule runs with ``--seeds``
  (default 5) seeds (different device draws, minibatches and initialisation; the same seeds for
  every schedule) and the curves are averaged; which devices are scheduled is drawn uniformly
  each round.
* **Fit.** Least squares (scipy ``least_squares``, several starts) of (initial_loss, loss_floor,
  rate, gap_ratio, head_share, onset) to the seed-averaged curves of the fit schedules only,
  replaying each schedule's exact N(t) through the surrogate's own recursion; the accuracy map
  is an affine fit of accuracy on loss over the fit runs.
* **Fidelity.** The Spearman rank correlation between the surrogate-predicted and the real
  (seed-averaged) final loss over the held-out schedules (goal >= 0.8), printed with the
  per-schedule values and written into the JSON. "Final loss" is the mean over the evaluations in
  the last fifth of the rounds (rounds 120-150 by default), for the real runs and the surrogate
  alike: a single evaluation of the real loss carries round-to-round jumps of SGD that no
  schedule explains.

The result is written with ``SurrogateParams.to_json`` (with the training config, the schedules,
every curve, the fit residual and the Spearman figure) and is loaded by ``surrogate="path.json"``;
the shipped calibrations (``envs/fedlora/calibration/iid.json`` and ``dirichlet.json``,
``surrogate="iid"`` / ``"dirichlet"``) are refitted from the calibration protocol's committed runs
by ``edgeft calibrate --refit`` (no file; ``edgeft.training.protocol``), and a fit of your own
setting is made by, e.g.,

    edgeft calibrate --jobs 2 --out my-calibration.json

(``--jobs 2``: two worker processes of one torch thread each; about 70 minutes on 2 CPU cores).
Every finished (schedule, seed) run is appended to ``OUT.runs.jsonl`` at once: an interrupted
calibration rerun with the same settings resumes from it, and ``--refit OUT.runs.jsonl`` (or
``--refit OUT``) refits the surrogate to stored runs without training. ``--quick`` is a smoke run
(tiny budgets; use with ``--model tiny-bert``), not a usable calibration.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.envs.fedlora.family import final_loss

DEFAULT_OUT = "calibration.json"
PROTOCOL = "<protocol>"  # --refit without a file: the v3 calibration protocol
DEFAULT_ROUNDS = 150
DEFAULT_SEEDS = 5


@dataclass
class Schedule:
    """A participation pattern: the number of scheduled devices in each round."""

    name: str
    counts: np.ndarray  # (R,) int
    holdout: bool = False


def make_schedules(num_devices: int, rounds: int, seed: int) -> list[Schedule]:
    """The fit and held-out patterns (see the module docstring), deterministic in ``seed``.

    Levels are fractions of K (the names give the values); patterns whose name repeats at a small K
    are dropped. Fit schedules come first, then the held-out ones (``holdout=True``).
    """
    K = num_devices
    rng = np.random.default_rng(seed)
    lvl = lambda f: int(min(K, max(1, round(f * K))))  # noqa: E731
    alt = lambda lo, hi: np.where(np.arange(rounds) % 2 == 0, lo, hi)  # noqa: E731
    fit = [
        ("const-1", np.full(rounds, 1)),
        (f"const-{lvl(0.2)}", np.full(rounds, lvl(0.2))),
        (f"const-{K}", np.full(rounds, K)),
        (f"alternating-1/{K}", alt(1, K)),
        ("binomial-0.3", np.maximum(1, rng.binomial(K, 0.3, size=rounds))),
    ]
    held = [
        ("alternating-1/2", alt(1, min(2, K))),
        (f"const-{lvl(0.1)}", np.full(rounds, lvl(0.1))),
        (f"uniform-1..{lvl(0.2)}", rng.integers(1, lvl(0.2) + 1, size=rounds)),
        (f"ramp-1..{lvl(0.3)}", np.linspace(1, lvl(0.3), rounds).round().astype(int)),
        (f"alternating-1/{lvl(0.4)}", alt(1, lvl(0.4))),
        (f"const-{lvl(0.3)}", np.full(rounds, lvl(0.3))),
        (f"uniform-{lvl(0.2)}..{lvl(0.6)}", rng.integers(lvl(0.2), lvl(0.6) + 1, size=rounds)),
        (f"const-{lvl(0.6)}", np.full(rounds, lvl(0.6))),
    ]
    out: list[Schedule] = []
    seen: set[str] = set()
    for group, is_held in ((fit, False), (held, True)):
        for name, counts in group:
            if name not in seen:
                seen.add(name)
                out.append(Schedule(name, np.asarray(counts, dtype=np.int64), is_held))
    return out


def run_schedule(
    learner: Any, schedule: Schedule, seed: int, eval_every: int, progress: Any = None
) -> dict[str, Any]:
    """Real rounds for one schedule; devices drawn uniformly each round. Returns the loss curve."""
    K = learner.num_devices
    learner.reset(seed)
    pick = np.random.default_rng(seed + 1_000_003)
    ev = learner.evaluate()
    rounds_at, loss, acc = [0], [ev["test_loss"]], [ev["test_accuracy"]]
    train = []
    for t, n in enumerate(schedule.counts, start=1):
        scheduled = np.zeros(K, bool)
        scheduled[pick.choice(K, size=int(n), replace=False)] = True
        learner.draw_round()
        train.append(learner.run_round(scheduled)["loss"])
        if t % eval_every == 0 or t == len(schedule.counts):
            ev = learner.evaluate()
            rounds_at.append(t)
            loss.append(ev["test_loss"])
            acc.append(ev["test_accuracy"])
        if progress is not None:
            progress.update(1)
    return {
        "name": schedule.name,
        "counts": schedule.counts.tolist(),
        "rounds": rounds_at,
        "loss": loss,
        "accuracy": acc,
        "train_loss": train,
    }


def simulate(params: Any, counts: np.ndarray, num_devices: int, rounds_at: list[int]) -> np.ndarray:
    """The deterministic surrogate's loss at ``rounds_at`` under the schedule ``counts``."""
    from edgeft.envs.fedlora.surrogate import step_loss

    loss = params.initial_loss
    out = {0: loss}
    for t, n in enumerate(counts, start=1):
        loss = float(step_loss(np.float64(loss), n, num_devices, params))
        out[t] = loss
    return np.array([out[t] for t in rounds_at])


def fit(runs: list[dict[str, Any]], num_devices: int, source: str) -> tuple[Any, float]:
    """Least-squares fit of (initial_loss, loss_floor, rate, gap_ratio, head_share, onset) to the
    runs' loss curves (several starts; the best is kept)."""
    from edgeft.envs.fedlora.surrogate import SurrogateParams
    from scipy.optimize import least_squares

    l0 = float(np.mean([r["loss"][0] for r in runs]))
    lmin = float(min(min(r["loss"]) for r in runs))

    def params_of(x: np.ndarray) -> SurrogateParams:
        initial, floor_frac, log_rate, gap, head, onset = x
        return SurrogateParams(
            initial_loss=initial,
            loss_floor=floor_frac * initial,
            rate=float(np.exp(log_rate)),
            gap_ratio=gap,
            head_share=head,
            onset=onset,
            source=source,
        )

    def residuals(x: np.ndarray) -> np.ndarray:
        p = params_of(x)
        return np.concatenate(
            [
                simulate(p, np.asarray(r["counts"]), num_devices, r["rounds"])
                - np.asarray(r["loss"])
                for r in runs
            ]
        )

    best = None
    lower = [0.5 * l0, 0.0, np.log(1e-6), 0.0, 0.0, 1e-3]
    upper = [1.5 * l0, 0.999, np.log(0.99), 0.999, 1.0, 1.0]
    for log_rate in (np.log(0.003), np.log(0.03), np.log(0.2)):
        for gap, head in ((0.2, 0.0), (0.8, 0.0), (0.5, 0.5), (0.2, 0.9)):
            for onset in (1.0, 0.1):
                x0 = np.array([l0, min(0.9, 0.8 * lmin / l0), log_rate, gap, head, onset])
                res = least_squares(residuals, x0, bounds=(lower, upper))
                if best is None or res.cost < best.cost:
                    best = res
    assert best is not None
    rms = float(np.sqrt(np.mean(best.fun**2)))
    return params_of(best.x), rms


def accuracy_map(runs: list[dict[str, Any]], params: Any) -> tuple[float, float]:
    """Affine fit accuracy ~ loss over every evaluation; returns (acc at initial, acc at floor)."""
    loss = np.concatenate([r["loss"] for r in runs])
    acc = np.concatenate([r["accuracy"] for r in runs])
    if np.ptp(loss) < 1e-9:
        return float(acc.mean()), float(acc.mean())
    slope, intercept = np.polyfit(loss, acc, 1)
    at = lambda v: float(np.clip(intercept + slope * v, 0.0, 1.0))  # noqa: E731
    return at(params.initial_loss), at(params.loss_floor)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="minilm", help="TrainingConfig.model (default: minilm)")
    parser.add_argument("--task", default="synthetic-text", help="TrainingConfig.task")
    parser.add_argument("--data-dir", default=None, help="TrainingConfig.data_dir")
    parser.add_argument("--devices", type=int, default=20, help="K (default 20, the paper's)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"real rounds per schedule ({DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="SGD learning rate (default: TrainingConfig's, 0.1)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="minibatch per device (TrainingConfig's, 8)"
    )
    parser.add_argument(
        "--eval-every", type=int, default=10, help="rounds between evaluations (10)"
    )
    parser.add_argument(
        "--eval-size",
        type=int,
        default=None,
        help="fixed held-out samples per evaluation (TrainingConfig's, 512)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=DEFAULT_SEEDS,
        help=f"seeds averaged per schedule (default {DEFAULT_SEEDS})",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="worker processes, one (schedule, seed) run each at a time (default 1; on a 2-core "
        "machine --jobs 2 --threads 1 is about twice as fast)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads per process (default 1: fastest on a small shared CPU; "
        "0 = torch's)",
    )
    parser.add_argument("--seed", type=int, default=0, help="first seed; schedules' seed")
    parser.add_argument(
        "--refit",
        metavar="JSON",
        nargs="?",
        const=PROTOCOL,
        default=None,
        help="no training. Alone: refit the shipped v3 calibrations (iid.json, dirichlet.json and "
        "their held-out figure in envs/fedlora/calibration/) to the committed runs of the "
        "calibration protocol (edgeft.training.protocol) and print the fidelity tables. With a "
        "file: refit the v2 surrogate to the runs stored in a calibration file (or its "
        ".runs.jsonl cache) and write --out",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small smoke run (K <= 5, 6 rounds, 1 seed; not a usable calibration)",
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"output JSON (default {DEFAULT_OUT}); finished runs are also appended to "
        "OUT.runs.jsonl as they finish, and a rerun with the same settings resumes from it",
    )


def _mean_curve(curves: list[dict[str, Any]]) -> dict[str, Any]:
    out = {k: curves[0][k] for k in ("name", "counts", "rounds")}
    for key in ("loss", "accuracy"):
        out[key] = np.mean([c[key] for c in curves], axis=0).tolist()
    out["seed_loss"] = [c["loss"] for c in curves]
    out["seed_accuracy"] = [c["accuracy"] for c in curves]
    out["seeds"] = [c.get("seed") for c in curves]
    return out


# ---------------------------------------------------------------- worker processes
_WORKER: dict[str, Any] = {}


def _exit_with_parent(parent: int) -> None:
    """A worker whose calibration process was killed stops too (instead of training on)."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _init_worker(
    training: dict[str, Any], devices: int, threads: int, parent: int | None = None
) -> None:
    import torch
    from edgeft.training.learner import SplitLoRALearner

    if parent is not None:
        _exit_with_parent(parent)

    if threads > 0:
        torch.set_num_threads(threads)
    _WORKER["learner"] = SplitLoRALearner(training, devices)


def _run_task(schedule: Schedule, seed: int, eval_every: int) -> dict[str, Any]:
    curve = run_schedule(_WORKER["learner"], schedule, seed, eval_every)
    curve["seed"] = seed
    return curve


def _cache_key(training: dict[str, Any], devices: int, eval_every: int) -> str:
    return json.dumps(
        {"training": training, "devices": devices, "eval_every": eval_every}, sort_keys=True
    )


def _read_cache(path: Path) -> list[dict[str, Any]]:
    """The rows of a run cache; a line cut off mid-write (a killed run) is reported and skipped."""
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            print(
                f"warning: {path}:{lineno} is not valid JSON (a run cut off mid-write?); "
                "that run is repeated / ignored"
            )
    return rows


def _load_cache(path: Path, key: str) -> dict[tuple[str, int, tuple[int, ...]], dict[str, Any]]:
    """Finished runs from an earlier (interrupted) calibration with the same settings."""
    done: dict[tuple[str, int, tuple[int, ...]], dict[str, Any]] = {}
    if not path.is_file():
        return done
    for row in _read_cache(path):
        if row.get("key") == key:
            done[(row["name"], int(row["seed"]), tuple(row["counts"]))] = row["curve"]
    text = path.read_bytes()
    if text and not text.endswith(b"\n"):  # a cut-off last line: new rows start on a fresh line
        with path.open("a") as f:
            f.write("\n")
    return done


def _train_runs(
    args: argparse.Namespace,
    training: Any,
    schedules: list[Schedule],
    seeds: list[int],
    cache: Path,
) -> list[dict[str, Any]]:
    """Every (schedule, seed) run, from the cache or trained (in ``--jobs`` processes)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    tdict = training.to_dict()
    key = _cache_key(tdict, args.devices, args.eval_every)
    done = _load_cache(cache, key)
    args.resumed_runs = len(done)
    if done:
        print(f"resuming: {len(done)} finished runs read from {cache}")
    tasks = [
        (s, sd)
        for s in schedules
        for sd in seeds
        if (s.name, sd, tuple(s.counts.tolist())) not in done
    ]
    results = {k[:2]: v for k, v in done.items()}

    def record(s: Schedule, sd: int, curve: dict[str, Any]) -> None:
        results[(s.name, sd)] = curve
        with cache.open("a") as f:  # one line per finished run: a kill loses no finished run
            f.write(
                json.dumps(
                    {
                        "key": key,
                        "name": s.name,
                        "seed": sd,
                        "counts": s.counts.tolist(),
                        "curve": curve,
                    }
                )
                + "\n"
            )

    total = sum(len(s.counts) for s, _ in tasks)
    with tqdm(total=total, desc="real rounds", unit="round") as bar:
        if args.jobs <= 1 or len(tasks) <= 1:
            _init_worker(tdict, args.devices, args.threads)
            for s, sd in tasks:
                bar.set_postfix_str(f"{s.name} seed {sd}")
                record(s, sd, _run_task(s, sd, args.eval_every))
                bar.update(len(s.counts))
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # torch and fork do not mix
            with ProcessPoolExecutor(
                max_workers=args.jobs,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(tdict, args.devices, args.threads, os.getpid()),
            ) as pool:
                futures = {
                    pool.submit(_run_task, s, sd, args.eval_every): (s, sd) for s, sd in tasks
                }
                for fut in as_completed(futures):
                    s, sd = futures[fut]
                    record(s, sd, fut.result())
                    bar.set_postfix_str(f"done {s.name} seed {sd}")
                    bar.update(len(s.counts))
    return [_mean_curve([results[(s.name, sd)] for sd in seeds]) for s in schedules]


def _runs_from_file(path: Path) -> tuple[list[dict[str, Any]], list[bool], dict[str, Any]]:
    """(seed-averaged runs, held-out flags, settings) stored by an earlier calibration."""
    if not path.is_file():
        raise FileNotFoundError(
            f"--refit: {path} not found (give a calibration JSON written by "
            "`edgeft calibrate --out ...` or its .runs.jsonl cache)"
        )
    if path.suffix == ".jsonl":
        rows = [r for r in _read_cache(path) if "key" in r]
        if not rows:
            raise ValueError(f"--refit: {path} holds no runs")
        key = json.loads(rows[-1]["key"])
        rows = [r for r in rows if r["key"] == rows[-1]["key"]]
        by_name: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_name.setdefault(r["name"], []).append(dict(r["curve"], seed=r["seed"]))
        nseeds = max(len(v) for v in by_name.values())
        K = int(key["devices"])
        rounds = len(rows[-1]["counts"])
        held_names = {s.name for s in make_schedules(K, rounds, 0) if s.holdout}
        runs, flags = [], []
        for name, curves in by_name.items():
            if len(curves) < nseeds:
                print(f"--refit: skipping {name}: {len(curves)} of {nseeds} seeds finished")
                continue
            runs.append(_mean_curve(sorted(curves, key=lambda c: c["seed"])))
            flags.append(name in held_names)
        settings = {
            "training": key["training"],
            "num_devices": K,
            "rounds": rounds,
            "eval_every": key["eval_every"],
            "seeds": sorted({r["seed"] for r in rows}),
        }
        return runs, flags, settings
    data = json.loads(path.read_text())
    if "runs" not in data:
        raise ValueError(f"--refit: {path} has no stored runs (not a calibration file?)")
    held = {h["name"] for h in data["holdout"]}
    runs = data["runs"]
    settings = {k: data[k] for k in ("training", "num_devices", "rounds", "eval_every", "seeds")}
    return runs, [r["name"] in held for r in runs], settings


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from edgeft.envs.real_config import TrainingConfig
    from scipy.stats import spearmanr

    if args.refit == PROTOCOL:
        from edgeft.training.surrogate_fit import refit

        refit()
        return 0
    t0 = time.perf_counter()
    out = Path(args.out)
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    if args.refit:
        runs, held_flags, settings = _runs_from_file(Path(args.refit))
        training = TrainingConfig.from_any(settings["training"])
        args.devices, args.rounds = settings["num_devices"], settings["rounds"]
        args.eval_every, seeds = settings["eval_every"], settings["seeds"]
        args.model, args.task = training.model, training.task
    else:
        if args.quick:
            args.devices, args.rounds = min(args.devices, 5), min(args.rounds, 6)
            args.eval_every = 3
            args.eval_size = min(args.eval_size or 64, 64)
            args.batch_size, args.seeds = 4, 1
        given = {"lr": args.lr, "batch_size": args.batch_size, "eval_size": args.eval_size}
        overrides = {k: v for k, v in given.items() if v is not None}
        training = TrainingConfig(
            model=args.model,
            task=args.task,
            data_dir=args.data_dir,
            eval_every=args.eval_every,
            **overrides,
        )
        schedules = make_schedules(args.devices, args.rounds, args.seed)
        if args.quick:
            fit_s = [s for s in schedules if not s.holdout][:3]
            schedules = fit_s + [s for s in schedules if s.holdout][:3]
        seeds = [args.seed + i for i in range(max(1, args.seeds))]
        out.parent.mkdir(parents=True, exist_ok=True)
        cache = out.with_name(out.name + ".runs.jsonl")
        runs = _train_runs(args, training, schedules, seeds, cache)
        held_flags = [s.holdout for s in schedules]
    fit_runs = [r for r, h in zip(runs, held_flags) if not h]
    test_runs = [r for r, h in zip(runs, held_flags) if h]
    if not fit_runs:
        raise ValueError("no fit schedules to fit the surrogate to")
    source = (
        f"edgeft calibrate: {args.model} on {args.task}, K={args.devices}, {args.rounds} rounds, "
        f"lr={training.lr}, batch={training.batch_size}, test loss on {training.eval_size} samples"
    )
    params, rms = fit(fit_runs, args.devices, source)
    a0, a1 = accuracy_map(fit_runs, params)
    params = replace(params, initial_accuracy=a0, final_accuracy=a1)
    predicted = [
        final_loss(
            r["rounds"], simulate(params, np.asarray(r["counts"]), args.devices, r["rounds"])
        )
        for r in test_runs
    ]
    real = [final_loss(r["rounds"], r["loss"]) for r in test_runs]
    rho = float(spearmanr(predicted, real).statistic) if len(test_runs) >= 2 else float("nan")
    elapsed = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    params.to_json(
        out,
        spearman=rho,
        spearman_goal=0.8,
        quantity="test loss (FT eq. 1: mean over the K heads) on a fixed eval subset",
        fit_rms=rms,
        num_devices=args.devices,
        rounds=args.rounds,
        eval_every=args.eval_every,
        seeds=seeds,
        training=training.to_dict(),
        seconds=round(elapsed, 1),  # this invocation only
        resumed_runs=getattr(args, "resumed_runs", None),  # runs read from the cache, not trained
        fit_schedules=[r["name"] for r in fit_runs],
        holdout=[
            {
                "name": r["name"],
                "mean_n": float(np.mean(r["counts"])),
                "real_final_loss": y,
                "surrogate_final_loss": p,
            }
            for r, y, p in zip(test_runs, real, predicted)
        ],
        runs=[
            {
                k: r[k]
                for k in ("name", "counts", "rounds", "loss", "accuracy", "seed_loss")
                if k in r
            }
            for r in runs
        ],
    )
    print(
        f"fitted: initial_loss={params.initial_loss:.4f} loss_floor={params.loss_floor:.4f} "
        f"rate={params.rate:.4g} gap_ratio={params.gap_ratio:.3f} "
        f"head_share={params.head_share:.3f} onset={params.onset:.3g} "
        f"accuracy {params.initial_accuracy:.3f} -> {params.final_accuracy:.3f} (fit RMS {rms:.4f})"
    )
    print("held-out schedules (real vs surrogate final loss):")
    for r, y, p in zip(test_runs, real, predicted):
        print(
            f"  {r['name']:<16} mean N {np.mean(r['counts']):5.1f}  real {y:.4f}  surrogate {p:.4f}"
        )
    print(
        f"fidelity: Spearman rank correlation (held-out final loss) = {rho:.3f} "
        f"over {len(test_runs)} schedules (goal >= 0.8)"
    )
    print(f"wrote {out} in {elapsed:.0f} s")
    print(json.dumps({"spearman": rho}))
    return 0
