"""Fit surrogate v3 to the calibration protocol's real runs, and measure its fidelity.

``edgeft calibrate --refit`` (no argument) runs :func:`refit`: for each setting of
``edgeft.training.protocol.CALIBRATION_SETTINGS`` it reads the committed run cache, fits the
surrogate's constants to the fit schedules only, predicts every held-out schedule, and writes
``envs/fedlora/calibration/<iid|dirichlet>.json`` (constants, the fidelity table, the protocol)
and a figure of real vs surrogate curves of the held-out schedules.

The fit: least squares (scipy ``least_squares``, a few starts) of (loss_floor, rate, gap_ratio,
stationary, head_fraction, head_rate, onset) with ``initial_loss`` = the real round-0 loss. Each
run is replayed through the surrogate with its own masks (which devices, every round), and the
residuals are (a) the seed-mean loss of each fit schedule at each evaluation round and (b) each
device's loss at each evaluation of each run, weighted by 1 / sqrt(K x runs) so that the two
parts count about equally: the per-device losses are what separates the shared part from the
heads.

"Final loss" is ``edgeft.envs.fedlora.family.final_loss`` (the mean of the evaluations in the
last fifth of the rounds), as in the pilot. Fidelity, both required (the protocol): Spearman >=
0.9 between real and surrogate mean final loss over the held-out schedules, and for each
held-out schedule the surrogate's difference from const-K within 25% of the real difference or
inside the real difference's 95% interval (paired over seeds, Student t).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.envs.fedlora.family import final_loss
from edgeft.envs.fedlora.surrogate import simulate_masks

SPEARMAN_GOAL = 0.9
DIFF_TOLERANCE = 0.25
#: setting -> (data partition of the env, calibration file name)
OUTPUTS = {"iid-h1": "iid", "dir-h1": "dirichlet"}


def load_runs(
    cache: Path, setting: str, schedules: tuple[str, ...], seeds: tuple[int, ...]
) -> dict[str, list[dict[str, Any]]]:
    """schedule -> the cached runs of ``setting`` for ``seeds`` (sorted by seed), each with its
    masks as a (T, K) bool array (stored with the run, or rebuilt by the protocol)."""
    from edgeft.training import protocol

    rows = protocol.read_cache(cache)
    out: dict[str, list[dict[str, Any]]] = {}
    for s in schedules:
        runs = []
        for seed in seeds:
            row = rows.get(protocol.run_key(setting, s, seed))
            if row is None:
                continue
            T, K = row["rounds"], row["devices"]
            if "masks" in row:
                masks = np.zeros((T, K), dtype=bool)
                for t, idx in enumerate(row["masks"]):
                    masks[t, idx] = True
            else:
                masks = protocol.schedule_masks(s, K, T, seed)
            if masks.sum(1).tolist() != row["counts"]:
                raise ValueError(f"{setting} {s} seed {seed}: rebuilt masks differ from the run's")
            runs.append({**row, "mask_array": masks})
        out[s] = runs
    return out


def _common_rounds(runs: list[dict[str, Any]]) -> np.ndarray:
    """The evaluation rounds every run has (runs of the protocol evaluate on a sparse grid,
    some early pilot runs on a denser one)."""
    common = set(runs[0]["rounds_at"])
    for r in runs[1:]:
        common &= set(r["rounds_at"])
    return np.array(sorted(common))


def _at(run: dict[str, Any], key: str, rounds: np.ndarray) -> np.ndarray:
    pos = {t: i for i, t in enumerate(run["rounds_at"])}
    return np.asarray([run[key][pos[int(t)]] for t in rounds])


#: v4 constants :func:`fit` can free, with their bounds
V4_TERMS = {"drift_rate": (0.0, 1.0), "settle_power": (0.3, 2.0)}


def fit(
    fit_runs: dict[str, list[dict[str, Any]]],
    source: str,
    *,
    v4_terms: tuple[str, ...] = (),
    settle_cap: bool = False,
    offset_from_seed: int | None = None,
) -> tuple[Any, float]:
    """Least-squares v3 constants for the fit schedules' runs; returns (params, RMS of the
    seed-mean curve residuals).

    v4 (the timing protocol's refit): ``v4_terms`` frees those of :data:`V4_TERMS` beside the v3
    constants and ``settle_cap`` caps s*(N); ``offset_from_seed`` fits one extra constant added
    to the loss after round 0 of every run with a seed >= it (a nuisance, not a surrogate
    constant: runs at other seeds train on other data shards and settle at another level, and
    the surrogate is judged on paired differences within a seed set)."""
    from edgeft.envs.fedlora.surrogate import SurrogateParams
    from scipy.optimize import least_squares

    groups = [(name, runs) for name, runs in fit_runs.items() if runs]
    if not groups:
        raise ValueError(
            "no cached runs of the fit schedules; run the protocol first "
            "(python -m edgeft.training.protocol --help)"
        )
    masks = np.stack([r["mask_array"] for _, runs in groups for r in runs])
    every = [r for _, runs in groups for r in runs]
    at = _common_rounds(every)
    real = np.array([_at(r, "loss", at) for r in every])  # (B, E)
    real_dev = np.array([_at(r, "device_loss", at) for r in every])  # (B, E, K)
    owner = np.concatenate([[g] * len(runs) for g, (_, runs) in enumerate(groups)])
    real_mean = np.stack([real[owner == g].mean(0) for g in range(len(groups))])
    B, _, K = real_dev.shape
    initial = float(real[:, 0].mean())
    w_dev = 1.0 / np.sqrt(K * B)
    for name in v4_terms:
        if name not in V4_TERMS:
            raise ValueError(f"unknown v4 term {name!r}; one of {sorted(V4_TERMS)}")
    shifted = np.array(
        [offset_from_seed is not None and r["seed"] >= offset_from_seed for r in every]
    )
    n_extra = len(v4_terms) + int(shifted.any())

    def params_of(x: np.ndarray) -> SurrogateParams:
        floor, log_rate, gap, stat, hf, hr, onset = x[:7]
        extra = dict(zip(v4_terms, (float(v) for v in x[7 : 7 + len(v4_terms)]), strict=True))
        return SurrogateParams(
            initial_loss=initial,
            loss_floor=floor,
            rate=float(np.exp(log_rate)),
            gap_ratio=gap,
            stationary=stat,
            head_fraction=hf,
            head_rate=hr,
            onset=onset,
            settle_cap=settle_cap,
            source=source,
            **extra,
        )

    def residuals(x: np.ndarray) -> np.ndarray:
        p = params_of(x)
        loss, dev = simulate_masks(masks, p)
        if shifted.any():  # the nuisance level of the other seed set
            loss = loss.copy()
            dev = dev.copy()
            loss[shifted, 1:] += x[-1]
            dev[shifted, 1:] += x[-1]
        sim = loss[:, at]
        sim_mean = np.stack([sim[owner == g].mean(0) for g in range(len(groups))])
        dev_res = (dev[:, at] - real_dev).ravel() * w_dev
        return np.concatenate([(sim_mean - real_mean).ravel(), dev_res])

    lo = [0.0, np.log(1e-4), 0.0, 0.0, 0.0, 0.0, 0.01] + [V4_TERMS[n][0] for n in v4_terms]
    hi = [initial - 1e-3, np.log(0.9), 0.99, 5.0, 0.95, 1.0, 1.0] + [
        V4_TERMS[n][1] for n in v4_terms
    ]
    if shifted.any():
        lo, hi = lo + [-0.2], hi + [0.2]
    lmin = float(real.min())
    best = None
    # v3: four starts; with drift_rate free, each at a slow and a fast forgetting
    drift_starts = (0.05, 0.3) if "drift_rate" in v4_terms else (None,)
    for hf in (0.2, 0.6):
        for onset in (1.0, 0.2):
            for drift in drift_starts:
                start = {"drift_rate": drift, "settle_power": 1.0}
                x0 = np.array(
                    [0.8 * lmin, np.log(0.03), 0.3, 0.05, hf, 0.05, onset]
                    + [start[n] for n in v4_terms]
                    + [0.0] * (n_extra - len(v4_terms))
                )
                x0 = np.clip(x0, np.add(lo, 1e-9), np.subtract(hi, 1e-9))
                res = least_squares(residuals, x0, bounds=(lo, hi), x_scale="jac")
                if best is None or res.cost < best.cost:
                    best = res
    assert best is not None
    # a constant the optimiser leaves within 1e-9 of a bound is on it (the bound is what the data
    # says; e.g. onset 1 - 1e-15 would otherwise run the warm-up's arithmetic for nothing)
    x = np.asarray(best.x, dtype=np.float64).copy()
    for i, (a, b) in enumerate(zip(lo, hi)):
        if abs(x[i] - a) <= 1e-9 * max(1.0, abs(a)):
            x[i] = a
        elif abs(x[i] - b) <= 1e-9 * max(1.0, abs(b)):
            x[i] = b
    params = params_of(x)
    if shifted.any():
        params = dataclasses.replace(params, source=f"{source} (seed-set offset {x[-1]:+.4f})")
    n_curve = real_mean.size
    rms = float(np.sqrt(np.mean(best.fun[:n_curve] ** 2)))
    # accuracy: affine in the loss over the fit runs, read at the initial loss and the floor
    acc = np.array([_at(r, "accuracy", at) for r in every]).ravel()
    slope, icpt = np.polyfit(real.ravel(), acc, 1)
    a0 = float(np.clip(icpt + slope * params.initial_loss, 0.0, 1.0))
    a1 = float(np.clip(icpt + slope * params.loss_floor, 0.0, 1.0))
    return dataclasses.replace(params, initial_accuracy=a0, final_accuracy=a1), rms


def fidelity(
    params: Any, runs: dict[str, list[dict[str, Any]]], reference: str, heldout: tuple[str, ...]
) -> dict[str, Any]:
    """The held-out table: per schedule the real mean final loss with its 95% interval, the
    surrogate's, and both differences from ``reference`` (paired over common seeds)."""
    from scipy import stats

    def finals(rs: list[dict[str, Any]]) -> tuple[dict[int, float], dict[int, float]]:
        if not rs:
            return {}, {}
        masks = np.stack([r["mask_array"] for r in rs])
        loss, _ = simulate_masks(masks, params)
        at = _common_rounds(rs)
        real = {r["seed"]: final_loss(at, _at(r, "loss", at)) for r in rs}
        sim = {r["seed"]: final_loss(at, loss[i, at]) for i, r in enumerate(rs)}
        return real, sim

    ref_real, ref_sim = finals(runs.get(reference, []))
    rows = []
    for name in heldout:
        real, sim = finals(runs.get(name, []))
        common = sorted(set(real) & set(ref_real))
        if len(common) < 2:
            continue
        d = np.array([real[s] - ref_real[s] for s in common])
        dsim = float(np.mean([sim[s] - ref_sim[s] for s in common]))
        v = np.array([real[s] for s in common])
        t = float(stats.t.ppf(0.975, len(common) - 1))
        half_d = t * d.std(ddof=1) / np.sqrt(len(d))
        half_v = t * v.std(ddof=1) / np.sqrt(len(v))
        within = abs(dsim - d.mean()) <= DIFF_TOLERANCE * abs(d.mean())
        inside = abs(dsim - d.mean()) <= half_d
        rows.append(
            {
                "schedule": name,
                "seeds": common,
                "mean_n": float(np.mean([np.mean(r["counts"]) for r in runs[name]])),
                "real_final": float(v.mean()),
                "real_ci95": [float(v.mean() - half_v), float(v.mean() + half_v)],
                "surrogate_final": float(np.mean([sim[s] for s in common])),
                "real_diff": float(d.mean()),
                "real_diff_ci95": [float(d.mean() - half_d), float(d.mean() + half_d)],
                "surrogate_diff": dsim,
                "diff_ok": bool(within or inside),
            }
        )
    spearman = float("nan")
    if len(rows) >= 2:
        spearman = float(
            stats.spearmanr(
                [r["real_final"] for r in rows], [r["surrogate_final"] for r in rows]
            ).statistic
        )
    return {
        "reference": reference,
        "rows": rows,
        "spearman": spearman,
        "spearman_goal": SPEARMAN_GOAL,
        "diff_tolerance": DIFF_TOLERANCE,
        "met": bool(spearman >= SPEARMAN_GOAL and rows and all(r["diff_ok"] for r in rows)),
    }


def print_table(setting: str, table: dict[str, Any]) -> None:
    print(
        f"{setting}: held-out schedules (final loss = mean of rounds >= 80; differences from "
        f"{table['reference']}, paired over seeds)"
    )
    print(
        f"  {'schedule':<11} {'mean N':>6} {'real':>7} {'95% CI':>17} {'surr.':>7} "
        f"{'real diff':>9} {'95% CI':>17} {'surr. diff':>10}  ok"
    )
    for r in table["rows"]:
        lo, hi = r["real_ci95"]
        dlo, dhi = r["real_diff_ci95"]
        print(
            f"  {r['schedule']:<11} {r['mean_n']:>6.1f} {r['real_final']:>7.4f} "
            f"[{lo:.4f}, {hi:.4f}] {r['surrogate_final']:>7.4f} {r['real_diff']:>+9.4f} "
            f"[{dlo:+.4f}, {dhi:+.4f}] {r['surrogate_diff']:>+10.4f}  "
            f"{'yes' if r['diff_ok'] else 'NO'}"
        )
    print(
        f"  Spearman {table['spearman']:.3f} (goal >= {SPEARMAN_GOAL}); every difference within "
        f"{DIFF_TOLERANCE:.0%} or inside the real interval: "
        f"{all(r['diff_ok'] for r in table['rows'])}; goal met: {table['met']}"
    )


def plot(results: dict[str, Any], path: Path) -> None:
    """Real (seed mean +- SE) vs surrogate (seed mean) loss curves of the held-out schedules
    and const-K, one panel per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.2 * len(results), 4.4), squeeze=False)
    for ax, (setting, res) in zip(axes[0], results.items()):
        for i, (name, c) in enumerate(res["curves"].items()):
            color = f"C{i}"
            at, mean, se = np.asarray(c["rounds_at"]), np.asarray(c["real"]), np.asarray(c["se"])
            ax.errorbar(
                at, mean, yerr=se, fmt="o", ms=3, color=color, capsize=2, label=f"{name} real"
            )
            ax.plot(
                np.arange(len(c["surrogate"])),
                c["surrogate"],
                "-",
                color=color,
                lw=1.2,
                label=f"{name} surrogate",
            )
        ax.set_title(f"{setting} ({OUTPUTS[setting]} shards)")
        ax.set_xlabel("round")
        ax.set_ylabel("test loss (mean over the K heads)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(
        "FedLoRA surrogate v3: real runs (mean +- SE over seeds) vs surrogate, held-out schedules"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def refit(
    cache: Path | None = None, out_dir: Path | None = None, settings: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Fit and measure every calibration setting from the run cache; write the calibration
    files and the figure; return {setting: result}."""
    from edgeft.envs.fedlora.surrogate import CALIBRATION_DIR
    from edgeft.training import protocol

    t0 = time.perf_counter()
    cache = Path(cache or protocol.DEFAULT_CACHE)
    out_dir = Path(out_dir or CALIBRATION_DIR)
    if not cache.is_file():
        raise FileNotFoundError(
            f"no run cache at {cache}; the calibration runs are made by "
            "`python -m edgeft.training.protocol` (see its --help)"
        )
    results: dict[str, Any] = {}
    for setting in settings or protocol.CALIBRATION_SETTINGS:
        training, rounds, _ = protocol.SETTINGS[setting]
        names = tuple(dict.fromkeys((*protocol.FIT_SCHEDULES, *protocol.HELDOUT_SCHEDULES)))
        runs = load_runs(cache, setting, names, protocol.CALIBRATION_SEEDS)
        fit_runs = {s: runs[s] for s in protocol.FIT_SCHEDULES}
        source = (
            f"edgeft calibrate --refit: {training['model']} on {training['task']} "
            f"({OUTPUTS[setting]} shards), K={protocol.NUM_DEVICES}, {rounds} rounds, "
            f"protocol setting {setting}"
        )
        params, rms = fit(fit_runs, source)
        table = fidelity(params, runs, "const-K", protocol.HELDOUT_SCHEDULES)
        curves = {}
        for name in ("const-K", *protocol.HELDOUT_SCHEDULES):
            rs = runs.get(name) or []
            if not rs:
                continue
            at = _common_rounds(rs)
            real = np.array([_at(r, "loss", at) for r in rs])
            sim, _ = simulate_masks(np.stack([r["mask_array"] for r in rs]), params)
            curves[name] = {
                "rounds_at": at.tolist(),
                "real": real.mean(0).tolist(),
                "se": (real.std(0, ddof=1) / np.sqrt(len(rs))).tolist()
                if len(rs) > 1
                else [0.0] * real.shape[1],
                "surrogate": sim.mean(0).tolist(),
            }
        seeds = {s: [r["seed"] for r in runs[s]] for s in names}
        out = out_dir / f"{OUTPUTS[setting]}.json"
        params.to_json(
            out,
            model_version=3,
            setting=setting,
            partition=OUTPUTS[setting],
            training=training,
            rounds=rounds,
            num_devices=protocol.NUM_DEVICES,
            fit_schedules=list(protocol.FIT_SCHEDULES),
            heldout_schedules=list(protocol.HELDOUT_SCHEDULES),
            seeds=seeds,
            fit_rms=rms,
            fidelity=table,
            cache=str(cache),
            curves=curves,
        )
        results[setting] = {
            "params": params,
            "fit_rms": rms,
            "fidelity": table,
            "curves": curves,
            "out": out,
        }
    plot(results, out_dir / "heldout.png")
    for setting, res in results.items():
        p = res["params"]
        print(
            f"{setting}: floor {p.loss_floor:.4f} rate {p.rate:.4g} gap_ratio {p.gap_ratio:.3f} "
            f"stationary {p.stationary:.4f} head_fraction {p.head_fraction:.3f} "
            f"head_rate {p.head_rate:.4f} onset {p.onset:.3f} (fit RMS {res['fit_rms']:.4f}) "
            f"-> {res['out']}"
        )
        print_table(setting, res["fidelity"])
    print(f"wrote {out_dir / 'heldout.png'}; {time.perf_counter() - t0:.1f} s")
    print(
        json.dumps(
            {
                s: {"spearman": r["fidelity"]["spearman"], "met": r["fidelity"]["met"]}
                for s, r in results.items()
            }
        )
    )
    return results
