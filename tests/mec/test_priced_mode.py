"""The ``"discrete-priced"`` action mode: the discrete mode's resource rule with each user's
device energy priced by its energy-budget queue (``resources.queue_energy_price``).

References: the price against its formula user by user; the mode's decisions against the rule
called with that price and against the unpriced rule (optimality under the price); whole
episodes of ``greedy-dpp`` played in the full mode (its own decisions) and in this mode (its
association and alpha, the env's resources), which agree.
"""

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs.mec import resources as A
from edgeft.envs.mec import reward as R
from edgeft.envs.mec.actions import action_to_decision, discrete_action
from edgeft.envs.mec.config import OVERSHOOT_PRICE, PRICE_V

import edgeft
from edgeft.episodes import play_episode
from edgeft.suites import MEC_DEFAULT_V3

from .helpers import make_instance


def test_price_is_the_drift_plus_penalty_formula_user_by_user():
    rng = np.random.default_rng(0)
    queue = rng.exponential(2.0, size=9) * np.array([0, 1, 1, 1, 1, 1, 1, 1, 1000.0])
    budget = rng.uniform(0.5, 2.0, size=9)
    price = A.queue_energy_price(queue, budget)
    for n in range(9):
        q = queue[n] / budget[n]
        expected = min(q / PRICE_V, OVERSHOOT_PRICE / 9) / budget[n]
        assert price[n] == pytest.approx(expected, rel=1e-15)
    assert price[0] == 0.0  # no backlog, no price
    assert price[8] == pytest.approx(OVERSHOOT_PRICE / 9 / budget[8])  # capped
    with pytest.raises(ValueError, match="v must be > 0"):
        A.queue_energy_price(queue, budget, v=0.0)


def _round(seed, queue_scale):
    config, inst = make_instance(seed, num_users=10, num_servers=3)
    rng = np.random.default_rng(seed)
    inst = inst.replace(energy_queue=inst.energy_budget * rng.uniform(0, queue_scale, 10))
    alpha = rng.integers(1, config.num_layers, size=10).astype(np.float64)
    server = rng.integers(0, 3, size=10)
    return config, inst, alpha, server


@pytest.mark.parametrize("seed", range(3))
def test_priced_decision_minimises_the_priced_cost(seed):
    """The mode's resources are the rule at the queue price; under that price they cost no
    more than the unpriced rule's (which minimises the cost without it), and they spend less
    device energy."""
    config, inst, alpha, server = _round(seed, 30.0)
    priced_cfg = replace(config, action_mode="discrete-priced")
    plain_cfg = replace(config, action_mode="discrete")
    action = discrete_action(alpha, server)
    dec, report = action_to_decision(priced_cfg, action, inst)
    plain, _ = action_to_decision(plain_cfg, action, inst)
    price = A.queue_energy_price(inst.energy_queue, inst.energy_budget)
    direct = A.fast_resource_rule(inst, alpha, server, config.weights, True, price)
    for name in ("power", "bandwidth", "freq_user", "freq_edge"):
        np.testing.assert_array_equal(getattr(dec, name), getattr(direct, name))
    assert max(report.values()) == 0.0

    def priced_cost(d):
        terms = R.per_user_terms(inst, d, include_upload_delay=True)
        return float(np.sum(R.per_user_cost(terms, config.weights, price)))

    assert priced_cost(dec) <= priced_cost(plain) * (1 + 1e-12)
    assert priced_cost(dec) < priced_cost(plain) * (1 - 1e-6)  # the price changes the choice
    device = lambda d: R.per_user_terms(inst, d, include_upload_delay=True)  # noqa: E731
    assert np.sum(device(dec)["device_energy"]) < np.sum(device(plain)["device_energy"])


def test_without_backlog_the_priced_mode_is_the_discrete_mode():
    config, inst, alpha, server = _round(5, 0.0)
    action = discrete_action(alpha, server)
    a, _ = action_to_decision(replace(config, action_mode="discrete"), action, inst)
    b, _ = action_to_decision(replace(config, action_mode="discrete-priced"), action, inst)
    for name in ("power", "bandwidth", "freq_user", "freq_edge"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-12)


@pytest.mark.parametrize("seed", [1000, 1001])
def test_greedy_dpp_plays_the_same_episode_in_the_priced_mode(seed):
    """greedy-dpp's association and alpha with the mode's resources are greedy-dpp's decisions:
    the episode (cost, energy, overshoot, final queue) is the full mode's; in the unpriced
    ``"discrete"`` mode the same choices spend more device energy."""
    metrics = {}
    for mode in ("full", "discrete-priced", "discrete"):
        env = gym.make("edgeft/MECOffloading-v0", **MEC_DEFAULT_V3, action_mode=mode)
        policy = edgeft.make_policy("greedy-dpp", env, seed=0)
        metrics[mode] = play_episode(env, policy, seed)["metrics"]
        env.close()
    for key in ("cost", "energy", "delay", "energy_violation", "final_queue"):
        assert metrics["discrete-priced"][key] == pytest.approx(
            metrics["full"][key], rel=1e-9, abs=1e-12
        )
    assert metrics["discrete"]["final_queue"] > metrics["full"]["final_queue"]
