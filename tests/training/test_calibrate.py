"""``edgeft calibrate --quick``: real runs, a fit the surrogate loads, the fidelity figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgeft.envs.fedlora.family import final_loss
from edgeft.envs.fedlora.surrogate import SurrogateParams, step_loss
from edgeft.training.calibrate import fit, make_schedules, simulate

from edgeft.cli import main


@pytest.mark.parametrize("head_share,onset", [(0.0, 1.0), (0.6, 1.0), (0.2, 0.05)])
def test_fit_recovers_known_surrogate_constants(head_share, onset):
    true = SurrogateParams(
        initial_loss=0.7,
        loss_floor=0.3,
        rate=0.05,
        gap_ratio=0.5,
        head_share=head_share,
        onset=onset,
    )
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
    assert abs(got.head_share - head_share) < 1e-3
    assert abs(got.onset - onset) < 1e-3
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


def test_schedules_hold_out_eight_distinct_participation_levels():
    schedules = make_schedules(20, 60, seed=0)
    fit_s = [s for s in schedules if not s.holdout]
    held = [s for s in schedules if s.holdout]
    assert len(held) >= 8 and len(fit_s) >= 5
    assert not {s.name for s in fit_s} & {s.name for s in held}
    means = [float(np.mean(s.counts)) for s in held]
    assert len(set(np.round(means, 3))) == len(means)
    assert min(means) <= 1.5 and max(means) >= 12
    for s in schedules:
        assert len(s.counts) == 60 and s.counts.min() >= 1 and s.counts.max() <= 20
    assert {1, 20} <= {int(s.counts[0]) for s in fit_s if s.name.startswith("const")}


def test_final_loss_is_the_mean_over_the_last_fifth_of_the_rounds():
    rounds = [0, 10, 20, 30, 40, 50]
    loss = [0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    assert final_loss(rounds, loss) == pytest.approx((0.3 + 0.2) / 2)  # rounds 40 and 50
    assert final_loss([0, 150], [0.7, 0.2]) == 0.2


def test_real_env_loss_is_the_global_test_loss_the_calibration_fits():
    import gymnasium as gym
    from edgeft.envs.common import config_in_force

    import edgeft  # noqa: F401

    training = {"model": "tiny-bert", "batch_size": 4, "eval_every": 2, "eval_size": 64, "lr": 0.3}
    env = gym.make(
        "edgeft/FedLoRAScheduling-v0",
        mode="real",
        training=training,
        num_devices=4,
        episode_rounds=5,
        reward="progress",
    )
    obs, _ = env.reset(seed=3)
    u = env.unwrapped
    first = u.decode_observation(obs).loss
    assert first == u.state.loss  # measured at reset, not the surrogate's initial loss
    env.action_space.seed(3)
    prev = first
    for _ in range(5):
        obs, reward, _, _, info = env.step(np.ones(4) / 4)
        if "test_loss" in info:  # evaluation rounds (2, 4 and the last)
            assert info["loss"] == info["test_loss"]
        else:
            assert info["loss"] == prev  # the latest evaluation carries over
        assert u.decode_observation(obs).loss == info["loss"]
        # the progress reward's scale: the surrogate's initial gap, in real mode as in surrogate
        cfg = config_in_force(env)
        scale = cfg.progress_scale / (cfg.surrogate.initial_loss - cfg.surrogate.loss_floor)
        expected = scale * (prev - info["loss"]) - cfg.delay_penalty * info["delay_excess"]
        assert np.isclose(reward, expected)
        prev = info["loss"]
    env.close()


def test_calibrate_resumes_from_its_run_cache_and_refits_stored_runs(tmp_path, capsys):
    out = tmp_path / "fit.json"
    args = ["calibrate", "--quick", "--model", "tiny-bert", "--lr", "0.3", "--out", str(out)]
    assert main(args) == 0
    cache = tmp_path / "fit.json.runs.jsonl"
    lines = cache.read_text().splitlines()
    assert len(lines) == 6  # one line per finished (schedule, seed) run
    first = json.loads(out.read_text())
    capsys.readouterr()
    # an interrupted run: the last run's line is cut off mid-write -> only that run is repeated
    cache.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "resuming: 5 finished runs" in text and "not valid JSON" in text
    again = json.loads(out.read_text())
    assert again["params"] == first["params"]  # the repeated run is bit-identical
    assert again["runs"] == first["runs"]
    # refit from the stored runs (either file) without training gives the same fit
    for src in (out, cache):
        refit = tmp_path / f"refit-{src.suffix}.json"
        assert main(["calibrate", "--refit", str(src), "--out", str(refit)]) == 0
        data = json.loads(refit.read_text())
        assert data["params"]["rate"] == first["params"]["rate"]
        assert data["spearman"] == first["spearman"] or np.isnan(first["spearman"])
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="--refit"):
        main(["calibrate", "--refit", str(missing), "--out", str(tmp_path / "x.json")])
