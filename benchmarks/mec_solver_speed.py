"""MEC solver speed: the reference policies' decisions with the exact solvers against cvxpy.

What is measured: CPU time of this process (``time.process_time``: other processes on a busy
machine count less than with wall time) of one ``policy.predict`` on a fixed observation,
with the solvers of ``baselines.mec.solver`` in their two backends (``solver.use_backend``):

* ``cvxpy`` (before): P4 compiled once with cvxpy Parameters and solved by Clarabel through
  cvxpy, the congestion QP through cvxpy (the earlier implementation, kept as the reference);
* ``exact`` (after, the default): P4 by safeguarded Newton on its optimality conditions (no
  solver call), the congestion QP by Clarabel called directly on data built once per size,
  CCCP iterations whose QP the current assignment uniquely minimises without a solve.

The first decision of each (policy, size, backend) in the process is timed apart and labelled
"first": it includes one-time setup (cvxpy's compilation of P4 and of the QP, the exact
path's tables); the repeats are interleaved pairs (cvxpy, exact, cvxpy, exact, ...), each with a
fresh policy object, reported as min / median / max, with the per-pair ratio cvxpy / exact
(min / median / max) and the relative difference of the two decisions' costs.

Then, at N = 50, M = 10: one FP-AO iteration (ms) with P4 built afresh every iteration, compiled
once, and solved exactly; and FP-AO to convergence with and without the exact alpha step.

    python benchmarks/mec_solver_speed.py [--quick] [--repeats 3] [--sizes 20x4,50x10,200x20]
                                          [--policies fp-cccp,ao,greedy] [--seed 0]

``--quick``: N = 20 only, 2 repeats, no FP-AO section (a smoke run, ~1 min).
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from edgeft.baselines.mec import solver as S

import edgeft

ENV_ID = "edgeft/MECOffloading-v0"
#: the suites' scenarios by size: mec-default (v3), mec-paper (corrected), mec-large
SCENARIOS = {
    (20, 4): {"area_m": 150.0, "energy_budget_scale": 0.7, "episode_rounds": 20},
    (50, 10): {"episode_rounds": 3},
    (200, 20): {"episode_rounds": 3},
}
TEST_SEED = 1_000_000_000  # the suites' first test seed


def _env(n: int, m: int) -> Any:
    return gym.make(ENV_ID, num_users=n, num_servers=m, **SCENARIOS.get((n, m), {}))


def _decide(env: Any, name: str, obs: np.ndarray, backend: str, seed: int) -> tuple[float, float]:
    """(CPU seconds, cost) of one decision by a fresh policy with ``backend``."""
    with S.use_backend(backend):
        policy = edgeft.make_policy(name, env, seed=seed)
        t0 = time.process_time()
        policy.predict(obs)
        dt = time.process_time() - t0
    return dt, policy.last_cost


def spread(x: list[float] | np.ndarray, fmt: str = "{:.3f}") -> str:
    """'min / median / max' of x."""
    a = np.asarray(x, dtype=np.float64)
    return " / ".join(fmt.format(v) for v in (a.min(), np.median(a), a.max()))


def decision_times(n: int, m: int, policies: list[str], repeats: int, seed: int) -> None:
    """The per-decision table of one size (see the module docstring)."""
    env = _env(n, m)
    obs, _ = env.reset(seed=TEST_SEED + seed)
    for name in policies:
        first = {b: _decide(env, name, obs, b, seed)[0] for b in S.BACKENDS}
        times: dict[str, list[float]] = {b: [] for b in S.BACKENDS}
        costs: dict[str, float] = {}
        for _ in range(repeats):
            for backend in ("cvxpy", "exact"):
                dt, cost = _decide(env, name, obs, backend, seed)
                times[backend].append(dt)
                costs[backend] = cost
        ratio = np.asarray(times["cvxpy"]) / np.asarray(times["exact"])
        rel = (costs["exact"] - costs["cvxpy"]) / abs(costs["cvxpy"])
        print(
            f"{name:8s} {n:4d} {m:3d}  first: cvxpy {first['cvxpy']:7.3f} exact "
            f"{first['exact']:7.3f}   repeats cvxpy {spread(times['cvxpy'])}   exact "
            f"{spread(times['exact'], '{:.4f}')}   cvxpy/exact {spread(ratio, '{:.1f}')}   "
            f"cost exact-cvxpy {rel:+.1e}",
            flush=True,
        )


def _fp_ao_instance(n: int, m: int, seed: int) -> tuple[Any, Any, np.ndarray]:
    env = _env(n, m)
    obs, _ = env.reset(seed=TEST_SEED + seed)
    inst = env.unwrapped.instance_of(obs)
    return inst, env.unwrapped.config.weights, S.greedy_association(inst)


def fp_ao_iteration(n: int, m: int, iters: int, repeats: int, seed: int) -> None:
    """ms per FP-AO iteration: P4 built afresh (cvxpy), compiled once (cvxpy), exact."""
    inst, weights, server = _fp_ao_instance(n, m, seed)
    runs = {
        "built afresh (cvxpy)": {"compiled": False, "backend": "cvxpy"},
        "compiled once (cvxpy)": {"backend": "cvxpy"},
        "exact": {"backend": "exact"},
    }
    S.fp_ao(inst, weights, server, max_iter=1, backend="cvxpy")  # compile once (not timed)
    per: dict[str, list[float]] = {k: [] for k in runs}
    cost: dict[str, float] = {}
    for _ in range(repeats):
        for label, kw in runs.items():
            t0 = time.process_time()
            res = S.fp_ao(inst, weights, server, max_iter=iters, tol=0.0, **kw)
            per[label].append((time.process_time() - t0) / res.iterations * 1e3)
            cost[label] = res.cost
    base = np.asarray(per["compiled once (cvxpy)"])
    for label in runs:
        ratio = base / np.asarray(per[label])
        print(
            f"FP-AO N={n} M={m}, {iters} iterations, {label:22s}: "
            f"{spread(per[label], '{:.2f}')} ms/iteration, compiled-once / this "
            f"{spread(ratio, '{:.2f}')}, objective {cost[label]:.10f}",
            flush=True,
        )


def alpha_step_effect(n: int, m: int, seed: int) -> None:
    """FP-AO to tol 1e-9 with and without the exact alpha step (exact backend)."""
    inst, weights, server = _fp_ao_instance(n, m, seed)
    for step in (False, True):
        t0 = time.process_time()
        r = S.fp_ao(inst, weights, server, tol=1e-9, max_iter=200, alpha_step=step)
        dt = time.process_time() - t0
        label = "with exact alpha step" if step else "paper (alpha_step=False)"
        print(
            f"FP-AO N={n} M={m} to tol 1e-9, {label:25s}: {r.iterations:4d} iterations "
            f"{dt:7.3f} CPU-s  objective {r.cost:.10f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="20x4,50x10,200x20", help="NxM list")
    parser.add_argument("--policies", default="fp-cccp,ao,greedy")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved pairs per figure")
    parser.add_argument("--ao-iters", type=int, default=10, help="FP-AO iterations timed")
    parser.add_argument("--seed", type=int, default=0, help="test seed index (and policy seed)")
    parser.add_argument("--quick", action="store_true", help="N = 20, 2 repeats, no FP-AO part")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    sizes = "20x4" if args.quick else args.sizes
    repeats = 2 if args.quick else args.repeats
    print(
        "CPU seconds per decision (time.process_time), first decision in the process apart; "
        f"{repeats} interleaved pairs (cvxpy, exact), min / median / max"
    )
    for size in sizes.split(","):
        n, m = (int(v) for v in size.lower().split("x"))
        decision_times(n, m, args.policies.split(","), repeats, args.seed)
    if not args.quick:
        print()
        fp_ao_iteration(50, 10, args.ao_iters, repeats, args.seed)
        alpha_step_effect(50, 10, args.seed + 1)


if __name__ == "__main__":
    main()
