"""The MEC cost model (MEC Section 3), vectorised; one function per published result.

Symbols follow the paper: psi(d) FLOPs per layer, T/E compute time/energy on the device (n) and
the edge (n, m), r_nm the uplink rate, s(d) the uploaded bits, Upsilon the number of layers.
Corrections (docs/corrections.md, "MEC: cost model"):

* ``(1 - alpha/1)`` in (11)-(12) is ``(1 - alpha/Upsilon)``;
* P4 and the v-update use ``p_n d_n`` where E_com has ``p_n s(d_n)``: s(d) is used;
* ``C^V D^V`` / ``C^R D^R`` in (25)-(31) are ``C^U D^U`` / ``C^E D^E``;
* the model has no upload delay, so energy alone drives p to 0: the default adds
  ``omega_t s(d_n)/r_nm`` to Cost_u (``upload_delay=False`` gives the paper's literal model).

The budgets (9e), (9g) are capacities (``<=``), not equalities (docs/corrections.md: written as
equalities the
association step cannot move).

This module is a leaf: plain functions of arrays (leading batch axes broadcast), no imports from
the rest of the family. The cost of a typed decision is assembled in ``reward`` and the
constraints of P1 are measured in ``actions``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

LN2 = math.log(2.0)


def flops_per_layer(tokens: Any, batch_size: float, hidden_size: float) -> np.ndarray:
    """psi(d) = 72 B d h^2 + 12 B d^2 h: FLOPs to train one transformer layer for one iteration.

    MEC Section 3 (after [15]). ``tokens`` d (tokens per sample), ``batch_size`` B,
    ``hidden_size`` h. Returns FLOPs.
    """
    d = np.asarray(tokens, dtype=np.float64)
    return 72.0 * batch_size * d * hidden_size**2 + 12.0 * batch_size * d**2 * hidden_size


def activation_bits(
    tokens: Any, batch_size: float, hidden_size: float, bits_per_element: float = 16.0
) -> np.ndarray:
    """s(d) = B d h b: bits of the cut-layer activations a user uploads (b bits per element).

    The paper leaves s(d) unspecified; docs/corrections.md: B d h 16 bit (fp16 hidden states).
    Returns bits.
    """
    return np.asarray(tokens, dtype=np.float64) * (batch_size * hidden_size * bits_per_element)


def device_compute_time(psi: Any, freq: Any, cores: Any, flops_per_cycle: Any) -> np.ndarray:
    """T_n^cmp = psi / (f_n C_n^U D_n^U): seconds to train one layer on the device (MEC eq. 1)."""
    return np.asarray(psi) / (np.asarray(freq) * np.asarray(cores) * np.asarray(flops_per_cycle))


def device_compute_energy(
    psi: Any, freq: Any, cores: Any, flops_per_cycle: Any, kappa: float
) -> np.ndarray:
    """E_n^cmp = kappa_1 f_n^2 psi / (C_n^U D_n^U): joules per layer on the device (MEC eq. 2)."""
    return (
        kappa
        * np.asarray(freq) ** 2
        * np.asarray(psi)
        / (np.asarray(cores) * np.asarray(flops_per_cycle))
    )


def edge_compute_time(psi: Any, freq: Any, cores: Any, flops_per_cycle: Any) -> np.ndarray:
    """T_nm^cmp = psi / (f_nm C_m^E D_m^E): seconds per layer on the edge server (MEC eq. 5)."""
    return device_compute_time(psi, freq, cores, flops_per_cycle)


def edge_compute_energy(
    psi: Any, freq: Any, cores: Any, flops_per_cycle: Any, kappa: float
) -> np.ndarray:
    """E_nm^cmp = kappa_2 f_nm^2 psi / (C_m^E D_m^E): joules per layer on the edge (MEC eq. 6)."""
    return device_compute_energy(psi, freq, cores, flops_per_cycle, kappa)


def path_loss_db(distance_m: Any) -> np.ndarray:
    """Path loss 128.1 + 37.6 log10(d / km) in dB (MEC Section 5)."""
    return 128.1 + 37.6 * np.log10(np.asarray(distance_m, dtype=np.float64) / 1000.0)


def channel_gain(
    user_pos: Any, server_pos: Any, fading_re: Any, fading_im: Any, min_distance_m: float
) -> np.ndarray:
    """g_nm = 10^(-PL(max(dist_nm, min_distance))/10) |h_nm|^2, the linear power gain (N, M).

    ``user_pos`` (..., N, 2) and ``server_pos`` (..., M, 2) in m, ``fading_re`` / ``fading_im``
    (..., N, M) the Rayleigh small-scale fading h; path loss as :func:`path_loss_db` (MEC
    Section 5), the distance floored at ``min_distance_m`` (path-loss model validity).
    """
    up = np.asarray(user_pos)
    sp = np.asarray(server_pos)
    # dx^2 + dy^2: the sum over the coordinate axis written out (the same numbers, without
    # numpy's per-pair overhead of a size-2 axis)
    dx = up[..., :, None, 0] - sp[..., None, :, 0]
    dy = up[..., :, None, 1] - sp[..., None, :, 1]
    dist = np.maximum(np.sqrt(dx**2 + dy**2), min_distance_m)
    return 10.0 ** (-path_loss_db(dist) / 10.0) * (
        np.asarray(fading_re) ** 2 + np.asarray(fading_im) ** 2
    )


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
    """s(d_n) / r_nm in seconds: the upload delay the paper omits (docs/corrections.md
    correction)."""
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
