"""CPU time and peak memory of the FedLoRA hindsight bound at large K and T.

What is measured, in a fresh process per run (so each peak is that run's own): the CPU time
(``time.process_time``) of ``prefix_delays`` (D_t(n) of every prefix of every round) and of
``hindsight_bound`` on an episode of the env at K devices and T rounds (bandwidth scaled with K
so that the per-device share stays that of the paper's K = 20, B = 10 MHz), and the process's
peak resident set size (``resource.getrusage``, ru_maxrss), next to the RSS after the channels
are drawn. ``--old`` also runs the first implementation (every prefix at once on T x K x K
arrays, ``tests/fedlora/reference_split.py``) at ``--old-size`` (it needs ~10 GB at
K = T = 1000), and compares its delays with the new ones there.

Target: K = 1000, T = 1000 within 4 GB and 5 minutes.

    python benchmarks/hindsight_memory.py [--devices 1000] [--rounds 1000] [--old]
        [--old-size 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def worker(k: int, t: int, old: bool, seed: int) -> dict:
    """One run in this process: channels of one episode, prefix delays, the bound."""
    import gymnasium as gym
    from edgeft.baselines.fedlora.hindsight import episode_channels, hindsight_bound, prefix_delays

    import edgeft  # noqa: F401

    env = gym.make(
        "edgeft/FedLoRAScheduling-v0", num_devices=k, episode_rounds=t, bandwidth_hz=10e6 * k / 20
    )
    cfg = env.unwrapped.config
    gain, bits = episode_channels(env, seed)
    out = {"K": k, "T": t, "rss_after_channels_mb": _peak_mb()}
    t0 = time.process_time()
    if old:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.fedlora.reference_split import reference_prefix_delays

        delay = reference_prefix_delays(gain, bits, cfg.noise_psd, cfg.bandwidth_hz)
    else:
        delay = prefix_delays(gain, bits, cfg.noise_psd, cfg.bandwidth_hz)
    out["prefix_delays_cpu_s"] = time.process_time() - t0
    t0 = time.process_time()
    result = hindsight_bound(delay / cfg.budget_s)
    out["hindsight_bound_cpu_s"] = time.process_time() - t0
    out["peak_rss_mb"] = _peak_mb()
    out["bound_per_round"] = result.bound / t
    out["delay_checksum"] = float(np.sum(delay))
    np.save(f"/tmp/hindsight_memory_{'old' if old else 'new'}_{k}_{t}.npy", delay)
    return out


def run(k: int, t: int, old: bool, seed: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--devices",
        str(k),
        "--rounds",
        str(t),
        "--seed",
        str(seed),
    ] + (["--old"] if old else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def show(label: str, r: dict) -> None:
    print(
        f"{label:22s} K={r['K']:5d} T={r['T']:5d}  prefix_delays "
        f"{r['prefix_delays_cpu_s']:8.2f} s  hindsight_bound "
        f"{r['hindsight_bound_cpu_s']:6.2f} s  peak RSS {r['peak_rss_mb']:8.0f} MB "
        f"(after the channels {r['rss_after_channels_mb']:.0f} MB)  bound/round "
        f"{r['bound_per_round']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000, help="K (default 1000)")
    parser.add_argument("--rounds", type=int, default=1000, help="T (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--old",
        action="store_true",
        help="also run the first implementation (T x K x K) at --old-size",
    )
    parser.add_argument("--old-size", type=int, default=100, help="K = T for the comparison")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.devices, args.rounds, args.old, args.seed)))
        return
    print("CPU time (time.process_time) and peak RSS (resource.getrusage) of one run per process")
    show("new (O(T K))", run(args.devices, args.rounds, False, args.seed))
    if args.old:
        n = args.old_size
        new, old = run(n, n, False, args.seed), run(n, n, True, args.seed)
        show("new", new)
        show("first implementation", old)
        d_new = np.load(f"/tmp/hindsight_memory_new_{n}_{n}.npy")
        d_old = np.load(f"/tmp/hindsight_memory_old_{n}_{n}.npy")
        rel = np.max(np.abs(d_new[:, 1:] / d_old[:, 1:] - 1.0))
        print(f"max relative difference of the delays, new vs first implementation: {rel:.1e}")


if __name__ == "__main__":
    main()
