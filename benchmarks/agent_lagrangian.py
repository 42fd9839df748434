"""PPO-Lagrangian against fixed penalties, and training curves of edgeft train runs.

python benchmarks/agent_lagrangian.py small [--steps 40000] [--out DIR]
    The small problem of tests/agents/test_lagrangian.py (FedLoRA, K = 4 devices, 20-round
    episodes): PPO on N/K - lambda min(D/D-bar, 4) with lambda fixed low (0.02), fixed high
    (1.5) and learned (ppo-lag), the same steps and seed; prints, over the last quarter of
    training, the mean episode cost D/D-bar (limit 1), devices per round and lambda (mean and
    spread).
python benchmarks/agent_lagrangian.py plot OUT.png LABEL=RUN_DIR [LABEL=RUN_DIR ...]
    One PNG of the runs' training curves (devices per round, cost vs limit, lambda).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

SMALL = [
    "--env",
    "edgeft/FedLoRAScheduling-v0",
    "--algo",
    "ppo-lag",
    "--seed",
    "0",
    "--set",
    "num_devices=4",
    "--set",
    "episode_rounds=20",
    "--n-envs",
    "8",
    "--hp",
    "n_steps=40",
    "--hp",
    "batch_size=160",
    "--hp",
    "n_epochs=4",
    "--hp",
    "learning_rate=0.001",
    "--hp",
    "gamma=0.5",
    "--hp",
    "policy_kwargs={'net_arch': [32, 32]}",
    "--eval-episodes",
    "0",
    "--no-progress",
    "--checkpoint-every",
    "0",
]
VARIANTS = {
    "fixed lambda 0.02": ("ki=0", "kp=0", "lambda_init=0.02"),
    "fixed lambda 1.5": ("ki=0", "kp=0", "lambda_init=1.5"),
    "ppo-lag (learned)": ("ki=0.05", "kp=0.3"),
}


def small(steps: int, out: Path) -> None:
    from edgeft.agents.lagrangian import read_curves

    from edgeft.cli import main

    print(f"{'variant':<20} {'cost (limit 1)':>15} {'devices':>8} {'lambda':>16} {'wall s':>7}")
    for name, lag in VARIANTS.items():
        run = out / name.split()[0].replace("-", "") / name.split()[-1].strip("()")
        t0 = time.time()
        rc = main(
            [
                "train",
                *SMALL,
                "--timesteps",
                str(steps),
                "--out",
                str(run),
                *[x for kv in lag for x in ("--lag", kv)],
            ]
        )
        if rc != 0:
            sys.exit(rc)
        c = read_curves(run)
        q = len(c["cost"]) // 4
        lam = c["lambda"][-q:]
        print(
            f"{name:<20} {c['cost'][-q:].mean():>15.3f} {c['devices'][-q:].mean():>8.3f} "
            f"{lam.mean():>9.3f} ± {lam.std():.3f} {time.time() - t0:>7.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("small")
    s.add_argument("--steps", type=int, default=40_000)
    s.add_argument("--out", default=None)
    pl = sub.add_parser("plot")
    pl.add_argument("png")
    pl.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.cmd == "small":
        if args.out:
            small(args.steps, Path(args.out))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                small(args.steps, Path(tmp))
    else:
        from edgeft.agents.lagrangian import plot_curves

        runs = dict(r.split("=", 1) for r in args.runs)
        print(plot_curves(runs, args.png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
