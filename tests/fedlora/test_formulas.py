"""Wireless formulas against independent references (brentq, plain loops, closed forms)."""

import math

import numpy as np
import pytest
from edgeft.baselines.fedlora.reference import ref_bandwidth_for_delay, ref_min_common_delay
from edgeft.envs.fedlora import formulas as F

EPS = np.finfo(float).eps


def test_lemma3_u_matches_brentq_down_to_delta_1e9():
    from scipy.optimize import brentq

    delta = np.logspace(-9, np.log10(0.999), 300)
    lam = 1.0 - delta
    u = F.lemma3_u(lam, delta)
    for d, l, uu in zip(delta, lam, u):
        hi = max(10.0, 4.0 * math.log(1.0 / l) / l)
        # l bound as a default for B023 (brentq calls it right away, so no late binding here)
        ref = brentq(
            lambda x, l=l: math.log1p(x) - l * x,
            1.9 * d if d < 0.5 else 1e-3,
            hi,
            xtol=1e-300,
            rtol=4 * EPS,
            maxiter=500,
        )
        assert abs(uu - ref) / ref <= 50 * EPS / d, (d, uu, ref)


def test_bandwidth_for_delay_matches_brentq_on_the_delay_equation():
    """B from Lemma 3 vs brentq on mu / (B log2(1 + a/B)) = D, over delays reaching delta = 1e-9."""
    rng = np.random.default_rng(1)
    noise, bits = 1e-11, 1e6
    for _ in range(60):
        gain = 10 ** rng.uniform(-7, -4)
        a = gain / noise
        d_min = bits * math.log(2) / a  # infeasible at or below this delay
        delta = 10 ** rng.uniform(-9, -0.01)
        delay = d_min / (1.0 - delta)
        exact_delta = 1.0 - d_min / delay  # the delta the inputs actually encode
        b = F.bandwidth_for_delay(bits, delay, gain, noise)
        ref = ref_bandwidth_for_delay(bits, delay, gain, noise)
        assert abs(b - ref) / ref <= 50 * EPS / exact_delta + 1e-14, (delta, b, ref)
        # and it really achieves the delay
        r = b * math.log2(1 + gain / (b * noise))
        assert bits / r == pytest.approx(delay, rel=50 * EPS / exact_delta + 1e-14)


def test_infeasible_delays_are_reported():
    gain, noise, bits = 1e-6, 1e-11, 1e6
    d_min = bits * noise * math.log(2) / gain
    b = F.bandwidth_for_delay(bits, np.array([0.5 * d_min, d_min, 1.5 * d_min]), gain, noise)
    assert np.isinf(b[0]) and np.isinf(b[1]) and np.isfinite(b[2])
    assert math.isinf(ref_bandwidth_for_delay(bits, 0.5 * d_min, gain, noise))


def test_printed_lemma3_does_not_solve_the_delay_equation():
    """The literal formula (nu with |h|^2 and sigma^2 swapped, W_0) is kept by name but is wrong."""
    gain, noise, bits, delay = 1e-6, 1e-11, 1e6, 20.0
    correct = F.bandwidth_for_delay(bits, delay, gain, noise)
    literal = F.bandwidth_for_delay_paper(bits, delay, gain, noise)
    assert not np.isclose(literal, correct, rtol=1e-3)


def test_rate_and_round_delay_against_plain_loop():
    rng = np.random.default_rng(2)
    k, noise = 7, 1e-11
    gain = 10 ** rng.uniform(-7, -5, k)
    band = rng.uniform(0, 2e6, k)
    band[2] = 0.0
    bits = rng.uniform(1e5, 1e6, k)
    sched = band > 0
    r = F.rate(band, gain, noise)
    d = F.round_delay(bits, band, gain, noise, sched)
    ref_d = 0.0
    for i in range(k):
        ref_r = band[i] * math.log2(1 + gain[i] / (band[i] * noise)) if band[i] > 0 else 0.0
        assert r[i] == pytest.approx(ref_r, rel=1e-14)
        if sched[i]:
            ref_d = max(ref_d, bits[i] / ref_r)
    assert d == pytest.approx(ref_d, rel=1e-14)
    assert F.round_delay(bits, band, gain, noise, np.zeros(k, bool)) == 0.0


def test_queue_update_matches_eq18_loop():
    rng = np.random.default_rng(3)
    xs = rng.exponential(1.0, 500)
    q_vec = 0.0
    q_loop = 0.0
    for x in xs:
        q_vec = F.queue_update(q_vec, x)
        q_loop = max(0.0, q_loop + x - 1.0)
        assert q_vec == q_loop


@pytest.mark.parametrize("k", [1, 2, 5, 12])
def test_min_common_delay_matches_nested_brentq(k):
    rng = np.random.default_rng(10 + k)
    noise, big_b = 1e-11, 10e6
    for _ in range(5):
        gain = 6.8e-6 * rng.exponential(size=k)
        bits = rng.uniform(5e5, 1.5e6, k)
        mask = np.ones(k, bool)
        d, band = F.min_common_delay(bits, gain, noise, big_b, mask)
        ref = ref_min_common_delay(bits, gain, noise, big_b)
        assert d == pytest.approx(ref, rel=1e-10)
        assert band.sum() == pytest.approx(big_b, rel=1e-12)
        dd = F.device_delay(bits, band, gain, noise)
        np.testing.assert_allclose(dd, d, rtol=1e-9)  # the optimum equalises the delays


def test_min_common_delay_batched_equals_per_set_loop():
    rng = np.random.default_rng(5)
    k, noise, big_b = 9, 1e-11, 10e6
    gain = 6.8e-6 * rng.exponential(size=(6, k))
    mask = rng.random((6, k)) < 0.6
    mask[0] = False  # empty set
    d, band = F.min_common_delay(1e6, gain, noise, big_b, mask)
    for i in range(6):
        di, bi = F.min_common_delay(
            1e6, gain[i][mask[i]], noise, big_b, np.ones(mask[i].sum(), bool)
        )
        assert d[i] == pytest.approx(float(di) if mask[i].any() else 0.0, rel=1e-12)
        np.testing.assert_allclose(band[i][mask[i]], bi, rtol=1e-10)
        assert np.all(band[i][~mask[i]] == 0)


def test_prefix_brackets_contain_the_exact_prefix_delays():
    rng = np.random.default_rng(6)
    for k in (3, 10, 40):
        gain = np.sort(6.8e-6 * rng.exponential(size=k))[::-1]
        c_lo, c_hi = F.prefix_delay_brackets(1e6, gain, 1e-11, 10e6, grid=16)
        mask = np.arange(k)[None, :] < np.arange(1, k + 1)[:, None]
        d, _ = F.min_common_delay(1e6, gain, 1e-11, 10e6, mask)
        c = math.log(2) / d
        assert np.all(c_lo <= c * (1 + 1e-12)) and np.all(c <= c_hi * (1 + 1e-12))


def test_geometry_and_fading():
    rng = np.random.default_rng(7)
    pos = F.sample_positions(rng, 20000, (300.0, 0.0), 50.0)
    r = np.hypot(pos[:, 0] - 300.0, pos[:, 1])
    assert r.max() <= 50.0
    # uniform in the disc: P(r < R/2) = 1/4
    assert abs(np.mean(r < 25.0) - 0.25) < 0.015
    assert F.path_gain(300.0) == pytest.approx(30.0**-3.5)
    # |h|^2 = mean x Exp(1): in dB, mean_db + fading_db; Exp(1) has mean 1 and P(X > 1) = 1/e
    h = F.db_to_gain(F.gain_to_db(2.0) + F.rayleigh_fading_db(rng, (200000,)))
    assert abs(h.mean() - 2.0) < 0.03
    assert abs(np.mean(h > 2.0) - np.exp(-1)) < 0.005
    np.testing.assert_array_equal(
        F.db_to_gain(F.gain_to_db(np.array([1e-6]))), F.db_to_gain(F.gain_to_db(np.array([1e-6])))
    )


def test_table_start_is_within_its_certified_tolerance():
    """prefix_delay_brackets relies on lemma3_u(newton=0) being within START_RTOL of the root."""
    delta = np.exp(np.linspace(np.log(1e-12), np.log(0.5), 20001))
    lam = np.exp(np.linspace(np.log(1e-300), np.log(0.5), 20001))
    for l, d in ((1.0 - delta, delta), (lam, 1.0 - lam)):
        start, exact = F.lemma3_u(l, d, newton=0), F.lemma3_u(l, d)
        assert np.max(np.abs(start - exact) / exact) < F.START_RTOL / 5
