"""MEC Section 4: fractional-programming alternating optimisation of P3/P4 and CCCP association.

All optimisation here works on one round's :class:`~edgeft.envs.mec.types.MECInstance` and the
normalised weights (omega_e, omega_t, omega_s); every objective value is the env's own
``reward.weighted_cost`` (continuous alpha inside the relaxation). cvxpy is imported lazily.

P4 (fixed association chi, fixed auxiliaries z, v, q) in solver units (p in W, b in MHz,
f in GHz, s in Mbit, rates in Mbit/s)::

    min  sum_n  z_n alpha_n^2 + A_n(f_n)^2 / (4 z_n)                         device compute
              + q_n (Upsilon - alpha_n)^2 + B_n(f_nm)^2 / (4 q_n)              edge compute
              + omega_e [ v_n (p_n s_n)^2 + 1 / (4 v_n r_n^2) ]               upload energy
              + omega_t s_n / r_n                                  upload delay (added)
              + omega_s 2 L^2 Upsilon / (k_n (Upsilon - alpha_n))                  stability
    s.t. 1 <= alpha <= Upsilon - 1, p <= p_max, f <= f_max, sum_{n in m} b_n <= b_m^max,
         sum_{n in m} f_nm <= f_m^max,  r_n <= b_n log2(1 + c_n p_n / b_n)

with A = c1/f + c2 f^2 and B likewise. To be DPP (compiled once, re-solved with new parameter
values), A^2/(4z) is written square(a1 inv_pos(f) + a2 square(f)) with a1 = c1/(2 sqrt z),
a2 = c2/(2 sqrt z); the rate enters through a hypograph variable r (the terms are decreasing in
r, so r equals the rate at the optimum) with the concave constraint
r <= -rel_entr(b, b + c p)/ln 2 (exponential cone), measured in units of the current rate so
that users whose rates differ by 1e5 are equally well conditioned. AO updates (MEC Section 4.1,
with s(d) where the paper prints d): z = A(f)/(2 alpha), v = 1/(2 p s r),
q = B(f_nm)/(2 (Upsilon - alpha)).

How P4 and the association QP are solved (:func:`use_backend`). By default (``"exact"``) no
solver library runs in the AO's inner loop: P4 separates into alpha, f_n, and per server the
edge GPU and the (power, bandwidth) pairs, each solved to ~1e-13 by safeguarded Newton on its
optimality conditions (:func:`solve_p4`); CCCP takes an iteration's QP minimiser from an exact
check where it is unique (the rounded assignment, :func:`vertex_is_unique_minimiser`, or the
previous iterate's support, :func:`congestion_qp_on_support`) and otherwise calls Clarabel
directly on data built once per size (:class:`DirectCongestionQP`). ``"cvxpy"`` keeps the
earlier implementation (P4 compiled once with cvxpy Parameters, the QP through cvxpy), the
reference of the tests and of ``benchmarks/mec_solver_speed.py``. Both reach the same optima
to the solvers' accuracy (tests/mec/test_exact_solvers.py) and the recorded decisions
(tests/mec/test_decision_fixture.py).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from edgeft.envs.mec import formulas as F
from edgeft.envs.mec import reward as R
from edgeft.envs.mec.config import MIN_FRACTION
from edgeft.envs.mec.types import MECDecision, MECInstance

#: Open solvers tried in order: Clarabel (interior point, exponential cones); with shorter steps
#: when its default run stalls (it does on a few badly scaled instances); SCS as a last resort.
# warm_start=False everywhere: cvxpy otherwise warm-starts a compiled problem from its previous
# solve, so a decision would depend (at ~1e-9) on what the process solved before.
SOLVER_CHAIN: tuple[tuple[str, dict[str, Any]], ...] = (
    ("CLARABEL", {"warm_start": False}),
    ("CLARABEL", {"max_step_fraction": 0.9, "warm_start": False}),
    ("CLARABEL", {"equilibrate_enable": False, "warm_start": False}),
    ("SCS", {"eps": 1e-9, "max_iters": 100_000, "warm_start": False}),
)
_HZ_PER_GHZ = 1e9
_HZ_PER_MHZ = 1e6
_BITS_PER_MBIT = 1e6
LN2 = math.log(2.0)


#: how P4 and the congestion QP are solved (:func:`use_backend`)
BACKENDS = ("exact", "cvxpy")
_BACKEND = ["exact"]


def _check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {name!r}")
    return name


def current_backend() -> str:
    """The backend the solvers use unless told otherwise (``"exact"`` by default)."""
    return _BACKEND[0]


@contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Within the block, solve P4 and the congestion QP with backend ``name``.

    ``"exact"`` (default): P4 by :func:`solve_p4` (safeguarded Newton on its separable
    optimality conditions, no solver call) and the congestion QP by Clarabel called directly
    on data built once per size (:class:`CongestionQP`). ``"cvxpy"``: both through cvxpy
    (P4 compiled once with Parameters, :class:`P4Problem`), the earlier implementation, kept
    as the reference the tests and ``benchmarks/mec_solver_speed.py`` compare with.

    Raises:
        ValueError: unknown backend name.
    """
    _check_backend(name)
    old = _BACKEND[0]
    _BACKEND[0] = name
    try:
        yield
    finally:
        _BACKEND[0] = old


# --------------------------------------------------------------------------- P4 in cvxpy
class P4Problem:
    """P4 for N users and M servers, built once with cvxpy Parameters and re-solved.

    One instance serves any association, instance values and auxiliaries of that size; alpha
    can be pinned (lower = upper bound) for the resource-only steps.
    """

    def __init__(
        self, num_users: int, num_servers: int, num_layers: int, upload_delay: bool = True
    ) -> None:
        import cvxpy as cp

        n, m = num_users, num_servers
        self.num_users, self.num_servers, self.upload_delay = n, m, upload_delay
        self.num_layers = num_layers
        P = {
            name: cp.Parameter(n, nonneg=True, name=name)
            for name in (
                "z",
                "a1",
                "a2",
                "q",
                "b1",
                "b2",
                "e1",
                "e2",
                "d1",
                "sc",
                "c",
                "u",
                "p_max",
                "p_lo",
                "fu_max",
                "alpha_lo",
                "alpha_hi",
            )
        }
        P["assoc"] = cp.Parameter((m, n), nonneg=True, name="assoc")
        P["b_max"] = cp.Parameter(m, nonneg=True, name="b_max")
        P["fe_max"] = cp.Parameter(m, nonneg=True, name="fe_max")
        self.params = P
        alpha = cp.Variable(n, name="alpha")
        p = cp.Variable(n, name="p")
        b = cp.Variable(n, name="b")
        fu = cp.Variable(n, name="fu")
        fe = cp.Variable(n, name="fe")
        r = cp.Variable(n, name="r")
        self.vars = {"alpha": alpha, "p": p, "b": b, "fu": fu, "fe": fe, "r": r}
        rest = float(num_layers) - alpha
        terms = [
            cp.multiply(P["z"], cp.square(alpha)),
            cp.square(cp.multiply(P["a1"], cp.inv_pos(fu)) + cp.multiply(P["a2"], cp.square(fu))),
            cp.multiply(P["q"], cp.square(rest)),
            cp.square(cp.multiply(P["b1"], cp.inv_pos(fe)) + cp.multiply(P["b2"], cp.square(fe))),
            cp.multiply(P["e1"], cp.square(p)),
            cp.multiply(P["e2"], cp.power(r, -2)),
            cp.multiply(P["sc"], cp.inv_pos(rest)),
        ]
        if upload_delay:
            terms.append(cp.multiply(P["d1"], cp.inv_pos(r)))
        objective = cp.Minimize(sum(cp.sum(t) for t in terms))
        constraints = [
            alpha >= P["alpha_lo"],
            alpha <= P["alpha_hi"],
            p >= P["p_lo"],
            p <= P["p_max"],
            fu <= P["fu_max"],
            P["assoc"] @ b <= P["b_max"],
            P["assoc"] @ fe <= P["fe_max"],
            r
            <= -cp.rel_entr(cp.multiply(P["u"], b), cp.multiply(P["u"], b) + cp.multiply(P["c"], p))
            / LN2,
        ]
        self.problem = cp.Problem(objective, constraints)
        self.solve_count = 0

    def is_dpp(self) -> bool:
        """Whether the problem is DCP under DPP (so cvxpy compiles it once)."""
        return bool(self.problem.is_dpp())  # context "dcp": = is_dcp(dpp=True) (cvxpy docs)

    def solve(self, values: dict[str, Any]) -> dict[str, np.ndarray]:
        """Set parameter values and solve; returns the variables' values (solver units).

        Raises:
            RuntimeError: the solver did not return an optimal solution.
        """
        import cvxpy as cp

        for k, v in values.items():
            self.params[k].value = v
        self.solve_count += 1
        for solver, options in SOLVER_CHAIN:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # "may be inaccurate"
                    self.problem.solve(solver=solver, **options)
            except cp.error.SolverError:
                continue
            if self.problem.status in ("optimal", "optimal_inaccurate"):
                break
        else:
            raise RuntimeError(
                f"P4 solve failed with status {self.problem.status} after trying {SOLVER_CHAIN}"
            )
        return {k: np.asarray(v.value, dtype=np.float64) for k, v in self.vars.items()}


_CACHE: dict[tuple[int, int, int, bool], P4Problem] = {}


def get_p4(num_users: int, num_servers: int, num_layers: int, upload_delay: bool) -> P4Problem:
    """The compiled-once P4 of this size (cached per process)."""
    key = (num_users, num_servers, num_layers, upload_delay)
    if key not in _CACHE:
        _CACHE[key] = P4Problem(*key)
    return _CACHE[key]


# --------------------------------------------------------------------------- P4 exactly
# P4 separates: alpha, f_n and (per server) the edge GPU and the (power, bandwidth) pairs are
# independent problems. Each is solved to ~1e-13 relative by safeguarded Newton's method on a
# monotone scalar equation (per user, and per server for the capacity multipliers), in
# vectorised numpy: the same optimum as the conic solver (P4 is convex with a unique
# minimiser), without a solver call.
_ROOT_TOL = 1e-13
_ROOT_ITER = 100
_MAX_LOG_STEP = 4.0
_NOISE_STEP = 1e-10  # a step this small that no longer shrinks the residual ends the search


class P4SolveError(RuntimeError):
    """The exact P4 solve did not converge (the caller falls back to the conic solver)."""


def _safeguarded(new: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A Newton step where it stays in the bracket [lo, hi], else the bracket's midpoint (a
    bracket with an open side keeps the step, which is bounded)."""
    closed = np.isfinite(lo) & np.isfinite(hi)
    out = (new < lo) | (new > hi)
    if not np.any(out & closed):
        return new
    return np.where(
        out & closed, 0.5 * (np.where(closed, lo, 0.0) + np.where(closed, hi, 0.0)), new
    )


def _increasing_root(
    fun: Any, t: np.ndarray, tol: float = _ROOT_TOL
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Per entry, the root of an increasing function of t by Newton's method, safeguarded by
    the bracket the signs seen so far give (bisection when a step leaves it, steps of at most
    ``_MAX_LOG_STEP``). ``fun(t)`` returns (value, derivative, *extra).

    Returns:
        (t, fun's extra outputs at t).

    Raises:
        P4SolveError: no convergence in ``_ROOT_ITER`` steps.
    """
    lo = np.full(t.shape, -np.inf)
    hi = np.full(t.shape, np.inf)
    f_prev = np.full(t.shape, np.inf)
    for _ in range(_ROOT_ITER):
        f, df, *extra = fun(t)
        step = np.where(df > 0, f / np.where(df > 0, df, 1.0), np.sign(f))
        size = np.abs(step)
        # converged, or at the residual's rounding floor (a step that no longer halves it)
        if np.all((size < tol) | ((size < _NOISE_STEP) & (np.abs(f) > 0.5 * f_prev))):
            return t, tuple(extra)
        if not np.all(np.isfinite(f)):
            raise P4SolveError("non-finite residual")
        f_prev = np.abs(f)
        lo = np.where(f < 0, t, lo)
        hi = np.where(f > 0, t, hi)
        t = _safeguarded(t - np.clip(step, -_MAX_LOG_STEP, _MAX_LOG_STEP), lo, hi)
    raise P4SolveError("per-user Newton did not converge")


def _server_root(
    level: Any,
    ell: np.ndarray,
    server: np.ndarray,
    target: np.ndarray,
    active: np.ndarray,
    tol: float = 1e-12,
) -> tuple[np.ndarray, ...]:
    """Per active server, the log-multiplier ell with sum_{n at m} value_n(ell) = target_m.

    ``level(ell per user)`` returns each user's value (decreasing in ell), d log value / d ell
    and anything else. Newton on log(sum / target), safeguarded by the bracket of the signs
    seen (bisection when a step leaves it). Returns ``level``'s output at the root and the
    root.

    Raises:
        P4SolveError: no convergence in ``_ROOT_ITER`` steps.
    """
    m = target.shape[0]
    lo = np.full(m, -np.inf)
    hi = np.full(m, np.inf)
    for _ in range(_ROOT_ITER):
        out = level(ell[server])
        val, slope = out[0], out[1]
        tot = np.bincount(server, weights=val, minlength=m)
        g = np.where(active, np.log(np.where(active, tot, 1.0) / target), 0.0)
        if np.all(np.abs(g) < tol):
            return (*out, ell)
        if not np.all(np.isfinite(g)):
            raise P4SolveError("non-finite capacity residual")
        dg = np.bincount(server, weights=val * slope, minlength=m) / np.where(active, tot, 1.0)
        lo = np.where(g > 0, ell, lo)
        hi = np.where(g < 0, ell, hi)
        step = np.where(dg < 0, g / np.where(dg < 0, dg, -1.0), -np.sign(g))
        ell = _safeguarded(ell - np.clip(step, -_MAX_LOG_STEP, _MAX_LOG_STEP), lo, hi)
    raise P4SolveError("per-server Newton did not converge")


#: 1 / k for the series rho = sum_{k >= 2} y^k / k, y = x / (1 + x) (Horner, highest first)
_RHO_SERIES = 1.0 / np.arange(17, 1, -1, dtype=np.float64)


def _log_rate_terms(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """log ln(1 + x), log rho(x) (rho = ln(1 + x) - x / (1 + x)), x / (1 + x), and the slopes
    d log ln(1 + x) / d log x and d log rho / d log x.

    rho is a difference of nearly equal numbers for small x (relative error ~eps / x): below
    x = 0.1 it is summed as sum_{k >= 2} y^k / k with y = x / (1 + x) (positive terms, y^2 /
    2 first; truncated after y^16, error < 3e-17 relative)."""
    log1 = np.log1p(x)
    x1 = x / (1.0 + x)
    rho = log1 - x1
    small = x < 0.1
    if small.any():
        y = x1[small]
        acc = np.full(y.shape, _RHO_SERIES[0])
        for c in _RHO_SERIES[1:]:
            acc = acc * y + c
        rho[small] = acc * y * y
    return np.log(log1), np.log(rho), x1, x1 / log1, x1 * x1 / rho


def _p4_alpha(
    z: np.ndarray, q: np.ndarray, sc: np.ndarray, num_layers: float, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """argmin over [lo, hi] of z a^2 + q (Y - a)^2 + sc / (Y - a): with y = Y - a the
    stationary point is the positive root of 2 (z + q) y^3 - 2 z Y y^2 - sc = 0 (one sign
    change), reached by Newton's method from above (the cubic is convex there)."""
    if np.array_equal(lo, hi):
        return lo.copy()
    c3, c2 = 2.0 * (z + q), 2.0 * z * num_layers
    y = c2 / c3 + np.cbrt(sc / c3)  # the cubic is >= 0 here, so Newton descends monotonically
    for _ in range(_ROOT_ITER):
        step = (c3 * y**3 - c2 * y**2 - sc) / (3.0 * c3 * y**2 - 2.0 * c2 * y)
        y = y - step
        if np.all(np.abs(step) <= 1e-15 * y):
            break
    return np.clip(num_layers - y, lo, hi)


def _p4_user_freq(a1: np.ndarray, a2: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """argmin over (0, cap] of (a1 / f + a2 f^2)^2: the inner function is positive with its
    minimum at (a1 / (2 a2))^(1/3), so is its square."""
    with np.errstate(divide="ignore"):
        f = np.where(a2 > 0, np.cbrt(a1 / (2.0 * np.where(a2 > 0, a2, 1.0))), np.inf)
    return np.minimum(f, cap)


def _p4_edge_freq(
    b1: np.ndarray,
    b2: np.ndarray,
    server: np.ndarray,
    cap: np.ndarray,
    warm: dict[str, Any] | None = None,
) -> np.ndarray:
    """Per server, argmin sum_n (b1 / f_n + b2 f_n^2)^2 subject to sum_n f_n <= cap.

    Each user's unconstrained minimiser is f* = (b1 / (2 b2))^(1/3). Where they do not fit,
    with the capacity's multiplier mu, -2 B(f) B'(f) = mu; with f = f* w^(1/3) this reads
    Gamma(w) = 2 / w - 1 - w = mu f*^3 / b1^2, so w = 4 / (1 + Gamma + sqrt((1 + Gamma)^2 + 8))
    in closed form (b2 = 0: f = (2 b1^2 / mu)^(1/3)); mu per server by :func:`_server_root`,
    started from ``warm["edge"]`` (the previous solve's log mu) where there is one.
    """
    m = cap.shape[0]
    pos = b2 > 0
    with np.errstate(divide="ignore"):
        f_star = np.where(pos, np.cbrt(b1 / (2.0 * np.where(pos, b2, 1.0))), np.inf)
    active = np.bincount(server, weights=np.minimum(f_star, 1e300), minlength=m) > cap
    if not active.any():
        return f_star
    on = active[server]
    scale = np.where(pos, f_star**3 / b1**2, 1.0)  # Gamma = mu * scale
    log_2b1 = np.log(2.0 * b1**2)

    def level(ell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gam = np.exp(ell) * scale
        w = 4.0 / (1.0 + gam + np.sqrt((1.0 + gam) ** 2 + 8.0))
        f = np.where(pos, f_star * np.cbrt(w), np.exp((log_2b1 - ell) / 3.0))
        slope = np.where(pos, -gam / (3.0 * (2.0 * w + 1.0 + gam)), -1.0 / 3.0)
        return np.where(on, f, 1.0), np.where(on, slope, 0.0)

    if warm is not None and "edge" in warm and warm["edge"].shape == cap.shape:
        start = np.where(np.isfinite(warm["edge"]), warm["edge"], 0.0)
    else:  # each user's multiplier at an equal share of its server's capacity
        count = np.bincount(server, minlength=m).astype(np.float64)
        eq = (cap / np.maximum(count, 1.0))[server]
        y = np.minimum(eq / f_star, 1.0)
        with np.errstate(divide="ignore"):
            ell_n = np.where(
                pos,
                np.log(np.maximum(2.0 / y**3 - 1.0 - y**3, 1e-300) / scale),
                log_2b1 - 3.0 * np.log(eq),
            )
        start = np.bincount(server, weights=np.where(on, ell_n, 0.0), minlength=m) / np.maximum(
            count, 1.0
        )
    f, _, ell = _server_root(level, start, server, cap, active)
    if warm is not None:
        warm["edge"] = ell
    tot = np.bincount(server, weights=f, minlength=m)
    f = f * (cap / np.where(tot > 0, tot, 1.0))[server]  # the binding capacity in full
    return np.where(on, f, f_star)


def _p4_upload(
    v: dict[str, np.ndarray],
    d1: np.ndarray,
    server: np.ndarray,
    band: np.ndarray,
    start: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per server, argmin sum_n e1 p^2 + e2 / r^2 + d1 / r subject to p_lo <= p <= p_max,
    r <= k b ln(1 + x), x = C p / b (k = u / ln 2, C = c / u: P4's rate constraint), and
    sum_n b_n <= band.

    The objective decreases in r, so r is the rate; jointly convex in (p, b). With the band's
    multiplier lambda (per server), each user minimises e1 p^2 + phi(r) + lambda b: at an
    interior power, stationarity in p and b gives b = lambda C^2 / (2 e1 x (1 + x) rho(x))
    (rho(x) = ln(1 + x) - x / (1 + x)) and one increasing equation in log x,
    log(-phi'(r)) + log(k rho(x)) = log lambda; where that power leaves [p_lo, p_max] the
    power sits at the bound and the same equation holds with b = C p / x. lambda per server so
    that the band is used in full (the cost falls with b). ``start``: (p, b) of the current
    iterate (its SNR and multiplier start the searches; the result does not depend on them
    beyond the tolerance). Returns (p, b, r).
    """
    m = band.shape[0]
    e1, e2, k, cc = v["e1"], v["e2"], v["u"] / LN2, v["c"] / v["u"]
    p_lo, p_hi = v["p_lo"], v["p_max"]
    energy = e1 > 0
    with np.errstate(divide="ignore"):
        log_2e2, log_d1 = np.log(2.0 * e2), np.log(d1)
        log_b_int = np.log(cc**2 / (2.0 * np.where(energy, e1, 1.0)))
    if np.any(~np.isfinite(np.logaddexp(log_2e2, log_d1))):
        raise P4SolveError("a user's upload costs nothing (no energy weight, no upload delay)")
    log_k = np.log(k)
    p0, b0 = start
    x0 = cc * p0 / b0
    t_int = np.log(x0)

    def phi(log_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log(-phi'(r)) = log(2 e2 r^-3 + d1 r^-2) and its slope in log r (in [-3, -2])."""
        a3, a2 = log_2e2 - 3.0 * log_r, log_d1 - 2.0 * log_r
        top = np.logaddexp(a3, a2)
        return top, -2.0 - np.exp(a3 - top)

    state = {"t_int": t_int, "t_fix": t_int.copy()}

    def level(ell: np.ndarray) -> tuple[np.ndarray, ...]:
        def interior(t: np.ndarray) -> tuple[np.ndarray, ...]:
            x = np.exp(t)
            ll, lr, x1, sl, sr = _log_rate_terms(x)
            log_b = ell + log_b_int - t - np.log1p(x) - lr
            top, s_phi = phi(log_b + log_k + ll)
            df = s_phi * (sl - 1.0 - x1 - sr) + sr
            return top + log_k + lr - ell, df, df, x, x1, sr, s_phi, log_b

        t, (df, x, x1, sr, s_phi, log_b) = _increasing_root(interior, state["t_int"])
        state["t_int"] = t
        b = np.exp(log_b)
        p = x * b / cc
        slope = 1.0 - (1.0 + x1 + sr) * (1.0 - s_phi) / df  # d log b / d ell
        fixed = ~energy | (p > p_hi) | (p < p_lo)
        if fixed.any():
            pf = np.where(~energy | (p > p_hi), p_hi, p_lo)[fixed]
            ellf = ell[fixed]
            log_kcp = np.log(k[fixed] * cc[fixed] * pf)
            l2e2, ld1, lk = log_2e2[fixed], log_d1[fixed], log_k[fixed]

            def at_bound(tf: np.ndarray) -> tuple[np.ndarray, ...]:
                xf = np.exp(tf)
                ll, lr, _, sl, sr = _log_rate_terms(xf)
                log_r = log_kcp + ll - tf
                a3, a2 = l2e2 - 3.0 * log_r, ld1 - 2.0 * log_r
                top = np.logaddexp(a3, a2)
                dff = (-2.0 - np.exp(a3 - top)) * (sl - 1.0) + sr
                return top + lk + lr - ellf, dff, dff, xf

            tf, (dff, xf) = _increasing_root(at_bound, state["t_fix"][fixed])
            state["t_fix"][fixed] = tf
            p[fixed] = pf
            b[fixed] = cc[fixed] * pf / xf
            slope[fixed] = -1.0 / dff
        return b, slope, p

    # start: each user's multiplier at the current iterate, where r = 1 in P4's units
    ell_n = np.logaddexp(log_2e2, log_d1) + log_k + _log_rate_terms(x0)[1]
    count = np.bincount(server, minlength=m).astype(np.float64)
    active = count > 0
    start_ell = np.bincount(server, weights=ell_n, minlength=m) / np.maximum(count, 1.0)
    b, _, p, _ = _server_root(level, start_ell, server, band, active)
    tot = np.bincount(server, weights=b, minlength=m)
    b = b * (band / np.where(tot > 0, tot, 1.0))[server]  # the band in full, exactly
    r = k * b * np.log1p(cc * p / b)
    return p, b, r


def _p4_upload_newton(
    v: dict[str, np.ndarray],
    d1: np.ndarray,
    server: np.ndarray,
    band: np.ndarray,
    start: tuple[np.ndarray, np.ndarray],
    warm: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_p4_upload`'s problem by Newton's method on all its optimality conditions at
    once: unknowns t_n = log x_n and ell_m = log lambda_m, one equation per user
    (stationarity in b, as in :func:`_p4_upload`) and one per server (the band in full), the
    users' power bounds as an active set (a user leaves its bound where the power's gradient
    points inside, and joins it where the interior power leaves the box). Each step solves the
    linearised system by elimination (per server, one scalar). Starts from ``warm`` (the
    previous solve of the same AO run) or the current iterate; a few steps each.

    Raises:
        P4SolveError: no convergence in 30 steps (the caller then runs :func:`_p4_upload`).
    """
    m = band.shape[0]
    e1, e2, k, cc = v["e1"], v["e2"], v["u"] / LN2, v["c"] / v["u"]
    p_lo, p_hi = v["p_lo"], v["p_max"]
    energy = e1 > 0
    with np.errstate(divide="ignore"):
        log_2e2, log_d1 = np.log(2.0 * e2), np.log(d1)
        log_2e1 = np.log(2.0 * np.where(energy, e1, 1.0))
    log_k, log_cc = np.log(k), np.log(cc)
    log_b_int = 2.0 * log_cc - log_2e1
    log_phi_hi, log_plo = np.log(p_hi), np.log(p_lo)
    p0, b0 = start
    if "t" in warm and warm["t"].shape == e1.shape:
        t, ell, branch = warm["t"].copy(), warm["ell"].copy(), warm["branch"].copy()
    else:
        t = np.log(cc * p0 / b0)
        # branch: 0 interior, 1 at p_max, -1 at p_lo
        branch = np.where(~energy | (p0 >= p_hi), 1, np.where(p0 <= p_lo, -1, 0))
        count = np.bincount(server, minlength=m)
        ell_n = np.logaddexp(log_2e2, log_d1) + log_k + _log_rate_terms(np.exp(t))[1]
        ell = np.bincount(server, weights=ell_n, minlength=m) / np.maximum(count, 1)
    log_band = np.log(band)
    active = np.bincount(server, minlength=m) > 0
    res_prev = np.inf
    for _ in range(30):
        x = np.exp(t)
        ll, lr, x1, sl, sr = _log_rate_terms(x)
        log1px = np.log1p(x)
        ell_n = ell[server]
        inner = branch == 0
        log_p_fix = np.where(branch > 0, log_phi_hi, log_plo)
        log_b = np.where(inner, ell_n + log_b_int - t - log1px - lr, log_p_fix + log_cc - t)
        log_p = log_b + t - log_cc
        log_r = log_b + log_k + ll
        a3, a2 = log_2e2 - 3.0 * log_r, log_d1 - 2.0 * log_r
        top = np.logaddexp(a3, a2)
        s_phi = -2.0 - np.exp(a3 - top)
        f = top + log_k + lr - ell_n
        # the active set: p's gradient sign 2 e1 p - (-phi'(r)) k C / (1 + x) at the bounds
        pull = log_2e1 + log_p - (top + log_k + log_cc - log1px)
        new_branch = np.where(
            inner,
            np.where(log_p > log_phi_hi, 1, np.where(log_p < log_plo, -1, 0)),
            np.where(branch > 0, np.where(energy & (pull > 0), 0, 1), np.where(pull < 0, 0, -1)),
        )
        b = np.exp(log_b)
        tot = np.bincount(server, weights=b, minlength=m)
        g = np.where(active, np.log(np.where(active, tot, 1.0)) - log_band, 0.0)
        if not (np.all(np.isfinite(f)) and np.all(np.isfinite(g))):
            raise P4SolveError("non-finite residual")
        res = max(float(np.max(np.abs(f))), float(np.max(np.abs(g))))
        if res > 1e-3:  # the active set is revised only near the current set's solution
            new_branch = branch
        if np.array_equal(new_branch, branch) and (
            res < 1e-13 or (res < _NOISE_STEP and res > 0.5 * res_prev)
        ):
            warm.update(t=t, ell=ell, branch=branch)
            b = b * (band / np.where(active, tot, 1.0))[server]  # the band in full, exactly
            p = np.where(branch > 0, p_hi, np.where(branch < 0, p_lo, np.exp(log_p)))
            return p, b, k * b * np.log1p(cc * p / b)
        res_prev = res
        if not np.array_equal(new_branch, branch):
            branch = new_branch
            res_prev = np.inf
            continue
        # Newton: F_t dt + F_l dl = -F per user, sum_n b_n dlog b_n = -g tot per server
        f_t = np.where(inner, s_phi * (sl - 1.0 - x1 - sr) + sr, s_phi * (sl - 1.0) + sr)
        f_l = np.where(inner, s_phi - 1.0, -1.0)
        b_t = np.where(inner, -(1.0 + x1 + sr), -1.0)
        b_l = np.where(inner, 1.0, 0.0)
        coef = np.bincount(server, weights=b * (b_l - b_t * f_l / f_t), minlength=m)
        rhs = np.bincount(server, weights=b * b_t * f / f_t, minlength=m) - g * tot
        dl = np.where(active, rhs / np.where(active, coef, 1.0), 0.0)
        dt = -(f + f_l * dl[server]) / f_t
        scale = min(1.0, 2.0 / max(float(np.max(np.abs(dt))), float(np.max(np.abs(dl))), 1e-300))
        t = t + scale * dt
        ell = ell + scale * dl
    raise P4SolveError("joint Newton did not converge")


def solve_p4(
    values: dict[str, Any],
    server: np.ndarray,
    num_layers: int,
    upload_delay: bool,
    start: tuple[np.ndarray, np.ndarray],
    need_alpha: bool = True,
    warm: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """P4's minimiser without a solver call (same values and units as :meth:`P4Problem.solve`).

    Args:
        values: P4's parameter values (the keys of :class:`P4Problem`'s Parameters).
        server: each user's server (the association ``values["assoc"]`` encodes).
        num_layers: Upsilon.
        upload_delay: whether the upload-delay term is in P4.
        start: (p, b) in solver units of the current iterate (starting points only).
        need_alpha: False skips alpha (left at its lower bound), when the caller replaces it.
        warm: the multipliers, SNRs and power bounds of the previous solve in the same AO run,
            updated in place: where to start the searches (each ends at its tolerance, ~1e-13
            relative, wherever it starts).

    Returns:
        {"alpha", "p", "b", "fu", "fe", "r"} in solver units.

    Raises:
        P4SolveError: a search did not converge (ill-conditioned round).
    """
    v = values
    lo, hi = (
        np.asarray(v["alpha_lo"], dtype=np.float64),
        np.asarray(v["alpha_hi"], dtype=np.float64),
    )
    alpha = (
        _p4_alpha(v["z"], v["q"], v["sc"], float(num_layers), lo, hi) if need_alpha else lo.copy()
    )
    fu = _p4_user_freq(v["a1"], v["a2"], v["fu_max"])
    fe = _p4_edge_freq(v["b1"], v["b2"], server, v["fe_max"], warm)
    d1 = v["d1"] if upload_delay else np.zeros_like(v["e1"])
    try:
        p, b, r = _p4_upload_newton(
            v, d1, server, v["b_max"], start, warm if warm is not None else {}
        )
    except P4SolveError:
        if warm is not None:
            warm.clear()
        p, b, r = _p4_upload(v, d1, server, v["b_max"], start)
    return {"alpha": alpha, "p": p, "b": b, "fu": fu, "fe": fe, "r": r}


# --------------------------------------------------------------------------- helpers
@dataclass
class AOResult:
    """Result of an alternating optimisation: the decision and its objective history."""

    decision: MECDecision
    cost: float
    history: list[float] = field(default_factory=list)
    iterations: int = 0
    solve_time: float = 0.0
    mean_power_fraction: list[float] = field(default_factory=list)
    failed: bool = False


def _coefficients(
    inst: MECInstance,
    weights: tuple[float, float, float],
    server: np.ndarray,
    price: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Instance constants of P4 in solver units (per user at its server).

    ``price``: the device-energy price of ``reward.per_user_cost`` (omega_e + lambda_n weights
    the device compute energy; the upload energy's weight is ``"we_dev"``)."""
    we, wt, ws = weights
    we_dev: Any = we if price is None else we + np.asarray(price, dtype=np.float64)
    psi = inst.psi
    cdu = inst.cores_user * inst.flops_user
    cde = inst.cores_edge[server] * inst.flops_edge[server]
    s = inst.bits / _BITS_PER_MBIT
    g = inst.gain[np.arange(inst.num_users), server]
    return {
        # A(F) = c1/F + c2 F^2 with F in GHz
        "c1": wt * psi / (_HZ_PER_GHZ * cdu),
        "c2": we_dev * inst.kappa_user * _HZ_PER_GHZ**2 * psi / cdu,
        "k1": wt * psi / (_HZ_PER_GHZ * cde),
        "k2": we * inst.kappa_edge * _HZ_PER_GHZ**2 * psi / cde,
        "s": s,
        "c": g / (inst.noise_psd * _HZ_PER_MHZ),
        "sc": ws * 2.0 * inst.lipschitz**2 * inst.num_layers / inst.samples,
        "we_dev": we_dev,
    }


def to_decision(inst: MECInstance, server: np.ndarray, sol: dict[str, np.ndarray]) -> MECDecision:
    """Solver-unit variables to an SI decision (each resource at most its own cap: a value at
    its bound in solver units can land an ulp above it in SI units)."""
    server = np.asarray(server, dtype=np.int64)
    return MECDecision(
        alpha=sol["alpha"].copy(),
        server=server,
        power=sol["p"].copy(),
        bandwidth=np.minimum(sol["b"] * _HZ_PER_MHZ, inst.b_max[server]),
        freq_user=np.minimum(sol["fu"] * _HZ_PER_GHZ, inst.f_user_max),
        freq_edge=np.minimum(sol["fe"] * _HZ_PER_GHZ, inst.f_edge_max[server]),
    )


def cost_of(
    inst: MECInstance,
    dec: MECDecision,
    weights: tuple[float, float, float],
    upload_delay: bool,
    price: np.ndarray | None = None,
) -> float:
    """P3's objective H (the env's weighted cost, continuous alpha allowed); with ``price``,
    plus the priced device energy (``reward.per_user_cost``)."""
    return R.weighted_cost(inst, dec, weights, include_upload_delay=upload_delay, price=price)


def equal_share_decision(inst: MECInstance, server: np.ndarray, alpha: Any = None) -> MECDecision:
    """A feasible start: alpha = Upsilon/2 (or given), p = p_max, f = f_max, equal shares."""
    server = np.asarray(server, dtype=np.int64)
    count = np.bincount(server, minlength=inst.num_servers).astype(np.float64)
    if alpha is None:
        alpha = np.full(inst.num_users, inst.num_layers / 2.0)
    return MECDecision(
        alpha=np.asarray(alpha, dtype=np.float64).copy(),
        server=server,
        power=inst.p_max.copy(),
        bandwidth=inst.b_max[server] / count[server],
        freq_user=inst.f_user_max.copy(),
        freq_edge=inst.f_edge_max[server] / count[server],
    )


def _fixed_values(
    inst: MECInstance,
    server: np.ndarray,
    co: dict[str, np.ndarray],
    alpha_lo: np.ndarray,
    alpha_hi: np.ndarray,
) -> dict[str, Any]:
    assoc = np.zeros((inst.num_servers, inst.num_users))
    assoc[server, np.arange(inst.num_users)] = 1.0
    return {
        "sc": co["sc"],
        "p_max": inst.p_max,
        "p_lo": MIN_FRACTION * inst.p_max,
        "fu_max": inst.f_user_max / _HZ_PER_GHZ,
        "alpha_lo": alpha_lo,
        "alpha_hi": alpha_hi,
        "assoc": assoc,
        "b_max": inst.b_max / _HZ_PER_MHZ,
        "fe_max": inst.f_edge_max / _HZ_PER_GHZ,
    }


def _aux_values(
    dec: MECDecision,
    co: dict[str, np.ndarray],
    weights: tuple[float, float, float],
    num_layers: int,
    noise_psd: float,
    gain: np.ndarray,
) -> dict[str, np.ndarray]:
    """The quadratic-transform auxiliaries z, v, q at ``dec`` (optimal for fixed ``dec``)."""
    _, wt, _ = weights
    we: Any = co["we_dev"]  # the upload energy is device energy
    fu = dec.freq_user / _HZ_PER_GHZ
    fe = dec.freq_edge / _HZ_PER_GHZ
    alpha = dec.alpha
    rest = num_layers - alpha
    A = co["c1"] / fu + co["c2"] * fu**2
    B = co["k1"] / fe + co["k2"] * fe**2
    rate = F.uplink_rate(dec.bandwidth, dec.power, gain, noise_psd) / _BITS_PER_MBIT
    z = A / (2.0 * alpha)
    q = B / (2.0 * rest)
    v = 1.0 / (2.0 * dec.power * co["s"] * rate)
    r0 = rate  # the rate variable is in units of the current rate (conditioning)
    return {
        "z": z,
        "a1": co["c1"] / (2 * np.sqrt(z)),
        "a2": co["c2"] / (2 * np.sqrt(z)),
        "q": q,
        "b1": co["k1"] / (2 * np.sqrt(q)),
        "b2": co["k2"] / (2 * np.sqrt(q)),
        "e1": we * co["s"] ** 2 * v,
        "e2": we / (4.0 * v * r0**2),
        "d1": wt * co["s"] / r0,
        "u": 1.0 / r0,
        "c": co["c"] / r0,
    }


# --------------------------------------------------------------------------- FP-AO (P3)
def fp_ao(
    inst: MECInstance,
    weights: tuple[float, float, float],
    server: np.ndarray,
    *,
    upload_delay: bool = True,
    init: MECDecision | None = None,
    fix_alpha: np.ndarray | None = None,
    tol: float = 1e-9,
    max_iter: int = 200,
    compiled: bool = True,
    alpha_step: bool = True,
    price: np.ndarray | None = None,
    backend: str | None = None,
) -> AOResult:
    """Fractional-programming AO for P3(chi) (MEC Section 4.1, Proposition 1).

    Alternates the closed-form auxiliaries (z, v, q) with the convex P4 until the relative
    change of H is below ``tol``. ``fix_alpha`` pins alpha (used after rounding and by the
    resource-only steps). ``backend`` (default :func:`current_backend`): ``"exact"`` solves P4
    with :func:`solve_p4` (no solver call; the conic solver only where it fails to converge),
    ``"cvxpy"`` with :class:`P4Problem`, compiled once, or built afresh every iteration with
    ``compiled=False`` (benchmarks).

    ``alpha_step`` (default): after each P4 solve, alpha is replaced by its exact minimiser
    given the new resources (:func:`optimal_alpha`, closed form). Each of the two steps lowers H,
    so the iteration stays monotone and its fixed points are P3's stationary points as before;
    it removes the slow alpha-frequency mode of the quadratic transform (z, q couple alpha to
    f only through the previous iterate): on the paper-size instance (N = 50, M = 10, seed 1)
    the relative gap to the limit falls below 1e-8 in 20 iterations instead of ~100, and the
    end point is as low or lower. ``alpha_step=False`` is the paper's iteration literally.
    ``price`` (N,): minimise the cost plus the priced device energy (``reward.per_user_cost``;
    the drift-plus-penalty policies); ``AOResult.cost`` is then that priced cost.
    """
    t0 = time.perf_counter()
    server = np.asarray(server, dtype=np.int64)
    n = inst.num_users
    backend = _check_backend(backend if backend is not None else _BACKEND[0])
    if not compiled:
        backend = "cvxpy"
    exact = backend == "exact"
    need_alpha = not (alpha_step and fix_alpha is None)
    prob = None
    warm: dict[str, Any] = {}  # the exact solves' multipliers, the next solve's start
    co = _coefficients(inst, weights, server, price)
    g = inst.gain[np.arange(n), server]
    if fix_alpha is not None:
        lo = hi = np.asarray(fix_alpha, dtype=np.float64)
    else:
        lo, hi = np.ones(n), np.full(n, inst.num_layers - 1.0)
    dec = init if init is not None else equal_share_decision(inst, server)
    dec = MECDecision(
        alpha=np.clip(dec.alpha, lo, hi),
        server=server,
        power=dec.power,
        bandwidth=dec.bandwidth,
        freq_user=dec.freq_user,
        freq_edge=dec.freq_edge,
    )
    fixed = _fixed_values(inst, server, co, lo, hi)
    cost = cost_of(inst, dec, weights, upload_delay, price)
    history = [cost]
    pf = [float(np.mean(dec.power / inst.p_max))]
    it = 0
    failed = False
    for it in range(1, max_iter + 1):  # noqa: B007 (read after the loop)
        values = dict(fixed)
        values.update(_aux_values(dec, co, weights, inst.num_layers, inst.noise_psd, g))
        sol = None
        if exact:
            try:
                sol = solve_p4(
                    values,
                    server,
                    inst.num_layers,
                    upload_delay,
                    (dec.power, dec.bandwidth / _HZ_PER_MHZ),
                    need_alpha,
                    warm,
                )
            except P4SolveError:
                sol = None
        if sol is None:
            if not compiled:
                prob = P4Problem(n, inst.num_servers, inst.num_layers, upload_delay)
            elif prob is None:
                prob = get_p4(n, inst.num_servers, inst.num_layers, upload_delay)
            try:
                sol = prob.solve(values)
            except RuntimeError:  # every solver failed (extremely ill-conditioned round): stop
                failed = True
                break
        sol["alpha"] = np.clip(sol["alpha"], lo, hi)
        sol["p"] = np.clip(sol["p"], MIN_FRACTION * inst.p_max, inst.p_max)
        sol["fu"] = np.clip(sol["fu"], 1e-9, inst.f_user_max / _HZ_PER_GHZ)
        sol["b"] = np.maximum(sol["b"], 1e-12)
        sol["fe"] = np.maximum(sol["fe"], 1e-12)
        new = to_decision(inst, server, sol)
        if alpha_step and fix_alpha is None:
            new = MECDecision(
                alpha=_alpha_given(co, new, inst.num_layers),
                server=server,
                power=new.power,
                bandwidth=new.bandwidth,
                freq_user=new.freq_user,
                freq_edge=new.freq_edge,
            )
        new_cost = cost_of(inst, new, weights, upload_delay, price)
        history.append(new_cost)
        pf.append(float(np.mean(new.power / inst.p_max)))
        if new_cost > cost:  # only solver inaccuracy can do this (Proposition 1): keep the best
            break
        dec = new
        if abs(cost - new_cost) <= tol * max(abs(new_cost), 1e-300):
            cost = new_cost
            break
        cost = new_cost
    return AOResult(
        decision=dec,
        cost=cost,
        history=history,
        iterations=it,
        solve_time=time.perf_counter() - t0,
        mean_power_fraction=pf,
        failed=failed,
    )


def round_alpha(
    inst: MECInstance,
    weights: tuple[float, float, float],
    res: AOResult,
    *,
    upload_delay: bool = True,
    tol: float = 1e-7,
    price: np.ndarray | None = None,
) -> AOResult:
    """Round alpha to the nearest integer and re-solve the continuous part (MEC Section 4.1)."""
    alpha = np.clip(np.round(res.decision.alpha), 1, inst.num_layers - 1)
    dec = res.decision
    init = MECDecision(
        alpha=alpha,
        server=dec.server,
        power=dec.power,
        bandwidth=dec.bandwidth,
        freq_user=dec.freq_user,
        freq_edge=dec.freq_edge,
    )
    out = fp_ao(
        inst,
        weights,
        dec.server,
        upload_delay=upload_delay,
        init=init,
        fix_alpha=alpha,
        tol=tol,
        price=price,
    )
    out.solve_time += res.solve_time
    out.iterations += res.iterations
    return out


# --------------------------------------------------------------------------- classical AO
def optimal_alpha(
    inst: MECInstance,
    weights: tuple[float, float, float],
    dec: MECDecision,
    price: np.ndarray | None = None,
) -> np.ndarray:
    """Exact minimiser over alpha in [1, Upsilon - 1] with all resources fixed (closed form).

    The cost is alpha A + (Upsilon - alpha) B + omega_s 2 L^2 Upsilon / (k (Upsilon - alpha));
    the stationary point is Upsilon - alpha = sqrt(sc / (B - A)) when B > A, else alpha = 1.
    ``price``: the device compute energy weighted omega_e + lambda_n (``reward.per_user_cost``).
    """
    return _alpha_given(_coefficients(inst, weights, dec.server, price), dec, inst.num_layers)


def _alpha_given(co: dict[str, np.ndarray], dec: MECDecision, num_layers: int) -> np.ndarray:
    """:func:`optimal_alpha` with the instance's coefficients (:func:`_coefficients`) given."""
    fu = dec.freq_user / _HZ_PER_GHZ
    fe = dec.freq_edge / _HZ_PER_GHZ
    A = co["c1"] / fu + co["c2"] * fu**2
    B = co["k1"] / fe + co["k2"] * fe**2
    gap = B - A
    with np.errstate(divide="ignore", invalid="ignore"):
        rest = np.where(gap > 0, np.sqrt(co["sc"] / np.where(gap > 0, gap, 1.0)), np.inf)
    return np.clip(num_layers - rest, 1.0, num_layers - 1.0)


def classical_ao(
    inst: MECInstance,
    weights: tuple[float, float, float],
    server: np.ndarray,
    *,
    upload_delay: bool = True,
    max_iter: int = 20,
    tol: float = 1e-6,
) -> AOResult:
    """Block-coordinate AO (the literature's usual method, MEC Section 5.2).

    Alternates the offloading decision (alpha, exact closed form with resources fixed) and
    the resources (P4's AO with alpha pinned) until the cost stops decreasing.
    """
    t0 = time.perf_counter()
    dec = equal_share_decision(inst, server)
    cost = cost_of(inst, dec, weights, upload_delay)
    history = [cost]
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (read after the loop)
        alpha = optimal_alpha(inst, weights, dec)
        dec = MECDecision(
            alpha=alpha,
            server=dec.server,
            power=dec.power,
            bandwidth=dec.bandwidth,
            freq_user=dec.freq_user,
            freq_edge=dec.freq_edge,
        )
        res = fp_ao(
            inst, weights, server, upload_delay=upload_delay, init=dec, fix_alpha=alpha, tol=1e-7
        )
        dec = res.decision
        new_cost = res.cost
        history.append(new_cost)
        if abs(cost - new_cost) <= tol * abs(new_cost):
            cost = new_cost
            break
        cost = new_cost
    return AOResult(
        decision=dec, cost=cost, history=history, iterations=it, solve_time=time.perf_counter() - t0
    )


# --------------------------------------------------------------------------- association
def available_rates(inst: MECInstance, power: np.ndarray, count: np.ndarray) -> np.ndarray:
    """(N, M) rate each user would get joining each server with an equal share b_m/(n_m + 1)."""
    b = inst.b_max / (count + 1.0)
    return F.uplink_rate(b[None, :], power[:, None], inst.gain, inst.noise_psd)


def greedy_association(inst: MECInstance) -> np.ndarray:
    """MEC Section 5.3 baseline: each user joins the server with the highest available rate.

    Users are taken strongest first (by their best gain); "available" = the rate at p_max with
    an equal share of the server's band among its users so far plus the newcomer.
    """
    count = np.zeros(inst.num_servers)
    server = np.zeros(inst.num_users, dtype=np.int64)
    order = np.argsort(-inst.gain.max(axis=1), kind="stable")
    for n in order:
        b = inst.b_max / (count + 1.0)
        r = F.uplink_rate(b, inst.p_max[n], inst.gain[n], inst.noise_psd)
        m = int(np.argmax(r))
        server[n] = m
        count[m] += 1
    return server


def random_association(inst: MECInstance, rng: np.random.Generator) -> np.ndarray:
    """MEC Section 5.3 benchmark: a uniformly random server per user."""
    return rng.integers(0, inst.num_servers, size=inst.num_users)


def pair_costs(
    inst: MECInstance,
    weights: tuple[float, float, float],
    dec: MECDecision,
    b_share: np.ndarray,
    f_share: np.ndarray,
    upload_delay: bool,
) -> np.ndarray:
    """c_nm: user n's cost at server m with its shares of m's band and GPU, alpha, p, f_n fixed.

    (The association-dependent part of P5's objective; the device compute and stability terms
    do not depend on the server and are left out.)
    """
    we, wt, _ = weights
    b = b_share[:, None] * inst.b_max[None, :]
    fe = f_share[:, None] * inst.f_edge_max[None, :]
    psi = inst.psi[:, None]
    rest = (inst.num_layers - dec.alpha)[:, None]
    rate = F.uplink_rate(b, dec.power[:, None], inst.gain, inst.noise_psd)
    bits = inst.bits[:, None]
    up = we * dec.power[:, None] * bits / rate + (wt * bits / rate if upload_delay else 0.0)
    cde = (inst.cores_edge * inst.flops_edge)[None, :]
    edge = rest * (wt * psi / (fe * cde) + we * inst.kappa_edge * fe**2 * psi / cde)
    return up + edge


def cccp_association(
    costs: np.ndarray,
    b_share: np.ndarray,
    f_share: np.ndarray,
    *,
    starts: list[np.ndarray],
    rho0: float | None = None,
    growth: float = 2.0,
    max_iter: int = 50,
) -> tuple[list[np.ndarray], list[int]]:
    """CCCP for P6 (MEC Section 4.2) with the budgets as capacities (docs/corrections.md fix).

    Each iteration solves the LP  min sum (c_nm + rho (1 - 2 chi^(i)_nm)) chi_nm  over
    chi in [0, 1], sum_m chi_nm = 1, sum_n chi_nm b_share_n <= 1, sum_n chi_nm f_share_n <= 1
    (HiGHS), raising rho by ``growth`` each iteration, until chi is binary and unchanged.
    Returns, per start, the binary association (server index per user; a fractional end is
    rounded to its largest entry) and the iterations used.
    """
    from scipy.optimize import linprog
    from scipy.sparse import identity, kron, vstack

    n, m = costs.shape
    a_eq = kron(identity(n), np.ones((1, m)), format="csr")  # sum_m chi_nm = 1
    a_b = kron(b_share[None, :], identity(m), format="csr")  # per server: sum_n chi b_n
    a_f = kron(f_share[None, :], identity(m), format="csr")
    a_ub = vstack([a_b, a_f], format="csr")
    b_ub = np.ones(2 * m)
    scale = float(np.mean(np.abs(costs))) or 1.0
    rho_start = rho0 if rho0 is not None else 0.01 * scale
    results, iters = [], []
    for chi0 in starts:
        chi = chi0.copy()
        rho = rho_start
        it = 0
        for it in range(1, max_iter + 1):  # noqa: B007 (read after the loop)
            c = (costs + rho * (1.0 - 2.0 * chi)).ravel()
            lp = linprog(
                c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.ones(n), bounds=(0, 1), method="highs"
            )
            if lp.status != 0:
                break
            new = lp.x.reshape(n, m)
            binary = np.all(np.minimum(new, 1 - new) < 1e-7)
            moved = np.max(np.abs(new - chi))
            chi = new
            if binary and moved < 1e-7:
                break
            rho *= growth
        results.append(np.argmax(chi, axis=1))
        iters.append(it)
    return results, iters


# --------------------------------------------------------------------------- CCCP on congestion
class CongestionQP:
    """The convex part of the association problem with congestion, compiled once (Clarabel).

    With alpha, p and f_n fixed and each server splitting its band and GPU by the square-root
    rule (the model of ``resources.heuristic_resource_rule``), the association-dependent cost is,
    per server m,

        (sum_n chi_nm u_nm)^2 + (sum_n chi_nm v_nm)^2 + sum_n chi_nm l_nm

    with the upload cost K_n / r_nm(b) (K_n = (omega_e p_n + omega_t) s_n) split as
    K_n ln2 / S_nm + K_n / (c_nm b) (S_nm = g_nm p_n / sigma^2: the rate saturates at S/ln 2 as
    b grows; c_nm makes the split exact at the server's current equal share): the first part
    goes to l_nm, the second gives u_nm^2 = K_n / (c_nm b_m^max) under the square-root rule;
    v_nm^2 = omega_t (Upsilon - alpha_n) psi_n / (C_m D_m f_m^max)
    (edge compute delay); l_nm also holds the edge compute energy at the server's typical
    share. This
    is convex in chi; CCCP adds the concave penalty rho sum chi (1 - chi) (MEC eq. 50),
    linearised at the current point (eq. 51), so each iteration is a convex QP.
    """

    def __init__(self, num_users: int, num_servers: int) -> None:
        import cvxpy as cp

        n, m = num_users, num_servers
        self.u = cp.Parameter((n, m), nonneg=True)
        self.v = cp.Parameter((n, m), nonneg=True)
        self.lin = cp.Parameter((n, m))
        self.chi = cp.Variable((n, m), nonneg=True)
        load_u = cp.sum(cp.multiply(self.u, self.chi), axis=0)
        load_v = cp.sum(cp.multiply(self.v, self.chi), axis=0)
        obj = (
            cp.sum_squares(load_u)
            + cp.sum_squares(load_v)
            + cp.sum(cp.multiply(self.lin, self.chi))
        )
        self.problem = cp.Problem(cp.Minimize(obj), [cp.sum(self.chi, axis=1) == 1, self.chi <= 1])

    def solve(self, u: np.ndarray, v: np.ndarray, lin: np.ndarray) -> np.ndarray:
        """Solve for the given coefficients; returns chi (N, M)."""
        import cvxpy as cp

        self.u.value, self.v.value, self.lin.value = u, v, lin
        # Clarabel (interior point, ~1e-8 in a few dozen iterations) is 4-10x faster here than
        # OSQP at eps 1e-9 and ends at the same associations (benchmarks/mec_solver_speed.py)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                self.problem.solve(solver="CLARABEL", warm_start=False)
            except cp.error.SolverError:
                pass
            if self.chi.value is None or self.problem.status not in (
                "optimal",
                "optimal_inaccurate",
            ):
                self.problem.solve(
                    solver="OSQP",
                    eps_abs=1e-9,
                    eps_rel=1e-9,
                    max_iter=20_000,
                    polishing=True,
                    warm_start=False,
                )
        return np.clip(np.asarray(self.chi.value), 0.0, 1.0)


class DirectCongestionQP:
    """:class:`CongestionQP`'s problem handed to Clarabel directly, its data built once per size.

    The same QP in the standard form Clarabel takes (min x'Px/2 + q'x, Ax + s = b, s in K),
    with x = (chi row by row, the loads sum_n u_nm chi_nm and sum_n v_nm chi_nm of each server):
    P = 2 on the loads, the loads' definitions and sum_m chi_nm = 1 as equalities, then
    0 <= chi <= 1, as cvxpy writes it (the upper bound is implied, and kept so that the
    interior-point path, and so the end point on a flat optimal face, is cvxpy's). Per solve
    only the entries of u and v in A and the linear cost in q are written; Clarabel's default
    settings, as cvxpy calls it. A solve that does not end optimal (to Clarabel's accuracy) is
    handed to :class:`CongestionQP` (cvxpy, with its OSQP fallback).
    """

    def __init__(self, num_users: int, num_servers: int) -> None:
        import clarabel
        import scipy.sparse as sp

        n, m = num_users, num_servers
        nm = n * m
        self.num_users, self.num_servers = n, m
        idx = np.arange(nm)
        user, srv = idx // m, idx % m
        # column of chi_nm: rows (load u of m, load v of m, user n's sum, chi >= 0, chi <= 1)
        rows_chi = np.stack(
            [srv, m + srv, 2 * m + user, 2 * m + n + idx, 2 * m + n + nm + idx], axis=1
        )
        vals_chi = np.stack(
            [np.zeros(nm), np.zeros(nm), np.ones(nm), -np.ones(nm), np.ones(nm)], axis=1
        )
        rows = np.concatenate([rows_chi.ravel(), np.arange(2 * m)])
        vals = np.concatenate([vals_chi.ravel(), np.ones(2 * m)])
        indptr = np.concatenate([np.arange(nm + 1) * 5, 5 * nm + 1 + np.arange(2 * m)])
        self.a = sp.csc_matrix((vals, rows, indptr), shape=(2 * m + n + 2 * nm, nm + 2 * m))
        self._u_at = 5 * idx  # where -u_nm and -v_nm sit in a.data
        self.b = np.concatenate([np.zeros(2 * m), np.ones(n), np.zeros(nm), np.ones(nm)])
        self.p = sp.csc_matrix(
            (
                np.full(2 * m, 2.0),
                nm + np.arange(2 * m),
                np.concatenate([np.zeros(nm + 1, dtype=np.int64), 1 + np.arange(2 * m)]),
            ),
            shape=(nm + 2 * m, nm + 2 * m),
        )
        self.cones = [clarabel.ZeroConeT(2 * m + n), clarabel.NonnegativeConeT(2 * nm)]
        self.settings = clarabel.DefaultSettings()
        self.settings.verbose = False
        self.q = np.zeros(nm + 2 * m)

    def solve(self, u: np.ndarray, v: np.ndarray, lin: np.ndarray) -> np.ndarray:
        """Solve for the given coefficients; returns chi (N, M)."""
        import clarabel

        n, m = self.num_users, self.num_servers
        a = self.a.copy()
        a.data[self._u_at] = -np.ravel(u)
        a.data[self._u_at + 1] = -np.ravel(v)
        q = self.q.copy()
        q[: n * m] = np.ravel(lin)
        res = clarabel.DefaultSolver(self.p, q, a, self.b, self.cones, self.settings).solve()
        if res.status not in (clarabel.SolverStatus.Solved, clarabel.SolverStatus.AlmostSolved):
            key = (n, m)
            if key not in _QP_CACHE:
                _QP_CACHE[key] = CongestionQP(n, m)
            return _QP_CACHE[key].solve(u, v, lin)
        return np.clip(np.asarray(res.x[: n * m]).reshape(n, m), 0.0, 1.0)


_QP_CACHE: dict[tuple[int, int], CongestionQP] = {}
#: chi above this is in the support guessed for the next CCCP iteration
_SUPPORT = 1e-6
_DIRECT_QP_CACHE: dict[tuple[int, int], DirectCongestionQP] = {}


def congestion_coefficients(
    inst: MECInstance,
    weights: tuple[float, float, float],
    dec: MECDecision,
    upload_delay: bool = True,
    price: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, l) of :class:`CongestionQP` at the current decision (alpha, p, f_n, loads);
    ``price``: the upload energy weighted omega_e + lambda_n (``reward.per_user_cost``)."""
    we, wt, _ = weights
    we_up: Any = we if price is None else we + np.asarray(price, dtype=np.float64)
    m = inst.num_servers
    count = np.maximum(np.bincount(dec.server, minlength=m), 1).astype(np.float64)
    b_typ = inst.b_max / count
    s_hz = inst.gain * dec.power[:, None] / inst.noise_psd  # g p / sigma^2 (Hz)
    inv_r = 1.0 / F.uplink_rate(b_typ[None, :], dec.power[:, None], inst.gain, inst.noise_psd)
    floor = LN2 / s_hz  # 1/r -> ln2 / (g p / sigma^2) as b -> infinity (rate saturates)
    # 1/r(b) ~ ln2 / S + 1/(c b), exact at the typical share: c from the typical share
    inv_c = np.maximum(inv_r - floor, 1e-300) * b_typ[None, :]
    k = (we_up * dec.power + (wt if upload_delay else 0.0)) * inst.bits
    u = np.sqrt(k[:, None] * inv_c / inst.b_max[None, :])
    rest = (inst.num_layers - dec.alpha)[:, None]
    cde = (inst.cores_edge * inst.flops_edge)[None, :]
    psi = inst.psi[:, None]
    v = np.sqrt(wt * rest * psi / (cde * inst.f_edge_max[None, :]))
    f_typ = (inst.f_edge_max / count)[None, :]
    if we > 0 and wt > 0:
        f_typ = np.minimum(f_typ, (wt / (2 * we * inst.kappa_edge)) ** (1.0 / 3.0))
    lin = we * rest * inst.kappa_edge * f_typ**2 * psi / cde + k[:, None] * floor
    return u, v, lin


def congestion_cost(u: np.ndarray, v: np.ndarray, lin: np.ndarray, server: np.ndarray) -> float:
    """The congestion model's cost of a binary association (server index per user)."""
    n, m = u.shape
    idx = np.arange(n)
    su = np.bincount(server, weights=u[idx, server], minlength=m)
    sv = np.bincount(server, weights=v[idx, server], minlength=m)
    return float(np.sum(su**2) + np.sum(sv**2) + np.sum(lin[idx, server]))


def vertex_is_unique_minimiser(
    u: np.ndarray, v: np.ndarray, lin: np.ndarray, server: np.ndarray, margin: float = 1e-9
) -> bool:
    """Whether the assignment ``server`` (one server per user) is the unique minimiser of the
    congestion QP (:class:`CongestionQP`) with linear cost ``lin``.

    The objective's gradient at chi is c_nm = lin_nm + 2 u_nm U_m + 2 v_nm V_m (U, V: the
    servers' loads); chi minimises the convex QP over the product of simplices iff every user's
    own server has the least c_nm (KKT). The gradient is the same at every minimiser (the
    loads are unique: the objective is strictly convex in them), so where every other server's
    c_nm is larger by more than ``margin`` x max |c|, every minimiser puts each user on its own
    server: the assignment is the only one.
    """
    n, m = u.shape
    rows = np.arange(n)
    loads_u = np.bincount(server, weights=u[rows, server], minlength=m)
    loads_v = np.bincount(server, weights=v[rows, server], minlength=m)
    c = lin + 2.0 * u * loads_u + 2.0 * v * loads_v
    gap = c - c[rows, server][:, None]
    gap[rows, server] = np.inf
    return bool(np.min(gap) > margin * np.max(np.abs(c)))


def congestion_qp_on_support(
    u: np.ndarray,
    v: np.ndarray,
    lin: np.ndarray,
    support: np.ndarray,
    margin: float = 1e-6,
    tries: int = 3,
) -> np.ndarray | None:
    """The congestion QP's minimiser if it is unique with strict margins, found on the
    support ``support`` or a few active-set steps from it; else None (the caller solves the
    QP).

    On a support S (each user's servers, at least one each) the KKT conditions are linear:
    c_nm = lin_nm + 2 u_nm U_m + 2 v_nm V_m = pi_n on S, sum_m chi_nm = 1, and the loads
    U_m = sum_n u_nm chi_nm, V_m likewise (users with one server in S are fixed at it, so the
    system holds only the users split between servers). Its solution is the minimiser, and the
    only one, where the system is nonsingular, every chi on S exceeds ``margin`` and every
    server off S has c_nm - pi_n > ``margin`` x max |c| (the gradient, and so the reduced costs,
    is the same at every minimiser: they all lie on S and solve the same nonsingular system);
    the interior-point solver ends at the same point to its accuracy. Where a chi on S falls
    to ``margin`` or below, S loses it; where a server off S has a negative reduced cost, S
    gains it; up to ``tries`` supports are tried.
    """
    for _ in range(tries):
        chi, drop, add = _qp_on_support(u, v, lin, support, margin)
        if chi is not None or (drop is None and add is None):
            return chi
        support = support.copy()
        if drop is not None:
            support[drop] = False
        if add is not None:
            support[add] = True
    return None


def _qp_on_support(
    u: np.ndarray, v: np.ndarray, lin: np.ndarray, support: np.ndarray, margin: float
) -> tuple[np.ndarray | None, Any, Any]:
    """One support of :func:`congestion_qp_on_support`: (chi or None, entries to drop, entries
    to add) (None, None, None where no step applies)."""
    n, m = u.shape
    rows = np.arange(n)
    k_n = support.sum(axis=1)
    if np.any(k_n == 0):
        return None, None, None
    single = k_n == 1
    split = np.flatnonzero(~single)
    if np.sum(k_n[split] - 1) > 2 * m:  # more free directions than load equations: not unique
        return None, None, None
    chi = np.zeros((n, m))
    s_fix = np.argmax(support, axis=1)
    chi[rows[single], s_fix[single]] = 1.0
    kkt = None
    if split.size:
        base_u = np.bincount(s_fix[single], weights=u[rows[single], s_fix[single]], minlength=m)
        base_v = np.bincount(s_fix[single], weights=v[rows[single], s_fix[single]], minlength=m)
        pn, pm = np.nonzero(support[split])  # entries of the split users, by user
        users = split[pn]
        k, f = pn.size, split.size
        size = k + f + 2 * m
        kkt = np.zeros((size, size))
        rhs = np.zeros(size)
        e = np.arange(k)
        # stationarity: 2 u U_m + 2 v V_m - pi_n = -lin (columns: chi | pi | U | V)
        kkt[e, k + f + pm] = 2.0 * u[users, pm]
        kkt[e, k + f + m + pm] = 2.0 * v[users, pm]
        kkt[e, k + pn] = -1.0
        rhs[:k] = -lin[users, pm]
        kkt[k + pn, e] = 1.0  # sum_m chi = 1
        rhs[k : k + f] = 1.0
        r = k + f + np.arange(m)
        kkt[r, k + f + np.arange(m)] = 1.0  # U_m - sum u chi = the fixed users' load
        kkt[k + f + pm, e] = -u[users, pm]
        rhs[r] = base_u
        kkt[r + m, k + f + m + np.arange(m)] = 1.0
        kkt[k + f + m + pm, e] = -v[users, pm]
        rhs[r + m] = base_v
        try:
            sol = np.linalg.solve(kkt, rhs)
        except np.linalg.LinAlgError:
            return None, None, None
        x = sol[:k]
        if not np.all(np.isfinite(x)):
            return None, None, None
        if np.min(x) <= margin:
            drop = np.zeros((n, m), dtype=bool)
            drop[users[x <= margin], pm[x <= margin]] = True
            return None, drop, None
        chi[users, pm] = x
    loads_u = np.sum(u * chi, axis=0)
    loads_v = np.sum(v * chi, axis=0)
    c = lin + 2.0 * u * loads_u + 2.0 * v * loads_v
    pi = np.min(np.where(support, c, np.inf), axis=1)
    gap = np.where(support, np.inf, c - pi[:, None])
    scale = np.max(np.abs(c))
    spread = np.max(np.where(support, c, -np.inf), axis=1) - pi  # equal on S (to rounding)
    if np.max(spread) > 1e-9 * scale:
        return None, None, None
    if np.min(gap) <= margin * scale:
        add = gap < 0
        return None, None, (add if add.any() else None)
    if kkt is not None and np.linalg.cond(kkt) > 1e12:
        return None, None, None
    return chi, None, None


def cccp_congestion(
    u: np.ndarray,
    v: np.ndarray,
    lin: np.ndarray,
    *,
    starts: list[np.ndarray],
    rho0: float | None = None,
    growth: float = 2.0,
    max_iter: int = 60,
) -> tuple[list[np.ndarray], list[int]]:
    """CCCP (MEC Section 4.2) on the congestion model: a sequence of convex QPs.

    Iteration i solves  min convex(chi) + rho_i sum_nm (1 - 2 chi^(i)_nm) chi_nm  over the
    relaxed assignment polytope, with rho_i = rho0 growth^i, until chi is binary and unchanged.
    Returns per start the association (argmax of the final chi) and the iterations used.

    With the ``"exact"`` backend an iteration whose QP is uniquely minimised by the assignment
    that rounds the current chi (:func:`vertex_is_unique_minimiser`, an exact check) takes that
    assignment without a solver call: the solver would return it to its accuracy, and the
    iterations that follow stay there (the penalty only raises its margins), so the
    associations returned are the same.
    """
    n, m = u.shape
    key = (n, m)
    qp: CongestionQP | DirectCongestionQP
    exact = _BACKEND[0] == "exact"
    if exact:
        if key not in _DIRECT_QP_CACHE:
            _DIRECT_QP_CACHE[key] = DirectCongestionQP(n, m)
        qp = _DIRECT_QP_CACHE[key]
    else:
        if key not in _QP_CACHE:
            _QP_CACHE[key] = CongestionQP(n, m)
        qp = _QP_CACHE[key]
    scale = float(np.mean(lin) + np.mean(u) ** 2 + np.mean(v) ** 2) or 1.0
    out, iters = [], []
    rows = np.arange(n)
    for chi0 in starts:
        chi = chi0.copy()
        rho = rho0 if rho0 is not None else 1e-3 * scale
        it = 0
        for it in range(1, max_iter + 1):  # noqa: B007 (read after the loop)
            lin_i = lin + rho * (1.0 - 2.0 * chi)
            vertex = np.argmax(chi, axis=1)
            found = None
            if exact and vertex_is_unique_minimiser(u, v, lin_i, vertex):
                found = np.zeros((n, m))
                found[rows, vertex] = 1.0
            elif exact:
                found = congestion_qp_on_support(u, v, lin_i, chi > _SUPPORT)
            new = found if found is not None else qp.solve(u, v, lin_i)
            binary = bool(np.all(np.minimum(new, 1 - new) < 1e-6))
            moved = float(np.max(np.abs(new - chi)))
            chi = new
            if binary and moved < 1e-6:
                break
            rho *= growth
        out.append(np.argmax(chi, axis=1))
        iters.append(it)
    return out, iters
