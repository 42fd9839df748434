"""Loading runs no code from a file unless the user opts in.

Booby-trapped files (a model zip whose ``data`` entry unpickles to code that writes a marker
file; agent files naming classes off the allow-list or a ``__reduce__`` key; checkpoint states
naming files outside the run; pickled VecNormalize statistics) are refused with a clear error and
the marker never appears; the opt-in loads the legacy zip (and the marker shows its code ran).
Also: the algorithm in a file against the prefix, missing normalisation statistics, a plain-SB3
model exported and played on the leaderboard, the shipped agents playing the actions they played
before the conversion, and the checkpoint files restoring state exactly.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from edgeft.agents import agent_format as af
from edgeft.agents.loader import load_policy, save_for_leaderboard

import edgeft
from edgeft import leaderboard as lb
from edgeft.cli import main
from edgeft.suites import FEDLORA, Scenario, Suite
from edgeft.train import files as train_files

SMALL = {"num_devices": 6, "episode_rounds": 16, "action_mode": "count"}
SET = [x for k, v in SMALL.items() for x in ("--set", f"{k}={v}")]
DATA = Path(__file__).resolve().parent / "data"


class _Payload:
    """Unpickles to ``exec`` of code that writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _pickled_payload(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


def _trap_zip(src: Path, dst: Path, marker: Path) -> Path:
    """``src`` (an SB3 zip) with one ``data`` entry replaced by the payload, as SB3 stores
    objects it cannot write as JSON (base64 of a pickle)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            blob = zin.read(item.filename)
            if item.filename == "data":
                data = json.loads(blob)
                data["_last_original_obs"] = {
                    ":type:": "<class 'NoneType'>",
                    ":serialized:": base64.b64encode(_pickled_payload(marker)).decode(),
                }
                blob = json.dumps(data).encode()
            zout.writestr(item, blob)
    return dst


@pytest.fixture(autouse=True)
def _no_trust(monkeypatch):
    """Every test starts without the opt-in (and whatever a test sets is undone)."""
    monkeypatch.setenv(af.TRUST_ENV, "0")


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A PPO model trained with plain stable-baselines3 for 256 steps behind VecNormalize on a
    small FedLoRA env, saved with model.save and VecNormalize.save."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    folder = tmp_path_factory.mktemp("plain")
    venv = VecNormalize(DummyVecEnv([lambda: gym.make(FEDLORA, **SMALL)] * 2), gamma=0.9)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=64,
        batch_size=64,
        n_epochs=2,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [32, 32]},
    )
    model.set_logger(Logger(None, []))
    model.learn(256)
    model.save(folder / "tiny_ppo.zip")
    venv.save(str(folder / "vecnormalize.pkl"))
    return {"folder": folder, "model": model, "venv": venv}


@pytest.fixture(scope="module")
def legacy(plain, tmp_path_factory):
    """The plain model as an earlier ``edgeft train`` saved it: zip + config + statistics."""
    folder = tmp_path_factory.mktemp("legacy")
    shutil.copy(plain["folder"] / "tiny_ppo.zip", folder / "ppo-run.zip")
    venv = plain["venv"]
    env = gym.make(FEDLORA, **SMALL)
    from edgeft.agents.loader import config_to_dict
    from edgeft.envs.common import config_in_force

    (folder / "ppo-run.config.json").write_text(
        json.dumps(
            {
                "env_id": FEDLORA,
                "algo": "ppo",
                "obs_transform": "none",
                "env_config": config_to_dict(config_in_force(env)),
                "train_config": {"normalize_obs": True},
            }
        )
    )
    (folder / "ppo-run.norm.json").write_text(json.dumps(af.normalization_of(venv)))
    return folder


def _env():
    return gym.make(FEDLORA, **SMALL)


def _observations(n: int = 40) -> np.ndarray:
    env = _env()
    env.action_space.seed(0)
    obs, _ = env.reset(seed=5)
    out = []
    for _ in range(n):
        out.append(obs)
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            obs, _ = env.reset()
    return np.stack(out)


# ---------------------------------------------------------------------------- legacy zips
def test_booby_trapped_zip_runs_nothing_without_the_opt_in(legacy, tmp_path, capsys):
    marker = tmp_path / "marker"
    evil = _trap_zip(legacy / "ppo-run.zip", tmp_path / "evil.zip", marker)
    for kind in ("config", "norm"):
        shutil.copy(legacy / f"ppo-run.{kind}.json", tmp_path / f"evil.{kind}.json")
    name = f"ppo:{evil}"
    with pytest.raises(af.UntrustedCodeError) as err:
        edgeft.make_policy(name, _env())
    msg = str(err.value)
    assert "\n" not in msg and "runs any code" in msg
    for opt_in in (
        "--trust-agent-code",
        "EDGEFT_TRUST_AGENT_CODE=1",
        "trust_code=True",
        "edgeft export",
    ):
        assert opt_in in msg
    with pytest.raises(af.UntrustedCodeError):
        load_policy("ppo", str(evil), _env())
    # the leaderboard's policy check, compare and export refuse it with that line
    rc = main(
        [
            "leaderboard",
            "--suite",
            "fedlora-default",
            "--policies",
            name,
            "--out",
            str(tmp_path / "lb"),
            "--backend",
            "serial",
            "--no-plots",
            "--no-progress",
        ]
    )
    err_text = capsys.readouterr().err
    assert rc == 2 and "cannot play suite" in err_text and "runs any code" in err_text
    assert not (tmp_path / "lb" / "episodes.jsonl").exists()
    assert main(["compare", "--policies", name, "--episodes", "1", "--no-progress", *SET]) == 2
    assert "runs any code" in capsys.readouterr().err
    assert main(["export", name, "--out", str(tmp_path / "x")]) == 2
    assert "runs any code" in capsys.readouterr().err
    assert not marker.exists(), "the payload ran without the opt-in"

    # the opt-in loads it, and so runs its code: the marker shows the test's trap is live
    policy = edgeft.make_policy(name, _env(), trust_code=True)
    assert marker.read_text() == "ran"
    obs = _observations(3)
    assert policy.predict(obs, deterministic=True)[0].shape == (3,)
    marker.unlink()
    os.environ[af.TRUST_ENV] = "1"  # undone by the autouse fixture
    from edgeft.agents.loader import _MODEL_CACHE

    _MODEL_CACHE.clear()
    edgeft.make_policy(name, _env())
    assert marker.exists()


def test_leaderboard_flag_opts_in(legacy, tmp_path, capsys):
    suite = Suite(
        "trust-test",
        1,
        "fedlora",
        "test",
        (Scenario("k6", FEDLORA, {k: v for k, v in SMALL.items() if k != "action_mode"}),),
        num_seeds=1,
    )
    name = f"ppo:{legacy / 'ppo-run.zip'}"
    with pytest.raises(lb.LeaderboardError, match="runs any code"):
        lb.run_leaderboard(
            suite,
            [name],
            tmp_path / "a",
            backend="serial",
            progress=False,
            plots=False,
            score=False,
        )
    from edgeft.leaderboard.cli import trusting_agent_code

    with trusting_agent_code():
        s = lb.run_leaderboard(
            suite,
            [name],
            tmp_path / "b",
            backend="serial",
            progress=False,
            plots=False,
            score=False,
        )
    assert os.environ[af.TRUST_ENV] == "0"  # restored after the run
    assert s["results"][0]["episodes"] == 1


def test_legacy_zip_algorithm_and_statistics_are_checked(plain, legacy, tmp_path):
    # the zip holds PPO: a2c: refuses it, even when its config file says a2c
    folder = tmp_path / "m"
    shutil.copytree(legacy, folder)
    meta = json.loads((folder / "ppo-run.config.json").read_text())
    (folder / "ppo-run.config.json").write_text(json.dumps({**meta, "algo": "a2c"}))
    with pytest.raises(ValueError, match="holds a PPO model, not A2C; load it as ppo:"):
        load_policy("a2c", str(folder / "ppo-run.zip"), _env(), trust_code=True)
    (folder / "ppo-run.config.json").write_text(json.dumps(meta))
    # statistics it was trained with, missing: refused (config says so, or the model shows it)
    (folder / "ppo-run.norm.json").unlink()
    with pytest.raises(ValueError, match="ppo-run.norm.json is not beside it"):
        load_policy("ppo", str(folder / "ppo-run.zip"), _env(), trust_code=True)
    (folder / "ppo-run.config.json").write_text(
        json.dumps({k: v for k, v in meta.items() if k != "train_config"})
    )
    with pytest.raises(ValueError, match="trained with observation normalisation"):
        load_policy("ppo", str(folder / "ppo-run.zip"), _env(), trust_code=True)
    # incomplete descriptions get errors that name the field
    (folder / "ppo-run.config.json").write_text(json.dumps({**meta, "obs_transform": None}))
    with pytest.raises(ValueError, match=r"obs_transform must be one of .*'none'.* got None"):
        load_policy("ppo", str(folder / "ppo-run.zip"), _env(), trust_code=True)
    bad = {
        **meta,
        "env_config": {k: v for k, v in meta["env_config"].items() if k != "action_mode"},
    }
    (folder / "ppo-run.config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="env_config.action_mode"):
        load_policy("ppo", str(folder / "ppo-run.zip"), _env(), trust_code=True)
    # a plain SB3 zip (no description beside it): refused, then pointed to edgeft export
    name = f"ppo:{plain['folder'] / 'tiny_ppo.zip'}"
    with pytest.raises(af.UntrustedCodeError):
        edgeft.make_policy(name, _env())
    with pytest.raises(FileNotFoundError, match="no edgeft description .*`edgeft export"):
        edgeft.make_policy(name, _env(), trust_code=True)


@pytest.mark.parametrize(
    "algo, env_kw",
    [
        ("ppo", {}),
        ("a2c", {}),
        ("dqn", {}),
        ("sac", {"action_mode": "score"}),
        ("td3", {"action_mode": "score"}),
    ],
)
def test_the_algorithm_of_a_zip_is_read_without_unpickling(tmp_path, algo, env_kw):
    cls = af.algo_class(algo)
    env = gym.make(
        FEDLORA,
        num_devices=4,
        episode_rounds=4,
        **({"action_mode": "count"} if not env_kw else env_kw),
    )
    model = cls(
        "MlpPolicy",
        env,
        device="cpu",
        **({"buffer_size": 100} if algo in ("sac", "td3", "dqn") else {}),
    )
    model.save(tmp_path / "m.zip")
    assert af.legacy_zip_algo(tmp_path / "m.zip") == algo


# ---------------------------------------------------------------------------- agent files
@pytest.fixture(scope="module")
def agent(plain, tmp_path_factory):
    """The plain model saved with save_for_leaderboard."""
    folder = tmp_path_factory.mktemp("agent")
    path = save_for_leaderboard(plain["model"], _env(), folder / "tiny", vecnormalize=plain["venv"])
    assert path == folder / "tiny.agent.json"
    return path


def _edited(agent: Path, tmp_path: Path, edit) -> Path:
    doc = json.loads(agent.read_text())
    edit(doc)
    shutil.copy(agent.with_name("tiny.safetensors"), tmp_path / "tiny.safetensors")
    out = tmp_path / "tiny.agent.json"
    out.write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize(
    "edit, error",
    [
        (
            lambda d: d["policy"]["kwargs"].update(activation_fn={"$class": "os.system"}),
            r"names the class 'os.system', which is not on the allow-list",
        ),
        (
            lambda d: d["policy"].update({"class": "builtins.eval"}),
            r"policy class 'builtins.eval' is not on the allow-list for ppo",
        ),
        (
            lambda d: d["policy"]["kwargs"].update(
                __reduce__=["builtins.exec", "open('marker', 'w')"]
            ),
            r"names starting with '__' are refused",
        ),
        (
            lambda d: d["policy"]["kwargs"].update(features_extractor_class={"$pickle": "gAWV"}),
            r"unknown marker '\$pickle'",
        ),
        (
            lambda d: d["policy"]["kwargs"].update(
                features_extractor_kwargs={":serialized:": "PAYLOAD"}
            ),
            r"policy MlpPolicy refuses the arguments",
        ),
        (
            lambda d: d["weights"].update(file="../../outside.safetensors"),
            r"is not a plain file name",
        ),
        (lambda d: d["weights"].update(sha256="0" * 64), r"SHA-256 differs"),
        (lambda d: d.update(algo="a2c"), r"trained with a2c, not ppo"),
        (lambda d: d.update(normalization=None), r"holds no normalization statistics"),
        (lambda d: d.update(format_version=99), r"newer than this edgeft reads"),
    ],
)
def test_agent_files_off_the_format_are_refused(agent, tmp_path, edit, error):
    marker = tmp_path / "marker"
    payload = base64.b64encode(_pickled_payload(marker)).decode()

    def edit_with_payload(doc):
        edit(doc)
        text = json.dumps(doc).replace("PAYLOAD", payload).replace("'marker'", repr(str(marker)))
        doc.clear()
        doc.update(json.loads(text))

    path = _edited(agent, tmp_path, edit_with_payload)
    if "normalization" in error:  # a file that says it learned on normalised observations
        doc = json.loads(path.read_text())
        doc["train_config"] = {"normalize_obs": True}
        path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=error):
        load_policy("ppo", str(path), _env())
    assert not marker.exists()


def test_weights_linked_from_outside_the_folder_are_refused(agent, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(agent.with_name("tiny.safetensors"), outside / "w.safetensors")
    inside = tmp_path / "inside"
    inside.mkdir()
    shutil.copy(agent, inside / "tiny.agent.json")
    (inside / "tiny.safetensors").symlink_to(outside / "w.safetensors")
    with pytest.raises(ValueError, match="is a link to .* outside"):
        load_policy("ppo", str(inside / "tiny.agent.json"), _env())


def test_save_for_leaderboard_plays_like_the_model(plain, agent):
    obs = _observations()
    want, _ = plain["model"].predict(plain["venv"].normalize_obs(obs), deterministic=True)
    for name in (agent, agent.with_name("tiny"), agent.with_name("tiny.safetensors")):
        policy = edgeft.make_policy(f"ppo:{name}", _env())
        np.testing.assert_array_equal(policy.predict(obs, deterministic=True)[0], want)
    doc = json.loads(agent.read_text())
    assert doc["env_config"]["num_devices"] == 6 and doc["env_config"]["action_mode"] == "count"
    assert doc["policy"]["class"] == "MlpPolicy" and doc["algo"] == "ppo"
    # a model in memory brings the VecNormalize it trains behind
    attached = save_for_leaderboard(plain["model"], _env(), agent.with_name("attached"))
    assert json.loads(attached.read_text())["normalization"] == doc["normalization"]
    # a loaded one does not: the statistics it needs, not given, are refused
    from stable_baselines3 import PPO

    loaded = PPO.load(plain["folder"] / "tiny_ppo.zip", device="cpu")  # the test's own file
    with pytest.raises(ValueError, match="learned on VecNormalize-d observations"):
        save_for_leaderboard(loaded, _env(), agent.with_name("nostats"))
    assert not agent.with_name("nostats.agent.json").exists()
    # a model of another action space, or another transform
    with pytest.raises(ValueError, match="build the env in the action mode"):
        save_for_leaderboard(
            plain["model"],
            gym.make(FEDLORA, num_devices=6, episode_rounds=16),
            agent.with_name("x"),
            vecnormalize=plain["venv"],
        )
    with pytest.raises(ValueError, match="pass the obs_transform it was trained on"):
        save_for_leaderboard(
            plain["model"],
            _env(),
            agent.with_name("x"),
            obs_transform="prefix-delay",
            vecnormalize=plain["venv"],
        )


def test_export_then_leaderboard_round_trip(plain, tmp_path, capsys):
    """The documented path: plain SB3 -> edgeft export -> the leaderboard."""
    folder = plain["folder"]
    base = [
        "export",
        f"ppo:{folder / 'tiny_ppo.zip'}",
        "--env",
        FEDLORA,
        *SET,
        "--trust-agent-code",
        "--out",
        str(tmp_path / "mine"),
    ]
    assert main(base) == 2  # trained behind VecNormalize: the statistics are needed
    assert "learned on VecNormalize-d observations" in capsys.readouterr().err
    # the VecNormalize pickle is read only with the opt-in
    assert (
        main(
            [
                "export",
                f"ppo:{folder / 'tiny_ppo.zip'}",
                "--env",
                FEDLORA,
                *SET,
                "--vecnormalize",
                str(folder / "vecnormalize.pkl"),
                "--out",
                str(tmp_path / "y"),
            ]
        )
        == 2
    )
    assert "runs any code" in capsys.readouterr().err
    # --suite takes the suite's env: K = 20 there, not the model's 6
    vn = ["--vecnormalize", str(folder / "vecnormalize.pkl")]
    suite = [
        "export",
        f"ppo:{folder / 'tiny_ppo.zip'}",
        "--trust-agent-code",
        *vn,
        "--out",
        str(tmp_path / "z"),
        "--suite",
        "fedlora-default",
        "--set",
        "action_mode=count",
    ]
    assert main(suite) == 2
    assert "build the env the model was trained in" in capsys.readouterr().err
    assert main([*suite, "--scenario", "nope"]) == 2
    assert "suite fedlora-default has no scenario 'nope'" in capsys.readouterr().err
    assert main([*base, *vn]) == 0
    out = capsys.readouterr().out
    assert f"edgeft leaderboard --policies ppo:{tmp_path / 'mine.agent.json'}" in out
    name = f"ppo:{tmp_path / 'mine.agent.json'}"
    obs = _observations()
    want, _ = plain["model"].predict(plain["venv"].normalize_obs(obs), deterministic=True)
    got, _ = edgeft.make_policy(name, _env()).predict(obs, deterministic=True)
    np.testing.assert_array_equal(got, want)
    suite = Suite(
        "export-test",
        1,
        "fedlora",
        "test",
        (Scenario("k6", FEDLORA, {"num_devices": 6, "episode_rounds": 16}),),
        num_seeds=2,
    )
    s = lb.run_leaderboard(
        suite, ["gs", name], tmp_path / "lb", backend="serial", progress=False, plots=False
    )
    row = next(e for e in s["results"] if e["policy"] == name)
    assert row["episodes"] == 2 and 0 <= row["metrics"]["avg_scheduled"]["mean"] <= 6


# ---------------------------------------------------------------------------- shipped agents
def test_shipped_agents_are_safe_files_and_play_their_recorded_actions():
    from edgeft.agents.loader import MODELS_DIR, shipped_models

    suffixes = [p.suffix for p in MODELS_DIR.iterdir() if p.is_file()]
    shipped = len(shipped_models())
    assert shipped >= 4 and sorted(set(suffixes)) == [".json", ".safetensors"]  # no zips, pickles
    assert suffixes.count(".json") == suffixes.count(".safetensors") == shipped
    recorded = np.load(DATA / "shipped_agent_actions.npz", allow_pickle=False)
    names = sorted({k.split("/")[0] for k in recorded.files})
    assert sorted(n.replace("-", ":", 1) for n in names) == sorted(shipped_models())
    for name in names:
        algo, _, model = name.partition("-")
        doc = af.read_agent(MODELS_DIR / f"{name}.agent.json")
        env = gym.make(doc["env_id"], config=doc["env_config"])
        policy = edgeft.make_policy(f"{algo}:{model}", env)
        obs = recorded[f"{name}/observations"].astype(np.float64)
        actions, _ = policy.predict(obs, deterministic=True)
        want = recorded[f"{name}/actions"]
        if np.issubdtype(want.dtype, np.floating):
            # a Box action is a float32 network's output: CPUs with other vector instructions
            # round its sums differently in the last bits (2e-7 seen), nothing more
            np.testing.assert_allclose(actions, want, rtol=0, atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(actions, want, err_msg=name)
        assert len({a.tobytes() for a in np.asarray(actions)}) > 3, name  # not one action


# ---------------------------------------------------------------------------- checkpoints
TINY = [
    "train",
    "--env",
    FEDLORA,
    "--algo",
    "ppo",
    "--seed",
    "1",
    *SET,
    "--n-envs",
    "2",
    "--hp",
    "n_steps=32",
    "--hp",
    "batch_size=64",
    "--hp",
    "n_epochs=1",
    "--eval-episodes",
    "0",
    "--no-progress",
    "--timesteps",
    "512",
    "--checkpoint-every",
    "64",
]


class _Killed(Exception):
    pass


@pytest.fixture
def interrupted(tmp_path, monkeypatch):
    """A run folder killed right after its first checkpoint."""
    from edgeft.train import callbacks

    write = callbacks.write_checkpoint

    def kill(*args):
        write(*args)
        raise _Killed

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(callbacks, "write_checkpoint", kill)
        with pytest.raises(_Killed):
            main([*TINY, "--out", str(out)])
    return out


def _retarget(out: Path, key: str, name: str) -> None:
    path = out / "checkpoints" / "state.json"
    state = json.loads(path.read_text())
    state["files"][key] = name
    path.write_text(json.dumps(state))


def test_checkpoint_state_naming_files_outside_the_run_is_refused(interrupted, tmp_path, capsys):
    out, marker = interrupted, tmp_path / "marker"
    (tmp_path / "outside.pkl").write_bytes(_pickled_payload(marker))
    state = (out / "checkpoints" / "state.json").read_text()
    for name in ("../../outside.pkl", str(tmp_path / "outside.pkl"), ".."):
        _retarget(out, "vecnormalize", name)
        assert main([*TINY, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "is not a plain file name" in err and "vecnormalize" in err
    # a link out of the folder
    (out / "checkpoints" / "state.json").write_text(state)
    vn = json.loads(state)["files"]["vecnormalize"]
    (out / "checkpoints" / vn).unlink()
    (out / "checkpoints" / vn).symlink_to(tmp_path / "outside.pkl")
    assert main([*TINY, "--out", str(out)]) == 2
    assert "outside" in capsys.readouterr().err
    # a pickled VecNormalize file inside the folder, named by a current state.json
    (out / "checkpoints" / vn).unlink()
    (out / "checkpoints" / "vecnormalize.pkl").write_bytes(_pickled_payload(marker))
    _retarget(out, "vecnormalize", "vecnormalize.pkl")
    assert main([*TINY, "--out", str(out)]) == 2
    assert "pickled statistics are not read" in capsys.readouterr().err
    # unknown file kinds, and a checkpoints folder that links elsewhere
    _retarget(out, "code", "x.py")
    assert main([*TINY, "--out", str(out)]) == 2
    assert "unknown file kinds ['code']" in capsys.readouterr().err
    elsewhere = tmp_path / "elsewhere"
    shutil.move(out / "checkpoints", elsewhere)
    (out / "checkpoints").symlink_to(elsewhere)
    assert main([*TINY, "--out", str(out)]) == 2
    assert "outside" in capsys.readouterr().err
    assert not marker.exists()


def test_pickled_checkpoints_of_earlier_versions_need_the_opt_in(interrupted, tmp_path, capsys):
    out, marker = interrupted, tmp_path / "marker"
    ck = out / "checkpoints"
    for p in ck.iterdir():
        p.unlink()
    (ck / "model.zip").write_bytes(b"PK")
    (ck / "vecnormalize.pkl").write_bytes(_pickled_payload(marker))
    (ck / "state.json").write_text(json.dumps({"timesteps": 64}))  # an earlier version's
    assert main([*TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "checkpoint of an earlier edgeft, in pickle files" in err
    assert "EDGEFT_TRUST_AGENT_CODE=1" in err and not marker.exists()


def test_resume_restores_every_state_exactly(interrupted, monkeypatch):
    """The resumed model's weights, optimiser state, counters and VecNormalize statistics are
    those of the checkpoint (written from the model in memory, compared here bit for bit)."""
    from edgeft.train import loop

    state = json.loads((interrupted / "checkpoints" / "state.json").read_text())
    ck = interrupted / "checkpoints"
    seen = {}
    resume = loop.resume_model

    def spy(run, resume_from, cls):
        resume(run, resume_from, cls)
        seen["model"], seen["vecnorm"] = run.model, run.vecnorm
        raise _Killed

    monkeypatch.setattr(loop, "resume_model", spy)
    with pytest.raises(_Killed):
        main([*TINY, "--out", str(interrupted)])
    model, vecnorm = seen["model"], seen["vecnorm"]
    weights = af.load_weights(
        ck / state["files"]["model"], af.read_agent(ck / state["files"]["model"])
    )
    for k, v in model.policy.state_dict().items():
        assert torch.equal(v, weights[k]), k
    saved_opt = torch.load(ck / state["files"]["optimizer"], weights_only=True)
    opt = model.policy.optimizer.state_dict()
    want = saved_opt["state_dicts"]["policy.optimizer"]
    assert opt["param_groups"] == want["param_groups"]
    for i, s in want["state"].items():
        for k, v in s.items():
            assert torch.equal(opt["state"][i][k], v)
    assert model.num_timesteps == state["timesteps"] == state["algorithm"]["num_timesteps"]
    assert model._n_updates == state["algorithm"]["_n_updates"] > 0
    vn = json.loads((ck / state["files"]["vecnormalize"]).read_text())
    np.testing.assert_array_equal(vecnorm.obs_rms.mean, vn["obs_rms"]["mean"])
    np.testing.assert_array_equal(vecnorm.obs_rms.var, vn["obs_rms"]["var"])
    assert vecnorm.obs_rms.count == vn["obs_rms"]["count"] and vecnorm.training


def _assert_same(a, b, where: str) -> None:
    """Nested state dicts equal: tensors bit for bit, the rest by ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a, key=str) == sorted(b, key=str), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_sac_checkpoint_files_round_trip_exactly(tmp_path):
    """Off-policy state through the checkpoint files: the policy, both optimisers, the entropy
    coefficient and its optimiser, the counters and the replay buffer, into a fresh model."""
    from stable_baselines3 import SAC

    env = gym.make(FEDLORA, num_devices=4, episode_rounds=8, action_mode="score")
    kw = {"learning_starts": 16, "batch_size": 16, "buffer_size": 200, "device": "cpu", "seed": 0}
    model = SAC("MlpPolicy", env, **kw)
    from stable_baselines3.common.logger import Logger

    model.set_logger(Logger(None, []))
    model.learn(64)
    meta = {"env_id": FEDLORA, "obs_transform": "none", "env_config": {"action_mode": "score"}}
    ck = tmp_path / "ck"
    train_files.write_checkpoint(ck, 64, model, None, {}, meta)
    state = json.loads((ck / "state.json").read_text())
    files = train_files.checkpoint_files(ck, state)
    fresh = SAC("MlpPolicy", env, **{**kw, "seed": 1})
    doc = af.read_agent(files["model"])
    train_files.load_optimizers(fresh, files["optimizer"], af.load_weights(files["model"], doc))
    train_files.restore_counters(fresh, state["algorithm"])
    train_files.load_replay_buffer(fresh.replay_buffer, files["replay_buffer"])
    params, restored = model.get_parameters(), fresh.get_parameters()
    assert sorted(params) == ["actor.optimizer", "critic.optimizer", "ent_coef_optimizer", "policy"]
    for name in params:
        _assert_same(params[name], restored[name], name)
    assert torch.equal(model.log_ent_coef, fresh.log_ent_coef)
    assert (fresh.num_timesteps, fresh._n_updates) == (model.num_timesteps, model._n_updates)
    for k in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        np.testing.assert_array_equal(
            getattr(fresh.replay_buffer, k), getattr(model.replay_buffer, k), err_msg=k
        )
    assert (fresh.replay_buffer.pos, fresh.replay_buffer.full) == (
        model.replay_buffer.pos,
        model.replay_buffer.full,
    )
    # an object array in a replay buffer file is not unpickled
    np.savez(
        tmp_path / "obj.npz",
        format_version=np.array(1),
        pos=np.array(0),
        full=np.array(False),
        **{"array.observations": np.array([_Payload(tmp_path / "marker")], dtype=object)},
    )
    with pytest.raises(ValueError, match="allow_pickle"):
        train_files.load_replay_buffer(fresh.replay_buffer, tmp_path / "obj.npz")
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize(
    "algo, policy, env_kw, transform",
    [
        ("ppo", "MlpPolicy", {"action_mode": "count"}, "none"),
        ("a2c", "MlpPolicy", {"action_mode": "subset"}, "none"),
        ("dqn", "MlpPolicy", {"action_mode": "count"}, "none"),
        ("sac", "MlpPolicy", {"action_mode": "score"}, "none"),
        ("td3", "MlpPolicy", {"action_mode": "bandwidth"}, "none"),
        ("ppo", "fedlora-shared", {"action_mode": "score"}, "fedlora-devices"),
        ("sac", "fedlora-shared", {"action_mode": "score"}, "fedlora-devices"),
        ("td3", "fedlora-shared", {"action_mode": "score"}, "fedlora-devices"),
    ],
)
def test_every_algorithm_and_policy_round_trips_through_the_agent_files(
    tmp_path, algo, policy, env_kw, transform
):
    """A fresh (randomly initialised) model of each algorithm and policy class, written and
    read back: the same weights, class and arguments, and the same deterministic actions."""
    from edgeft.agents.policies import policy_for
    from edgeft.agents.wrappers import FeatureObservation

    env = gym.make(FEDLORA, num_devices=4, episode_rounds=4, **env_kw)
    feats = FeatureObservation(env, transform) if transform != "none" else env
    cls = af.algo_class(algo)
    kw = {"buffer_size": 100} if algo in ("sac", "td3", "dqn") else {}
    pol = policy if policy == "MlpPolicy" else policy_for(policy, algo)
    policy_kwargs = (
        {"net_arch": [16, 8], "activation_fn": torch.nn.ReLU}
        if (policy == "MlpPolicy")
        else {"embed_dim": 8, "hidden_dim": 8}
    )
    model = cls(pol, feats, device="cpu", seed=3, policy_kwargs=policy_kwargs, **kw)
    meta = {
        "env_id": FEDLORA,
        "obs_transform": transform,
        "env_config": {"action_mode": env_kw["action_mode"]},
    }
    path = af.write_agent(tmp_path / "a", model, meta, None)
    doc = af.read_agent(path)
    assert doc["policy"]["class"] == policy and doc["algo"] == algo
    loaded = af.load_agent(path)
    assert type(loaded.policy) is type(model.policy)
    want = model.policy.state_dict()
    got = loaded.policy.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    obs = np.stack([feats.observation_space.sample() for _ in range(20)]).clip(-5, 5)
    np.testing.assert_array_equal(
        loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0]
    )
