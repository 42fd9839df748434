"""edgeft.agents.policies: the MEC policy with per-user parameter sharing (``mec-shared``)."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from edgeft.agents.bc import permute_users
from edgeft.agents.policies import MECSharedPolicy, mec_users_layout
from edgeft.agents.transforms import get_transform
from edgeft.envs.common import config_in_force
from gymnasium import spaces

import edgeft
from edgeft.cli import main

MEC = "edgeft/MECOffloading-v0"
SMALL = {"num_users": 5, "num_servers": 3, "episode_rounds": 2, "action_mode": "discrete"}


def _policy(num_users: int, num_servers: int, num_alpha: int = 7, **kwargs) -> MECSharedPolicy:
    layout = mec_users_layout(num_users, num_servers)
    obs = spaces.Box(-np.inf, np.inf, (layout.size,), np.float32)
    act = spaces.MultiDiscrete([num_alpha] * num_users + [num_servers] * num_users)
    torch.manual_seed(0)
    # PyTorch's default initialisation: logits of order 1, not SB3's near-zero action head
    return MECSharedPolicy(obs, act, lambda _: 3e-4, ortho_init=False, **kwargs)


#: the head variants: server logits from z_n or from per-pair latents; free or polynomial alpha
HEADS = [{"pair_dim": 0}, {"pair_dim": 8}, {"pair_dim": 8, "alpha_degree": 2}]


def _permute_features(
    x: np.ndarray, perm: np.ndarray, num_users: int, num_servers: int
) -> np.ndarray:
    layout = mec_users_layout(num_users, num_servers)
    cut = num_users * layout.user_dim
    users = x[:, :cut].reshape(len(x), num_users, layout.user_dim)[:, perm]
    return np.concatenate([users.reshape(len(x), -1), x[:, cut:]], axis=1)


def _logits_values(
    policy: MECSharedPolicy, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user alpha logits (B, N, A), server logits (B, N, M) and values (B,), read through
    SB3's MultiDiscrete distribution (one categorical per action dimension, in order)."""
    n, a, m = policy.layout.num_users, policy.num_alpha, policy.layout.num_servers
    with torch.no_grad():
        t = torch.as_tensor(x, dtype=torch.float32)
        dists = policy.get_distribution(t).distribution
        value = policy.predict_values(t)[:, 0].numpy()
    assert len(dists) == 2 * n
    alpha = torch.stack([d.logits for d in dists[:n]], dim=1).numpy()
    server = torch.stack([d.logits for d in dists[n:]], dim=1).numpy()
    assert alpha.shape[2] == a and server.shape[2] == m
    return alpha, server, value


def test_layout_matches_the_mec_users_transform():
    """The policy's split of the features is the transform's: permuting the users of a raw
    observation (every user section, bc.permute_users) permutes exactly the user blocks the
    layout names and leaves the server features and the round share alone."""
    env = gym.make(MEC, **SMALL)
    config = config_in_force(env)
    obs, _ = env.reset(seed=4)
    obs, *_ = env.step(env.action_space.sample())  # non-zero queues
    layout = mec_users_layout(config.num_users, config.num_servers)
    transform = get_transform("mec-users", config)
    feats = transform(obs[None])
    assert feats.shape == (1, layout.size)
    labels = np.zeros((1, 2 * config.num_users), dtype=np.int64)
    rng = np.random.default_rng(0)
    for _ in range(3):
        permuted, _ = permute_users(obs[None], labels, config, rng)
        got = transform(permuted)
        users = got[:, : config.num_users * layout.user_dim].reshape(config.num_users, -1)
        orig = feats[:, : config.num_users * layout.user_dim].reshape(config.num_users, -1)
        # each permuted user block is one of the original ones, all of them once
        match = [int(np.flatnonzero(np.all(np.isclose(orig, u), axis=1))[0]) for u in users]
        assert sorted(match) == list(range(config.num_users)) and match != list(range(5))
        np.testing.assert_allclose(
            _permute_features(feats, np.array(match), config.num_users, config.num_servers), got
        )


@pytest.mark.parametrize("head", HEADS)
def test_permuting_users_permutes_logits_and_keeps_the_value(head):
    policy = _policy(6, 3, **head)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, policy.layout.size)).astype(np.float32)
    alpha, server, value = _logits_values(policy, x)
    assert np.ptp(alpha) > 0.01 and np.ptp(server) > 0.01  # not trivially constant
    for _ in range(3):
        perm = rng.permutation(6)
        alpha_p, server_p, value_p = _logits_values(policy, _permute_features(x, perm, 6, 3))
        np.testing.assert_allclose(alpha_p, alpha[:, perm], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(server_p, server[:, perm], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(value_p, value, rtol=1e-5, atol=1e-6)
    # a change to one user's features moves that user's logits most (its own input)...
    y = x.copy()
    y[:, : policy.layout.user_dim] += 1.0
    alpha_y = _logits_values(policy, y)[0]
    moved = np.abs(alpha_y - alpha).mean(axis=(0, 2))
    assert moved[0] > moved[1:].max()
    # ...and the others' through the pooled context only, all alike
    np.testing.assert_array_less(0.0, moved[1:])


@pytest.mark.parametrize("head", HEADS)
def test_parameter_count_does_not_grow_with_the_users(head):
    def count(p: MECSharedPolicy) -> int:
        return sum(t.numel() for t in p.parameters())

    assert (
        count(_policy(2, 4, **head))
        == count(_policy(20, 4, **head))
        == count(_policy(200, 4, **head))
    )


def test_polynomial_alpha_logits_are_unimodal_in_alpha():
    """alpha_degree = 2: each user's alpha logits are a quadratic in alpha, so the
    distribution over alpha has one mode (no second differences of changing sign)."""
    policy = _policy(4, 2, num_alpha=11, pair_dim=8, alpha_degree=2)
    x = np.random.default_rng(3).normal(size=(5, policy.layout.size)).astype(np.float32)
    alpha = _logits_values(policy, x)[0]
    second = np.diff(alpha, n=2, axis=2)
    np.testing.assert_allclose(second, second[..., :1].repeat(second.shape[2], axis=2), atol=1e-5)


def test_wrong_spaces_are_refused_with_the_fix():
    layout = mec_users_layout(4, 2)
    act = spaces.MultiDiscrete([5] * 4 + [2] * 4)
    with pytest.raises(ValueError, match="mec-users features"):
        MECSharedPolicy(spaces.Box(-1, 1, (layout.size + 1,)), act, lambda _: 1e-3)
    with pytest.raises(ValueError, match="discrete mode"):
        MECSharedPolicy(spaces.Box(-1, 1, (layout.size,)), spaces.Box(-1, 1, (8,)), lambda _: 1e-3)


TINY = [
    "train",
    "--env",
    MEC,
    "--algo",
    "ppo",
    "--seed",
    "2",
    "--policy",
    "mec-shared",
    "--set",
    "num_users=5",
    "--set",
    "num_servers=3",
    "--set",
    "episode_rounds=2",
    "--n-envs",
    "2",
    "--hp",
    "n_steps=4",
    "--hp",
    "batch_size=8",
    "--hp",
    "n_epochs=2",
    "--eval-episodes",
    "0",
    "--no-progress",
]


def _saved_models(monkeypatch) -> dict:
    """The models ``edgeft train`` saves, by name ("model", "best"), as they are in memory."""
    from edgeft.train import loop

    saved, save_model = {}, loop.save_model

    def spy(model, vecnorm, meta, out, name):
        saved[name] = model
        return save_model(model, vecnorm, meta, out, name)

    monkeypatch.setattr(loop, "save_model", spy)
    return saved


def test_trained_model_saves_and_loads_through_make_policy(tmp_path, monkeypatch):
    out = tmp_path / "run"
    trained = _saved_models(monkeypatch)
    assert main([*TINY, "--timesteps", "16", "--out", str(out)]) == 0
    meta = json.loads((out / "model.agent.json").read_text())
    assert meta["train_config"]["policy"] == "mec-shared"
    assert meta["policy"]["class"] == "mec-shared"
    env = gym.make(MEC, **SMALL)
    agent = edgeft.make_policy(f"ppo:{out}/model.agent.json", env)
    assert isinstance(agent.model.policy, MECSharedPolicy)
    obs, _ = env.reset(seed=11)
    action, _ = agent.predict(obs, deterministic=True)
    assert env.action_space.contains(action)
    # the loaded network is the trained one: the same logits as the trained model's
    x = agent.features(obs[None])
    for a, b in zip(
        _logits_values(agent.model.policy, x), _logits_values(trained["model"].policy, x)
    ):
        np.testing.assert_array_equal(a, b)
    obs2, *_ = env.step(action)
    batch, _ = agent.predict(np.stack([obs, obs2]), deterministic=True)
    assert batch.shape == (2, 10) and np.array_equal(batch[0], action)


def test_bc_init_clones_into_the_shared_policy(tmp_path):
    """--init bc:mec-greedy-fast works with mec-shared: the clone's NLL falls."""
    cfg = tmp_path / "bc.json"
    cfg.write_text(
        json.dumps({"bc": {"iterations": 2, "episodes": 4, "epochs": 5, "permute_users": 1}})
    )
    out = tmp_path / "bc"
    assert (
        main(
            [
                *TINY,
                "--init",
                "bc:mec-greedy-fast",
                "--timesteps",
                "0",
                "--config",
                str(cfg),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    log = [json.loads(x) for x in (out / "bc.jsonl").read_text().splitlines()]
    assert len(log) == 2 and log[-1]["nll"] < log[0]["nll"]
    assert log[-1]["train_entry_agreement"] > 0.5


@pytest.mark.parametrize("mode", ["subset", "score"])
def test_bc_init_clones_per_device_modes(tmp_path, mode):
    """--init bc clones into the FedLoRA shared policy in the per-device modes, whose actions
    (MultiBinary masks, Box scores) the Bernoulli and Gaussian log-likelihoods take as floats:
    the clone's NLL falls and the subset clone schedules mostly as its teacher does."""
    cfg = _write(tmp_path / "bc.json", {"bc": {"iterations": 2, "episodes": 1, "epochs": 10}})
    out = tmp_path / "bc"
    args = ["train", "--env", "edgeft/FedLoRAScheduling-v0", "--algo", "ppo", "--policy"]
    args += ["fedlora-shared", "--set", f"action_mode={mode}", "--set", "num_devices=6"]
    args += ["--set", "episode_rounds=20", "--n-envs", "2", "--init", "bc:lyapunov"]
    args += ["--timesteps", "0", "--eval-episodes", "0", "--no-progress", "--config", str(cfg)]
    assert main([*args, "--out", str(out)]) == 0
    log = [json.loads(x) for x in (out / "bc.jsonl").read_text().splitlines()]
    assert len(log) == 2 and log[-1]["nll"] < log[0]["nll"]
    if mode == "subset":
        assert log[-1]["train_entry_agreement"] > 0.8


def test_policy_name_errors(tmp_path, capsys):
    assert (
        main([*TINY, "--policy", "nosuch", "--timesteps", "8", "--out", str(tmp_path / "a")]) == 2
    )
    assert "unknown policy 'nosuch'" in capsys.readouterr().err
    assert (
        main(
            [
                *TINY,
                "--set",
                "action_mode=box",
                "--algo",
                "sac",
                "--timesteps",
                "8",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )
    assert "has classes for ['ppo', 'a2c'], not sac" in capsys.readouterr().err
    assert (
        main(
            [
                *TINY,
                "--timesteps",
                "8",
                "--out",
                str(tmp_path / "c"),
                "--config",
                str(_write(tmp_path / "c.json", {"obs_transform": "mec-compact"})),
            ]
        )
        == 2
    )
    assert (
        "reads the 'mec-users' features, not obs_transform 'mec-compact'" in capsys.readouterr().err
    )


def test_shipped_mec_clone_keeps_its_mlp_policy_and_decisions():
    """ppo:mec-default predates TrainConfig.policy: it loads as SB3's MlpPolicy and still picks
    its teacher's server for nearly every user."""
    from edgeft.agents.bc import MECGreedyFastTeacher
    from stable_baselines3.common.policies import ActorCriticPolicy

    env = gym.make(MEC, num_users=20, num_servers=4, episode_rounds=5, action_mode="discrete")
    agent = edgeft.make_policy("ppo:mec-default", env)
    assert type(agent.model.policy) is ActorCriticPolicy
    teacher = MECGreedyFastTeacher(config_in_force(env))
    obs, _ = env.reset(seed=123)
    same = []
    for _ in range(2):
        a, _ = agent.predict(obs, deterministic=True)
        t, _ = teacher.predict(obs)
        same.append(a[20:] == t[20:])
        obs, *_ = env.step(a)
    assert np.mean(same) >= 0.95


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path
