"""The edgeft harness around the leaderboard: import hygiene, the one episode loop, policy
names, help texts, figures reruns and Ctrl-C."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import pytest

import edgeft
from edgeft import leaderboard as lb
from edgeft.suites import FEDLORA, MEC, Scenario, Suite

ROOT = Path(__file__).resolve().parents[2]


def _subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}


# ---------------------------------------------------------------------------- imports
def test_import_edgeft_loads_neither_torch_nor_cvxpy():
    code = (
        "import edgeft, sys; bad = [m for m in ('torch', 'cvxpy', 'matplotlib') "
        "if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], env=_subprocess_env(), check=True)


# ---------------------------------------------------------------------------- episode loop
def test_compare_and_leaderboard_play_the_same_episodes(tmp_path, capsys):
    from edgeft.cli import main
    from edgeft.episodes import run_episode

    config = {"num_devices": 6, "episode_rounds": 12}
    suite = Suite("cmp", 1, "fedlora", "x", (Scenario("a", FEDLORA, config),), num_seeds=1)
    lb.run_leaderboard(
        suite, ["gs"], tmp_path / "lb", backend="serial", progress=False, plots=False
    )
    # the gs row (the hindsight bound's, the costliest task, runs first)
    row = next(r for r in lb.read_rows(tmp_path / "lb" / lb.EPISODES_FILE) if r["policy"] == "gs")
    assert row["metrics"] == run_episode(FEDLORA, config, "gs", row["seed"])["metrics"]
    # compare plays seeds 0..N-1 with the same loop and prints the leaderboard's titles
    assert (
        main(
            [
                "compare",
                "--policies",
                "gs",
                "--episodes",
                "1",
                "--no-progress",
                "--set",
                "num_devices=6",
                "--set",
                "episode_rounds=12",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    loss = run_episode(FEDLORA, config, "gs", 0)["metrics"]["final_loss"]
    head, _, gs_row = printed.strip().splitlines()[-3:]
    assert "final loss" in head and "avg D/Dbar" in head and "decide (ms)" in head
    assert f"{loss:.4g}" in gs_row.split("|")[2]


def test_make_policy_reads_the_config_in_force():
    env = gym.make(FEDLORA, num_devices=6)
    user = env.unwrapped.config
    in_force = dataclasses.replace(user, delay_budget_per_bit=user.delay_budget_per_bit / 4)
    real_like = SimpleNamespace(unwrapped=SimpleNamespace(config=user, config_in_force=in_force))
    assert edgeft.make_policy("gs", real_like).config is in_force
    assert edgeft.make_policy("gs", env).config is user  # no derived values: the config itself


def test_task_cost_reads_the_family_defaults_and_the_registered_policy_cost():
    from edgeft.policy import policy_cost

    def cost(env_id, config, policy="random"):
        return lb.task_cost({"env_id": env_id, "config": config, "policy": policy})

    def size_rounds(env_id, config):  # what the env itself makes of the config
        cfg = gym.make(env_id, **config).unwrapped.config
        return getattr(cfg, "num_devices", None) or cfg.num_users, cfg.episode_rounds

    for env_id, config in (
        (FEDLORA, {}),
        (FEDLORA, {"preset": "paper"}),
        (FEDLORA, {"num_devices": 7}),
        (MEC, {}),
        (MEC, {"num_users": 9}),
        (MEC, {"preset": "paper", "episode_rounds": 3}),
    ):
        n, t = size_rounds(env_id, config)
        fam = "fedlora" if env_id == FEDLORA else "mec"
        assert cost(env_id, config) == policy_cost("random", fam) * n * t, (env_id, config)
    assert cost(FEDLORA, {"preset": "paper"}) == 50 * cost(FEDLORA, {})  # 5000 vs 100 rounds
    assert policy_cost("ppo:whatever", "mec") == 1.0


# ---------------------------------------------------------------------------- policy names
def test_a_policy_of_the_other_family_is_named_as_such():
    env = gym.make(FEDLORA)
    with pytest.raises(ValueError) as exc:
        edgeft.make_policy("fp-cccp", env)
    msg = str(exc.value)
    assert "'fp-cccp' is a policy of the mec envs, not of the fedlora envs" in msg
    for name in edgeft.list_policies("fedlora"):
        assert name in msg
    assert "greedy" not in msg.replace("fp-cccp", "")  # no MEC names in the fedlora list
    with pytest.raises(ValueError, match="unknown policy 'nosuch'; mec policies: .*fp-cccp"):
        edgeft.make_policy("nosuch", gym.make(MEC, num_users=3, num_servers=2))


def test_leaderboard_cli_lists_the_known_policies_once(capsys, tmp_path):
    from edgeft.cli import main

    rc = main(
        [
            "leaderboard",
            "--suite",
            "mec-default",
            "--policies",
            "nosuch",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "unknown policy 'nosuch'" in err
    names = [n.strip() for n in err.split("policies:", 1)[1].split(",")]
    assert names.count("resource-only") == 1 and names.count("fp-cccp") == 1
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- help texts
def _subparsers() -> dict[str, argparse.ArgumentParser]:
    from edgeft.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", ["compare", "leaderboard", "figures"])
def test_help_texts_are_true_and_complete(command):
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    sub = _subparsers()[command]
    text = sub.format_help()
    options = {s for a in sub._actions for s in a.option_strings}
    for a in sub._actions:
        assert a.help, f"{command} {a.option_strings} has no help text"
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))
    assert mentioned <= options, f"{command} --help mentions {mentioned - options}"
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    named = set(re.findall(r"edgeft\[([\w-]+)\]", text)) | set(
        re.findall(r"the ([\w-]+) extra", text)
    )
    assert named <= extras, f"{command} --help names extras {named - extras}"
    assert "issue" not in text.lower()


# ---------------------------------------------------------------------------- figures
def test_figures_with_other_options_go_to_their_own_files(tmp_path, capsys):
    from edgeft.cli import main

    base = [
        "figures",
        "--only",
        "ft-fig3",
        "--out",
        str(tmp_path),
        "--workers",
        "1",
        "--no-progress",
        "--seeds",
        "1",
        "--set",
        "num_devices=4",
    ]
    assert main([*base, "--rounds", "4"]) == 0
    first = capsys.readouterr().out
    assert main([*base, "--rounds", "5"]) == 0
    second = capsys.readouterr().out
    (p1,) = re.findall(r"wrote (\S+)", first)
    (p2,) = re.findall(r"wrote (\S+)", second)
    assert p1 != p2 and Path(p1).is_file() and Path(p2).is_file()
    assert "rounds=5" in second and "differ from the defaults" in second
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert len(runs) == 2 and all(r.startswith("ft-fig3-") for r in runs)
    for r in runs:
        rows = lb.read_rows(tmp_path / r / lb.EPISODES_FILE)
        assert {row["rounds"] for row in rows} == ({4} if r in p1 else {5})
    # the same options again: the finished run is reused, nothing is replayed
    before = (tmp_path / runs[0] / lb.EPISODES_FILE).read_text()
    assert main([*base, "--rounds", "4" if runs[0] in p1 else "5"]) == 0
    assert (tmp_path / runs[0] / lb.EPISODES_FILE).read_text() == before


def test_foreign_results_folder_error_names_what_differs(tmp_path, capsys):
    from edgeft.cli import main

    a = Suite(
        "fp",
        1,
        "fedlora",
        "x",
        (Scenario("s", FEDLORA, {"num_devices": 4, "episode_rounds": 3}),),
        num_seeds=1,
    )
    b = Suite(
        "fp",
        1,
        "fedlora",
        "x",
        (Scenario("s", FEDLORA, {"num_devices": 4, "episode_rounds": 5}),),
        num_seeds=2,
    )
    lb.run_leaderboard(a, ["gs"], tmp_path, backend="serial", progress=False, plots=False)
    with pytest.raises(lb.LeaderboardError) as exc:
        lb.run_leaderboard(b, ["gs"], tmp_path, resume=True, progress=False, plots=False)
    msg = str(exc.value)
    assert "scenarios[0].config.episode_rounds: 3 -> 5" in msg and "num_seeds: 1 -> 2" in msg
    assert "seeds:" not in msg.replace("num_seeds:", "")
    # figures: a folder under the name this run wants, holding a run of other settings (one
    # written before runs were named by their options) is reported in one line, no traceback
    old = Suite(
        "ft-fig3",
        1,
        "fedlora",
        "FT Fig. 3",
        (Scenario("paper", FEDLORA, {"num_devices": 4, "episode_rounds": 3}),),
        num_seeds=1,
    )
    lb.run_leaderboard(
        old, ["gs"], tmp_path / "figs" / "ft-fig3", backend="serial", progress=False, plots=False
    )
    rc = main(
        [
            "figures",
            "--only",
            "ft-fig3",
            "--out",
            str(tmp_path / "figs"),
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "holds a run of suite ft-fig3 v1 with other settings (" in err
    assert "scenarios[0].config.episode_rounds: 3 -> 100" in err


# ---------------------------------------------------------------------------- Ctrl-C
_CLI_SCRIPT = """
import signal
import sys
# Ctrl-C as in a terminal, even where this test runs as a background job (which starts with
# SIGINT ignored, and Python then installs no KeyboardInterrupt handler)
signal.signal(signal.SIGINT, signal.default_int_handler)
from edgeft import suites
from edgeft.cli import main
from edgeft.suites import FEDLORA, Scenario, Suite
suites.SUITES["int-fedlora"] = Suite("int-fedlora", 1, "fedlora", "test suite",
    (Scenario("k20", FEDLORA, {"episode_rounds": 150}),), num_seeds=8)
if __name__ == "__main__":
    sys.exit(main(["leaderboard", *sys.argv[1:]]))
"""


def test_ctrl_c_prints_one_line_with_the_resume_command(tmp_path):
    script = tmp_path / "cli.py"
    script.write_text(_CLI_SCRIPT)
    out = tmp_path / "run"
    episodes = out / lb.EPISODES_FILE
    cmd = [
        sys.executable,
        str(script),
        "--suite",
        "int-fedlora",
        "--policies",
        "lyapunov,gs",
        "--out",
        str(out),
        "--workers",
        "2",
        "--no-plots",
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd,
        env=_subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (episodes.is_file() and episodes.read_text()):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    saved = len(episodes.read_text().splitlines())
    assert 1 <= saved < 32  # 2 policies + random and hindsight (the score's anchors) x 8 seeds
    assert f"interrupted; {saved} of 32 episodes of int-fedlora are saved in {out}" in lines[0]
    resume = lines[0].split("Continue with: ")[1]
    assert resume == (
        f"edgeft leaderboard --suite int-fedlora --out {out} --resume "
        "--policies lyapunov,gs --workers 2 --no-plots --no-progress"
    )
    # the printed command finishes the run
    args = resume.split()[2:]
    subprocess.run(
        [sys.executable, str(script), *args], env=_subprocess_env(), check=True, capture_output=True
    )
    rows = lb.read_rows(episodes)
    assert len(rows) == 32 and len({lb.task_key(r) for r in rows}) == 32
    assert json.loads((out / "summary.json").read_text())["episodes"] == 32


def test_mec_fig2_bars_are_energy_summed_and_delay_averaged_over_users(tmp_path, capsys):
    """What the mec-fig2 labels say, against a plain loop over the env's per-user info."""
    import numpy as np

    from edgeft.cli import main
    from edgeft.figures import MEC_LABELS
    from edgeft.suites import TEST_SEED_BASE

    assert (
        main(
            [
                "figures",
                "--only",
                "mec-fig2",
                "--users",
                "4",
                "--servers",
                "2",
                "--seeds",
                "2",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    line = next(x for x in capsys.readouterr().out.splitlines() if "(fp-cccp)" in x)
    shown = dict(re.findall(r"(\w+) ([-+.e\d]+)", line.split(": ", 1)[1]))
    energy, delay = [], []
    for seed in (TEST_SEED_BASE, TEST_SEED_BASE + 1):
        env = gym.make(MEC, num_users=4, num_servers=2, episode_rounds=1)
        policy = edgeft.make_policy("fp-cccp", env, seed=seed)
        obs, _ = env.reset(seed=seed)
        info = env.step(policy.predict(obs, deterministic=True)[0])[4]
        energy.append(np.sum(info["energy"]))
        delay.append(np.mean(info["delay"]))
    assert float(shown["energy"]) == pytest.approx(np.mean(energy), rel=1e-3)
    assert float(shown["delay"]) == pytest.approx(np.mean(delay), rel=1e-3)
    assert "sum over users" in MEC_LABELS["energy"] and "mean over users" in MEC_LABELS["delay"]
    assert 0.0 < float(shown["upload_energy_share"]) <= 1.0
    assert len(list(tmp_path.glob("mec-fig2-*.png"))) == 1
