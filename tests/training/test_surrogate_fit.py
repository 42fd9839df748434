"""The v3 fit (``edgeft.training.surrogate_fit``): recovers known constants from synthetic runs,
its batched simulation matches the per-schedule one, and the fidelity table does its sums."""

from __future__ import annotations

import numpy as np
import pytest
from edgeft.envs.fedlora.surrogate import SurrogateParams, simulate_masks
from edgeft.training import protocol
from edgeft.training.surrogate_fit import fidelity, fit

pytest.importorskip("scipy")

TRUE = SurrogateParams(
    initial_loss=1.1,
    loss_floor=0.45,
    rate=0.04,
    gap_ratio=0.5,
    onset=0.4,
    stationary=0.15,
    head_fraction=0.35,
    head_rate=0.2,
)
K, T = 20, 100
AT = list(range(0, T + 1, 10))


def synthetic_runs(params, schedules, seeds, masks_of=protocol.schedule_masks, shift=0.0):
    """Cached-run rows the surrogate ``params`` would give (``shift``: a level added to every
    loss after round 0, as runs at another seed set settle at)."""
    out = {}
    for name in schedules:
        rows = []
        for seed in seeds:
            masks = masks_of(name, K, T, seed)
            loss, dev = simulate_masks(masks, params)
            loss[1:] += shift
            dev[1:] += shift
            rows.append(
                {
                    "seed": seed,
                    "rounds": T,
                    "devices": K,
                    "rounds_at": AT,
                    "loss": loss[AT].tolist(),
                    "device_loss": dev[AT].tolist(),
                    "accuracy": (1.0 - 0.5 * loss[AT]).tolist(),
                    "counts": masks.sum(1).tolist(),
                    "mask_array": masks,
                }
            )
        out[name] = rows
    return out


def test_batched_simulation_matches_the_per_device_loop():
    """Schedules stepped as one batch (how the fit simulates) give each schedule's trajectory of
    the plain per-device loop of the recurrence."""
    from tests.fedlora.test_surrogate_v3 import loop_reference

    rng = np.random.default_rng(0)
    masks = rng.random((5, 30, 7)) < 0.4
    loss, dev = simulate_masks(masks, TRUE)
    assert loss.shape == (5, 31) and dev.shape == (5, 31, 7)
    for b in range(5):
        one, one_dev = loop_reference(masks[b], TRUE)
        np.testing.assert_allclose(loss[b], one, rtol=0, atol=1e-12)
        np.testing.assert_allclose(dev[b], one_dev, rtol=0, atol=1e-12)


def test_fit_recovers_known_constants_from_synthetic_runs():
    runs = synthetic_runs(TRUE, protocol.FIT_SCHEDULES, range(3))
    got, rms = fit(runs, "synthetic")
    assert rms < 1e-4
    for name in (
        "loss_floor",
        "rate",
        "gap_ratio",
        "stationary",
        "head_fraction",
        "head_rate",
        "onset",
    ):
        assert getattr(got, name) == pytest.approx(getattr(TRUE, name), rel=0.05, abs=0.01), name
    assert got.initial_accuracy == pytest.approx(1.0 - 0.5 * TRUE.initial_loss, abs=1e-6)


def test_fidelity_table_of_the_true_model_meets_the_goal():
    runs = synthetic_runs(TRUE, ("const-K", "fixed-5", "rotating-5", "const-2"), range(3))
    for rows in runs.values():  # real runs carry seed noise: perturb the "real" losses a little
        for r in rows:
            r["loss"] = (np.asarray(r["loss"]) + 0.001 * (r["seed"] - 1)).tolist()
    table = fidelity(TRUE, runs, "const-K", ("fixed-5", "rotating-5", "const-2"))
    assert table["met"] and table["spearman"] == pytest.approx(1.0)
    by = {r["schedule"]: r for r in table["rows"]}
    assert by["fixed-5"]["real_diff"] > by["rotating-5"]["real_diff"] > 0
    assert by["fixed-5"]["surrogate_diff"] == pytest.approx(by["fixed-5"]["real_diff"], abs=1e-9)
    wrong = fidelity(
        SurrogateParams(**{**TRUE.__dict__, "head_fraction": 0.0, "head_rate": 0.0}),
        runs,
        "const-K",
        ("fixed-5", "rotating-5", "const-2"),
    )
    assert not wrong["met"]


def test_refit_from_the_committed_runs_rederives_the_shipped_calibrations(tmp_path):
    """``edgeft calibrate --refit``: the committed run cache gives back the shipped files (the
    constants and the fidelity verdict), so the calibration is reproducible offline."""
    import json

    from edgeft.envs.fedlora.surrogate import CALIBRATION_DIR
    from edgeft.training.surrogate_fit import refit

    results = refit(out_dir=tmp_path)
    for setting, res in results.items():
        name = res["out"].name
        shipped = json.loads((CALIBRATION_DIR / name).read_text())
        again = json.loads((tmp_path / name).read_text())
        for k, v in shipped["params"].items():
            if isinstance(v, float):  # the optimiser stops at its tolerance: across numpy and
                # scipy builds the constants move by ~2e-6 relative
                assert again["params"][k] == pytest.approx(v, rel=1e-4, abs=1e-9), (setting, k)
        assert again["fidelity"]["met"] == shipped["fidelity"]["met"] is True
    assert (tmp_path / "heldout.png").is_file()


def test_fit_recovers_v4_constants_and_a_seed_set_offset():
    """v4 (the timing protocol's refit): forgetting and the settle power are recovered from
    schedules that drop to few devices, with the runs of a second seed set shifted by a level the
    fit absorbs as a nuisance."""
    import dataclasses

    from edgeft.training import timing_protocol as tp

    true = dataclasses.replace(TRUE, drift_rate=0.3, settle_power=0.8, stationary=0.3)
    runs = synthetic_runs(true, ("const-2", "const-K"), range(2))
    # the timing schedules at the other seed set, its level 0.02 higher
    runs.update(
        synthetic_runs(
            true, ("front-4", "back-4", "flat-10"), (100, 101), tp.profile_masks, shift=0.02
        )
    )
    got, rms = fit(runs, "synthetic", v4_terms=("drift_rate", "settle_power"), offset_from_seed=100)
    assert rms < 1e-4
    assert got.version == 4 and "offset +0.0200" in got.source
    for name in ("loss_floor", "rate", "stationary", "head_rate", "drift_rate", "settle_power"):
        assert getattr(got, name) == pytest.approx(getattr(true, name), rel=0.05, abs=0.01), name
    with pytest.raises(ValueError, match="unknown v4 term"):
        fit(runs, "synthetic", v4_terms=("forgetting",))


def test_timing_refit_names_unknown_forms_and_settings(capsys):
    from edgeft.training import timing_refit

    for argv in (["--forms", "v5"], ["--settings", "iid-h9"]):
        with pytest.raises(SystemExit):
            timing_refit.main(argv)
        assert "unknown" in capsys.readouterr().err
    assert set(timing_refit.FORMS) >= {"v3", "v4-drift"}
