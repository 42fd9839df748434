"""The MEC family's dynamics (the skeleton contract, ``edgeft.envs.skeleton``): :func:`decide`
maps an action to the round's decision (``actions.action_to_decision``), :func:`step` plays the
round and returns a new state (the one it is given is left as it is).

Both shells, the single env (``env.MECOffloadingEnv``) and the vector env
(``vector.MECVectorEnv``), call :func:`decide` then :func:`step`; the info dict is built by
:func:`step_info` only. The only randomness is the exogenous draw of the next round
(``generator.advance``) from ``rng``.

A batched state (a leading copy axis, the vector env's) is stepped as one numpy batch: the
same functions of the cost model, projection and dynamics on arrays with a leading copy axis
(elementwise arithmetic; every per-copy sum runs over that copy's users in the one-copy order),
so copy i's decision, reward, info and next state are those of one copy stepped alone, bit for
bit. The batch's ``rng`` draws each copy's values from that copy's own generator. The batched
info holds one array per key, entry i copy i's value (:func:`step_info_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from edgeft.envs.mec import generator as G
from edgeft.envs.mec import reward as R
from edgeft.envs.mec.actions import (
    COLUMNS,
    action_to_decision,
    actions_to_decisions,
    constraint_violations,
    constraint_violations_batch,
)
from edgeft.envs.mec.config import MECConfig
from edgeft.envs.mec.types import MECDecision, MECInstance, MECState, instance_from_state

#: the projection report of a decision applied as given
NO_PROJECTION = dict.fromkeys(COLUMNS, 0.0)
#: cap of each user's energy ratio in ``info["cost_bounded"]`` (the learning signal)
COST_CAP = 4.0


@dataclass(frozen=True)
class Params:
    """What a step needs besides the state and the decision: the config in force."""

    config: MECConfig


@dataclass(frozen=True)
class RoundDecision:
    """:func:`decide`'s result: the decision in SI units, what the projection changed
    (largest change per column) and the round's instance the decision was made for."""

    decision: MECDecision
    projection: dict[str, float]
    instance: MECInstance


def decide(
    params: Params, action: Any, state: MECState, gain: np.ndarray | None = None
) -> RoundDecision:
    """The round's decision for ``action`` in the one-copy ``state``: validated, projected
    (``actions.action_to_decision``); malformed actions raise ``ValueError``.

    A batched ``state`` takes one action per copy (``actions.actions_to_decisions``; the
    projection report then holds (copies,) arrays). ``gain``: the state's
    ``types.gain_matrix`` where the caller has it (not computed a second time)."""
    inst = instance_from_state(params.config, state, gain)
    if state.batch_shape:
        batch, report_batch = actions_to_decisions(params.config, action, inst)
        return RoundDecision(batch, report_batch, inst)  # type: ignore[arg-type]
    dec, report = action_to_decision(params.config, action, inst)
    return RoundDecision(dec, report, inst)


def step(
    params: Params, state: MECState, decision: RoundDecision | MECDecision, rng: np.random.Generator
) -> tuple[MECState, float, dict[str, Any]]:
    """One round in the one-copy ``state`` (the skeleton contract): the next state (a new
    one), the reward and the info.

    ``decision`` is :func:`decide`'s (or a bare ``MECDecision``, applied as given, without a
    projection). Cost, queues and reward: ``reward``; the next state: ``generator.advance``
    (users move, fading evolves, new token lengths) with the updated queues.

    A batched ``state`` gives the batch's next state, a (copies,) array of rewards and
    :func:`step_info_batch`'s info; ``rng`` then draws each copy's values from its own
    generator.
    """
    if state.batch_shape:
        return _step_batch(params, state, decision, rng)  # type: ignore[return-value]
    config = params.config
    if isinstance(decision, RoundDecision):
        inst, projection, decision = decision.instance, decision.projection, decision.decision
    else:
        inst, projection = instance_from_state(config, state), None
    terms = R.per_user_terms(inst, decision, include_upload_delay=config.upload_delay)
    cost = R.cost_of_terms(terms, config.weights)
    q_old = state.energy_queue
    q_new = R.queue_update(q_old, terms["device_energy"], state.energy_budget)
    reward = R.step_reward(
        cost, R.queue_growth(q_old, q_new, state.energy_budget), config.energy_penalty
    )
    info = step_info(
        config,
        state,
        inst,
        decision,
        terms,
        cost,
        q_new,
        dict(NO_PROJECTION) if projection is None else projection,
    )
    nxt = G.advance(config, state, rng, q_new)
    return nxt, reward, info


def step_info(
    config: MECConfig,
    state: MECState,
    inst: MECInstance,
    dec: MECDecision,
    terms: dict[str, np.ndarray],
    cost: float,
    q_new: np.ndarray,
    projection: dict[str, float],
) -> dict[str, Any]:
    """The step's info dict (documented in ``MECOffloadingEnv``'s docstring)."""
    e_dev = terms["device_energy"]
    chi = dec.association(config.num_servers)
    ratio = e_dev / state.energy_budget
    info = {
        "round": state.round_index,
        "alpha": dec.alpha,
        "server": dec.server,
        "power": dec.power,
        "bandwidth": dec.bandwidth,
        "freq_user": dec.freq_user,
        "freq_edge": dec.freq_edge,
        "energy": terms["energy"],
        "device_energy": e_dev,
        "delay": terms["delay"],
        "stability": terms["stability"],
        "rate": terms["rate"],
        "objective": cost,
        "cost": float(np.mean(ratio)),
        "costs": ratio,
        "cost_bounded": float(np.mean(np.minimum(ratio, COST_CAP))),
        "energy_total": float(terms["energy"].sum()),
        "delay_mean": float(terms["delay"].mean()),
        "stability_mean": float(terms["stability"].mean()),
        "energy_queue": q_new,
        "queue_in_budgets": q_new / state.energy_budget,
        "budget_overshoot": float(np.maximum(e_dev - state.energy_budget, 0.0).sum()),
        "violations": constraint_violations(
            inst, dec.alpha, chi, dec.power, dec.bandwidth, dec.freq_user, dec.freq_edge
        ),
        "action_projected": bool(any(v > 0 for v in projection.values())),
        "projection": projection,
    }
    return _numpy_scalars(info)


def _numpy_scalars(info: dict[str, Any]) -> dict[str, Any]:
    """The info with its Python numbers as numpy scalars (what tools reading info expect)."""
    out: dict[str, Any] = {}
    for key, v in info.items():
        if isinstance(v, bool):
            out[key] = np.bool_(v)
        elif isinstance(v, int):
            out[key] = np.int64(v)
        elif isinstance(v, float):
            out[key] = np.float64(v)
        elif isinstance(v, dict):
            out[key] = {k: np.float64(x) for k, x in v.items()}
        else:
            out[key] = v
    return out


def reset_info(params: Params, state: MECState) -> dict[str, Any]:
    """The info of a reset, with every key of a step's (tools that record episodes, such as
    Minari, need the same keys from the reset on): the round's instance, no decision yet (zeros),
    no cost, the queues as they are."""
    config = params.config
    inst = instance_from_state(config, state)
    n = config.num_users
    zero = np.zeros(n)
    dec = MECDecision(
        alpha=np.zeros(n, dtype=np.int64),
        server=np.zeros(n, dtype=np.int64),
        power=zero,
        bandwidth=zero,
        freq_user=zero,
        freq_edge=zero,
    )
    terms = {name: zero for name in ("energy", "device_energy", "delay", "stability", "rate")}
    info = step_info(config, state, inst, dec, terms, 0.0, state.energy_queue, dict(NO_PROJECTION))
    info["violations"] = {k: np.float64(0.0) for k in info["violations"]}
    return info


def _step_batch(
    params: Params, state: MECState, decision: RoundDecision | MECDecision, rng: Any
) -> tuple[MECState, np.ndarray, dict[str, Any]]:
    """:func:`step` of a batched state: the same arithmetic over the leading copy axis."""
    config = params.config
    projection: dict[str, Any]
    if isinstance(decision, RoundDecision):
        inst, projection, dec = decision.instance, decision.projection, decision.decision
    else:
        inst, dec = instance_from_state(config, state), decision
        projection = {c: np.zeros(state.batch_shape) for c in COLUMNS}
    terms = R.per_user_terms(inst, dec, include_upload_delay=config.upload_delay)
    cost = np.sum(R.per_user_cost(terms, config.weights), axis=-1)
    q_old = state.energy_queue
    q_new = R.queue_update(q_old, terms["device_energy"], state.energy_budget)
    growth = np.mean((q_new - q_old) / state.energy_budget, axis=-1)
    reward = R.step_reward(cost, growth, config.energy_penalty)  # type: ignore[arg-type]
    info = step_info_batch(config, state, inst, dec, terms, cost, q_new, projection)  # type: ignore[arg-type]
    nxt = G.advance(config, state, rng, q_new)
    return nxt, np.asarray(reward), info


def step_info_batch(
    config: MECConfig,
    state: MECState,
    inst: MECInstance,
    dec: MECDecision,
    terms: dict[str, np.ndarray],
    cost: np.ndarray,
    q_new: np.ndarray,
    projection: dict[str, np.ndarray],
    violations: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """:func:`step_info` of a batch: each key's (copies, ...) array, entry i copy i's value
    (the dtype Gymnasium's vector envs give a key when merging the copies' infos: a numpy
    scalar's, an array's, or ``object`` for ``action_projected``'s ``np.bool_``).
    ``violations`` None measures them (``actions.constraint_violations_batch``)."""
    e_dev = terms["device_energy"]
    ratio = e_dev / state.energy_budget
    copies = state.batch_shape[0]
    projected = np.zeros(copies, dtype=bool)
    for v in projection.values():
        projected |= v > 0
    flags = np.empty(copies, dtype=object)
    flags[:] = [np.True_ if f else np.False_ for f in projected.tolist()]
    if violations is None:
        violations = constraint_violations_batch(inst, dec)
    return {
        "round": np.asarray(state.round_index, dtype=np.int64).copy(),
        "alpha": np.array(dec.alpha),
        "server": np.array(dec.server),
        "power": np.array(dec.power),
        "bandwidth": np.array(dec.bandwidth),
        "freq_user": np.array(dec.freq_user),
        "freq_edge": np.array(dec.freq_edge),
        "energy": terms["energy"],
        "device_energy": e_dev,
        "delay": terms["delay"],
        "stability": terms["stability"],
        "rate": terms["rate"],
        "objective": np.asarray(cost, dtype=np.float64),
        "cost": np.mean(ratio, axis=-1),
        "costs": ratio,
        "cost_bounded": np.mean(np.minimum(ratio, COST_CAP), axis=-1),
        "energy_total": terms["energy"].sum(axis=-1),
        "delay_mean": terms["delay"].mean(axis=-1),
        "stability_mean": terms["stability"].mean(axis=-1),
        "energy_queue": np.array(q_new),
        "queue_in_budgets": q_new / state.energy_budget,
        "budget_overshoot": np.maximum(e_dev - state.energy_budget, 0.0).sum(axis=-1),
        "violations": violations,
        "action_projected": flags,
        "projection": projection,
    }


def reset_info_batch(params: Params, state: MECState) -> dict[str, Any]:
    """:func:`reset_info` of a batched state (one array per key, as :func:`step_info_batch`)."""
    config = params.config
    inst = instance_from_state(config, state)
    copies, n = state.batch_shape[0], config.num_users
    zero = np.zeros((copies, n))
    dec = MECDecision(
        alpha=np.zeros((copies, n), dtype=np.int64),
        server=np.zeros((copies, n), dtype=np.int64),
        power=zero,
        bandwidth=zero,
        freq_user=zero,
        freq_edge=zero,
    )
    terms = {
        name: np.zeros((copies, n))
        for name in ("energy", "device_energy", "delay", "stability", "rate")
    }
    none = {c: np.zeros(copies) for c in COLUMNS}
    violations = {k: np.zeros(copies) for k in ("9a", "9b", "9c", "9d", "9e", "9f", "9g")}
    return step_info_batch(
        config, state, inst, dec, terms, np.zeros(copies), state.energy_queue, none, violations
    )
