"""FT reference policies against brute force and brentq references, and the long-run claims."""

import gymnasium as gym
import numpy as np
import pytest
from edgeft.baselines.fedlora.reference import (
    brute_force_best_subset,
    ref_bandwidth_for_delay,
    ref_lyapunov_prefixes,
    ref_min_common_delay,
    ref_objective,
)

import edgeft

ENV_ID = "edgeft/FedLoRAScheduling-v0"


def _objective_of(info, queue, budget, zeta, variant="corrected"):
    n = int(info["num_scheduled"])
    return ref_objective(n, info["delay"] / budget, queue, zeta, variant)


@pytest.mark.parametrize("k,seed,zeta", [(5, 0, 1.0), (7, 1, 0.5), (8, 2, 3.0)])
def test_lyapunov_is_the_per_round_optimum_by_brute_force(k, seed, zeta):
    """Every round, the corrected Lyapunov decision attains the best objective over all subsets."""
    env = gym.make(ENV_ID, num_devices=k, zeta=zeta, bandwidth_hz=10e6 * k / 20)
    policy = edgeft.make_policy("lyapunov", env)
    obs, _ = env.reset(seed=seed)
    cfg = env.unwrapped.config
    for _ in range(8):
        dec = env.unwrapped.decode_observation(obs)
        queue = float(dec.queue)
        best, _ = brute_force_best_subset(
            dec.gain, dec.bits, queue, cfg.budget_s, cfg.noise_psd, cfg.bandwidth_hz, zeta
        )
        action, _ = policy.predict(obs)
        obs, _, _, _, info = env.step(action)
        assert _objective_of(info, queue, cfg.budget_s, zeta) == pytest.approx(
            best, rel=1e-9, abs=1e-9
        )


def test_lyapunov_matches_brentq_reference_with_queue_states():
    rng = np.random.default_rng(4)
    env = gym.make(ENV_ID, num_devices=12)
    cfg = env.unwrapped.config
    policy = edgeft.make_policy("lyapunov", env)
    obs, _ = env.reset(seed=4)
    for queue in (0.0, 0.3, 2.0, 10.0, 50.0):
        o = obs.copy()
        o[3 * 12] = queue
        dec = env.unwrapped.decode_observation(o)
        _, values = ref_lyapunov_prefixes(
            dec.gain, dec.bits, queue, cfg.budget_s, cfg.noise_psd, cfg.bandwidth_hz, cfg.zeta
        )
        shares, _ = policy.predict(o)
        assert (shares > 0).sum() == int(np.argmax(values)) + 1
        obs, *_ = env.step(rng.random(12) / 12)


def test_paper_lyapunov_stops_at_the_first_decrease():
    env = gym.make(ENV_ID, num_devices=10)
    cfg = env.unwrapped.config
    policy = edgeft.make_policy("lyapunov-paper", env)
    obs, _ = env.reset(seed=5)
    for queue in (0.0, 0.05, 0.5, 2.0, 20.0):
        o = obs.copy()
        o[30] = queue
        dec = env.unwrapped.decode_observation(o)
        _, values = ref_lyapunov_prefixes(
            dec.gain,
            dec.bits,
            queue,
            cfg.budget_s,
            cfg.noise_psd,
            cfg.bandwidth_hz,
            cfg.zeta,
            "paper",
        )
        obj, n = 0.0, 0
        for v in values:  # Algorithm 1: accept while J does not decrease, starting from obj = 0
            if v >= obj:
                obj, n = v, n + 1
            else:
                break
        shares, _ = policy.predict(o)
        assert (shares > 0).sum() == n
        obs, *_ = env.step(np.full(10, 0.1))


def test_gs_is_the_largest_prefix_meeting_the_budget_and_aaba_is_equal_split():
    env = gym.make(ENV_ID, num_devices=9)
    cfg = env.unwrapped.config
    gs = edgeft.make_policy("gs", env)
    aaba = edgeft.make_policy("aaba", env)
    obs, _ = env.reset(seed=6)
    for _ in range(10):
        dec = env.unwrapped.decode_observation(obs)
        order = np.argsort(-dec.gain, kind="stable")
        need = [
            ref_bandwidth_for_delay(dec.bits[i], cfg.budget_s, dec.gain[i], cfg.noise_psd)
            for i in order
        ]
        n_gs = int(np.sum(np.cumsum(need) <= cfg.bandwidth_hz))
        # the largest prefix whose min common delay meets the budget (docs/corrections.md)
        n_prefix = max(
            [
                n
                for n in range(1, 10)
                if ref_min_common_delay(
                    dec.bits[order[:n]], dec.gain[order[:n]], cfg.noise_psd, cfg.bandwidth_hz
                )
                <= cfg.budget_s
            ]
            + [0]
        )
        a_gs, _ = gs.predict(obs)
        a_ab, _ = aaba.predict(obs)
        assert (a_gs > 0).sum() == n_gs == n_prefix
        np.testing.assert_allclose(a_gs[order[:n_gs]] * cfg.bandwidth_hz, need[:n_gs], rtol=1e-9)
        n_ab = 0
        for n in range(1, 10):
            b = cfg.bandwidth_hz / n
            last = order[n - 1]
            worst = dec.bits[last] / (b * np.log2(1 + dec.gain[last] / (b * cfg.noise_psd)))
            if worst <= cfg.budget_s:
                n_ab = n
        assert (a_ab > 0).sum() == n_ab <= n_gs
        if n_ab:
            np.testing.assert_allclose(a_ab[a_ab > 0], 1.0 / n_ab)
        obs, *_ = env.step(a_gs)


def test_predict_accepts_batches_like_sb3():
    env = gym.make(ENV_ID, num_devices=8)
    obs, _ = env.reset(seed=0)
    batch = np.stack([obs, env.step(np.full(8, 0.1))[0]])
    for name in ("lyapunov", "lyapunov-paper", "gs", "aaba", "all-in"):
        p = edgeft.make_policy(name, env)
        acts, state = p.predict(batch)
        assert acts.shape == (2, 8) and state is None
        for i in range(2):
            np.testing.assert_array_equal(p.predict(batch[i])[0], acts[i])


@pytest.mark.parametrize("mode", ["count", "subset"])
def test_policies_in_other_action_modes(mode):
    env = gym.make(ENV_ID, num_devices=8, action_mode=mode)
    obs, _ = env.reset(seed=1)
    ref_env = gym.make(ENV_ID, num_devices=8)
    ref_obs, _ = ref_env.reset(seed=1)
    a, _ = edgeft.make_policy("lyapunov", env).predict(obs)
    b, _ = edgeft.make_policy("lyapunov", ref_env).predict(ref_obs)
    _, _, _, _, info = env.step(a)
    _, _, _, _, ref_info = ref_env.step(b)
    np.testing.assert_array_equal(info["scheduled"], ref_info["scheduled"])
    assert info["delay"] == pytest.approx(ref_info["delay"], rel=1e-9)


def test_unknown_policy_lists_known_names():
    env = gym.make(ENV_ID)
    with pytest.raises(ValueError, match="lyapunov") as err:
        edgeft.make_policy("lyapunov-fast", env)
    assert "gs" in str(err.value) and "aaba" in str(err.value)
    with pytest.raises(ValueError, match="needs the env"):
        edgeft.make_policy("gs")
    with pytest.raises(ValueError, match="unknown option"):
        edgeft.make_policy("gs", env, depth=3)


def _long_run(name, seed, per_bit, rounds=2000):
    env = gym.make(ENV_ID, num_devices=20, delay_budget_per_bit=per_bit, episode_rounds=rounds)
    policy = edgeft.make_policy(name, env)
    obs, _ = env.reset(seed=seed)
    x, n = np.empty(rounds), np.empty(rounds)
    for t in range(rounds):
        action, _ = policy.predict(obs)
        obs, _, _, _, info = env.step(action)
        x[t], n[t] = info["delay_ratio"], info["num_scheduled"]
    return x, n


@pytest.mark.parametrize("per_bit", [1e-6, 2.5e-6, 5e-6])
def test_long_run_budget_and_ordering(per_bit):
    """2000 rounds, K = 20: lyapunov meets the average budget within 3%; N: lyapunov > gs >= aaba;
    GS and AABA never exceed the budget in any round."""
    for seed in (0, 1):
        x_l, n_l = _long_run("lyapunov", seed, per_bit)
        x_g, n_g = _long_run("gs", seed, per_bit)
        x_a, n_a = _long_run("aaba", seed, per_bit)
        assert abs(x_l.mean() - 1.0) <= 0.03, x_l.mean()
        assert n_l.mean() > n_g.mean() >= n_a.mean()
        assert np.all(x_g <= 1.0 + 1e-9) and np.all(x_a <= 1.0 + 1e-9)


def test_lyapunov_is_the_per_round_optimum_over_all_subsets_at_k10():
    """K = 10, all 1023 subsets each round. Each subset's min-max delay comes from the batched
    solver, which test_formulas checks against nested brentq; the subset search is independent."""
    from itertools import product

    from edgeft.envs.fedlora.formulas import min_common_delay

    k = 10
    masks = np.array([m for m in product([False, True], repeat=k) if any(m)])
    for zeta, per_bit in ((1.0, 2e-6), (0.3, 1e-6)):
        env = gym.make(
            ENV_ID, num_devices=k, zeta=zeta, bandwidth_hz=5e6, delay_budget_per_bit=per_bit
        )
        cfg = env.unwrapped.config
        policy = edgeft.make_policy("lyapunov", env)
        obs, _ = env.reset(seed=3)
        for _ in range(15):
            dec = env.unwrapped.decode_observation(obs)
            queue = float(dec.queue)
            d, _ = min_common_delay(dec.bits, dec.gain, cfg.noise_psd, cfg.bandwidth_hz, masks)
            j = masks.sum(1) - zeta * (queue * d / cfg.budget_s + 0.5 * (d / cfg.budget_s - 1) ** 2)
            action, _ = policy.predict(obs)
            obs, _, _, _, info = env.step(action)
            assert _objective_of(info, queue, cfg.budget_s, zeta) == pytest.approx(
                j.max(), rel=1e-9, abs=1e-9
            )


def test_reference_policies_drop_into_sb3_evaluate_policy():
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv

    def make():
        return gym.make(ENV_ID, num_devices=6, episode_rounds=10)

    venv = DummyVecEnv([make, make])
    venv.seed(0)
    policy = edgeft.make_policy("gs", make())
    rewards, lengths = evaluate_policy(policy, venv, n_eval_episodes=2, return_episode_rewards=True)
    assert lengths == [10, 10] and all(np.isfinite(rewards))
