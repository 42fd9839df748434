"""The MEC solvers without per-call solver overhead against independent references.

References: P4 compiled in cvxpy and solved by Clarabel (the earlier implementation), scalar
minimisation (scipy) of each separable piece, finite-difference KKT conditions, the congestion
QP through cvxpy, and the QP solver for the exact vertex check.
"""

import numpy as np
import pytest
from edgeft.baselines.mec import solver as S
from edgeft.envs.mec.types import MECDecision
from scipy.optimize import minimize_scalar

from .helpers import make_instance

#: the default model, its dense 150 m square, a crowded edge (the GPU capacity binds), the
#: paper's literal model (no upload delay) and a random association (users at far servers)
SCENARIOS = {
    "default": {"num_users": 12, "num_servers": 3},
    "dense": {"num_users": 20, "num_servers": 4, "area_m": 150.0},
    "crowded": {"num_users": 12, "num_servers": 2, "f_edge_max_range_hz": (0.3e9, 0.6e9)},
    "paper": {"preset": "paper", "num_users": 10, "num_servers": 3},
    "random": {"num_users": 12, "num_servers": 4},
}


def _p4_values(name, seed, iterations=3, fix_alpha=False):
    """P4's values at the AO's iterate after a few iterations (cvxpy path, as recorded)."""
    config, inst = make_instance(seed, **SCENARIOS[name])
    rng = np.random.default_rng(seed)
    server = (
        rng.integers(0, inst.num_servers, size=inst.num_users)
        if name == "random"
        else S.greedy_association(inst)
    )
    w, n = config.weights, inst.num_users
    alpha = rng.integers(1, inst.num_layers, size=n).astype(float) if fix_alpha else None
    res = S.fp_ao(
        inst,
        w,
        server,
        upload_delay=config.upload_delay,
        max_iter=iterations,
        tol=0.0,
        fix_alpha=alpha,
        backend="cvxpy",
    )
    dec = res.decision
    co = S._coefficients(inst, w, server)
    lo = hi = alpha
    if alpha is None:
        lo, hi = np.ones(n), np.full(n, inst.num_layers - 1.0)
    values = S._fixed_values(inst, server, co, lo, hi)
    values.update(
        S._aux_values(dec, co, w, inst.num_layers, inst.noise_psd, inst.gain[np.arange(n), server])
    )
    return config, inst, server, values, (dec.power, dec.bandwidth / 1e6)


def _p4_objective(v, sol, num_layers, upload_delay):
    a, p, b, fu, fe = (sol[k] for k in ("alpha", "p", "b", "fu", "fe"))
    r = v["u"] * b * np.log1p(v["c"] * p / (v["u"] * b)) / np.log(2)  # the rate, P4's units
    r = np.minimum(sol["r"], r)
    rest = num_layers - a
    terms = (
        v["z"] * a**2
        + (v["a1"] / fu + v["a2"] * fu**2) ** 2
        + v["q"] * rest**2
        + (v["b1"] / fe + v["b2"] * fe**2) ** 2
        + v["e1"] * p**2
        + v["e2"] / r**2
        + v["sc"] / rest
    )
    return float(np.sum(terms + (v["d1"] / r if upload_delay else 0.0)))


def _assert_feasible(v, server, sol, m):
    assert np.all(sol["alpha"] >= v["alpha_lo"] - 1e-12)
    assert np.all(sol["alpha"] <= v["alpha_hi"] + 1e-12)
    assert np.all(sol["p"] >= v["p_lo"] * (1 - 1e-12)) and np.all(sol["p"] <= v["p_max"])
    assert np.all(sol["fu"] <= v["fu_max"])
    for key, cap in (("b", v["b_max"]), ("fe", v["fe_max"])):
        assert np.all(np.bincount(server, weights=sol[key], minlength=m) <= cap * (1 + 1e-12))


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("fix_alpha", [False, True])
def test_exact_p4_matches_the_conic_solver(name, seed, fix_alpha):
    """Same problem, same optimum: never above Clarabel's (to 1e-9: the rounding of the
    objective), and Clarabel within its own accuracy above it (1e-6; on the random
    associations' ill-conditioned rounds Clarabel ends up to ~3e-5 above, and the KKT test
    below checks those rounds)."""
    config, inst, server, v, start = _p4_values(name, seed, fix_alpha=fix_alpha)
    ud = config.upload_delay
    ref = S.get_p4(inst.num_users, inst.num_servers, inst.num_layers, ud).solve(v)
    got = S.solve_p4(v, server, inst.num_layers, ud, start)
    _assert_feasible(v, server, got, inst.num_servers)
    h_got = _p4_objective(v, got, inst.num_layers, ud)
    h_ref = _p4_objective(v, ref, inst.num_layers, ud)
    assert h_got <= h_ref * (1 + 1e-9)
    assert h_got >= h_ref * (1 - (1e-3 if name == "random" else 1e-6))
    # the band is always used in full (the cost falls with b)
    used = np.bincount(server, weights=got["b"], minlength=inst.num_servers)
    on = np.bincount(server, minlength=inst.num_servers) > 0
    np.testing.assert_allclose(used[on], v["b_max"][on], rtol=1e-13)


def test_alpha_and_device_frequency_are_the_scalar_minimisers():
    _, inst, _, v, _ = _p4_values("default", 0)
    got_a = S._p4_alpha(
        v["z"], v["q"], v["sc"], float(inst.num_layers), v["alpha_lo"], v["alpha_hi"]
    )
    got_f = S._p4_user_freq(v["a1"], v["a2"], v["fu_max"])
    y = inst.num_layers
    for n in range(inst.num_users):

        def h(a, n=n):
            return v["z"][n] * a**2 + v["q"][n] * (y - a) ** 2 + v["sc"][n] / (y - a)

        ref = minimize_scalar(h, bounds=(1.0, y - 1.0), method="bounded", options={"xatol": 1e-12})
        assert h(got_a[n]) <= min(ref.fun, h(1.0), h(y - 1.0)) * (1 + 1e-14)

        def g(f, n=n):
            return (v["a1"][n] / f + v["a2"][n] * f**2) ** 2

        ref = minimize_scalar(
            g, bounds=(1e-6, v["fu_max"][n]), method="bounded", options={"xatol": 1e-14}
        )
        assert g(got_f[n]) <= min(ref.fun, g(v["fu_max"][n])) * (1 + 1e-14)


@pytest.mark.parametrize("name", ["default", "crowded"])
def test_edge_frequencies_meet_kkt(name):
    """Per server: the capacity in full with one multiplier -2 B B' for every user where it
    binds, each user's unconstrained minimiser where it does not."""
    _, inst, server, v, _ = _p4_values(name, 1)
    b1, b2, cap = v["b1"], v["b2"], v["fe_max"]
    f = S._p4_edge_freq(b1, b2, server, cap)
    f_star = np.cbrt(b1 / (2 * b2))
    mu = 2 * (b1 / f + b2 * f**2) * (b1 / f**2 - 2 * b2 * f)
    binding = 0
    for m in np.unique(server):
        mine = server == m
        if f_star[mine].sum() <= cap[m]:
            np.testing.assert_allclose(f[mine], f_star[mine], rtol=1e-15)
        else:
            binding += 1
            assert f[mine].sum() == pytest.approx(cap[m], rel=1e-14)
            np.testing.assert_allclose(mu[mine], np.mean(mu[mine]), rtol=1e-9)
    if name == "crowded":
        assert binding > 0


@pytest.mark.parametrize("name", ["default", "paper", "random"])
def test_power_and_bandwidth_meet_kkt(name):
    """Per user, p minimises e1 p^2 + e2 / r^2 + d1 / r at its b (bounded scalar search), and
    the marginal value of band (central difference of that minimum in b) is the same for
    every user of a server."""
    config, inst, server, v, start = _p4_values(name, 2)
    ud = config.upload_delay
    got = S.solve_p4(v, server, inst.num_layers, ud, start)
    k, cc = v["u"] / np.log(2), v["c"] / v["u"]
    d1 = v["d1"] if ud else 0.0 * v["d1"]

    def cost(n, p, b):
        r = k[n] * b * np.log1p(cc[n] * p / b)
        return v["e1"][n] * p**2 + v["e2"][n] / r**2 + d1[n] / r

    def best(n, b):
        r = minimize_scalar(
            lambda p: cost(n, p, b),
            bounds=(v["p_lo"][n], v["p_max"][n]),
            method="bounded",
            options={"xatol": 1e-14},
        )
        return min(r.fun, cost(n, v["p_lo"][n], b), cost(n, v["p_max"][n], b))

    marginal = np.empty(inst.num_users)
    for n in range(inst.num_users):
        b = got["b"][n]
        assert cost(n, got["p"][n], b) <= best(n, b) * (1 + 1e-11)
        h = 1e-4 * b
        marginal[n] = (best(n, b - h) - best(n, b + h)) / (2 * h)
    for m in np.unique(server):
        mine = marginal[server == m]
        np.testing.assert_allclose(mine, np.mean(mine), rtol=1e-5)


@pytest.mark.parametrize("name", ["default", "paper", "random", "dense"])
def test_joint_newton_equals_the_nested_searches(name):
    config, inst, server, v, start = _p4_values(name, 0)
    d1 = v["d1"] if config.upload_delay else 0.0 * v["d1"]
    joint = S._p4_upload_newton(v, d1, server, v["b_max"], start, {})
    nested = S._p4_upload(v, d1, server, v["b_max"], start)
    for a, b in zip(joint, nested):
        np.testing.assert_allclose(a, b, rtol=1e-10)


@pytest.mark.parametrize("name", ["default", "paper", "random"])
def test_fp_ao_exact_and_cvxpy_backends_reach_the_same_cost(name):
    config, inst = make_instance(4, **SCENARIOS[name])
    rng = np.random.default_rng(4)
    server = (
        rng.integers(0, inst.num_servers, size=inst.num_users)
        if name == "random"
        else S.greedy_association(inst)
    )
    out = {}
    for backend in S.BACKENDS:
        out[backend] = S.fp_ao(
            inst,
            config.weights,
            server,
            upload_delay=config.upload_delay,
            max_iter=60,
            backend=backend,
        )
    exact = out["exact"]
    assert np.all(np.diff(exact.history) <= 0)  # Proposition 1: monotone, every step
    assert exact.cost <= out["cvxpy"].cost * (1 + 1e-7)
    assert exact.cost >= out["cvxpy"].cost * (1 - 1e-4)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend"):
        with S.use_backend("mosek"):
            pass
    config, inst = make_instance(0, num_users=4, num_servers=2)
    with pytest.raises(ValueError, match="backend"):
        S.fp_ao(inst, config.weights, S.greedy_association(inst), backend="nope")
    assert S.current_backend() == "exact"


def _congestion(seed, n=12, m=3):
    config, inst = make_instance(seed, num_users=n, num_servers=m, area_m=150.0)
    res = S.fp_ao(inst, config.weights, S.greedy_association(inst), max_iter=5)
    return res.decision, S.congestion_coefficients(inst, config.weights, res.decision)


@pytest.mark.parametrize("seed", range(3))
def test_direct_qp_equals_the_cvxpy_qp(seed):
    dec, (u, v, lin) = _congestion(seed)
    n, m = u.shape
    chi = dec.association(m)
    direct, ref = S.DirectCongestionQP(n, m), S.CongestionQP(n, m)
    for rho in (0.0, 1e-3, 1e-1):
        lin_i = lin + rho * np.mean(lin) * (1 - 2 * chi)
        np.testing.assert_allclose(direct.solve(u, v, lin_i), ref.solve(u, v, lin_i), atol=1e-7)


def _qp_objective(u, v, lin, chi):
    return float(
        np.sum(np.sum(u * chi, 0) ** 2) + np.sum(np.sum(v * chi, 0) ** 2) + np.sum(lin * chi)
    )


@pytest.mark.parametrize("seed", range(4))
def test_vertex_check_agrees_with_the_qp(seed):
    """Where the check says an assignment is the QP's unique minimiser, the QP solver ends at
    it (to its accuracy: its argmax, and no lower objective); a penalty large enough makes the
    current assignment pass; a clearly worse assignment fails."""
    dec, (u, v, lin) = _congestion(seed, n=8, m=3)
    n, m = u.shape
    qp = S.DirectCongestionQP(n, m)
    rng = np.random.default_rng(seed)
    checked = 0
    for k in range(30):
        server = dec.server if k % 3 == 0 else rng.integers(0, m, size=n)
        chi = np.zeros((n, m))
        chi[np.arange(n), server] = 1.0
        rho = float(np.mean(lin)) * 10.0 ** rng.uniform(-4, 1)
        lin_i = lin + rho * (1 - 2 * chi)
        if S.vertex_is_unique_minimiser(u, v, lin_i, server):
            checked += 1
            x = qp.solve(u, v, lin_i)
            np.testing.assert_array_equal(np.argmax(x, axis=1), server)
            at_x = _qp_objective(u, v, lin_i, x)
            assert _qp_objective(u, v, lin_i, chi) <= at_x + 1e-12 * abs(at_x)
            assert np.max(np.abs(x - chi)) < 1e-4
    assert checked > 0
    big = lin + 1e3 * float(np.max(lin)) * (1 - 2 * dec.association(m))
    assert S.vertex_is_unique_minimiser(u, v, big, dec.server)
    worst = np.argmax(lin + 2 * u * u.sum(0) + 2 * v * v.sum(0), axis=1)  # costliest servers
    if not np.array_equal(worst, dec.server):
        assert not S.vertex_is_unique_minimiser(u, v, lin, worst)


@pytest.mark.parametrize("seed", range(3))
def test_support_solve_agrees_with_the_qp(seed):
    """Along CCCP paths (the solver's iterates, rho doubling), the exact solve on the previous
    iterate's support, where it answers, is the QP solver's minimiser (to the solver's
    accuracy) with the same rounding; from the fractional 1/M start it declines (not unique)."""
    dec, (u, v, lin) = _congestion(seed, n=16, m=4)
    n, m = u.shape
    qp = S.DirectCongestionQP(n, m)
    rng = np.random.default_rng(seed)
    answered = 0
    for start in (
        dec.association(m),
        0.5 * dec.association(m) + 0.5 * rng.dirichlet(np.ones(m), size=n),
    ):
        chi = start
        rho = 1e-3 * float(np.mean(lin) + np.mean(u) ** 2 + np.mean(v) ** 2)
        for _ in range(12):
            lin_i = lin + rho * (1 - 2 * chi)
            ref = qp.solve(u, v, lin_i)
            got = S.congestion_qp_on_support(u, v, lin_i, chi > 1e-6)
            if got is not None:
                answered += 1
                np.testing.assert_allclose(got, ref, atol=1e-5)
                np.testing.assert_array_equal(np.argmax(got, 1), np.argmax(ref, 1))
                np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-12)
                assert got.min() >= 0.0
            chi, rho = ref, 2 * rho
    assert answered > 0
    assert S.congestion_qp_on_support(u, v, lin, np.ones((n, m), dtype=bool)) is None


@pytest.mark.parametrize("seed", range(3))
def test_cccp_with_the_exact_shortcuts_returns_the_solver_path_associations(seed):
    dec, (u, v, lin) = _congestion(seed, n=20, m=4)
    n, m = u.shape
    rng = np.random.default_rng(seed)
    starts = [dec.association(m), np.full((n, m), 1 / m)] + [
        0.5 * dec.association(m) + 0.5 * rng.dirichlet(np.ones(m), size=n) for _ in range(2)
    ]
    got, _ = S.cccp_congestion(u, v, lin, starts=starts)
    with S.use_backend("cvxpy"):
        ref, _ = S.cccp_congestion(u, v, lin, starts=starts)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)


def test_decision_resources_stay_within_their_caps():
    """Values at a bound in solver units are clipped to the SI cap (the full action mode's
    box holds shares <= 1)."""
    config, inst = make_instance(0, num_users=5, num_servers=2)
    server = np.array([0, 0, 0, 0, 1])
    sol = {
        "alpha": np.ones(5),
        "p": inst.p_max.copy(),
        "b": inst.b_max[server] / 1e6,
        "fu": inst.f_user_max / 1e9,
        "fe": inst.f_edge_max[server] / 1e9,
    }
    dec = S.to_decision(inst, server, sol)
    assert isinstance(dec, MECDecision)
    assert np.all(dec.freq_user <= inst.f_user_max)
    assert np.all(dec.bandwidth <= inst.b_max[server])
    assert np.all(dec.freq_edge <= inst.f_edge_max[server])
