"""The min-max-delay split (``formulas.min_common_delay`` and its single-set and all-prefixes
forms) against the first implementation (kept in ``reference_split``), nested brentq and
high-precision arithmetic, over random sets with deep fades, equal and unequal message sizes,
one member and every device; batched, single-set and fallback paths agree bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from edgeft.baselines.fedlora.reference import ref_min_common_delay
from edgeft.envs.fedlora import formulas as F
from edgeft.envs.fedlora.actions import channel_order

from tests.fedlora.reference_split import reference_min_common_delay, reference_prefix_delays

NOISE, BAND = 1e-11, 10e6
EPS = np.finfo(float).eps


def _instances(
    rng: np.random.Generator, n: int, k: int, deepest: float = -9.0
) -> tuple[np.ndarray, ...]:
    """n sets over k devices: the env's gains (path loss x Rayleigh), a tenth of the devices in a
    deep fade (down to 10^deepest of their gain), message sizes equal in half the rows; each set
    a random subset (density 0.1 to 1), a channel-ordered prefix, one device or every device."""
    gain = 10.0 ** rng.uniform(-8.0, -5.0, (n, k)) * rng.exponential(size=(n, k))
    fade = rng.random((n, k)) < 0.1
    gain = np.where(fade, gain * 10.0 ** rng.uniform(deepest, -2.0, (n, k)), gain)
    bits = np.where(rng.random((n, 1)) < 0.5, 1e6, rng.uniform(0.3e6, 3e6, (n, k)))
    kind = rng.integers(0, 4, n)
    mask = rng.random((n, k)) < rng.uniform(0.1, 1.0, (n, 1))
    order = channel_order(gain, bits)
    ranks = np.argsort(order, axis=-1)
    prefix = ranks < rng.integers(1, k + 1, (n, 1))
    one = np.arange(k)[None, :] == rng.integers(0, k, (n, 1))
    mask = np.select(
        [kind[:, None] == 0, kind[:, None] == 1, kind[:, None] == 2],
        [mask, prefix, one],
        np.ones((n, k), dtype=bool),
    )
    return gain, bits, mask


def _member_delays(bits, gain, band, mask):
    """mu_k / r_k at the split's bandwidths, nan off the set."""
    b = np.where(mask, band, 1.0)
    return np.where(mask, bits * F.LN2 / (b * np.log1p(gain / (NOISE * b))), np.nan)


def _delta_min(bits, gain, delay, mask):
    """1 - lambda of the member nearest saturation at the optimum (the conditioning of Lemma 3's
    bandwidths: relative error ~eps/delta)."""
    lam = np.where(mask, bits * F.LN2 / (delay[..., None] * gain / NOISE), 0.0)
    return 1.0 - lam.max(axis=-1)


@pytest.mark.parametrize("k", [1, 2, 5, 20, 64, 160])
def test_delays_match_the_first_implementation(k):
    """D* within 1e-12 of the first implementation's (in fact ~1e-15); every member's delay at
    its bandwidth within 1e-13 of D*; the bandwidths sum to B. The first implementation's own
    member delays are off by ~eps/delta near saturation (it rescales every bandwidth by the
    weakest member's error), so the bandwidths and round delays agree within that."""
    rng = np.random.default_rng(100 + k)
    gain, bits, mask = _instances(rng, 3000 if k < 64 else 600 if k < 100 else 200, k)
    delay, band = F.min_common_delay(bits, gain, NOISE, BAND, mask)
    ref_delay, ref_band = reference_min_common_delay(bits, gain, NOISE, BAND, mask)
    np.testing.assert_allclose(delay, ref_delay, rtol=1e-12, atol=0.0)
    assert np.all(band[~mask] == 0.0) and np.all(band[mask] > 0.0)
    nonempty = mask.any(axis=-1)
    assert np.all(delay[~nonempty] == 0.0)
    gain, bits, mask, delay, band, ref_band = (
        x[nonempty] for x in (gain, bits, mask, delay, band, ref_band)
    )
    np.testing.assert_allclose(band.sum(axis=-1), BAND, rtol=1e-14)
    member = _member_delays(bits, gain, band, mask)
    assert np.nanmax(np.abs(member / delay[:, None] - 1.0)) < 1e-13
    # against the first implementation: within its own conditioning
    cond = 64 * EPS / _delta_min(bits, gain, delay, mask)
    rel = np.where(mask, np.abs(band / np.where(mask, ref_band, 1.0) - 1.0), 0.0).max(axis=-1)
    assert np.all(rel <= 1e-12 + cond)
    ref_round = np.nanmax(_member_delays(bits, gain, ref_band, mask), axis=-1)
    assert np.all(np.abs(np.nanmax(member, axis=-1) / ref_round - 1.0) <= 1e-12 + cond)


def _nested_brentq_delay(bits: np.ndarray, gain: np.ndarray) -> float:
    """D* by brentq on D of sum_k B_k(D) = B, with B_k = a_k / u_k and u_k by brentq on
    ln(1 + u)/u = lambda_k in [delta, 2 max(1/lambda^2 - 1, 4 delta)] (the root lies in
    [2 delta, 1/lambda^2 - 1]: 1 - u/2 <= ln(1 + u)/u <= (1 + u)^(-1/2)); log1p throughout."""
    from scipy.optimize import brentq

    a = gain / NOISE

    def band(d: float) -> float:
        total = 0.0
        for ak, mk in zip(a, bits):
            lam = mk * math.log(2.0) / (d * ak)
            if lam >= 1.0:
                return math.inf
            delta = 1.0 - lam
            lo, hi = delta, 2.0 * max(1.0 / lam**2 - 1.0, 4.0 * delta)
            u = brentq(
                lambda x, lam=lam: math.log1p(x) / x - lam, lo, hi, xtol=1e-300, rtol=4 * EPS
            )
            total += ak / u
        return total - BAND

    single = [mk * math.log(2.0) / (BAND * math.log1p(ak / BAND)) for ak, mk in zip(a, bits)]
    share = BAND / a.size
    equal = [mk * math.log(2.0) / (share * math.log1p(ak / share)) for ak, mk in zip(a, bits)]
    d_lo, d_hi = max(single), max(equal)
    if a.size == 1 or band(d_lo) <= 0.0:  # the weakest alone already needs all of B
        return d_lo
    return brentq(band, d_lo, d_hi * (1 + 1e-12), xtol=1e-300, rtol=4 * EPS, maxiter=500)


def test_delays_match_nested_brentq():
    """An independent reference: nested brentq (``_nested_brentq_delay``), fades included."""
    rng = np.random.default_rng(7)
    gain, bits, mask = _instances(rng, 150, 8, deepest=-6.0)
    delay, _ = F.min_common_delay(bits, gain, NOISE, BAND, mask)
    for i in np.flatnonzero(mask.any(axis=-1)):
        ref = _nested_brentq_delay(bits[i][mask[i]], gain[i][mask[i]])
        assert delay[i] == pytest.approx(ref, rel=1e-12), i
    # the project's reference (baselines.fedlora.reference, log2(1 + x)) where its brackets hold
    for i in np.flatnonzero(mask.sum(axis=-1) > 1)[:40]:
        g, m = gain[i][mask[i]], bits[i][mask[i]]
        if g.min() / NOISE > 1e-2 * BAND:
            assert delay[i] == pytest.approx(ref_min_common_delay(m, g, NOISE, BAND), rel=1e-12)


def test_bandwidths_match_high_precision_arithmetic():
    """Deep fades included, every member's bandwidth within 1e-12 of a 40-digit solution (the
    weakest member's too: it gets B minus the others' bandwidths, which are well conditioned),
    and D* within 2e-15."""
    mpmath = pytest.importorskip("mpmath")
    mp = mpmath.mp
    mp.dps = 40
    rng = np.random.default_rng(11)
    gain, bits, mask = _instances(rng, 40, 6)
    delay, band = F.min_common_delay(bits, gain, NOISE, BAND, mask)

    def u_of(lam):  # ln(1 + u) = lam u: Newton from the float solution, well conditioned form
        guess = float(F.lemma3_u(float(lam), float(1 - lam)))
        return mp.findroot(lambda x: mp.log1p(x) / x - lam, mp.mpf(guess), solver="newton")

    for i in np.flatnonzero(mask.any(axis=-1)):
        idx = np.flatnonzero(mask[i])
        a = [mp.mpf(float(g)) / NOISE for g in gain[i, idx]]
        mu = [mp.mpf(float(m)) for m in bits[i, idx]]

        def excess(c, a=a, mu=mu):
            return mp.fsum(ak / u_of(c * mk / ak) for ak, mk in zip(a, mu)) - BAND

        c_f = mp.log(2) / mp.mpf(float(delay[i]))
        c = mp.findroot(excess, (c_f, c_f * (1 - mp.mpf(1e-12))), solver="secant")
        assert float(mp.log(2) / c) == pytest.approx(delay[i], rel=2e-15)
        for ak, mk, k in zip(a, mu, idx):
            assert band[i, k] == pytest.approx(float(ak / u_of(c * mk / ak)), rel=1e-12), (i, k)


@pytest.mark.parametrize("k", [12, 100])
def test_single_set_batch_and_fallback_give_the_same_numbers(monkeypatch, k):
    """A set's split is the same alone (``min_common_delay_one``, a 1-D ``min_common_delay``)
    and in any batch, bit for bit (what the single and the vector env rely on), large sets
    (solved with their members sorted) included; with the fast solver cut short, the
    safeguarded Newton fallback too."""
    rng = np.random.default_rng(3)
    gain, bits, mask = _instances(rng, 400 if k < 50 else 120, k)
    mask[:5] = False  # empty sets
    delay, band = F.min_common_delay(bits, gain, NOISE, BAND, mask)
    half_d, half_b = F.min_common_delay(bits[::2], gain[::2], NOISE, BAND, mask[::2])
    np.testing.assert_array_equal(half_d, delay[::2])
    np.testing.assert_array_equal(half_b, band[::2])
    for i in range(mask.shape[0]):
        d1, b1 = F.min_common_delay_one(bits[i], gain[i], NOISE, BAND, mask[i])
        d2, b2 = F.min_common_delay(bits[i], gain[i], NOISE, BAND, mask[i])
        assert d1 == delay[i] == d2 and isinstance(d1, float)
        np.testing.assert_array_equal(b1, band[i])
        np.testing.assert_array_equal(b2, band[i])
    assert np.all(delay[:5] == 0.0) and np.all(band[:5] == 0.0)
    # the fallback: no pass of the fast solver settles anything
    monkeypatch.setattr(F, "_PASSES", 0)
    delay0, band0 = F.min_common_delay(bits, gain, NOISE, BAND, mask)
    ref_delay, _ = reference_min_common_delay(bits, gain, NOISE, BAND, mask)
    np.testing.assert_allclose(delay0, ref_delay, rtol=1e-12)
    for i in range(0, mask.shape[0], 7):
        d1, b1 = F.min_common_delay_one(bits[i], gain[i], NOISE, BAND, mask[i])
        assert d1 == delay0[i]
        np.testing.assert_array_equal(b1, band0[i])


def test_bracket_narrows_without_changing_the_result():
    """The certified prefix brackets the Lyapunov policy passes leave the delays as they are."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        k = 15
        gain = np.sort(10.0 ** rng.uniform(-8.0, -5.0, k) * rng.exponential(size=k))[::-1]
        bits = np.full(k, 1e6)
        lo, hi = F.prefix_delay_brackets(bits, gain, NOISE, BAND, grid=16)
        mask = np.arange(k)[None, :] < np.arange(1, k + 1)[:, None]
        d0, b0 = F.min_common_delay(bits, gain, NOISE, BAND, mask)
        d1, b1 = F.min_common_delay(bits, gain, NOISE, BAND, mask, bracket=(lo, hi))
        np.testing.assert_allclose(d1, d0, rtol=1e-14)
        np.testing.assert_allclose(b1, b0, rtol=1e-12)


def test_solver_table_is_within_its_stated_accuracy():
    """The table of ln h, ln h', ln h'' (h = 1/u, Lemma 3) interpolates h within ``_H_RTOL`` / 2
    and h', h'' within 1e-7 over the whole domain; h' and h'' are the derivatives of 1/u."""
    x = np.linspace(-689.0, 36.6, 400_001)
    lam, delta = 1.0 / (1.0 + np.exp(-x)), 1.0 / (1.0 + np.exp(x))
    exact = F.lemma3_h_derivatives(lam, delta)
    n = F._TAB_ROW
    for row, ex in enumerate(exact):
        got = np.interp(x + F._TAB_OFFSETS[row], F._TAB_X, F._TAB_Y)
        err = np.max(np.abs(np.expm1(got - ex)))
        assert err < (F._H_RTOL / 2 if row == 0 else 1e-7), (row, err)
    assert np.array_equal(F._TAB_X[:n] + F._TAB_OFFSETS[1], F._TAB_X[n : 2 * n])
    # derivatives against central differences of h(lambda) = 1 / u(lambda)
    lam = np.linspace(0.02, 0.9, 200)
    step = 1e-5
    h = lambda v: 1.0 / F.lemma3_u(v)  # noqa: E731
    d1 = (h(lam + step) - h(lam - step)) / (2 * step)
    d2 = (h(lam + step) - 2 * h(lam) + h(lam - step)) / step**2
    _, ln_h1, ln_h2 = F.lemma3_h_derivatives(lam)
    np.testing.assert_allclose(np.exp(ln_h1), d1, rtol=1e-7)
    np.testing.assert_allclose(np.exp(ln_h2), d2, rtol=1e-4)


@pytest.mark.parametrize("k,unequal", [(1, False), (2, True), (30, False), (30, True)])
def test_prefix_delays_match_the_prefix_masks(k, unequal):
    """Every prefix of every row at once, in O(rows x K) memory: the same D* as the first
    implementation on the rows x K x K prefix masks, within 1e-12."""
    rng = np.random.default_rng(40 + k)
    rows = 60
    gain = 10.0 ** rng.uniform(-8.0, -5.0, (rows, k)) * rng.exponential(size=(rows, k))
    gain[rng.random((rows, k)) < 0.1] *= 1e-6
    bits = rng.uniform(0.3e6, 3e6, (rows, k)) if unequal else np.full((rows, k), 1e6)
    order = channel_order(gain, bits)
    gs, bs = np.take_along_axis(gain, order, -1), np.take_along_axis(bits, order, -1)
    got = F.prefix_min_common_delays(bs, gs, NOISE, BAND, chunk=97)
    prefix = np.arange(k)[None, :] < np.arange(1, k + 1)[:, None]
    ref, _ = reference_min_common_delay(
        bs[:, None, :], gs[:, None, :], NOISE, BAND, np.broadcast_to(prefix, (rows, k, k))
    )
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0.0)
    assert np.all(np.diff(got, axis=-1) >= -1e-14 * got[:, 1:])  # longer prefix, longer delay
    np.testing.assert_allclose(
        reference_prefix_delays(gain, bits, NOISE, BAND)[:, 1:], got, rtol=1e-12
    )


def test_count_mode_rounds_take_the_split_of_the_strongest_devices():
    """The single env's count-mode decision is the min-max-delay split of the n strongest
    devices: every scheduled device's delay is D* (of the first implementation) to 1e-12."""
    import gymnasium as gym

    import edgeft  # noqa: F401

    env = gym.make("edgeft/FedLoRAScheduling-v0", action_mode="count", num_devices=12)
    env.reset(seed=4)
    cfg = env.unwrapped.config
    for n in [0, 1, 2, 5, 12, 7, 3, 11]:
        state = env.unwrapped.state
        _, _, _, _, info = env.step(n)
        order = channel_order(state.gain, state.bits)
        mask = np.zeros(12, dtype=bool)
        mask[order[:n]] = True
        np.testing.assert_array_equal(info["scheduled"], mask)
        ref, _ = reference_min_common_delay(
            state.bits, state.gain, cfg.noise_psd, cfg.bandwidth_hz, mask
        )
        assert info["delay"] == pytest.approx(float(ref), rel=1e-12, abs=0.0)
        if n:
            d = info["device_delay"][mask]
            assert np.max(d) - np.min(d) <= 1e-13 * np.max(d)
        assert math.isclose(info["bandwidth"].sum(), cfg.bandwidth_hz if n else 0.0, rel_tol=1e-14)
