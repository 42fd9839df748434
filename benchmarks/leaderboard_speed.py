"""Leaderboard backends side by side: CPU time and wall time of the same suite run serially, on
the local process pool and as Ray tasks (workers at this process's niceness, and at Ray's
default, 15 nice levels lower priority), in interleaved repeats.

The work: one FedLoRA scenario (K = 20 devices, ``--rounds`` rounds, ``--seeds`` seeds) for three
reference policies, not scored (no bound rows). Every backend's rows are checked identical to
the serial run's (decision times aside).

What is measured, per run:

- CPU s: the CPU time (user + system) of this process and of every process working for it:
  the pool's workers (``RUSAGE_CHILDREN``, they are joined at the end), the Ray instance's
  processes (its workers, raylet, GCS: read from ``/proc`` before it stops). This is what a
  backend costs, and barely depends on what else the machine runs.
- wall s: elapsed time of the run; on a shared or loaded machine it depends on the load, and
  on the workers' niceness (which is why Ray runs twice: Ray's default nice +15 gets a small
  share of a busy machine). ``--busy N`` makes the load: N processes spinning at this
  process's niceness while each run lasts (run the script under ``nice`` to keep them from
  other users' work).
- Ray's start (a private local instance, the package shipped to it) is reported apart.

Min / median / max over ``--repeats`` interleaved repeats (each repeat runs every backend once,
in a rotated order).

    python benchmarks/leaderboard_speed.py [--quick] [--workers 2] [--repeats 3] [--no-ray]
        [--busy N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edgeft import leaderboard as lb
from edgeft.suites import FEDLORA, Scenario, Suite

POLICIES = ["lyapunov", "lyapunov-paper", "gs"]


def _rows(out: Path) -> list[dict]:
    rows = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("timing")
    return sorted(rows, key=lambda r: (r["scenario"], r["policy"], r["seed"]))


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds (user + system) of every live process below ``root``, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    out = {}
    for pid in cpu:
        p = pid
        while p in parent and p != root:
            p = parent[p]
        if p == root and pid != root:
            out[pid] = cpu[pid]
    return out


def _spin() -> None:
    while True:
        pass


class _Load:
    """``n`` processes spinning while the block runs (a machine busy with other work); their
    CPU time is not counted (they are ended, not joined, before the next measurement)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list = []

    def __enter__(self) -> _Load:
        import multiprocessing as mp

        self.procs = [
            mp.get_context("fork").Process(target=_spin, daemon=True) for _ in range(self.n)
        ]
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.join()


BUSY = 0  # --busy


def _measure(fn: Callable[[], None]) -> tuple[float, float]:
    """(CPU s of this process and its joined children, wall s) of ``fn()``, under ``--busy``
    spinning processes (whose CPU time is taken out again)."""
    with _Load(BUSY):
        c0, k0, w0 = time.process_time(), _children_cpu(), time.perf_counter()
        fn()
        c1, k1, w1 = time.process_time(), _children_cpu(), time.perf_counter()
    return (c1 - c0) + (k1 - k0), w1 - w0


def run_plain(suite: Suite, out: Path, **kw) -> dict[str, float]:
    cpu, wall = _measure(
        lambda: lb.run_leaderboard(
            suite, POLICIES, out, progress=False, plots=False, score=False, **kw
        )
    )
    return {"cpu": cpu, "wall": wall}


def run_ray(suite: Suite, out: Path, workers: int, nice: int | None) -> dict[str, float]:
    """A private local Ray instance as ``--backend ray`` starts it, then the run on it; the
    instance's processes' CPU is read before it stops."""
    import ray

    from edgeft.leaderboard import backends

    c0, w0 = time.process_time(), time.perf_counter()
    backends._ray_init(ray, workers, None, nice, True)
    start = {"cpu": time.process_time() - c0, "wall": time.perf_counter() - w0}
    try:
        before = _tree_cpu(os.getpid())
        start["cpu"] += sum(before.values())
        cpu, wall = _measure(
            lambda: lb.run_leaderboard(
                suite,
                POLICIES,
                out,
                backend="ray",
                ray_nice=nice,
                progress=False,
                plots=False,
                score=False,
            )
        )
        after = _tree_cpu(os.getpid())
        cpu += sum(v - before.get(pid, 0.0) for pid, v in after.items())
    finally:
        ray.shutdown()
    return {"cpu": cpu, "wall": wall, "start_cpu": start["cpu"], "start_wall": start["wall"]}


def _stats(xs: list[float]) -> str:
    return f"{min(xs):7.2f} {statistics.median(xs):7.2f} {max(xs):7.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-ray", action="store_true", help="serial and process pool only")
    ap.add_argument(
        "--busy",
        type=int,
        default=0,
        help="processes spinning at this niceness during each run (a busy machine)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="2 repeats of 2 seeds x 20 rounds, Ray once (at this niceness)",
    )
    args = ap.parse_args()
    global BUSY
    BUSY = args.busy
    if args.quick:
        args.seeds, args.rounds, args.repeats = 2, 20, 2
    suite = Suite(
        "bench",
        1,
        "fedlora",
        "benchmark",
        (Scenario("k20", FEDLORA, {"episode_rounds": args.rounds}),),
        num_seeds=args.seeds,
    )
    nice_here = os.nice(0)
    runs: dict[str, Callable[[Path], dict[str, float]]] = {
        "serial": lambda out: run_plain(suite, out, backend="serial"),
        "pool": lambda out: run_plain(suite, out, backend="local", workers=args.workers),
    }
    if not args.no_ray:
        runs[f"ray-nice{nice_here}"] = lambda out: run_ray(suite, out, args.workers, None)
        ray_default = min(19, nice_here + 15)  # Ray's own: 15 above its raylet's
        if not args.quick:
            runs[f"ray-nice{ray_default}"] = lambda out: run_ray(
                suite, out, args.workers, ray_default
            )
    results: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    names = list(runs)
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                out = Path(tmp) / f"{name}-{rep}"
                results[name].append(runs[name](out))
        ref = _rows(Path(tmp) / "serial-0")
        for name in names:
            for rep in range(args.repeats):
                assert _rows(Path(tmp) / f"{name}-{rep}") == ref, f"{name} results differ"
    n = len(POLICIES) * args.seeds
    print(
        f"{n} episodes ({POLICIES} x {args.seeds} seeds) of FedLoRA K=20, {args.rounds} rounds, "
        f"not scored; {args.workers} workers; this process at nice {nice_here}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {args.busy} "
        "spinning processes during each run; results identical across backends (decision "
        "times aside)"
    )
    print(f"{args.repeats} interleaved repeats; min / median / max")
    print(f"{'backend':14s} {'CPU s (driver + workers)':>24s}   {'wall s (load-dependent)':>24s}")
    for name in names:
        print(
            f"{name:14s} {_stats([r['cpu'] for r in results[name]]):>24s}   "
            f"{_stats([r['wall'] for r in results[name]]):>24s}"
        )
    ray_runs = [name for name in names if name.startswith("ray")]
    for name in ray_runs:
        print(
            f"{name} start of the local instance (not in the rows above): CPU s "
            f"{_stats([r['start_cpu'] for r in results[name]])}, wall s "
            f"{_stats([r['start_wall'] for r in results[name]])}"
        )

    def ratio(name: str, key: str, base: str) -> str:
        per = [r[key] / b[key] for r, b in zip(results[name], results[base])]
        return f"{name} {statistics.median(per):.2f}x"

    print(
        "CPU time / serial's, median over repeats: "
        + ", ".join(ratio(name, "cpu", "serial") for name in names[1:])
    )
    print(
        "wall time / the pool's, median over repeats (depends on this machine's load): "
        + ", ".join(ratio(name, "wall", "pool") for name in names if name != "pool")
    )


if __name__ == "__main__":
    main()
