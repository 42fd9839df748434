"""Decision time per round of each FT reference policy, next to a brentq reference.

For K = 20, 100, 1000 devices (bandwidth scaled with K so the per-device share stays that of the
paper's K = 20, B = 10 MHz), times every reference policy's ``predict`` on observations from the
env with delay queues of 0, 1 and 5 (median over them), and the straightforward brentq-based
implementation of the same corrected ``lyapunov`` decision
(:func:`edgeft.baselines.fedlora.reference.ref_lyapunov_decision`: every prefix solved by a
brentq over D with a brentq per device inside), checking that both pick the same schedule.

Targets: lyapunov >= 20x faster than the brentq reference at K = 20;
time(K = 1000) / time(K = 100) <= 15.

    python benchmarks/policy_speed.py [--reference-max-k 100]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
from edgeft.baselines.fedlora.reference import ref_lyapunov_decision
from edgeft.envs.common import config_in_force
from edgeft.envs.fedlora.observation import decode_observation

import edgeft

POLICIES = ("lyapunov", "lyapunov-paper", "all-in", "gs", "aaba", "random")


def observations(k: int, n: int = 3) -> tuple[gym.Env, list[np.ndarray]]:
    env = gym.make("edgeft/FedLoRAScheduling-v0", num_devices=k, bandwidth_hz=10e6 * k / 20)
    obs, _ = env.reset(seed=k)
    out = []
    for queue in (0.0, 1.0, 5.0)[:n]:
        o = obs.copy()
        o[3 * k] = queue
        out.append(o)
        obs, *_ = env.step(np.full(k, 1.0 / k))
    return env, out


def time_call(fn, repeats: int) -> float:
    best = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t0)
    return float(np.median(best))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-max-k", type=int, default=100,
                        help="largest K at which the (slow, O(K^2) brentq) reference is run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results: dict[tuple[str, int], float] = {}
    print(f"{'K':>5s} " + " ".join(f"{p:>15s}" for p in POLICIES)
          + f" {'brentq-ref':>12s} {'speed-up':>9s}")
    for k in (20, 100, 1000):
        env, obs_list = observations(k)
        cfg = config_in_force(env)
        row = []
        for name in POLICIES:
            policy = edgeft.make_policy(name, env, **({"seed": 0} if name == "random" else {}))
            policy.predict(obs_list[0])  # warm-up
            # bind policy too: each lambda is timed right away, but B023 cannot tell
            t = float(np.median([time_call(lambda o=o, p=policy: p.predict(o), args.repeats)
                                 for o in obs_list]))
            results[(name, k)] = t
            row.append(f"{t * 1e3:13.2f}ms")
        ref_txt, speed_txt = f"{'not run':>12s}", f"{'-':>9s}"
        if k <= args.reference_max_k:
            lyap = edgeft.make_policy("lyapunov", env)
            times = []
            for o in obs_list:
                dec = decode_observation(o, cfg)
                t0 = time.perf_counter()
                n_ref, _ = ref_lyapunov_decision(dec.gain, dec.bits, float(dec.queue), cfg.budget_s,
                                                 cfg.noise_psd, cfg.bandwidth_hz, cfg.zeta)
                times.append(time.perf_counter() - t0)
                n_fast = int((lyap.predict(o)[0] > 0).sum())
                if n_fast != n_ref:
                    raise SystemExit(f"mismatch at K={k}: fast picks {n_fast}, reference {n_ref}")
                if k > 20:
                    break  # one observation is enough at large K (the reference is O(K^2) brentq)
            t_ref = float(np.median(times))
            ref_txt = f"{t_ref * 1e3:10.1f}ms"
            speed_txt = f"{t_ref / results[('lyapunov', k)]:8.0f}x"
        print(f"{k:5d} " + " ".join(row) + f" {ref_txt} {speed_txt}")
    for name in POLICIES:
        ratio = results[(name, 1000)] / results[(name, 100)]
        print(f"time(K=1000)/time(K=100) {name:15s} {ratio:6.1f}")


if __name__ == "__main__":
    main()
