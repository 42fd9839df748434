"""Wireless system model of the FT paper (Section II.B, V.A), as pure vectorised numpy functions.

Symbols (FT paper): K devices, B total bandwidth (Hz), B_k device k's share (Hz), |h_k|^2 the
received-power gain with the transmit power folded in (W), sigma^2 the noise power spectral
density (W/Hz), mu the bits a device exchanges per round, D the round delay (s), D-bar the
average-delay budget (s/round). All functions broadcast over leading batch dimensions; the last
axis indexes devices.

Lemma 3 is implemented in its corrected form (see ``bandwidth_for_delay``); docs/corrections.md
explains the error in the printed formula.
"""

from __future__ import annotations

import math

import numpy as np

LN2 = math.log(2.0)
# below this delta = 1 - lambda, Lemma 3 is solved with the small-u Newton iteration
# (docs/corrections.md)
_SMALL_DELTA = 0.5
_SERIES_U = 1e-3


# --------------------------------------------------------------------------- geometry & channel
def sample_positions(rng: np.random.Generator, num: int, center: tuple[float, float],
                     radius: float, size: tuple[int, ...] = ()) -> np.ndarray:
    """Points uniform in a disc (FT V.A: devices in a 50 m disc centred at (300, 0)).

    Returns an array of shape ``size + (num, 2)`` in metres.
    """
    r = radius * np.sqrt(rng.random(size + (num,)))
    theta = 2.0 * np.pi * rng.random(size + (num,))
    return np.stack([center[0] + r * np.cos(theta), center[1] + r * np.sin(theta)], axis=-1)


def path_gain(distance_m: np.ndarray, reference_m: float = 10.0,
              exponent: float = 3.5) -> np.ndarray:
    """Large-scale fading (d/d0)^-exponent (FT V.A: d0 = 10 m, exponent 3.5). Dimensionless."""
    return (np.asarray(distance_m, dtype=np.float64) / reference_m) ** (-exponent)


def rayleigh_fading_db(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Block Rayleigh small-scale fading in dB: 10 log10 of Exp(1) draws, i.i.d. per round
    (FT II.B).

    The round's gain in dB is the mean gain in dB plus this; the envs draw it in blocks of rounds.
    """
    return gain_to_db(rng.standard_exponential(shape))


def gain_to_db(gain: np.ndarray) -> np.ndarray:
    """10 log10(gain). The envs store channels in dB and derive linear gains with ``db_to_gain``,
    so an observation in dB decodes to exactly the gain the env uses."""
    return 10.0 * np.log10(gain)


def db_to_gain(gain_db: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gain_to_db`."""
    return np.power(10.0, np.asarray(gain_db, dtype=np.float64) / 10.0)


# --------------------------------------------------------------------------- rate & delay
def rate(bandwidth_hz: np.ndarray, gain: np.ndarray, noise_psd: float) -> np.ndarray:
    """FDMA uplink rate, FT eq. (5): r_k = B_k log2(1 + |h_k|^2 / (B_k sigma^2)) in bit/s.

    ``gain`` is the received-power gain with transmit power folded in (W); a zero bandwidth
    gives rate 0.
    """
    b = np.asarray(bandwidth_hz, dtype=np.float64)
    pos = b > 0.0
    safe = np.where(pos, b, 1.0)
    return np.where(pos, safe * np.log1p(gain / (safe * noise_psd)) / LN2, 0.0)


def device_delay(bits: np.ndarray, bandwidth_hz: np.ndarray, gain: np.ndarray,
                 noise_psd: float) -> np.ndarray:
    """Per-device transmission delay mu_k / r_k in seconds (inf where the bandwidth is 0)."""
    r = rate(bandwidth_hz, gain, noise_psd)
    pos = r > 0.0
    return np.where(pos, bits / np.where(pos, r, 1.0), np.inf)


def round_delay(bits: np.ndarray, bandwidth_hz: np.ndarray, gain: np.ndarray, noise_psd: float,
                scheduled: np.ndarray) -> np.ndarray:
    """Round delay, FT eq. (7): D = max over scheduled k of mu_k / r_k (0 if nobody is
    scheduled)."""
    return scheduled_delays(bits, bandwidth_hz, gain, noise_psd, scheduled).max(axis=-1)


def scheduled_delays(bits: np.ndarray, bandwidth_hz: np.ndarray, gain: np.ndarray, noise_psd: float,
                     scheduled: np.ndarray) -> np.ndarray:
    """mu_k / r_k for scheduled devices, 0 for the others (the terms of FT eq. 7's max).

    Same values as :func:`device_delay` on the scheduled devices. ``scheduled`` must imply a
    positive bandwidth.
    """
    return delays_from_snr(np.multiply(bits, LN2), bandwidth_hz, np.divide(gain, noise_psd),
                           scheduled)


def delays_from_snr(bits_ln2: np.ndarray, bandwidth_hz: np.ndarray, snr_hz: np.ndarray,
                    scheduled: np.ndarray) -> np.ndarray:
    """:func:`scheduled_delays` from mu_k ln2 and a_k = |h_k|^2 / sigma^2 (Hz), which the envs
    compute once per round: mu ln2 / (B_k ln(1 + a_k / B_k)) for scheduled devices, else 0.

    On the envs' hot path, so written without masks: unscheduled devices get a dummy bandwidth
    of 1 Hz (finite rate) and their delay is multiplied by 0.
    """
    b = bandwidth_hz + ~scheduled  # 1 Hz where not scheduled
    r = np.log1p(snr_hz / b)
    r *= b
    return bits_ln2 / r * scheduled


def queue_update(queue: np.ndarray, delay_ratio: np.ndarray) -> np.ndarray:
    """Average-delay virtual queue, FT eq. (18), normalised by D-bar:
    q(t) = max(0, q(t-1) + x(t) - 1) with x = D(t) / D-bar. (Algorithm 1 line 19 also
    multiplies the increment by zeta; eq. (18), used here, does not — docs/corrections.md.)"""
    if isinstance(queue, float) and isinstance(delay_ratio, float):
        return max(0.0, queue + delay_ratio - 1.0)  # the single env's hot path
    return np.maximum(0.0, queue + delay_ratio - 1.0)


# --------------------------------------------------------------------------- Lemma 3
def _q_of_u(u: np.ndarray) -> np.ndarray:
    """1 - log1p(u)/u, accurate for small u (series) and large u."""
    small = u < _SERIES_U
    us = np.where(small, u, 0.0)
    series = us * (0.5 + us * (-1.0 / 3 + us * (0.25 + us * (-0.2 + us / 6.0))))
    ul = np.where(small, 1.0, u)
    return np.where(small, series, 1.0 - np.log1p(ul) / ul)


def _dq_du(u: np.ndarray) -> np.ndarray:
    """d/du (1 - log1p(u)/u) = log1p(u)/u^2 - 1/(u (1+u)), series for small u."""
    small = u < _SERIES_U
    us = np.where(small, u, 0.0)
    series = 0.5 + us * (-2.0 / 3 + us * (0.75 + us * (-0.8 + us * 5.0 / 6.0)))
    ul = np.where(small, 1.0, u)
    return np.where(small, series, np.log1p(ul) / ul**2 - 1.0 / (ul * (1.0 + ul)))


def _lemma3_u_iterative(lam: np.ndarray, delta: np.ndarray, iters: int = 60) -> np.ndarray:
    """Iterate to convergence from the analytic starts (used once, to build the start tables)."""
    small = delta < _SMALL_DELTA
    d = np.where(small, delta, 0.25)
    u = d * (2.0 + d * (8.0 / 3.0))
    for _ in range(iters):
        u = u + (d - _q_of_u(u)) / _dq_du(u)
    lm = np.where(small, 0.25, lam)
    log_lam = np.log(lm)
    l1 = -log_lam
    s = np.log(np.maximum((l1 + np.log(np.maximum(l1, 1.0)) + 1.0) / lm, 2.5))
    for _ in range(iters):
        e = np.exp(s)
        lg = np.log1p(e)
        s = s - (np.log(lg) - s - log_lam) / (e / ((1.0 + e) * lg) - 1.0)
    return np.where(small, u, np.exp(s))


# Start tables: ln u against ln delta (delta < 1/2) and against ln lambda (lambda <= 1/2). Linear
# interpolation in these smooth coordinates is within ~1e-5 of the root, so two Newton steps reach
# machine precision.
_TAB_LN_DELTA = np.linspace(np.log(1e-7), np.log(_SMALL_DELTA), 2500)
_TAB_LN_LAMBDA = np.concatenate([np.linspace(np.log(1e-300), np.log(1e-30), 400, endpoint=False),
                                 np.linspace(np.log(1e-30), np.log(1.0 - _SMALL_DELTA), 3500)])
_TAB_U_SMALL = np.log(_lemma3_u_iterative(1.0 - np.exp(_TAB_LN_DELTA), np.exp(_TAB_LN_DELTA)))
_TAB_U_LARGE = np.log(_lemma3_u_iterative(np.exp(_TAB_LN_LAMBDA), 1.0 - np.exp(_TAB_LN_LAMBDA)))


def _u_small(d_raw: np.ndarray, newton: int = 2) -> np.ndarray:
    """Root for delta = d_raw < 1/2: table start, ``newton`` steps on 1 - log1p(u)/u = delta;
    the three-term series 2 d + 8 d^2/3 + 28 d^3/9 (exact to ~d^3 relative) below d = 1e-7."""
    d = np.maximum(d_raw, 1e-7)
    u = np.exp(np.interp(np.log(d), _TAB_LN_DELTA, _TAB_U_SMALL))
    for _ in range(newton):
        l1p_u = np.log1p(u) / u
        u = u + (d - 1.0 + l1p_u) * u / (l1p_u - 1.0 / (1.0 + u))
    series = d_raw * (2.0 + d_raw * (8.0 / 3.0 + d_raw * (28.0 / 9.0)))
    return np.where(d_raw < 1e-7, series, u)


def _u_large(lm: np.ndarray, newton: int = 2) -> np.ndarray:
    """Root for lambda = lm <= 1/2: table start, ``newton`` steps on log1p(u) = lambda u."""
    u = np.exp(np.interp(np.log(lm), _TAB_LN_LAMBDA, _TAB_U_LARGE))
    for _ in range(newton):
        u = u - (np.log1p(u) - lm * u) / (1.0 / (1.0 + u) - lm)
    return u


#: relative accuracy of the table starts alone (measured max 1e-4 over the whole domain), with a
#: 10x margin; used to certify comparisons made with ``lemma3_u(..., newton=0)``
START_RTOL = 1e-3


def lemma3_u(lam: np.ndarray, delta: np.ndarray | None = None, newton: int = 2) -> np.ndarray:
    """Solve ln(1 + u) = lambda u for the root u > 0 (FT Lemma 3 in normalised form, u = a / B).

    Feasible iff 0 < lambda < 1; returns 0 where lambda >= 1 (no finite bandwidth works: B = a/u
    = inf) and inf where lambda <= 0. ``delta = 1 - lambda`` may be passed when it is known more
    precisely than ``1 - lam``.

    Numerics (docs/corrections.md): for delta < 1/2, Newton on 1 - log1p(u)/u = delta (well
    conditioned as delta
    -> 0, where u ~ 2 delta); otherwise Newton on log1p(u) = lambda u, which keeps the precision
    of a small lambda. Both start from a tabulated interpolant of ln u and take ``newton`` = 2
    steps, enough for machine precision; below delta = 1e-7 the series u = 2 delta +
    8 delta^2/3 + 28 delta^3/9 is used as it is. ``newton=0`` returns the table start, within
    ``START_RTOL`` of the root. ``scipy.special.lambertw(., -1)`` is not used: it returns the
    wrong root for delta < ~5e-5.
    """
    lam = np.asarray(lam, dtype=np.float64)
    delta = 1.0 - lam if delta is None else np.asarray(delta, dtype=np.float64)
    feasible = (delta > 0.0) & (lam > 0.0)
    small = delta < _SMALL_DELTA
    out = np.where(lam <= 0.0, np.inf, 0.0)
    use_small = feasible & small
    use_large = feasible & ~small
    if out.size > 256:  # big arrays: solve each regime on its own elements only
        out = out.ravel()
        i = np.flatnonzero(use_small.ravel())
        out[i] = _u_small(delta.ravel()[i] if delta.ndim else np.full(i.size, delta), newton)
        i = np.flatnonzero(use_large.ravel())
        out[i] = _u_large(lam.ravel()[i] if lam.ndim else np.full(i.size, lam), newton)
        return out.reshape(use_small.shape)
    if use_small.any():
        out = np.where(use_small, _u_small(np.where(use_small, delta, 0.25), newton), out)
    if use_large.any():
        out = np.where(use_large, _u_large(np.where(use_large, lam, 0.25), newton), out)
    return out


def bandwidth_for_delay(bits: np.ndarray, delay_s: np.ndarray, gain: np.ndarray,
                        noise_psd: float) -> np.ndarray:
    """Minimum bandwidth for a target delay: FT Lemma 3, corrected (see docs/corrections.md).

    Solves mu / (B log2(1 + |h|^2/(B sigma^2))) = D for B (Hz). With a = |h|^2/sigma^2 and
    lambda = (mu/D) ln2 / a, the equation is ln(1+u) = lambda u with u = a/B. Feasible iff
    lambda < 1, i.e. D > mu sigma^2 ln2 / |h|^2; infeasible delays return ``inf``.

    The printed lemma has |h|^2 and sigma^2 swapped in nu and leaves the Lambert-W branch implicit;
    the literal formula is :func:`bandwidth_for_delay_paper`.
    """
    a = np.asarray(gain, dtype=np.float64) / noise_psd
    required = np.asarray(bits, dtype=np.float64) * LN2 / np.asarray(delay_s, dtype=np.float64)
    lam = required / a
    delta = (a - required) / a
    u = lemma3_u(lam, delta)
    with np.errstate(divide="ignore"):
        return np.where(u > 0.0, a / np.where(u > 0.0, u, 1.0), np.inf)


def bandwidth_for_delay_paper(bits: np.ndarray, delay_s: np.ndarray, gain: np.ndarray,
                              noise_psd: float) -> np.ndarray:
    """FT Lemma 3 exactly as printed (nu = -mu |h|^2 / (D sigma^2), principal branch W_0).

    Kept for comparison only: it does not solve the delay equation (docs/corrections.md). Returns B
    in Hz, NaN
    where the printed expression is undefined.
    """
    from scipy.special import lambertw

    bits = np.asarray(bits, dtype=np.float64)
    nu = -bits * np.asarray(gain) / (np.asarray(delay_s) * noise_psd)
    w = lambertw(nu * np.exp2(nu) * LN2, 0)
    with np.errstate(all="ignore"):
        inv_b = -np.asarray(delay_s) * w.real / (bits * LN2) - noise_psd / np.asarray(gain)
        return np.where(np.abs(w.imag) < 1e-12, 1.0 / inv_b, np.nan)


def _lemma3_terms(c: np.ndarray, weight: np.ndarray,
                  a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bandwidth a g(c w) and its derivative mu-scaled d/dc, for lambda = c * w (w = mu / a).

    ``c = ln2 / D``. Returns (B_k, dB_k/dc); infeasible terms (lambda >= 1) give (inf, inf).
    """
    lam = c * weight
    u = lemma3_u(lam)
    ok = (u > 0.0) & np.isfinite(u)
    us = np.where(ok, u, 1.0)
    band = np.where(ok, a / us, np.where(u > 0.0, 0.0, np.inf))
    # g = 1/u, dg/dlam = 1 / (u (lam - 1/(1+u))); lam - 1/(1+u) = u/(1+u) - delta > 0
    denom = us * (lam - 1.0 / (1.0 + us))
    dband = np.where(ok, a * weight / denom, np.where(u > 0.0, 0.0, np.inf))
    return band, dband


# --------------------------------------------------------------------------- min common delay
def min_common_delay(bits: np.ndarray, gain: np.ndarray, noise_psd: float, total_bandwidth: float,
                     mask: np.ndarray, *, rtol: float = 1e-13, max_iter: int = 100,
                     bracket: tuple[np.ndarray, np.ndarray] | None = None
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
        c_lo = np.min(np.where(mask, beq * np.log1p(a / beq) / np.where(mask, bits, 1.0), np.inf),
                      axis=-1, initial=np.inf)
        # every member with all of B: the slowest bounds D* from below -> c from above
        c_hi = np.min(np.where(mask, total_bandwidth * np.log1p(a / total_bandwidth)
                               / np.where(mask, bits, 1.0), np.inf), axis=-1, initial=np.inf)
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


def prefix_delay_brackets(bits: np.ndarray, gain: np.ndarray, noise_psd: float,
                          total_bandwidth: float, grid: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Certified brackets on the minimum common delay of every prefix S_n = {1..n}, n = 1..K.

    Devices must already be in the order the prefixes follow. One geometric grid of ``grid`` values
    of c = ln2/D is shared by all prefixes, so the cost is O(grid K) instead of O(K^2) per
    iteration: for each c_j, F_n(c_j) = sum_{k<=n} B_k(c_j) is a cumulative sum, and since F_n
    increases in c, c*_n lies between the last grid point with F_n <= B and the next one.

    Returns:
        (c_lo, c_hi): arrays of length K with c_lo[n-1] <= ln2 / D*(S_n) <= c_hi[n-1].
    """
    bits = np.broadcast_to(np.asarray(bits, dtype=np.float64), np.shape(gain))
    a = np.asarray(gain, dtype=np.float64) / noise_psd
    k = a.shape[-1]
    weight = bits / a
    # upper bound: each member alone with all of B (exact for n = 1)
    c_single = total_bandwidth * np.log1p(a / total_bandwidth) / bits
    c_hi_exact = np.minimum.accumulate(c_single)
    # lower bound for every prefix: equal split of B over all K devices
    beq = total_bandwidth / k
    c_min = float(np.min(beq * np.log1p(a / beq) / bits))
    c_max = float(c_single[0])
    grid_c = np.geomspace(c_min, c_max, grid)
    # table starts only (no Newton): within START_RTOL of every term, hence of every sum, so the
    # comparisons below are certified with that margin
    lam = grid_c[:, None] * weight[None, :]
    u = lemma3_u(lam, newton=0)
    with np.errstate(divide="ignore"):
        terms = np.where(u > 0.0, a[None, :] / np.where(u > 0.0, u, 1.0), np.inf)
    cum = np.cumsum(terms, axis=1)  # (grid, K): F_n(c_j), approximately
    surely_below = cum * (1.0 + START_RTOL) <= total_bandwidth
    surely_above = cum * (1.0 - START_RTOL) > total_bandwidth
    last_below = grid - 1 - np.argmax(surely_below[::-1], axis=0)
    c_lo = np.where(surely_below.any(axis=0), grid_c[last_below], 0.5 * c_min)
    first_above = np.argmax(surely_above, axis=0)
    c_hi = np.where(surely_above.any(axis=0), grid_c[first_above], c_max)
    # c*_n decreases with n (a longer prefix needs a longer delay): tighten both bounds with it
    c_hi = np.minimum.accumulate(np.minimum(c_hi, c_hi_exact))
    c_lo = np.maximum.accumulate(c_lo[::-1])[::-1]
    c_lo = np.minimum(c_lo, c_hi)
    return c_lo, c_hi
