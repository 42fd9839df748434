"""The size-independent FedLoRA agent: the ``fedlora-devices`` transform and the
``fedlora-shared`` policies (PPO/A2C, SAC, TD3) of edgeft.agents.policies."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from edgeft.agents.policies import (
    FedLoRASharedPolicy,
    FedLoRASharedSACPolicy,
    FedLoRASharedTD3Policy,
    fedlora_devices_layout,
    policy_for,
)
from edgeft.agents.transforms import (
    FEDLORA_DEVICE_FEATURES,
    FEDLORA_GLOBAL_FEATURES,
    get_transform,
    transformed_size,
)
from edgeft.agents.wrappers import FeatureObservation
from edgeft.envs.common import config_in_force
from edgeft.envs.fedlora.actions import channel_order
from edgeft.envs.fedlora.formulas import LN2
from edgeft.envs.fedlora.observation import decode_observation, observation_layout
from gymnasium import spaces
from scipy.optimize import brentq

import edgeft
from edgeft.cli import main

FED = "edgeft/FedLoRAScheduling-v0"
D = len(FEDLORA_DEVICE_FEATURES)
G = len(FEDLORA_GLOBAL_FEATURES)
F = {name: i for i, name in enumerate(FEDLORA_DEVICE_FEATURES)}
GF = {name: i for i, name in enumerate(FEDLORA_GLOBAL_FEATURES)}
LEARN_SEED = 0


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small nets: one thread, and reproducible training runs
    yield
    torch.set_num_threads(threads)


def _env(k: int, mode: str = "count", **kw) -> gym.Env:
    return gym.make(FED, num_devices=k, episode_rounds=8, action_mode=mode, **kw)


def _observations(env: gym.Env, seeds: range, steps: int = 3) -> np.ndarray:
    """Observations of a few episodes under a fixed action sequence (non-zero queues, ages)."""
    rows = []
    k = config_in_force(env).num_devices
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        rows.append(obs)
        for t in range(steps):
            obs, *_ = env.step(_action(env, (t * 7 + seed) % (k + 1)))
            rows.append(obs)
    return np.stack(rows)


def _action(env: gym.Env, n: int):
    """An action of the env's mode scheduling n devices (the first n in the env's order for the
    per-device modes)."""
    space = env.action_space
    if isinstance(space, spaces.Discrete):
        return n
    mask = np.arange(space.shape[0]) < n
    if isinstance(space, spaces.MultiBinary):
        return mask.astype(np.int8)
    return np.where(
        mask, 1.0 if space.low[0] < 0 else 1.0 / max(n, 1), -1.0 if space.low[0] < 0 else 0.0
    )


def _with_unequal_bits(obs: np.ndarray, config, rng: np.random.Generator) -> np.ndarray:
    """Observations with per-device message sizes (as real mode measures them): 0.5-2 Mbit."""
    out = obs.copy()
    lay = observation_layout(config)
    out[:, lay.bits] = rng.uniform(0.5, 2.0, size=(len(obs), config.num_devices))
    return out


def _permute_obs(obs: np.ndarray, perm: np.ndarray, config) -> np.ndarray:
    """The raw observations with devices renamed: every per-device block permuted alike."""
    out = obs.copy()
    lay = observation_layout(config)
    for name, shape in lay:
        if shape == (config.num_devices,):
            block = getattr(lay, name)
            out[:, block] = obs[:, block][:, perm]
    return out


def _blocks(feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    return feats[:, : k * D].reshape(len(feats), k, D), feats[:, k * D :]


# ---------------------------------------------------------------------------- the transform
@pytest.mark.parametrize("k", [3, 20, 100])
def test_features_shape_ranges_and_zero_probe(k):
    env = _env(k)
    config = config_in_force(env)
    obs = _observations(env, range(3))
    f = get_transform("fedlora-devices", config)
    feats = f(obs)
    assert feats.shape == (len(obs), k * D + G) == (len(obs), fedlora_devices_layout(k).size)
    assert transformed_size("fedlora-devices", config, obs.shape[1]) == feats.shape[1]
    assert np.all(np.isfinite(feats)) and np.all(np.isfinite(f(np.zeros(3 * k + 3))))
    dev, glob = _blocks(feats, k)
    np.testing.assert_allclose(dev[..., F["gain_vs_best"]].max(axis=1), 0.0)
    np.testing.assert_array_equal(
        np.sort(dev[..., F["rank"]], axis=1),
        np.broadcast_to(np.arange(1, k + 1) / k, (len(obs), k)),
    )
    for flag in ("feasible", "in_budget_prefix"):
        assert set(np.unique(dev[..., F[flag]])) <= {0.0, 1.0}
    for name in ("log_share", "log_prefix_share"):
        assert np.all((dev[..., F[name]] >= np.log(1e-6)) & (dev[..., F[name]] <= np.log(10)))
    x = dev[..., F["log_prefix_delay"]]
    assert np.all((x >= np.log(1 / 8) - 1e-12) & (x <= np.log(16) + 1e-12))
    np.testing.assert_allclose(glob[:, GF["log_devices"]], np.log10(k))
    # nothing grows with K: a device's own features are the same in a 10-device round taken
    # out of a 100-device one
    if k == 100:
        small = _env(10)
        sub = np.concatenate([obs[:, :10], obs[:, 100:110], obs[:, 200:210], obs[:, 300:]], axis=1)
        dev10, _ = _blocks(get_transform("fedlora-devices", config_in_force(small))(sub), 10)
        for name in ("log_share", "feasible", "log_bits", "log_age"):
            np.testing.assert_allclose(dev10[..., F[name]], dev[:, :10, F[name]], atol=1e-12)


def test_features_match_independent_references():
    """Shares against a root finder on the delay equation (FT eq. 5, not Lemma 3's closed
    form), the GS prefix and the prefix delays against the exact minimum common delays of
    every prefix (baselines.fedlora.hindsight.prefix_delays), ranks against channel_order."""
    from edgeft.baselines.fedlora.hindsight import prefix_delays

    k = 12
    env = _env(k)
    config = config_in_force(env)
    rng = np.random.default_rng(5)
    obs = _with_unequal_bits(_observations(env, range(4)), config, rng)
    dev, glob = _blocks(get_transform("fedlora-devices", config)(obs), k)
    dec = decode_observation(obs, config)
    big_b, sigma2, dbar = config.bandwidth_hz, config.noise_psd, config.budget_s
    # shares: mu / (B log2(1 + g / (B sigma^2))) = D-bar solved for B by brentq
    checked = 0
    for i in range(len(obs)):
        for j in range(k):
            g, mu = dec.gain[i, j], dec.bits[i, j]
            feasible = dbar > mu * sigma2 * LN2 / g
            assert dev[i, j, F["feasible"]] == float(feasible and dev[i, j, F["log_share"]] <= 0)
            if not feasible:
                assert dev[i, j, F["log_share"]] == pytest.approx(np.log(10.0))
                continue

            def excess(b, g=g, mu=mu):
                return mu / (b * np.log2(1.0 + g / (b * sigma2))) - dbar

            share = brentq(excess, 1e-3, 1e15, xtol=1e-12, rtol=1e-13) / big_b
            if 1e-6 < share < 10:
                assert dev[i, j, F["log_share"]] == pytest.approx(np.log(share), abs=1e-9)
                checked += 1
    assert checked > 20
    # ranks: the channel order count mode follows
    order = channel_order(dec.gain, dec.bits)
    rank = np.rint(dev[..., F["rank"]] * k).astype(int) - 1
    np.testing.assert_array_equal(
        np.take_along_axis(rank, order, axis=1), np.broadcast_to(np.arange(k), rank.shape)
    )
    # prefix delays: exact D*(S_n) of the prefix ending at each device
    exact = prefix_delays(dec.gain, dec.bits, sigma2, big_b)[:, 1:] / dbar  # by prefix length
    exact = np.take_along_axis(exact, rank, axis=1)  # by device
    x = dev[..., F["log_prefix_delay"]]
    inside = (exact > 1 / 8) & (exact < 16)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(x[inside], np.log(exact[inside]), atol=0.07)
    np.testing.assert_allclose(
        x[~inside], np.clip(np.log(exact[~inside]), np.log(1 / 8), np.log(16)), atol=1e-12
    )
    # the budget prefix: D*(S_n) <= D-bar (away from round-off at the boundary)
    clear = np.abs(exact - 1.0) > 1e-9
    np.testing.assert_array_equal(
        dev[..., F["in_budget_prefix"]][clear] == 1.0, exact[clear] <= 1.0
    )
    gs = edgeft.make_policy("gs", _env(k, "subset"))
    np.testing.assert_array_equal(gs.predict(obs)[0], dev[..., F["in_budget_prefix"]])
    # the global block
    params = config.surrogate
    np.testing.assert_allclose(glob[:, GF["log_queue"]], np.log1p(dec.queue))
    np.testing.assert_allclose(glob[:, GF["round_share"]], dec.round / config.episode_rounds)
    np.testing.assert_allclose(
        glob[:, GF["loss_gap"]],
        (dec.loss - params.loss_floor) / (params.initial_loss - params.loss_floor),
    )
    count = dev[..., F["in_budget_prefix"]].sum(axis=1)
    np.testing.assert_allclose(glob[:, GF["budget_fraction"]], count / k)
    np.testing.assert_allclose(
        dev[..., F["log_bits"]], np.log(dec.bits / dec.bits.mean(axis=1, keepdims=True))
    )
    np.testing.assert_allclose(dev[..., F["log_age"]], np.log10(1 + dec.age))
    db = dec.gain_db
    np.testing.assert_allclose(
        dev[..., F["gain_vs_median"]], (db - np.median(db, axis=1, keepdims=True)) / 10
    )


def test_features_permute_with_the_devices_and_are_a_pure_function():
    k = 9
    env = _env(k)
    config = config_in_force(env)
    obs = _with_unequal_bits(_observations(env, range(2)), config, np.random.default_rng(0))
    f = get_transform("fedlora-devices", config)
    feats = f(obs)
    copy = obs.copy()
    np.testing.assert_array_equal(np.stack([f(o) for o in obs]), feats)
    np.testing.assert_array_equal(obs, copy)
    perm = np.random.default_rng(1).permutation(k)
    dev, glob = _blocks(feats, k)
    dev_p, glob_p = _blocks(f(_permute_obs(obs, perm, config)), k)
    np.testing.assert_allclose(dev_p, dev[:, perm], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(glob_p, glob, rtol=1e-12, atol=1e-12)


def test_features_reject_the_other_family():
    config = config_in_force(gym.make("edgeft/MECOffloading-v0"))
    with pytest.raises(ValueError, match="fedlora"):
        get_transform("fedlora-devices", config)


# ---------------------------------------------------------------------------- the policy
def _policy(k: int, mode: str, **kwargs) -> FedLoRASharedPolicy:
    env = _env(k, mode)
    obs = spaces.Box(-np.inf, np.inf, (fedlora_devices_layout(k).size,), np.float32)
    torch.manual_seed(0)
    # PyTorch's default initialisation: outputs of order 1, not SB3's near-zero action head
    return FedLoRASharedPolicy(obs, env.action_space, lambda _: 3e-4, ortho_init=False, **kwargs)


def _outputs(policy: FedLoRASharedPolicy, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distribution's parameters (Bernoulli / categorical logits, Gaussian means) and the
    values, read through SB3's distribution."""
    with torch.no_grad():
        t = torch.as_tensor(x, dtype=torch.float32)
        dist = policy.get_distribution(t).distribution
        value = policy.predict_values(t)[:, 0].numpy()
    out = dist.mean if isinstance(dist, torch.distributions.Normal) else dist.logits
    return out.numpy(), value


def _head(policy: FedLoRASharedPolicy, x: np.ndarray) -> np.ndarray:
    """The head's raw output (the categorical's logits before torch normalises them)."""
    with torch.no_grad():
        t = torch.as_tensor(x, dtype=torch.float32)
        return policy.action_net(policy.mlp_extractor.forward_actor(t)).numpy()


def _features(k: int, seeds: range = range(2), unequal: bool = True) -> tuple[np.ndarray, object]:
    env = _env(k)
    config = config_in_force(env)
    obs = _observations(env, seeds)
    if unequal:
        obs = _with_unequal_bits(obs, config, np.random.default_rng(k))
    return obs, config


MODES = [
    ("subset", {}),
    ("score", {}),
    ("bandwidth", {}),
    ("count", {}),
    ("count", {"count_logits": "cumsum"}),
]


@pytest.mark.parametrize(("mode", "kwargs"), MODES)
def test_permuting_devices_permutes_outputs_and_keeps_the_value(mode, kwargs):
    k = 7
    policy = _policy(k, mode, **kwargs)
    obs, config = _features(k)
    f = get_transform("fedlora-devices", config)
    out, value = _outputs(policy, f(obs))
    assert np.ptp(out) > 0.01 and np.ptp(value) > 1e-4  # not trivially constant
    rng = np.random.default_rng(2)
    for _ in range(3):
        perm = rng.permutation(k)
        out_p, value_p = _outputs(policy, f(_permute_obs(obs, perm, config)))
        np.testing.assert_allclose(value_p, value, rtol=1e-5, atol=1e-6)
        if mode == "count":  # the distribution over n does not depend on the devices' names
            np.testing.assert_allclose(out_p, out, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_allclose(out_p, out[:, perm], rtol=1e-5, atol=1e-6)
    if mode in ("score", "bandwidth"):
        assert policy.log_std.shape == (1,)


@pytest.mark.parametrize("count_logits", ["stop", "cumsum"])
def test_count_logits_take_the_devices_in_channel_order(count_logits):
    """count mode's K + 1 logits from the per-device outputs of a subset-mode policy with the
    same weights, ordered by the env's own channel order."""
    k = 6
    count = _policy(k, "count", count_logits=count_logits)
    subset = _policy(k, "subset")
    state = count.state_dict()
    subset.load_state_dict({n: v for n, v in state.items() if not n.startswith("action_net.none")})
    obs, config = _features(k)
    x = get_transform("fedlora-devices", config)(obs)
    logits, per_device = _head(count, x), _head(subset, x)
    dec = decode_observation(obs, config)
    s = np.take_along_axis(per_device, channel_order(dec.gain, dec.bits), axis=1)
    if count_logits == "cumsum":
        np.testing.assert_allclose(logits[:, 0], 0.0)
        np.testing.assert_allclose(logits[:, 1:], np.cumsum(s, axis=1), rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(logits[:, 1:], s, rtol=1e-6, atol=1e-6)
        assert np.ptp(logits[:, 0]) > 0  # the 'nobody' logit depends on the round


@pytest.mark.parametrize("mode", ["count", "subset", "score"])
def test_the_same_weights_play_any_number_of_devices(mode):
    small = _policy(20, mode)
    state = small.state_dict()
    for k in (10, 100):
        other = _policy(k, mode)
        other.load_state_dict(state)  # strict: the same names and shapes
        env = _env(k, mode)
        config = config_in_force(env)
        x = get_transform("fedlora-devices", config)(_observations(env, range(1), steps=2))
        actions, _ = other.predict(x, deterministic=False)
        assert all(env.action_space.contains(a) for a in actions)
    # mean and max pooling ignore duplicates: every device twice gives every output twice
    # and the same value (per-device modes; the features fed as they are)
    if mode != "count":
        x = get_transform("fedlora-devices", config_in_force(_env(20)))(_features(20)[0])
        dev, glob = _blocks(x, 20)
        twice = np.concatenate(
            [np.concatenate([dev, dev], axis=1).reshape(len(x), -1), glob], axis=1
        )
        big = _policy(40, mode)
        big.load_state_dict(state)
        out, value = _outputs(small, x)
        out2, value2 = _outputs(big, twice)
        np.testing.assert_allclose(out2, np.concatenate([out, out], axis=1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(value2, value, rtol=1e-5, atol=1e-6)


def test_parameter_count_does_not_grow_with_the_devices():
    def count(p) -> int:
        return sum(t.numel() for t in p.parameters())

    for mode in ("count", "subset", "score"):
        assert count(_policy(2, mode)) == count(_policy(20, mode)) == count(_policy(200, mode))


def test_wrong_spaces_and_options_are_refused_with_the_fix():
    size = fedlora_devices_layout(4).size
    good = spaces.Box(-np.inf, np.inf, (size,))
    with pytest.raises(ValueError, match="fedlora-devices features"):
        FedLoRASharedPolicy(spaces.Box(-1, 1, (size + 1,)), spaces.Discrete(5), lambda _: 1e-3)
    with pytest.raises(ValueError, match="count .*subset"):
        FedLoRASharedPolicy(good, spaces.MultiDiscrete([3, 3, 3, 3]), lambda _: 1e-3)
    with pytest.raises(ValueError, match="count_logits"):
        FedLoRASharedPolicy(good, spaces.Discrete(5), lambda _: 1e-3, count_logits="sum")
    with pytest.raises(ValueError, match="use_sde"):
        FedLoRASharedPolicy(good, spaces.Box(-1, 1, (4,)), lambda _: 1e-3, use_sde=True)
    with pytest.raises(ValueError, match="Box mode"):
        FedLoRASharedSACPolicy(good, spaces.MultiBinary(4), lambda _: 1e-3)
    assert policy_for("fedlora-shared", "ppo-lag") is FedLoRASharedPolicy
    assert policy_for("fedlora-shared", "td3") is FedLoRASharedTD3Policy
    with pytest.raises(ValueError, match="not dqn"):
        policy_for("fedlora-shared", "dqn")
    with pytest.raises(ValueError, match="not sac"):
        policy_for("mec-shared", "sac")


# ---------------------------------------------------------------------------- training
TRAIN = [
    "train",
    "--env",
    FED,
    "--algo",
    "ppo",
    "--seed",
    "3",
    "--policy",
    "fedlora-shared",
    "--set",
    "num_devices=5",
    "--set",
    "episode_rounds=8",
    "--n-envs",
    "2",
    "--hp",
    "n_steps=64",
    "--hp",
    "batch_size=32",
    "--hp",
    "n_epochs=2",
    "--eval-episodes",
    "0",
    "--no-progress",
]


@pytest.mark.parametrize("mode", ["count", "subset", "score", "bandwidth"])
def test_ppo_trains_saves_and_loads_in_every_mode(tmp_path, monkeypatch, mode):
    from edgeft.train import loop

    trained, save_model = {}, loop.save_model

    def spy(model, vecnorm, meta, out, name):  # the trained model, as it is in memory
        trained[name] = model
        return save_model(model, vecnorm, meta, out, name)

    monkeypatch.setattr(loop, "save_model", spy)
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"obs_transform": "fedlora-devices", "normalize_obs": False}))
    out = tmp_path / mode
    assert (
        main(
            [
                *TRAIN,
                "--set",
                f"action_mode={mode}",
                "--timesteps",
                "256",
                "--config",
                str(cfg),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    meta = json.loads((out / "model.agent.json").read_text())
    assert meta["train_config"]["policy"] == "fedlora-shared" and meta["timesteps"] == 256
    assert meta["normalization"] is None  # the features are fed as they are
    env = gym.make(FED, num_devices=5, episode_rounds=8, action_mode=mode)
    agent = edgeft.make_policy(f"ppo:{out}/model.agent.json", env)
    assert isinstance(agent.model.policy, FedLoRASharedPolicy)
    obs = _observations(env, range(20, 22))
    x = agent.features(obs)
    fresh = trained["model"]
    for a, b in zip(_outputs(agent.model.policy, x), _outputs(fresh.policy, x)):
        np.testing.assert_array_equal(a, b)
    actions, _ = agent.predict(obs, deterministic=True)
    assert all(env.action_space.contains(a) for a in actions)
    np.testing.assert_array_equal(actions, fresh.predict(x, deterministic=True)[0])


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_off_policy_classes_train_save_load_and_are_equivariant(tmp_path, algo):
    from stable_baselines3 import SAC, TD3

    cls = {"sac": SAC, "td3": TD3}[algo]
    k = 5
    env = FeatureObservation(_env(k, "score"), "fedlora-devices")
    model = cls(
        policy_for("fedlora-shared", algo),
        env,
        learning_starts=32,
        batch_size=32,
        seed=0,
        device="cpu",
    )
    model.learn(96)
    model.save(str(tmp_path / "m.zip"))
    loaded = cls.load(str(tmp_path / "m.zip"), device="cpu")
    obs, config = _features(k)
    f = get_transform("fedlora-devices", config)
    x = f(obs)
    np.testing.assert_allclose(
        loaded.predict(x, deterministic=True)[0], model.predict(x, deterministic=True)[0], rtol=1e-6
    )
    policy = loaded.policy
    a = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (len(x), k)), dtype=torch.float32)
    with torch.no_grad():
        act = (
            policy.actor(torch.as_tensor(x, dtype=torch.float32), deterministic=True)
            if (algo == "sac")
            else policy.actor(torch.as_tensor(x, dtype=torch.float32))
        )
        q = torch.cat(policy.critic(torch.as_tensor(x, dtype=torch.float32), a), dim=1)
    perm = np.random.default_rng(3).permutation(k)
    xp = torch.as_tensor(f(_permute_obs(obs, perm, config)), dtype=torch.float32)
    with torch.no_grad():
        act_p = policy.actor(xp, deterministic=True) if algo == "sac" else policy.actor(xp)
        q_p = torch.cat(policy.critic(xp, a[:, perm]), dim=1)
    np.testing.assert_allclose(act_p.numpy(), act.numpy()[:, perm], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q_p.numpy(), q.numpy(), rtol=1e-5, atol=1e-5)
    assert np.ptp(q.numpy()) > 0
    # the same weights in a policy for 50 devices
    big_env = FeatureObservation(_env(50, "score"), "fedlora-devices")
    big = cls(policy_for("fedlora-shared", algo), big_env, seed=0, device="cpu")
    big.policy.load_state_dict(policy.state_dict())
    obs_big, _ = big_env.reset(seed=1)
    assert big_env.action_space.contains(big.predict(obs_big, deterministic=True)[0])


def test_ppo_learns_to_leave_out_the_device_in_deep_fade():
    """count mode, 4 devices, the drift-plus-penalty reward with a budget the 3 strongest meet
    nearly always: the per-round optimum (the corrected Lyapunov rule) schedules all 4 unless
    the weakest is in a deep fade. After 2048 PPO steps the policy puts much less mass on
    "all 4" in those rounds than in the others, and its expected regret (of the per-round
    objective, on the states of held-out episodes) falls to a fraction of the untrained one."""
    from edgeft.baselines.fedlora.hindsight import prefix_delays
    from edgeft.envs.fedlora.reward import lyapunov_objective
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    k = 4
    kw = {
        "num_devices": k,
        "episode_rounds": 16,
        "action_mode": "count",
        "reward": "drift-plus-penalty",
        "zeta": 1.0,
        "delay_budget_per_bit": 8e-6,
    }
    env = gym.make(FED, **kw)
    config = config_in_force(env)
    f = get_transform("fedlora-devices", config)
    states, objective = [], []
    for seed in range(1000, 1010):  # held-out episodes under the per-round optimum
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            dec = decode_observation(obs, config)
            x = (
                prefix_delays(
                    dec.gain[None], dec.bits[None], config.noise_psd, config.bandwidth_hz
                )[0]
                / config.budget_s
            )
            j = lyapunov_objective(np.arange(k + 1), x, dec.queue, config.zeta)
            states.append(f(obs))
            objective.append(j)
            obs, _, term, trunc, _ = env.step(int(j.argmax()))
            done = term or trunc
    s = torch.as_tensor(np.array(states), dtype=torch.float32)
    j = np.array(objective)
    fade = j.argmax(axis=1) < k
    assert 0.05 < fade.mean() < 0.5

    def evaluate(model) -> tuple[float, float, float]:
        with torch.no_grad():
            p = model.policy.get_distribution(s).distribution.probs.numpy()
        regret = (p * (j.max(axis=1, keepdims=True) - j)).sum(axis=1).mean()
        return float(regret), float(p[fade, k].mean()), float(p[~fade, k].mean())

    venv = VecNormalize(
        make_vec_env(
            lambda: FeatureObservation(gym.make(FED, **kw), "fedlora-devices"), n_envs=4, seed=0
        ),
        norm_obs=False,
        gamma=0.9,
    )
    model = PPO(
        FedLoRASharedPolicy,
        venv,
        n_steps=128,
        batch_size=64,
        n_epochs=10,
        learning_rate=1e-3,
        gamma=0.9,
        seed=LEARN_SEED,
        device="cpu",
    )
    regret0, fade0, ok0 = evaluate(model)
    model.learn(2048)
    regret, p_fade, p_ok = evaluate(model)
    summary = (
        f"regret {regret0:.3f} -> {regret:.3f}, P(all | fade) {fade0:.3f} -> "
        f"{p_fade:.3f}, P(all | no fade) {ok0:.3f} -> {p_ok:.3f}"
    )
    assert abs(fade0 - ok0) < 0.02, summary  # untrained: blind to the fade
    assert regret < 0.3 * regret0, summary
    assert p_fade < 0.6 * fade0 and p_ok > p_fade + 0.1, summary


def test_choosing_the_shared_policy_brings_its_features():
    from edgeft.train.config import build_config

    fed = "edgeft/FedLoRAScheduling-v0"
    assert build_config(fed, "ppo-lag").obs_transform == "prefix-delay"  # the tuned MLP's
    cfg = build_config(fed, "ppo-lag", policy="fedlora-shared")
    assert (cfg.policy, cfg.obs_transform) == ("fedlora-shared", "fedlora-devices")
    assert build_config(fed, "sac-lag").policy == "fedlora-shared"
    with pytest.raises(ValueError, match="reads the 'fedlora-devices' features"):
        build_config(fed, "ppo", policy="fedlora-shared", obs_transform="sort-by-gain")
    with pytest.raises(ValueError, match="has classes for"):
        build_config(fed, "dqn", policy="fedlora-shared")
