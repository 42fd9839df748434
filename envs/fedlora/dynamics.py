"""Per-round dynamics of the FedLoRA env as batched pure functions (shared by the single and the
vector env): action -> (schedule, bandwidth), delay, queue, reward."""

from __future__ import annotations

import numpy as np
from edgeft.envs.common import as_action_array
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.fedlora.formulas import (
    delays_from_snr,
    gain_to_db,
    min_common_delay,
    path_gain,
    queue_update,
    sample_positions,
)


def channel_order(gain: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Device indices strongest first: by |h_k|^2 / mu_k descending (= by |h_k|^2 with equal mu,
    FT Algorithm 1 line 3). Ties broken by index (stable sort)."""
    return np.argsort(-(gain / bits), axis=-1, kind="stable")


def prefix_mask(order: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Bool mask of the ``count`` first devices of ``order`` (batched)."""
    ranks = np.argsort(order, axis=-1)  # rank of each device in the order
    return ranks < np.asarray(count)[..., None]


def project_shares(action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projection of bandwidth shares (documented rule).

    Each share is clipped to [0, 1]; if the shares then sum to more than 1 they are divided by
    their sum. A device with share 0 is not scheduled; unused bandwidth stays unused.
    Returns (shares, projected) where ``projected`` says whether the action was changed.
    """
    if action.ndim == 1:  # single env: scalar bookkeeping, fewest array passes first
        lo, total = action.min(), action.sum()
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
    shares = np.minimum(np.maximum(action, 0.0), 1.0)
    total = shares.sum(axis=-1, keepdims=True)
    shares /= np.maximum(total, 1.0)
    projected = (shares != action).any(axis=-1)
    return shares, projected


def allocate(action: np.ndarray, config: FedLoRAConfig, gain: np.ndarray, bits: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn validated actions (batched, leading axis = envs) into (scheduled, bandwidth Hz,
    projected).

    - "bandwidth": ``project_shares``; bandwidth = share x B.
    - "count": the n strongest devices (``channel_order``), min-max-delay split (n validated in
      [0, K] by :func:`validate_action`).
    - "subset": the devices with entry 1 (validated 0/1), min-max-delay split.
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
    else:
        mask = action > 0.5
        projected = np.any((action != 0.0) & (action != 1.0), axis=-1)
    _, bandwidth = min_common_delay(bits, gain, config.noise_psd, big_b, mask)
    return mask, bandwidth, projected


def validate_action(action: object, config: FedLoRAConfig, batch: int | None = None) -> np.ndarray:
    """Malformed actions raise ValueError naming the allowed values: wrong shape (a (K, 1)
    array for a (K,) space included), NaN/inf, a count that is not an integer in [0, K], a
    subset entry other than 0 or 1. Bandwidth shares out of [0, 1] are not malformed: they are
    projected (:func:`project_shares`).

    Returns a float64 array of shape (batch, K) (or (batch, 1) for "count"); ``batch=None`` means a
    single env's action.
    """
    k = config.num_devices
    lead = (1,) if batch is None else (batch,)
    if config.action_mode == "count":
        what = f"an integer count in [0, {k}] (devices to schedule)"
        # a single env takes a scalar or any one-element array (SB3's predict gives either)
        arr = as_action_array(action, lead if batch is not None else (), what,
                              reshape=batch is None)
        arr = arr.reshape(lead)
        if np.any(arr != np.rint(arr)) or np.any((arr < 0) | (arr > k)):
            raise ValueError(f"action must be {what}, got {arr.tolist()}")
        return arr.reshape(lead + (1,))
    what = ACTION_WHAT[config.action_mode]
    arr = as_action_array(action, lead + (k,) if batch is not None else (k,), what,
                          reshape=False)
    if config.action_mode == "subset" and np.any((arr != 0.0) & (arr != 1.0)):
        bad = np.flatnonzero(((arr != 0.0) & (arr != 1.0)).ravel())[:10].tolist()
        raise ValueError(f"action must be {what}; entries other than 0 and 1 at flat indices "
                         f"{bad}")
    return arr.reshape(lead + (k,))


#: how each vector action mode's action is described in error messages
ACTION_WHAT = {"bandwidth": "bandwidth shares in [0, 1] (one per device)",
         "subset": "a 0/1 vector (one entry per device)"}


def delay_and_queue(budget: float, bits_ln2: np.ndarray, snr_hz: np.ndarray, bandwidth: np.ndarray,
                    scheduled: np.ndarray, queue: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-device delays (0 off schedule), round delay D (s), x = D / D-bar and the updated queue
    (FT eqs. 7, 18), from mu ln2 and a = |h|^2 / sigma^2 (see ``formulas.delays_from_snr``)."""
    per_device = delays_from_snr(bits_ln2, bandwidth, snr_hz, scheduled)
    delay = per_device.max(axis=-1)
    if delay.ndim == 0:
        delay = float(delay)  # single env: plain floats from here on
    x = delay / budget
    return per_device, delay, x, queue_update(queue, x)


def draw_cell(rng: np.random.Generator, config: FedLoRAConfig,
              size: tuple[int, ...] = ()) -> np.ndarray:
    """Mean received gain in dB of K devices placed uniformly in the cell disc (server at the
    origin; path loss (d/d0)^-exponent, transmit power folded in), shape ``size + (K,)``."""
    pos = sample_positions(rng, config.num_devices, (config.cell_center_m, 0.0),
                           config.cell_radius_m, size)
    dist = np.hypot(pos[..., 0], pos[..., 1])
    return gain_to_db(config.tx_power_w * path_gain(dist, config.reference_distance_m,
                                                    config.path_loss_exponent))


def step_reward(config: FedLoRAConfig, gap: float, loss_before, loss_after, num_scheduled, x,
                excess, queue_before):
    """The env's reward (``config.reward``) for one round; scalars or arrays alike.

    "progress": progress_scale x loss drop / initial gap - delay_penalty x excess, with
    ``excess = max(0, x - 1)``; the drift-plus-penalty rewards: :func:`lyapunov_objective`.
    """
    if config.reward == "progress":
        return (config.progress_scale / gap * (loss_before - loss_after)
                - config.delay_penalty * excess)
    variant = "paper" if config.reward == "drift-plus-penalty-paper" else "corrected"
    return lyapunov_objective(num_scheduled, x, queue_before, config.zeta, variant)


def lyapunov_objective(num_scheduled: np.ndarray, x: np.ndarray, queue: np.ndarray, zeta: float,
                       variant: str = "corrected") -> np.ndarray:
    """Per-round drift-plus-penalty objective J (FT P1), delay normalised by D-bar.

    - "paper": J = N - zeta q x (P1, with the linear drift bound of Lemma 2).
    - "corrected": J = N - zeta [q x + (x - 1)^2 / 2], the term Lemma 2 drops:
      (1/2)[(q + x - 1)^+^2 - q^2] <= q (x - 1) + (x - 1)^2 / 2 (docs/corrections.md). Constant
      terms omitted.
    ``queue`` is q(t-1), the queue at the start of the round.
    """
    if variant == "paper":
        return num_scheduled - zeta * queue * x
    if variant == "corrected":
        return num_scheduled - zeta * (queue * x + 0.5 * (x - 1.0) ** 2)
    raise ValueError(f"variant must be 'corrected' or 'paper', got {variant!r}")
