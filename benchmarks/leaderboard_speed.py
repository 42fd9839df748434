"""Leaderboard throughput: local process pool vs serial, and Ray vs the local pool, same work.

Runs the same tiny-but-real suite (FedLoRA K = 20, 100 rounds, 6 seeds, three reference
policies = 18 episodes) serially, on the local pool and as Ray tasks, checks that the three give
identical results (decision time excluded), and prints the wall times and ratios.

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    suite = Suite("bench", 1, "fedlora", "benchmark",
                  (Scenario("k20", FEDLORA, {"episode_rounds": args.rounds}),), num_seeds=args.seeds)
    policies = ["lyapunov", "lyapunov-paper", "gs"]
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("serial", {"backend": "serial"}), ("local", {"backend": "local", "workers": args.workers})]
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
    print(f"local pool ({args.workers} workers) vs serial: {times['serial'] / times['local']:.2f}x faster")
    if "ray" in times:
        print(f"ray vs local pool: {times['ray'] / times['local']:.2f}x the wall time "
              "(includes starting a local Ray instance)")


if __name__ == "__main__":
    main()
