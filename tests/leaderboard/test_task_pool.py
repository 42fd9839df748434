"""Several suites in one task pool, the order of tasks, the shipped package, the Ray options'
checks and what a worker imports (no Ray needed; the Ray cluster test is test_ray_cluster.py)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import edgeft
from edgeft import leaderboard as lb
from edgeft import suites
from edgeft.leaderboard import backends, runner
from edgeft.suites import FEDLORA, MEC, Scenario, Suite
from tests.leaderboard.test_leaderboard import deterministic_view

ROOT = Path(__file__).resolve().parents[2]
FL = Suite(
    "pool-fedlora",
    1,
    "fedlora",
    "test suite",
    (
        Scenario("k6", FEDLORA, {"num_devices": 6, "episode_rounds": 8}),
        Scenario("k10", FEDLORA, {"num_devices": 10, "episode_rounds": 8}),
    ),
    num_seeds=2,
)
FL2 = Suite(
    "pool-fedlora-b",
    1,
    "fedlora",
    "test suite",
    (Scenario("k8", FEDLORA, {"num_devices": 8, "episode_rounds": 6}),),
    num_seeds=2,
)
MC = Suite(
    "pool-mec",
    1,
    "mec",
    "test suite",
    (Scenario("n4", MEC, {"num_users": 4, "num_servers": 2, "episode_rounds": 2}),),
    num_seeds=2,
)
KW = {"progress": False, "plots": False}


@pytest.fixture
def registered(monkeypatch):
    for s in (FL, FL2, MC):
        monkeypatch.setitem(suites.SUITES, s.name, s)


def _hide_edgeft(folder: Path) -> Path:
    """A sitecustomize that removes an editable install's finder: an interpreter without edgeft
    (where the source tree is not on sys.path either)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path\n"
        "                    if 'edgeft' not in getattr(f, '__module__', '')]\n"
    )
    return folder


# ---------------------------------------------------------------------------- one pool
def test_several_suites_run_as_one_pool_with_the_files_of_single_runs(
    tmp_path, monkeypatch, registered
):
    from edgeft.cli import main

    pols = ["gs", "lyapunov"]
    for s in (FL, FL2):
        lb.run_leaderboard(s, pols, tmp_path / "alone" / s.name, workers=2, **KW)
    calls = []
    real = runner.execute

    def spy(tasks, **kw):
        calls.append([t["suite"] for t in tasks])
        return real(tasks, **kw)

    monkeypatch.setattr(runner, "execute", spy)
    out = tmp_path / "cli"
    assert (
        main(
            [
                "leaderboard",
                "--suite",
                f"{FL.name},{FL2.name}",
                "--policies",
                ",".join(pols),
                "--out",
                str(out),
                "--workers",
                "2",
                "--no-plots",
                "--no-progress",
            ]
        )
        == 0
    )
    assert len(calls) == 1  # one execute over the tasks of both suites
    assert sorted(set(calls[0])) == sorted([FL.name, FL2.name])
    for s in (FL, FL2):
        assert deterministic_view(out / s.name) == deterministic_view(tmp_path / "alone" / s.name)
        for f in ("summary.md", "index.html", "run.json"):
            assert (out / s.name / f).is_file()


def test_suites_of_both_families_in_one_pool_match_single_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(
        runner,
        "default_policies",
        lambda s: ["gs", "lyapunov"] if s.family == "fedlora" else ["greedy"],
    )
    outs = [tmp_path / "pool" / FL.name, tmp_path / "pool" / MC.name]
    pooled = runner.run_leaderboards([FL, MC], None, outs, workers=2, **KW)
    for s, out, summary in zip((FL, MC), outs, pooled):
        single = tmp_path / "single" / s.name
        ref = lb.run_leaderboard(s, None, single, backend="serial", **KW)
        assert summary["episodes"] == ref["episodes"] == summary["expected_episodes"]
        assert deterministic_view(out) == deterministic_view(single)


def test_a_resumed_pool_runs_only_the_missing_episodes_of_each_suite(tmp_path):
    outs = [tmp_path / FL.name, tmp_path / FL2.name]
    lb.run_leaderboard(FL, ["gs"], outs[0], backend="serial", max_episodes=3, **KW)
    lb.run_leaderboard(FL2, ["gs"], outs[1], backend="serial", max_episodes=1, **KW)
    pooled = runner.run_leaderboards([FL, FL2], ["gs"], outs, resume=True, backend="serial", **KW)
    for s, summary, out in zip((FL, FL2), pooled, outs):
        ref = lb.run_leaderboard(s, ["gs"], tmp_path / "ref" / s.name, backend="serial", **KW)
        assert summary["episodes"] == ref["episodes"] == summary["expected_episodes"]
        assert deterministic_view(out) == deterministic_view(tmp_path / "ref" / s.name)


def test_pool_inputs_are_checked_before_anything_is_written(tmp_path):
    with pytest.raises(lb.LeaderboardError, match="suite listed twice"):
        runner.run_leaderboards([FL, FL], ["gs"], [tmp_path / "a", tmp_path / "b"], **KW)
    with pytest.raises(lb.LeaderboardError, match="two suites cannot share one results folder"):
        runner.run_leaderboards([FL, FL2], ["gs"], [tmp_path / "x", tmp_path / "x"], **KW)
    with pytest.raises(lb.LeaderboardError, match="policy 'greedy' cannot play suite pool-fe"):
        runner.run_leaderboards([MC, FL], ["greedy"], [tmp_path / "m", tmp_path / "f"], **KW)
    assert not any(tmp_path.iterdir())  # the MEC suite's folder was not made either


def test_hindsight_rows_start_first_and_suites_interleave_by_cost():
    from edgeft.leaderboard.tasks import hindsight_cost
    from edgeft.policy import policy_cost

    tasks = lb.make_tasks(FL, ["gs", "random", "hindsight"]) + lb.make_tasks(
        MC, ["greedy-fast", "fp-cccp", "hindsight"]
    )
    order = sorted(tasks, key=lb.task_cost, reverse=True)
    for scenario in ("k6", "k10", "n4"):
        mine = [t["policy"] for t in order if t["scenario"] == scenario]
        assert mine[:2] == ["hindsight", "hindsight"], (scenario, mine)
    # one more than the family's costliest reference policy, whatever the suite runs
    refs = [n for n in edgeft.list_policies("mec") if ":" not in n]
    assert hindsight_cost("mec") == 1 + max(policy_cost(n, "mec") for n in refs) == 9
    assert hindsight_cost("fedlora") == 2
    # one cost order over both suites, not one suite after the other
    suites_in_order = [t["suite"] for t in order]
    changes = sum(a != b for a, b in zip(suites_in_order, suites_in_order[1:]))
    assert changes >= 2, suites_in_order


# ---------------------------------------------------------------------------- Ctrl-C message
def _args(**kw) -> argparse.Namespace:
    base = {
        "policies": None,
        "backend": "ray",
        "workers": 4,
        "address": "auto",
        "ray_nice": 5,
        "ray_installed": True,
        "no_plots": True,
        "no_progress": False,
        "trust_agent_code": False,
        "out": None,
    }
    return argparse.Namespace(**{**base, **kw})


def test_interrupted_pool_names_every_folder_and_the_commands_that_continue(tmp_path):
    from edgeft.leaderboard.cli import interrupted_message

    a, b = tmp_path / "a", tmp_path / "b"
    lb.run_leaderboard(FL, ["gs"], a, backend="serial", max_episodes=2, **KW)
    lb.run_leaderboard(MC, ["greedy"], b, backend="serial", max_episodes=1, **KW)
    opts = " --backend ray --workers 4 --address auto --ray-nice 5 --ray-installed --no-plots"
    msg = interrupted_message(_args(), [FL, MC], [a, b])
    assert "\n" not in msg
    assert msg == (
        f"edgeft leaderboard: interrupted; 2 of 12 episodes of pool-fedlora are saved "
        f"in {a}, 1 of 6 episodes of pool-mec are saved in {b}. Continue with: "
        f"edgeft leaderboard --suite pool-fedlora --out {a} --resume{opts}; "
        f"edgeft leaderboard --suite pool-mec --out {b} --resume{opts}"
    )
    msg = interrupted_message(_args(out=str(tmp_path)), [FL, MC], [a, b])
    assert msg.endswith(
        f"Continue with: edgeft leaderboard --suite pool-fedlora,pool-mec --out "
        f"{tmp_path} --resume{opts}"
    )
    assert interrupted_message(_args(), [FL], None).endswith("nothing was written")


# ---------------------------------------------------------------------------- Ray options
@pytest.mark.parametrize("nice", [20, -21, 1.5, True, "5"])
def test_ray_nice_out_of_range_is_refused_before_anything_is_written(tmp_path, nice):
    with pytest.raises(ValueError, match=r"--ray-nice must be a whole number from -20 to 19"):
        lb.run_leaderboard(FL, ["gs"], tmp_path / "o", backend="ray", ray_nice=nice, **KW)
    assert not (tmp_path / "o").exists()


def test_ray_options_need_the_ray_backend(tmp_path, capsys, registered):
    from edgeft.cli import main

    for extra in (["--address", "auto"], ["--ray-nice", "3"]):
        rc = main(
            [
                "leaderboard",
                "--suite",
                FL.name,
                "--policies",
                "gs",
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
                *extra,
            ]
        )
        err = capsys.readouterr().err
        assert rc == 2 and err.strip() == (
            "edgeft leaderboard: error: --address and --ray-nice are options of --backend ray"
        )
    assert not (tmp_path / "o").exists()


def test_lowering_the_niceness_without_the_right_is_one_clear_error(monkeypatch):
    def refuse(inc):
        if inc < 0:
            raise PermissionError(1, "Operation not permitted")
        return 15 + inc

    monkeypatch.setattr(os, "nice", refuse)
    assert backends.set_niceness(None) == 15 and backends.set_niceness(15) == 15
    assert backends.set_niceness(18) == 18
    with pytest.raises(
        lb.LeaderboardError,
        match=r"--ray-nice 0: a Ray worker runs at nice 15 "
        r"and lowering it needs root or CAP_SYS_NICE.*"
        r"RAY_worker_niceness=0 ray start",
    ):
        backends.set_niceness(0)


def test_a_ray_task_runs_in_the_driver_s_folder_where_the_node_has_it(tmp_path, monkeypatch):
    """Relative ALGO:PATH agent paths mean on a Ray worker what they mean to the driver."""
    task = lb.make_tasks(FL, ["gs"])[0]
    start = tmp_path / "worker"
    start.mkdir()
    monkeypatch.chdir(start)  # restored after the test

    def played(cwd):
        return {k: v for k, v in backends._ray_task(task, None, cwd).items() if k != "timing"}

    row = played(str(tmp_path / "missing"))
    assert Path.cwd() == start  # not on this node: stays where Ray started it
    assert played(str(tmp_path)) == row
    assert Path.cwd() == tmp_path
    assert row == {k: v for k, v in lb.run_task(task).items() if k != "timing"}


def test_ray_missing_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(lb.LeaderboardError, match=r"pip install 'edgeft\[ray\]'"):
        lb.run_leaderboard(FL, ["gs"], tmp_path / "o", backend="ray", **KW)


def test_runtime_env_ships_the_folder_and_passes_the_trust_opt_in(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEFT_TRUST_AGENT_CODE", raising=False)
    assert backends.ray_runtime_env() == {}
    assert backends.ray_runtime_env(tmp_path) == {"working_dir": str(tmp_path)}
    monkeypatch.setenv("EDGEFT_TRUST_AGENT_CODE", "1")
    assert backends.ray_runtime_env(tmp_path, {"A": "b"}) == {
        "working_dir": str(tmp_path),
        "env_vars": {"EDGEFT_TRUST_AGENT_CODE": "1", "A": "b"},
    }


# ---------------------------------------------------------------------------- shipped package
def test_mapped_subpackages_are_pyproject_s():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    mapped = {
        k.split(".", 1)[1]
        for k, v in mapping.items()
        if k.startswith("edgeft.") and k.count(".") == 1 and v != k.replace(".", "/")
    }
    assert mapped == set(backends.MAPPED_SUBPACKAGES)


def test_staged_package_plays_episodes_where_edgeft_is_not_installed(tmp_path):
    """The folder shipped to Ray workers imports as ``edgeft.*`` in an interpreter that cannot
    import edgeft otherwise, and plays the same episodes (a reference policy, the hindsight
    bound of both families, a shipped agent's files present)."""
    ship = tmp_path / "ship"
    pkg = backends.stage_package(ship)
    assert pkg == ship / "edgeft"
    for sub in backends.MAPPED_SUBPACKAGES:
        assert (pkg / sub / "__init__.py").is_file()
    assert not list(pkg.rglob("__pycache__"))
    assert list((pkg / "agents").rglob("*.agent.json"))  # package data travels too
    tasks = [t for t in lb.make_tasks(FL, ["gs", "hindsight"]) if t["scenario"] == "k6"][:3]
    tasks += lb.make_tasks(MC, ["greedy", "hindsight"])[:3]
    env = {**os.environ, "PYTHONPATH": str(_hide_edgeft(tmp_path / "shim")), "OMP_NUM_THREADS": "1"}
    probe = "import sys\ntry:\n    import edgeft\nexcept ImportError:\n    print('hidden')\n"
    hidden = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert hidden.stdout.strip() == "hidden"  # the shim does hide the install
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(ship)!r})\n"
        "import edgeft, edgeft.envs, edgeft.leaderboard.backends as b\n"
        "rows = [b._ray_task(t, None) for t in json.loads(sys.stdin.read())]\n"
        "for r in rows:\n    r.pop('timing')\n"
        "print(json.dumps({'file': edgeft.envs.__file__, 'rows': rows}))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        text=True,
        input=json.dumps(tasks),
        capture_output=True,
        check=True,
    )
    out = json.loads(res.stdout)
    assert out["file"] == str(pkg / "envs" / "__init__.py")
    here = [lb.run_task(t) for t in tasks]
    for r in here:
        r.pop("timing")
    assert out["rows"] == json.loads(json.dumps(here))


def test_a_worker_playing_reference_policies_imports_neither_torch_nor_sb3(tmp_path):
    """What a worker process imports for the tasks of reference policies and the bounds."""
    tasks = lb.make_tasks(FL, ["gs", "lyapunov", "hindsight"])[:3]
    tasks += lb.make_tasks(MC, ["greedy", "fp-cccp", "hindsight"])[:3]
    code = (
        "import json, sys\n"
        "from edgeft.leaderboard.backends import _ray_task\n"
        "for t in json.loads(sys.stdin.read()):\n    _ray_task(t, None)\n"
        "print(json.dumps([m for m in ('torch', 'stable_baselines3', 'transformers')\n"
        "                  if m in sys.modules]))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(tasks),
        text=True,
        capture_output=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert json.loads(res.stdout) == []
