"""Observation transforms agents train on, applied identically when a trained model acts.

A transform is a pure function ``f(obs_batch, config) -> features`` named in the training config
(``obs_transform``); the ``ppo:PATH`` loader reads that name back and applies the same function
before the saved normalisation statistics, so a model always sees what it was trained on.

Transforms (name, env family: features):

- ``none`` (any): the observation as it is.
- ``sort-by-gain`` (fedlora): the per-device blocks (gain dB, bits, age) reordered strongest
  channel first, then queue, round, loss; lossless for the ``count`` action mode, which
  schedules the n strongest devices.
- ``prefix-delay`` (fedlora): ``sort-by-gain`` plus log(D_eq(n)/D-bar) for every prefix n: the
  delay ratio of the n strongest devices at equal shares (an upper bound of what ``count`` mode
  gives).
- ``mec-compact`` (mec): gains g_nm in dB, token lengths, energy queues in budgets, p_max,
  f_max: the per-round quantities the cost depends on most.
- ``mec-users`` (mec): per user: best gain (dB), each server's gain relative to it (linear, 1
  at the strongest), log tokens, log k_n, p_max, log f_max, cores, log FLOP/cycle, queue and
  budget; per server: log b_max, log f_max, log C D; round share (see ``_mec_users``).
- ``fedlora-devices`` (fedlora): per device (in the env's device order), features whose meaning
  and scale do not depend on K, then a small global block (:data:`FEDLORA_DEVICE_FEATURES`,
  :data:`FEDLORA_GLOBAL_FEATURES`, ``_fedlora_devices``); for size-independent policies such as
  ``fedlora-shared`` (``edgeft.agents.policies``), without VecNormalize.
- ``fedlora-allowance`` (fedlora): features of fixed length for every K, for the ``allowance``
  action mode: at each allowance level of :data:`ALLOWANCE_LEVELS` (D-bar/8 .. 4 D-bar) the
  number n of devices that mode would schedule, as n / K and log10(1 + n); then the queue
  (log1p), the round (/T), the loss gap (as ``fedlora-devices``), log10(K) and the mean
  log10(1 + age) (``_fedlora_allowance``). A plain MLP on them plays any K.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _identity(obs: np.ndarray, config: Any) -> np.ndarray:
    return obs


def _sort_by_gain(obs: np.ndarray, config: Any) -> np.ndarray:
    from edgeft.envs.fedlora.observation import observation_layout

    layout = observation_layout(config)
    order = np.argsort(-obs[:, layout.gain_db], axis=1, kind="stable")
    out = obs.copy()
    for name, shape in layout:
        if shape == (layout.num_devices,):  # the per-device blocks: gain, bits, age
            block = getattr(layout, name)
            out[:, block] = np.take_along_axis(obs[:, block], order, axis=1)
    return out


def _prefix_delay(obs: np.ndarray, config: Any) -> np.ndarray:
    """Gain-sorted blocks plus, per prefix n of the channel order, log(D_eq(n) / D-bar): the
    delay ratio of scheduling the n strongest devices with equal bandwidth shares B/n (an upper
    bound of the min-max-delay split the ``count`` mode applies). O(K^2) numpy per observation."""
    from edgeft.envs.fedlora.observation import decode_observation

    k = config.num_devices
    srt = _sort_by_gain(obs, config)
    dec = decode_observation(srt, config)
    gain, bits = dec.gain, dec.bits  # (b, K) strongest first
    n = np.arange(1, k + 1, dtype=np.float64)[:, None]  # prefix length (K, 1)
    share = config.bandwidth_hz / n  # (K, 1)
    snr = gain[:, None, :] / (share[None] * config.noise_psd)  # (b, n, k)
    delay = bits[:, None, :] / (share[None] * np.log2(1.0 + snr))  # (b, n, k)
    delay = np.where(np.arange(k)[None, None, :] < n[None], delay, 0.0)
    ratio = delay.max(axis=2) / config.budget_s
    return np.concatenate([srt, np.log(np.maximum(ratio, 1e-12))], axis=1)


#: ``fedlora-devices``: the per-device features, in order (one block of these per device)
FEDLORA_DEVICE_FEATURES = (
    "gain_vs_best",  # (gain dB - the round's best gain dB) / 10: <= 0, 0 at the best device
    "gain_vs_median",  # (gain dB - the round's median gain dB) / 10
    "log_share",  # ln of B_k(D-bar) / B, the device's Lemma-3 share alone, in [1e-6, 10]
    "feasible",  # 1 if B_k(D-bar) <= B (the device alone meets D-bar with all of B)
    "log_prefix_share",  # ln of the shares summed over the channel-ordered prefix ending at k
    "in_budget_prefix",  # 1 if that prefix meets D-bar (its summed share <= 1): GS schedules k
    "log_prefix_delay",  # ln(D*(prefix ending at k) / D-bar), in [ln 1/8, ln 16] (interpolated)
    "rank",  # n_k / K: the device's 1-based position in the channel order
    "log_bits",  # ln(mu_k / mean mu): message size against the round's mean
    "log_age",  # log10(1 + rounds since the device was last scheduled)
)
#: ``fedlora-devices``: the global features after the K device blocks, in order
FEDLORA_GLOBAL_FEATURES = (
    "log_queue",  # ln(1 + q), q = D-hat / D-bar the delay queue
    "round_share",  # t / T
    "loss_gap",  # (loss - floor) / (initial loss - floor), the calibration's (surrogate)
    "log_devices",  # log10 K
    "budget_fraction",  # (devices whose prefix meets D-bar) / K: GS's count over K
    "log_budget_count",  # log10(1 + that count)
)
#: the share cap and floor of ``log_share`` / ``log_prefix_share`` (an infeasible device's
#: share is infinite)
SHARE_RANGE = (1e-6, 10.0)
#: delay levels x = D / D-bar at which the prefix shares are evaluated for ``log_prefix_delay``:
#: 2^-3 .. 2^4 in steps of 2^(1/4) (D-bar itself included)
PREFIX_DELAY_LEVELS = 2.0 ** np.linspace(-3.0, 4.0, 29)


def _fedlora_devices(obs: np.ndarray, config: Any) -> np.ndarray:
    """Per-device features of comparable scale for every K (see the tables above).

    Shares come from FT Lemma 3 (``formulas.bandwidth_for_delay``): B_k(D) is the bandwidth
    device k needs to finish in D on its own, and a set of devices meets the delay D with the
    min-max-delay split iff its shares at D sum to at most 1 (the split gives every member the
    same delay, and B_k(D) decreases in D). Hence ``in_budget_prefix`` is exact, and
    ``log_prefix_delay``, the minimum common delay D* of the prefix of the channel order
    (``actions.channel_order``, the order ``count`` mode follows) that ends at device k, is where
    the prefix's summed share at D crosses 1: bracketed on the grid :data:`PREFIX_DELAY_LEVELS`
    and interpolated linearly in (ln D, 1 / share), with the prefix's feasibility threshold
    (where 1 / share reaches 0) as the bracket's lower end where it lies inside; clipped to
    the grid's ends. Within 7% of the exact D* (``baselines.fedlora.hindsight.prefix_delays``:
    ln error below 0.012, 0.034 and 0.066 on rounds of 5, 20 and 100 devices; tested), in
    O(29 K) per observation instead of the O(K^2) exact prefix solves.

    All features are finite for any finite observation (the all-zero one included, which
    training wrappers use to probe the feature size).
    """
    from edgeft.envs.fedlora.actions import channel_order
    from edgeft.envs.fedlora.formulas import LN2, bandwidth_for_delay
    from edgeft.envs.fedlora.observation import decode_observation

    dec = decode_observation(obs, config)
    b, k = obs.shape[0], config.num_devices
    tiny = 1e-300
    gain = np.maximum(dec.gain, tiny)
    bits = np.maximum(dec.bits, tiny)
    gain_db = dec.gain_db
    lo, hi = SHARE_RANGE
    order = channel_order(gain, bits)  # (b, K) strongest first
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(k)[None, :].repeat(b, axis=0), axis=1)
    # shares at every delay level, summed along the channel order: (b, levels, K) by prefix
    budget = config.budget_s
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        share = (
            bandwidth_for_delay(
                bits[:, None, :],
                budget * PREFIX_DELAY_LEVELS[None, :, None],
                gain[:, None, :],
                config.noise_psd,
            )
            / config.bandwidth_hz
        )
    share = np.where(np.isnan(share), np.inf, share)
    cum = np.cumsum(np.take_along_axis(share, order[:, None, :], axis=2), axis=2)
    at_budget = int(np.argmin(np.abs(PREFIX_DELAY_LEVELS - 1.0)))
    own = share[:, at_budget, :]  # (b, K) device order
    prefix = np.take_along_axis(cum[:, at_budget, :], rank, axis=1)
    # the crossing of the (decreasing) prefix share through 1, per prefix: between the last
    # level over 1 and the first at or under it, interpolating 1/share (0 at the prefix's
    # feasibility threshold, max_j mu_j sigma^2 ln2 / |h_j|^2, which it approaches linearly)
    levels = PREFIX_DELAY_LEVELS
    above = (cum > 1.0).sum(axis=1)  # levels still over 1: (b, K)
    i = np.clip(above, 1, len(levels) - 1)
    threshold = (
        np.maximum.accumulate(
            np.take_along_axis(bits * config.noise_psd * LN2 / gain, order, axis=1), axis=1
        )
        / budget
    )
    x0 = np.maximum(levels[i - 1], threshold)
    x1 = levels[i]
    g0 = np.where(
        threshold >= levels[i - 1],
        0.0,
        1.0 / np.take_along_axis(cum, (i - 1)[:, None, :], axis=1)[:, 0],
    )
    g1 = 1.0 / np.take_along_axis(cum, i[:, None, :], axis=1)[:, 0]
    t = np.clip((1.0 - g0) / np.where(g1 > g0, g1 - g0, 1.0), 0.0, 1.0)
    log_x = np.log(x0) + t * np.log(x1 / x0)
    log_x = np.where(
        above == 0, np.log(levels[0]), np.where(above == len(levels), np.log(levels[-1]), log_x)
    )
    log_x = np.take_along_axis(log_x, rank, axis=1)  # back to device order
    in_prefix = prefix <= 1.0
    best = gain_db.max(axis=1, keepdims=True)
    median = np.median(gain_db, axis=1, keepdims=True)
    mean_bits = bits.mean(axis=1, keepdims=True)
    device = np.stack(
        [
            (gain_db - best) / 10.0,
            (gain_db - median) / 10.0,
            np.log(np.clip(own, lo, hi)),
            (own <= 1.0).astype(np.float64),
            np.log(np.clip(prefix, lo, hi)),
            in_prefix.astype(np.float64),
            log_x,
            (rank + 1.0) / k,
            np.log(bits / mean_bits),
            np.log10(1.0 + dec.age),
        ],
        axis=2,
    )  # (b, K, features)
    count = in_prefix.sum(axis=1).astype(np.float64)
    glob = _episode_features(dec, config, [count / k, np.log10(1.0 + count)])
    return np.concatenate([device.reshape(b, -1), glob], axis=1)


def _episode_features(dec: Any, config: Any, extra: list[np.ndarray]) -> np.ndarray:
    """The global block of the FedLoRA features, (batch, 4 + len(extra)): log1p of the queue,
    the round / T, the loss gap (loss - floor) / (initial loss - floor), log10(K), then
    ``extra``."""
    params = config.surrogate
    gap0 = max(params.initial_loss - params.loss_floor, 1e-12)
    b = dec.queue.shape[0]
    return np.stack(
        [
            np.log1p(np.maximum(dec.queue, 0.0)),
            dec.round / max(int(config.episode_rounds), 1),
            (dec.loss - params.loss_floor) / gap0,
            np.full(b, np.log10(config.num_devices)),
            *extra,
        ],
        axis=1,
    )


#: ``fedlora-allowance``: the allowance levels (in D-bar) at which the scheduled count is read:
#: D-bar / 8 .. 4 D-bar in steps of 2^(1/8) (9%; D-bar itself included)
ALLOWANCE_LEVELS = 2.0 ** np.linspace(-3.0, 2.0, 41)


def _fedlora_allowance(obs: np.ndarray, config: Any) -> np.ndarray:
    """What each delay allowance buys this round, and the episode's state (see the table above).

    The counts are exactly what ``allowance`` mode schedules at those allowances
    (``actions.allowance_counts``); O(41 K) per observation."""
    from edgeft.envs.fedlora.actions import allowance_counts
    from edgeft.envs.fedlora.observation import decode_observation

    dec = decode_observation(obs, config)
    b, k = obs.shape[0], config.num_devices
    tiny = 1e-300
    gain = np.maximum(dec.gain, tiny)
    bits = np.maximum(dec.bits, tiny)
    allowance = np.broadcast_to(ALLOWANCE_LEVELS * config.budget_s, (b, ALLOWANCE_LEVELS.size))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        count = allowance_counts(allowance, config, gain, bits).astype(np.float64)
    glob = _episode_features(dec, config, [np.log10(1.0 + dec.age).mean(axis=1)])
    return np.concatenate([count / k, np.log10(1.0 + count), glob], axis=1)


def _mec_compact(obs: np.ndarray, config: Any) -> np.ndarray:
    from edgeft.envs.mec.observation import observation_layout

    keep = ("gain_db", "tokens", "queue_in_budgets", "p_max", "f_user_max")
    sec = observation_layout(config).sections(obs)  # in layout order
    return np.concatenate([sec[k].reshape(len(obs), -1) for k in sec if k in keep], axis=1)


def _mec_users(obs: np.ndarray, config: Any) -> np.ndarray:
    """Per-user and per-server features on comparable scales (see the table above).

    The association is the decision that matters most (a user on a server well below its
    strongest link costs several times the round's optimum, while alpha one step off costs
    ~0.02%), so each user's gains are written as its best gain (dB) and the linear ratio
    g_nm / max_m g_nm of every server (1 at the strongest; lossless). The ratio, rather than the
    gap in dB, keeps the resolution where it matters: a cloned linear policy picks the
    teacher's server for 98.8% of held-out users with it, 97.6% with the dB gap.
    """
    from edgeft.envs.mec.observation import observation_layout

    sec = observation_layout(config).sections(obs)

    def log(x: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(x, 1e-300))

    gain = sec["gain_db"]  # (b, N, M)
    best = gain.max(axis=2, keepdims=True)
    budget = sec["energy_budget"]
    budget_mean = np.maximum(budget.mean(axis=1, keepdims=True), 1e-300)
    user = [best, 10.0 ** ((gain - best) / 10.0)] + [
        x[..., None]
        for x in (
            log(sec["tokens"]),
            log(sec["samples"]),
            sec["p_max"],
            log(sec["f_user_max"]),
            sec["cores_user"],
            log(sec["flops_user"]),
            sec["queue_in_budgets"],
            budget / budget_mean,
        )
    ]
    server = [log(sec["b_max"]), log(sec["f_edge_max"]), log(sec["cores_edge"] * sec["flops_edge"])]
    round_share = sec["round_index"] / max(int(config.episode_rounds), 1)
    return np.concatenate(
        [np.concatenate(user, axis=2).reshape(obs.shape[0], -1), *server, round_share], axis=1
    )


TRANSFORMS: dict[str, tuple[Callable[[np.ndarray, Any], np.ndarray], str | None]] = {
    "none": (_identity, None),
    "sort-by-gain": (_sort_by_gain, "fedlora"),
    "prefix-delay": (_prefix_delay, "fedlora"),
    "mec-compact": (_mec_compact, "mec"),
    "mec-users": (_mec_users, "mec"),
    "fedlora-devices": (_fedlora_devices, "fedlora"),
    "fedlora-allowance": (_fedlora_allowance, "fedlora"),
}


def get_transform(name: str, config: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The batched transform ``name`` bound to ``config``, the env's config in force
    (``edgeft.envs.common.config_in_force``); it accepts one observation or a batch. Transforms
    read observations through the family's observation module only.

    Raises:
        ValueError: unknown name, or a transform of the other env family.
    """
    if name not in TRANSFORMS:
        raise ValueError(f"unknown obs_transform {name!r}; known: {sorted(TRANSFORMS)}")
    fn, family = TRANSFORMS[name]
    if family is not None and family != config.family:
        raise ValueError(f"obs_transform {name!r} is for the {family} envs, not {config.family}")

    def apply(obs: np.ndarray) -> np.ndarray:
        arr = np.asarray(obs, dtype=np.float64)
        single = arr.ndim == 1
        out = fn(arr[None] if single else arr, config)
        return out[0] if single else out

    return apply


def transformed_size(name: str, config: Any, obs_size: int) -> int:
    """Length of the features ``name`` makes from an observation of length ``obs_size``."""
    return int(get_transform(name, config)(np.zeros(obs_size)).shape[0])
