"""The hindsight bound on the final loss (``edgeft.baselines.fedlora.loss_bound``) against
exhaustive search, its pieces against brute force, and the budget guard it assumes."""

from __future__ import annotations

import dataclasses
import itertools

import gymnasium as gym
import numpy as np
import pytest
from edgeft.baselines.fedlora import loss_bound as LB
from edgeft.envs.fedlora.formulas import min_common_delay
from edgeft.envs.fedlora.surrogate import SurrogateParams, simulate_masks

import edgeft

ENV_ID = "edgeft/FedLoRAScheduling-v0"
#: surrogate v3 (and v4) constants with effects strong enough to matter in a few rounds
FAST = {
    "iid": SurrogateParams(
        initial_loss=1.1, loss_floor=0.6, rate=0.2, gap_ratio=0.9, stationary=0.5, head_rate=0.3
    ),
    "dirichlet": SurrogateParams(
        initial_loss=1.1,
        loss_floor=0.57,
        rate=0.3,
        gap_ratio=0.9,
        onset=0.3,
        stationary=0.24,
        head_fraction=0.7,
        head_rate=0.8,
    ),
}
#: v4: forgetting below s*(N), the settle level's power and cap
FAST["dirichlet-v4"] = dataclasses.replace(
    FAST["dirichlet"], drift_rate=0.5, settle_power=0.75, settle_cap=True
)


def _subsets(k: int) -> np.ndarray:
    return np.array(list(itertools.product([False, True], repeat=k)), dtype=bool)  # (2^K, K)


def test_head_floor_is_the_least_mean_head_gap_for_a_total():
    p = FAST["iid"]
    k = 3
    for total in range(0, 3 * k + 1):
        best = min(
            np.mean([(1 - p.head_rate) ** c for c in counts])
            for counts in itertools.product(range(total + 1), repeat=k)
            if sum(counts) == total
        )
        assert LB.head_floor(p, k, np.array([total]))[0] == pytest.approx(best, rel=1e-12)


@pytest.mark.parametrize("data", sorted(FAST))
def test_least_shared_gap_is_the_minimum_over_every_count_sequence(data):
    p, k, rounds = FAST[data], 3, 4
    sigma = LB.least_shared_gap(p, k, rounds)
    best: dict[tuple[int, int], float] = {}
    for seq in itertools.product(range(k + 1), repeat=rounds):
        s = np.array([sigma[0][0]])
        for t, n in enumerate(seq, start=1):
            s = LB.shared_step(p, k, s, n)
            key = (t, sum(seq[:t]))
            best[key] = min(best.get(key, np.inf), float(s[0]))
    for (t, c), value in best.items():
        assert sigma[t][c] == pytest.approx(value, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("data", sorted(FAST))
@pytest.mark.parametrize("seed", range(3))
def test_bound_is_below_every_feasible_schedule_found_exhaustively(data, seed):
    """K = 3, T = 5: every one of the 8^5 subset sequences, its delay with the min-max split
    and its exact final loss; the bound lies below the best within the budget, and the plan's
    schedule is within the budget and no better than the best."""
    p, k, rounds = FAST[data], 3, 5
    rng = np.random.default_rng(seed)
    gain = rng.exponential(1.0, (rounds, k)) * 1e-6
    bits = np.full((rounds, k), 1e6)
    subsets = _subsets(k)
    delay = np.zeros((rounds, subsets.shape[0]))
    for t in range(rounds):
        d, _ = min_common_delay(
            np.broadcast_to(bits[t], subsets.shape),
            np.broadcast_to(gain[t], subsets.shape),
            1e-11,
            1e7,
            subsets,
        )
        delay[t] = d
    # a budget between the cheapest and the full schedule, so it binds
    budget = 0.5 * (delay.max(axis=1).mean() + delay[:, 1:].min(axis=1).mean())
    seqs = np.array(list(itertools.product(range(subsets.shape[0]), repeat=rounds)))
    total = delay[np.arange(rounds)[None, :], seqs].sum(axis=1) / budget
    ok = total <= rounds
    assert 0 < ok.sum() < seqs.shape[0]
    masks = subsets[seqs[ok]]  # (n, T, K)
    loss, _ = simulate_masks(masks, p)
    t_idx = np.arange(1, rounds + 1)
    window = t_idx >= 0.8 * rounds
    finals = loss[:, 1:][:, window].mean(axis=1)
    best = float(finals.min())

    class Cfg:
        noise_psd, bandwidth_hz, budget_s = 1e-11, 1e7, budget

    cost = LB.prefix_delays(gain, bits, 1e-11, 1e7) / budget
    result = LB.loss_bound(p, k, cost)
    assert result.bound <= best + 1e-12
    assert result.bound > best - 0.5 * (loss[:, 0].mean() - best)  # and not vacuous
    for cand in LB.candidate_schedules(result.counts, gain, bits, Cfg):
        if LB.schedule_cost(cand, gain, bits, Cfg) <= rounds:
            assert LB.masks_final_loss(cand, p) >= best - 1e-12


@pytest.mark.parametrize("surrogate", ["default", "iid-v4"])
def test_the_leaderboard_plan_is_feasible_and_above_its_bound(surrogate):
    config = {"episode_rounds": 30, "budget_guard": True, "surrogate": surrogate}
    plan = LB.hindsight_plan(ENV_ID, config, 5)
    env = gym.make(ENV_ID, **config, action_mode="subset")
    from edgeft.episodes import play_episode

    m = play_episode(env, plan.policy, 5)["metrics"]
    assert m["guarded_rounds"] == 0 and m["avg_delay_ratio"] <= 1.0 + 1e-9
    assert plan.bound <= m["final_loss"] == pytest.approx(plan.extra["best_found"], rel=1e-12)
    for name in ("gs", "lyapunov", "aaba"):
        env = gym.make(ENV_ID, **config)
        other = play_episode(env, edgeft.make_policy(name, env), 5)["metrics"]
        assert plan.bound <= other["final_loss"], name


# ----------------------------------------------------------------------- the budget guard
def _episode(config, policy="all-in", seed=3):
    env = gym.make(ENV_ID, **config)
    pol = edgeft.make_policy(policy, env)
    obs, _ = env.reset(seed=seed)
    infos = []
    for _ in range(config["episode_rounds"]):
        action, _ = pol.predict(obs)
        obs, _, _, _, info = env.step(action)
        infos.append(info)
    return infos


def test_the_guard_holds_every_episode_to_its_budget():
    infos = _episode({"episode_rounds": 40, "budget_guard": True})
    ratios = np.array([i["delay_ratio"] for i in infos])
    guarded = np.array([i["budget_guarded"] for i in infos])
    assert ratios.sum() <= 40 and guarded.any()
    assert all(i["num_scheduled"] == 0 and i["delay"] == 0 for i in np.array(infos)[guarded])
    unguarded = _episode({"episode_rounds": 40, "budget_guard": False})
    assert sum(i["delay_ratio"] for i in unguarded) > 40
    assert not any(i["budget_guarded"] for i in unguarded)


def test_the_guard_leaves_a_policy_within_the_budget_alone():
    on = _episode({"episode_rounds": 40, "budget_guard": True}, "gs")
    off = _episode({"episode_rounds": 40, "budget_guard": False}, "gs")
    for a, b in zip(on, off):
        assert a["loss"] == b["loss"] and a["delay"] == b["delay"]
        assert not a["budget_guarded"]


def test_the_vector_env_guards_every_copy():
    n, rounds = 3, 30
    venv = gym.make_vec(
        ENV_ID,
        num_envs=n,
        vectorization_mode="vector_entry_point",
        episode_rounds=rounds,
        budget_guard=True,
    )
    venv.reset(seed=11)
    rng = np.random.default_rng(0)
    total, guarded = np.zeros(n), np.zeros(n)
    for _ in range(rounds):
        action = rng.uniform(0.0, 1.0, (n, 20)) * (rng.random((n, 20)) < 0.6)
        _, _, _, _, info = venv.step(action)
        g = np.asarray(info["budget_guarded"])
        assert np.all(np.asarray(info["num_scheduled"])[g] == 0)
        total += info["delay_ratio"]
        guarded += g
    assert np.all(total <= rounds) and np.all(guarded > 0)
