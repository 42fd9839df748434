"""Leaderboard harness: determinism across runs and backends, kill/resume, error reporting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeft import leaderboard as lb
from edgeft.suites import FEDLORA, MEC, TEST_SEED_BASE, Scenario, Suite, get_suite, list_suites

TINY = Suite(
    "tiny-fedlora",
    1,
    "fedlora",
    "test suite",
    (
        Scenario("k8", FEDLORA, {"num_devices": 8, "episode_rounds": 25}),
        Scenario(
            "k8-tight",
            FEDLORA,
            {"num_devices": 8, "episode_rounds": 25, "delay_budget_per_bit": 1e-6},
        ),
    ),
    num_seeds=3,
    headline="devices",
)
TINY_MEC = Suite(
    "tiny-mec",
    1,
    "mec",
    "test suite",
    (Scenario("n5", MEC, {"num_users": 5, "num_servers": 2, "episode_rounds": 2}),),
    num_seeds=2,
)
POLICIES = ["gs", "random", "lyapunov"]


def deterministic_view(out: Path) -> dict:
    """Everything a run wrote except the measured decision times (documented as varying)."""
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    for r in rows:
        assert set(r["timing"]) == {"decide_ms"} and r["timing"]["decide_ms"] > 0
        del r["timing"]
    rows.sort(key=lambda r: (r["scenario"], r["policy"], r["seed"]))
    summary = json.loads((out / "summary.json").read_text())
    for e in summary["results"]:
        del e["timing"]
    csv_lines = (out / "summary.csv").read_text().splitlines()
    header = csv_lines[0].split(",")
    keep = [i for i, h in enumerate(header) if not h.startswith("decide_ms")]
    csv_cut = [[c.split(",")[i] for i in keep] for c in csv_lines]
    return {
        "rows": rows,
        "summary": summary,
        "csv": csv_cut,
        "manifest": json.loads((out / "run.json").read_text()),
    }


def test_same_suite_twice_and_any_worker_count_give_identical_results(tmp_path):
    a = lb.run_leaderboard(TINY, POLICIES, tmp_path / "a", workers=2, progress=False, plots=False)
    b = lb.run_leaderboard(TINY, POLICIES, tmp_path / "b", backend="serial", progress=False)
    # 2 scenarios x (3 policies + the hindsight bound rows) x 3 seeds
    assert a["episodes"] == b["episodes"] == 2 * 4 * 3
    va, vb = deterministic_view(tmp_path / "a"), deterministic_view(tmp_path / "b")
    assert va == vb
    # every policy saw the same test seeds, disjoint from training seeds
    for e in a["results"]:
        assert e["seeds"] == [TEST_SEED_BASE + i for i in range(3)]
    # different seeds do give different episodes (the identity is not vacuous)
    losses = {r["metrics"]["final_loss"] for r in va["rows"] if r["policy"] == "gs"}
    assert len(losses) == 6
    assert (tmp_path / "b" / "plots" / "metrics.png").stat().st_size > 1000
    assert (tmp_path / "b" / "plots" / "curves_k8.png").stat().st_size > 1000


def test_mec_pool_matches_serial(tmp_path):
    pols = ["greedy", "alpha-only"]
    lb.run_leaderboard(TINY_MEC, pols, tmp_path / "a", workers=2, progress=False, plots=False)
    lb.run_leaderboard(
        TINY_MEC, pols, tmp_path / "b", backend="serial", progress=False, plots=False
    )
    va, vb = deterministic_view(tmp_path / "a"), deterministic_view(tmp_path / "b")
    assert va == vb
    costs = {e["policy"]: e["metrics"]["cost"]["mean"] for e in va["summary"]["results"]}
    assert costs["greedy"] < costs["alpha-only"]  # optimised resources beat random ones


def test_ray_backend_matches_local_pool(tmp_path):
    ray = pytest.importorskip("ray")
    lb.run_leaderboard(
        TINY, ["gs", "random"], tmp_path / "local", workers=2, progress=False, plots=False
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        lb.run_leaderboard(
            TINY, ["gs", "random"], tmp_path / "ray", backend="ray", progress=False, plots=False
        )
    finally:
        ray.shutdown()
    assert deterministic_view(tmp_path / "local") == deterministic_view(tmp_path / "ray")


def test_partial_run_resumed_equals_uninterrupted(tmp_path):
    full = tmp_path / "full"
    part = tmp_path / "part"
    lb.run_leaderboard(TINY, POLICIES, full, workers=2, progress=False, plots=False)
    lb.run_leaderboard(TINY, POLICIES, part, workers=2, progress=False, plots=False, max_episodes=5)
    assert len((part / "episodes.jsonl").read_text().splitlines()) == 5
    s = lb.run_leaderboard(
        TINY, POLICIES, part, resume=True, workers=2, progress=False, plots=False
    )
    assert s["episodes"] == s["expected_episodes"] == 24
    assert deterministic_view(part) == deterministic_view(full)


_KILL_SCRIPT = """
import sys
from edgeft import leaderboard as lb
from edgeft.suites import FEDLORA, Scenario, Suite
suite = Suite("kill-fedlora", 1, "fedlora", "test suite",
              (Scenario("k20", FEDLORA, {"episode_rounds": 150}),), num_seeds=8)
if __name__ == "__main__":
    lb.run_leaderboard(suite, ["lyapunov", "gs"], sys.argv[1], resume=len(sys.argv) > 2,
                       workers=2, progress=False, plots=False)
"""


def test_killed_run_resumes_without_losing_or_duplicating_episodes(tmp_path):
    script = tmp_path / "kill_run.py"
    script.write_text(_KILL_SCRIPT)
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out)], env=env, start_new_session=True
    )
    episodes = out / "episodes.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if episodes.is_file() and len(episodes.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its pool workers, mid-run
    proc.wait()
    n_killed = len(episodes.read_text().splitlines())
    # 2 policies + random and hindsight (the score's anchors) x 8 seeds = 32 episodes
    assert 3 <= n_killed < 32, "the kill should land mid-run"
    before = {
        tuple(json.loads(x)[k] for k in ("policy", "seed")): json.loads(x)["metrics"]
        for x in episodes.read_text().splitlines()
    }
    subprocess.run([sys.executable, str(script), str(out), "resume"], env=env, check=True)
    subprocess.run([sys.executable, str(script), str(tmp_path / "clean")], env=env, check=True)
    view = deterministic_view(out)
    assert len(view["rows"]) == 32
    assert len({(r["policy"], r["seed"]) for r in view["rows"]}) == 32
    assert view == deterministic_view(tmp_path / "clean")
    for r in view["rows"]:  # episodes finished before the kill were kept as they were
        if (r["policy"], r["seed"]) in before:
            assert r["metrics"] == before[(r["policy"], r["seed"])]


def test_unknown_names_list_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="known suites: .*fedlora-default.*mec-default"):
        get_suite("fedlora-nope")
    with pytest.raises(lb.LeaderboardError, match=r"fedlora policies: .*\bgs\b") as exc:
        lb.run_leaderboard(TINY, ["gs", "gready"], tmp_path / "x", progress=False)
    assert str(exc.value).count("lyapunov-paper") == 1  # the known policies, listed once
    assert not (tmp_path / "x").exists()  # nothing was written for a bad input
    with pytest.raises(
        lb.LeaderboardError, match="unknown backend 'dask'; known: local, serial, ray"
    ):
        lb.run_leaderboard(TINY, ["gs"], tmp_path / "y", backend="dask", progress=False)
    bad_env = Suite("bad", 1, "fedlora", "x", (Scenario("a", "edgeft/Nope-v0", {}),), num_seeds=1)
    with pytest.raises(lb.LeaderboardError, match="edgeft/FedLoRAScheduling-v0"):
        lb.run_leaderboard(bad_env, ["gs"], tmp_path / "z", progress=False)
    for name in (
        "fedlora-default",
        "fedlora-paper",
        "fedlora-hard",
        "mec-default",
        "mec-paper",
        "mec-large",
    ):
        assert name in list_suites()


def test_cli_errors_name_the_problem(tmp_path, capsys):
    from edgeft.cli import main

    assert main(["leaderboard", "--suite", "nope", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown suite 'nope'" in err and "mec-large" in err
    assert main(["leaderboard", "--list"]) == 0
    assert "fedlora-paper" in capsys.readouterr().out


def test_corrupt_or_foreign_results_are_reported_not_overwritten(tmp_path):
    out = tmp_path / "run"
    lb.run_leaderboard(TINY, ["gs"], out, progress=False, plots=False, max_episodes=2)
    ep = out / "episodes.jsonl"
    good = ep.read_text()
    ep.write_text(good + '{"scenario": "k8", "policy": "gs", "se\n')
    corrupt = ep.read_bytes()
    with pytest.raises(lb.LeaderboardError, match=r"episodes.jsonl:3 is not a valid episode row"):
        lb.run_leaderboard(TINY, ["gs"], out, resume=True, progress=False)
    assert ep.read_bytes() == corrupt
    ep.write_text(good + good.splitlines()[0] + "\n")  # a duplicated episode
    with pytest.raises(lb.LeaderboardError, match="repeats the episode"):
        lb.run_leaderboard(TINY, ["gs"], out, resume=True, progress=False)
    ep.write_text(good)
    with pytest.raises(lb.LeaderboardError, match="not empty; pass --resume"):
        lb.run_leaderboard(TINY, ["gs"], out, progress=False)
    assert ep.read_text() == good
    with pytest.raises(lb.LeaderboardError, match="holds a run of suite tiny-fedlora"):
        lb.run_leaderboard(TINY_MEC, ["greedy"], out, resume=True, progress=False)
    # the default folder moves to a free name instead of overwriting
    root = tmp_path / "results"
    name = f"fedlora-default-v{get_suite('fedlora-default').version}"
    (root / name).mkdir(parents=True)
    (root / name / "run.json").write_text("{}")
    assert lb.default_out(get_suite("fedlora-default"), root).name == f"{name}-2"


def test_bootstrap_interval_is_deterministic_and_brackets_the_mean():
    rng = np.random.default_rng(0)
    v = rng.normal(3.0, 1.0, size=40)
    lo, hi = lb.bootstrap_ci(v)
    assert lo < v.mean() < hi
    assert (lo, hi) == lb.bootstrap_ci(v)
    # the 95% interval of the mean is about +-1.96 sigma/sqrt(n)
    assert abs((hi - lo) / 2 - 1.96 * v.std(ddof=1) / np.sqrt(v.size)) < 0.08
    assert lb.bootstrap_ci([2.0]) == (2.0, 2.0)


def test_suites_are_versioned_and_use_disjoint_test_seeds():
    from edgeft.train import MAX_TRAIN_SEED, VALIDATION_SEED_BASE

    for name in list_suites():
        s = get_suite(name)
        assert min(s.seeds) >= TEST_SEED_BASE > VALIDATION_SEED_BASE + 10**6 > MAX_TRAIN_SEED
        assert s.version >= 1 and len(s.fingerprint()) == 16
    paper = get_suite("fedlora-paper")
    assert [sc.config["delay_budget_per_bit"] for sc in paper.scenarios][-1] == pytest.approx(5e-5)
    large = get_suite("mec-large").scenarios[0].config
    assert (large["num_users"], large["num_servers"]) == (200, 20)
