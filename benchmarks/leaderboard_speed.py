"""Leaderboard throughput: local process pool vs serial, and Ray vs the local pool, same work.

Runs the same tiny-but-real suite (FedLoRA K = 20, 100 rounds, 6 seeds, three reference
policies = 18 episodes) serially, on the local pool and as Ray tasks, checks that the three give
identical results (decision time excluded), and prints the wall times and ratios. It also
prints the machine's own ceiling: the same fixed CPU-bound work in one process vs split over
``--workers`` already-started processes (on a VM whose vCPUs share physical cores this is well
below ``--workers``).

    python benchmarks/leaderboard_speed.py [--workers 2] [--seeds 6] [--no-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from edgeft import leaderboard as lb
from edgeft.suites import FEDLORA, Scenario, Suite


def _rows(out: Path) -> list[dict]:
    rows = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("timing")
    return sorted(rows, key=lambda r: (r["scenario"], r["policy"], r["seed"]))


def _burn(units: int) -> float:
    """Fixed CPU-bound work (numpy on small arrays plus Python overhead, like an episode)."""
    import numpy as np

    x = np.linspace(0.0, 1.0, 64)
    acc = 0.0
    for i in range(units):
        acc += float(np.sum(np.sqrt(x + i)))
    return acc


def machine_ceiling(workers: int, units: int = 400_000) -> tuple[float, float, float]:
    """What ``workers`` processes can gain on this machine at all: the same fixed work run in one
    process vs split over ``workers`` already-started processes. Returns (serial s, parallel s,
    ratio)."""
    import multiprocessing as mp

    t0 = time.perf_counter()
    _burn(units)
    serial = time.perf_counter() - t0
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(_burn, [1000] * workers)  # start the workers first
        t0 = time.perf_counter()
        pool.map(_burn, [units // workers] * workers)
        parallel = time.perf_counter() - t0
    return serial, parallel, serial / parallel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    suite = Suite("bench", 1, "fedlora", "benchmark",
                  (Scenario("k20", FEDLORA, {"episode_rounds": args.rounds}),),
                  num_seeds=args.seeds)
    policies = ["lyapunov", "lyapunov-paper", "gs"]
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("serial", {"backend": "serial"}),
                ("local", {"backend": "local", "workers": args.workers})]
        if not args.no_ray:
            runs.append(("ray", {"backend": "ray", "workers": args.workers}))
        for name, kw in runs:
            t0 = time.perf_counter()
            lb.run_leaderboard(suite, policies, Path(tmp) / name, progress=False, plots=False, **kw)
            times[name] = time.perf_counter() - t0
        ref = _rows(Path(tmp) / "serial")
        for name, _ in runs[1:]:
            assert _rows(Path(tmp) / name) == ref, f"{name} results differ from serial"
    n = len(policies) * args.seeds
    print(f"{n} episodes x {args.rounds} rounds, FedLoRA K=20, policies {policies}; "
          f"results identical across backends (decision time excluded)")
    for name, t in times.items():
        print(f"  {name:7s} {t:7.2f} s  ({n / t:.2f} episodes/s)")
    print(f"local pool ({args.workers} workers) vs serial: "
          f"{times['serial'] / times['local']:.2f}x faster")
    ser, par, ceiling = machine_ceiling(args.workers)
    print(f"machine ceiling: fixed CPU-bound work in {args.workers} started processes vs one: "
          f"{ceiling:.2f}x ({ser:.2f} s vs {par:.2f} s) - no process pool can beat this here")
    if "ray" in times:
        print(f"ray vs local pool: {times['ray'] / times['local']:.2f}x the wall time "
              "(includes starting a local Ray instance)")


if __name__ == "__main__":
    main()
