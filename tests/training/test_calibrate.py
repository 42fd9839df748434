"""``edgeft calibrate --quick``: real runs, a fit the surrogate loads, the fidelity figure."""

from __future__ import annotations

import json

import numpy as np
from edgeft.envs.fedlora.surrogate import SurrogateParams, step_loss
from edgeft.training.calibrate import fit, make_schedules, simulate

from edgeft.cli import main


def test_fit_recovers_known_surrogate_constants():
    true = SurrogateParams(initial_loss=0.7, loss_floor=0.3, rate=0.05, gap_ratio=0.5)
    runs = []
    for s in make_schedules(10, 40, seed=0)[:6]:
        rounds = list(range(0, 41, 5))
        runs.append(
            {
                "counts": s.counts.tolist(),
                "rounds": rounds,
                "loss": simulate(true, s.counts, 10, rounds).tolist(),
            }
        )
    got, rms = fit(runs, 10, "test")
    assert rms < 1e-6
    assert abs(got.rate - 0.05) < 1e-4 and abs(got.gap_ratio - 0.5) < 1e-3
    assert abs(got.loss_floor - 0.3) < 1e-3
    # simulate() is the env's own recursion
    loss = np.float64(0.7)
    for n in make_schedules(10, 40, seed=0)[0].counts[:5]:
        loss = step_loss(loss, n, 10, true)
    assert simulate(true, make_schedules(10, 40, seed=0)[0].counts[:5], 10, [5])[0] == loss


def test_calibrate_quick_writes_a_loadable_fit(tmp_path, capsys):
    out = tmp_path / "fit.json"
    assert (
        main(["calibrate", "--quick", "--model", "tiny-bert", "--lr", "0.3", "--out", str(out)])
        == 0
    )
    params = SurrogateParams.from_json(out)
    data = json.loads(out.read_text())
    assert "spearman" in data and len(data["holdout"]) == 3
    assert data["training"]["model"] == "tiny-bert"
    assert params.source.startswith("edgeft calibrate")
    assert "Spearman rank correlation" in capsys.readouterr().out
