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
"""

from __future__ import annotations

import math
import time
import warnings
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


# --------------------------------------------------------------------------- P4 in cvxpy
class P4Problem:
    """P4 for N users and M servers, built once with cvxpy Parameters and re-solved.

    One instance serves any association, instance values and auxiliaries of that size; alpha
    can be pinned (lower = upper bound) for the resource-only steps.
    """

    def __init__(self, num_users: int, num_servers: int, num_layers: int,
                 upload_delay: bool = True) -> None:
        import cvxpy as cp

        n, m = num_users, num_servers
        self.num_users, self.num_servers, self.upload_delay = n, m, upload_delay
        self.num_layers = num_layers
        P = {name: cp.Parameter(n, nonneg=True, name=name) for name in (
            "z", "a1", "a2", "q", "b1", "b2", "e1", "e2", "d1", "sc", "c", "u", "p_max", "p_lo",
            "fu_max", "alpha_lo", "alpha_hi")}
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
            alpha >= P["alpha_lo"], alpha <= P["alpha_hi"],
            p >= P["p_lo"], p <= P["p_max"],
            fu <= P["fu_max"],
            P["assoc"] @ b <= P["b_max"],
            P["assoc"] @ fe <= P["fe_max"],
            r <= -cp.rel_entr(cp.multiply(P["u"], b),
                              cp.multiply(P["u"], b) + cp.multiply(P["c"], p)) / LN2,
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
            raise RuntimeError(f"P4 solve failed with status {self.problem.status} after "
                               f"trying {SOLVER_CHAIN}")
        return {k: np.asarray(v.value, dtype=np.float64) for k, v in self.vars.items()}


_CACHE: dict[tuple[int, int, int, bool], P4Problem] = {}


def get_p4(num_users: int, num_servers: int, num_layers: int, upload_delay: bool) -> P4Problem:
    """The compiled-once P4 of this size (cached per process)."""
    key = (num_users, num_servers, num_layers, upload_delay)
    if key not in _CACHE:
        _CACHE[key] = P4Problem(*key)
    return _CACHE[key]


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


def _coefficients(inst: MECInstance, weights: tuple[float, float, float],
                  server: np.ndarray, price: np.ndarray | None = None) -> dict[str, np.ndarray]:
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


def to_decision(inst: MECInstance, server: np.ndarray, sol: dict[str, np.ndarray]
                ) -> MECDecision:
    """Solver-unit variables to an SI decision."""
    return MECDecision(alpha=sol["alpha"].copy(), server=np.asarray(server, dtype=np.int64),
                       power=sol["p"].copy(), bandwidth=sol["b"] * _HZ_PER_MHZ,
                       freq_user=sol["fu"] * _HZ_PER_GHZ, freq_edge=sol["fe"] * _HZ_PER_GHZ)


def cost_of(inst: MECInstance, dec: MECDecision, weights: tuple[float, float, float],
            upload_delay: bool, price: np.ndarray | None = None) -> float:
    """P3's objective H (the env's weighted cost, continuous alpha allowed); with ``price``,
    plus the priced device energy (``reward.per_user_cost``)."""
    return R.weighted_cost(inst, dec, weights, include_upload_delay=upload_delay, price=price)


def equal_share_decision(inst: MECInstance, server: np.ndarray, alpha: Any = None
                         ) -> MECDecision:
    """A feasible start: alpha = Upsilon/2 (or given), p = p_max, f = f_max, equal shares."""
    server = np.asarray(server, dtype=np.int64)
    count = np.bincount(server, minlength=inst.num_servers).astype(np.float64)
    if alpha is None:
        alpha = np.full(inst.num_users, inst.num_layers / 2.0)
    return MECDecision(alpha=np.asarray(alpha, dtype=np.float64).copy(), server=server,
                       power=inst.p_max.copy(),
                       bandwidth=inst.b_max[server] / count[server],
                       freq_user=inst.f_user_max.copy(),
                       freq_edge=inst.f_edge_max[server] / count[server])


def _fixed_values(inst: MECInstance, server: np.ndarray, co: dict[str, np.ndarray],
                  alpha_lo: np.ndarray, alpha_hi: np.ndarray) -> dict[str, Any]:
    assoc = np.zeros((inst.num_servers, inst.num_users))
    assoc[server, np.arange(inst.num_users)] = 1.0
    return {
        "sc": co["sc"], "p_max": inst.p_max, "p_lo": MIN_FRACTION * inst.p_max,
        "fu_max": inst.f_user_max / _HZ_PER_GHZ, "alpha_lo": alpha_lo, "alpha_hi": alpha_hi,
        "assoc": assoc, "b_max": inst.b_max / _HZ_PER_MHZ,
        "fe_max": inst.f_edge_max / _HZ_PER_GHZ,
    }


def _aux_values(dec: MECDecision, co: dict[str, np.ndarray], weights: tuple[float, float, float],
                num_layers: int, noise_psd: float, gain: np.ndarray) -> dict[str, np.ndarray]:
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
        "z": z, "a1": co["c1"] / (2 * np.sqrt(z)), "a2": co["c2"] / (2 * np.sqrt(z)),
        "q": q, "b1": co["k1"] / (2 * np.sqrt(q)), "b2": co["k2"] / (2 * np.sqrt(q)),
        "e1": we * co["s"] ** 2 * v, "e2": we / (4.0 * v * r0**2),
        "d1": wt * co["s"] / r0, "u": 1.0 / r0, "c": co["c"] / r0,
    }


# --------------------------------------------------------------------------- FP-AO (P3)
def fp_ao(inst: MECInstance, weights: tuple[float, float, float], server: np.ndarray, *,
          upload_delay: bool = True, init: MECDecision | None = None,
          fix_alpha: np.ndarray | None = None, tol: float = 1e-9, max_iter: int = 200,
          compiled: bool = True, alpha_step: bool = True,
          price: np.ndarray | None = None) -> AOResult:
    """Fractional-programming AO for P3(chi) (MEC Section 4.1, Proposition 1).

    Alternates the closed-form auxiliaries (z, v, q) with the convex P4 until the relative
    change of H is below ``tol``. ``fix_alpha`` pins alpha (used after rounding and by the
    resource-only steps). ``compiled=False`` builds P4 afresh every iteration (benchmark).

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
    prob = get_p4(n, inst.num_servers, inst.num_layers, upload_delay) if compiled else None
    co = _coefficients(inst, weights, server, price)
    g = inst.gain[np.arange(n), server]
    if fix_alpha is not None:
        lo = hi = np.asarray(fix_alpha, dtype=np.float64)
    else:
        lo, hi = np.ones(n), np.full(n, inst.num_layers - 1.0)
    dec = init if init is not None else equal_share_decision(inst, server)
    dec = MECDecision(alpha=np.clip(dec.alpha, lo, hi), server=server, power=dec.power,
                      bandwidth=dec.bandwidth, freq_user=dec.freq_user, freq_edge=dec.freq_edge)
    fixed = _fixed_values(inst, server, co, lo, hi)
    cost = cost_of(inst, dec, weights, upload_delay, price)
    history = [cost]
    pf = [float(np.mean(dec.power / inst.p_max))]
    it = 0
    failed = False
    for it in range(1, max_iter + 1):  # noqa: B007 (read after the loop)
        values = dict(fixed)
        values.update(_aux_values(dec, co, weights, inst.num_layers, inst.noise_psd, g))
        p4 = prob if compiled else P4Problem(n, inst.num_servers, inst.num_layers, upload_delay)
        try:
            sol = p4.solve(values)  # type: ignore[union-attr]
        except RuntimeError:  # every solver failed (extremely ill-conditioned round): stop here
            failed = True
            break
        sol["alpha"] = np.clip(sol["alpha"], lo, hi)
        sol["p"] = np.clip(sol["p"], MIN_FRACTION * inst.p_max, inst.p_max)
        sol["fu"] = np.clip(sol["fu"], 1e-9, inst.f_user_max / _HZ_PER_GHZ)
        sol["b"] = np.maximum(sol["b"], 1e-12)
        sol["fe"] = np.maximum(sol["fe"], 1e-12)
        new = to_decision(inst, server, sol)
        if alpha_step and fix_alpha is None:
            new = MECDecision(alpha=optimal_alpha(inst, weights, new, price), server=server,
                              power=new.power, bandwidth=new.bandwidth,
                              freq_user=new.freq_user, freq_edge=new.freq_edge)
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
    return AOResult(decision=dec, cost=cost, history=history, iterations=it,
                    solve_time=time.perf_counter() - t0, mean_power_fraction=pf, failed=failed)


def round_alpha(inst: MECInstance, weights: tuple[float, float, float], res: AOResult, *,
                upload_delay: bool = True, tol: float = 1e-7,
                price: np.ndarray | None = None) -> AOResult:
    """Round alpha to the nearest integer and re-solve the continuous part (MEC Section 4.1)."""
    alpha = np.clip(np.round(res.decision.alpha), 1, inst.num_layers - 1)
    dec = res.decision
    init = MECDecision(alpha=alpha, server=dec.server, power=dec.power, bandwidth=dec.bandwidth,
                       freq_user=dec.freq_user, freq_edge=dec.freq_edge)
    out = fp_ao(inst, weights, dec.server, upload_delay=upload_delay, init=init,
                fix_alpha=alpha, tol=tol, price=price)
    out.solve_time += res.solve_time
    out.iterations += res.iterations
    return out


# --------------------------------------------------------------------------- classical AO
def optimal_alpha(inst: MECInstance, weights: tuple[float, float, float],
                  dec: MECDecision, price: np.ndarray | None = None) -> np.ndarray:
    """Exact minimiser over alpha in [1, Upsilon - 1] with all resources fixed (closed form).

    The cost is alpha A + (Upsilon - alpha) B + omega_s 2 L^2 Upsilon / (k (Upsilon - alpha));
    the stationary point is Upsilon - alpha = sqrt(sc / (B - A)) when B > A, else alpha = 1.
    ``price``: the device compute energy weighted omega_e + lambda_n (``reward.per_user_cost``).
    """
    server = dec.server
    co = _coefficients(inst, weights, server, price)
    fu = dec.freq_user / _HZ_PER_GHZ
    fe = dec.freq_edge / _HZ_PER_GHZ
    A = co["c1"] / fu + co["c2"] * fu**2
    B = co["k1"] / fe + co["k2"] * fe**2
    gap = B - A
    with np.errstate(divide="ignore", invalid="ignore"):
        rest = np.where(gap > 0, np.sqrt(co["sc"] / np.where(gap > 0, gap, 1.0)), np.inf)
    return np.clip(inst.num_layers - rest, 1.0, inst.num_layers - 1.0)


def classical_ao(inst: MECInstance, weights: tuple[float, float, float], server: np.ndarray, *,
                 upload_delay: bool = True, max_iter: int = 20, tol: float = 1e-6) -> AOResult:
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
        dec = MECDecision(alpha=alpha, server=dec.server, power=dec.power,
                          bandwidth=dec.bandwidth, freq_user=dec.freq_user,
                          freq_edge=dec.freq_edge)
        res = fp_ao(inst, weights, server, upload_delay=upload_delay, init=dec, fix_alpha=alpha,
                    tol=1e-7)
        dec = res.decision
        new_cost = res.cost
        history.append(new_cost)
        if abs(cost - new_cost) <= tol * abs(new_cost):
            cost = new_cost
            break
        cost = new_cost
    return AOResult(decision=dec, cost=cost, history=history, iterations=it,
                    solve_time=time.perf_counter() - t0)


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


def pair_costs(inst: MECInstance, weights: tuple[float, float, float], dec: MECDecision,
               b_share: np.ndarray, f_share: np.ndarray, upload_delay: bool) -> np.ndarray:
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


def cccp_association(costs: np.ndarray, b_share: np.ndarray, f_share: np.ndarray, *,
                     starts: list[np.ndarray], rho0: float | None = None, growth: float = 2.0,
                     max_iter: int = 50) -> tuple[list[np.ndarray], list[int]]:
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
            lp = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.ones(n), bounds=(0, 1),
                         method="highs")
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
        obj = cp.sum_squares(load_u) + cp.sum_squares(load_v) + cp.sum(
            cp.multiply(self.lin, self.chi))
        self.problem = cp.Problem(cp.Minimize(obj), [cp.sum(self.chi, axis=1) == 1,
                                                     self.chi <= 1])

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
            if self.chi.value is None or self.problem.status not in ("optimal",
                                                                     "optimal_inaccurate"):
                self.problem.solve(solver="OSQP", eps_abs=1e-9, eps_rel=1e-9, max_iter=20_000,
                                   polishing=True, warm_start=False)
        return np.clip(np.asarray(self.chi.value), 0.0, 1.0)


_QP_CACHE: dict[tuple[int, int], CongestionQP] = {}


def congestion_coefficients(inst: MECInstance, weights: tuple[float, float, float],
                            dec: MECDecision, upload_delay: bool = True,
                            price: np.ndarray | None = None
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


def congestion_cost(u: np.ndarray, v: np.ndarray, lin: np.ndarray, server: np.ndarray
                    ) -> float:
    """The congestion model's cost of a binary association (server index per user)."""
    n, m = u.shape
    idx = np.arange(n)
    su = np.bincount(server, weights=u[idx, server], minlength=m)
    sv = np.bincount(server, weights=v[idx, server], minlength=m)
    return float(np.sum(su**2) + np.sum(sv**2) + np.sum(lin[idx, server]))


def cccp_congestion(u: np.ndarray, v: np.ndarray, lin: np.ndarray, *, starts: list[np.ndarray],
                    rho0: float | None = None, growth: float = 2.0, max_iter: int = 60
                    ) -> tuple[list[np.ndarray], list[int]]:
    """CCCP (MEC Section 4.2) on the congestion model: a sequence of convex QPs.

    Iteration i solves  min convex(chi) + rho_i sum_nm (1 - 2 chi^(i)_nm) chi_nm  over the
    relaxed assignment polytope, with rho_i = rho0 growth^i, until chi is binary and unchanged.
    Returns per start the association (argmax of the final chi) and the iterations used.
    """
    n, m = u.shape
    key = (n, m)
    if key not in _QP_CACHE:
        _QP_CACHE[key] = CongestionQP(n, m)
    qp = _QP_CACHE[key]
    scale = float(np.mean(lin) + np.mean(u) ** 2 + np.mean(v) ** 2) or 1.0
    out, iters = [], []
    for chi0 in starts:
        chi = chi0.copy()
        rho = rho0 if rho0 is not None else 1e-3 * scale
        it = 0
        for it in range(1, max_iter + 1):  # noqa: B007 (read after the loop)
            new = qp.solve(u, v, lin + rho * (1.0 - 2.0 * chi))
            binary = bool(np.all(np.minimum(new, 1 - new) < 1e-6))
            moved = float(np.max(np.abs(new - chi)))
            chi = new
            if binary and moved < 1e-6:
                break
            rho *= growth
        out.append(np.argmax(chi, axis=1))
        iters.append(it)
    return out, iters
