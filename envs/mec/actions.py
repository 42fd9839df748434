"""Action spaces of the MEC env, their projection rules, and action <-> decision in both ways.

Every mode maps to one :class:`MECDecision` (SI units). Columns of the ``"full"`` action, per
user n (shape (N, 6)):

====  ==========  =========================================================================
col   name        meaning and projection
====  ==========  =========================================================================
0     alpha       layers trained on the device, in [1, Upsilon - 1]; rounded to the nearest
                  integer
1     server      edge-server index, in [0, M - 1]; rounded to the nearest integer
2     power       p_n / p_n^max, in [0, 1]; raised to MIN_FRACTION if below
3     bandwidth   b_n / b_m^max (share of the chosen server's band), in [0, 1]; raised to
                  MIN_FRACTION if below, then the shares of each server are scaled down
                  proportionally when they sum to more than 1 (constraint 9e)
4     freq_user   f_n / f_n^max, in [0, 1]; raised to MIN_FRACTION if below
5     freq_edge   f_nm / f_m^max (share of the server's GPU), in [0, 1]; same rule as
                  bandwidth (9g)
====  ==========  =========================================================================

A zero power, bandwidth or frequency would make a delay infinite, hence the floor
``MIN_FRACTION``. The ranges are the action space's bounds; what lies outside them is refused,
as in the FedLoRA env: every mode raises ``ValueError`` (naming the allowed values) for an
action that is not an element of its space: another shape (a transposed (6, N) table or a flat
vector for the (N, 6) ``"full"`` mode included), NaN/inf, a complex, object or string array,
entries outside the bounds (beyond round-off, ``edgeft.envs.common.ACTION_TOLERANCE``, which is
clipped), non-integers in ``"discrete"`` mode. Within the space the projection above (rounding,
floors, per-server caps) is applied and reported (``info["projection"]``).

``"box"``: Box [-1, 1]^(6N) (the (N, 6) table above flattened user by user), u = (x + 1)/2;
alpha = 1 + round(u (Upsilon - 2)), server = min(floor(u M), M - 1), power and freq_user =
MIN_FRACTION + u (1 - MIN_FRACTION); bandwidth and freq_edge shares = (MIN_FRACTION + u)
normalised over each server's users, so the budgets are always used in full. ``"discrete"``:
MultiDiscrete([Upsilon - 1] * N + [M] * N), alpha = a + 1 and the server; power, bandwidth and
frequencies by ``resources.fast_resource_rule``, the exact minimiser of the round's weighted cost
for that (alpha, server). ``"discrete-priced"``: the same space; the rule minimises the round's
cost with each user's device energy priced by its energy-budget queue
(``resources.queue_energy_price``, ``greedy-dpp``'s price), so that the power and frequencies
an agent gets follow the energy budgets (a new version of the discrete mode; ``"discrete"`` is
kept as it was for the agents that play it).

:func:`action_to_decision` maps an action of any mode to the decision the env applies;
:func:`decision_to_action` is the reverse, the action of a mode that expresses a decision (what
the reference policies and behaviour cloning write). :func:`constraint_violations` measures
P1's constraints (9a)-(9g) of a decision (all 0 after projection).

The resource rules moved to ``resources``; their names stay importable from here.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np
from edgeft.envs.common import as_action_array, check_action_bounds
from edgeft.envs.mec.config import DISCRETE_MODES, MIN_FRACTION, MECConfig
from edgeft.envs.mec.resources import (  # noqa: F401  (re-exported: old import paths)
    LN2,
    _kappa_rho,
    fast_resource_rule,
    heuristic_resource_rule,
    optimal_edge_frequency,
    optimal_power_bandwidth,
    queue_energy_price,
    server_sums,
)
from edgeft.envs.mec.types import MECDecision, MECInstance, at_server
from gymnasium import spaces

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


def full_bounds(config: MECConfig) -> tuple[np.ndarray, np.ndarray]:
    """The per-column bounds (low, high), shape (6,) each, of a ``"full"`` action's table:
    alpha in [1, Upsilon - 1], server in [0, M - 1], the four fractions in [0, 1]."""
    low = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    high = np.array([config.num_layers - 1.0, config.num_servers - 1.0, 1.0, 1.0, 1.0, 1.0])
    return low, high


def copy_server_sums(values: np.ndarray, server: np.ndarray, m: int) -> np.ndarray:
    """``resources.server_sums`` for one copy ((N,) values and servers, (M,) sums) or a batch
    ((..., N) values and servers, (..., M) sums): one ``np.bincount`` over the copies' servers
    offset by M per copy, which adds each server's users in user order, as one copy's
    ``np.bincount`` does (so each copy's sums are its own call's, bit for bit)."""
    if server.ndim == 1:
        return server_sums(values, server, m)
    lead = server.shape[:-1]
    copies = int(np.prod(lead))
    offset = (np.arange(copies, dtype=np.int64) * m).reshape(lead + (1,))
    sums = np.bincount((server + offset).ravel(), weights=np.ravel(values), minlength=copies * m)
    return sums.reshape(lead + (m,))


def _cap_shares(shares: np.ndarray, server: np.ndarray, m: int) -> np.ndarray:
    tot = copy_server_sums(shares, server, m)
    scale = np.where(tot > 1.0, 1.0 / np.maximum(tot, 1e-300), 1.0)
    return shares * at_server(scale, server)


def fractions_to_decision(inst: MECInstance, table: np.ndarray) -> MECDecision:
    """A decision from a projected (N, 6) table of the ``"full"`` mode (SI units); a batch of
    tables (..., N, 6) with a batched instance gives a batched decision."""
    server = table[..., 1].astype(np.int64)
    return MECDecision(
        alpha=table[..., 0].copy(),
        server=server,
        power=table[..., 2] * inst.p_max,
        bandwidth=table[..., 3] * at_server(inst.b_max, server),
        freq_user=table[..., 4] * inst.f_user_max,
        freq_edge=table[..., 5] * at_server(inst.f_edge_max, server),
    )


def decision_to_fractions(inst: MECInstance, dec: MECDecision) -> np.ndarray:
    """The ``"full"``-mode action (N, 6) that expresses ``dec`` exactly (up to float rounding)."""
    s = np.asarray(dec.server, dtype=np.int64)
    return np.stack(
        [
            np.asarray(dec.alpha, dtype=np.float64),
            s.astype(np.float64),
            dec.power / inst.p_max,
            dec.bandwidth / inst.b_max[s],
            dec.freq_user / inst.f_user_max,
            dec.freq_edge / inst.f_edge_max[s],
        ],
        axis=1,
    )


def project_full(config: MECConfig, action: object) -> tuple[np.ndarray, dict[str, float]]:
    """Validate and project a ``"full"`` action; returns the table and the projection report.

    The report gives, per column, the largest absolute change the projection made (0 when the
    action was feasible as given).

    Raises:
        ValueError: an action outside the action space: another shape than (N, 6), NaN/inf,
            a non-real dtype, an entry outside its column's bounds (:func:`full_bounds`).
    """
    n = config.num_users
    a = as_action_array(action, (n, 6), _full_what(config), reshape=False)
    check_action_bounds(
        a,
        *full_bounds(config),
        _full_what(config),
        names=lambda i: f"user {i // 6}'s {COLUMNS[i % 6]}",
    )
    t = _project_full_table(config, a)
    report = {c: float(np.max(np.abs(t[:, i] - a[:, i]))) for i, c in enumerate(COLUMNS)}
    return t, report


def _full_what(config: MECConfig) -> str:
    n, m, y = config.num_users, config.num_servers, config.num_layers
    return (
        f"an (N, 6) = ({n}, 6) array [alpha, server, power, bandwidth, freq_user, "
        f"freq_edge] per user, alpha in [1, {y - 1}], server in [0, {m - 1}], the fractions "
        "in [0, 1]"
    )


def _project_full_table(config: MECConfig, a: np.ndarray) -> np.ndarray:
    """The projection of valid ``"full"`` tables (N, 6), or a batch of them (..., N, 6)."""
    m, y = config.num_servers, config.num_layers
    t = a.copy()
    t[..., 0] = np.clip(np.round(t[..., 0]), 1, y - 1)
    t[..., 1] = np.clip(np.round(t[..., 1]), 0, m - 1)
    t[..., 2:] = np.clip(t[..., 2:], MIN_FRACTION, 1.0)
    server = t[..., 1].astype(np.int64)
    t[..., 3] = _cap_shares(t[..., 3], server, m)
    t[..., 5] = _cap_shares(t[..., 5], server, m)
    return t


def box_to_table(config: MECConfig, action: object) -> tuple[np.ndarray, dict[str, float]]:
    """Map a ``"box"`` action to a projected (N, 6) table; report = largest clip per column
    (round-off only: entries further outside [-1, 1] are refused).

    Raises:
        ValueError: an action outside the action space: another shape than (6 N,), NaN/inf, a
            non-real dtype, an entry outside [-1, 1].
    """
    n = config.num_users
    what = f"a flat array of 6 N = {6 * n} values in [-1, 1]"
    x = as_action_array(action, (6 * n,), what, reshape=False)
    check_action_bounds(x, -1.0, 1.0, what, names=lambda i: f"user {i // 6}'s {COLUMNS[i % 6]}")
    xc = np.clip(x, -1.0, 1.0)
    report = {c: float(np.max(np.abs(xc - x).reshape(n, 6)[:, i])) for i, c in enumerate(COLUMNS)}
    return _box_table(config, xc), report


def _box_table(config: MECConfig, xc: np.ndarray) -> np.ndarray:
    """The (N, 6) table of valid ``"box"`` actions (6 N,), or a batch of them (..., 6 N)."""
    n, m, y = config.num_users, config.num_servers, config.num_layers
    lead = xc.shape[:-1]
    u = ((xc + 1.0) / 2.0).reshape(lead + (n, 6))
    t = np.empty(lead + (n, 6))
    t[..., 0] = 1.0 + np.round(u[..., 0] * (y - 2))
    t[..., 1] = np.minimum(np.floor(u[..., 1] * m), m - 1)
    server = t[..., 1].astype(np.int64)
    t[..., 2] = MIN_FRACTION + u[..., 2] * (1.0 - MIN_FRACTION)
    t[..., 4] = MIN_FRACTION + u[..., 4] * (1.0 - MIN_FRACTION)
    for col in (3, 5):
        w = MIN_FRACTION + u[..., col]
        t[..., col] = w / at_server(copy_server_sums(w, server, m), server)
    return t


def discrete_to_alpha_server(config: MECConfig, action: object) -> tuple[np.ndarray, np.ndarray]:
    """Map a ``"discrete"`` action to (alpha, server).

    Raises:
        ValueError: an action outside the action space: another shape than (2 N,), NaN/inf,
            a non-real dtype, non-integer or out-of-range entries.
    """
    n, m, y = config.num_users, config.num_servers, config.num_layers
    a = as_action_array(
        action, (2 * n,), "a MultiDiscrete vector [alpha - 1] * N + [server] * N", reshape=False
    )
    if np.any(a != np.round(a)):
        raise ValueError(
            "action must be a MultiDiscrete vector of integers, got non-integer entries"
        )
    alpha = a[:n] + 1
    server = a[n:]
    if np.any((alpha < 1) | (alpha > y - 1)) or np.any((server < 0) | (server > m - 1)):
        raise ValueError(
            f"action out of the MultiDiscrete range: alpha - 1 must be in [0, {y - 2}]"
            f" and server in [0, {m - 1}]"
        )
    return alpha, server.astype(np.int64)


def action_to_decision(
    config: MECConfig, action: Any, inst: MECInstance
) -> tuple[MECDecision, dict[str, float]]:
    """Validate, project and map an action of ``config.action_mode`` to a decision (SI units).

    Returns the decision and the projection report (per column of the ``"full"`` table, the
    largest change the projection made; all 0 in ``"discrete"`` mode, whose resources come
    from ``resources.fast_resource_rule``).

    Raises:
        ValueError: an action that is not an element of the mode's action space (wrong shape,
            NaN/inf, a non-real dtype, entries outside the bounds, non-integers in discrete
            mode).
    """
    mode = config.action_mode
    if mode == "full":
        table, report = project_full(config, action)
        return fractions_to_decision(inst, table), report
    if mode == "box":
        table, report = box_to_table(config, action)
        return fractions_to_decision(inst, table), report
    alpha, server = discrete_to_alpha_server(config, action)
    return discrete_resources(config, inst, alpha, server), {c: 0.0 for c in COLUMNS}


def discrete_resources(
    config: MECConfig, inst: MECInstance, alpha: np.ndarray, server: np.ndarray
) -> MECDecision:
    """The decision of a discrete mode for (alpha, server): ``resources.fast_resource_rule``,
    the exact minimiser of the round's weighted cost (``"discrete"``) or of that cost with each
    user's device energy priced by its energy-budget queue (``"discrete-priced"``:
    ``resources.queue_energy_price``, the price ``greedy-dpp`` pays)."""
    price = None
    if config.action_mode == "discrete-priced":
        price = queue_energy_price(inst.energy_queue, inst.energy_budget)
    return fast_resource_rule(inst, alpha, server, config.weights, config.upload_delay, price)


def actions_to_decisions(
    config: MECConfig, actions: Any, inst: MECInstance
) -> tuple[MECDecision, dict[str, np.ndarray]]:
    """:func:`action_to_decision` for a batch of copies: ``actions`` one action per copy (a
    leading copy axis), ``inst`` the batched instance. Returns the batched decision and the
    projection report (per column, a (copies,) array of each copy's largest change).

    ``"full"`` and ``"box"`` are validated and projected in one numpy pass over the batch (only
    elementwise arithmetic and per-copy sums in user order, so each copy's decision and report
    are those of :func:`action_to_decision` on its action, bit for bit); ``"discrete"`` runs the
    resource rule copy by copy (its per-server Newton iterations run per instance).

    Raises:
        ValueError: the batch is not an array of one action per copy, or some copy's action
            is not an element of the mode's action space (the message names the copy and the
            entry, as :func:`action_to_decision` names the entry).
    """
    mode = config.action_mode
    copies, n = int(inst.tokens.shape[0]), config.num_users
    if mode in DISCRETE_MODES:
        what = f"a batch of {copies} MultiDiscrete actions [alpha - 1] * N + [server] * N"
        a = as_action_array(actions, (copies, 2 * n), what, reshape=False)
        decisions = []
        for i in range(copies):
            try:
                alpha, server = discrete_to_alpha_server(config, a[i])
            except ValueError as err:
                raise ValueError(f"copy {i}: {err}") from None
            decisions.append((alpha, server))
        decs = [
            discrete_resources(config, inst.index(i), alpha, server)
            for i, (alpha, server) in enumerate(decisions)
        ]
        zero = np.zeros(copies)
        stacked = {
            f.name: np.stack([getattr(d, f.name) for d in decs]) for f in fields(MECDecision)
        }
        return MECDecision(**stacked), {c: zero.copy() for c in COLUMNS}

    def names(k: int) -> str:
        return f"copy {k // (6 * n)}: user {k // 6 % n}'s {COLUMNS[k % 6]}"

    if mode == "full":
        what = f"a batch of {copies} actions, each {_full_what(config)}"
        a = as_action_array(actions, (copies, n, 6), what, reshape=False)
        check_action_bounds(a, *full_bounds(config), what, names=names)
        table = _project_full_table(config, a)
        change = np.max(np.abs(table - a), axis=-2)
    else:
        what = f"a batch of {copies} actions, each a flat array of 6 N = {6 * n} values in [-1, 1]"
        x = as_action_array(actions, (copies, 6 * n), what, reshape=False)
        check_action_bounds(x, -1.0, 1.0, what, names=names)
        xc = np.clip(x, -1.0, 1.0)
        change = np.max(np.abs(xc - x).reshape(copies, n, 6), axis=-2)
        table = _box_table(config, xc)
    report = {c: change[:, i].copy() for i, c in enumerate(COLUMNS)}
    return fractions_to_decision(inst, table), report


def discrete_action(alpha: np.ndarray, server: np.ndarray) -> np.ndarray:
    """The ``"discrete"`` action [alpha - 1] * N + [server] * N (alpha rounded to integers)."""
    return np.concatenate([np.round(alpha) - 1, server]).astype(np.int64)


def decision_to_action(
    decision: MECDecision,
    config: MECConfig,
    action_mode: str | None = None,
    inst: MECInstance | None = None,
) -> np.ndarray:
    """The action of ``action_mode`` (default ``config.action_mode``) expressing ``decision``.

    ``"full"``: exactly (up to float rounding; :func:`decision_to_fractions`). ``"discrete"``:
    alpha and server (the env then applies its resource rule; ``inst`` may be None).
    ``"box"``: the nearest box point; the box mode always fills each server's band and GPU, so
    a decision that leaves capacity unused is scaled up (per server, the largest share maps to
    the top of the box).

    Raises:
        ValueError: an unknown ``action_mode``, or no ``inst`` for ``"full"`` / ``"box"``.
    """
    mode = action_mode or config.action_mode
    if mode in DISCRETE_MODES:
        return discrete_action(decision.alpha, decision.server)
    if mode not in ("full", "box"):
        raise ValueError(f"action_mode must be one of {list(config.ACTION_MODES)}, got {mode!r}")
    if inst is None:
        raise ValueError(f"decision_to_action needs the round's instance for action_mode {mode!r}")
    t = decision_to_fractions(inst, decision)
    if mode == "full":
        return t
    m, y = config.num_servers, config.num_layers
    u = np.empty_like(t)
    u[:, 0] = (t[:, 0] - 1) / max(y - 2, 1)
    u[:, 1] = (t[:, 1] + 0.5) / m
    u[:, 2] = (t[:, 2] - MIN_FRACTION) / (1 - MIN_FRACTION)
    u[:, 4] = (t[:, 4] - MIN_FRACTION) / (1 - MIN_FRACTION)
    for col in (3, 5):  # shares: w = MIN + u normalised per server; pick the largest scale
        top = np.zeros(m)
        np.maximum.at(top, decision.server, t[:, col])
        k = (1 + MIN_FRACTION) / top[decision.server]
        u[:, col] = k * t[:, col] - MIN_FRACTION
    return (2 * np.clip(u, 0, 1) - 1).ravel().astype(np.float32)


def constraint_violations(
    inst: MECInstance,
    alpha: Any,
    chi: Any,
    power: Any,
    bandwidth: Any,
    freq_user: Any,
    freq_edge: Any,
) -> dict[str, float]:
    """Largest violation of each constraint (9a)-(9g) of P1; 0 means satisfied.

    Budget violations (9d)-(9g) are relative to the budget (e.g. sum_n b_nm / b_m^max - 1);
    negative resources count in absolute units.

    ``chi`` is the (N, M) association, ``bandwidth`` and ``freq_edge`` are (N, M) allocations
    b_nm, f_nm (or (N,) values at the associated server). Budgets (9e), (9g) are capacities
    (``<=``, docs/corrections.md). (9a) uses alpha in {1, ..., Upsilon - 1} (alpha = Upsilon has an
    infinite
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
        "9a": float(
            max(
                np.max(np.abs(alpha - np.round(alpha))),
                np.max(np.maximum(1 - alpha, 0)),
                np.max(np.maximum(alpha - upper, 0)),
            )
        ),
        "9b": float(np.max(np.minimum(np.abs(chi), np.abs(1 - chi)))),
        "9c": float(np.max(np.abs(chi.sum(axis=1) - 1))),
        "9d": float(max(np.max(np.maximum(p / inst.p_max - 1, 0)), np.max(np.maximum(-p, 0)))),
        "9e": float(
            max(
                np.max(np.maximum((chi * b).sum(axis=0) / inst.b_max - 1, 0)),
                np.max(np.maximum(-b, 0)),
            )
        ),
        "9f": float(
            max(np.max(np.maximum(fu / inst.f_user_max - 1, 0)), np.max(np.maximum(-fu, 0)))
        ),
        "9g": float(
            max(
                np.max(np.maximum((chi * fe).sum(axis=0) / inst.f_edge_max - 1, 0)),
                np.max(np.maximum(-fe, 0)),
            )
        ),
    }


def constraint_violations_batch(inst: MECInstance, dec: MECDecision) -> dict[str, np.ndarray]:
    """:func:`constraint_violations` of a batch of decisions (arrays with a leading copy axis,
    ``inst`` the batched instance): per constraint, a (copies,) array whose entry i is copy i's
    value of :func:`constraint_violations`, bit for bit.

    The same terms, measured without the (N, M) association matrix: chi is binary with one 1
    per user, so (9b) and (9c) are 0; a server's column sum of b_nm is the sum of its users'
    bandwidths in user order (``copy_server_sums``: the zeros of the other users add nothing);
    the largest negative entry of b_nm is the largest of the users' (the other entries are 0,
    and a zero term never beats the budget term, which is >= 0 and comes first: ``max`` of two
    terms keeps the first on a tie, as Python's).
    """
    server = np.asarray(dec.server)
    copies = server.shape[0]
    m = inst.num_servers
    alpha = np.asarray(dec.alpha, dtype=np.float64)
    bw = np.asarray(dec.bandwidth, dtype=np.float64)
    fe = np.asarray(dec.freq_edge, dtype=np.float64)
    p = np.asarray(dec.power, dtype=np.float64)
    fu = np.asarray(dec.freq_user, dtype=np.float64)
    upper = inst.num_layers - 1
    users = np.max(
        np.stack(
            [
                np.abs(alpha - np.round(alpha)),
                np.maximum(1 - alpha, 0),
                np.maximum(alpha - upper, 0),
                np.maximum(p / inst.p_max - 1, 0),
                np.maximum(-p, 0),
                np.maximum(-bw, 0),
                np.maximum(fu / inst.f_user_max - 1, 0),
                np.maximum(-fu, 0),
                np.maximum(-fe, 0),
            ]
        ),
        axis=-1,
    )
    servers = np.max(
        np.stack(
            [
                np.maximum(copy_server_sums(bw, server, m) / inst.b_max - 1, 0),
                np.maximum(copy_server_sums(fe, server, m) / inst.f_edge_max - 1, 0),
            ]
        ),
        axis=-1,
    )
    zero = np.zeros(copies)
    return {
        "9a": np.maximum(np.maximum(users[0], users[1]), users[2]),
        "9b": zero,
        "9c": zero.copy(),
        "9d": np.maximum(users[3], users[4]),
        "9e": np.maximum(servers[0], users[5]),
        "9f": np.maximum(users[6], users[7]),
        "9g": np.maximum(servers[1], users[8]),
    }
