"""The safe-RL libraries' view of the envs: the OmniSafe CMDP adapter against the plain env
(same seed and actions: same observations, rewards and ``info["cost"]``), its seeding and
episode end, the flat-action view FSRL needs, and, where the libraries import, OmniSafe's and
FSRL's PPO-Lagrangian on both envs (skipped with the blocker as reason where they do not)."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from edgeft.agents import omnisafe_adapter
from edgeft.agents.omnisafe_adapter import (
    FSRL_BLOCKER,
    EdgeftCMDP,
    episode_cost_limit,
    flat_unit_action,
    register,
)

FEDLORA = "edgeft/FedLoRAScheduling-v0"
MEC = "edgeft/MECOffloading-v0"
#: small configs: episodes of a few steps
SMALL = {
    FEDLORA: {"num_devices": 6, "episode_rounds": 4},
    MEC: {"num_users": 4, "num_servers": 2, "episode_rounds": 3},
}
BOTH = pytest.mark.parametrize("env_id", [FEDLORA, MEC])


def _actions(env_id: str, n: int, seed: int = 7) -> list[np.ndarray]:
    """n actions from the plain env's action space, as float32 like an OmniSafe actor's."""
    space = gym.make(env_id, **SMALL[env_id]).action_space
    space.seed(seed)
    return [space.sample().astype(np.float32) for _ in range(n)]


@BOTH
def test_steps_match_the_plain_env(env_id):
    """2 episodes through the adapter and through gym.make with the same seed and actions:
    equal observations, rewards and costs (cost = info["cost"]), float32 tensors of OmniSafe's
    shapes, truncation exactly at the env's horizon."""
    horizon = SMALL[env_id]["episode_rounds"]
    adapter = EdgeftCMDP(env_id, **SMALL[env_id])
    plain = gym.make(env_id, **SMALL[env_id])
    assert adapter.max_episode_steps == horizon
    assert adapter.action_space.shape == (int(np.prod(plain.action_space.shape)),)
    assert adapter.observation_space.shape == plain.observation_space.shape
    np.testing.assert_array_equal(adapter.action_space.low, plain.action_space.low.reshape(-1))

    obs, _ = adapter.reset(seed=3)
    ref, _ = plain.reset(seed=3)
    assert obs.dtype == torch.float32 and obs.shape == adapter.observation_space.shape
    np.testing.assert_array_equal(obs.numpy(), ref.astype(np.float32))
    for t, action in enumerate(_actions(env_id, 2 * horizon)):
        if t == horizon:
            obs, _ = adapter.reset()
            ref, _ = plain.reset()
            np.testing.assert_array_equal(obs.numpy(), ref.astype(np.float32))
        out = adapter.step(torch.as_tensor(action))
        ref, reward, terminated, truncated, info = plain.step(
            action.reshape(plain.action_space.shape)
        )
        obs, r, cost, term, trunc, a_info = out
        for x in out[:5]:
            assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
        assert obs.shape == adapter.observation_space.shape
        assert r.shape == cost.shape == term.shape == trunc.shape == ()
        np.testing.assert_array_equal(obs.numpy(), ref.astype(np.float32))
        assert r.item() == np.float32(reward)
        assert cost.item() == np.float32(info["cost"]) == np.float32(a_info["cost"])
        assert (term.item(), trunc.item()) == (float(terminated), float(truncated))
        assert trunc.item() == float((t + 1) % horizon == 0) and term.item() == 0.0


@BOTH
def test_equal_seeds_equal_trajectories_different_seeds_differ(env_id):
    def play(seed):
        adapter = EdgeftCMDP(env_id, **SMALL[env_id])
        adapter.set_seed(seed)  # OmniSafe seeds through set_seed, then steps on
        rows = [adapter.reset(seed=seed)[0]]
        for action in _actions(env_id, SMALL[env_id]["episode_rounds"]):
            rows.extend(adapter.step(torch.as_tensor(action))[:3])
        return rows

    a, b, c = play(11), play(11), play(12)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


@BOTH
def test_batched_copies_reset_in_the_same_step(env_id):
    """num_envs=2: rows equal to plain envs seeded seed+i; a finished copy's last observation
    in info["final_observation"] and its next episode's first in obs (same-step reset)."""
    horizon = SMALL[env_id]["episode_rounds"]
    adapter = EdgeftCMDP(env_id, num_envs=2, **SMALL[env_id])
    assert not adapter.need_auto_reset_wrapper and not adapter.need_time_limit_wrapper
    plains = [gym.make(env_id, **SMALL[env_id]) for _ in range(2)]
    obs, info = adapter.reset(seed=5)
    assert obs.shape == (2, *adapter.observation_space.shape) and len(info["infos"]) == 2
    for i, plain in enumerate(plains):
        np.testing.assert_array_equal(obs[i].numpy(), plain.reset(seed=5 + i)[0].astype(np.float32))
    actions = _actions(env_id, 2 * horizon)
    for t in range(horizon):
        batch = np.stack([actions[2 * t], actions[2 * t + 1]])
        obs, reward, cost, _, truncated, info = adapter.step(torch.as_tensor(batch))
        assert reward.shape == cost.shape == truncated.shape == (2,)
        for i, plain in enumerate(plains):
            ref, _, _, done, plain_info = plain.step(batch[i].reshape(plain.action_space.shape))
            assert cost[i].item() == np.float32(plain_info["cost"])
            assert done == (t == horizon - 1) == bool(truncated[i])
            if done:
                assert info["_final_observation"][i]
                np.testing.assert_array_equal(
                    info["final_observation"][i].numpy(), ref.astype(np.float32)
                )
                assert info["final_info"][i]["cost"] == plain_info["cost"]
                ref = plain.reset()[0]
            np.testing.assert_array_equal(obs[i].numpy(), ref.astype(np.float32))
        assert ("final_observation" in info) == (t == horizon - 1)


def test_cost_key_and_episode_limit():
    adapter = EdgeftCMDP(FEDLORA, cost_key="delay_ratio", **SMALL[FEDLORA])
    adapter.reset(seed=0)
    _, _, cost, *_, info = adapter.step(torch.as_tensor(_actions(FEDLORA, 1)[0]))
    assert cost.item() == np.float32(info["delay_ratio"])
    # both families: per-step limit 1, so the episode sum's limit is the number of rounds
    for env_id in (FEDLORA, MEC):
        env = gym.make(env_id, **SMALL[env_id])
        assert episode_cost_limit(env) == SMALL[env_id]["episode_rounds"]
    assert adapter.episode_cost_limit == SMALL[FEDLORA]["episode_rounds"]
    with pytest.raises(ValueError, match="not supported"):
        EdgeftCMDP("CartPole-v1")


@BOTH
def test_flat_unit_action_is_the_rescaled_reshaped_action(env_id):
    plain = gym.make(env_id, **SMALL[env_id])
    flat = flat_unit_action(gym.make(env_id, **SMALL[env_id]))
    space = plain.action_space
    assert flat.action_space.shape == (int(np.prod(space.shape)),)
    assert np.all(flat.action_space.low == -1.0) and np.all(flat.action_space.high == 1.0)
    flat.reset(seed=2)
    plain.reset(seed=2)
    rng = np.random.default_rng(0)
    for _ in range(SMALL[env_id]["episode_rounds"]):
        a = rng.uniform(-1.0, 1.0, flat.action_space.shape)
        mapped = space.low + (a.reshape(space.shape) + 1.0) / 2.0 * (space.high - space.low)
        _, reward, _, _, info = flat.step(a)
        _, ref_reward, _, _, ref_info = plain.step(mapped)
        assert np.isclose(reward, ref_reward, rtol=1e-12) and np.isclose(
            info["cost"], ref_info["cost"], rtol=1e-12
        )


def test_register_without_omnisafe_names_the_blocker(monkeypatch):
    monkeypatch.setitem(sys.modules, "omnisafe", None)  # makes `import omnisafe` fail
    monkeypatch.setattr(omnisafe_adapter, "_registered", None)
    with pytest.raises(ImportError, match=r"safety-gymnasium.*gymnasium\.wrappers\.compatibility"):
        register()


def test_the_adapter_module_does_not_import_torch():
    code = "import sys, edgeft.agents.omnisafe_adapter; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _omnisafe_or_skip():
    try:
        return register()
    except ImportError as exc:
        pytest.skip(str(exc))


@BOTH
def test_omnisafe_ppo_lag_runs(env_id, tmp_path):
    """Real OmniSafe: PPOLag makes the env by its id and learns for two tiny epochs; its
    episodes have the env's length and its multiplier rises (random policies overshoot)."""
    _omnisafe_or_skip()
    import omnisafe

    horizon = SMALL[env_id]["episode_rounds"]
    cfgs = {
        "seed": 0,
        "train_cfgs": {"total_steps": 16 * horizon, "vector_env_nums": 1, "torch_threads": 1},
        "algo_cfgs": {"steps_per_epoch": 8 * horizon, "update_iters": 1, "batch_size": 16},
        "logger_cfgs": {
            "use_wandb": False,
            "use_tensorboard": False,
            "log_dir": str(tmp_path),
            "save_model_freq": 1000,
        },
        "model_cfgs": {"actor": {"hidden_sizes": [8]}, "critic": {"hidden_sizes": [8]}},
        "lagrange_cfgs": {"cost_limit": 0.01 * horizon, "lagrangian_multiplier_init": 0.0},
        "env_cfgs": SMALL[env_id],
    }
    agent = omnisafe.Agent("PPOLag", env_id, custom_cfgs=cfgs)
    _, ep_cost, ep_len = agent.learn()
    assert ep_len == horizon and ep_cost > cfgs["lagrange_cfgs"]["cost_limit"]
    assert agent.agent._lagrange.lagrangian_multiplier.item() > 0.0


class _EpisodeCosts(gym.Wrapper):
    """Sums info["cost"] per finished episode and counts steps (plain Gymnasium)."""

    def __init__(self, env):
        super().__init__(env)
        self.episodes: list[float] = []
        self.steps = 0
        self._sum = 0.0

    def reset(self, **kwargs):
        self._sum = 0.0
        return self.env.reset(**kwargs)

    def step(self, action):
        out = self.env.step(action)
        self.steps += 1
        self._sum += out[4]["cost"]
        if out[2] or out[3]:
            self.episodes.append(self._sum)
        return out


@pytest.mark.slow  # ~15 s where FSRL is installed, most of it importing tianshou and wandb
@BOTH
def test_fsrl_ppo_lag_runs_through_plain_gymnasium(env_id):
    """FSRL's PPOLagAgent on gym.make envs (flat_unit_action, and nothing else) for 2000
    steps: it reads the cost from info["cost"] (its evaluation's episode cost is the summed
    info["cost"]) and its multiplier rises (random policies overshoot the limit)."""
    pytest.importorskip("fsrl.agent", reason=FSRL_BLOCKER)
    from fsrl.agent import PPOLagAgent
    from tianshou.env import DummyVectorEnv

    train_envs = [
        _EpisodeCosts(flat_unit_action(gym.make(env_id, **SMALL[env_id]))) for _ in range(2)
    ]
    evaluation = _EpisodeCosts(flat_unit_action(gym.make(env_id, **SMALL[env_id])))
    limit = 0.01 * episode_cost_limit(evaluation)
    agent = PPOLagAgent(evaluation, cost_limit=limit, thread=1, seed=0, hidden_sizes=(16, 16))
    agent.learn(
        DummyVectorEnv([lambda e=e: e for e in train_envs]),
        None,
        epoch=2,
        episode_per_collect=20,
        step_per_epoch=1000,
        repeat_per_collect=1,
        batch_size=128,
        save_ckpt=False,
        verbose=False,
        show_progress=False,
    )
    assert sum(e.steps for e in train_envs) >= 2000
    assert agent.policy.lag_optims[0].get_lag() > 0.0
    _, lengths, cost = agent.evaluate(DummyVectorEnv([lambda: evaluation]), eval_episodes=2)
    assert np.all(lengths == SMALL[env_id]["episode_rounds"])
    assert np.isclose(cost, np.mean(evaluation.episodes), rtol=1e-9)
