"""MEC hindsight bound, drift-plus-penalty policies and the constraint-cost convention."""

import itertools

import gymnasium as gym
import numpy as np
import pytest
from edgeft.baselines.mec import hindsight as H
from edgeft.baselines.mec.policies import DPP_V, GreedyFastPolicy
from edgeft.envs.common import config_in_force
from edgeft.envs.mec import reward as R
from edgeft.envs.mec.resources import fast_resource_rule

import edgeft
from edgeft.episodes import play_episode
from edgeft.scoring import MEC_OVERSHOOT_PRICE, headline_value, hindsight_row

from .helpers import make_instance

ENV_ID = "edgeft/MECOffloading-v0"
SMALL = {
    "num_users": 6,
    "num_servers": 2,
    "area_m": 300.0,
    "episode_rounds": 6,
    "energy_budget_scale": 2.0,
}


def _brute_force_round(inst, config, price):
    """min over every (alpha, server) assignment of the priced cost with the exact rule's
    resources for it (priced too): the round's priced problem exactly."""
    n, m, y = inst.num_users, inst.num_servers, inst.num_layers
    best = np.inf
    for alpha in itertools.product(range(1, y), repeat=n):
        for server in itertools.product(range(m), repeat=n):
            a = np.array(alpha, dtype=np.float64)
            s = np.array(server, dtype=np.int64)
            dec = fast_resource_rule(inst, a, s, config.weights, config.upload_delay, price)
            best = min(best, R.weighted_cost(inst, dec, config.weights, price=price))
    return best


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n,m", [(1, 1), (1, 2), (2, 2), (3, 2)])
def test_relaxed_round_is_below_brute_force_and_exact_for_one_user(seed, n, m):
    config, inst = make_instance(seed, num_users=n, num_servers=m, num_layers=4, area_m=300.0)
    rng = np.random.default_rng(seed)
    price = rng.uniform(0, 3, size=n) / (n * inst.energy_budget)
    exact = _brute_force_round(inst, config, price)
    zero = np.zeros(m)
    relaxed0, _ = H.relaxed_round(inst, config.weights, config.upload_delay, price, zero, zero)
    assert relaxed0 <= exact * (1 + 1e-12)
    if n == 1:  # a user alone: nothing couples, the relaxation is the problem
        assert relaxed0 == pytest.approx(exact, rel=1e-9)
    # capacity prices from a decision: still a lower bound, and tighter on these instances
    pol = H._FixedPrice(config)
    pol.price = price
    mu, nu = H.capacity_prices(inst, config.weights, config.upload_delay, price, pol.decide(inst))
    relaxed, _ = H.relaxed_round(inst, config.weights, config.upload_delay, price, mu, nu)
    assert relaxed <= exact * (1 + 1e-12)
    for scale in (0.3, 3.0):  # any prices >= 0 give a lower bound
        low, _ = H.relaxed_round(
            inst, config.weights, config.upload_delay, price, scale * mu, rng.uniform(0, 2) * nu
        )
        assert low <= exact * (1 + 1e-12)


def test_exogenous_rounds_do_not_depend_on_actions():
    env = gym.make(ENV_ID, **SMALL)
    base = env.unwrapped
    cfg = config_in_force(env)
    seen = []
    for policy in ("greedy-fast", "random"):
        pol = edgeft.make_policy(policy, env, seed=3)
        obs, _ = env.reset(seed=11)
        states = []
        for _ in range(cfg.episode_rounds):
            states.append(base.state)
            obs, *_ = env.step(pol.predict(obs)[0])
        seen.append(states)
    queues_differ = False
    for a, b in zip(*seen):
        for field in (
            "user_pos",
            "user_vel",
            "fading_re",
            "fading_im",
            "tokens",
            "p_max",
            "energy_budget",
            "b_max",
            "f_edge_max",
        ):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        queues_differ |= not np.array_equal(a.energy_queue, b.energy_queue)
    assert queues_differ  # the actions did differ


def test_episode_bound_is_below_the_brute_force_episode_optimum():
    """N = 2, M = 2, Upsilon = 4, T = 3: every (alpha, server) schedule of the episode with the
    exact resource rule (priced at several levels) against the certified bound."""
    cfg_kw = {
        "num_users": 2,
        "num_servers": 2,
        "num_layers": 4,
        "area_m": 300.0,
        "episode_rounds": 3,
        "energy_budget_scale": 1.0,
    }
    env = gym.make(ENV_ID, **cfg_kw)
    cfg = config_in_force(env)
    rounds = H.episode_instances(env, 5)
    res = H.episode_bound(cfg, rounds, MEC_OVERSHOOT_PRICE, outer=3)
    budget = rounds[0].energy_budget
    costs, ratios = [], []
    for inst in rounds:
        c_t, r_t = [], []
        for alpha in itertools.product(range(1, 4), repeat=2):
            for server in itertools.product(range(2), repeat=2):
                for level in (0.0, 0.3, 1.0, 3.0, 10.0):
                    price = np.full(2, level) / (2 * budget)
                    dec = fast_resource_rule(
                        inst,
                        np.array(alpha, float),
                        np.array(server),
                        cfg.weights,
                        cfg.upload_delay,
                        price,
                    )
                    terms = R.per_user_terms(inst, dec)
                    c_t.append(R.cost_of_terms(terms, cfg.weights))
                    r_t.append(terms["device_energy"] / budget)
        costs.append(np.array(c_t))
        ratios.append(np.array(r_t))
    k = len(costs[0])
    total = (costs[0][:, None, None] + costs[1][None, :, None] + costs[2][None, None, :]) / 3
    ratio = (
        ratios[0][:, None, None] + ratios[1][None, :, None] + ratios[2][None, None, :]
    ) / 3  # (k, k, k, N)
    head = total + MEC_OVERSHOOT_PRICE * np.maximum(ratio - 1, 0).mean(-1)
    best = float(head.min())
    assert head.shape == (k, k, k)
    assert res.bound <= best
    assert res.bound >= 0.9 * best  # and not loose on this instance


def test_bound_is_below_every_policy_and_the_row_is_consistent():
    rows = {}
    for seed in (1, 2):
        row = hindsight_row("mec", ENV_ID, SMALL, seed)
        assert row["gap"] >= 0
        assert row["gap"] == pytest.approx(headline_value("mec", row["metrics"]) - row["headline"])
        for name in (
            "greedy-fast",
            "greedy-dpp",
            "fp-cccp-dpp",
            "alpha-only",
            "random",
            "resource-only",
        ):
            env = gym.make(ENV_ID, **SMALL)
            m = play_episode(env, edgeft.make_policy(name, env, seed=seed), seed)["metrics"]
            assert headline_value("mec", m) >= row["headline"], (name, seed)
        rows[seed] = row
    assert rows[1]["rounds"] == SMALL["episode_rounds"]


def test_dpp_meets_each_users_budget_on_long_episodes():
    """Budgets a policy can meet (mec-default v3's 150 m square): the myopic rule overshoots
    some users' budgets, drift-plus-penalty (default options) meets every one on 100-round
    episodes."""
    kw = {
        "num_users": 8,
        "num_servers": 4,
        "area_m": 150.0,
        "episode_rounds": 100,
        "energy_budget_scale": 1.0,
    }
    over = {}
    for name in ("greedy-fast", "greedy-dpp"):
        worst = []
        for seed in (1, 2, 3):
            env = gym.make(ENV_ID, **kw)
            pol = edgeft.make_policy(name, env, seed=seed)
            obs, _ = env.reset(seed=seed)
            spent = 0.0
            budget = env.unwrapped.state.energy_budget
            for _ in range(kw["episode_rounds"]):
                obs, _, _, _, info = env.step(pol.predict(obs)[0])
                spent = spent + info["device_energy"]
            worst.append(float(np.max(spent / kw["episode_rounds"] / budget)))
        over[name] = max(worst)
    assert over["greedy-fast"] > 1.01
    assert over["greedy-dpp"] <= 1.0 + 1e-9


def test_dpp_starts_as_the_myopic_rule_and_prices_the_queue():
    config, inst = make_instance(0, num_users=5, num_servers=2, area_m=300.0)
    dpp = edgeft.make_policy("greedy-dpp", config=config)
    fast = GreedyFastPolicy(config)
    np.testing.assert_array_equal(dpp.decide(inst).power, fast.decide(inst).power)
    queued = inst.replace(energy_queue=inst.energy_budget * np.array([0.0, 0.5, 1.0, 2.0, 50]))
    price = dpp.energy_price(queued)
    want = np.minimum(np.array([0.0, 0.5, 1.0, 2.0, 50]) / DPP_V, MEC_OVERSHOOT_PRICE / 5)
    np.testing.assert_allclose(price * inst.energy_budget, want, rtol=1e-12)


def test_info_cost_is_the_constraint_and_objective_the_weighted_cost():
    env = gym.make(ENV_ID, **SMALL)
    pol = edgeft.make_policy("greedy-fast", env)
    obs, _ = env.reset(seed=0)
    budget = env.unwrapped.state.energy_budget
    _, reward, _, _, info = env.step(pol.predict(obs)[0])
    ratio = info["device_energy"] / budget
    np.testing.assert_array_equal(info["costs"], ratio)
    assert info["cost"] == pytest.approx(float(np.mean(ratio)), rel=1e-15)
    assert info["cost_bounded"] == pytest.approx(float(np.mean(np.minimum(ratio, 4.0))))
    assert info["objective"] == pytest.approx(pol.last_cost, rel=1e-12)


def test_headline_prices_the_overshoot():
    m = {"cost": 3.0, "energy_violation": 0.25}
    assert headline_value("mec", m) == pytest.approx(3.0 + MEC_OVERSHOOT_PRICE * 0.25)


def test_old_suite_keeps_its_definition():
    from edgeft.suites import get_suite

    old = get_suite("mec-default-v2")
    assert old.version == 2
    assert [s.config for s in old.scenarios] == [
        {"num_users": 20, "num_servers": 4, "episode_rounds": 5}
    ]
    v3 = get_suite("mec-default-v3")
    assert v3.version == 3 and v3.num_seeds == 5 and v3.headline == "priced-cost-random"
    new = get_suite("mec-default")
    assert new.version == 4 and new.cost_limit == 1.0 and new.headline == "priced-cost"
    assert [s.config for s in new.scenarios] == [s.config for s in v3.scenarios]
    assert new.episode_cost_limit() == 20.0


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_upload_minima_by_the_curves_equal_bisection(preset):
    """The relaxed rounds' upload minima through ``resources.UploadCurves`` (the closed-form
    reply to a band price) equal the bisection on V'(b) + mu (the earlier implementation,
    kept as ``_upload_bisect``) over prices from 0 to far above the capacity prices."""
    from edgeft.envs.mec.config import MIN_FRACTION

    config, inst = make_instance(3, preset=preset, num_users=12, num_servers=4)
    st = H.stack_rounds([inst, inst.replace(gain=inst.gain * 1e-3)])
    rng = np.random.default_rng(3)
    wt = config.weights[1] if config.upload_delay else 0.0
    shape = st.gain.shape
    for scale in (0.0, 1e-12, 1e-9, 1e-7, 1e-5):
        we_dev = config.weights[0] + rng.uniform(0, 3, size=12) / (12 * inst.energy_budget)
        mu = scale * rng.uniform(0.1, 2.0, size=(2, 4))
        value, energy = H._upload_costs(st, we_dev, wt, mu)
        args = (
            st.gain / st.noise_psd,
            np.broadcast_to(st.bits[..., :, None], shape),
            np.broadcast_to(we_dev[:, None], shape),
            wt,
            np.broadcast_to((MIN_FRACTION * st.p_max)[..., :, None], shape),
            np.broadcast_to(st.p_max[..., :, None], shape),
            np.broadcast_to(st.b_max[..., None, :], shape),
            np.broadcast_to(mu[..., None, :], shape),
        )
        b, p = H._upload_bisect(*args)
        rate = b * np.log1p(args[0] * p / b) / np.log(2)
        np.testing.assert_allclose(
            value, args[1] * (args[2] * p + wt) / rate + args[7] * b, rtol=1e-12
        )
        np.testing.assert_allclose(energy, args[1] * p / rate, rtol=1e-9)
