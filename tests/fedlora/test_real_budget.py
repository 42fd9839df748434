"""Real mode: the delay budget the env enforces is the one policies built from it use."""

import gymnasium as gym
import pytest

import edgeft

pytest.importorskip("torch")


def test_real_mode_budget_is_shared_with_policies():
    env = gym.make(
        "edgeft/FedLoRAScheduling-v0",
        mode="real",
        num_devices=5,
        episode_rounds=6,
        delay_budget_per_bit=2e-6,
        training={"model": "tiny-bert", "eval_every": 3},
    )
    from edgeft.envs.common import config_in_force

    cfg = config_in_force(env)
    learner = env.unwrapped._learner
    assert cfg.bits_per_round == pytest.approx(learner.nominal_bits())
    # the user's config is left as given; the measured values are derived, read-only
    assert env.unwrapped.config.delay_budget is None
    assert env.unwrapped.config.bits_per_round == 1e6
    with pytest.raises(AttributeError):
        env.unwrapped.config_in_force = cfg
    assert env.unwrapped.budget == pytest.approx(2e-6 * learner.nominal_bits())
    gs = edgeft.make_policy("gs", env)
    obs, _ = env.reset(seed=1)
    for _ in range(6):
        action, _ = gs.predict(obs)
        obs, _, _, _, info = env.step(action)
        assert info["delay_ratio"] <= 1.0 + 1e-9  # GS never exceeds the budget, real bits included
        assert info["num_scheduled"] >= 1
