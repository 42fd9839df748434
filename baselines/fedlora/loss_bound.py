"""Hindsight bound on the final loss: the least final loss any schedule could reach within the
episode's delay budget, knowing the episode's channels in advance (surrogate v3 or v4).

The offline problem: choose a device set S_t per round, with delay D*(S_t) (the min-max-delay
split of S_t), so that sum_t D*(S_t) <= T D-bar, minimising the final loss (the mean of the loss
over the last fifth of the rounds, ``edgeft.envs.fedlora.family.final_loss``). Surrogate v3's
loss is ``floor + s + H (G0 - s)``: the shared gap s moves with the count N_t = |S_t| alone, the
mean head gap H = mean_k (1 - r)^(c_k) with c_k the rounds device k took part in.

A certified lower bound, by relaxations each of which can only lower the optimum:

1. *Which* devices: for a count n, the cheapest set is the n strongest (the prefix of the
   channel order; ``hindsight.prefix_delays``), and the head gap is at least its value with the
   participations spread as evenly as the total C = sum_t N_t allows,
   ``phi(C) = ((K - m) (1 - r)^q + m (1 - r)^(q + 1)) / K`` for C = q K + m (the mean of a convex
   function of the c_k is least at the most even split). So the loss after a round is at least
   ``lb(s, C) = floor + s + (G0 - s) phi(C)`` where s <= G0 (and ``floor + G0`` above it, where
   the loss falls with H).
2. *The budget*: a Lagrange multiplier lam >= 0 prices it; for each lam the problem without
   the constraint is a dynamic programme over (s, C) whose value, minus lam T D-bar, is below the
   constrained optimum. The bound is the best lam's value (a concave function of lam,
   maximised by bisection on its subgradient, the budget's slack).
3. *The state s*: after round t with C device-rounds in total, s is at least sigma_t(C), the
   least s any count sequence with that total reaches (an exact dynamic programme over (t, C):
   the shared-gap step is non-decreasing in s, so the least s after a round comes from the
   least s before it). Since lb is non-decreasing in s, the loss after round t is at least
   ``lb(sigma_t(C_t), C_t)``, a function of (t, C_t) alone, and the programme of 2. runs over
   the exact total C, with no grid.

The best feasible schedule found: the programme's counts at the multiplier that meets the budget,
played with the n strongest devices (their delay is exactly the prefix delay paid above) and
with participation balanced where the budget allows (devices least used so far, if that set's
delay still fits); each candidate is simulated exactly (``surrogate.simulate_masks``), its delay
checked with the env's own split, and the feasible one with the least final loss is kept.

Checked against exhaustive search over every subset sequence on small K and T
(tests/fedlora/test_loss_bound.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from edgeft.envs.common import config_in_force
from edgeft.envs.family import HindsightPlan, make_config
from edgeft.envs.fedlora.actions import channel_order
from edgeft.envs.fedlora.family import FINAL_WINDOW
from edgeft.envs.fedlora.formulas import min_common_delay
from edgeft.envs.fedlora.observation import decode_observation
from edgeft.envs.fedlora.surrogate import (
    SurrogateParams,
    contraction,
    settle_table,
    shared_gap0,
    simulate_masks,
    step_shared,
)

from .hindsight import episode_channels, prefix_delays


@dataclass(frozen=True)
class LossBound:
    """Outcome of :func:`loss_bound`.

    Attributes:
        bound: certified lower bound on the final loss of every schedule within the budget.
        multiplier: the lam at which ``bound`` was attained.
        counts: the programme's devices per round at the smallest multiplier found whose
            schedule fits the budget (int, (T,)).
        dual_iterations: programmes solved.
    """

    bound: float
    multiplier: float
    counts: np.ndarray
    dual_iterations: int


def window(rounds: int) -> np.ndarray:
    """The rounds t (1-based, the loss after round t) whose losses the final loss averages."""
    t = np.arange(1, rounds + 1)
    return t[t >= (1.0 - FINAL_WINDOW) * rounds]


def head_floor(params: SurrogateParams, num_devices: int, total: np.ndarray) -> np.ndarray:
    """phi(C): the least mean head gap after C device-rounds in total (spread evenly)."""
    keep = 1.0 - params.head_rate
    q, m = np.divmod(np.asarray(total, dtype=np.int64), num_devices)
    start = params.head_start
    return start * ((num_devices - m) * keep**q + m * keep ** (q + 1)) / num_devices


def shared_step(
    params: SurrogateParams, num_devices: int, shared: np.ndarray, n: int
) -> np.ndarray:
    """s after a round with n devices (surrogate v3's ``step_shared``; n = 0: unchanged)."""
    if n == 0:
        return np.asarray(shared, dtype=np.float64)
    rho = float(contraction(n, num_devices, params))
    settle = float(settle_table(num_devices, params)[n])
    return np.asarray(step_shared(np.asarray(shared, dtype=np.float64), rho, settle, params))


class _Programme:
    """The dynamic programme over (t, C) of one episode (C exact)."""

    def __init__(self, params: SurrogateParams, num_devices: int, cost: np.ndarray) -> None:
        if params.version not in (3, 4) or params.noise > 0.0:
            raise ValueError(
                "the final-loss bound needs a noise-free surrogate v3 or v4 (per-device "
                "heads and a shared gap); this env's surrogate is "
                f"v{params.version} with noise {params.noise}"
            )
        self.p, self.k = params, num_devices
        self.cost = np.asarray(cost, dtype=np.float64)  # (T, K + 1): D_t(n) / D-bar
        self.rounds = self.cost.shape[0]
        self.window = window(self.rounds)
        self.sigma = least_shared_gap(params, num_devices, self.rounds)
        g0 = params.initial_loss - params.loss_floor
        self.lb: dict[int, np.ndarray] = {}
        for t in self.window.tolist():
            s = self.sigma[t]
            h = head_floor(params, num_devices, np.arange(s.size))
            loss = params.loss_floor + np.where(s <= g0, s + (g0 - s) * h, g0)
            self.lb[t] = loss / self.window.size

    def solve(self, lam: float) -> tuple[float, np.ndarray]:
        """(min over count sequences of the bound's objective + lam (sum_t D/D-bar - T), one
        minimising sequence)."""
        T, k = self.rounds, self.k
        value = self.lb.get(T, np.zeros(T * k + 1))
        choice: list[np.ndarray] = []
        for t in range(T - 1, -1, -1):  # round t + 1's count, from the total after round t
            width = t * k + 1
            best = np.full(width, np.inf)
            arg = np.zeros(width, dtype=np.int16)
            for n in range(k + 1):
                cand = value[n : n + width] + lam * self.cost[t, n]
                better = cand < best
                best = np.where(better, cand, best)
                arg[better] = n
            value = best + self.lb[t] if t in self.lb else best
            choice.append(arg)
        choice.reverse()
        counts = np.zeros(T, dtype=np.int64)
        c = 0
        for t in range(T):
            counts[t] = int(choice[t][c])
            c += int(counts[t])
        return float(value[0] - lam * T), counts


def least_shared_gap(params: SurrogateParams, num_devices: int, rounds: int) -> list[np.ndarray]:
    """sigma_t(C) for t = 0..T: the least shared gap after t rounds with C device-rounds in
    total (array of length t K + 1 per round; inf where C is unreachable, never here).

    Raises:
        ValueError: a shared-gap step that is not non-decreasing in s (the recursion would not
            be exact).
    """
    k = num_devices
    sigma = [np.array([shared_gap0(params)])]
    for t in range(rounds):
        prev = sigma[-1]
        new = np.full((t + 1) * k + 1, np.inf)
        order = np.argsort(prev)
        for n in range(k + 1):
            step = shared_step(params, k, prev, n)
            if np.any(np.diff(step[order]) < -1e-12 * max(1.0, float(np.abs(step).max()))):
                raise ValueError(
                    "the shared-gap step is not non-decreasing in s for these "
                    "surrogate constants; the final-loss bound does not apply"
                )
            new[n : n + prev.size] = np.minimum(new[n : n + prev.size], step)
        sigma.append(new)
    return sigma


def loss_bound(
    params: SurrogateParams,
    num_devices: int,
    cost: np.ndarray,
    *,
    rtol: float = 1e-3,
    max_iter: int = 60,
) -> LossBound:
    """Certified lower bound on the final loss within the budget (module docstring).

    Args:
        params: the env's surrogate (v3, noise-free).
        num_devices: K.
        cost: D_t(n) / D-bar of the n strongest devices, (T, K + 1) (``hindsight.prefix_delays``
            over D-bar); the budget is sum_t <= T.
        rtol, max_iter: the bisection on the multiplier (on the subgradient, the budget's
            slack); every multiplier tried gives a valid bound and the best is kept.
    """
    prog = _Programme(params, num_devices, cost)
    T = prog.rounds
    rows = np.arange(T)

    def spent(counts: np.ndarray) -> float:
        return float(prog.cost[rows, counts].sum())

    best, counts = prog.solve(0.0)
    lam_best, iters = 0.0, 1
    if spent(counts) <= T:
        return LossBound(best, 0.0, counts, iters)
    lo, hi = 0.0, 1e-5
    while True:  # grow hi until its programme's schedule fits the budget
        value, hi_counts = prog.solve(hi)
        iters += 1
        if value > best:
            best, lam_best = value, hi
        if spent(hi_counts) <= T:
            break
        lo, hi = hi, hi * 4.0
        if hi > 1e12:
            raise ValueError("no schedule meets the budget")
    feasible = hi_counts
    while hi - lo > rtol * hi and iters < max_iter:
        mid = 0.5 * (lo + hi)
        value, mid_counts = prog.solve(mid)
        iters += 1
        if value > best:
            best, lam_best = value, mid
        if spent(mid_counts) <= T:
            hi, feasible = mid, mid_counts
        else:
            lo = mid
    return LossBound(best, lam_best, feasible, iters)


def masks_final_loss(masks: np.ndarray, params: SurrogateParams) -> float:
    """The exact final loss of a schedule (bool masks (T, K)) under the surrogate."""
    from edgeft.envs.fedlora.family import final_loss

    loss, _ = simulate_masks(np.asarray(masks, dtype=bool), params)
    rounds = np.arange(1, loss.shape[-1])
    return final_loss(rounds, loss[1:])


def schedule_cost(masks: np.ndarray, gain: np.ndarray, bits: np.ndarray, config: Any) -> float:
    """sum_t D*(S_t) / D-bar of a schedule, with the env's own min-max-delay split."""
    masks = np.asarray(masks, dtype=bool)
    delay, _ = min_common_delay(bits, gain, config.noise_psd, config.bandwidth_hz, masks)
    return float(np.asarray(delay).sum() / config.budget_s)


def candidate_schedules(
    counts: np.ndarray, gain: np.ndarray, bits: np.ndarray, config: Any
) -> list[np.ndarray]:
    """Feasible-schedule candidates for the programme's counts: the n strongest each round, and
    the same counts with participation balanced where the budget allows."""
    T, k = gain.shape
    order = channel_order(gain, bits)
    prefix = np.zeros((T, k), dtype=bool)
    for t, n in enumerate(counts):
        prefix[t, order[t, :n]] = True
    out = [prefix]
    delay_prefix, _ = min_common_delay(bits, gain, config.noise_psd, config.bandwidth_hz, prefix)
    slack = config.budget_s * T - float(np.asarray(delay_prefix).sum())
    balanced = np.zeros((T, k), dtype=bool)
    used = np.zeros(k)
    for t, n in enumerate(counts):
        pick = prefix[t].copy()
        if 0 < n < k:
            # the n least-used devices (ties: the stronger), if their delay fits what is left
            rank = np.lexsort((np.argsort(order[t]), used))
            alt = np.zeros(k, dtype=bool)
            alt[rank[:n]] = True
            d_alt, _ = min_common_delay(
                bits[t], gain[t], config.noise_psd, config.bandwidth_hz, alt
            )
            extra = float(d_alt) - float(delay_prefix[t])
            if extra <= slack:
                pick, slack = alt, slack - extra
        balanced[t] = pick
        used += pick
    out.append(balanced)
    return out


@dataclass(frozen=True)
class _Replay:
    """Plays fixed device sets in the ``subset`` action mode (the observation's round index
    picks the row)."""

    masks: np.ndarray
    config: Any

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        t = int(decode_observation(observation, self.config).round)
        return self.masks[min(t, self.masks.shape[0] - 1)].astype(np.int64), state


def hindsight_plan(env_id: str, config: dict[str, Any], seed: int) -> HindsightPlan:
    """The hindsight plan of one leaderboard episode for the final-loss headline: the certified
    bound and the best feasible schedule found, replayed in ``subset`` mode by the leaderboard's
    own episode loop."""
    import gymnasium as gym

    env = gym.make(env_id, **config)
    try:
        cfg = config_in_force(env)
        gain, bits = episode_channels(env, seed)
    finally:
        env.close()
    T, k = gain.shape
    cost = prefix_delays(gain, bits, cfg.noise_psd, cfg.bandwidth_hz) / cfg.budget_s
    result = loss_bound(cfg.surrogate, k, cost)
    best: tuple[float, np.ndarray] | None = None
    for masks in candidate_schedules(result.counts, gain, bits, cfg):
        if schedule_cost(masks, gain, bits, cfg) <= T * (1.0 - 1e-9):
            value = masks_final_loss(masks, cfg.surrogate)
            if best is None or value < best[0]:
                best = (value, masks)
    if best is None:  # the counts' prefix schedule fits by construction; nobody as a last resort
        best = (masks_final_loss(np.zeros((T, k), bool), cfg.surrogate), np.zeros((T, k), bool))
    replay_config = make_config(env_id, {**config, "action_mode": "subset"})
    return HindsightPlan(
        bound=result.bound,
        policy=_Replay(best[1], replay_config),
        action_mode="subset",
        extra={"best_found": best[0], "dual_iterations": result.dual_iterations},
    )
