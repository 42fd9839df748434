"""edgeft train's command line and validation: defaults in --help, step counts said before
training, validation numbers equal to the leaderboard's, the FedLoRA training pieces (reward
shaping, prefix-delay transform) against plain-loop references, and no import cycle in agents."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from edgeft.agents.transforms import get_transform
from edgeft.agents.vec import clipped_drift_plus_penalty
from edgeft.envs.common import config_in_force
from edgeft.envs.fedlora.observation import decode_observation, observation_layout

import edgeft
from edgeft import leaderboard as lb
from edgeft import train as train_mod
from edgeft.cli import main
from edgeft.episodes import run_episode
from edgeft.suites import FEDLORA, MEC, Scenario, Suite

SMALL = [
    "--set",
    "num_devices=6",
    "--set",
    "episode_rounds=16",
    "--n-envs",
    "4",
    "--hp",
    "n_steps=32",
    "--hp",
    "batch_size=64",
    "--hp",
    "n_epochs=1",
    "--seed",
    "3",
]


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_help_shows_the_defaults_that_are_used(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = _flat(capsys.readouterr().out)
    assert "total env steps (default: 100,000)" in text
    assert "(default: edgeft/FedLoRAScheduling-v0)" in text and "(default: ppo)" in text
    assert "training seed (default: 0)" in text
    assert "gs (fedlora), greedy (mec)" in text
    # and those are what a run without flags gets
    cfg = train_mod.build_config(None, None)
    assert (cfg.timesteps, cfg.env_id, cfg.algo, cfg.seed) == (
        100_000,
        "edgeft/FedLoRAScheduling-v0",
        "ppo",
        0,
    )


def test_env_family_is_read_from_the_env_config_class():
    assert train_mod.env_family(FEDLORA) == "fedlora"
    assert train_mod.env_family(MEC) == "mec"


def _leaderboard_means(scenario: dict, policy: str, seeds: list[int]) -> dict[str, float]:
    """What the leaderboard reports for ``policy`` in ``scenario`` on ``seeds``: its own
    tasks, episode loop and summary (means; the headline value under "headline", the score
    under "score", with the anchor and hindsight rows the leaderboard adds)."""
    suite = Suite(
        "validation-check",
        1,
        "fedlora",
        "test",
        (Scenario("s", FEDLORA, scenario),),
        num_seeds=len(seeds),
    )
    policies = lb.scored_policies(suite, [policy])
    tasks = lb.make_tasks(suite, policies)
    for i, task in enumerate(tasks):
        task["seed"] = seeds[i % len(seeds)]
    rows = [lb.run_task(t) for t in tasks]
    entry = next(e for e in lb.summarize(suite, policies, rows)["results"] if e["policy"] == policy)
    out = {m: v["mean"] for m, v in entry["metrics"].items()}
    out["headline"] = entry["headline"]["mean"]
    out["score"] = entry["score"]["mean"]
    return out


def test_rounded_steps_are_said_and_validation_reports_the_leaderboard_numbers(tmp_path, capsys):
    out = tmp_path / "run"
    # the tuned FedLoRA PPO entry trains on reward=drift-plus-penalty, zeta=10 (reward-only)
    assert (
        main(
            [
                "train",
                "--env",
                FEDLORA,
                *SMALL,
                "--timesteps",
                "100",
                "--eval-every",
                "0",
                "--eval-episodes",
                "2",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    cap = capsys.readouterr()
    # 32 steps per copy x 4 copies = 128 steps per rollout: 100 becomes 128, said up front
    assert (
        "ppo learns from whole rollouts of 128 steps (n_steps 32 x 4 envs), so this run "
        "trains for 128 steps, not 100"
    ) in _flat(cap.err)
    meta = json.loads((out / "model.agent.json").read_text())
    assert meta["timesteps"] == 128
    assert meta["env_config"]["reward"] == "drift-plus-penalty"

    row = [json.loads(x) for x in (out / "eval.jsonl").read_text().splitlines()][-1]
    seeds = [train_mod.VALIDATION_SEED_BASE, train_mod.VALIDATION_SEED_BASE + 1]
    scenario = {"num_devices": 6, "episode_rounds": 16, "budget_guard": True}  # + the headline's
    assert row["metric"] == "headline" and row["reference_policy"] == "gs"
    ref = _leaderboard_means(scenario, "gs", seeds)
    agent = _leaderboard_means(scenario, f"ppo:{out}/model.agent.json", seeds)
    for got, want in ((row["reference"], ref), (row["agent"], agent)):
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-12), k
    # the "return" is the leaderboard's (the env's default reward), not the training reward's
    training_env = {**scenario, **meta["train_config"]["env_config"]}
    trained_reward = np.mean(
        [run_episode(FEDLORA, training_env, "gs", s)["metrics"]["return"] for s in seeds]
    )
    assert abs(trained_reward - row["reference"]["return"]) > 1.0
    line = next(x for x in cap.out.splitlines() if x.startswith("[eval @ 128]"))
    assert f"final loss within budget {agent['headline']:.5g} (gs {ref['headline']:.5g})" in line
    assert f"return {agent['return']:.5g} (gs {ref['return']:.5g})" in line
    assert f"score {agent['score']:.5g} (gs {ref['score']:.5g})" in line
    assert "best final loss within budget (lower is better)" in cap.out


@pytest.mark.parametrize(
    "hp, n_envs, timesteps, expect",
    [
        ({"train_freq": 4, "learning_starts": 8}, 2, 21, 24),
        ({"train_freq": (1, "episode"), "learning_starts": 8}, 1, 20, 32),  # 16-round episodes
        ({"train_freq": (3, "episode"), "learning_starts": 8}, 1, 20, 48),
    ],
)
def test_planned_steps_are_where_sb3_stops(tmp_path, capsys, hp, n_envs, timesteps, expect):
    cfg = train_mod.build_config(
        FEDLORA,
        "dqn",
        timesteps=timesteps,
        n_envs=n_envs,
        eval_episodes=0,
        checkpoint_every=0,
        progress=False,
        env_config={"num_devices": 4, "episode_rounds": 16},
        hyperparams={"buffer_size": 500, "batch_size": 8, **hp},
    )
    train_mod.train(cfg, tmp_path / "run")
    done = json.loads((tmp_path / "run" / "model.agent.json").read_text())["timesteps"]
    assert done == expect
    assert f"trains for {expect:,} steps, not {timesteps:,}" in _flat(capsys.readouterr().err)


def test_clipped_dpp_reward_against_a_plain_loop():
    zeta, clip = 7.0, 3.0
    vec = gym.make_vec(
        FEDLORA,
        num_envs=3,
        vectorization_mode="vector_entry_point",
        num_devices=5,
        episode_rounds=12,
    )
    config = train_mod.make_env_config(
        train_mod.build_config(FEDLORA, "ppo", env_config={"num_devices": 5, "episode_rounds": 12})
    )
    reward = clipped_drift_plus_penalty(config, zeta, clip)
    obs, _ = vec.reset(seed=11)
    queue = np.zeros(3)  # q before the first round
    rng = np.random.default_rng(0)
    for _ in range(10):
        act = rng.uniform(0, 1, (3, 5)) * rng.integers(0, 2, (3, 5))
        new_obs, _, _, _, info = vec.step(act)
        got = reward(obs, info)
        for i in range(3):
            x = min(float(info["delay_ratio"][i]), clip)
            want = float(info["num_scheduled"][i]) - zeta * (queue[i] * x + 0.5 * (x - 1) ** 2)
            assert got[i] == pytest.approx(want, rel=1e-12, abs=1e-12)
        queue = np.asarray(info["delay_queue"], dtype=np.float64)
        obs = new_obs
    with pytest.raises(ValueError, match="FedLoRA"):
        clipped_drift_plus_penalty(config_in_force(gym.make(MEC)), zeta, clip)


def test_prefix_delay_against_a_plain_loop():
    env = gym.make(FEDLORA, num_devices=5, episode_rounds=10)
    config = config_in_force(env)
    obs, _ = env.reset(seed=3)
    rows = [obs]
    for _ in range(4):
        obs, *_ = env.step(env.action_space.sample())
        rows.append(obs)
    batch = np.stack(rows)
    feats = get_transform("prefix-delay", config)(batch)
    k, size = config.num_devices, observation_layout(config).size
    for row, f in zip(batch, feats):
        dec = decode_observation(row, config)  # the inputs; the computation is the loop below
        gain_db, bits = dec.gain_db, dec.bits
        order = sorted(range(k), key=lambda i: -gain_db[i])
        for n in range(1, k + 1):
            share = config.bandwidth_hz / n
            worst = 0.0
            for i in order[:n]:
                g = 10 ** (gain_db[i] / 10)
                rate = share * np.log2(1 + g / (share * config.noise_psd))
                worst = max(worst, bits[i] / rate)
            assert f[size + n - 1] == pytest.approx(
                np.log(worst / config.budget_s), rel=1e-9, abs=1e-12
            )
        # the gain-sorted blocks: the same devices, strongest first
        np.testing.assert_array_equal(f[:k], gain_db[order])


def test_agents_modules_import_no_cycle():
    import edgeft.agents

    root = Path(edgeft.agents.__file__).resolve().parent
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        mod = path.stem
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                m = re.fullmatch(r"edgeft\.agents\.(\w+)", node.module)
                if m:
                    deps.add(m.group(1))
        graph[mod] = deps - {mod}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for d in graph.get(start, ()):
            if d == goal or (d not in seen and reaches(d, goal, seen | {d})):
                return True
        return False

    cycles = sorted(m for m in graph if reaches(m, m, {m}))
    assert not cycles, f"import cycle among edgeft.agents modules: {cycles}"


def test_restated_names_exist_where_they_are_defined():
    """The family records name fields, metrics and policies defined elsewhere: each must exist
    there."""
    import dataclasses

    from edgeft.envs.family import get_family, make_config

    for env_id in (FEDLORA, MEC):
        config = make_config(env_id)
        family = get_family(config.family)
        fields = {f.name for f in dataclasses.fields(config)}
        assert set(family.reward_only_fields) <= fields
        assert set(family.eval_columns) <= set(family.metrics)
        assert set(family.plot_metrics) <= set(family.metrics)
        assert family.eval_policy in edgeft.list_policies(config.family)
        assert train_mod.default_eval_policy(env_id) == family.eval_policy
        # validation ranks by the leaderboard's headline, else by its first column
        metric = train_mod.validation_metric(config.family)
        head = family.headline
        if head is not None:
            assert (metric.name, metric.title, metric.higher_is_better) == (
                "headline",
                head.title,
                head.higher_is_better,
            )
        else:
            name, m = next(iter(family.metrics.items()))
            assert (metric.name, metric.title, metric.higher_is_better) == (
                name,
                m.title,
                not m.lower_is_better,
            )
    assert train_mod.validation_metric("fedlora").title == "final loss within budget"


def test_a_rejected_hyperparameter_is_one_line_and_leaves_nothing_behind(tmp_path, capsys):
    """SB3's own check of a hyperparameter (an AssertionError inside its constructor) becomes
    one line naming the hyperparameters, and the run folder it had started is removed, so the
    corrected command runs there."""
    out = tmp_path / "run"
    args = ["train", "--env", FEDLORA, "--algo", "ppo", "--timesteps", "64", "--no-progress"]
    args += ["--set", "num_devices=4", "--set", "episode_rounds=8", "--eval-episodes", "0"]
    code = main([*args, "--hp", "learning_rate=abc", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "refused the hyperparameters" in err and "learning_rate='abc'" in err
    assert not out.exists()
    # an existing empty folder stays, emptied of the run's files
    out.mkdir()
    assert main([*args, "--hp", "learning_rate=abc", "--out", str(out)]) == 2
    assert out.is_dir() and not any(out.iterdir())
    capsys.readouterr()
    hp = ["--hp", "n_steps=32", "--hp", "batch_size=32", "--hp", "learning_rate=1e-3"]
    assert main([*args, *hp, "--out", str(out)]) == 0
    assert (out / "model.agent.json").is_file()
