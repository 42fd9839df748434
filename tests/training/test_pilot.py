"""benchmarks/participation_pilot.py: the fixed schedules, the resumable cache, the summary."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "participation_pilot.py"


@pytest.fixture(scope="module")
def pilot():
    spec = importlib.util.spec_from_file_location("participation_pilot", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [0, 3])
def test_schedules_do_what_their_names_say(pilot, seed):
    K, R = 20, 40
    m = {s: pilot.schedule_masks(s, K, R, seed) for s in pilot.SCHEDULES}
    assert all(x.shape == (R, K) and x.dtype == bool for x in m.values())
    assert (m["const-2"].sum(1) == 2).all() and len({tuple(r) for r in m["const-2"]}) > 10
    assert m["const-K"].all()
    assert (m["fixed-5"].sum(1) == 5).all() and (m["fixed-5"] == m["fixed-5"][0]).all()
    rot = m["rotating-5"]
    assert (rot.sum(1) == 5).all()
    for start in range(0, R, 4):  # every K / 5 = 4 rounds, every device exactly once
        np.testing.assert_array_equal(rot[start : start + 4].sum(0), np.ones(K))
    again = pilot.schedule_masks("fixed-5", K, R, seed)
    np.testing.assert_array_equal(again, m["fixed-5"])
    other = pilot.schedule_masks("fixed-5", K, R, seed + 1)
    assert not np.array_equal(other, m["fixed-5"])
    with pytest.raises(ValueError, match="unknown schedule"):
        pilot.schedule_masks("const-3", K, R, seed)


def fake_row(pilot, setting, schedule, seed, final):
    rounds = pilot.SETTINGS[setting][1]
    at = list(range(0, rounds + 1, 10))
    loss = [1.1] * (len(at) - 3) + [final] * 3
    return {
        "key": pilot.run_key(setting, schedule, seed),
        "setting": setting,
        "schedule": schedule,
        "seed": seed,
        "rounds_at": at,
        "loss": loss,
    }


def test_cache_appends_resumes_and_survives_a_cut_off_row(pilot, tmp_path):
    path = tmp_path / "runs.jsonl.gz"
    rows = [fake_row(pilot, "iid-h1", "const-2", s, 0.9 + 0.01 * s) for s in range(3)]
    for r in rows:
        pilot.append_row(path, r)
    assert list(pilot.read_cache(path)) == [r["key"] for r in rows]
    with path.open("ab") as f:  # a kill in the middle of writing one more member
        f.write(gzip.compress(json.dumps(rows[0]).encode())[:15])
    assert len(pilot.read_cache(path)) == 3


def test_summary_means_ses_and_se_units(pilot):
    finals = {
        "const-2": [0.90, 0.92, 0.94],
        "const-K": [0.80, 0.81, 0.79],
        "fixed-5": [1.00, 1.02, 1.01],
        "rotating-5": [0.85, 0.86, 0.84],
    }
    rows = {}
    for sched, vals in finals.items():
        for seed, v in enumerate(vals):
            r = fake_row(pilot, "iid-h1", sched, seed, v)
            rows[r["key"]] = r
    s = pilot.summarise(rows)["iid-h1"]
    for sched, vals in finals.items():
        assert s["schedules"][sched]["mean"] == pytest.approx(np.mean(vals))
        assert s["schedules"][sched]["se"] == pytest.approx(np.std(vals, ddof=1) / np.sqrt(3))
        assert s["schedules"][sched]["n"] == 3
    d = s["differences"]["const-2 - const-K"]
    se = np.hypot(np.std(finals["const-2"], ddof=1), np.std(finals["const-K"], ddof=1)) / np.sqrt(3)
    assert d["diff"] == pytest.approx(0.12)
    assert d["se_units"] == pytest.approx(0.12 / se)
    # a row written under other settings is not counted
    stale = dict(fake_row(pilot, "iid-h1", "const-2", 9, 5.0), key="old settings")
    assert pilot.summarise({**rows, "old": stale})["iid-h1"]["schedules"]["const-2"]["n"] == 3


def test_help_lists_the_settings(pilot, capsys):
    with pytest.raises(SystemExit):
        pilot.main(["--help"])
    out = capsys.readouterr().out
    assert "--seeds" in out and "iid-h1" in out and "dir-h1" in out
    with pytest.raises(SystemExit):
        pilot.main(["--settings", "nope", "--table"])


def test_sparse_evaluation_keeps_every_evaluation_of_the_final_window(pilot):
    for setting in pilot.SPARSE_EVAL:
        dense = set(range(0, pilot.SETTINGS[setting][1] + 1, pilot.SETTINGS[setting][2]))
        sparse = set(pilot.eval_rounds(setting))
        rounds = pilot.SETTINGS[setting][1]
        assert sparse < dense and {0, rounds} <= sparse
        assert {t for t in dense if t >= 0.8 * rounds} <= sparse
    assert pilot.eval_rounds("iid-h0.3") == list(range(0, 101, 10))
