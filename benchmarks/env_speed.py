"""Env steps per second next to CartPole-v1, measured side by side in one process.

Prints, for every edgeft env id and action mode (FedLoRA at K = 20 and 200), steps/s through
``gym.make`` and the ratio to CartPole-v1 timed in alternation with it, and the numpy vector env
(64 copies) against the single env. Targets: FedLoRA bandwidth mode at K = 20 >= 0.3x
CartPole; vector env with 64 copies >= 20x a single env in env-steps/s.

    python benchmarks/env_speed.py [--steps 3000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import edgeft  # noqa: F401


def _time_env(env, actions) -> float:
    env.reset(seed=0)
    t0 = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    return len(actions) / (time.perf_counter() - t0)


def _actions(space, n, seed=0):
    space.seed(seed)
    return [space.sample() for _ in range(n)]


def side_by_side(make_a, make_b, steps, repeats) -> tuple[float, float, float]:
    """Median steps/s of a and b, timed alternately, and the median of the per-repeat ratios."""
    env_a, env_b = make_a(), make_b()
    acts_a, acts_b = _actions(env_a.action_space, steps), _actions(env_b.action_space, steps)
    ra, rb = [], []
    for _ in range(repeats):
        ra.append(_time_env(env_a, acts_a))
        rb.append(_time_env(env_b, acts_b))
    ratios = np.array(ra) / np.array(rb)
    return float(np.median(ra)), float(np.median(rb)), float(np.median(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=5,
                        help="alternating repeats (median reported)")
    args = parser.parse_args()
    cart = lambda: gym.make("CartPole-v1")  # noqa: E731
    print(f"{'env':34s} {'mode':10s} {'K/N':>5s} {'steps/s':>10s} {'CartPole/s':>11s} "
          f"{'ratio':>7s}")
    from edgeft.envs.fedlora.config import FedLoRAConfig

    for k in (20, 200):
        for mode in FedLoRAConfig.ACTION_MODES:
            steps = args.steps if mode == "bandwidth" else max(args.steps // 10, 100)
            mk = lambda k=k, mode=mode: gym.make("edgeft/FedLoRAScheduling-v0", num_devices=k,  # noqa: E731
                                                 action_mode=mode)
            a, b, r = side_by_side(mk, cart, steps, args.repeats)
            print(f"{'edgeft/FedLoRAScheduling-v0':34s} {mode:10s} {k:5d} {a:10.0f} {b:11.0f} "
                  f"{r:7.3f}")
    try:
        from edgeft.envs.mec.config import MECConfig
    except ImportError:
        MECConfig = None
    if MECConfig is not None:
        for mode in MECConfig.ACTION_MODES:
            mk = lambda mode=mode: gym.make("edgeft/MECOffloading-v0", action_mode=mode)  # noqa: E731
            steps = max(args.steps // 10, 100)
            a, b, r = side_by_side(mk, cart, steps, args.repeats)
            n = mk().unwrapped.config.num_users
            print(f"{'edgeft/MECOffloading-v0':34s} {mode:10s} {n:5d} {a:10.0f} {b:11.0f} {r:7.3f}")

    print()
    print(f"{'vector env (64 copies) vs single':34s} {'mode':10s} {'K':>5s} {'env-steps/s':>12s} "
          f"{'single/s':>10s} {'ratio':>7s}")
    for mode in ("bandwidth", "count"):
        vec = gym.make_vec("edgeft/FedLoRAScheduling-v0", num_envs=64,
                           vectorization_mode="vector_entry_point", action_mode=mode)
        single = gym.make("edgeft/FedLoRAScheduling-v0", action_mode=mode)
        n_vec = max(args.steps // 64, 20) if mode == "bandwidth" else 20
        acts_v = _actions(vec.action_space, n_vec)
        acts_s = _actions(single.action_space, n_vec * 4 if mode == "bandwidth" else 100)
        rv, rs = [], []
        for _ in range(args.repeats):
            vec.reset(seed=0)
            t0 = time.perf_counter()
            for a in acts_v:
                vec.step(a)
            rv.append(64 * len(acts_v) / (time.perf_counter() - t0))
            rs.append(_time_env(single, acts_s))
        ratio = float(np.median(np.array(rv) / np.array(rs)))
        print(f"{'edgeft/FedLoRAScheduling-v0':34s} {mode:10s} {20:5d} {np.median(rv):12.0f} "
              f"{np.median(rs):10.0f} {ratio:7.1f}")


if __name__ == "__main__":
    main()
