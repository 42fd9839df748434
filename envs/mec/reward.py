"""Cost and reward of the MEC env from one round's instance and decision.

The round's weighted cost (MEC P2, eq. 11, corrected per docs/corrections.md) is assembled here and
nowhere
else: :func:`per_user_cost` weights the per-user terms of :func:`per_user_terms`, and
:func:`weighted_cost` sums it. The env's info ``cost``, the reference solvers' objective
(``baselines.mec.solver.cost_of``), the policies' per-user alpha choice and the learners'
teachers all call these.

The reward adds the energy-budget virtual queue: Q_n(t+1) = max(0, Q_n(t) + e_n(t) - e_bar_n)
(:func:`queue_update`) and ``reward = -(cost + energy_penalty * mean_n (Q_n(t+1) - Q_n(t)) /
e_bar_n)`` (:func:`step_reward`).
"""

from __future__ import annotations

import numpy as np
from edgeft.envs.mec import formulas as F
from edgeft.envs.mec.types import MECDecision, MECInstance, at_server, user_gain

Weights = tuple[float, float, float]


def per_user_terms(
    inst: MECInstance, dec: MECDecision, *, include_upload_delay: bool = True
) -> dict[str, np.ndarray]:
    """Per-user physical terms of a decision, shape (N,) each (MEC eqs. 1-7 and Theorem 1).

    Returns a dict with ``rate`` (bit/s), ``device_time`` alpha T_n, ``device_energy``
    alpha E_n + E_com (what the battery pays), ``upload_time`` s/r, ``upload_energy`` E_com,
    ``edge_time`` (Upsilon - alpha) T_nm, ``edge_energy`` (Upsilon - alpha) E_nm, ``energy``
    (device + edge, J), ``delay`` (alpha T_n + [s/r] + (Upsilon - alpha) T_nm, s; the upload time
    is counted only with ``include_upload_delay``) and ``stability`` (the Theorem-1 bound).

    A batch of copies (every array of ``inst`` and ``dec`` with the same leading copy axes, as
    ``types.instance_from_state`` builds from a batched state) gives (..., N) terms, each
    copy's the numbers of its own call, bit for bit (elementwise arithmetic only).
    """
    m = dec.server
    psi = inst.psi
    bits = inst.bits
    alpha = np.asarray(dec.alpha, dtype=np.float64)
    rest = inst.num_layers - alpha
    if np.ndim(m) > 1:  # a batch of copies
        g = user_gain(inst.gain, m)
        cores_edge, flops_edge = at_server(inst.cores_edge, m), at_server(inst.flops_edge, m)
    else:
        g = inst.gain[np.arange(inst.num_users), m]
        cores_edge, flops_edge = inst.cores_edge[m], inst.flops_edge[m]
    rate = F.uplink_rate(dec.bandwidth, dec.power, g, inst.noise_psd)
    t_dev = F.device_compute_time(psi, dec.freq_user, inst.cores_user, inst.flops_user)
    e_dev = F.device_compute_energy(
        psi, dec.freq_user, inst.cores_user, inst.flops_user, inst.kappa_user
    )
    t_edge = F.edge_compute_time(psi, dec.freq_edge, cores_edge, flops_edge)
    e_edge = F.edge_compute_energy(psi, dec.freq_edge, cores_edge, flops_edge, inst.kappa_edge)
    e_com = F.upload_energy(bits, dec.power, rate)
    t_com = F.upload_delay(bits, rate)
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
        "stability": F.stability_bound(alpha, inst.num_layers, inst.lipschitz, inst.samples),
    }


def per_user_cost(
    terms: dict[str, np.ndarray], weights: Weights, price: np.ndarray | None = None
) -> np.ndarray:
    """Each user's share of P2's objective: omega_e energy_n + omega_t delay_n + omega_s
    stability_n, from :func:`per_user_terms` (the one place the weighted cost is assembled).

    ``price`` (N,), optional: an extra weight lambda_n >= 0 on each user's *device* energy
    (cost per J), added as lambda_n device_energy_n: the per-round problem of drift-plus-penalty
    on the energy queues and of the episode's Lagrangian (``baselines.mec.hindsight``). None
    (the default) is the objective itself.
    """
    we, wt, ws = weights
    cost = we * terms["energy"] + wt * terms["delay"] + ws * terms["stability"]
    if price is not None:
        cost = cost + np.asarray(price, dtype=np.float64) * terms["device_energy"]
    return cost


def weighted_cost(
    inst: MECInstance,
    dec: MECDecision,
    weights: Weights,
    *,
    include_upload_delay: bool = True,
    price: np.ndarray | None = None,
) -> float:
    """The objective of P2 (MEC eq. 11, corrected): sum_n Cost_n^u + sum_m Cost_m^E + omega_s AS.

    = sum_n [omega_e energy_n + omega_t delay_n + omega_s 2L^2/(k_n (1 - alpha_n/Upsilon))]
    with ``weights`` = (omega_e, omega_t, omega_s) (already normalised, see
    ``MECConfig.weights``). With ``include_upload_delay=False`` this is the paper's literal
    objective (no omega_t s/r term). Continuous alpha is allowed (the solvers' relaxation).
    ``price``: see :func:`per_user_cost`.
    """
    terms = per_user_terms(inst, dec, include_upload_delay=include_upload_delay)
    return cost_of_terms(terms, weights, price)


def cost_of_terms(
    terms: dict[str, np.ndarray], weights: Weights, price: np.ndarray | None = None
) -> float:
    """:func:`weighted_cost` from already computed :func:`per_user_terms`."""
    return float(np.sum(per_user_cost(terms, weights, price)))


def queue_update(queue: np.ndarray, device_energy: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """Q_n(t+1) = max(0, Q_n(t) + e_n(t) - e_bar_n): the energy-budget virtual queues (J)."""
    return np.maximum(0.0, queue + device_energy - budget)


def queue_growth(queue: np.ndarray, new_queue: np.ndarray, budget: np.ndarray) -> float:
    """mean_n (Q_n(t+1) - Q_n(t)) / e_bar_n: the queue term of the reward (telescopes over an
    episode to mean_n Q_n(T) / e_bar_n)."""
    return float(np.mean((new_queue - queue) / budget))


def step_reward(cost: float, queue_term: float, energy_penalty: float) -> float:
    """reward = -(cost + energy_penalty * queue term)."""
    return -(cost + energy_penalty * queue_term)
