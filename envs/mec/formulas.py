"""The MEC cost model (MEC Section 3), vectorised; one function per published result.

Symbols follow the paper: psi(d) FLOPs per layer, T/E compute time/energy on the device (n) and
the edge (n, m), r_nm the uplink rate, s(d) the uploaded bits, Upsilon the number of layers.
Corrections (NOTES-ON-THE-PAPERS.md, "MEC: cost model"):

* ``(1 - alpha/1)`` in (11)-(12) is ``(1 - alpha/Upsilon)``;
* P4 and the v-update use ``p_n d_n`` where E_com has ``p_n s(d_n)``: s(d) is used;
* ``C^V D^V`` / ``C^R D^R`` in (25)-(31) are ``C^U D^U`` / ``C^E D^E``;
* the model has no upload delay, so energy alone drives p to 0: the default adds
  ``omega_t s(d_n)/r_nm`` to Cost_u (``upload_delay=False`` gives the paper's literal model).

The budgets (9e), (9g) are capacities (``<=``), not equalities (NOTES: written as equalities the
association step cannot move).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from edgeft.envs.mec.types import MECDecision, MECInstance

if TYPE_CHECKING:
    from edgeft.envs.mec.config import MECConfig

LN2 = math.log(2.0)


def flops_per_layer(tokens: Any, batch_size: float, hidden_size: float) -> np.ndarray:
    """psi(d) = 72 B d h^2 + 12 B d^2 h: FLOPs to train one transformer layer for one iteration.

    MEC Section 3 (after [15]). ``tokens`` d (tokens per sample), ``batch_size`` B,
    ``hidden_size`` h. Returns FLOPs.
    """
    d = np.asarray(tokens, dtype=np.float64)
    return 72.0 * batch_size * d * hidden_size**2 + 12.0 * batch_size * d**2 * hidden_size


def activation_bits(tokens: Any, batch_size: float, hidden_size: float,
                    bits_per_element: float = 16.0) -> np.ndarray:
    """s(d) = B d h b: bits of the cut-layer activations a user uploads (b bits per element).

    The paper leaves s(d) unspecified; NOTES: B d h 16 bit (fp16 hidden states). Returns bits.
    """
    return np.asarray(tokens, dtype=np.float64) * (batch_size * hidden_size * bits_per_element)


def device_compute_time(psi: Any, freq: Any, cores: Any, flops_per_cycle: Any) -> np.ndarray:
    """T_n^cmp = psi / (f_n C_n^U D_n^U): seconds to train one layer on the device (MEC eq. 1)."""
    return np.asarray(psi) / (np.asarray(freq) * np.asarray(cores) * np.asarray(flops_per_cycle))


def device_compute_energy(psi: Any, freq: Any, cores: Any, flops_per_cycle: Any,
                          kappa: float) -> np.ndarray:
    """E_n^cmp = kappa_1 f_n^2 psi / (C_n^U D_n^U): joules per layer on the device (MEC eq. 2)."""
    return kappa * np.asarray(freq) ** 2 * np.asarray(psi) / (
        np.asarray(cores) * np.asarray(flops_per_cycle))


def edge_compute_time(psi: Any, freq: Any, cores: Any, flops_per_cycle: Any) -> np.ndarray:
    """T_nm^cmp = psi / (f_nm C_m^E D_m^E): seconds per layer on the edge server (MEC eq. 5)."""
    return device_compute_time(psi, freq, cores, flops_per_cycle)


def edge_compute_energy(psi: Any, freq: Any, cores: Any, flops_per_cycle: Any,
                        kappa: float) -> np.ndarray:
    """E_nm^cmp = kappa_2 f_nm^2 psi / (C_m^E D_m^E): joules per layer on the edge (MEC eq. 6)."""
    return device_compute_energy(psi, freq, cores, flops_per_cycle, kappa)


def path_loss_db(distance_m: Any) -> np.ndarray:
    """Path loss 128.1 + 37.6 log10(d / km) in dB (MEC Section 5)."""
    return 128.1 + 37.6 * np.log10(np.asarray(distance_m, dtype=np.float64) / 1000.0)


def uplink_rate(bandwidth: Any, power: Any, gain: Any, noise_psd: float) -> np.ndarray:
    """r_nm = b log2(1 + g p / (sigma^2 b)) in bit/s (MEC Section 3.1, Shannon, FDMA).

    ``noise_psd`` sigma^2 is a density (W/Hz): the paper's -134 dBm is multiplied by b.
    A zero bandwidth gives rate 0.
    """
    b = np.asarray(bandwidth, dtype=np.float64)
    snr_hz = np.asarray(gain) * np.asarray(power) / noise_psd  # g p / sigma^2, in Hz
    with np.errstate(divide="ignore", invalid="ignore"):
        r = b * np.log1p(snr_hz / b) / LN2
    return np.where(b > 0, r, 0.0)


def upload_energy(bits: Any, power: Any, rate: Any) -> np.ndarray:
    """E_n^com = s(d_n) p_n / r_nm in joules (MEC eq. 3)."""
    with np.errstate(divide="ignore"):
        return np.asarray(bits) * np.asarray(power) / np.asarray(rate)


def upload_delay(bits: Any, rate: Any) -> np.ndarray:
    """s(d_n) / r_nm in seconds: the upload delay the paper omits (NOTES correction)."""
    with np.errstate(divide="ignore"):
        return np.asarray(bits) / np.asarray(rate)


def stability_bound(alpha: Any, num_layers: int, lipschitz: float, samples: Any) -> np.ndarray:
    """Average-replace-one stability bound 2 L^2 / (k_n (1 - alpha_n / Upsilon)) (MEC Thm 1).

    The fraction of fine-tuned parameters is alpha_n / Upsilon (the paper's (11)-(12) print
    ``1 - alpha/1``, a typo). Infinite at alpha = Upsilon.
    """
    frac = 1.0 - np.asarray(alpha, dtype=np.float64) / num_layers
    with np.errstate(divide="ignore"):
        return np.where(frac > 0, 2.0 * lipschitz**2 / (np.asarray(samples) * frac), np.inf)


def per_user_terms(inst: MECInstance, dec: MECDecision, *, include_upload_delay: bool = True
                   ) -> dict[str, np.ndarray]:
    """Per-user physical terms of a decision, shape (N,) each.

    Returns a dict with ``rate`` (bit/s), ``device_time`` alpha T_n, ``device_energy``
    alpha E_n + E_com (what the battery pays), ``upload_time`` s/r, ``upload_energy`` E_com,
    ``edge_time`` (Upsilon - alpha) T_nm, ``edge_energy`` (Upsilon - alpha) E_nm, ``energy``
    (device + edge, J), ``delay`` (alpha T_n + [s/r] + (Upsilon - alpha) T_nm, s; the upload time
    is counted only with ``include_upload_delay``) and ``stability`` (the Theorem-1 bound).
    """
    m = dec.server
    psi = inst.psi
    bits = inst.bits
    alpha = np.asarray(dec.alpha, dtype=np.float64)
    rest = inst.num_layers - alpha
    g = inst.gain[np.arange(inst.num_users), m]
    rate = uplink_rate(dec.bandwidth, dec.power, g, inst.noise_psd)
    t_dev = device_compute_time(psi, dec.freq_user, inst.cores_user, inst.flops_user)
    e_dev = device_compute_energy(psi, dec.freq_user, inst.cores_user, inst.flops_user,
                                  inst.kappa_user)
    t_edge = edge_compute_time(psi, dec.freq_edge, inst.cores_edge[m], inst.flops_edge[m])
    e_edge = edge_compute_energy(psi, dec.freq_edge, inst.cores_edge[m], inst.flops_edge[m],
                                 inst.kappa_edge)
    e_com = upload_energy(bits, dec.power, rate)
    t_com = upload_delay(bits, rate)
    device_energy = alpha * e_dev + e_com
    edge_energy = rest * e_edge
    delay = alpha * t_dev + rest * t_edge + (t_com if include_upload_delay else 0.0)
    return {
        "rate": rate,
        "device_time": alpha * t_dev,
        "device_energy": device_energy,
        "upload_time": t_com,
        "upload_energy": e_com,
        "edge_time": rest * t_edge,
        "edge_energy": edge_energy,
        "energy": device_energy + edge_energy,
        "delay": delay,
        "stability": stability_bound(alpha, inst.num_layers, inst.lipschitz, inst.samples),
    }


def weighted_cost(inst: MECInstance, dec: MECDecision, weights: tuple[float, float, float], *,
                  include_upload_delay: bool = True) -> float:
    """The objective of P2 (MEC eq. 11, corrected): sum_n Cost_n^u + sum_m Cost_m^E + omega_s AS.

    = sum_n [omega_e energy_n + omega_t delay_n + omega_s 2L^2/(k_n (1 - alpha_n/Upsilon))]
    with ``weights`` = (omega_e, omega_t, omega_s) (already normalised, see
    ``MECConfig.weights``). With ``include_upload_delay=False`` this is the paper's literal
    objective (no omega_t s/r term).
    """
    t = per_user_terms(inst, dec, include_upload_delay=include_upload_delay)
    we, wt, ws = weights
    return float(np.sum(we * t["energy"] + wt * t["delay"] + ws * t["stability"]))


def constraint_violations(inst: MECInstance, alpha: Any, chi: Any, power: Any,
                          bandwidth: Any, freq_user: Any, freq_edge: Any) -> dict[str, float]:
    """Largest violation of each constraint (9a)-(9g) of P1; 0 means satisfied.

    Budget violations (9d)-(9g) are relative to the budget (e.g. sum_n b_nm / b_m^max - 1);
    negative resources count in absolute units.

    ``chi`` is the (N, M) association, ``bandwidth`` and ``freq_edge`` are (N, M) allocations
    b_nm, f_nm (or (N,) values at the associated server). Budgets (9e), (9g) are capacities
    (``<=``, NOTES). (9a) uses alpha in {1, ..., Upsilon - 1} (alpha = Upsilon has an infinite
    stability bound). Non-negativity of p, b, f is checked with their constraints.
    """
    chi = np.asarray(chi, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)
    b = np.asarray(bandwidth, dtype=np.float64)
    fe = np.asarray(freq_edge, dtype=np.float64)
    if b.ndim == 1:
        b = chi * b[:, None]
    if fe.ndim == 1:
        fe = chi * fe[:, None]
    p = np.asarray(power, dtype=np.float64)
    fu = np.asarray(freq_user, dtype=np.float64)
    upper = inst.num_layers - 1
    return {
        "9a": float(max(np.max(np.abs(alpha - np.round(alpha))),
                        np.max(np.maximum(1 - alpha, 0)), np.max(np.maximum(alpha - upper, 0)))),
        "9b": float(np.max(np.minimum(np.abs(chi), np.abs(1 - chi)))),
        "9c": float(np.max(np.abs(chi.sum(axis=1) - 1))),
        "9d": float(max(np.max(np.maximum(p / inst.p_max - 1, 0)), np.max(np.maximum(-p, 0)))),
        "9e": float(max(np.max(np.maximum((chi * b).sum(axis=0) / inst.b_max - 1, 0)),
                        np.max(np.maximum(-b, 0)))),
        "9f": float(max(np.max(np.maximum(fu / inst.f_user_max - 1, 0)),
                        np.max(np.maximum(-fu, 0)))),
        "9g": float(max(np.max(np.maximum((chi * fe).sum(axis=0) / inst.f_edge_max - 1, 0)),
                        np.max(np.maximum(-fe, 0)))),
    }


def reference_terms(config: MECConfig) -> dict[str, float]:
    """Per-user energy (J), delay (s), stability and device energy at the reference decision.

    See ``MECConfig.reference_point``. Used to normalise the weights (NOTES: raw delay and
    energy totals dwarf the stability term by 1e7, so weights of 1 mean nothing unless
    normalised).
    """
    c = config
    d = 0.5 * (c.tokens_min + c.tokens_max)
    psi = float(flops_per_layer(d, c.batch_size, c.hidden_size))
    bits = float(activation_bits(d, c.batch_size, c.hidden_size, c.bits_per_element))
    alpha = 0.5 * c.num_layers
    share = c.num_servers / c.num_users
    fu = 0.5 * sum(c.f_user_max_range_hz)
    cu = float(np.mean(c.cores_user))
    fe = 0.5 * sum(c.f_edge_max_range_hz) * share
    ce = 0.5 * sum(c.cores_edge_range)
    de = float(np.mean(c.flops_per_cycle_edge))
    p = 0.5 * sum(c.p_max_range_w)
    g = 10.0 ** (-float(path_loss_db(c.reference_distance_m)) / 10.0)
    r = float(uplink_rate(c.bandwidth_hz * share, p, g, c.noise_psd))
    device_energy = (alpha * float(device_compute_energy(psi, fu, cu, c.flops_per_cycle_user,
                                                         c.kappa_user)) + bits * p / r)
    energy = device_energy + (c.num_layers - alpha) * float(
        edge_compute_energy(psi, fe, ce, de, c.kappa_edge))
    delay = (alpha * float(device_compute_time(psi, fu, cu, c.flops_per_cycle_user))
             + (c.num_layers - alpha) * float(edge_compute_time(psi, fe, ce, de))
             + (bits / r if c.upload_delay else 0.0))
    k = 0.5 * sum(c.samples_range)
    stab = float(stability_bound(alpha, c.num_layers, c.lipschitz, k))
    return {"energy": energy, "delay": delay, "stability": stab, "device_energy": device_energy}
