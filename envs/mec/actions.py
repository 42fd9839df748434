"""Action spaces of the MEC env, their projection rules, and the fast resource rule.

Every mode maps to one :class:`MECDecision` (SI units). Columns of the ``"full"`` action, per
user n (shape (N, 6)):

====  ==========  =========================================================================
col   name        meaning and projection
====  ==========  =========================================================================
0     alpha       layers trained on the device; rounded to the nearest integer, clipped to
                  [1, Upsilon - 1]
1     server      edge-server index; rounded, clipped to [0, M - 1]
2     power       p_n / p_n^max; clipped to [MIN_FRACTION, 1]
3     bandwidth   b_n / b_m^max (share of the chosen server's band); clipped to
                  [MIN_FRACTION, 1], then the shares of each server are scaled down
                  proportionally when they sum to more than 1 (constraint 9e)
4     freq_user   f_n / f_n^max; clipped to [MIN_FRACTION, 1]
5     freq_edge   f_nm / f_m^max (share of the server's GPU); same rule as bandwidth (9g)
====  ==========  =========================================================================

A zero power, bandwidth or frequency would make a delay infinite, hence the floor
``MIN_FRACTION``. ``"box"``: Box [-1, 1]^(6N) (the (N, 6) table above flattened user by
user), u = (x + 1)/2; alpha = 1 + round(u (Upsilon - 2)), server =
min(floor(u M), M - 1), power and freq_user = MIN_FRACTION + u (1 - MIN_FRACTION); bandwidth and
freq_edge shares = (MIN_FRACTION + u) normalised over each server's users, so the budgets are
always used in full. ``"discrete"``: MultiDiscrete([Upsilon - 1] * N + [M] * N), alpha = a + 1 and
the server; power, bandwidth and frequencies by :func:`fast_resource_rule`.
"""

from __future__ import annotations

import numpy as np
from edgeft.envs.common import as_action_array
from edgeft.envs.mec.config import MECConfig
from edgeft.envs.mec.types import MECDecision, MECInstance
from gymnasium import spaces

MIN_FRACTION = 1e-3
COLUMNS = ("alpha", "server", "power", "bandwidth", "freq_user", "freq_edge")


def action_space(config: MECConfig) -> spaces.Space:
    """The Gymnasium action space of ``config.action_mode``."""
    n, m, y = config.num_users, config.num_servers, config.num_layers
    if config.action_mode == "full":
        low = np.tile(np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0]), (n, 1))
        high = np.tile(np.array([y - 1.0, m - 1.0, 1.0, 1.0, 1.0, 1.0]), (n, 1))
        return spaces.Box(low=low, high=high, dtype=np.float64)
    if config.action_mode == "box":
        return spaces.Box(low=-1.0, high=1.0, shape=(6 * n,), dtype=np.float32)
    return spaces.MultiDiscrete(np.array([y - 1] * n + [m] * n, dtype=np.int64))


def _server_sums(values: np.ndarray, server: np.ndarray, m: int) -> np.ndarray:
    return np.bincount(server, weights=values, minlength=m)


def _cap_shares(shares: np.ndarray, server: np.ndarray, m: int) -> np.ndarray:
    tot = _server_sums(shares, server, m)
    scale = np.where(tot > 1.0, 1.0 / np.maximum(tot, 1e-300), 1.0)
    return shares * scale[server]


def fractions_to_decision(inst: MECInstance, table: np.ndarray) -> MECDecision:
    """A decision from a projected (N, 6) table of the ``"full"`` mode (SI units)."""
    server = table[:, 1].astype(np.int64)
    return MECDecision(
        alpha=table[:, 0].copy(),
        server=server,
        power=table[:, 2] * inst.p_max,
        bandwidth=table[:, 3] * inst.b_max[server],
        freq_user=table[:, 4] * inst.f_user_max,
        freq_edge=table[:, 5] * inst.f_edge_max[server],
    )


def decision_to_fractions(inst: MECInstance, dec: MECDecision) -> np.ndarray:
    """The ``"full"``-mode action (N, 6) that expresses ``dec`` exactly (up to float rounding)."""
    s = np.asarray(dec.server, dtype=np.int64)
    return np.stack([
        np.asarray(dec.alpha, dtype=np.float64),
        s.astype(np.float64),
        dec.power / inst.p_max,
        dec.bandwidth / inst.b_max[s],
        dec.freq_user / inst.f_user_max,
        dec.freq_edge / inst.f_edge_max[s],
    ], axis=1)


def project_full(config: MECConfig, action: object) -> tuple[np.ndarray, dict[str, float]]:
    """Validate and project a ``"full"`` action; returns the table and the projection report.

    The report gives, per column, the largest absolute change the projection made (0 when the
    action was feasible as given).

    Raises:
        ValueError: wrong shape, or NaN/inf entries.
    """
    n, m, y = config.num_users, config.num_servers, config.num_layers
    a = as_action_array(action, (n, 6), "an (N, 6) array [alpha, server, power, bandwidth, "
                        "freq_user, freq_edge] per user")
    t = a.copy()
    t[:, 0] = np.clip(np.round(t[:, 0]), 1, y - 1)
    t[:, 1] = np.clip(np.round(t[:, 1]), 0, m - 1)
    t[:, 2:] = np.clip(t[:, 2:], MIN_FRACTION, 1.0)
    server = t[:, 1].astype(np.int64)
    t[:, 3] = _cap_shares(t[:, 3], server, m)
    t[:, 5] = _cap_shares(t[:, 5], server, m)
    report = {c: float(np.max(np.abs(t[:, i] - a[:, i]))) for i, c in enumerate(COLUMNS)}
    return t, report


def box_to_table(config: MECConfig, action: object) -> tuple[np.ndarray, dict[str, float]]:
    """Map a ``"box"`` action to a projected (N, 6) table; report = largest clip per column.

    Raises:
        ValueError: wrong shape, or NaN/inf entries.
    """
    n, m, y = config.num_users, config.num_servers, config.num_layers
    x = as_action_array(action, (6 * n,), "a flat array of 6 N values in [-1, 1]")
    xc = np.clip(x, -1.0, 1.0)
    report = {c: float(np.max(np.abs(xc - x).reshape(n, 6)[:, i])) for i, c in enumerate(COLUMNS)}
    u = ((xc + 1.0) / 2.0).reshape(n, 6)
    t = np.empty((n, 6))
    t[:, 0] = 1.0 + np.round(u[:, 0] * (y - 2))
    t[:, 1] = np.minimum(np.floor(u[:, 1] * m), m - 1)
    server = t[:, 1].astype(np.int64)
    t[:, 2] = MIN_FRACTION + u[:, 2] * (1.0 - MIN_FRACTION)
    t[:, 4] = MIN_FRACTION + u[:, 4] * (1.0 - MIN_FRACTION)
    for col in (3, 5):
        w = MIN_FRACTION + u[:, col]
        t[:, col] = w / _server_sums(w, server, m)[server]
    return t, report


def discrete_to_alpha_server(config: MECConfig, action: object) -> tuple[np.ndarray, np.ndarray]:
    """Map a ``"discrete"`` action to (alpha, server).

    Raises:
        ValueError: wrong shape, non-integer or out-of-range entries.
    """
    n, m, y = config.num_users, config.num_servers, config.num_layers
    a = as_action_array(action, (2 * n,), "a MultiDiscrete vector [alpha - 1] * N + [server] * N")
    if np.any(a != np.round(a)):
        raise ValueError("action must be a MultiDiscrete vector of integers, got non-integer "
                         "entries")
    alpha = a[:n] + 1
    server = a[n:]
    if np.any((alpha < 1) | (alpha > y - 1)) or np.any((server < 0) | (server > m - 1)):
        raise ValueError(f"action out of the MultiDiscrete range: alpha - 1 must be in [0, {y - 2}]"
                         f" and server in [0, {m - 1}]")
    return alpha, server.astype(np.int64)


def fast_resource_rule(inst: MECInstance, alpha: np.ndarray, server: np.ndarray,
                       weights: tuple[float, float, float], upload_delay: bool = True
                       ) -> MECDecision:
    """Power, bandwidth and frequencies for given (alpha, server) in O(N) ("discrete" mode).

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
    fe = w / _server_sums(w, server, m_count)[server] * inst.f_edge_max[server]
    if we > 0 and wt > 0:
        fe = np.minimum(fe, (wt / (2 * we * inst.kappa_edge)) ** (1.0 / 3.0))
    count = np.bincount(server, minlength=m_count).astype(np.float64)
    b_eq = inst.b_max[server] / count[server]
    g = inst.gain[np.arange(inst.num_users), server]
    eta = np.log2(1.0 + g * p / (inst.noise_psd * b_eq))
    k = (we * p + (wt if upload_delay else 0.0)) * inst.bits
    wb = np.sqrt(np.maximum(k, 1e-300) / np.maximum(eta, 1e-300))
    b = wb / _server_sums(wb, server, m_count)[server] * inst.b_max[server]
    return MECDecision(alpha=alpha, server=server, power=p, bandwidth=b, freq_user=fu,
                       freq_edge=fe)
