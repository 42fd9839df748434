"""edgeft train, the ALGO:PATH loader, and a trained agent on the leaderboard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import gymnasium as gym
import numpy as np
import pytest

import edgeft
from edgeft import leaderboard as lb
from edgeft.cli import main
from edgeft.suites import FEDLORA, Scenario, Suite

TINY = [
    "--env",
    FEDLORA,
    "--algo",
    "ppo",
    "--seed",
    "3",
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
    "n_epochs=2",
    "--eval-episodes",
    "1",
    "--no-progress",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ppo") / "run"
    rc = main(["train", *TINY, "--timesteps", "256", "--eval-every", "128", "--out", str(out)])
    assert rc == 0
    return out


def test_train_writes_model_statistics_and_config(trained):
    for name in ("model", "best"):
        assert (trained / f"{name}.safetensors").is_file()
        meta = json.loads((trained / f"{name}.agent.json").read_text())
        assert meta["format"] == "edgeft-agent" and meta["format_version"] == 1
        assert meta["weights"]["file"] == f"{name}.safetensors"
        norm = meta["normalization"]
        assert len(norm["mean"]) == len(norm["var"]) > 0
    assert not list(trained.glob("*.zip")) and not list(trained.glob("*.pkl"))
    assert meta["env_config"]["num_devices"] == 6 and meta["env_config"]["action_mode"] == "count"
    assert meta["train_config"]["seed"] == 3 and meta["algo"] == "ppo"
    evals = [json.loads(x) for x in (trained / "eval.jsonl").read_text().splitlines()]
    assert evals[0]["reference_policy"] == "gs" and "final_loss" in evals[0]["reference"]
    assert json.loads((trained / "model.agent.json").read_text())["timesteps"] >= 256


def test_loader_applies_transform_and_saved_normalisation(trained):
    env = gym.make(FEDLORA, num_devices=6, episode_rounds=16, action_mode="count")
    policy = edgeft.make_policy(f"ppo:{trained}/model.agent.json", env)
    obs, _ = env.reset(seed=0)
    norm = json.loads((trained / "model.agent.json").read_text())["normalization"]
    feats = policy.transform(obs)
    std = np.sqrt(np.array(norm["var"]) + norm["epsilon"])
    expect = np.clip((feats - np.array(norm["mean"])) / std, -norm["clip_obs"], norm["clip_obs"])
    np.testing.assert_allclose(policy.features(obs), expect.astype(np.float32), rtol=1e-6)
    action, _ = policy.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))
    batch, _ = policy.predict(np.stack([obs, obs]), deterministic=True)
    assert batch.shape == (2,) and batch[0] == action
    # the extension may be left out, or be the weights' or (the name of earlier versions) .zip
    for name in ("model", "model.safetensors", "model.zip"):
        other = edgeft.make_policy(f"ppo:{trained}/{name}", env)
        assert other.predict(obs, deterministic=True)[0] == action


def test_loader_rejects_a_mismatched_env(trained):
    env = gym.make(FEDLORA, num_devices=7, episode_rounds=16, action_mode="count")
    with pytest.raises(ValueError, match=r"num_devices: model 6, env 7"):
        edgeft.make_policy(f"ppo:{trained}/model.zip", env)
    env = gym.make(FEDLORA, num_devices=6, episode_rounds=16)  # bandwidth mode
    with pytest.raises(ValueError, match="action_mode"):
        edgeft.make_policy(f"ppo:{trained}/model.zip", env)
    env = gym.make(FEDLORA, num_devices=6, episode_rounds=16, action_mode="count", zeta=3.0)
    edgeft.make_policy(f"ppo:{trained}/model.zip", env)  # reward-only fields may differ
    with pytest.raises(FileNotFoundError, match="no agent 'does/not/exist.zip'"):
        edgeft.make_policy("ppo:does/not/exist.zip", env)
    with pytest.raises(ValueError, match=r"unknown policy prefix 'pop'.*'ppo'"):
        edgeft.make_policy("pop:x.zip", env)


def test_trained_agent_plays_the_leaderboard(trained, tmp_path):
    suite = Suite(
        "agent-test",
        1,
        "fedlora",
        "test",
        (Scenario("k6", FEDLORA, {"num_devices": 6, "episode_rounds": 16}),),
        num_seeds=2,
    )
    name = f"ppo:{trained}/model.agent.json"
    s = lb.run_leaderboard(
        suite, ["gs", name], tmp_path / "lb", backend="serial", progress=False, plots=False
    )
    got = {e["policy"]: e for e in s["results"]}
    assert got[name]["episodes"] == 2
    assert 0 <= got[name]["metrics"]["avg_scheduled"]["mean"] <= 6
    assert got[name]["metrics"]["final_loss"]["mean"] > 0


def test_unknown_env_algo_or_unsupported_space_give_clear_errors(tmp_path, capsys):
    assert (
        main(
            ["train", "--env", "edgeft/Nope-v0", "--timesteps", "10", "--out", str(tmp_path / "a")]
        )
        == 2
    )
    assert (
        "unknown env 'edgeft/Nope-v0'; known: ['edgeft/FedLoRAScheduling-v0'"
        in capsys.readouterr().err
    )
    assert (
        main(
            [
                "train",
                *TINY,
                "--algo",
                "sac",
                "--set",
                "action_mode=count",
                "--timesteps",
                "10",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "sac cannot act in" in err and "action_mode" in err
    with pytest.raises(SystemExit):
        main(["train", "--algo", "trpo"])
    assert (
        main(
            [
                "train",
                *TINY,
                "--seed",
                "900000000",
                "--timesteps",
                "10",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 2
    )
    assert "reserved for validation and test" in capsys.readouterr().err


def test_interrupted_training_resumes_from_its_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "edgeft",
        "train",
        *TINY,
        "--timesteps",
        "3000",
        "--checkpoint-every",
        "256",
        "--eval-every",
        "0",
        "--eval-episodes",
        "0",
        "--out",
        str(out),
    ]
    tmp = tmp_path / "tmp"  # the runs' tempfile.gettempdir(): SB3 must leave nothing there
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TMPDIR": str(tmp)}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.DEVNULL)
    state = out / "checkpoints" / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline and not state.is_file():
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model.agent.json").exists(), "killed before the end"
    at = json.loads(state.read_text())["timesteps"]
    assert 256 <= at < 3000
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"resuming {out} from its checkpoint at" in res.stderr
    done = json.loads((out / "model.agent.json").read_text())["timesteps"]
    # checkpoints fall between rollouts (n_steps x n_envs = 128 steps), so the resumed run ends
    # where an uninterrupted one does: PPO finishes the rollout that crosses 3000
    assert done == 3072
    assert not list(tmp.glob("SB3-*")), "SB3 wrote log folders into the temp dir"
    # a finished run is not silently trained over
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "holds a finished run" in again.stderr


# ---------------------------------------------------------------------------- off-policy resume
DQN_TINY = [
    "--env",
    FEDLORA,
    "--algo",
    "dqn",
    "--seed",
    "4",
    "--set",
    "num_devices=4",
    "--set",
    "episode_rounds=16",
    "--n-envs",
    "2",
    "--hp",
    "learning_starts=32",
    "--hp",
    "buffer_size=1000",
    "--hp",
    "batch_size=16",
    "--hp",
    "train_freq=4",
    "--hp",
    "target_update_interval=64",
    "--timesteps",
    "404",
    "--checkpoint-every",
    "100",
    "--eval-episodes",
    "0",
    "--no-progress",
]
BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


class _Killed(Exception):
    """Stands for a kill right after a checkpoint."""


def _buffer(model):
    rb = model.replay_buffer
    n = rb.buffer_size if rb.full else rb.pos
    fields = (*BUFFER_FIELDS, "costs") if hasattr(rb, "costs") else BUFFER_FIELDS
    return {
        "pos": rb.pos,
        "full": rb.full,
        "n_updates": model._n_updates,
        "lam": rb.lam if hasattr(rb, "lam") else None,
        **{k: getattr(rb, k)[:n].copy() for k in fields},
    }


@pytest.mark.parametrize("algo", ["dqn", "dqn-lag"])
def test_off_policy_resume_restores_the_replay_buffer(tmp_path, monkeypatch, algo):
    """Killed after a checkpoint and resumed, an off-policy run goes on with the checkpoint's
    replay buffer (dqn-lag: with its priced costs, and its multiplier restored)."""
    from stable_baselines3 import DQN

    from edgeft import train as train_mod
    from edgeft.train import callbacks, loop

    seen = {}
    write_checkpoint, save_model = train_mod.write_checkpoint, train_mod.save_model

    def kill_after_checkpoint(ck, t, model, vecnorm, extra, meta):
        write_checkpoint(ck, t, model, vecnorm, extra, meta)
        seen["checkpoint"] = _buffer(model)
        raise _Killed

    def save_final(model, vecnorm, meta, out, name):
        seen.setdefault("final", {})[out.name] = _buffer(model)
        return save_model(model, vecnorm, meta, out, name)

    monkeypatch.setattr(loop, "save_model", save_final)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # SB3's default log folder goes here
    assert tempfile.gettempdir() == str(tmp)

    tiny = [*DQN_TINY, "--algo", algo]
    assert main(["train", *tiny, "--out", str(tmp_path / "whole")]) == 0
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(callbacks, "write_checkpoint", kill_after_checkpoint)
        with pytest.raises(_Killed):
            main(["train", *tiny, "--out", str(run)])
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    at = state["timesteps"]
    assert at == 104  # the first rollout start (every 4 steps x 2 envs) at or after 100 steps
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        f"model-{at}.agent.json",
        f"model-{at}.safetensors",
        f"optimizer-{at}.pt",
        f"replay_buffer-{at}.npz",
        "state.json",
        f"vecnormalize-{at}.json",
    ]
    assert seen["checkpoint"]["pos"] == at // 2 > 0

    resume_model = loop.resume_model

    def spy_resume(run, resume_from, cls):
        resume_model(run, resume_from, cls)
        assert isinstance(run.model, DQN)
        seen["resumed"] = _buffer(run.model)

    monkeypatch.setattr(loop, "resume_model", spy_resume)
    assert main(["train", *tiny, "--out", str(run)]) == 0
    assert "resumed" in seen, "the resume did not load the replay buffer"
    ck, resumed = seen["checkpoint"], seen["resumed"]
    assert resumed.keys() == ck.keys()
    for k in ck:
        np.testing.assert_array_equal(resumed[k], ck[k], err_msg=k)
    if algo == "dqn-lag":  # costs priced by a multiplier that moved, and restored with it
        assert ck["costs"].any() and ck["lam"] > 0

    whole = json.loads((tmp_path / "whole" / "model.agent.json").read_text())["timesteps"]
    done = json.loads((run / "model.agent.json").read_text())["timesteps"]
    assert done == whole == 408  # both finish the rollout that crosses 404
    # the buffer went on from the checkpoint: as many transitions and updates as without the kill
    final = seen["final"]
    assert final["run"]["pos"] == final["whole"]["pos"] == 408 // 2
    assert final["run"]["n_updates"] == final["whole"]["n_updates"] > 0
    assert not list(tmp.glob("SB3-*")), "SB3 wrote log folders into the temp dir"
    # SB3's log: OUT/progress.csv; the resumed run keeps the rows up to its checkpoint and goes
    # on from there (DQN logs every 4 episodes counted from learn()'s start, so the steps of
    # the later rows depend on where the run was resumed)
    import csv

    def logged_steps(path):
        with open(path, newline="") as fh:
            return [int(r["time/total_timesteps"]) for r in csv.DictReader(fh)]

    steps, whole_steps = (
        logged_steps(run / "progress.csv"),
        logged_steps(tmp_path / "whole" / "progress.csv"),
    )
    assert [x for x in steps if x <= at] == [x for x in whole_steps if x <= at]
    assert steps == sorted(set(steps)) and steps[-1] > at


# ---------------------------------------------------------------------------- --init bc:POLICY
BC_TINY = [
    "--env",
    FEDLORA,
    "--algo",
    "ppo",
    "--seed",
    "5",
    "--set",
    "num_devices=6",
    "--set",
    "episode_rounds=40",
    "--n-envs",
    "8",
    "--eval-episodes",
    "1",
    "--no-progress",
    "--init",
    "bc:lyapunov",
]


@pytest.fixture(scope="module")
def cloned(tmp_path_factory):
    out = tmp_path_factory.mktemp("bc") / "run"
    rc = main(["train", *BC_TINY, "--timesteps", "0", "--out", str(out)])
    assert rc == 0
    return out


def test_bc_initialised_agent_schedules_like_its_teacher(cloned):
    meta = json.loads((cloned / "model.agent.json").read_text())
    assert meta["train_config"]["init"] == "bc:lyapunov" and meta["timesteps"] == 0
    from edgeft.agents.bc import options_for

    teacher_opts = options_for(meta["train_config"]["bc"]["teacher_options"], "lyapunov")
    assert teacher_opts == {"zeta": 30.0}  # the tuned default, keyed by its teacher
    log = [json.loads(x) for x in (cloned / "bc.jsonl").read_text().splitlines()]
    assert len(log) == meta["train_config"]["bc"]["iterations"] and log[-1]["nll"] < log[0]["nll"]
    # the VecNormalize statistics were fitted to the cloning data, not left at (0, 1)
    norm = meta["normalization"]
    assert np.ptp(norm["mean"]) > 0.1 and not np.allclose(norm["var"], 1.0)
    env = gym.make(FEDLORA, num_devices=6, episode_rounds=40, action_mode="count")
    agent = edgeft.make_policy(f"ppo:{cloned}/model.agent.json", env)
    teacher = edgeft.make_policy("lyapunov", env, **teacher_opts)
    obs, _ = env.reset(seed=123_456)  # a seed the cloning never saw
    same, acted = 0, []
    for _ in range(40):
        a, _ = agent.predict(obs, deterministic=True)
        t, _ = teacher.predict(obs, deterministic=True)
        same += int(a) == int(t)
        acted.append(int(a))
        obs, *_ = env.step(a)
    assert same >= 0.6 * 40, f"agent agrees with its teacher on {same}/40 steps"
    assert len(set(acted)) > 1  # not a constant policy


def test_bc_init_validation_errors(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                *BC_TINY,
                "--init",
                "lyapunov",
                "--timesteps",
                "0",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 2
    )
    assert "init must be 'bc:POLICY'" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                *BC_TINY,
                "--timesteps",
                "0",
                "--out",
                str(tmp_path / "b"),
                "--config",
                str(_write(tmp_path / "c.json", {"bc": {"epoch": 3}})),
            ]
        )
        == 2
    )
    assert "unknown bc setting(s) ['epoch']" in capsys.readouterr().err
    assert main(["train", *TINY, "--timesteps", "0", "--out", str(tmp_path / "d")]) == 2
    assert "timesteps must be >= 1" in capsys.readouterr().err


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def test_every_agent_a_suite_names_is_shipped_and_plays_that_suite():
    """Each suite's default agents load in the suite's env (the loader refuses an env that
    differs from the training env outside the reward-only fields, e.g. after a recalibration of
    the surrogate) and play its first rounds within the action space."""
    from edgeft.agents.loader import shipped_models

    from edgeft.episodes import make_env_and_policy
    from edgeft.suites import SUITES

    named = [(s, a) for s in SUITES.values() for a in s.agents]
    assert {a for _, a in named} <= set(shipped_models())
    assert {"ppo:fedlora-default", "ppo:fedlora-noniid", "ppo:fedlora-mobile"} <= {
        a for _, a in named
    }
    for suite, agent in named:
        sc = suite.scenarios[0]
        env, policy = make_env_and_policy(sc.env_id, sc.config, agent, seed=1)
        obs, _ = env.reset(seed=1)
        for _ in range(3):
            action, _ = policy.predict(obs, deterministic=True)
            assert env.action_space.contains(action), (suite.name, agent)
            obs, _, _, _, _ = env.step(action)


def test_teacher_options_reach_only_the_teacher_they_are_for():
    """Defaults tuned for one teacher (``{"lyapunov": {"zeta": 30}}``) must not change another
    (``lyapunov-descending`` keeps its own tuned zeta); options given flat go to any teacher."""
    from edgeft.agents.bc import make_teacher, options_for
    from edgeft.envs.fedlora.config import FedLoRAConfig

    keyed = {"lyapunov": {"zeta": 30.0}}
    assert options_for(keyed, "lyapunov") == {"zeta": 30.0}
    assert options_for(keyed, "lyapunov-descending") == {}
    assert options_for({"zeta": 5.0}, "lyapunov-descending") == {"zeta": 5.0}
    assert options_for({}, "gs") == {}
    config = FedLoRAConfig(action_mode="count")
    plain = make_teacher("lyapunov-descending", config)
    via_defaults = make_teacher(
        "lyapunov-descending", config, **options_for(keyed, "lyapunov-descending")
    )
    assert via_defaults.zeta0 == plain.zeta0 != 30.0


def test_bc_agreement_of_box_actions_is_within_a_share_of_the_range():
    """Exact equality never holds for float actions; Box actions agree within 1% of the range."""
    from types import SimpleNamespace

    from edgeft.agents.bc import BOX_AGREEMENT, _agrees
    from gymnasium import spaces

    box = SimpleNamespace(policy=SimpleNamespace(action_space=spaces.Box(-1.0, 1.0, (1,))))
    label = np.array([[0.3], [0.3], [-1.0]])
    student = np.array([[0.3 + 1.9 * BOX_AGREEMENT], [0.3 - 2.1 * BOX_AGREEMENT], [-1.0]])
    np.testing.assert_array_equal(_agrees(box, student, label)[:, 0], [True, False, True])
    disc = SimpleNamespace(policy=SimpleNamespace(action_space=spaces.Discrete(4)))
    np.testing.assert_array_equal(_agrees(disc, np.array([1, 2]), np.array([1, 3])), [True, False])
