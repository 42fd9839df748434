"""Participation through the env: final loss of constant schedules and of fixed vs rotating
subsets, in surrogate mode with the shipped v3 calibrations.

For each data partition (``data="iid"`` and ``"dirichlet"``), K = 20, the env's default episode
(100 rounds): N = 1, 2, 5, 10, 20 devices every round (``action_mode="count"``: the N strongest
channels, the env's own split of the band), and 5 devices every round either fixed (devices
0-4) or rotating through all 20 (``action_mode="subset"``). Mean final loss over seeds with the
spread over seeds (the surrogate is deterministic given the schedule; count mode's devices
follow the channels of the seed).

    python benchmarks/participation_env.py [--seeds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np

import edgeft  # noqa: F401  (registers the envs)

ENV_ID = "edgeft/FedLoRAScheduling-v0"
K = 20


def episode(data: str, schedule: str, seed: int) -> float:
    """Final loss of one episode of ``schedule`` (``const-N``, ``fixed-5`` or ``rotating-5``)."""
    mode = "count" if schedule.startswith("const-") else "subset"
    env = gym.make(ENV_ID, num_devices=K, data=data, action_mode=mode)
    env.reset(seed=seed)
    t, info = 0, {}
    while True:
        if mode == "count":
            action = int(schedule.split("-")[1])
        else:
            mask = np.zeros(K, dtype=np.int8)
            start = 0 if schedule == "fixed-5" else 5 * t
            mask[(start + np.arange(5)) % K] = 1
            action = mask
        _, _, term, trunc, info = env.step(action)
        t += 1
        if term or trunc:
            return float(info["loss"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5, help="episodes per schedule (default 5)")
    p.add_argument("--json", default=None, help="also write the table as JSON here")
    args = p.parse_args(argv)
    schedules = ["const-1", "const-2", "const-5", "const-10", "const-20", "fixed-5", "rotating-5"]
    out: dict[str, dict[str, dict[str, float]]] = {}
    print(f"{'data':<10} {'schedule':<11} {'final loss':>10} {'sd':>8}")
    for data in ("iid", "dirichlet"):
        out[data] = {}
        for s in schedules:
            v = np.array([episode(data, s, 1_000_000_000 + i) for i in range(args.seeds)])
            out[data][s] = {
                "mean": float(v.mean()),
                "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            }
            print(f"{data:<10} {s:<11} {v.mean():>10.4f} {out[data][s]['sd']:>8.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
