"""The off-policy Lagrangian (sac-lag, td3-lag, dqn-lag): the wrapper in relabel mode prices the
same cost as the on-policy one, and the replay buffer prices stored transitions with the
multiplier of the moment it samples them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from edgeft.agents.lagrangian import LAGRANGIAN_ALGOS, OFF_POLICY_LAGRANGIAN, PIDMultiplier
from edgeft.agents.vec import LagrangianReplayBuffer, VecLagrangian
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

FEDLORA = "edgeft/FedLoRAScheduling-v0"


def _venv(n=3):
    return DummyVecEnv(
        [lambda: gym.make(FEDLORA, num_devices=5, episode_rounds=6, action_mode="count")] * n
    )


@pytest.mark.parametrize("constraint", ["mean", "episode"])
def test_relabel_mode_carries_the_cost_the_on_policy_wrapper_subtracts(constraint):
    lam = 0.7  # ki = kp = 0: the multiplier stays at lambda_init whatever the costs
    wrappers = []
    for relabel in (False, True):
        mult = PIDMultiplier(limit=1.0, ki=0.0, kp=0.0, integral=lam, value=lam)
        w = VecLagrangian(
            _venv(), "fedlora", 1.0, mult, cost_cap=4.0, constraint=constraint, relabel=relabel
        )
        w.seed(11)
        w.reset()
        wrappers.append(w)
    rng = np.random.default_rng(0)
    priced = 0
    for _ in range(15):  # more than two episodes per copy
        act = rng.integers(0, 6, size=3)
        _, r_on, d_on, _ = wrappers[0].step(act)
        _, r_off, d_off, infos = wrappers[1].step(act)
        np.testing.assert_array_equal(d_on, d_off)
        cost = np.array([info["lagrangian_cost"] for info in infos])
        np.testing.assert_allclose(
            r_on, (r_off - lam * cost).astype(np.float32), rtol=1e-6, atol=1e-6
        )
        priced += int((cost > 0).sum())
    assert priced > 0
    assert wrappers[0].log == wrappers[1].log  # the multiplier sees the same episodes


class _Lag:
    """Stands for the run's VecLagrangian: what the buffer reads."""

    relabel = True
    lam = 0.0


def test_the_buffer_prices_each_sampled_transition_with_the_current_multiplier():
    buf = LagrangianReplayBuffer(
        128, spaces.Box(-1, 1, (2,)), spaces.Discrete(3), device="cpu", n_envs=2
    )
    rng = np.random.default_rng(1)
    rewards, costs = rng.normal(size=(40, 2)), rng.exponential(size=(40, 2))
    for t in range(40):
        buf.add(
            rng.normal(size=(2, 2)),
            rng.normal(size=(2, 2)),
            np.array([0, 1]),
            rewards[t],
            np.array([False, False]),
            [{"lagrangian_cost": float(c)} for c in costs[t]],
        )
    lag = _Lag()
    buf.attach(lag)
    inds = np.arange(0, 40, 3)
    for lam in (0.0, 0.5, 2.0):
        lag.lam = lam
        # SB3 draws the env index of each sample from numpy's global state
        np.random.seed(5)  # noqa: NPY002
        got = buf._get_samples(inds).rewards.numpy().ravel()
        np.random.seed(5)  # noqa: NPY002
        envs = np.random.randint(0, high=2, size=(len(inds),))  # noqa: NPY002
        want = [
            np.float32(rewards[b, e]) - np.float32(lam) * np.float32(costs[b, e])
            for b, e in zip(inds, envs)
        ]  # per transition
        np.testing.assert_allclose(got, want, rtol=1e-6)
    # a step without a priced cost (before the multiplier exists) costs nothing
    buf.add(
        np.zeros((2, 2)),
        np.zeros((2, 2)),
        np.array([0, 0]),
        np.zeros(2),
        np.array([False, False]),
        [{}, {}],
    )
    assert not buf.costs[40].any()


def test_the_buffer_refuses_a_wrapper_that_prices_the_reward_itself():
    buf = LagrangianReplayBuffer(8, spaces.Box(-1, 1, (2,)), spaces.Discrete(3), device="cpu")
    w = VecLagrangian(_venv(1), "fedlora", 1.0, PIDMultiplier(limit=1.0))
    with pytest.raises(ValueError, match="relabel=True"):
        buf.attach(w)


def test_every_off_policy_algorithm_has_a_lagrangian_variant():
    assert {LAGRANGIAN_ALGOS[a] for a in OFF_POLICY_LAGRANGIAN} == {"sac", "td3", "dqn"}
    assert OFF_POLICY_LAGRANGIAN < set(LAGRANGIAN_ALGOS)


@pytest.mark.parametrize(
    "algo, mode", [("sac-lag", "score"), ("td3-lag", "score"), ("dqn-lag", "count")]
)
def test_off_policy_lagrangian_runs_train_and_price(tmp_path, algo, mode):
    """A short run of each: the replay buffer is the Lagrangian's, attached to the run's
    multiplier, which was updated from finished episodes; the priced costs are stored."""
    from edgeft.train import loop
    from edgeft.train.config import build_config

    cfg = build_config(
        FEDLORA,
        algo,
        timesteps=200,
        n_envs=2,
        eval_episodes=0,
        progress=False,
        env_config={"num_devices": 4, "episode_rounds": 8, "action_mode": mode},
        hyperparams={"learning_starts": 40, "buffer_size": 500, "batch_size": 16},
    )
    seen = {}
    learn = loop.learn

    def spy(run, resumed):
        learn(run, resumed)
        seen["buffer"], seen["lag"] = run.model.replay_buffer, run.lag

    loop.learn = spy
    try:
        loop.train(cfg, tmp_path / "run")
    finally:
        loop.learn = learn
    buf, lag = seen["buffer"], seen["lag"]
    assert isinstance(buf, LagrangianReplayBuffer) and buf.lagrangian is lag and lag.relabel
    assert lag.log and lag.multiplier.updates == len(lag.log)  # one update per batch
    assert buf.costs[: buf.pos].any()
    assert (tmp_path / "run" / "model.agent.json").is_file()


def test_action_noise_is_built_from_its_json_description():
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    from edgeft.train.loop import action_noise

    venv = DummyVecEnv([lambda: gym.make(FEDLORA, num_devices=5, action_mode="score")])
    noise = action_noise({"type": "normal", "sigma": 0.2}, venv)
    assert isinstance(noise, NormalActionNoise)
    np.testing.assert_allclose(noise._sigma, np.full(5, 0.2))  # half-range 1 in score mode
    assert isinstance(
        action_noise({"type": "ornstein-uhlenbeck"}, venv), OrnsteinUhlenbeckActionNoise
    )
    assert action_noise(None, venv) is None
    for bad in (
        {"type": "uniform"},
        {"type": "normal", "sigma": 0},
        "normal",
        {"type": "normal", "scale": 1},
    ):
        with pytest.raises(ValueError, match="action_noise"):
            action_noise(bad, venv)
    with pytest.raises(ValueError, match="Box action space"):
        action_noise({"type": "normal"}, _venv(1))
