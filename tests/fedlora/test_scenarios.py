"""Instance distributions (``edgeft.envs.fedlora.scenarios``): draws, splits, the scenario env.

References: the plain env built with a draw's config and seed (the scenario env's episode must
be that env's, step by step); the observation transform and the training reward applied by hand
with the episode's own config.
"""

import gymnasium as gym
import numpy as np
import pytest
from edgeft.agents.transforms import get_transform
from edgeft.agents.vec import devices_utility
from edgeft.envs.common import config_in_force
from edgeft.envs.fedlora.scenarios import (
    DISTRIBUTIONS,
    DRAWN_FIELDS,
    SPLITS,
    ScenarioDistribution,
    ScenarioEnv,
    get_distribution,
)

import edgeft
from edgeft.train.config import TrainConfig

FEDLORA = "edgeft/FedLoRAScheduling-v0"

GENERAL = DISTRIBUTIONS["fedlora-general"]


def _key(draw):
    return (draw["delay_budget_per_bit"], draw["cell_center_m"], draw["cell_radius_m"])


def test_draws_are_reproducible_valid_and_cover_the_distribution():
    draws = [GENERAL.draw("train", i) for i in range(120)]
    assert set().union(*draws) == set(DRAWN_FIELDS)  # every field a draw sets, and only those
    assert draws == [GENERAL.draw("train", i) for i in range(120)]
    lo, hi = GENERAL.budget_us_per_bit
    channels, partitions = set(), set()
    for d in draws:
        assert d["num_devices"] == GENERAL.num_devices
        assert lo * 1e-6 <= d["delay_budget_per_bit"] <= hi * 1e-6
        assert GENERAL.cell_center_m[0] <= d["cell_center_m"] <= GENERAL.cell_center_m[1]
        assert GENERAL.cell_radius_m[0] <= d["cell_radius_m"] <= GENERAL.cell_radius_m[1]
        channels.add(
            "mobile"
            if d.get("mobility_speed_mps")
            else "correlated"
            if d.get("fading_correlation")
            else "iid"
        )
        partitions.add(d["data"])
    assert channels == {"iid", "correlated", "mobile"}
    assert partitions == {"iid", "dirichlet"}
    for d in draws[:10]:  # every draw is a config the env accepts
        gym.make("edgeft/FedLoRAScheduling-v0", **d).close()


def test_train_and_test_draws_never_coincide():
    train = {_key(GENERAL.draw("train", i, stream)) for i in range(200) for stream in range(3)}
    test = {_key(GENERAL.draw("test", i)) for i in range(200)}
    assert len(train) == 600 and len(test) == 200
    assert not train & test


def test_bad_distributions_and_names_are_refused():
    with pytest.raises(ValueError, match="budget_us_per_bit"):
        ScenarioDistribution(budget_us_per_bit=(3.0, 1.0))
    with pytest.raises(ValueError, match="channels"):
        ScenarioDistribution(channels=("rayleigh",))
    with pytest.raises(ValueError, match="fading_correlation"):
        ScenarioDistribution(fading_correlation=(0.5, 1.0))
    with pytest.raises(ValueError, match="known: \\['fedlora-general', 'fedlora-sizes'\\]"):
        get_distribution("nope")
    with pytest.raises(ValueError, match="split"):
        GENERAL.draw("validation", 0)


def test_scenario_env_plays_the_plain_env_of_each_draw():
    """Each reset draws the next scenario of the stream; the episode is the plain env's with
    the draw's config and seed, action by action."""
    env = ScenarioEnv(base={"action_mode": "score"}, stream=2)
    seen = []
    for episode in range(3):
        obs, info = env.reset(seed=7) if episode == 0 else env.reset()
        rng = np.random.default_rng([SPLITS["train"], 2, 7, episode])
        scenario = GENERAL.sample(rng)
        assert info["scenario"] == scenario
        seen.append(_key(scenario))
        plain = gym.make("edgeft/FedLoRAScheduling-v0", action_mode="score", **scenario)
        ref, _ = plain.reset(seed=int(rng.integers(2**31)))
        np.testing.assert_array_equal(obs, ref)
        actions = np.random.default_rng(episode).uniform(-1, 1, size=(5, 20))
        for a in actions:
            o1, r1, *_, i1 = env.step(a)
            o2, r2, *_, i2 = plain.step(a)
            np.testing.assert_array_equal(o1, o2)
            assert r1 == r2 and i1["delay_ratio"] == i2["delay_ratio"]
        assert env.observation_space == plain.observation_space
        plain.close()
    assert len(set(seen)) == 3
    env.close()


def test_transform_and_reward_use_each_episode_config():
    def transform(obs, config):
        return get_transform("fedlora-devices", config)(obs)

    def reward(config):
        return devices_utility(config)

    env = ScenarioEnv(base={"action_mode": "score"}, transform=transform, reward=reward)
    raw = ScenarioEnv(base={"action_mode": "score"})
    for seed in (0, 1):
        obs, info = env.reset(seed=seed)
        raw_obs, _ = raw.reset(seed=seed)
        config = config_in_force(raw.env)
        assert env.observation_space.shape == obs.shape
        np.testing.assert_allclose(
            obs, get_transform("fedlora-devices", config)(raw_obs[None])[0], rtol=0, atol=0
        )
        a = np.linspace(-1, 1, 20)
        obs, r, *_, info = env.step(a)
        raw_obs, _, *_ = raw.step(a)
        assert r == info["num_scheduled"] / 20
        np.testing.assert_array_equal(
            obs, get_transform("fedlora-devices", config)(raw_obs[None])[0]
        )


def test_train_config_checks_the_scenarios():
    def cfg(**kw):
        return TrainConfig(**{"algo": "td3-lag", "scenarios": "fedlora-general", **kw})

    cfg().validate()
    with pytest.raises(ValueError, match="unknown scenario distribution"):
        cfg(scenarios="fedlora-galactic").validate()
    with pytest.raises(ValueError, match="delay_budget_per_bit"):
        cfg(env_config={"delay_budget_per_bit": 1e-6}).validate()
    with pytest.raises(ValueError, match="mobility_speed_mps"):  # drawn by some draws only
        cfg(env_config={"mobility_speed_mps": 1.0}).validate()
    cfg(algo="ppo", init="bc:lyapunov-descending").validate()  # a teacher per scenario
    with pytest.raises(ValueError, match="permute_users"):
        cfg(algo="ppo", init="bc:lyapunov", bc={"permute_users": 1}).validate()
    with pytest.raises(ValueError, match="FedLoRAScheduling"):
        cfg(env_id="edgeft/MECOffloading-v0").validate()


def test_a_run_on_the_distribution_trains_and_its_agent_plays_another_k(tmp_path):
    """``edgeft train --scenarios`` end to end (a few steps): the run records the distribution,
    and its size-independent agent plays an env of another K, marked out of distribution."""
    import json

    from edgeft.cli import main

    out = tmp_path / "run"
    args = ["train", "--algo", "ppo-lag", "--scenarios", "fedlora-general", "--policy"]
    args += ["fedlora-shared", "--set", "episode_rounds=8", "--n-envs", "2", "--hp", "n_steps=16"]
    args += ["--hp", "batch_size=32", "--hp", "n_epochs=1", "--timesteps", "32"]
    args += ["--eval-episodes", "0", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    meta = json.loads((out / "model.agent.json").read_text())
    assert meta["train_config"]["scenarios"] == "fedlora-general"
    env = gym.make("edgeft/FedLoRAScheduling-v0", num_devices=10, action_mode="count")
    policy = edgeft.make_policy(f"ppo:{out}/model.agent.json", env)
    obs, _ = env.reset(seed=0)
    action, _ = policy.predict(obs, deterministic=True)
    assert env.action_space.contains(action)
    assert "num_devices" in " ".join(policy.out_of_distribution)
    for i in range(3):  # test draws of its distribution are in distribution
        scenario = GENERAL.draw("test", i)
        env = gym.make(FEDLORA, action_mode="count", episode_rounds=8, **scenario)
        assert edgeft.make_policy(f"ppo:{out}/model.agent.json", env).out_of_distribution == []
    env = gym.make(FEDLORA, action_mode="count", episode_rounds=8, delay_budget_per_bit=1e-6)
    ood = edgeft.make_policy(f"ppo:{out}/model.agent.json", env).out_of_distribution
    assert [d.split(":")[0] for d in ood] == ["delay_budget_per_bit"]


def test_cloning_on_the_distribution_labels_each_copy_with_its_scenarios_teacher():
    """``--scenarios`` with ``--init bc:POLICY``: each env copy's observation is labelled by a
    teacher built for that copy's current scenario and turned into features with that
    scenario's config, across episode ends (each reset draws a new scenario)."""
    import dataclasses

    from edgeft.agents.bc import ScenarioLabels, make_teacher
    from edgeft.agents.vec import scenario_vec_env

    cfg = TrainConfig(
        algo="ppo",
        scenarios="fedlora-general",
        n_envs=3,
        env_config={"action_mode": "count", "episode_rounds": 4},
        obs_transform="prefix-delay",
        init="bc:lyapunov-descending",
    )
    venv = scenario_vec_env(dataclasses.replace(cfg, obs_transform="none"), seed=5)
    per_copy = ScenarioLabels("lyapunov-descending", {}, "prefix-delay", venv)
    teachers: dict[int, object] = {}  # the reference: one teacher per episode of a copy
    obs = venv.reset()
    seen = set()
    for _ in range(10):  # two episode ends
        labels, _ = per_copy.predict(obs)
        feats = per_copy.features(obs)
        for i, scenario in enumerate(venv.get_attr("scenario")):
            config = venv.get_attr("config", indices=[i])[0]
            key = id(scenario)
            if key not in teachers:
                teachers[key] = make_teacher("lyapunov-descending", config)
            seen.add(tuple(sorted(scenario.items())))
            expected, _ = teachers[key].predict(obs[i : i + 1], deterministic=True)
            assert labels[i] == np.asarray(expected)[0]
            np.testing.assert_array_equal(
                feats[i], get_transform("prefix-delay", config)(obs[i : i + 1])[0]
            )
        obs, *_ = venv.step(labels)
    assert len(seen) == 9  # 3 copies x 3 episodes, every one a scenario of its own
    venv.close()


def test_a_clone_on_the_distribution_trains_end_to_end(tmp_path):
    import json

    from edgeft.cli import main

    out = tmp_path / "run"
    args = ["train", "--algo", "ppo", "--scenarios", "fedlora-general", "--init"]
    args += ["bc:lyapunov-descending", "--set", "episode_rounds=6", "--set", "action_mode=count"]
    args += ["--n-envs", "2", "--timesteps", "0", "--eval-episodes", "0", "--no-progress"]
    args += ["--config", str(tmp_path / "bc.json"), "--out", str(out)]
    (tmp_path / "bc.json").write_text(json.dumps({"bc": {"iterations": 2, "epochs": 2}}))
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "bc.jsonl").read_text().splitlines()]
    assert [r["samples"] for r in rows] == [12, 24]  # 2 copies x 6 rounds per iteration
    meta = json.loads((out / "model.agent.json").read_text())
    assert meta["train_config"]["init"] == "bc:lyapunov-descending"
    assert meta["train_config"]["scenarios"] == "fedlora-general"


def test_covers_is_the_support_of_the_draws():
    for i in range(50):
        for name, value in GENERAL.draw("test", i).items():
            assert GENERAL.covers(name, value), (name, value)
    assert not GENERAL.covers("num_devices", 100)
    assert not GENERAL.covers("delay_budget_per_bit", 1e-6)
    assert not GENERAL.covers("cell_radius_m", 100.0)
    assert not GENERAL.covers("fading_correlation", 0.99)
    assert not GENERAL.covers("channel", "3gpp-umi")  # not drawn: compared as any field
    assert GENERAL.covers("fading_correlation", 0.0) and GENERAL.covers("data", "dirichlet")


def test_pooled_statistics_are_those_of_all_positions_together():
    """Per-position observation statistics pooled over the device blocks equal the statistics
    of every position's samples taken together (the law of total variance), repeated for the
    new K; the global features keep theirs."""
    from edgeft.agents.loader import pooled_normalization

    rng = np.random.default_rng(0)
    k, f, n = 5, 3, 400
    blocks = rng.normal(rng.normal(size=(1, k, f)), rng.uniform(0.5, 2, size=(1, k, f)), (n, k, f))
    glob = rng.normal(size=(n, 2))
    x = np.concatenate([blocks.reshape(n, k * f), glob], axis=1)
    norm = {"mean": x.mean(0).tolist(), "var": x.var(0).tolist(), "clip_obs": 10.0}
    out = pooled_normalization(norm, k, 7, f)
    together = blocks.reshape(n * k, f)
    np.testing.assert_allclose(out["mean"][: 7 * f], np.tile(together.mean(0), 7), rtol=1e-12)
    np.testing.assert_allclose(out["var"][: 7 * f], np.tile(together.var(0), 7), rtol=1e-12)
    np.testing.assert_array_equal(out["mean"][7 * f :], glob.mean(0))
    assert out["clip_obs"] == 10.0
    with pytest.raises(ValueError, match="fewer than"):
        pooled_normalization(norm, 9, 7, f)


def test_a_run_saved_before_the_scenarios_field_still_resumes(tmp_path):
    """A training folder written before ``TrainConfig.scenarios`` existed (its run.json has no
    such key) is the same run as the command that made it: it resumes, it is not refused."""
    import dataclasses
    import json

    from edgeft.train.loop import prepare_out

    cfg = TrainConfig(algo="ppo")
    meta = {"train_config": dataclasses.asdict(cfg), "env_config": {"action_mode": "count"}}
    out = tmp_path / "run"
    assert prepare_out(cfg, out, meta) is None  # a fresh run
    saved = json.loads((out / "run.json").read_text())
    del saved["train_config"]["scenarios"]
    (out / "run.json").write_text(json.dumps(saved))
    assert prepare_out(cfg, out, meta) is None  # the same run, no checkpoint yet
    with pytest.raises(ValueError, match="scenarios"):
        prepare_out(dataclasses.replace(cfg, scenarios="fedlora-general"), out, meta)
