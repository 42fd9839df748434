"""Straightforward scalar reference implementations (scipy ``brentq``), independent of the fast
vectorised code in :mod:`edgeft.envs.fedlora.formulas`.

Used by the tests (as the oracle) and by ``benchmarks/policy_speed.py`` (as the baseline the fast
Lyapunov decision is timed against). Slow on purpose: plain loops, one root-finder per number.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
from scipy.optimize import brentq


def ref_bandwidth_for_delay(bits: float, delay: float, gain: float, noise_psd: float) -> float:
    """Smallest B with bits / (B log2(1 + gain/(B noise))) <= delay (inf if none).

    brentq on the well-conditioned form log1p(u)/u = lambda in u = a/B (a = gain/noise,
    lambda = bits ln2 / (delay a)); brentq on the delay equation in B itself loses accuracy as
    eps/delta^2 near the feasibility limit.
    """
    a = gain / noise_psd
    lam = bits * math.log(2) / (delay * a)
    if lam >= 1.0:
        return math.inf
    delta = 1.0 - lam

    def h(u: float) -> float:
        return math.log1p(u) / u - lam

    u = brentq(
        h,
        0.5 * delta,
        10.0 + 4.0 * math.log(1.0 / lam) / lam,
        xtol=1e-300,
        rtol=4 * np.finfo(float).eps,
        maxiter=500,
    )
    return a / u


def ref_min_common_delay(bits, gain, noise_psd: float, total_bandwidth: float) -> float:
    """Min over bandwidth splits of the max delay of a device set: brentq on D of
    sum_k B_k(D) = B."""
    bits = np.broadcast_to(np.asarray(bits, dtype=float), np.shape(gain))
    if len(gain) == 0:
        return 0.0

    def excess(d: float) -> float:
        need = sum(ref_bandwidth_for_delay(m, d, g, noise_psd) for m, g in zip(bits, gain))
        return need - total_bandwidth

    # every device alone with all of B: the slowest is a lower bound; equal split an upper bound
    lo = max(
        m / (total_bandwidth * math.log2(1 + g / (total_bandwidth * noise_psd)))
        for m, g in zip(bits, gain)
    )
    share = total_bandwidth / len(gain)
    hi = max(m / (share * math.log2(1 + g / (share * noise_psd))) for m, g in zip(bits, gain))
    if excess(hi) <= 0 and excess(lo) >= 0 and lo == hi:
        return hi
    lo_eval = excess(lo)
    if lo_eval <= 0:
        return lo
    return brentq(
        excess, lo, hi * (1 + 1e-12), xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500
    )


def ref_objective(n: int, x: float, queue: float, zeta: float, variant: str) -> float:
    """Per-round Lyapunov objective, written out (see reward.lyapunov_objective)."""
    if variant == "paper":
        return n - zeta * queue * x
    return n - zeta * (queue * x + 0.5 * (x - 1.0) ** 2)


def ref_lyapunov_prefixes(
    gain,
    bits,
    queue: float,
    budget: float,
    noise_psd: float,
    total_bandwidth: float,
    zeta: float,
    variant: str = "corrected",
) -> tuple[list[int], list[float]]:
    """The channel order and the objective of every prefix n = 1..K, one brentq solve each."""
    gain = np.asarray(gain, dtype=float)
    bits = np.broadcast_to(np.asarray(bits, dtype=float), gain.shape)
    order = sorted(range(len(gain)), key=lambda i: (-(gain[i] / bits[i]), i))
    values = []
    for n in range(1, len(gain) + 1):
        idx = order[:n]
        d = ref_min_common_delay(bits[idx], gain[idx], noise_psd, total_bandwidth)
        values.append(ref_objective(n, d / budget, queue, zeta, variant))
    return order, values


def ref_lyapunov_decision(
    gain, bits, queue: float, budget: float, noise_psd: float, total_bandwidth: float, zeta: float
) -> tuple[int, list[int]]:
    """The corrected Lyapunov decision the slow way: every prefix by brentq, then the argmax.

    Returns (n, order).
    """
    order, values = ref_lyapunov_prefixes(
        gain, bits, queue, budget, noise_psd, total_bandwidth, zeta
    )
    return int(np.argmax(values)) + 1, order


def brute_force_best_subset(
    gain,
    bits,
    queue: float,
    budget: float,
    noise_psd: float,
    total_bandwidth: float,
    zeta: float,
    variant: str = "corrected",
    min_devices: int = 1,
) -> tuple[float, tuple[int, ...]]:
    """Best objective over every subset (each with its min-max-delay bandwidth): exponential
    in K."""
    gain = np.asarray(gain, dtype=float)
    bits = np.broadcast_to(np.asarray(bits, dtype=float), gain.shape)
    best, best_set = -math.inf, ()  # type: tuple[float, tuple[int, ...]]
    for n in range(min_devices, len(gain) + 1):
        for subset in combinations(range(len(gain)), n):
            idx = list(subset)
            d = ref_min_common_delay(bits[idx], gain[idx], noise_psd, total_bandwidth) if n else 0.0
            j = ref_objective(n, d / budget, queue, zeta, variant)
            if j > best:
                best, best_set = j, subset
    return best, best_set
