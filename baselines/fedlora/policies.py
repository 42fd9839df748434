"""FT reference policies: Lyapunov online scheduling (corrected and as printed), All-in, AABA,
GS and random — all acting on the env's decoded observation through the SB3 ``predict`` API.

A policy takes the config the env runs with: ``edgeft.envs.common.config_in_force(env)`` (what
``edgeft.make_policy`` passes), whose D-bar is the one the env enforces (in real mode the budget
follows the measured message size; the env's own ``config`` stays as the user gave it).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from edgeft.envs.fedlora.actions import channel_order, decision_to_action
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.fedlora.formulas import (
    LN2,
    bandwidth_for_delay,
    min_common_delay,
    min_common_delay_one,
    prefix_delay_brackets,
    rate,
)
from edgeft.envs.fedlora.observation import decode_observation
from edgeft.envs.fedlora.reward import lyapunov_objective


class FedLoRAPolicy:
    """Base class: decode the observation, decide (schedule, bandwidth), encode for the action mode.

    Subclasses implement :meth:`decide` for one observation. ``last_decision_time`` holds the
    wall time (s) of the latest decision, per observation in the batch.
    """

    #: whether the decision is a prefix of the channel order split by min-max delay, i.e. exactly
    #: expressible in "count" mode
    exact_in_count_mode = False

    def __init__(
        self,
        config: FedLoRAConfig,
        action_mode: str | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        """``config``: the env's config in force (``config_in_force(env)``); ``action_mode``:
        the env's (default ``config.action_mode``)."""
        if options:
            raise ValueError(
                f"unknown option(s) {sorted(options)} for policy {type(self).__name__}"
            )
        self.config = config
        self.action_mode = action_mode or config.action_mode
        if self.action_mode not in config.ACTION_MODES:
            raise ValueError(
                f"action_mode must be one of {list(config.ACTION_MODES)}, got {self.action_mode!r}"
            )
        self.rng = np.random.default_rng(seed)
        self.last_decision_time = np.zeros(0)

    def decide(
        self, gain: np.ndarray, bits: np.ndarray, queue: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (scheduled mask, bandwidth in Hz) for one observation."""
        raise NotImplementedError

    def decide_at(
        self, gain: np.ndarray, bits: np.ndarray, queue: float, round_index: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`decide` for a policy that also reads the round index t (0-based, from the
        observation); the default ignores it."""
        return self.decide(gain, bits, queue)

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """SB3's ``predict``: one observation (shape (3K+3,)) or a batch (n, 3K+3)."""
        obs = np.asarray(observation, dtype=np.float64)
        single = obs.ndim == 1
        batch = obs[None] if single else obs.reshape(-1, obs.shape[-1])
        dec = decode_observation(batch, self.config)
        actions, times = [], []
        for i in range(batch.shape[0]):
            t0 = time.perf_counter()
            scheduled, bandwidth = self.decide_at(
                dec.gain[i], dec.bits[i], float(dec.queue[i]), int(dec.round[i])
            )
            actions.append(
                decision_to_action(
                    scheduled, bandwidth, self.config, self.action_mode, dec.gain[i], dec.bits[i]
                )
            )
            times.append(time.perf_counter() - t0)
        self.last_decision_time = np.asarray(times)
        out = np.stack(actions)
        return (out[0] if single else out), state


def _prefix_decision(
    order: np.ndarray, n: int, band_sorted: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    scheduled = np.zeros(k, dtype=bool)
    bandwidth = np.zeros(k)
    scheduled[order[:n]] = True
    bandwidth[order[:n]] = band_sorted[:n]
    return scheduled, bandwidth


class LyapunovPolicy(FedLoRAPolicy):
    """FT Algorithm 1: Lyapunov drift-plus-penalty online scheduling and bandwidth allocation.

    Devices are sorted by channel (strongest first); for each prefix S_n of that order the
    minimum common delay D*(S_n) (Lemma 3 bandwidths summing to B) gives x_n = D*/D-bar and the
    per-round objective J_n (:func:`~edgeft.envs.fedlora.reward.lyapunov_objective`), with the
    queue q(t-1) read from the observation.

    Args:
        objective: "corrected" (J = N - zeta [q x + (x-1)^2/2], docs/corrections.md) or
            "paper" (N - zeta q x).
        search: "all" (argmax over all K prefixes — exactly the per-round optimum, since the best
            subset is always a prefix) or "first-decrease" (the paper's stopping rule).
        zeta: trade-off weight (default: the env config's ``zeta``).
        min_devices: prefixes shorter than this are not considered by "all" (default 1: an
            empty round stalls learning; the convergence analysis divides by N).
        grid: grid size of the certified prefix brackets (speed knob; the result is exact).
        batch: candidate prefixes solved exactly per pass (speed knob; the result is exact).
    """

    exact_in_count_mode = True

    def __init__(
        self,
        config: FedLoRAConfig,
        action_mode: str | None = None,
        seed: int | None = None,
        objective: str = "corrected",
        search: str = "all",
        zeta: float | None = None,
        min_devices: int = 1,
        grid: int = 48,
        batch: int = 4,
    ) -> None:
        super().__init__(config, action_mode, seed)
        if objective not in ("corrected", "paper"):
            raise ValueError(f"objective must be 'corrected' or 'paper', got {objective!r}")
        if search not in ("all", "first-decrease"):
            raise ValueError(f"search must be 'all' or 'first-decrease', got {search!r}")
        self.objective = objective
        self.search = search
        self.zeta = config.zeta if zeta is None else float(zeta)
        if not (self.zeta >= 0 and math.isfinite(self.zeta)):
            raise ValueError(f"zeta must be a finite number >= 0, got {zeta!r}")
        self.min_devices = int(min_devices)
        self.grid = int(grid)
        self.batch = int(batch)

    def _exact(
        self, gs: np.ndarray, bs: np.ndarray, ns: np.ndarray, c_lo: np.ndarray, c_hi: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact D* and bandwidths of prefixes ``ns`` (1-based lengths), within their brackets."""
        k = gs.shape[0]
        width = int(ns.max())  # devices beyond the longest prefix play no part
        mask = np.arange(width)[None, :] < ns[:, None]
        delay, band = min_common_delay(
            bs[:width],
            gs[:width],
            self.config.noise_psd,
            self.config.bandwidth_hz,
            mask,
            bracket=(c_lo[ns - 1], c_hi[ns - 1]),
        )
        full = np.zeros((ns.size, k))
        full[:, :width] = band
        return delay, full

    def decide(
        self, gain: np.ndarray, bits: np.ndarray, queue: float
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        k = gain.shape[0]
        budget = self.config.budget_s  # D-bar in force (config_in_force)
        order = channel_order(gain, bits)
        gs, bs = gain[order], bits[order]
        c_lo, c_hi = prefix_delay_brackets(bs, gs, cfg.noise_psd, cfg.bandwidth_hz, self.grid)
        x_lo = LN2 / (c_hi * budget)  # smaller delay <- larger c
        x_hi = LN2 / (c_lo * budget)
        n = np.arange(1, k + 1, dtype=np.float64)
        obj = self.objective
        p_at_lo = lyapunov_objective(0.0, x_lo, queue, 1.0, obj) * -1.0  # penalty P(x)
        p_at_hi = lyapunov_objective(0.0, x_hi, queue, 1.0, obj) * -1.0
        if obj == "corrected":  # P(x) = q x + (x-1)^2/2 is convex: minimum at x = 1 - q, clipped
            x_min = np.clip(1.0 - queue, x_lo, x_hi)
            p_min = -lyapunov_objective(0.0, x_min, queue, 1.0, obj)
        else:
            p_min = p_at_lo
        p_max = np.maximum(p_at_lo, p_at_hi)
        j_up = n - self.zeta * p_min
        j_low = n - self.zeta * p_max
        if self.search == "all":
            return self._decide_all(order, gs, bs, queue, budget, c_lo, c_hi, j_up, j_low)
        return self._decide_first_decrease(order, gs, bs, queue, budget, c_lo, c_hi, j_up, j_low)

    def _decide_all(self, order, gs, bs, queue, budget, c_lo, c_hi, j_up, j_low):
        k = gs.shape[0]
        first = max(self.min_devices, 1) - 1
        if first >= k:
            raise ValueError(f"min_devices={self.min_devices} exceeds num_devices={k}")
        # certified candidates: their upper bound reaches the best lower bound. Solve them
        # exactly best-first, a few at a time, and drop those whose upper bound falls below the
        # best exact value found so far: the result is the exact argmax.
        cand = np.flatnonzero(j_up[first:] >= j_low[first:].max()) + first
        cand = cand[np.argsort(-j_up[cand], kind="stable")]
        best_j, best_n, best_band = -np.inf, 0, None
        while cand.size:
            batch, cand = cand[: self.batch], cand[self.batch :]
            delay, band = self._exact(gs, bs, batch + 1, c_lo, c_hi)
            j = lyapunov_objective(batch + 1.0, delay / budget, queue, self.zeta, self.objective)
            i = int(np.argmax(j))
            if j[i] > best_j or (j[i] == best_j and batch[i] + 1 < best_n):
                best_j, best_n, best_band = float(j[i]), int(batch[i]) + 1, band[i]
            cand = cand[j_up[cand] >= best_j]
        return _prefix_decision(order, best_n, best_band, k)

    def _decide_first_decrease(self, order, gs, bs, queue, budget, c_lo, c_hi, j_up, j_low):
        """Accept prefixes while J does not decrease (FT Algorithm 1 lines 4-16), J_0 = 0."""
        k = gs.shape[0]
        exact: dict[int, float] = {0: 0.0}
        bands: dict[int, np.ndarray] = {0: np.zeros(k)}

        def j_exact(ns: np.ndarray) -> None:
            todo = np.array([m for m in ns if m not in exact], dtype=np.int64)
            if todo.size:
                d, b = self._exact(gs, bs, todo, c_lo, c_hi)
                jj = lyapunov_objective(
                    todo.astype(np.float64), d / budget, queue, self.zeta, self.objective
                )
                assert isinstance(jj, np.ndarray)  # one J per prefix length in todo
                for m, v, bb in zip(todo, jj, b):
                    exact[int(m)], bands[int(m)] = float(v), bb

        lo = np.concatenate([[0.0], j_low])  # index m = prefix length
        up = np.concatenate([[0.0], j_up])
        n = 0
        while n < k:
            # certified "J_{m+1} >= J_m" for every m >= n up to the first uncertain step
            sure = lo[n + 1 :] >= up[n:-1]
            steps = int(np.argmin(sure)) if not sure.all() else sure.size
            n += steps
            if n >= k:
                break
            j_exact(np.array([n, n + 1]))
            if exact[n + 1] >= exact[n]:
                n += 1
                lo[n] = up[n] = exact[n]
            else:
                break
        if n > 0:
            j_exact(np.array([n]))
        return _prefix_decision(order, n, bands[n], k)


class AllInPolicy(FedLoRAPolicy):
    """All-in w/o delay constraint (FT V.A): every device, bandwidth minimising the max delay."""

    exact_in_count_mode = True

    def decide(self, gain, bits, queue):
        mask = np.ones_like(gain, dtype=bool)
        cfg = self.config
        _, band = min_common_delay_one(bits, gain, cfg.noise_psd, cfg.bandwidth_hz, mask)
        return mask, band


class GreedyPolicy(FedLoRAPolicy):
    """GS (FT V.A, eq. 29): devices in channel order each get the Lemma-3 bandwidth for D = D-bar
    while the total fits in B. Leftover bandwidth is not re-spread, so every scheduled device
    meets the budget exactly. Equals the largest prefix with D* <= D-bar (docs/corrections.md)."""

    def decide(self, gain, bits, queue):
        budget = self.config.budget_s  # D-bar in force (config_in_force)
        order = channel_order(gain, bits)
        need = bandwidth_for_delay(bits[order], budget, gain[order], self.config.noise_psd)
        fits = np.cumsum(need) <= self.config.bandwidth_hz
        n = int(np.argmin(fits)) if not fits.all() else fits.size
        return _prefix_decision(order, n, need, gain.shape[0])


def budget_profile(growth: float, rounds: int) -> np.ndarray:
    """Per-round budget multipliers ``w_t`` (t = 0 .. T - 1) proportional to
    ``exp(growth t / T)``, with mean exactly 1: a budget spent ``growth`` > 0 late, < 0 early,
    0 evenly (all ones)."""
    if not math.isfinite(growth):
        raise ValueError(f"growth must be a finite number, got {growth!r}")
    w = np.exp(float(growth) * np.arange(int(rounds)) / max(int(rounds), 1))
    return w / w.mean()


class BudgetProfilePolicy(FedLoRAPolicy):
    """GS against a per-round budget that changes over the episode: in round t the devices in
    channel order get the Lemma-3 bandwidth for ``D_t = w_t D-bar`` while the total fits in B,
    with ``w_t`` from :func:`budget_profile` (mean 1 over the episode's T rounds, so the
    per-round budgets average exactly D-bar and the time-average delay stays within it).

    ``growth`` > 0 spends less of the budget early and more late, when FT Theorem 1 weighs a
    round's progress more; ``growth = 0`` is :class:`GreedyPolicy`. Rounds past T reuse the
    last round's budget.
    """

    def __init__(
        self,
        config: FedLoRAConfig,
        action_mode: str | None = None,
        seed: int | None = None,
        growth: float = 1.0,
    ) -> None:
        super().__init__(config, action_mode, seed)
        self.growth = float(growth)
        self.profile = budget_profile(self.growth, config.episode_rounds)

    def decide(self, gain, bits, queue):
        return self.decide_at(gain, bits, queue, 0)

    def decide_at(self, gain, bits, queue, round_index):
        budget = self.config.budget_s * self.profile[min(round_index, self.profile.size - 1)]
        order = channel_order(gain, bits)
        need = bandwidth_for_delay(bits[order], budget, gain[order], self.config.noise_psd)
        fits = np.cumsum(need) <= self.config.bandwidth_hz
        n = int(np.argmin(fits)) if not fits.all() else fits.size
        return _prefix_decision(order, n, need, gain.shape[0])


class AABAPolicy(FedLoRAPolicy):
    """AABA (FT V.A, eq. 28 without its stray k): equal shares B/N, with N the largest n such that
    the n strongest devices all meet D-bar with B/n (0 if none does)."""

    def decide(self, gain, bits, queue):
        cfg = self.config
        budget = self.config.budget_s  # D-bar in force (config_in_force)
        k = gain.shape[0]
        order = channel_order(gain, bits)
        gs, bs = gain[order], bits[order]
        n = np.arange(1, k + 1, dtype=np.float64)
        share = cfg.bandwidth_hz / n
        if np.all(bs == bs[0]):
            # equal message sizes: the n-th strongest is the slowest of the prefix
            ok = bs / rate(share, gs, cfg.noise_psd) <= budget
        else:
            delay = bs[None, :] / rate(share[:, None], gs[None, :], cfg.noise_psd)
            delay = np.where(np.arange(k)[None, :] < n[:, None], delay, 0.0)
            ok = delay.max(axis=1) <= budget
        big_n = int(np.flatnonzero(ok)[-1] + 1) if ok.any() else 0
        band = np.full(k, cfg.bandwidth_hz / max(big_n, 1))
        return _prefix_decision(order, big_n, band, k)


class RandomPolicy(FedLoRAPolicy):
    """Each device joins with probability 1/2; the joined set gets the min-max-delay split."""

    def decide(self, gain, bits, queue):
        mask = self.rng.random(gain.shape[0]) < 0.5
        cfg = self.config
        _, band = min_common_delay_one(bits, gain, cfg.noise_psd, cfg.bandwidth_hz, mask)
        return mask, band
