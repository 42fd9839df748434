"""Env steps per second next to CartPole-v1, measured side by side in one process.

What is measured: CPU time of this process (``time.process_time``, so other processes on a busy
machine count less than with wall time) of ``env.step`` through ``gym.make`` (the default
wrappers, as users step it), with actions sampled beforehand and ``reset`` when an episode
ends. Every figure is a ratio to CartPole-v1 (or to the single env) timed in alternation with
it: ``--repeats`` interleaved pairs of samples, each sample at least ``--sample`` seconds of CPU
time (the number of steps is calibrated per env), reported as min / median / max over the
repeats.

Prints:

1. the mode-by-mode table: every edgeft env id and action mode (FedLoRA at K = 20 and 200)
   against CartPole-v1;
2. the numpy vector envs (64 copies) against the single env, in env-steps/s: FedLoRA at K = 20
   in each action mode, MEC in the full mode at N = 20 users and M = 4 servers.

Targets: FedLoRA at K = 20 >= 0.3x CartPole in bandwidth mode and >= 0.1x in count, subset and
score mode; FedLoRA vector env with 64 copies >= 20x a single env in env-steps/s, MEC vector
env (full mode) >= 10x.

    python benchmarks/env_speed.py [--repeats 5] [--sample 0.3] [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

import edgeft  # noqa: F401  (registers the env ids)

FEDLORA = "edgeft/FedLoRAScheduling-v0"
MEC = "edgeft/MECOffloading-v0"


class Timed:
    """An env (or vector env) with pre-sampled actions whose steps can be timed in CPU time."""

    def __init__(self, env: Any, copies: int = 1, seed: int = 0) -> None:
        self.env = env
        self.copies = copies
        self.env.action_space.seed(seed)
        self.env.reset(seed=seed)
        self.actions: list[Any] = []
        self.steps = 1

    def _ensure(self, n: int) -> None:
        while len(self.actions) < n:
            self.actions.append(self.env.action_space.sample())

    def run(self, steps: int) -> float:
        """CPU seconds of ``steps`` steps (resets when an episode ends, as a training loop)."""
        self._ensure(steps)
        env, acts = self.env, self.actions[:steps]
        vector = self.copies > 1 or hasattr(env, "num_envs")
        t0 = time.process_time()
        if vector:
            for a in acts:
                env.step(a)
        else:
            for a in acts:
                _, _, term, trunc, _ = env.step(a)
                if term or trunc:
                    env.reset()
        return time.process_time() - t0

    def calibrate(self, seconds: float) -> None:
        """Choose the number of steps of one sample: at least ``seconds`` of CPU time."""
        steps = 8
        while True:
            t = self.run(steps)
            if t >= seconds / 4 or steps >= 10_000_000:
                break
            steps *= 4
        self.steps = max(8, int(steps * seconds / max(t, 1e-9)))

    def rate(self) -> float:
        """Env steps per CPU second over one sample (copies x vector steps for a vector env)."""
        return self.copies * self.steps / self.run(self.steps)


def side_by_side(a: Timed, b: Timed, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """Rates of ``a`` and ``b`` over ``repeats`` interleaved pairs of samples (a, b, a, b, ...)."""
    ra, rb = [], []
    for _ in range(repeats):
        ra.append(a.rate())
        rb.append(b.rate())
    return np.array(ra), np.array(rb)


def spread(x: np.ndarray, fmt: str = "{:.3f}") -> str:
    """'min / median / max' of x."""
    return " / ".join(fmt.format(v) for v in (x.min(), np.median(x), x.max()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="interleaved pairs of samples per figure (default 5)"
    )
    parser.add_argument(
        "--sample",
        type=float,
        default=0.3,
        help="CPU seconds of one sample, calibrated per env (default 0.3)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 repeats of 0.05 s samples, K = 20 only, no MEC single-env rows (a smoke run)",
    )
    args = parser.parse_args()
    repeats, sample = (3, 0.05) if args.quick else (args.repeats, args.sample)
    sizes = (20,) if args.quick else (20, 200)

    def timed(make: Callable[[], Any], copies: int = 1) -> Timed:
        t = Timed(make(), copies)
        t.calibrate(sample)
        return t

    cart = timed(lambda: gym.make("CartPole-v1"))
    print(
        f"CPU time (time.process_time) of env.step through gym.make, {repeats} interleaved "
        f"pairs of samples of >= {sample:g} s each; ratio = env steps/s over CartPole-v1 "
        f"steps/s in the same pair, min / median / max over the pairs"
    )
    print(
        f"{'env':30s} {'mode':15s} {'K/N':>5s} {'steps/s (med)':>14s} "
        f"{'CartPole/s (med)':>17s}   ratio to CartPole-v1 (min / med / max)"
    )
    from edgeft.envs.fedlora.config import FedLoRAConfig

    rows: list[tuple[str, str, int, Callable[[], Any]]] = []
    for k in sizes:
        for mode in FedLoRAConfig.ACTION_MODES:
            rows.append(
                (
                    FEDLORA,
                    mode,
                    k,
                    lambda k=k, mode=mode: gym.make(FEDLORA, num_devices=k, action_mode=mode),
                )
            )
    if not args.quick:
        try:
            from edgeft.envs.mec.config import MECConfig
        except ImportError:
            MECConfig = None
        if MECConfig is not None:
            for mode in MECConfig.ACTION_MODES:

                def make_mec(mode: str = mode) -> Any:
                    return gym.make(MEC, action_mode=mode)

                rows.append((MEC, mode, make_mec().unwrapped.config.num_users, make_mec))
    for env_id, mode, size, make in rows:
        env = timed(make)
        ra, rb = side_by_side(env, cart, repeats)
        print(
            f"{env_id:30s} {mode:15s} {size:5d} {np.median(ra):14.0f} {np.median(rb):17.0f}"
            f"   {spread(ra / rb)}"
        )

    print()
    print(
        "numpy vector env (64 copies, env-steps/s) against the single env, both at K = 20 "
        "(MEC: N = 20, M = 4), in alternation; ratio min / med / max"
    )
    print(
        f"{'env':30s} {'mode':15s} {'K':>5s} {'vector/s (med)':>14s} {'single/s (med)':>15s}"
        f"   ratio vector / single"
    )
    modes = FedLoRAConfig.ACTION_MODES if not args.quick else ("bandwidth", "count")
    for mode in modes:
        vec = timed(
            lambda mode=mode: gym.make_vec(
                FEDLORA, num_envs=64, vectorization_mode="vector_entry_point", action_mode=mode
            ),
            copies=64,
        )
        single = timed(lambda mode=mode: gym.make(FEDLORA, action_mode=mode))
        rv, rs = side_by_side(vec, single, repeats)
        print(
            f"{FEDLORA:30s} {mode:15s} {20:5d} {np.median(rv):14.0f} {np.median(rs):15.0f}"
            f"   {spread(rv / rs, '{:.1f}')}"
        )

    mec_size = {"num_users": 20, "num_servers": 4}
    vec = timed(
        lambda: gym.make_vec(
            MEC,
            num_envs=64,
            vectorization_mode="vector_entry_point",
            action_mode="full",
            **mec_size,
        ),
        copies=64,
    )
    single = timed(lambda: gym.make(MEC, action_mode="full", **mec_size))
    rv, rs = side_by_side(vec, single, repeats)
    print(
        f"{MEC:30s} {'full':15s} {20:5d} {np.median(rv):14.0f} {np.median(rs):15.0f}"
        f"   {spread(rv / rs, '{:.1f}')}"
    )


if __name__ == "__main__":
    main()
