"""The MEC family's dynamics (the skeleton contract, ``edgeft.envs.skeleton``): :func:`decide`
maps an action to the round's decision (``actions.action_to_decision``), :func:`step` plays the
round and returns a new state (the one it is given is left as it is).

Both shells, the single env (``env.MECOffloadingEnv``) and the vector env
(``vector.MECVectorEnv``), call :func:`decide` then :func:`step`; the info dict is built by
:func:`step_info` only. The only randomness is the exogenous draw of the next round
(``generator.advance``) from ``rng``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from edgeft.envs.mec import generator as G
from edgeft.envs.mec import reward as R
from edgeft.envs.mec.actions import COLUMNS, action_to_decision, constraint_violations
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


def decide(params: Params, action: Any, state: MECState) -> RoundDecision:
    """The round's decision for ``action`` in the one-copy ``state``: validated, projected
    (``actions.action_to_decision``); malformed actions raise ``ValueError``."""
    inst = instance_from_state(params.config, state)
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
    """
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
