"""The min-max-delay split as first implemented (safeguarded Newton on c = ln2/D with a full
Lemma-3 solve per device and iteration), kept verbatim as the reference the fast solver of
``edgeft.envs.fedlora.formulas.min_common_delay`` is checked against, with the T x K x K
prefix delays the hindsight bound was first computed from."""

from __future__ import annotations

import numpy as np
from edgeft.envs.fedlora import formulas as F
from edgeft.envs.fedlora.actions import channel_order

LN2 = F.LN2


def _lemma3_terms(
    c: np.ndarray, weight: np.ndarray, a: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bandwidth a g(c w) and its derivative mu-scaled d/dc, for lambda = c * w (w = mu / a).

    ``c = ln2 / D``. Returns (B_k, dB_k/dc); infeasible terms (lambda >= 1) give (inf, inf).
    """
    lam = c * weight
    u = F.lemma3_u(lam)
    ok = (u > 0.0) & np.isfinite(u)
    us = np.where(ok, u, 1.0)
    band = np.where(ok, a / us, np.where(u > 0.0, 0.0, np.inf))
    # g = 1/u, dg/dlam = 1 / (u (lam - 1/(1+u))); lam - 1/(1+u) = u/(1+u) - delta > 0
    denom = us * (lam - 1.0 / (1.0 + us))
    dband = np.where(ok, a * weight / denom, np.where(u > 0.0, 0.0, np.inf))
    return band, dband


def reference_min_common_delay(
    bits: np.ndarray,
    gain: np.ndarray,
    noise_psd: float,
    total_bandwidth: float,
    mask: np.ndarray,
    *,
    rtol: float = 1e-13,
    max_iter: int = 100,
    bracket: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimum common delay of a device set sharing B, and the bandwidths that achieve it.

    Solves sum_{k in S} B_k(D) = B with B_k from Lemma 3 (decreasing in D); the optimum of
    min_{B_k} max_k mu_k / r_k lies where every scheduled device has the same delay. Batched: the
    last axis indexes devices, ``mask`` (bool, same shape) selects each set; all leading axes are
    independent problems. Safeguarded Newton on c = ln2/D inside the bracket
    [equal-split delay, best single device with all of B].

    Returns:
        (delay, bandwidth): delay (s) of shape ``mask.shape[:-1]`` (0 for an empty set) and
        bandwidth (Hz) of shape ``mask.shape`` (0 off the set), summing to B on each set.
    """
    mask = np.asarray(mask, dtype=bool)
    gain = np.broadcast_to(np.asarray(gain, dtype=np.float64), mask.shape)
    bits = np.broadcast_to(np.asarray(bits, dtype=np.float64), mask.shape)
    a = gain / noise_psd
    weight = np.where(mask, bits / a, 0.0)
    count = mask.sum(axis=-1)
    nonempty = count > 0
    if bracket is None:
        n = np.maximum(count, 1)[..., None]
        beq = total_bandwidth / n
        # equal split: the slowest member's delay bounds D* from above -> c from below
        c_lo = np.min(
            np.where(mask, beq * np.log1p(a / beq) / np.where(mask, bits, 1.0), np.inf),
            axis=-1,
            initial=np.inf,
        )
        # every member with all of B: the slowest bounds D* from below -> c from above
        c_hi = np.min(
            np.where(
                mask,
                total_bandwidth * np.log1p(a / total_bandwidth) / np.where(mask, bits, 1.0),
                np.inf,
            ),
            axis=-1,
            initial=np.inf,
        )
    else:
        c_lo, c_hi = (np.asarray(x, dtype=np.float64).copy() for x in bracket)
    c_lo = np.where(nonempty, c_lo, 1.0)
    c_hi = np.where(nonempty, c_hi, 1.0)
    # F(c) = sum_k B_k(c) is increasing and convex in c: Newton started at the upper end of the
    # bracket decreases monotonically to the root (no overshoot); bisection only as a safeguard.
    c = c_hi.copy()
    active = nonempty.copy()
    for _ in range(max_iter):
        band, dband = _lemma3_terms(c[..., None], weight, a)
        f = np.sum(np.where(mask, band, 0.0), axis=-1) - total_bandwidth
        df = np.sum(np.where(mask, dband, 0.0), axis=-1)
        c_hi = np.where(active & (f > 0), c, c_hi)
        c_lo = np.where(active & (f <= 0), c, c_lo)
        with np.errstate(invalid="ignore", divide="ignore"):
            newton = c - f / df
        ok = np.isfinite(newton) & (newton >= c_lo) & (newton <= c_hi)
        c_new = np.where(ok, newton, 0.5 * (c_lo + c_hi))
        done = (np.abs(c_new - c) <= rtol * c) | (f == 0.0)
        c = np.where(active, c_new, c)
        active = active & ~done
        if not active.any():
            break
    band, _ = _lemma3_terms(c[..., None], weight, a)
    band = np.where(mask, band, 0.0)
    total = band.sum(axis=-1, keepdims=True)
    band = band * np.where(total > 0, total_bandwidth / np.where(total > 0, total, 1.0), 0.0)
    delay = np.where(nonempty, LN2 / c, 0.0)
    return delay, band


def reference_prefix_delays(
    gain: np.ndarray, bits: np.ndarray, noise_psd: float, bandwidth_hz: float
) -> np.ndarray:
    """``baselines.fedlora.hindsight.prefix_delays`` as first implemented: every prefix of every
    round at once on T x K x K masks."""
    gain = np.atleast_2d(np.asarray(gain, dtype=np.float64))
    bits = np.broadcast_to(np.asarray(bits, dtype=np.float64), gain.shape)
    t, k = gain.shape
    order = channel_order(gain, bits)
    gs = np.take_along_axis(gain, order, axis=-1)
    bs = np.take_along_axis(bits, order, axis=-1)
    prefix = np.arange(k)[None, :] < np.arange(1, k + 1)[:, None]
    mask = np.broadcast_to(prefix, (t, k, k))
    delay, _ = reference_min_common_delay(
        bs[:, None, :], gs[:, None, :], noise_psd, bandwidth_hz, mask
    )
    return np.concatenate([np.zeros((t, 1)), delay], axis=1)
