"""Decision time per round of each FT reference policy, next to a brentq reference.

What is measured: CPU time of this process (``time.process_time``) of one ``predict`` call on
one observation of the env (bandwidth scaled with K so that the per-device share stays that of
the paper's K = 20, B = 10 MHz; delay queues 0, 1 and 5 in turn), for K = 20, 100 and 1000.
The policies are timed in alternation, ``--repeats`` rounds of samples of at least
``--sample`` seconds each, reported as min / median / max over the rounds. The brentq
reference is the straightforward implementation of the same corrected ``lyapunov`` decision
(:func:`edgeft.baselines.fedlora.reference.ref_lyapunov_decision`: every prefix by a brentq
over D with a brentq per device inside), timed in alternation with ``lyapunov`` (same
observations), after checking that both pick the same schedule.

Targets: lyapunov >= 20x faster than the brentq reference at K = 20;
time(K = 1000) / time(K = 100) <= 15.

    python benchmarks/policy_speed.py [--repeats 5] [--sample 0.2] [--reference-max-k 100]
    python benchmarks/policy_speed.py --quick
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from edgeft.baselines.fedlora.reference import ref_lyapunov_decision
from edgeft.envs.common import config_in_force
from edgeft.envs.fedlora.observation import decode_observation

import edgeft

POLICIES = ("lyapunov", "lyapunov-paper", "all-in", "gs", "aaba", "random")


def observations(k: int, n: int = 3) -> tuple[gym.Env, list[np.ndarray]]:
    """The env at K devices and ``n`` observations of it with delay queues 0, 1 and 5."""
    env = gym.make("edgeft/FedLoRAScheduling-v0", num_devices=k, bandwidth_hz=10e6 * k / 20)
    obs, _ = env.reset(seed=k)
    out = []
    for queue in (0.0, 1.0, 5.0)[:n]:
        o = obs.copy()
        o[3 * k] = queue
        out.append(o)
        obs, *_ = env.step(np.full(k, 1.0 / k))
    return env, out


class Sample:
    """Calls of ``fn`` on a cycle of inputs, timed in CPU seconds per call; a sample is whole
    cycles (every input as often: the decision time depends on the observation)."""

    def __init__(
        self, fn: Callable[[np.ndarray], object], inputs: list[np.ndarray], seconds: float
    ) -> None:
        self.fn, self.inputs = fn, inputs
        n = len(inputs)
        calls, t = n, 0.0
        while True:  # calibrate: at least ``seconds`` of CPU time per sample
            t = self._run(calls)
            if t >= seconds / 4 or calls >= 1_000_000:
                break
            calls *= 4
        cycles = max(1, round(calls * seconds / max(t, 1e-9) / n))
        self.calls = cycles * n

    def _run(self, calls: int) -> float:
        fn, inputs = self.fn, self.inputs
        t0 = time.process_time()
        for i in range(calls):
            fn(inputs[i % len(inputs)])
        return time.process_time() - t0

    def per_call(self) -> float:
        return self._run(self.calls) / self.calls


def spread(x: np.ndarray, scale: float = 1.0, fmt: str = "{:.3f}") -> str:
    """'min / median / max' of x * scale."""
    return " / ".join(fmt.format(v * scale) for v in (x.min(), np.median(x), x.max()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--reference-max-k",
        type=int,
        default=100,
        help="largest K at which the (slow, O(K^2) brentq) reference is run",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="rounds of interleaved samples per figure (default 5)",
    )
    parser.add_argument(
        "--sample",
        type=float,
        default=0.2,
        help="CPU seconds of one sample, calibrated per policy (default 0.2)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 rounds of 0.03 s samples, K = 20 and 100, reference at K = 20",
    )
    args = parser.parse_args()
    repeats, seconds = (3, 0.03) if args.quick else (args.repeats, args.sample)
    ref_max_k = 20 if args.quick else args.reference_max_k
    sizes = (20, 100) if args.quick else (20, 100, 1000)
    print(
        f"CPU time (time.process_time) per predict call on one observation, policies timed in "
        f"alternation, {repeats} rounds of samples of >= {seconds:g} s; ms per decision, "
        f"min / median / max over the rounds"
    )
    medians: dict[tuple[str, int], float] = {}
    for k in sizes:
        env, obs_list = observations(k)
        cfg = config_in_force(env)
        samples = {}
        for name in POLICIES:
            policy = edgeft.make_policy(name, env, **({"seed": 0} if name == "random" else {}))
            samples[name] = Sample(lambda o, p=policy: p.predict(o), obs_list, seconds)
        ref = None
        if k <= ref_max_k:
            lyap = edgeft.make_policy("lyapunov", env)
            for o in obs_list:  # the same schedule as the brentq reference
                dec = decode_observation(o, cfg)
                n_ref, _ = ref_lyapunov_decision(
                    dec.gain,
                    dec.bits,
                    float(dec.queue),
                    cfg.budget_s,
                    cfg.noise_psd,
                    cfg.bandwidth_hz,
                    cfg.zeta,
                )
                n_fast = int((lyap.predict(o)[0] > 0).sum())
                if n_fast != n_ref:
                    raise SystemExit(f"mismatch at K={k}: fast picks {n_fast}, reference {n_ref}")

            def reference(o: np.ndarray, cfg=cfg) -> int:
                dec = decode_observation(o, cfg)
                return ref_lyapunov_decision(
                    dec.gain,
                    dec.bits,
                    float(dec.queue),
                    cfg.budget_s,
                    cfg.noise_psd,
                    cfg.bandwidth_hz,
                    cfg.zeta,
                )[0]

            ref = Sample(reference, obs_list, seconds)
        times: dict[str, list[float]] = {name: [] for name in POLICIES}
        ref_times = []
        for _ in range(repeats):
            for name in POLICIES:
                times[name].append(samples[name].per_call())
            if ref is not None:
                ref_times.append(ref.per_call())
        print(f"\nK = {k} (B = {cfg.bandwidth_hz / 1e6:g} MHz)")
        print(f"  {'policy':16s} {'ms per decision (min / med / max)':>36s}")
        for name in POLICIES:
            t = np.array(times[name])
            medians[(name, k)] = float(np.median(t))
            print(f"  {name:16s} {spread(t, 1e3):>36s}")
        if ref is not None:
            t_ref = np.array(ref_times)
            speed = t_ref / np.array(times["lyapunov"])
            print(
                f"  {'brentq-ref':16s} {spread(t_ref, 1e3):>36s}   lyapunov speed-up "
                f"(same round) {spread(speed, fmt='{:.0f}')}x"
            )
    if 100 in sizes and 1000 in sizes:
        print("\ntime(K=1000) / time(K=100), medians")
        for name in POLICIES:
            print(f"  {name:16s} {medians[(name, 1000)] / medians[(name, 100)]:6.1f}")


if __name__ == "__main__":
    main()
