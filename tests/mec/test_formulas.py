"""The MEC cost model against plain per-user loops written from the paper's equations."""

import math

import numpy as np
import pytest
from edgeft.envs.mec import formulas as F
from edgeft.envs.mec import reward as R
from edgeft.envs.mec.actions import constraint_violations
from edgeft.envs.mec.resources import fast_resource_rule
from edgeft.envs.mec.types import MECDecision

from .helpers import make_instance


def _loop_cost(inst, dec, weights, upload_delay):
    """P2's objective, one user at a time, straight from MEC eqs. (1)-(7), (10)."""
    we, wt, ws = weights
    total = 0.0
    for n in range(inst.num_users):
        d = float(inst.tokens[n])
        B, h = inst.batch_size, inst.hidden_size
        psi = 72 * B * d * h * h + 12 * B * d * d * h
        s = B * d * h * inst.bits_per_element
        m = int(dec.server[n])
        a = float(dec.alpha[n])
        cu = inst.cores_user[n] * inst.flops_user[n]
        ce = inst.cores_edge[m] * inst.flops_edge[m]
        t_n = psi / (dec.freq_user[n] * cu)
        e_n = inst.kappa_user * dec.freq_user[n] ** 2 * psi / cu
        t_nm = psi / (dec.freq_edge[n] * ce)
        e_nm = inst.kappa_edge * dec.freq_edge[n] ** 2 * psi / ce
        r = dec.bandwidth[n] * math.log2(
            1 + inst.gain[n, m] * dec.power[n] / (inst.noise_psd * dec.bandwidth[n])
        )
        e_com = s * dec.power[n] / r
        cost_u = a * (wt * t_n + we * e_n) + we * e_com + (wt * s / r if upload_delay else 0.0)
        cost_e = (inst.num_layers - a) * (wt * t_nm + we * e_nm)
        stab = 2 * inst.lipschitz**2 / (inst.samples[n] * (1 - a / inst.num_layers))
        total += cost_u + cost_e + ws * stab
    return total


def _random_decision(inst, rng):
    n, m = inst.num_users, inst.num_servers
    server = rng.integers(0, m, size=n)
    count = np.bincount(server, minlength=m)
    return MECDecision(
        alpha=rng.integers(1, inst.num_layers, size=n).astype(float),
        server=server,
        power=rng.uniform(0.1, 1, n) * inst.p_max,
        bandwidth=inst.b_max[server] / count[server] * rng.uniform(0.2, 1, n),
        freq_user=rng.uniform(0.1, 1, n) * inst.f_user_max,
        freq_edge=inst.f_edge_max[server] / count[server] * rng.uniform(0.2, 1, n),
    )


@pytest.mark.parametrize("upload_delay", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_cost_matches_per_user_loop(seed, upload_delay):
    config, inst = make_instance(seed, num_users=9, num_servers=4)
    dec = _random_decision(inst, np.random.default_rng(seed))
    got = R.weighted_cost(inst, dec, config.weights, include_upload_delay=upload_delay)
    want = _loop_cost(inst, dec, config.weights, upload_delay)
    assert got == pytest.approx(want, rel=1e-10)  # log1p vs log2(1 + x)


def test_psi_and_bits_known_values():
    # B = 512, d = 512, h = 1024: 72*512*512*1024^2 + 12*512*512^2*1024
    assert F.flops_per_layer(512, 512, 1024) == 72 * 512 * 512 * 1024**2 + 12 * 512 * 512**2 * 1024
    assert F.activation_bits(1000, 512, 1024, 16) == 1000 * 512 * 1024 * 16


def test_path_loss_and_rate_reference_values():
    assert float(F.path_loss_db(1000.0)) == pytest.approx(128.1)
    assert float(F.path_loss_db(100.0)) == pytest.approx(128.1 - 37.6)
    # r = b log2(1 + g p / (sigma^2 b)) with sigma^2 a density; SNR 3 at 1 MHz -> 2 Mbit/s
    assert float(F.uplink_rate(1e6, 1.0, 3e-6, 1e-12)) == pytest.approx(2e6)
    assert float(F.uplink_rate(0.0, 1.0, 1.0, 1.0)) == 0.0


def test_stability_bound_uses_alpha_over_upsilon():
    # (1 - alpha/Upsilon), not the printed (1 - alpha/1): alpha = 16 of 32 doubles the bound
    k = 2000.0
    assert float(F.stability_bound(16, 32, 1.0, k)) == pytest.approx(2 * 2 / k)
    assert np.isinf(F.stability_bound(32, 32, 1.0, k))


def test_constraint_violations_detect_each_constraint():
    config, inst = make_instance(0, num_users=6, num_servers=2)
    dec = fast_resource_rule(inst, np.full(6, 3.0), np.array([0, 0, 0, 1, 1, 1]), config.weights)
    chi = dec.association(2)
    ok = constraint_violations(
        inst, dec.alpha, chi, dec.power, dec.bandwidth, dec.freq_user, dec.freq_edge
    )
    assert max(ok.values()) < 1e-12
    bad = constraint_violations(
        inst,
        dec.alpha + 0.5,
        chi,
        dec.power * 3,
        dec.bandwidth * 3,
        dec.freq_user * 3,
        dec.freq_edge * 30,
    )
    assert all(bad[k] > 0.1 for k in ("9a", "9d", "9e", "9f", "9g"))
    frac = constraint_violations(
        inst, dec.alpha, chi * 0.5, dec.power, dec.bandwidth, dec.freq_user, dec.freq_edge
    )
    assert frac["9b"] == pytest.approx(0.5) and frac["9c"] == pytest.approx(0.5)


def test_reference_point_normalises_weights():
    config, _ = make_instance(0)
    ref = config.reference_point
    we, wt, ws = config.weights
    n = config.num_users
    assert we * n * ref["energy"] == pytest.approx(config.w_energy)
    assert wt * n * ref["delay"] == pytest.approx(config.w_delay)
    assert ws * n * ref["stability"] == pytest.approx(config.w_stability)


def test_fast_rule_user_frequency_is_exact_minimiser():
    config, inst = make_instance(3, num_users=8, num_servers=2)
    we, wt, _ = config.weights
    dec = fast_resource_rule(inst, np.full(8, 5.0), np.zeros(8, dtype=int), config.weights)
    grid = np.linspace(0.05, 1.0, 20001)[:, None] * inst.f_user_max[None, :]
    psi, cu = inst.psi, inst.cores_user * inst.flops_user
    per_layer = wt * psi / (grid * cu) + we * inst.kappa_user * grid**2 * psi / cu
    best = grid[np.argmin(per_layer, axis=0), np.arange(8)]
    np.testing.assert_allclose(dec.freq_user, best, rtol=1e-4)


def test_default_scenario_makes_alpha_nontrivial_but_paper_does_not():
    """Per-layer device vs edge cost at the fast rule: the paper's D^U = 1 is ~100-800x worse."""
    ratios = {}
    for preset in ("default", "paper"):
        config, inst = make_instance(0, preset=preset)
        we, wt, _ = config.weights
        dec = fast_resource_rule(
            inst, np.full(config.num_users, 1.0), np.argmax(inst.gain, axis=1), config.weights
        )
        t = R.per_user_terms(inst, dec)
        dev = wt * t["device_time"] + we * (t["device_energy"] - t["upload_energy"])
        edge = (wt * t["edge_time"] + we * t["edge_energy"]) / (config.num_layers - 1)
        ratios[preset] = dev / edge
    assert np.min(ratios["paper"]) > 4  # the device never wins a layer
    assert np.mean(ratios["default"] < 1) > 0.2  # some users compute a layer cheaper locally
