"""MEC solver speed: fp-cccp decision time, and P4 compiled once vs built afresh per iteration.

Usage::

    python benchmarks/mec_solver_speed.py [--sizes 50x10,200x20] [--ao-iters 10] [--seed 0]

Prints, per size, the wall time of one ``fp-cccp`` decision (the first includes cvxpy's
compilation of P4; the second reuses it); for N = 50, M = 10 the time of the same FP-AO
iterations with P4 compiled once (Parameters, re-solved) next to P4 built afresh every iteration;
and FP-AO to convergence (tol 1e-9) with the exact alpha step after each P4 (the default) next to
the paper's iteration (``alpha_step=False``): iterations, time and the objective reached.
"""

from __future__ import annotations

import argparse
import time
import warnings

import gymnasium as gym
import numpy as np
from edgeft.baselines.mec import solver as S
from edgeft.envs.common import config_in_force

import edgeft


def decision_times(n: int, m: int, seed: int) -> None:
    env = gym.make("edgeft/MECOffloading-v0", num_users=n, num_servers=m)
    policy = edgeft.make_policy("fp-cccp", env, seed=seed)
    for k in range(2):
        obs, _ = env.reset(seed=seed + k)
        policy.predict(obs)
        label = "first (compiles P4)" if k == 0 else "second (P4 cached)"
        print(f"fp-cccp N={n:4d} M={m:3d}  {label:20s} {policy.last_solve_time:8.2f} s  "
              f"cost {policy.last_cost:.4f}")


def _greedy_instance(n: int, m: int, seed: int) -> tuple:
    """(instance, weights, greedy association) of a reset env, with P4 compiled (not timed)."""
    env = gym.make("edgeft/MECOffloading-v0", num_users=n, num_servers=m)
    obs, _ = env.reset(seed=seed)
    inst = env.unwrapped.instance_of(obs)
    weights = config_in_force(env).weights
    server = S.greedy_association(inst)
    S.fp_ao(inst, weights, server, max_iter=1)  # compile once (not timed)
    return inst, weights, server


def compiled_vs_afresh(n: int, m: int, iters: int, seed: int) -> None:
    inst, weights, server = _greedy_instance(n, m, seed)
    t0 = time.perf_counter()
    a = S.fp_ao(inst, weights, server, max_iter=iters, tol=0.0)
    t1 = time.perf_counter()
    b = S.fp_ao(inst, weights, server, max_iter=iters, tol=0.0, compiled=False)
    t2 = time.perf_counter()
    once, afresh = (t1 - t0) / a.iterations, (t2 - t1) / b.iterations
    print(f"FP-AO N={n} M={m}, {iters} iterations: compiled once {once * 1e3:7.1f} ms/iter, "
          f"built afresh {afresh * 1e3:7.1f} ms/iter, speed-up {afresh / once:5.1f}x "
          f"(same objective: {a.cost:.10f} vs {b.cost:.10f})")


def alpha_step_effect(n: int, m: int, seed: int) -> None:
    inst, weights, server = _greedy_instance(n, m, seed)
    for step in (False, True):
        t0 = time.perf_counter()
        r = S.fp_ao(inst, weights, server, tol=1e-9, max_iter=200, alpha_step=step)
        dt = time.perf_counter() - t0
        label = "with exact alpha step" if step else "paper (alpha_step=False)"
        print(f"FP-AO N={n} M={m} to tol 1e-9, {label:25s}: {r.iterations:4d} iterations "
              f"{dt:6.2f} s  objective {r.cost:.10f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50x10,200x20", help="NxM list for fp-cccp")
    parser.add_argument("--ao-iters", type=int, default=10, help="FP-AO iterations timed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    np.set_printoptions(precision=4)
    compiled_vs_afresh(50, 10, args.ao_iters, args.seed)
    alpha_step_effect(50, 10, args.seed + 1)
    for size in args.sizes.split(","):
        n, m = (int(v) for v in size.lower().split("x"))
        decision_times(n, m, args.seed)


if __name__ == "__main__":
    main()
