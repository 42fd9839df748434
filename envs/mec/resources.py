"""The resource rules of the MEC env: exact and heuristic (power, bandwidth, frequencies).

With alpha and the association fixed, the round's weighted cost (``reward.weighted_cost``)
separates per server into three problems. :func:`fast_resource_rule` solves them exactly, the
minimiser of the round's weighted cost for that (alpha, server) (per-server KKT multipliers by
safeguarded Newton, O(N) numpy; it matches the reference FP-AO resource solve and SLSQP
multi-start, see tests/mec/test_resource_rule.py). The ``"discrete"`` action mode applies it, the
reference policies and behaviour cloning use it as a fast inner solve.
:func:`heuristic_resource_rule` keeps the earlier closed-form approximation (p = p^max,
square-root shares; ~1-2% above the optimum).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from edgeft.envs.mec.config import MIN_FRACTION, OVERSHOOT_PRICE, PRICE_V
from edgeft.envs.mec.types import MECDecision, MECInstance

LN2 = math.log(2.0)

__all__ = [
    "MIN_FRACTION",
    "UploadCurves",
    "device_energy_weight",
    "fast_resource_rule",
    "heuristic_resource_rule",
    "optimal_edge_frequency",
    "optimal_power_bandwidth",
    "queue_energy_price",
    "server_sums",
]


def server_sums(values: np.ndarray, server: np.ndarray, m: int) -> np.ndarray:
    """Per server m, the sum of ``values`` over its users (``server`` index per user)."""
    return np.bincount(server, weights=values, minlength=m)


def device_energy_weight(we: float, price: np.ndarray) -> np.ndarray:
    """omega_e + lambda_n: each user's weight of its device energy under a price (N,).

    Raises:
        ValueError: a negative or non-finite price.
    """
    price = np.asarray(price, dtype=np.float64)
    if not np.all(np.isfinite(price)) or np.any(price < 0):
        raise ValueError("the device-energy price must be finite and >= 0")
    return we + price


def queue_energy_price(
    energy_queue: np.ndarray,
    energy_budget: np.ndarray,
    v: float = PRICE_V,
    price_cap: float = OVERSHOOT_PRICE,
) -> np.ndarray:
    """The drift-plus-penalty price of device energy, lambda_n = min(q_n / V, P / N) / e_bar_n
    per joule (q_n = Q_n / e_bar_n, the queue in budgets; P = ``price_cap`` shared by the N
    users): minimising the round's cost with device energy weighted omega_e + lambda_n is
    minimising V C_t + sum_n q_n e_n / e_bar_n, the drift bound's decision-dependent part
    (``baselines.mec.policies.DriftPlusPenalty`` explains V and the cap). The
    ``"discrete-priced"`` mode and ``greedy-dpp`` use it.

    Raises:
        ValueError: ``v`` not > 0.
    """
    if not v > 0:
        raise ValueError(f"the drift-plus-penalty weight v must be > 0, got {v}")
    cap = float(price_cap) / energy_queue.shape[-1]
    q = energy_queue / energy_budget
    return np.minimum(q / v, cap) / energy_budget


def fast_resource_rule(
    inst: MECInstance,
    alpha: np.ndarray,
    server: np.ndarray,
    weights: tuple[float, float, float],
    upload_delay: bool = True,
    price: np.ndarray | None = None,
) -> MECDecision:
    """The cost-minimising power, bandwidth and frequencies for given (alpha, server).

    Used by the ``"discrete"`` mode. With alpha and the association fixed, the round's weighted
    cost (``reward.weighted_cost``) separates into three independent problems, each solved to
    machine precision in O(N) vectorised numpy (a fixed small number of Newton steps, no solver):

    * device GPU: f_n = min(f_n^max, (omega_t / (2 omega_e kappa_1))^(1/3)), the exact minimiser
      of alpha (omega_t T_n + omega_e E_n) (MEC eq. 25 set to 0), floored at ``MIN_FRACTION``
      f_n^max;
    * edge GPU (:func:`optimal_edge_frequency`): per server, min sum_n c_n (omega_t / f +
      omega_e kappa_2 f^2), c_n = (Upsilon - alpha_n) psi_n / (C_m D_m), subject to
      sum_n f_nm <= f_m^max: each user's energy-optimal frequency if they fit, otherwise the
      KKT point c_n (omega_t / f^2 - 2 omega_e kappa_2 f) = mu_m with one multiplier per server;
    * power and bandwidth (:func:`optimal_power_bandwidth`): per server, min sum_n
      s_n (omega_e p_n + omega_t) / r(p_n, b_n) subject to p_lo <= p_n <= p_n^max and
      sum_n b_n <= b_m^max (the band is always used in full): KKT with one multiplier per
      server, the optimal power for a bandwidth in closed form.

    The first two are convex. In the third, the upload cost V_n(b) at its best power is convex
    in b: -V_n'(b) (envelope theorem, continuous) is a decreasing function of b on each piece
    where the power is interior or at a bound (see :func:`optimal_power_bandwidth`). So each
    KKT point is the global minimum: the rule is at or below the FP-AO resource solve
    (``baselines.mec.solver``) and SLSQP multi-start (tests/mec/test_resource_rule.py).
    ``upload_delay=False`` (the paper's literal model) drops omega_t from the upload term, which
    makes p_n = p_lo optimal. With omega_t = 0 the frequencies sit at their floors (the cost
    has no minimum there).
    :func:`heuristic_resource_rule` is the earlier closed-form approximation.

    ``price`` (N,), optional: an extra weight lambda_n >= 0 per joule of each user's device
    energy (``reward.per_user_cost``); the rule then minimises that priced cost, exactly as
    above with omega_e replaced by omega_e + lambda_n in the device GPU and the upload terms
    (the edge energy keeps omega_e). Used by the drift-plus-penalty policies and the hindsight
    bound.
    """
    we, wt, _ = weights
    server = np.asarray(server, dtype=np.int64)
    alpha = np.asarray(alpha, dtype=np.float64)
    if price is None:
        if we > 0:
            fu = np.minimum(inst.f_user_max, (wt / (2 * we * inst.kappa_user)) ** (1.0 / 3.0))
        else:
            fu = inst.f_user_max.copy()
    else:
        we_dev = device_energy_weight(we, price)
        with np.errstate(divide="ignore"):
            fu = np.where(
                we_dev > 0,
                np.minimum(inst.f_user_max, (wt / (2 * we_dev * inst.kappa_user)) ** (1.0 / 3.0)),
                inst.f_user_max,
            )
    fu = np.maximum(fu, MIN_FRACTION * inst.f_user_max)
    fe = optimal_edge_frequency(inst, alpha, server, weights)
    p, b = optimal_power_bandwidth(inst, server, weights, upload_delay, price)
    return MECDecision(alpha=alpha, server=server, power=p, bandwidth=b, freq_user=fu, freq_edge=fe)


# ------------------------------------------------------------------ exact rule: pieces
# The two multiplier searches below invert universal increasing curves (no per-user
# parameters) of the SNR x or of a frequency ratio: a log-log table, linear interpolation
# (error ~3e-6 in log x at this spacing) and one Newton step (error ~1e-11).
_SERIES_BELOW = 1e-5
_NEWTON_TOL = 1e-8
_MAX_ITER = 60
_GRID = np.linspace(-32.0, 32.0, 12801)  # log of the curves' argument
_TABLES: dict[str, np.ndarray] = {}


def _kappa_rho(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kappa(x) = (1 + x) ln(1 + x) - x, rho(x) = ln(1 + x) - x / (1 + x) and ln(1 + x).

    Both are ~x^2/2 for small x, computed directly with relative error ~eps / x; below
    ``_SERIES_BELOW`` (error ~2e-11) their series to x^4 (truncation error ~x^3) take over.
    """
    log1 = np.log1p(x)
    kappa = (1.0 + x) * log1 - x
    rho = log1 - x / (1.0 + x)
    small = x < _SERIES_BELOW
    if small.any():
        xs = x[small]
        kappa[small] = xs * xs * (0.5 + xs * (-1.0 / 6.0 + xs / 12.0))
        rho[small] = xs * xs * (0.5 + xs * (-2.0 / 3.0 + xs * 0.75))
    return kappa, rho, log1


def _snr_curves(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """The SNR curves in log-log form: (log h, its slope, log Phi, slope, log kappa, slope).

    h(x) = rho x^2 / ln(1 + x)^2 and Phi(x) = (1 + x) kappa rho / ln(1 + x) (see
    :func:`optimal_power_bandwidth`); slopes are d log / d log x.
    """
    kappa, rho, log1 = _kappa_rho(x)
    x1 = x / (1.0 + x)
    lk, lr, ll = np.log(kappa), np.log(rho), np.log(log1)
    sk = x * log1 / kappa
    sr = x1 * x1 / rho
    sl = x1 / log1
    return (
        lr + 2.0 * np.log(x) - 2.0 * ll,
        sr + 2.0 - 2.0 * sl,
        log1 + lk + lr - ll,
        x1 + sk + sr - sl,
        lk,
        sk,
    )


def _kappa_curve(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log kappa and its slope d log kappa / d log x: :func:`_snr_curves`' last two outputs
    (the same operations), without the others."""
    kappa, _, log1 = _kappa_rho(x)
    return np.log(kappa), x * log1 / kappa


def _h_curve(x: np.ndarray) -> np.ndarray:
    """log h: :func:`_snr_curves`' first output (the same operations), without the others."""
    _, rho, log1 = _kappa_rho(x)
    return np.log(rho) + 2.0 * np.log(x) - 2.0 * np.log(log1)


def _ratio_curve(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log tau(w), tau = (1 + w)^2 - 1 / (1 + w) = w (3 + 3w + w^2) / (1 + w), and its slope."""
    q = 3.0 + w * (3.0 + w)
    return np.log(w) + np.log(q) - np.log1p(w), 1.0 + w * (3.0 + 2.0 * w) / q - w / (1.0 + w)


def _table(name: str) -> np.ndarray:
    """The curve ``name`` (log value) on ``_GRID`` (increasing), built once per process."""
    if name not in _TABLES:
        x = np.exp(_GRID)
        h, _, phi, _, lk, _ = _snr_curves(x)
        _TABLES.update(
            {"h": h, "phi": phi, "kappa": lk, "kappa/x": lk - _GRID, "tau": _ratio_curve(x)[0]}
        )
    return _TABLES[name]


def _start(name: str, log_target: np.ndarray) -> np.ndarray:
    """log of the argument where curve ``name`` reaches ``log_target`` (table interpolation)."""
    return np.interp(log_target, _table(name), _GRID)


def _per_server_root(
    level: Callable[[np.ndarray], tuple[np.ndarray, ...]],
    lo: np.ndarray,
    hi: np.ndarray,
    start: np.ndarray,
    server: np.ndarray,
    target: np.ndarray,
    active: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Per server, the log-multiplier l with sum_{n in m} value_n(l) = target_m.

    ``level(l_per_user)`` returns each user's value (decreasing in l), d log value / d l and
    anything else. Newton on log(sum) - log(target), safeguarded by the bracket [lo, hi]
    (bisection when a step leaves it), vectorised over the ``active`` servers (the others are
    ignored), until every relative residual is below ``_NEWTON_TOL`` (typically after 2-4
    steps; the callers then scale to the exact target, which moves the cost by ~1e-16
    relative). Returns ``level``'s output at the root.
    """
    m = target.shape[0]
    ell = start
    for _ in range(_MAX_ITER):
        out = level(ell[server])
        val, slope = out[0], out[1]
        tot = np.where(active, server_sums(val, server, m), target)
        g = np.log(tot / target)
        if np.abs(g).max() < _NEWTON_TOL:
            return out
        dg = server_sums(val * slope, server, m) / tot
        lo = np.where(g > 0, ell, lo)
        hi = np.where(g < 0, ell, hi)
        step = ell - g / np.where(dg < 0, dg, -1.0)
        ell = np.where((step >= lo) & (step <= hi), step, 0.5 * (lo + hi))
    return level(ell[server])


def _bracket(
    ell_n: np.ndarray, server: np.ndarray, m: int, active: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per server: min, max and mean of the users' log-multipliers at the equal share."""
    lo = np.full(m, np.inf)
    hi = np.full(m, -np.inf)
    on = active[server]
    np.minimum.at(lo, server[on], ell_n[on])
    np.maximum.at(hi, server[on], ell_n[on])
    count = np.bincount(server[on], minlength=m)
    mean = np.bincount(server[on], weights=ell_n[on], minlength=m) / np.maximum(count, 1)
    return np.where(active, lo, 0.0), np.where(active, hi, 0.0), np.where(active, mean, 0.0)


def optimal_edge_frequency(
    inst: MECInstance, alpha: np.ndarray, server: np.ndarray, weights: tuple[float, float, float]
) -> np.ndarray:
    """Edge GPU frequencies f_nm minimising the edge compute cost under the capacities (9g).

    Per server m: min sum_n c_n (omega_t / f_n + omega_e kappa_2 f_n^2) subject to
    sum_n f_n <= f_m^max, with c_n = (Upsilon - alpha_n) psi_n / (C_m D_m) (convex).
    Unconstrained, every user takes f* = (omega_t / (2 omega_e kappa_2))^(1/3); where
    n_m f* > f_m^max the capacity binds and c_n (omega_t / f^2 - 2 omega_e kappa_2 f) = mu_m:
    with f = f* / (1 + w), w solves tau(w) = (1 + w)^2 - 1 / (1 + w) = mu f*^2 / (c_n omega_t),
    a universal increasing curve; mu_m by safeguarded Newton. omega_e = 0: the square-root
    rule f_n proportional to sqrt(c_n) fills the capacity; omega_t = 0: the floor
    ``MIN_FRACTION`` f_m^max / n_m. Returns (N,) Hz.
    """
    we, wt, _ = weights
    m = inst.num_servers
    server = np.asarray(server, dtype=np.int64)
    count = np.bincount(server, minlength=m).astype(np.float64)
    cap = inst.f_edge_max
    c = (
        (inst.num_layers - np.asarray(alpha, dtype=np.float64))
        * inst.psi
        / (inst.cores_edge[server] * inst.flops_edge[server])
    )
    if wt <= 0:
        return MIN_FRACTION * cap[server] / count[server]
    if we <= 0:
        w = np.sqrt(c)
        return w / server_sums(w, server, m)[server] * cap[server]
    f_star = (wt / (2.0 * we * inst.kappa_edge)) ** (1.0 / 3.0)
    active = count * f_star > cap
    if not active.any():
        return np.full(server.shape[0], f_star)
    log_scale = np.log(f_star**2 / (c * wt))  # log tau = log mu + log_scale

    def level(ell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        target = ell + log_scale
        u = _start("tau", target)
        val, slope = _ratio_curve(np.exp(u))
        w = np.exp(u + (target - val) / slope)
        return f_star / (1.0 + w), -w / ((1.0 + w) * slope)

    on = active[server]
    eq = np.minimum((cap / np.maximum(count, 1.0))[server], f_star)
    ell_n = np.log(np.maximum(c * (wt / eq**2 - 2.0 * we * inst.kappa_edge * eq), 1e-300))
    lo, hi, start = _bracket(ell_n, server, m, active)
    f, _ = _per_server_root(level, lo, hi, start, server, cap, active)
    tot = server_sums(f, server, m)
    f = f * (cap / np.where(tot > 0, tot, 1.0))[server]  # the binding capacity in full, exactly
    return np.where(on, f, f_star)


class UploadCurves:
    """Each user's bandwidth and power in reply to a price of band (the inner step of
    :func:`optimal_power_bandwidth`), for arrays of any shape (broadcast together).

    For the upload cost V(b) = min_{p_lo <= p <= p_hi} s (omega_e p + omega_t) / r(p, b), with
    r = b log2(1 + S p / b), :meth:`__call__` returns the b that minimises V(b) + lambda b
    over b > 0 (V is convex and decreasing, see :func:`optimal_power_bandwidth`), the power
    there, and d log b / d log lambda: where the best power is interior, lambda = C Phi(x) and
    b = omega_t S / (omega_e kappa(x)); where it sits at a bound p, lambda = s (omega_e p +
    omega_t) ln2 / (S p)^2 h(x) and b = S p / x; Phi and h are inverted by table and one
    Newton step (relative error ~1e-11 in x). The power bounds switch at two thresholds of
    lambda, computed here once.

    Args:
        s_hz: S = g / sigma^2 (Hz/W).
        bits: s(d), the bits uploaded.
        we: omega_e (+ lambda_n where priced), scalar or array.
        wt: omega_t of the upload (0 without the upload delay).
        p_lo, p_hi: the power bounds (W).
    """

    def __init__(
        self,
        s_hz: np.ndarray,
        bits: np.ndarray,
        we: Any,
        wt: float,
        p_lo: np.ndarray,
        p_hi: np.ndarray,
    ) -> None:
        self.s_hz, self.we, self.wt, self.p_lo, self.p_hi = s_hz, we, wt, p_lo, p_hi
        self.log_s = log_s = np.log(s_hz)
        self.log_c_hi = np.log(bits * (we * p_hi + wt) * LN2) - 2.0 * (log_s + np.log(p_hi))
        self.log_c_lo = np.log(bits * (we * p_lo + wt) * LN2) - 2.0 * (log_s + np.log(p_lo))
        self.interior = interior = bool(np.all(we > 0)) and wt > 0
        if interior:
            self.log_c_int = np.log(bits * we**2 * LN2 / wt) - 2.0 * log_s
            # Newton: the SNRs where kappa(x) / x = omega_t / (omega_e p) at p^max and p_lo
            # (the power bounds start to bind); lambda there: above ell_hi p < p^max, above
            # ell_lo p = p_lo
            log_ratio = np.log(wt / we)
            ells = []
            for log_c, bound in ((self.log_c_hi, p_hi), (self.log_c_lo, p_lo)):
                t_c = log_ratio - np.log(bound)
                u = _start("kappa/x", t_c)
                lk, sk = _kappa_curve(np.exp(u))
                u = u + (t_c + u - lk) / (sk - 1.0)
                ells.append(log_c + _h_curve(np.exp(u)))
            self.ell_hi, self.ell_lo = ells
        else:
            self.log_c_int = np.zeros(np.shape(self.log_c_hi))
            edge = np.where(np.asarray(we) <= 0, np.inf, -np.inf)
            self.ell_hi = self.ell_lo = np.broadcast_to(edge, np.shape(self.log_c_hi))

    def __call__(self, ell: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(b, d log b / d log lambda, p) at log lambda = ell."""
        s_hz, p_hi, p_lo = self.s_hz, self.p_hi, self.p_lo
        inner = (ell > self.ell_hi) & (ell < self.ell_lo)
        at_max = ell <= self.ell_hi
        p = np.where(at_max, p_hi, p_lo)
        target = ell - np.where(
            inner, self.log_c_int, np.where(at_max, self.log_c_hi, self.log_c_lo)
        )
        u = _start("h", target)
        if np.any(inner):
            u[inner] = _start("phi", target[inner])
        x = np.exp(u)
        kappa, rho, log1 = _kappa_rho(x)
        x1 = x / (1.0 + x)
        lk, ll = np.log(kappa), np.log(log1)
        sk, sr, sl = x * log1 / kappa, x1 * x1 / rho, x1 / log1
        # log Phi = ln(1 + x) + log kappa + log rho - log ln(1 + x), log h = log rho
        # + 2 log x - 2 log ln(1 + x), and their slopes (see _snr_curves)
        val = np.log(rho) - ll + np.where(inner, log1 + lk, 2.0 * u - ll)
        slope = sr - sl + np.where(inner, x1 + sk, 2.0 - sl)
        du = (target - val) / slope
        x = x * np.exp(du)
        b_fixed = s_hz * p / x
        if self.interior:
            b = np.where(inner, self.wt * s_hz / (self.we * kappa * np.exp(sk * du)), b_fixed)
            return b, np.where(inner, -sk / slope, -1.0 / slope), np.where(inner, x * b / s_hz, p)
        return b_fixed, -1.0 / slope, p


def optimal_power_bandwidth(
    inst: MECInstance,
    server: np.ndarray,
    weights: tuple[float, float, float],
    upload_delay: bool = True,
    price: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Transmit powers and bandwidths minimising the upload cost under (9d) and (9e).

    Per server m: min sum_n s_n (omega_e p_n + omega_t) / r_n, r_n = b_n log2(1 + x_n),
    x_n = S_n p_n / b_n (S_n = g_nm / sigma^2), subject to p_lo <= p_n <= p_n^max
    (p_lo = ``MIN_FRACTION`` p_n^max, as in the reference solver) and sum_n b_n <= b_m^max.
    For a given b the cost is decreasing then increasing in p, stationary where
    kappa(x) = omega_t S / (omega_e b), kappa(x) = (1 + x) ln(1 + x) - x: the best power is
    that point clipped to [p_lo, p^max], and it grows with b. With the multiplier lambda_m of
    the band, user n's stationarity in b is lambda = s (omega_e p + omega_t) ln2 rho(x) /
    (b ln(1 + x))^2, rho(x) = ln(1 + x) - x / (1 + x). At an interior power this is
    lambda = C_n Phi(x) with C_n = s omega_e^2 ln2 / (omega_t S^2) and
    Phi(x) = (1 + x) kappa rho / ln(1 + x), and b = omega_t S / (omega_e kappa(x)); at a power
    held at a bound p it is lambda = s (omega_e p + omega_t) ln2 / (S p)^2 h(x) with
    h(x) = rho x^2 / ln(1 + x)^2 and b = S p / x. Phi and h are universal increasing curves
    (inverted by table and Newton) and x falls as b grows in both cases, so lambda falls with
    b: each b_n(lambda) is decreasing (V_n is convex). The power bounds switch at two per-user
    thresholds of lambda (where kappa(x) / x = omega_t / (omega_e p)), and
    lambda_m is found by safeguarded Newton so that the band is used in full (the cost falls
    with b). ``upload_delay=False`` (no omega_t in this term): p = p_lo; omega_e = 0:
    p = p^max. ``price`` (N,): omega_e becomes omega_e + lambda_n per user (the upload energy
    is device energy; see :func:`fast_resource_rule`); a mix of zero and positive weights with
    omega_t > 0 is not supported. Returns (power W, bandwidth Hz), each (N,).

    Raises:
        ValueError: ``price`` makes some users' energy weights 0 and others positive while the
            upload delay is weighted.
    """
    we_s, wt_all, _ = weights
    wt = wt_all if upload_delay else 0.0
    we: Any = we_s
    if price is not None:
        we = device_energy_weight(we_s, price)
        if wt > 0 and np.any(we > 0) and np.any(we <= 0):
            raise ValueError(
                "optimal_power_bandwidth: energy weights must be all 0 or all > 0 "
                "when the upload delay is weighted"
            )
    m = inst.num_servers
    server = np.asarray(server, dtype=np.int64)
    n = server.shape[0]
    count = np.bincount(server, minlength=m).astype(np.float64)
    band = inst.b_max
    s_hz = inst.gain[np.arange(n), server] / inst.noise_psd  # S_n in Hz/W
    bits = inst.bits
    p_hi = inst.p_max
    p_lo = MIN_FRACTION * inst.p_max
    b_eq = band[server] / count[server]
    if np.all(we <= 0) and wt <= 0:  # the upload costs nothing: any split is optimal
        return p_hi.copy(), b_eq
    curves = UploadCurves(s_hz, bits, we, wt, p_lo, p_hi)
    log_s = curves.log_s
    if curves.interior:
        # the SNR of the best power at the equal share, kappa(x) = omega_t S / (omega_e b_eq)
        t_eq = np.log(wt * s_hz / (we * b_eq))
        u = _start("kappa", t_eq)
        lk, sk = _kappa_curve(np.exp(u))
        u = u + (t_eq - lk) / sk
        p_eq = np.minimum(np.maximum(np.exp(u) * b_eq / s_hz, p_lo), p_hi)
    else:
        p_eq = np.where(we <= 0, p_hi, p_lo) if price is not None else (p_hi if we <= 0 else p_lo)
    # bracket: lambda_n at the equal share; every b_n >= the share at the smallest, and so on
    ell_n = (
        np.log(bits * (we * p_eq + wt) * LN2)
        - 2.0 * (log_s + np.log(p_eq))
        + _h_curve(s_hz * p_eq / b_eq)
    )
    active = count > 0
    lo, hi, start = _bracket(ell_n, server, m, active)
    b, _, p = _per_server_root(curves, lo, hi, start, server, band, active)
    tot = server_sums(b, server, m)
    b = b * (band / np.where(tot > 0, tot, 1.0))[server]  # the band in full, exactly
    return p, b


def heuristic_resource_rule(
    inst: MECInstance,
    alpha: np.ndarray,
    server: np.ndarray,
    weights: tuple[float, float, float],
    upload_delay: bool = True,
) -> MECDecision:
    """The closed-form heuristic resources of env v0 before the exact rule (kept for comparison).

    About 2% above the optimum on the default scenario (:func:`fast_resource_rule` is exact):

    * p_n = p_n^max;
    * f_n = min(f_n^max, (omega_t / (2 omega_e kappa_1))^(1/3)): the exact minimiser of
      alpha (omega_t T_n + omega_e E_n) (MEC eq. 25 set to 0);
    * edge GPU: the square-root rule f_nm proportional to sqrt((Upsilon - alpha_n) psi_n /
      (C D)) filling f_m^max (the exact minimiser of the edge delay), each share capped at the
      user's energy-optimal frequency (omega_t / (2 omega_e kappa_2))^(1/3);
    * bandwidth: the square-root rule b_nm proportional to sqrt(K_n / eta_n), with
      K_n = (omega_e p_n + omega_t) s(d_n) and eta_n the spectral efficiency at an equal share,
      filling b_m^max (exact when the rate is linear in b).
    """
    we, wt, _ = weights
    m_count = inst.num_servers
    server = np.asarray(server, dtype=np.int64)
    alpha = np.asarray(alpha, dtype=np.float64)
    p = inst.p_max.copy()
    if we > 0:
        fu = np.minimum(inst.f_user_max, (wt / (2 * we * inst.kappa_user)) ** (1.0 / 3.0))
    else:
        fu = inst.f_user_max.copy()
    fu = np.maximum(fu, MIN_FRACTION * inst.f_user_max)
    rest = inst.num_layers - alpha
    load = rest * inst.psi / (inst.cores_edge[server] * inst.flops_edge[server])
    w = np.sqrt(load)
    fe = w / server_sums(w, server, m_count)[server] * inst.f_edge_max[server]
    if we > 0 and wt > 0:
        fe = np.minimum(fe, (wt / (2 * we * inst.kappa_edge)) ** (1.0 / 3.0))
    count = np.bincount(server, minlength=m_count).astype(np.float64)
    b_eq = inst.b_max[server] / count[server]
    g = inst.gain[np.arange(inst.num_users), server]
    eta = np.log2(1.0 + g * p / (inst.noise_psd * b_eq))
    k = (we * p + (wt if upload_delay else 0.0)) * inst.bits
    wb = np.sqrt(np.maximum(k, 1e-300) / np.maximum(eta, 1e-300))
    b = wb / server_sums(wb, server, m_count)[server] * inst.b_max[server]
    return MECDecision(alpha=alpha, server=server, power=p, bandwidth=b, freq_user=fu, freq_edge=fe)
