"""The timing protocol's refit (``edgeft.training.timing_refit``): the shipped v4 calibration
meets the protocol's criteria when judged again from the committed real runs, and the report
agrees with it."""

from __future__ import annotations

import json

import pytest
from edgeft.envs.fedlora.surrogate import CALIBRATION_DIR, SurrogateParams
from edgeft.training import protocol, surrogate_fit, timing_protocol, timing_refit

pytest.importorskip("scipy")


def test_shipped_iid_v4_meets_the_criteria_on_the_runs_it_was_not_fitted_on():
    params = SurrogateParams.resolve("iid-v4")
    assert params.version == 4
    calibration, timing = timing_refit.load("iid-h1")
    held_timing = surrogate_fit.fidelity(
        params, timing, timing_protocol.REFERENCE, timing_protocol.REFIT_HELDOUT
    )
    held_cal = surrogate_fit.fidelity(params, calibration, "const-K", protocol.HELDOUT_SCHEDULES)
    assert held_timing["met"] and held_cal["met"]
    assert [r["schedule"] for r in held_timing["rows"]] == list(timing_protocol.REFIT_HELDOUT)
    assert all(len(r["seeds"]) == len(timing_protocol.TIMING_SEEDS) for r in held_timing["rows"])
    # none of the held-out schedules is a fit schedule
    fit = set(protocol.FIT_SCHEDULES) | set(timing_protocol.REFIT_FIT)
    assert not fit & set(timing_protocol.REFIT_HELDOUT)
    assert not fit & set(protocol.HELDOUT_SCHEDULES)
    # the file's tables are these
    shipped = json.loads((CALIBRATION_DIR / "iid-v4.json").read_text())
    assert shipped["timing_heldout"]["spearman"] == pytest.approx(held_timing["spearman"])
    for a, b in zip(shipped["timing_heldout"]["rows"], held_timing["rows"], strict=True):
        assert a["surrogate_diff"] == pytest.approx(b["surrogate_diff"], abs=1e-9)


def test_report_records_the_choice_on_fit_runs_alone():
    report = json.loads(timing_refit.REPORT.read_text())
    assert set(report) == set(timing_protocol.TIMING_SETTINGS)
    for setting, res in report.items():
        assert not res["missing_runs"], setting
        rms = {f: r["fit_rms"] for f, r in res["forms"].items()}
        assert res["chosen"] == min(rms, key=rms.get)
        assert res["met"] == res["forms"][res["chosen"]]["met"]
    assert report["iid-h1"]["met"] and not report["dir-h1"]["met"]


def test_round_two_adds_its_fit_runs_and_ships_only_a_form_that_meets_the_criteria():
    report = json.loads(timing_refit.report_path(2).read_text())
    res = report["dir-h1"]
    assert res["round"] == 2 and not res["missing_runs"]
    assert {"const-15 (seeds 100-109)", "const-K (seeds 100-109)"} <= set(res["fit_schedules"])
    rms = {f: r["fit_rms"] for f, r in res["forms"].items()}
    assert res["chosen"] == min(rms, key=rms.get)
    shipped = CALIBRATION_DIR / "dirichlet-v4.json"
    assert shipped.exists() == res["met"]
    # the round-2 runs are const-N schedules at the timing seeds, as extra_masks builds them
    _, timing = timing_refit.load("dir-h1")
    for name in timing_refit.EXTRA_FIT["dir-h1"]:
        runs = timing[name]
        assert [r["seed"] for r in runs] == list(timing_protocol.TIMING_SEEDS)
        for r in runs:
            want = timing_refit.extra_masks(name, r["devices"], r["rounds"], r["seed"])
            assert (r["mask_array"] == want).all()


def test_fresh_check_judges_v3_as_the_protocol_does_and_names_missing_seeds(capsys):
    seeds = timing_protocol.TIMING_SEEDS
    got = timing_refit.fresh_check(seeds)
    want = timing_protocol.evaluate(timing_protocol.read_runs())["iid-h1"]
    assert got["iid"]["spearman"] == pytest.approx(want["spearman"], abs=1e-12)
    assert got["iid"]["met"] is want["met"] is False
    assert got["iid-v4"]["surrogate"].startswith("edgeft.training.timing_refit")
    assert timing_refit.main(["--fresh", "--seeds", "900-901"]) == 0
    assert "no iid-h1 runs at seeds 900-901" in capsys.readouterr().out
    assert not set(timing_refit.FRESH_SEEDS) & set(seeds)
