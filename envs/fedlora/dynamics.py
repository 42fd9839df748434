"""The FedLoRA family's dynamics (the skeleton contract, ``edgeft.envs.skeleton``), shared by the
single and the vector env: :func:`decide` maps an action to the round's decision (``actions``),
:func:`step` plays the round: delay and queue (FT eqs. 7, 18), the budget guard, learning,
reward (``reward``), and the info dict (built here and nowhere else).

The step consumes the :class:`~edgeft.envs.fedlora.types.State` it is given: it advances it in
place (a copy per step would cost more than the rest of the step's bookkeeping on the single
env's hot path) and returns it; the next round's channel and message sizes are drawn by the env
shells from ``generator``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from edgeft.envs.fedlora.actions import action_to_decision
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.fedlora.formulas import delays_from_snr, queue_update
from edgeft.envs.fedlora.reward import step_reward
from edgeft.envs.fedlora.surrogate import (
    _noisy,
    accuracy_of_loss,
    contraction,
    settle_table,
    shared_gap0,
    step_loss,
)
from edgeft.envs.fedlora.types import Decision, State

#: the learning step ``step`` calls: (n, scheduled, state, rng) -> (loss, accuracy, extra info)
Learn = Callable[[Any, np.ndarray, State, np.random.Generator], tuple[Any, Any, dict[str, Any]]]

#: the info keys every env of the family reports on every step, in this order (real mode adds
#: ``train_loss`` and ``device_loss`` before them and, on evaluation rounds, ``test_loss`` and
#: ``test_accuracy``; the vector env adds a ``_key`` mask for each key)
INFO_KEYS = (
    "channel_gain",
    "scheduled",
    "bandwidth",
    "device_delay",
    "bits",
    "delay",
    "delay_budget",
    "delay_ratio",
    "delay_queue",
    "cost",
    "delay_excess",
    "num_scheduled",
    "loss",
    "accuracy",
    "action_projected",
    "budget_guarded",
)


@dataclass(frozen=True)
class Params:
    """What a step needs besides the state and the action, fixed for an env's life (in the spirit
    of gymnax's ``EnvParams``).

    Attributes:
        config: the env's config (the user's; real mode's measured D-bar is ``budget``).
        budget: D-bar in force (s per round).
        gap: the surrogate's initial loss minus its loss floor (the progress reward's scale).
        learn: the learning step, ``(n, scheduled, state, rng) -> (loss, accuracy, extra info)``
            (:class:`SurrogateLearning`, or real mode's training round).
    """

    config: FedLoRAConfig
    budget: float
    gap: float
    learn: Learn

    @classmethod
    def surrogate(cls, config: FedLoRAConfig, budget: float | None = None) -> Params:
        """The params of a surrogate-mode env with ``config`` (D-bar: ``config.budget_s``)."""
        p = config.surrogate
        return cls(
            config,
            config.budget_s if budget is None else float(budget),
            p.initial_loss - p.loss_floor,
            SurrogateLearning(config),
        )


def delay_and_queue(
    budget: float,
    bits_ln2: np.ndarray,
    snr_hz: np.ndarray,
    bandwidth: np.ndarray,
    scheduled: np.ndarray,
    queue: float | np.ndarray,
) -> tuple[np.ndarray, float | np.ndarray, float | np.ndarray, float | np.ndarray]:
    """Per-device delays (0 off schedule), round delay D (s), x = D / D-bar and the updated queue
    (FT eqs. 7, 18), from mu ln2 and a = |h|^2 / sigma^2 (see ``formulas.delays_from_snr``);
    D, x and the queue are plain floats for one env."""
    per_device = delays_from_snr(bits_ln2, bandwidth, snr_hz, scheduled)
    delay = per_device.max(axis=-1)
    if delay.ndim == 0:
        delay = float(delay)  # single env: plain floats from here on
    x = delay / budget
    return per_device, delay, x, queue_update(queue, x)


@lru_cache(maxsize=16)
def _budget_row(budget: float, batch: int) -> np.ndarray:
    """D-bar for each of ``batch`` copies, the batched info's ``delay_budget``: one read-only
    array per (budget, batch), shared by every step's info."""
    row = np.full(batch, budget)
    row.flags.writeable = False
    return row


class SurrogateLearning:
    """The surrogate's learning step (``edgeft.envs.fedlora.surrogate``) as ``step`` calls it:
    ``(n, scheduled, state, rng) -> (loss after, accuracy, extra info)``; rho(N) and s*(N)
    tabulated once. A v3 surrogate advances ``state.heads`` and ``state.shared`` in place, for
    every copy of a batch (copies about to reset get new ones at their reset). Its only random
    draw (the loss noise, when ``surrogate.noise > 0``) is one standard normal per env, a batch
    drawing them in copy order.
    """

    def __init__(self, config: FedLoRAConfig) -> None:
        self.params = p = config.surrogate
        self.k = config.num_devices
        self.rho = np.asarray(contraction(np.arange(self.k + 1), self.k, p))  # an array: N = 0..K
        self.rho_list = self.rho.tolist()  # plain floats: one list lookup in the single env
        self.settle = settle_table(self.k, p)
        self.settle_list = self.settle.tolist()
        self.v3 = p.version >= 3  # the shared gap and heads state (v3 and v4)
        self.drift = p.drift_rate
        self.heads_on = p.head_rate > 0.0
        self.keep = 1.0 - p.head_rate
        # the single env's v3 step, inlined below (the same arithmetic as surrogate.step_shared
        # and surrogate.loss_of; tests hold the two to each other)
        self.ones = np.ones(self.k) / self.k
        self.g0 = p.initial_loss - p.loss_floor
        self.s0 = shared_gap0(p)
        self.onset = p.onset
        self.floor = p.loss_floor
        self.heads_mean = 0.0
        self.acc1 = p.final_accuracy
        self.acc_slope = (p.final_accuracy - p.initial_accuracy) / self.g0

    def __call__(
        self, n: Any, scheduled: np.ndarray, state: State, rng: np.random.Generator
    ) -> tuple[Any, Any, dict[str, Any]]:
        p = self.params
        if isinstance(n, int):
            noise = rng.standard_normal() if p.noise > 0 else None
            if not self.v3:
                loss = float(step_loss(state.loss, n, self.k, p, noise, rho=self.rho_list[n]))
                return loss, float(accuracy_of_loss(loss, p)), {}
            shared = state.shared
            if n:
                rho, settle = self.rho_list[n], self.settle_list[n]
                if self.drift > 0.0 and shared < settle:  # v4: forgetting below s*(N)
                    rho = self.drift
                elif self.onset < 1.0:
                    frac = min(max(1.0 - shared / self.s0, 0.0), 1.0)
                    rho = rho * (self.onset + (1.0 - self.onset) * frac)
                shared = state.shared = settle + (1.0 - rho) * (shared - settle)
                if self.heads_on:
                    heads = state.heads
                    np.multiply(heads, self.keep, out=heads, where=scheduled)
                    self.heads_mean = float(np.dot(heads, self.ones))
            elif self.heads_on:  # nothing moved; the mean of the heads as after the last step
                self.heads_mean = float(np.dot(state.heads, self.ones))
            loss = self.floor + shared + self.heads_mean * (self.g0 - shared)
            if noise is not None:
                loss = float(_noisy(loss, n, p, noise))
            # accuracy_of_loss, inlined
            acc = self.acc1 - self.acc_slope * (loss - self.floor)
            return loss, (acc if 0.0 <= acc <= 1.0 else min(max(acc, 0.0), 1.0)), {}
        noise = rng.standard_normal(n.shape[0]) if p.noise > 0 else None
        if not self.v3:
            losses = step_loss(state.loss, n, self.k, p, noise, rho=self.rho[n])
            return losses, accuracy_of_loss(losses, p), {}
        # surrogate.step_shared and loss_of for a batch, inlined (the vector env's hot path)
        shared, rho, settle = state.shared, self.rho[n], self.settle[n]
        if self.onset < 1.0:
            frac = np.minimum(np.maximum(1.0 - shared / self.s0, 0.0), 1.0)
            rho = rho * (self.onset + (1.0 - self.onset) * frac)
        if self.drift > 0.0:  # v4: forgetting below s*(N)
            rho = np.where(shared < settle, self.drift, rho)
        shared = state.shared = settle + (1.0 - rho) * (shared - settle)
        heads_mean_b: Any = 0.0
        if self.heads_on:
            heads = state.heads
            np.multiply(heads, np.where(scheduled, self.keep, 1.0), out=heads)
            heads_mean_b = heads @ self.ones
        loss = self.floor + shared + heads_mean_b * (self.g0 - shared)
        if noise is not None:
            loss = _noisy(loss, n, p, noise)
        # accuracy_of_loss, inlined
        acc = np.minimum(np.maximum(self.acc1 - self.acc_slope * (loss - self.floor), 0.0), 1.0)
        return loss, acc, {}


#: the single env's float info values, reported as numpy scalars
_FLOAT_KEYS = (
    "delay",
    "delay_budget",
    "delay_ratio",
    "delay_queue",
    "cost",
    "delay_excess",
    "loss",
    "accuracy",
)


def reset_info(params: Params, state: State) -> dict[str, Any]:
    """The info of a reset, with every key of a step's (:data:`INFO_KEYS`; tools that record
    episodes, such as Minari, need the same keys from the reset on): the round's channel and
    message sizes, nobody scheduled, no delay, the queue, the loss and accuracy at the start.
    One env's values or a batch's, like ``state``'s."""
    batch = batch_of(state)
    lead = () if batch is None else (batch,)
    k = state.age.shape[-1]
    zero = np.zeros(lead) if batch is None else np.zeros(batch)
    info: dict[str, Any] = {
        "channel_gain": state.gain.copy(),
        "scheduled": np.zeros(lead + (k,), dtype=bool),
        "bandwidth": np.zeros(lead + (k,)),
        "device_delay": np.zeros(lead + (k,)),
        "bits": state.bits.copy(),
        "delay": zero.copy(),
        "delay_budget": np.full(lead, params.budget),
        "delay_ratio": zero.copy(),
        "delay_queue": np.asarray(state.queue, dtype=np.float64).copy(),
        "cost": zero.copy(),
        "delay_excess": zero.copy(),
        "num_scheduled": np.zeros(lead, dtype=np.int64),
        "loss": np.asarray(state.loss, dtype=np.float64).copy(),
        "accuracy": np.asarray(state.accuracy, dtype=np.float64).copy(),
        "action_projected": np.zeros(lead, dtype=bool),
        "budget_guarded": np.zeros(lead, dtype=bool),
    }
    if batch is None:  # numpy scalars, as a step's
        info = {
            key: (v[()] if isinstance(v, np.ndarray) and v.ndim == 0 else v)
            for key, v in info.items()
        }
    return info


@lru_cache(maxsize=16)
def _no_guard(batch: int) -> np.ndarray:
    """The batched ``budget_guarded`` of a step without the guard (read-only, shared)."""
    row = np.zeros(batch, dtype=bool)
    row.flags.writeable = False
    return row


#: relative slack of the budget guard: rounding in the sum of rounds spent at exactly D-bar must
#: not hold a policy back
GUARD_RTOL = 1e-9


def over_budget(state: State, x: Any, rounds: int) -> Any:
    """Whether this round's D/D-bar ``x`` would take the episode's total delay over its budget
    T x D-bar, beyond :data:`GUARD_RTOL` (the delays so far are ``excess_sum + t`` budgets: S is
    the running sum of (D/D-bar - 1)); a bool, or a bool array for a batch."""
    spent = state.excess_sum + state.t
    limit = rounds * (1.0 + GUARD_RTOL)
    if isinstance(x, float):
        return bool(spent + x > limit)
    return np.asarray(spent + x > limit)


def _guard(
    guarded: Any,
    scheduled: np.ndarray,
    bandwidth: np.ndarray,
    dev_delay: np.ndarray,
    delay: Any,
    x: Any,
    queue: Any,
    queue_before: Any,
) -> tuple[Any, ...]:
    """The round of the budget guard (``FedLoRAConfig.budget_guard``): where ``guarded``,
    nobody is scheduled (no delay, nothing learnt) instead of the decision."""
    if isinstance(x, float):  # one env, guarded
        k = scheduled.shape[-1]
        return (
            np.zeros(k, dtype=bool),
            np.zeros(k),
            np.zeros(k),
            0.0,
            0.0,
            queue_update(queue_before, 0.0),
        )
    g = np.asarray(guarded)
    keep = ~g[:, None]
    x = np.where(g, 0.0, x)
    return (
        scheduled & keep,
        bandwidth * keep,
        dev_delay * keep,
        np.where(g, 0.0, delay),
        x,
        np.where(g, queue_update(queue_before, np.zeros_like(x)), queue),
    )


def batch_of(state: State) -> int | None:
    """The number of copies of a batched state (None for one env)."""
    t = state.t
    if isinstance(t, np.ndarray):
        return int(t.shape[0]) if t.ndim else None
    return None  # a Python or numpy integer: one env


def decide(params: Params, action: Any, state: State) -> Decision:
    """The round's decision for ``action`` (``actions.action_to_decision``): ``(scheduled,
    bandwidth in Hz, projected)``, batched like ``state``; malformed actions raise
    ``ValueError`` before anything changes."""
    return action_to_decision(action, state, params.config, batch_of(state))


def step(
    params: Params, state: State, decision: Decision, rng: Any, live: np.ndarray | None = None
) -> tuple[State, Any, dict[str, Any]]:
    """One round (the skeleton contract, ``edgeft.envs.skeleton``): delays, queue, budget
    guard, learning, reward, info. The step consumes ``state``: it advances it in place (age,
    queue, t, loss, accuracy; the next round's channel is the shell's draw) and returns it.

    Args:
        params: config, D-bar in force, reward scale and learning step (:class:`Params`).
        state: one env, or a batch with a leading axis of copies.
        decision: :func:`decide`'s ``(scheduled, bandwidth, projected)`` for the round.
        rng: the env's generator (the surrogate's loss noise, if any); for a batch, an object
            whose ``standard_normal(n)`` draws each copy's number from its own generator.
        live: batched: copies that advance (the others are about to reset; None = all).

    Returns:
        (state, reward, info): the info dict of every env of the family (:data:`INFO_KEYS`,
        after the learning step's extras; the vector env adds its autoreset masks). Unbatched: a
        float reward and scalars; batched: arrays with a leading axis of copies.
    """
    batch = batch_of(state)
    config, budget = params.config, params.budget
    scheduled, bandwidth, projected = decision
    dev_delay, delay, x, queue = delay_and_queue(
        budget, state.bits_ln2, state.snr, bandwidth, scheduled, state.queue
    )
    guarded: Any = False if batch is None else _no_guard(batch)
    if config.budget_guard:
        guarded = over_budget(state, x, config.episode_rounds)
        if np.any(guarded):
            scheduled, bandwidth, dev_delay, delay, x, queue = _guard(
                guarded, scheduled, bandwidth, dev_delay, delay, x, queue, state.queue
            )
    n: Any
    excess: Any
    if batch is None:
        n = int(np.count_nonzero(scheduled))
        excess = max(0.0, x - 1.0)
    else:
        n = scheduled.sum(axis=-1)
        excess = np.maximum(0.0, x - 1.0)
    loss_before = state.loss
    loss_after, accuracy, extra = params.learn(n, scheduled, state, rng)
    s_before = state.excess_sum
    s_after = s_before + x - 1.0
    if batch is None:
        over_before, over_after = max(0.0, s_before), max(0.0, s_after)
    else:
        over_before, over_after = np.maximum(0.0, s_before), np.maximum(0.0, s_after)
    reward = step_reward(
        config,
        params.gap,
        loss_before,
        loss_after,
        n if batch is None else n.astype(np.float64),
        x,
        excess,
        state.queue,
        over_before,
        over_after,
    )
    info = {
        **extra,
        "channel_gain": state.gain,
        "scheduled": scheduled,
        "bandwidth": bandwidth,
        "device_delay": dev_delay,
        "bits": state.bits.copy(),
        "delay": delay,
        "delay_budget": budget if batch is None else _budget_row(budget, batch),
        "delay_ratio": x,
        "delay_queue": queue,
        "cost": x,
        "delay_excess": excess,
        "num_scheduled": n,
        "loss": loss_after,
        "accuracy": accuracy,
        "action_projected": bool(projected) if batch is None else projected,
        "budget_guarded": guarded,
    }
    if batch is None:  # numpy scalars, as a batch's entries are (what tools reading info expect)
        for key in _FLOAT_KEYS:
            info[key] = np.float64(info[key])
        info["num_scheduled"] = np.int64(n)
        info["action_projected"] = np.bool_(info["action_projected"])
        info["budget_guarded"] = np.bool_(guarded)
    if live is None:  # every env advances: plain in-place updates
        state.age += 1
        state.age[scheduled] = 0
        state.queue, state.loss, state.accuracy = queue, loss_after, accuracy
        state.excess_sum = s_after
        state.t += 1
    else:
        state.age = np.where(live[:, None], np.where(scheduled, 0, state.age + 1), state.age)
        state.queue = np.where(live, queue, state.queue)
        state.excess_sum = np.where(live, s_after, state.excess_sum)
        state.loss = np.where(live, loss_after, state.loss)
        state.accuracy = np.where(live, accuracy, state.accuracy)
        state.t = np.where(live, state.t + 1, state.t)
    return state, reward, info
