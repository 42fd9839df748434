"""The MEC paper's method and benchmarks as policies with stable-baselines3's ``predict``.

Every policy reads the round from the observation alone (``observation.decode_observation``
with the config it was given: build policies with ``edgeft.make_policy(name, env)``, which
passes the env's ``config_in_force``), decides in SI units, and writes the decision in the env's
action mode with ``actions.decision_to_action``: exactly in ``"full"``, alpha and server in
``"discrete"`` and ``"discrete-priced"`` (the env then applies its resource rule), and the
nearest box point in ``"box"`` (the box mode always fills each server's band and GPU, so a
decision that leaves capacity unused is scaled up). The policies below are myopic in the
round's weighted cost (the energy-budget queue is not used); the ``-dpp`` ones add the queues'
drift-plus-penalty price (:class:`DriftPlusPenalty`). The wall time of the last decision is
``policy.last_solve_time`` and all of them are in ``policy.solve_times``.

| name | association | alpha | resources |
|---|---|---|---|
| ``fp-cccp`` | greedy start, CCCP (MEC 4.2, congestion QP) | FP-AO, rounded | FP-AO (MEC 4.1) |
| ``ao`` | greedy | block AO: closed-form alpha given resources | block AO: P4 with alpha fixed |
| ``alpha-only`` | greedy | exact given the random resources | random |
| ``resource-only`` | greedy | random | FP-AO with alpha fixed |
| ``greedy`` | highest available rate (MEC 5.3) | FP-AO, rounded | FP-AO |
| ``random`` | uniformly random (MEC 5.3) | FP-AO, rounded | FP-AO |
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from edgeft.envs.mec import reward as R
from edgeft.envs.mec.actions import decision_to_action
from edgeft.envs.mec.config import OVERSHOOT_PRICE, PRICE_V, MECConfig
from edgeft.envs.mec.observation import decode_observation
from edgeft.envs.mec.resources import fast_resource_rule, queue_energy_price
from edgeft.envs.mec.types import MECDecision, MECInstance, instance_from_state

from . import solver as S


class MECPolicy:
    """Base class: observation -> instance -> decision -> action of the env's mode."""

    name = "mec"
    #: rough cost of one decision relative to the cheapest MEC policy (1): the leaderboard
    #: starts the costliest episodes first; results do not depend on it
    decision_cost = 1.0

    def __init__(
        self,
        config: MECConfig,
        action_mode: str | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        self.config = config
        self.action_mode = action_mode or config.action_mode
        if self.action_mode not in config.ACTION_MODES:
            raise ValueError(
                f"action_mode must be one of {list(config.ACTION_MODES)}, got {self.action_mode!r}"
            )
        self.weights = config.weights
        self.upload_delay = config.upload_delay
        self.rng = np.random.default_rng(seed)
        self.options = options
        self.solve_times: list[float] = []
        self.last_solve_time = 0.0
        self.last_decision: MECDecision | None = None
        self.last_cost = float("nan")

    # -- to implement
    def decide(self, inst: MECInstance) -> MECDecision:
        """The decision for one round (SI units, integer alpha)."""
        raise NotImplementedError

    def energy_price(self, inst: MECInstance) -> np.ndarray | None:
        """The per-user device-energy price lambda_n the round's problem adds
        (``reward.per_user_cost``): None for the myopic policies (the round's cost alone)."""
        return None

    # -- SB3 protocol
    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """SB3's ``predict``: one observation (1-D) or a batch (2-D) -> action(s), state."""
        obs = np.asarray(observation, dtype=np.float64)
        if obs.ndim == 2:
            acts = [self.predict(o)[0] for o in obs]
            return np.stack(acts), state
        inst = instance_from_state(self.config, decode_observation(obs.ravel(), self.config))
        t0 = time.perf_counter()
        dec = self.decide(inst)
        self.last_solve_time = time.perf_counter() - t0
        self.solve_times.append(self.last_solve_time)
        self.last_decision = dec
        self.last_cost = S.cost_of(inst, dec, self.weights, self.upload_delay)
        return self.encode(inst, dec), state

    def encode(self, inst: MECInstance, dec: MECDecision) -> np.ndarray:
        """The action of ``self.action_mode`` expressing ``dec`` (``decision_to_action``)."""
        return decision_to_action(dec, self.config, self.action_mode, inst)

    # -- shared steps
    def _finish(self, inst: MECInstance, res: S.AOResult) -> MECDecision:
        return S.round_alpha(
            inst, self.weights, res, upload_delay=self.upload_delay, price=self.energy_price(inst)
        ).decision

    def _fp_ao(self, inst: MECInstance, server: np.ndarray, **kw: Any) -> S.AOResult:
        return S.fp_ao(
            inst,
            self.weights,
            server,
            upload_delay=self.upload_delay,
            tol=self.options.get("tol", 1e-9),
            max_iter=int(self.options.get("max_iter", 100)),
            price=self.energy_price(inst),
            **kw,
        )

    def _random_resources(
        self, inst: MECInstance, server: np.ndarray, alpha: np.ndarray
    ) -> MECDecision:
        n, m = inst.num_users, inst.num_servers
        rng = self.rng
        share_b = rng.uniform(0.05, 1.0, size=n)
        share_f = rng.uniform(0.05, 1.0, size=n)
        tot_b = np.bincount(server, weights=share_b, minlength=m)
        tot_f = np.bincount(server, weights=share_f, minlength=m)
        return MECDecision(
            alpha=alpha,
            server=server,
            power=rng.uniform(0.1, 1.0, size=n) * inst.p_max,
            bandwidth=share_b / tot_b[server] * inst.b_max[server],
            freq_user=rng.uniform(0.1, 1.0, size=n) * inst.f_user_max,
            freq_edge=share_f / tot_f[server] * inst.f_edge_max[server],
        )


class GreedyPolicy(MECPolicy):
    """MEC 5.3 baseline: highest-available-rate association; alpha and resources by FP-AO."""

    name = "greedy"
    decision_cost = 4.0

    def association(self, inst: MECInstance) -> np.ndarray:
        """The association this benchmark uses."""
        return S.greedy_association(inst)

    def decide(self, inst: MECInstance) -> MECDecision:
        return self._finish(inst, self._fp_ao(inst, self.association(inst)))


class RandomPolicy(GreedyPolicy):
    """MEC 5.3 benchmark: random association; alpha and resources by FP-AO."""

    name = "random"
    decision_cost = 4.0

    def association(self, inst: MECInstance) -> np.ndarray:
        return S.random_association(inst, self.rng)


class FPCCCPPolicy(MECPolicy):
    """The paper's method: FP-AO for (alpha, p, b, f), CCCP for the association, alternated.

    Start from the greedy association, run FP-AO; then up to ``outer_iters`` times: CCCP
    (``solver.cccp_congestion``; ``starts`` starts: the current association, the fractional 1/M
    point and random fractional points near the current one) on the association cost with
    per-server congestion, pick the candidate with the lowest cost under the exact resource
    rule (``resources.fast_resource_rule``), re-optimise it with FP-AO and keep it only if the
    weighted cost decreases. Finally round alpha and re-solve.

    docs/corrections.md: written with the budgets as equalities the paper's LP never moves; with
    per-pair
    costs at fixed shares and the budgets as capacities (``solver.cccp_association``) it stays
    at the greedy start on our instances too (every server is already at capacity), so the
    association step uses the square-root-rule congestion model, a convex QP per CCCP
    iteration, which does move and finds lower costs.
    Options: ``outer_iters`` (3), ``starts`` (4), ``tol`` (1e-9), ``max_iter`` (100).
    """

    name = "fp-cccp"
    decision_cost = 8.0

    def decide(self, inst: MECInstance) -> MECDecision:
        n, m = inst.num_users, inst.num_servers
        price = self.energy_price(inst)
        server = S.greedy_association(inst)
        best = self._fp_ao(inst, server)
        self.cccp_iterations: list[int] = []
        for _ in range(int(self.options.get("outer_iters", 3))):
            dec = best.decision
            u, v, lin = S.congestion_coefficients(inst, self.weights, dec, self.upload_delay, price)
            current = dec.association(m)
            starts = [current, np.full((n, m), 1.0 / m)]
            for _ in range(int(self.options.get("starts", 4)) - 2):
                starts.append(0.5 * current + 0.5 * self.rng.dirichlet(np.ones(m), size=n))
            cands, iters = S.cccp_congestion(u, v, lin, starts=starts)
            self.cccp_iterations.extend(iters)
            seen = {tuple(dec.server)}
            scored = []
            for c in cands:
                if tuple(c) in seen:
                    continue
                seen.add(tuple(c))
                quick = fast_resource_rule(
                    inst, dec.alpha, c, self.weights, self.upload_delay, price
                )
                scored.append(
                    (S.cost_of(inst, quick, self.weights, self.upload_delay, price), quick)
                )
            if not scored:
                break
            _, quick = min(scored, key=lambda x: x[0])
            # warm start: the candidate's optimal resources at the current alpha (feasible)
            res = self._fp_ao(inst, quick.server, init=quick)
            if res.cost < best.cost * (1 - 1e-9):
                best = res
            else:
                break
        return self._finish(inst, best)


class AOPolicy(MECPolicy):
    """MEC 5.2 benchmark: classical block AO (offloading vs resources), greedy association."""

    name = "ao"
    decision_cost = 3.0

    def decide(self, inst: MECInstance) -> MECDecision:
        server = S.greedy_association(inst)
        res = S.classical_ao(inst, self.weights, server, upload_delay=self.upload_delay)
        return self._finish(inst, res)


class AlphaOnlyPolicy(MECPolicy):
    """MEC 5.2 benchmark: random resources, alpha optimised exactly for them."""

    name = "alpha-only"

    def decide(self, inst: MECInstance) -> MECDecision:
        server = S.greedy_association(inst)
        dec = self._random_resources(inst, server, np.ones(inst.num_users))
        return _with_alpha(dec, best_integer_alpha(inst, self.weights, dec, self.upload_delay))


class ResourceOnlyPolicy(MECPolicy):
    """MEC 5.2 benchmark: random alpha, resources optimised by FP-AO with alpha fixed."""

    name = "resource-only"
    decision_cost = 3.0

    def decide(self, inst: MECInstance) -> MECDecision:
        server = S.greedy_association(inst)
        alpha = self.rng.integers(1, inst.num_layers, size=inst.num_users).astype(np.float64)
        return self._fp_ao(inst, server, fix_alpha=alpha).decision


class GreedyFastPolicy(MECPolicy):
    """``greedy``'s association with the exact resource rule instead of a convex solver.

    The association is ``greedy``'s (MEC 5.3, highest available rate); alpha is the integer
    minimiser of the round's cost under the exact resource rule
    (``resources.fast_resource_rule``), by block coordinate descent: resources for the current
    alpha, then each user's exact integer alpha for those resources (:func:`best_integer_alpha`),
    until alpha repeats (option ``max_iter``, default 8 sweeps), starting from alpha = 1. Costs
    what ``greedy`` costs to ~1e-6 relative in ~5 ms instead of ~0.1 s per decision at N = 20
    (the same rule as the agents' cloning teacher ``mec-greedy-fast``).
    """

    name = "greedy-fast"
    decision_cost = 1.0

    def association(self, inst: MECInstance) -> np.ndarray:
        """The association this rule uses (``greedy``'s)."""
        return S.greedy_association(inst)

    def decide(self, inst: MECInstance) -> MECDecision:
        w, ud = self.weights, self.upload_delay
        price = self.energy_price(inst)
        server = self.association(inst)
        alpha = np.ones(inst.num_users)
        dec = fast_resource_rule(inst, alpha, server, w, ud, price)
        for _ in range(int(self.options.get("max_iter", 8))):
            new = best_integer_alpha(inst, w, dec, ud, price)
            if np.array_equal(new, alpha):
                break
            alpha = new
            dec = fast_resource_rule(inst, alpha, server, w, ud, price)
        return dec


#: default V of the drift-plus-penalty policies (see :class:`DriftPlusPenalty`), the
#: ``"discrete-priced"`` mode's V
DPP_V = PRICE_V


class DriftPlusPenalty:
    """Drift-plus-penalty on the energy-budget queues (mixed into a myopic policy).

    The env's virtual queue Q_n(t+1) = max(0, Q_n(t) + e_n(t) - e_bar_n) measures how far user n
    is behind its time-average device-energy budget e_bar_n; in budget units q_n = Q_n / e_bar_n
    (the observation's ``queue_in_budgets``). Each round the policy minimises, instead of the
    round's weighted cost C_t alone,

        V C_t + sum_n q_n(t) e_n(t) / e_bar_n,

    i.e. the round's problem with user n's device energy weighted by omega_e + q_n / (V e_bar_n)
    (a price lambda_n = Q_n / (V e_bar_n^2) per joule, ``reward.per_user_cost``), solved by the
    underlying policy's own method (the exact resource rule, or FP-AO and CCCP). The queue term
    is the drift bound's only decision-dependent part (Neely, *Stochastic Network Optimization*,
    2010, ch. 3, with the constraint in budget units): a user behind its budget pays more for
    device energy (offloads more layers, lowers its GPU clock and power) until it has caught up.
    The time-average device energy then exceeds the budget by at most q_n(T) / T, and q_n
    settles near V lambda*_n (lambda*_n the budget's shadow price in cost per budget unit):
    a small V keeps the queues, and so the end-of-episode overshoot, short; a large V comes
    closer to the least cost. The price is capped at the suites' overshoot price
    (``edgeft.envs.mec.family.OVERSHOOT_PRICE`` P per budget, shared by the N users: lambda_n <=
    P / (N e_bar_n)): beyond it the headline prefers the overshoot, and a user whose budget no
    decision can meet (a long deep fade) would otherwise drive its price, and the cost, up
    without end. Options ``v`` (default :data:`DPP_V`) and ``price_cap`` (default P).

    V = 10, measured with ``greedy-dpp`` on the ``mec-default`` v3 scenario (5 test seeds, 20
    rounds): with budgets 1x the reference, mean cost 2.353 / 2.302 / 2.270 / 2.250 for V = 0.3 /
    1 / 3 / 10 against ``greedy-fast``'s 2.238, every user within budget in all; with v3's 0.7x,
    2.347 (V = 3) and 2.290 (V = 10), again every budget met, where ``greedy-fast`` overshoots by
    4.7% on average. A small V reacts to every round's noise at a price; V = 10 still meets every
    budget on 100-round episodes (tests/mec/test_hindsight.py).
    """

    options: dict[str, Any]

    def energy_price(self, inst: MECInstance) -> np.ndarray | None:
        """lambda_n = min(q_n / V, P / N) / e_bar_n (cost per joule of device energy;
        ``resources.queue_energy_price``)."""
        return queue_energy_price(
            inst.energy_queue,
            inst.energy_budget,
            float(self.options.get("v", DPP_V)),
            float(self.options.get("price_cap", OVERSHOOT_PRICE)),
        )


class GreedyDPPPolicy(DriftPlusPenalty, GreedyFastPolicy):
    """``greedy-fast`` on the drift-plus-penalty problem (:class:`DriftPlusPenalty`)."""

    name = "greedy-dpp"
    decision_cost = 1.0


class FPCCCPDPPPolicy(DriftPlusPenalty, FPCCCPPolicy):
    """``fp-cccp`` on the drift-plus-penalty problem (:class:`DriftPlusPenalty`)."""

    name = "fp-cccp-dpp"
    decision_cost = 8.0


def best_integer_alpha(
    inst: MECInstance,
    weights: tuple[float, float, float],
    dec: MECDecision,
    upload_delay: bool,
    price: np.ndarray | None = None,
) -> np.ndarray:
    """Each user's integer alpha minimising the round's cost for ``dec``'s other decisions.

    Per user the cost is convex in alpha, so the better integer neighbour of the continuous
    minimiser (``solver.optimal_alpha``) is optimal; ties go to the lower one. ``price``: the
    cost plus the priced device energy (``reward.per_user_cost``).
    """
    a = S.optimal_alpha(inst, weights, dec, price)
    lo, hi = (np.clip(v, 1, inst.num_layers - 1) for v in (np.floor(a), np.ceil(a)))
    costs = [
        _per_user_cost(inst, _with_alpha(dec, v), weights, upload_delay, price) for v in (lo, hi)
    ]
    return np.where(costs[0] <= costs[1], lo, hi)


def _with_alpha(dec: MECDecision, alpha: np.ndarray) -> MECDecision:
    return MECDecision(
        alpha=alpha,
        server=dec.server,
        power=dec.power,
        bandwidth=dec.bandwidth,
        freq_user=dec.freq_user,
        freq_edge=dec.freq_edge,
    )


def _per_user_cost(
    inst: MECInstance,
    dec: MECDecision,
    weights: tuple[float, float, float],
    upload_delay: bool,
    price: np.ndarray | None = None,
) -> np.ndarray:
    return R.per_user_cost(
        R.per_user_terms(inst, dec, include_upload_delay=upload_delay), weights, price
    )


POLICIES: dict[str, type[MECPolicy]] = {
    "fp-cccp": FPCCCPPolicy,
    "ao": AOPolicy,
    "alpha-only": AlphaOnlyPolicy,
    "resource-only": ResourceOnlyPolicy,
    "greedy": GreedyPolicy,
    "random": RandomPolicy,
    "greedy-fast": GreedyFastPolicy,
    "greedy-dpp": GreedyDPPPolicy,
    "fp-cccp-dpp": FPCCCPDPPPolicy,
}
