"""Hindsight bound of the FedLoRA scheduling problem: the best any policy could do on an episode
whose whole future (every round's channels and message sizes) is known in advance.

The long-term problem (FT problem 17 with P1's per-round utility): choose, each round t, how many
devices n_t to schedule, as a channel-ordered prefix with its minimum common delay D_t(n) (the
per-round optimum for a given count: see ``lyapunov``), so as to

    maximise   sum_t u_t(n_t)                      (default u_t(n) = n: devices scheduled)
    subject to sum_t D_t(n_t) / D-bar <= T          (the time-average delay budget, FT eq. 8)

A multiple-choice knapsack. Its Lagrangian dual

    g(lam) = sum_t max_n [u_t(n) - lam c_t(n)] + lam T,    c_t(n) = D_t(n) / D-bar,

is an upper bound on the optimum for every lam >= 0 (weak duality); :func:`hindsight_bound`
minimises it by bisection on its subgradient and returns the smallest value found (a certified
bound) together with a feasible schedule (primal): the dual argmax at the feasible end of the
bracket, then greedy upgrades that still fit the budget. The gap between the two is at most one
round's change of utility. :func:`exact_offline_optimum` solves small instances exactly by dynamic
programming over the (integer) utility, the reference the tests check the bound against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from edgeft.envs.common import config_in_force
from edgeft.envs.family import HindsightPlan, make_config
from edgeft.envs.fedlora.actions import channel_order
from edgeft.envs.fedlora.formulas import min_common_delay
from edgeft.envs.fedlora.observation import decode_observation


@dataclass(frozen=True)
class HindsightResult:
    """Outcome of :func:`hindsight_bound`.

    Attributes:
        bound: certified upper bound on sum_t u_t(n_t) over budget-feasible schedules.
        value: sum_t u_t(n_t) of ``counts`` (a lower bound on the optimum).
        counts: the feasible schedule, devices per round (int, shape (T,)).
        cost: sum_t c_t(n_t) of ``counts`` (<= T).
        multiplier: the Lagrange multiplier lam at which ``bound`` was attained.
    """

    bound: float
    value: float
    counts: np.ndarray
    cost: float
    multiplier: float

    @property
    def gap(self) -> float:
        """bound - value: how far the feasible schedule can be from the optimum, at most."""
        return self.bound - self.value


def prefix_delays(
    gain: np.ndarray, bits: np.ndarray, noise_psd: float, bandwidth_hz: float
) -> np.ndarray:
    """Minimum common delay D_t(n) (s) of the n strongest devices, n = 0..K, for every round.

    Args:
        gain: |h_k(t)|^2 (W), shape (T, K).
        bits: mu_k(t), bits each device exchanges, shape (T, K).
        noise_psd: sigma^2 (W/Hz).
        bandwidth_hz: B (Hz).

    Returns:
        Array (T, K + 1); column 0 is 0 (nobody scheduled). Devices are taken in the env's
        channel order (``channel_order``), the order count mode and the reference policies use.

    In O(T K) memory: the prefixes n < K are solved one length at a time for all rounds, each
    continuing from the shorter one (``formulas.prefix_min_common_delays``), the full set
    n = K by ``min_common_delay`` (the all-in split); the same delays as ``min_common_delay``
    on the T x K x K prefix masks (to ~1e-14, tested).
    """
    # imported here, so that the module's imports stay as they are
    from edgeft.envs.fedlora.formulas import prefix_min_common_delays

    gain = np.atleast_2d(np.asarray(gain, dtype=np.float64))
    bits = np.broadcast_to(np.asarray(bits, dtype=np.float64), gain.shape)
    t, k = gain.shape
    order = channel_order(gain, bits)
    gs = np.take_along_axis(gain, order, axis=-1)
    bs = np.take_along_axis(bits, order, axis=-1)
    out = np.zeros((t, k + 1))
    if k > 1:
        out[:, 1:k] = prefix_min_common_delays(bs[:, :-1], gs[:, :-1], noise_psd, bandwidth_hz)
    out[:, k], _ = min_common_delay(bs, gs, noise_psd, bandwidth_hz, np.ones((t, k), dtype=bool))
    return out


def _best_response(utility: np.ndarray, cost: np.ndarray, lam: float) -> np.ndarray:
    """argmax_n u_t(n) - lam c_t(n) per round; ties to the cheaper option."""
    score = utility - lam * cost
    best = score.max(axis=1, keepdims=True)
    tied = score >= best - 1e-12 * np.maximum(1.0, np.abs(best))
    return np.argmin(np.where(tied, cost, np.inf), axis=1)


def hindsight_bound(
    cost: np.ndarray,
    utility: np.ndarray | None = None,
    budget: float | None = None,
    *,
    rtol: float = 1e-10,
    max_iter: int = 200,
) -> HindsightResult:
    """Certified upper bound (Lagrangian dual) and a feasible schedule of the offline problem.

    Args:
        cost: c_t(n) = D_t(n) / D-bar, shape (T, K + 1), column n = n devices scheduled
            (see :func:`prefix_delays`); non-decreasing in n is not required.
        utility: u_t(n), shape (T, K + 1); default n (devices scheduled).
        budget: total cost allowed; default T (time-average delay <= D-bar).
        rtol: relative width at which the bisection on lam stops.
        max_iter: bisection iterations at most.

    Returns:
        :class:`HindsightResult`.
    """
    cost = np.atleast_2d(np.asarray(cost, dtype=np.float64))
    t, width = cost.shape
    if utility is None:
        utility = np.broadcast_to(np.arange(width, dtype=np.float64), cost.shape)
    utility = np.asarray(utility, dtype=np.float64)
    if utility.shape != cost.shape:
        raise ValueError(f"utility must have the shape of cost {cost.shape}, got {utility.shape}")
    if not (np.isfinite(cost).all() and np.isfinite(utility).all()):
        raise ValueError("cost and utility must be finite")
    total = float(t if budget is None else budget)
    rows = np.arange(t)

    def dual(lam: float) -> tuple[float, np.ndarray]:
        pick = _best_response(utility, cost, lam)
        value = float((utility[rows, pick] - lam * cost[rows, pick]).sum() + lam * total)
        return value, pick

    g0, pick0 = dual(0.0)
    if cost[rows, pick0].sum() <= total:  # the unconstrained optimum already fits: exact
        return HindsightResult(
            g0, float(utility[rows, pick0].sum()), pick0, float(cost[rows, pick0].sum()), 0.0
        )
    cheapest = cost.min(axis=1).sum()
    if cheapest > total:
        raise ValueError(
            f"no schedule meets the budget: the cheapest costs {cheapest:.6g} > {total:.6g}"
        )
    lo, hi = 0.0, 1.0
    g_best, lam_best = g0, 0.0
    while True:  # grow hi until the best response fits the budget
        g, pick = dual(hi)
        if g < g_best:
            g_best, lam_best = g, hi
        if cost[rows, pick].sum() <= total:
            break
        lo, hi = hi, hi * 2.0
        if hi > 1e300:
            raise RuntimeError("dual bisection failed to find a feasible multiplier")
    for _ in range(max_iter):
        if hi - lo <= rtol * hi:
            break
        mid = 0.5 * (lo + hi)
        g, pick = dual(mid)
        if g < g_best:
            g_best, lam_best = g, mid
        if cost[rows, pick].sum() <= total:
            hi = mid
        else:
            lo = mid
    # feasible primal: the best response at hi, then greedy upgrades (utility per unit cost)
    pick = _best_response(utility, cost, hi).copy()
    spent = float(cost[rows, pick].sum())
    while True:
        gain_u = utility - utility[rows, pick][:, None]
        extra = cost - cost[rows, pick][:, None]
        fits = (gain_u > 0) & (extra <= total - spent)
        if not fits.any():
            break
        ratio = np.where(fits, gain_u / np.maximum(extra, 1e-300), -np.inf)
        r, n = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        spent += float(extra[r, n])
        pick[r] = n
    value = float(utility[rows, pick].sum())
    return HindsightResult(max(g_best, value), value, pick, spent, lam_best)


def exact_offline_optimum(
    cost: np.ndarray, utility: np.ndarray | None = None, budget: float | None = None
) -> tuple[float, np.ndarray]:
    """Exact optimum of the offline problem for integer utilities, by dynamic programming.

    f_t(v) = the least total cost of rounds 1..t that reaches total utility v exactly; the
    optimum is the largest v with f_T(v) <= budget. Exact (no budget discretisation); size
    O(T x (K + 1) x V) with V the largest total utility, so meant for small instances.

    Returns:
        (value, counts): the optimal total utility and one optimal schedule.
    """
    cost = np.atleast_2d(np.asarray(cost, dtype=np.float64))
    t, width = cost.shape
    if utility is None:
        utility = np.broadcast_to(np.arange(width), cost.shape)
    util = np.asarray(utility)
    if not np.array_equal(util, np.rint(util)) or util.min() < 0:
        raise ValueError("exact_offline_optimum needs non-negative integer utilities")
    util = np.rint(util).astype(np.int64)
    total = float(t if budget is None else budget)
    vmax = int(util.max(axis=1).sum())
    best = np.full(vmax + 1, np.inf)
    best[0] = 0.0
    choice = np.zeros((t, vmax + 1), dtype=np.int64)
    for r in range(t):
        new = np.full(vmax + 1, np.inf)
        for n in range(width):
            u = int(util[r, n])
            cand = np.full(vmax + 1, np.inf)
            cand[u:] = best[: vmax + 1 - u] + cost[r, n]
            better = cand < new
            new[better] = cand[better]
            choice[r, better] = n
        best = new
    feasible = np.flatnonzero(best <= total * (1.0 + 1e-12))
    v = int(feasible.max())
    counts = np.zeros(t, dtype=np.int64)
    for r in range(t - 1, -1, -1):
        n = int(choice[r, v])
        counts[r] = n
        v -= int(util[r, n])
    return float(util[np.arange(t), counts].sum()), counts


def episode_channels(env: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Replay one surrogate episode and return its channels: (gain, bits), each (T, K).

    The fading and message sizes of a surrogate episode are a function of the seed alone, not of
    the actions (tested), so an episode in which nobody is scheduled (an all-zero action, in every
    action mode) reveals the channels every policy faces with that seed. Nothing here assumes
    i.i.d. rounds: with correlated channels (``fading_correlation``, ``mobility_speed_mps``) the
    replay returns the correlated sequence and the bound is over it (tested).
    """
    base = getattr(env, "unwrapped", env)
    cfg = base.config
    if cfg.mode != "surrogate":
        raise ValueError(
            "hindsight replay needs mode='surrogate' (real mode's message sizes "
            "depend on the training run)"
        )
    base.reset(seed=seed)
    zero = 0 if cfg.action_mode == "count" else np.zeros(cfg.num_devices)
    gains, bits = [], []
    for _ in range(cfg.episode_rounds):
        *_, info = base.step(zero)
        gains.append(np.array(info["channel_gain"], dtype=np.float64))
        bits.append(np.array(info["bits"], dtype=np.float64))
    return np.stack(gains), np.stack(bits)


def episode_hindsight(env: Any, seed: int, budget_s: float | None = None) -> HindsightResult:
    """:func:`hindsight_bound` of the episode ``env`` plays with ``seed`` (devices per round,
    time-average delay <= D-bar). ``budget_s`` defaults to the env's D-bar in force."""
    cfg = config_in_force(env)
    gain, bits = episode_channels(env, seed)
    delay = prefix_delays(gain, bits, cfg.noise_psd, cfg.bandwidth_hz)
    return hindsight_bound(delay / (cfg.budget_s if budget_s is None else budget_s))


class CountSchedulePolicy:
    """Plays a fixed schedule of device counts (count mode): ``counts[t]`` in round t, read
    from the observation's round index. Used to replay the hindsight schedule through the same
    episode loop as every policy."""

    def __init__(self, counts: np.ndarray, config: Any) -> None:
        self.counts = np.asarray(counts, dtype=np.int64)
        self.config = config

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        t = np.minimum(decode_observation(observation, self.config).round, self.counts.size - 1)
        return self.counts[t], state


def hindsight_plan(env_id: str, config: dict[str, Any], seed: int) -> HindsightPlan:
    """The hindsight plan of one leaderboard episode (``EnvFamily.hindsight``): the bound on the
    headline (devices per round within the budget, per round) and the feasible hindsight
    schedule, replayed in count mode by the leaderboard's own episode loop.
    """
    import gymnasium as gym

    env = gym.make(env_id, **config)
    try:
        result = episode_hindsight(env, seed)
        rounds = config_in_force(env).episode_rounds
    finally:
        env.close()
    replay_config = make_config(env_id, {**config, "action_mode": "count"})
    return HindsightPlan(
        bound=result.bound / rounds,
        policy=CountSchedulePolicy(result.counts, replay_config),
        action_mode="count",
        gap=result.gap / rounds,
    )
