"""Actions of the FedLoRA env: spaces, validation, projection, action -> decision (which devices
are scheduled, with what bandwidth: :data:`~edgeft.envs.fedlora.types.Decision`) and decision ->
action (for policies that decide in physical terms). Batched pure functions shared by the single
and the vector env.

What the env accepts: the elements of the action space. An action that is not one raises
``ValueError`` naming the allowed values: a wrong shape, NaN/inf, a complex, object or string
array, a count that is not an integer in [0, K], a subset entry other than 0 or 1, a bandwidth
share outside [0, 1] or a score outside [-1, 1] (beyond round-off,
``edgeft.envs.common.ACTION_TOLERANCE``, which is clipped). Within the space, bandwidth shares
that sum to more than 1 are projected (divided by their sum; ``info["action_projected"]``).

``"score"`` is the Box mode for agents whose outputs are squashed into an open interval (SB3's
SAC and TD3: tanh, rescaled to the Box bounds), which never emit a bandwidth share of exactly 0
and so, in ``"bandwidth"`` mode, schedule every device. Its action is Box(-1, 1, (K,), float64)
([-1, 1]: the bounds SB3 recommends, its tanh output unscaled): one schedule score per device;
device k is scheduled iff its score is above :data:`SCORE_THRESHOLD` (0), so dropping a device
is half of the action space rather than its boundary, and no score above 0 schedules nobody.
The scheduled devices share all of B by the min-max-delay split (``formulas.min_common_delay``,
as in ``"count"`` and ``"subset"``): the split with the shortest round for that set, the one
the min-max-delay reference policies use, so an agent only has to learn the set.

``"allowance"`` is the mode whose action does not depend on K: Box(-1, 1, (1,), float64), the
round's delay allowance ``a = (u + 1) / 2 x ALLOWANCE_MAX x D-bar`` (from 0 at u = -1 to
:data:`ALLOWANCE_MAX` D-bar at u = 1). The env schedules the longest prefix of the channel order
(:func:`channel_order`) whose min-max-delay round fits in ``a`` (GS's rule with the budget ``a``
in place of D-bar: the prefix whose Lemma-3 bandwidths for the delay ``a`` add up to at most B;
nobody when even the strongest device alone needs longer) and splits B min-max-delay, as
``"count"`` does. An agent picks how much of the budget each round spends and the env picks the
devices, so one policy plays any K; the reference policies' decisions (channel-ordered prefixes)
are expressed exactly (:func:`decision_to_action`).
(Measured and rejected: K extra share weights tilting that split, which would make every split
expressible. SAC's random initial weights starve devices at random; with 4k SAC steps on K = 4
the linear tilt learned to schedule 0.4 devices a round, and a tilt confined to weights below
-0.9 dropped the weakest device in 68-78% of rounds against 89-97% for the plain split, 3 seeds.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from edgeft.envs.common import ACTION_TOLERANCE, as_action_array, check_action_bounds
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.fedlora.formulas import min_common_delay, min_common_delay_one
from edgeft.envs.fedlora.types import Decision, State
from gymnasium import spaces

#: how each action mode's action is described in error messages
ACTION_WHAT = {
    "bandwidth": "bandwidth shares in [0, 1] (one per device)",
    "subset": "a 0/1 vector (one entry per device)",
    "score": "schedule scores in [-1, 1] (one per device; > 0 = scheduled)",
    "allowance": "one delay allowance in [-1, 1] (-1 = schedule nobody, 1 = 4 D-bar)",
}
#: ``"score"`` mode: a device is scheduled iff its score is above this (strictly)
SCORE_THRESHOLD = 0.0
#: the bounds of the Box action modes, (low, high)
BOX_BOUNDS = {"bandwidth": (0.0, 1.0), "score": (-1.0, 1.0), "allowance": (-1.0, 1.0)}
#: ``"allowance"`` mode: the largest delay allowance (u = 1), in units of D-bar
ALLOWANCE_MAX = 4.0
#: :func:`decision_to_action` in ``"allowance"`` mode: the widest gap (in D-bar) whose middle it
#: takes above the decision's own round delay
ALLOWANCE_MARGIN = 0.5
_SHARES = ACTION_WHAT["bandwidth"]
_F64 = np.dtype(np.float64)
_MAX = np.maximum.reduce


def action_space(config: FedLoRAConfig) -> spaces.Space:
    """The action space of ``config.action_mode`` (see the env's docstring)."""
    k = config.num_devices
    if config.action_mode == "bandwidth":
        return spaces.Box(0.0, 1.0, (k,), np.float64)
    if config.action_mode == "count":
        return spaces.Discrete(k + 1)
    if config.action_mode == "score":
        return spaces.Box(-1.0, 1.0, (k,), np.float64)
    if config.action_mode == "allowance":
        return spaces.Box(-1.0, 1.0, (1,), np.float64)
    return spaces.MultiBinary(k)


def allowance_seconds(action: np.ndarray, config: FedLoRAConfig) -> np.ndarray:
    """``"allowance"`` mode: the delay allowance (s) of actions ``u`` in [-1, 1] (clipped)."""
    u = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    return (u + 1.0) * 0.5 * ALLOWANCE_MAX * config.budget_s


def allowance_counts(
    allowance_s: np.ndarray,
    config: FedLoRAConfig,
    gain: np.ndarray,
    bits: np.ndarray,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """The number of devices ``"allowance"`` mode schedules: per row of ``gain``/``bits``
    (..., K) and allowance (s) of shape (..., L) (L allowances per row), the longest prefix of
    the channel order whose Lemma-3 bandwidths for that delay add up to at most B (= the longest
    prefix with min-max delay D* <= the allowance). Shape (..., L), int64. ``order``: the
    rows' :func:`channel_order`, if the caller has it."""
    from edgeft.envs.fedlora.formulas import bandwidth_for_delay

    gain = np.asarray(gain, dtype=np.float64)
    bits = np.broadcast_to(np.asarray(bits, dtype=np.float64), gain.shape)
    if order is None:
        order = channel_order(gain, bits)
    g = np.take_along_axis(gain, order, axis=-1)[..., None, :]
    b = np.take_along_axis(bits, order, axis=-1)[..., None, :]
    a = np.asarray(allowance_s, dtype=np.float64)[..., None]
    positive = a > 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        need = bandwidth_for_delay(b, np.where(positive, a, 1.0), g, config.noise_psd)
    fits = (np.cumsum(need, axis=-1) <= config.bandwidth_hz) & positive
    return fits.sum(axis=-1).astype(np.int64)


def channel_order(gain: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Device indices strongest first: by |h_k|^2 / mu_k descending (= by |h_k|^2 with equal mu,
    FT Algorithm 1 line 3). Ties broken by index (stable sort)."""
    return np.argsort(-(gain / bits), axis=-1, kind="stable")


def prefix_mask(order: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Bool mask of the ``count`` first devices of ``order`` (batched)."""
    ranks = np.argsort(order, axis=-1)  # rank of each device in the order
    return ranks < np.asarray(count)[..., None]


def project_shares(action: np.ndarray, total: Any = None) -> tuple[np.ndarray, Any]:
    """Projection of bandwidth shares (documented rule).

    Each share is clipped to [0, 1] (the env has refused anything beyond round-off before this);
    if the shares then sum to more than 1 they are divided by their sum. A device with share 0
    is not scheduled; unused bandwidth stays unused.
    Returns (shares, projected) where ``projected`` says whether the action was changed.
    ``total``: one env's ``action.sum()`` if the caller has it already (the hot path).
    """
    if action.ndim == 1:  # single env: scalar bookkeeping, fewest array passes first
        lo = action.min()
        if total is None:
            total = action.sum()
        if lo >= 0.0:
            if total <= 1.0:
                return action, np.False_  # already feasible (each share <= sum <= 1)
            if action.max() <= 1.0:
                return action / total, np.True_  # only the sum exceeded 1
        shares = np.minimum(np.maximum(action, 0.0), 1.0)
        total = shares.sum()
        if total > 1.0:
            shares /= total
        return shares, np.True_  # a share was clipped (and maybe the sum rescaled)
    shares = np.maximum(action, 0.0)
    np.minimum(shares, 1.0, out=shares)
    total = shares.sum(axis=-1, keepdims=True)
    shares /= np.maximum(total, 1.0)
    projected = (shares != action).any(axis=-1)
    return shares, projected


def allocate(
    action: np.ndarray, config: FedLoRAConfig, gain: np.ndarray, bits: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn validated actions (batched, leading axis = envs) into (scheduled, bandwidth Hz,
    projected).

    - "bandwidth": ``project_shares``; bandwidth = share x B.
    - "count": the n strongest devices (``channel_order``), min-max-delay split (n validated in
      [0, K] by :func:`validate_action`).
    - "subset": the devices with entry 1 (validated 0/1), min-max-delay split.
    - "score": the devices with score > :data:`SCORE_THRESHOLD`, min-max-delay split; scores
      validated in [-1, 1] up to round-off, which counts as clipped (projected) and leaves the
      schedule as it is.
    - "allowance": the longest channel-ordered prefix that fits the delay allowance
      (:func:`allowance_counts`), min-max-delay split; round-off beyond [-1, 1] is clipped
      (projected).
    """
    mode = config.action_mode
    big_b = config.bandwidth_hz
    if mode == "bandwidth":
        shares, projected = project_shares(action)
        bandwidth = shares * big_b
        return bandwidth > 0.0, bandwidth, projected
    if mode == "count":
        n_raw = action.reshape(action.shape[0])
        n = np.clip(n_raw, 0, config.num_devices)
        projected = n != n_raw
        mask = prefix_mask(channel_order(gain, bits), n.astype(np.int64))
    elif mode == "allowance":
        u = action.reshape(action.shape[0])
        projected = (u < -1.0) | (u > 1.0)
        order = channel_order(gain, bits)
        n = allowance_counts(allowance_seconds(u, config)[:, None], config, gain, bits, order)
        mask = prefix_mask(order, n[:, 0])
    elif mode == "score":
        mask = action > SCORE_THRESHOLD
        projected = np.any((action < -1.0) | (action > 1.0), axis=-1)
    else:
        mask = action > 0.5
        projected = np.any((action != 0.0) & (action != 1.0), axis=-1)
    _, bandwidth = min_common_delay(bits, gain, config.noise_psd, big_b, mask)
    return mask, bandwidth, projected


def validate_action(action: object, config: FedLoRAConfig, batch: int | None = None) -> np.ndarray:
    """Actions that are not elements of the action space raise ValueError naming the allowed
    values: wrong shape (a (K, 1) array for a (K,) space included), NaN/inf, complex, object or
    string arrays, a count that is not an integer in [0, K], a subset entry other than 0 or 1,
    bandwidth shares outside [0, 1] and scores outside [-1, 1] (beyond
    ``edgeft.envs.common.ACTION_TOLERANCE``). Shares that sum to more than 1 are projected
    (:func:`project_shares`).

    Returns a float64 array of shape (batch, K) (or (batch, 1) for "count" and "allowance");
    ``batch=None`` means a single env's action.
    """
    k = config.num_devices
    lead = (1,) if batch is None else (batch,)
    if config.action_mode == "count":
        what = f"an integer count in [0, {k}] (devices to schedule)"
        # a single env takes a scalar or any one-element array (SB3's predict gives either)
        arr = as_action_array(
            action, lead if batch is not None else (), what, reshape=batch is None
        )
        arr = arr.reshape(lead)
        if np.any(arr != np.rint(arr)) or np.any((arr < 0) | (arr > k)):
            raise ValueError(f"action must be {what}, got {arr.tolist()}")
        return arr.reshape(lead + (1,))
    what = ACTION_WHAT[config.action_mode]
    if config.action_mode == "allowance":
        # a single env takes a scalar or any one-element array, as in "count"
        arr = as_action_array(
            action, lead + (1,) if batch is not None else (1,), what, reshape=batch is None
        )
        check_action_bounds(arr, -1.0, 1.0, what)
        return arr.reshape(lead + (1,))
    arr = as_action_array(action, lead + (k,) if batch is not None else (k,), what, reshape=False)
    if config.action_mode == "subset" and np.any((arr != 0.0) & (arr != 1.0)):
        bad = np.flatnonzero(((arr != 0.0) & (arr != 1.0)).ravel())[:10].tolist()
        raise ValueError(f"action must be {what}; entries other than 0 and 1 at flat indices {bad}")
    if config.action_mode in BOX_BOUNDS:
        check_action_bounds(arr, *BOX_BOUNDS[config.action_mode], what)
    return arr if arr.shape == lead + (k,) else arr.reshape(lead + (k,))


def action_to_decision(
    action: Any, state: State, config: FedLoRAConfig, batch: int | None = None
) -> Decision:
    """Validate ``action`` and turn it into the round's decision ``(scheduled (bool), bandwidth
    (Hz), projected)`` for the channel and message sizes of ``state``.

    ``batch=None``: one env's action and an unbatched ``state`` (projected is a bool); else
    ``batch`` actions and a ``state`` with that leading axis. Malformed actions raise
    ``ValueError`` (:func:`validate_action`).
    """
    if batch is None and config.action_mode == "bandwidth":  # the single env's hot path
        if (
            type(action) is np.ndarray
            and action.dtype == _F64
            and action.shape == (config.num_devices,)
        ):
            total = action.sum()  # one reduction: finiteness check and the projection's sum
            if math.isfinite(total):
                lo = action.min()
                if lo >= 0.0 and total <= 1.0:  # feasible (each share <= sum <= 1): as given
                    bandwidth = action * config.bandwidth_hz
                    return bandwidth > 0.0, bandwidth, np.False_
                hi = action.max()
                if lo < -ACTION_TOLERANCE or hi > 1.0 + ACTION_TOLERANCE:
                    check_action_bounds(action, 0.0, 1.0, _SHARES)  # raises, naming the entry
                if lo >= 0.0 and hi <= 1.0:  # in the box, the sum above 1: divided by it
                    bandwidth = (action / total) * config.bandwidth_hz  # project_shares order
                    return bandwidth > 0.0, bandwidth, np.True_
                shares, clipped = project_shares(action, total)  # round-off beyond the bounds
                bandwidth = shares * config.bandwidth_hz
                return bandwidth > 0.0, bandwidth, clipped
        act = as_action_array(action, (config.num_devices,), _SHARES, reshape=False)
        check_action_bounds(act, 0.0, 1.0, _SHARES)
        shares, projected = project_shares(act)
        bandwidth = shares * config.bandwidth_hz
        return bandwidth > 0.0, bandwidth, projected
    if batch is None:  # count, allowance, subset, score: the single env's hot path
        decision = _single_set_decision(action, state, config)
        if decision is not None:
            return decision
    act = validate_action(action, config, batch)
    if batch is None:
        scheduled, bandwidth, projected = allocate(act, config, state.gain[None], state.bits[None])
        return scheduled[0], bandwidth[0], projected[0]
    return allocate(act, config, state.gain, state.bits)


def _single_set_decision(action: Any, state: State, config: FedLoRAConfig) -> Decision | None:
    """One env's count/allowance/subset/score decision without the batch machinery: the same
    set, split and projection flag as :func:`allocate` on a batch of one (the same numbers: the
    split is ``min_common_delay_one``, which equals ``min_common_delay`` bit for bit). None for
    any action it does not take as it is (another type or dtype, a malformed action): the general
    path converts it or raises."""
    mode = config.action_mode
    k = config.num_devices
    gain, bits = state.gain, state.bits
    projected = False
    if mode in ("count", "allowance"):
        if mode == "allowance":
            if type(action) is not np.ndarray or action.size != 1 or action.dtype != _F64:
                return None
            u = float(action.reshape(()))
            if not abs(u) <= 1.0 + ACTION_TOLERANCE:  # NaN, inf, outside the box: refused
                return None
            projected = abs(u) > 1.0
            a = allowance_seconds(np.array([u]), config)
            n = int(allowance_counts(a, config, gain, bits)[0])
        elif type(action) is np.ndarray:
            if action.size != 1 or action.dtype.kind not in "iu":
                return None
            n = int(action.reshape(()))
        elif isinstance(action, (int, np.integer)) and type(action) is not bool:
            n = int(action)
        else:
            return None
        if not 0 <= n <= k:
            return None
        if n < k:  # the n first of channel_order, in index order
            members = (-(gain / bits)).argsort(kind="stable")[:n]
            members.sort()
        else:
            members = np.arange(k)
        scheduled = np.zeros(k, dtype=bool)
        scheduled[members] = True
    elif type(action) is np.ndarray and action.shape == (k,):
        if mode == "score":
            if action.dtype != _F64:
                return None
            largest = _MAX(np.abs(action))  # NaN or inf if any entry is
            if not largest <= 1.0 + ACTION_TOLERANCE:  # NaN, inf, outside the box: refused
                return None
            scheduled = action > SCORE_THRESHOLD
            projected = largest > 1.0
        elif action.dtype.itemsize == 1 and action.dtype.kind in "biu":  # MultiBinary's int8
            if _MAX(action.view(np.uint8)) > 1:  # -1 is 255
                return None
            scheduled = action != 0
        elif action.dtype == _F64:
            if ((action != 0.0) & (action != 1.0)).any():
                return None
            scheduled = action != 0.0
        else:
            return None
        members = None
    else:
        return None
    _, bandwidth = min_common_delay_one(
        bits, gain, config.noise_psd, config.bandwidth_hz, scheduled, members
    )
    return scheduled, bandwidth, np.bool_(projected)


def decision_to_action(
    scheduled: np.ndarray,
    bandwidth: np.ndarray,
    config: FedLoRAConfig,
    action_mode: str | None = None,
    gain: np.ndarray | None = None,
    bits: np.ndarray | None = None,
) -> np.ndarray:
    """The action of ``action_mode`` (default the config's) that expresses a decision: the
    scheduled devices (bool, (..., K)) and their bandwidth in Hz. The inverse of
    :func:`action_to_decision` (for policies and teachers that decide in physical terms).

    - "bandwidth": the shares bandwidth / B (divided by their sum if it exceeds 1 by round-off);
      exact for every decision.
    - "count": the number of scheduled devices (int); exact when the decision is the
      channel-ordered prefix with the min-max-delay split, as the reference policies' are.
    - "subset": the 0/1 schedule (int8); the env splits the bandwidth min-max-delay.
    - "score": scores +1 on the schedule and -1 off it (float64); the env splits min-max-delay.
      Exact for every decision of this mode (and so for the decisions of the min-max-delay
      policies ``lyapunov``, ``all-in``, ``random``); any other decision becomes the same set
      with the min-max-delay split, whose round delay is never longer.
    - "allowance" (needs the round's ``gain`` and ``bits``): with n the number of scheduled
      devices and D*(S_n) the min-max delay of the n strongest, the allowance D*(S_n) +
      min(D*(S_n+1) - D*(S_n), :data:`ALLOWANCE_MARGIN` D-bar) / 2 (half of D*(S_1) for n = 0;
      D*(S_K) + ALLOWANCE_MARGIN D-bar / 2 for n = K), clipped to [-1, 1]: inside the interval
      of allowances that schedule exactly those n devices, with a margin on both sides, and a
      smooth function of the decision's own delay (a target a policy can learn; the plain
      midpoint follows the next device's delay, which may be far off). Exact for
      channel-ordered prefixes with the min-max-delay split, as for "count", unless D*(S_n)
      exceeds ALLOWANCE_MAX x D-bar. One decision at a time (shape (K,)); returns shape (1,).
    """
    mode = action_mode or config.action_mode
    scheduled = np.asarray(scheduled, dtype=bool)
    if mode == "bandwidth":
        shares = np.asarray(bandwidth, dtype=np.float64) / config.bandwidth_hz
        total = shares.sum(axis=-1, keepdims=True)
        return shares / np.maximum(total, 1.0)
    if mode == "count":
        return np.asarray(scheduled.sum(axis=-1), dtype=np.int64)
    if mode == "subset":
        return scheduled.astype(np.int8)
    if mode == "score":
        return np.where(scheduled, 1.0, -1.0)
    if mode == "allowance":
        if gain is None or bits is None:
            raise ValueError("decision_to_action needs the round's gain and bits for 'allowance'")
        return _allowance_action(int(scheduled.sum()), config, np.asarray(gain), np.asarray(bits))
    raise ValueError(f"action_mode must be one of {list(config.ACTION_MODES)}, got {mode!r}")


def prefix_delay(n: int, config: FedLoRAConfig, gain: np.ndarray, bits: np.ndarray) -> float:
    """D*(S_n) (s): the min-max-delay round of the n strongest devices of one round (0 for
    n = 0)."""
    if n <= 0:
        return 0.0
    members = channel_order(gain, bits)[:n]
    mask = np.zeros(gain.shape[-1], dtype=bool)
    mask[members] = True
    delay, _ = min_common_delay_one(bits, gain, config.noise_psd, config.bandwidth_hz, mask)
    return float(delay)


def _allowance_action(
    n: int, config: FedLoRAConfig, gain: np.ndarray, bits: np.ndarray
) -> np.ndarray:
    k = gain.shape[-1]
    budget = config.budget_s
    if n == 0:
        allowance = 0.5 * prefix_delay(1, config, gain, bits)
    else:
        lo = prefix_delay(n, config, gain, bits)
        hi = prefix_delay(n + 1, config, gain, bits) if n < k else math.inf
        allowance = lo + 0.5 * min(hi - lo, ALLOWANCE_MARGIN * budget)
    u = 2.0 * allowance / (ALLOWANCE_MAX * budget) - 1.0
    return np.array([min(max(u, -1.0), 1.0)])
