"""Fit the FedLoRA learning-curve surrogate to real split-LoRA training runs.

Runs real federated rounds (``SplitLoRALearner``, FT eqs. 2-4) under varied participation
patterns — constant N, random N, channel-like N ~ Binomial(K, p), ramps — and records the global
loss (FT eq. 1: held-out cross-entropy averaged over the K devices' heads) every few rounds. The
surrogate's constants (initial_loss, loss_floor, rate, gap_ratio) are fitted by least squares to
the curves of the fit schedules, replaying each schedule's exact N(t); the accuracy map is an
affine fit of accuracy on loss. Fidelity: the Spearman rank correlation between the surrogate's
predicted and the real final loss over held-out schedules not used in the fit (goal >= 0.8).

The result is written with ``SurrogateParams.to_json`` (with the training config, the schedules,
the fit residual and the Spearman figure) and is loaded by ``surrogate="path.json"``; the shipped
fit is ``envs/fedlora/calibration/default.json`` (``surrogate="default"``).

Example:
    edgeft calibrate --out my_fit.json            # default: minilm + synthetic-text, ~10 min on 2 cores
    edgeft calibrate --quick --model tiny-bert    # a small smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_OUT = "calibration.json"


@dataclass
class Schedule:
    """A participation pattern: the number of scheduled devices in each round."""

    name: str
    counts: np.ndarray  # (R,) int


def make_schedules(num_devices: int, rounds: int, seed: int) -> list[Schedule]:
    """The varied patterns used for the fit and the hold-out (deterministic in ``seed``)."""
    K = num_devices
    rng = np.random.default_rng(seed)
    out = []
    for n in sorted({1, 2, max(1, K // 4), max(1, K // 2), K}):
        out.append(Schedule(f"const-{n}", np.full(rounds, n)))
    for p in (0.25, 0.6):
        out.append(Schedule(f"binomial-{p}", np.maximum(1, rng.binomial(K, p, size=rounds))))
    out.append(Schedule("uniform", rng.integers(1, K + 1, size=rounds)))
    out.append(Schedule("ramp-up", np.linspace(1, K, rounds).round().astype(int)))
    out.append(Schedule("ramp-down", np.linspace(K, 1, rounds).round().astype(int)))
    for n in sorted({3, max(1, (3 * K) // 4)}):
        out.append(Schedule(f"const-{n}", np.full(rounds, n)))
    out.append(Schedule("bursty", np.where(rng.random(rounds) < 0.3, K, 1)))
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
    """Least-squares fit of (initial_loss, loss_floor, rate, gap_ratio) to the runs' loss curves."""
    from edgeft.envs.fedlora.surrogate import SurrogateParams
    from scipy.optimize import least_squares

    l0 = float(np.mean([r["loss"][0] for r in runs]))
    lmin = float(min(min(r["loss"]) for r in runs))

    def params_of(x: np.ndarray) -> SurrogateParams:
        initial, floor_frac, log_rate, gap = x
        floor = floor_frac * initial
        return SurrogateParams(
            initial_loss=initial,
            loss_floor=floor,
            rate=float(np.exp(log_rate)),
            gap_ratio=gap,
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
    for log_rate in (np.log(0.003), np.log(0.03), np.log(0.2)):
        for gap in (0.2, 0.8):
            x0 = np.array([l0, min(0.9, 0.8 * lmin / l0), log_rate, gap])
            res = least_squares(
                residuals,
                x0,
                bounds=([0.5 * l0, 0.0, np.log(1e-6), 0.0], [1.5 * l0, 0.999, np.log(0.99), 0.999]),
            )
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
    parser.add_argument("--rounds", type=int, default=30, help="real rounds per schedule")
    parser.add_argument(
        "--lr",
        type=float,
        default=0.05,
        help="SGD learning rate (default 0.05: the paper's 1e-4 moves nothing in "
        "a few dozen rounds)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="minibatch per device")
    parser.add_argument("--eval-every", type=int, default=5, help="rounds between evaluations")
    parser.add_argument(
        "--eval-size", type=int, default=256, help="held-out samples per evaluation"
    )
    parser.add_argument(
        "--holdout",
        type=int,
        default=5,
        help="schedules held out of the fit for the fidelity figure",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small smoke run (tiny budgets; not a usable calibration)",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output JSON (default {DEFAULT_OUT})")


def run(args: argparse.Namespace) -> int:
    from edgeft.training.config import TrainingConfig
    from edgeft.training.learner import SplitLoRALearner
    from scipy.stats import spearmanr
    from tqdm.auto import tqdm

    if args.quick:
        args.devices, args.rounds, args.eval_every = min(args.devices, 5), min(args.rounds, 6), 3
        args.eval_size, args.batch_size, args.holdout = min(args.eval_size, 64), 4, 3
    training = TrainingConfig(
        model=args.model,
        task=args.task,
        data_dir=args.data_dir,
        lr=args.lr,
        batch_size=args.batch_size,
        eval_size=args.eval_size,
        eval_every=args.eval_every,
    )
    t0 = time.perf_counter()
    learner = SplitLoRALearner(training, args.devices)
    schedules = make_schedules(args.devices, args.rounds, args.seed)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(schedules))
    holdout = set(order[: args.holdout].tolist())
    total = sum(len(s.counts) for s in schedules)
    runs = []
    with tqdm(total=total, desc="real rounds", unit="round") as bar:
        for s in schedules:
            bar.set_postfix_str(s.name)
            runs.append(run_schedule(learner, s, args.seed, args.eval_every, bar))
    fit_runs = [r for i, r in enumerate(runs) if i not in holdout]
    test_runs = [r for i, r in enumerate(runs) if i in holdout]
    source = (
        f"edgeft calibrate: {args.model} on {args.task}, K={args.devices}, {args.rounds} rounds"
    )
    params, rms = fit(fit_runs, args.devices, source)
    a0, a1 = accuracy_map(runs, params)
    from dataclasses import replace

    params = replace(params, initial_accuracy=a0, final_accuracy=a1)
    predicted = [
        float(simulate(params, np.asarray(r["counts"]), args.devices, r["rounds"])[-1])
        for r in test_runs
    ]
    real = [float(r["loss"][-1]) for r in test_runs]
    rho = float(spearmanr(predicted, real).statistic) if len(test_runs) >= 2 else float("nan")
    elapsed = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    params.to_json(
        out,
        spearman=rho,
        fit_rms=rms,
        num_devices=args.devices,
        rounds=args.rounds,
        training=training.to_dict(),
        seed=args.seed,
        seconds=round(elapsed, 1),
        fit_schedules=[r["name"] for r in fit_runs],
        holdout=[
            {"name": r["name"], "real_final_loss": y, "surrogate_final_loss": p}
            for r, y, p in zip(test_runs, real, predicted)
        ],
        runs=[{k: r[k] for k in ("name", "counts", "rounds", "loss", "accuracy")} for r in runs],
    )
    print(
        f"fitted: initial_loss={params.initial_loss:.4f} loss_floor={params.loss_floor:.4f} "
        f"rate={params.rate:.4g} gap_ratio={params.gap_ratio:.3f} "
        f"accuracy {params.initial_accuracy:.3f} -> {params.final_accuracy:.3f} (fit RMS {rms:.4f})"
    )
    print("held-out schedules (real vs surrogate final loss):")
    for r, y, p in zip(test_runs, real, predicted):
        print(
            f"  {r['name']:<14} mean N {np.mean(r['counts']):5.1f}  real {y:.4f}  surrogate {p:.4f}"
        )
    print(
        f"fidelity: Spearman rank correlation (held-out final loss) = {rho:.3f} "
        f"over {len(test_runs)} schedules (goal >= 0.8)"
    )
    print(f"wrote {out} in {elapsed:.0f} s")
    print(json.dumps({"spearman": rho}))
    return 0
