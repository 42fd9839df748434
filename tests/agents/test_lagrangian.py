"""ppo-lag: the multiplier's update, the VecLagrangian reward and episode costs against plain
loops, lambda kept across a checkpoint, and lambda settling where fixed penalties miss."""

from __future__ import annotations

import csv
import json

import gymnasium as gym
import numpy as np
import pytest
from edgeft.agents.lagrangian import (
    PIDMultiplier,
    base_algo,
    constraint_cost,
    cost_limit,
    lagrangian_settings,
)
from edgeft.agents.vec import NumpyVecEnv, VecLagrangian, devices_utility
from edgeft.envs.common import config_in_force

from edgeft import train as train_mod
from edgeft.cli import main
from edgeft.suites import FEDLORA, MEC


def _dual_ascent(costs, limit, ki, max_error, lam0=0.0):
    lam, out = lam0, []
    for c in costs:
        lam = max(0.0, lam + ki * min(c - limit, max_error * limit))
        out.append(lam)
    return out


def test_dual_ascent_against_a_plain_loop():
    costs = [3.0, 250.0, 1.4, 0.2, 0.0, 0.9, 1.1, 0.5, 0.5, 0.5]
    m = PIDMultiplier(limit=1.0, ki=0.3, kp=0.0, max_error=1.0)
    got = [m.update(c) for c in costs]
    np.testing.assert_allclose(got, _dual_ascent(costs, 1.0, 0.3, 1.0), rtol=0, atol=1e-15)
    assert m.updates == len(costs) and min(got) >= 0.0
    # the huge episode (250) moves lambda by at most ki x max_error, like the one at 3.0
    assert got[1] - got[0] == pytest.approx(0.3)


def test_pid_terms_against_a_plain_loop():
    costs = [2.0, 1.5, 1.8, 0.4, 1.0]
    kp, ki, kd, d = 0.5, 0.1, 0.7, 1.2
    m = PIDMultiplier(limit=d, ki=ki, kp=kp, kd=kd, max_error=2.0, lambda_max=0.9)
    integral, prev = 0.0, None
    for c in costs:
        e = min(c - d, 2.0 * d)
        integral = max(0.0, integral + ki * e)
        rise = 0.0 if prev is None else max(0.0, c - prev)
        prev = c
        want = min(max(kp * e + integral + kd * rise, 0.0), 0.9)
        assert m.update(c) == pytest.approx(want, abs=1e-15)
    restored = PIDMultiplier(**json.loads(json.dumps(m.state_dict())))
    assert restored == m


def test_settings_names_and_costs():
    assert base_algo("ppo-lag") == "ppo" and base_algo("dqn") == "dqn"
    with pytest.raises(ValueError, match="unknown lagrangian setting"):
        lagrangian_settings({"lr": 1})
    with pytest.raises(ValueError, match="cost_cap must be > 0"):
        lagrangian_settings({"cost_cap": 0})
    assert cost_limit(config_in_force(gym.make(FEDLORA))) == 1.0
    np.testing.assert_array_equal(
        constraint_cost([{"cost": 2.5}, {"cost": 0.0}], "fedlora"), [2.5, 0.0]
    )
    # MEC: info["cost"] must be the constraint (the objective under its own key)
    with pytest.raises(ValueError, match="weighted objective"):
        constraint_cost([{"cost": 8.4}], "mec")
    assert constraint_cost([{"cost": 0.3, "objective": 8.4}], "mec")[0] == 0.3
    with pytest.raises(ValueError, match="lagrangian settings need"):
        train_mod.build_config(FEDLORA, "ppo", lagrangian={"ki": 0.1})


def test_vec_lagrangian_against_a_plain_loop(tmp_path):
    """Reward N/K - lambda min(D/D-bar, cap) per step, true mean cost per episode, lambda
    updated once per batch of finished episodes, checked step by step against the per-copy
    infos; those equal the raw vector env's, stepped alongside with the same actions over the
    first episode (the adapter then resets the batch itself)."""
    k, t, n, cap, ki = 5, 6, 3, 2.0, 0.4
    kw = {"num_devices": k, "episode_rounds": t, "action_mode": "count"}

    def vec():
        return gym.make_vec(FEDLORA, num_envs=n, vectorization_mode="vector_entry_point", **kw)

    config = config_in_force(gym.make(FEDLORA, **kw))
    inner = NumpyVecEnv(vec(), reward_fn=devices_utility(config))
    inner.seed(5)
    wrapped = VecLagrangian(
        inner,
        "fedlora",
        1.0,
        PIDMultiplier(limit=1.0, ki=ki, kp=0.0),
        cost_cap=cap,
        log_path=tmp_path / "curves.csv",
    )
    raw = vec()
    wrapped.reset()
    raw.reset(seed=5)
    rng = np.random.default_rng(1)
    lam, sums, rows = 0.0, np.zeros(n), []
    for step in range(3 * t):
        act = rng.integers(0, k + 1, n)
        wrapped.step_async(act)
        _, rew, done, infos = wrapped.step_wait()
        cost = np.array([i["cost"] for i in infos])
        devices = np.array([i["num_scheduled"] for i in infos])
        if step < t:
            _, _, _, _, info = raw.step(act)
            np.testing.assert_array_equal(cost, info["cost"])
            np.testing.assert_array_equal(devices, info["num_scheduled"])
        want = devices / k - lam * np.minimum(cost, cap)
        np.testing.assert_allclose(rew, want, rtol=1e-6, atol=1e-6)
        sums += cost
        if (step + 1) % t == 0:
            assert done.all()
            mean = float(np.mean(sums / t))
            lam = max(0.0, lam + ki * min(mean - 1.0, 1.0))
            rows.append((mean, lam))
            for i in range(n):
                assert infos[i]["episode_cost"]["mean"] == pytest.approx(sums[i] / t)
            sums[:] = 0.0
        else:
            assert not done.any()
        assert wrapped.lam == pytest.approx(lam, abs=1e-12)
    with open(tmp_path / "curves.csv") as fh:
        logged = list(csv.DictReader(fh))
    np.testing.assert_allclose(
        [(float(r["cost"]), float(r["lambda"])) for r in logged], rows, rtol=1e-12, atol=1e-12
    )
    assert [int(r["timesteps"]) for r in logged] == [n * t, 2 * n * t, 3 * n * t]


def test_vec_lagrangian_episode_constraint_against_a_plain_loop(tmp_path):
    """``constraint="episode"``: each step is charged lambda times the growth of the episode's
    running overshoot max(0, sum (min(c, cap) - d)) (the charges of an episode add up to its
    final overshoot), and lambda follows the batch mean of max(0, mean c - d) against its own
    limit eps; checked step by step against a per-copy plain loop."""
    k, t, n, cap, ki, kp, eps, d = 5, 6, 3, 2.0, 3.0, 1.0, 0.01, 1.0
    kw = {"num_devices": k, "episode_rounds": t, "action_mode": "count"}
    config = config_in_force(gym.make(FEDLORA, **kw))
    inner = NumpyVecEnv(
        gym.make_vec(FEDLORA, num_envs=n, vectorization_mode="vector_entry_point", **kw),
        reward_fn=devices_utility(config),
    )
    inner.seed(7)
    mult = PIDMultiplier(limit=eps, ki=ki, kp=kp, max_error=30.0, integral=0.2, value=0.2)
    wrapped = VecLagrangian(
        inner,
        "fedlora",
        d,
        mult,
        cost_cap=cap,
        log_path=tmp_path / "curves.csv",
        constraint="episode",
    )
    wrapped.reset()
    rng = np.random.default_rng(3)
    ref = PIDMultiplier(limit=eps, ki=ki, kp=kp, max_error=30.0, integral=0.2, value=0.2)
    run, sums, charged, rows = np.zeros(n), np.zeros(n), np.zeros(n), []
    for step in range(4 * t):
        act = rng.integers(0, k + 1, n)
        lam = ref.value
        wrapped.step_async(act)
        _, rew, done, infos = wrapped.step_wait()
        cost = np.array([i["cost"] for i in infos])
        devices = np.array([i["num_scheduled"] for i in infos])
        growth = np.zeros(n)
        for i in range(n):  # the plain loop, one copy at a time
            before = max(0.0, run[i])
            run[i] += min(cost[i], cap) - d
            growth[i] = max(0.0, run[i]) - before
        charged += growth
        np.testing.assert_allclose(rew, devices / k - lam * growth, rtol=1e-6, atol=1e-6)
        sums += cost
        if (step + 1) % t == 0:
            assert done.all()
            np.testing.assert_allclose(charged, np.maximum(run, 0.0), rtol=0, atol=1e-12)
            excess = np.maximum(sums / t - d, 0.0)
            for i in range(n):
                assert infos[i]["episode_cost"]["excess"] == pytest.approx(excess[i])
            ref.update(float(np.mean(excess)))
            rows.append((float(np.mean(excess)), float(np.max(excess)), ref.value))
            run[:], sums[:], charged[:] = 0.0, 0.0, 0.0
        assert wrapped.lam == pytest.approx(ref.value, abs=1e-12)
    assert any(r[0] > 0 for r in rows) and len({r[2] for r in rows}) > 1  # lambda moved
    with open(tmp_path / "curves.csv") as fh:
        logged = list(csv.DictReader(fh))
    got = [(float(r["excess"]), float(r["excess_max"]), float(r["lambda"])) for r in logged]
    np.testing.assert_allclose(got, rows, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="constraint must be one of"):
        VecLagrangian(inner, "fedlora", d, constraint="worst")
    with pytest.raises(ValueError, match="lagrangian.constraint must be one of"):
        lagrangian_settings({"constraint": "per-round"})


def test_lambda_is_saved_with_the_checkpoint_and_restored_on_resume(tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = [
        "train",
        "--env",
        FEDLORA,
        "--algo",
        "ppo-lag",
        "--seed",
        "2",
        "--set",
        "num_devices=4",
        "--set",
        "episode_rounds=8",
        "--n-envs",
        "2",
        "--hp",
        "n_steps=16",
        "--hp",
        "batch_size=32",
        "--hp",
        "n_epochs=1",
        "--lag",
        "ki=0.5",
        "--timesteps",
        "256",
        "--checkpoint-every",
        "64",
        "--eval-episodes",
        "0",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    ck = json.loads((out / "checkpoints" / "state.json").read_text())
    final = json.loads((out / "model.agent.json").read_text())
    assert final["algo"] == "ppo" and final["train_config"]["algo"] == "ppo-lag"
    assert final["lagrangian"]["multiplier"]["updates"] == 256 // 16
    assert 0 < ck["lagrangian"]["multiplier"]["updates"] < 16
    assert (out / "curves.png").is_file()
    # resume from the checkpoint (as after a kill): the wrapper starts from its multiplier
    for p in out.glob("model.*"):
        p.unlink()
    seen = []
    real = VecLagrangian.load_state_dict

    def spy(self, state):
        real(self, state)
        seen.append(self.multiplier.state_dict())

    monkeypatch.setattr(VecLagrangian, "load_state_dict", spy)
    assert main(args) == 0
    assert seen == [ck["lagrangian"]["multiplier"]]
    with open(out / "curves.csv") as fh:
        rows = list(csv.DictReader(fh))
    steps = [int(r["timesteps"]) for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == 256
    # the first row after the checkpoint is one PID step from the checkpointed multiplier
    after = next(r for r in rows if int(r["timesteps"]) > ck["timesteps"])
    m = PIDMultiplier(**ck["lagrangian"]["multiplier"])
    assert m.update(float(after["cost"])) == pytest.approx(float(after["lambda"]), abs=1e-12)


# ---------------------------------------------------------------------------- lambda settles
SMALL_PROBLEM = [
    "--env",
    FEDLORA,
    "--algo",
    "ppo-lag",
    "--seed",
    "0",
    "--set",
    "num_devices=4",
    "--set",
    "episode_rounds=20",
    "--n-envs",
    "8",
    "--hp",
    "n_steps=40",
    "--hp",
    "batch_size=160",
    "--hp",
    "n_epochs=4",
    "--hp",
    "learning_rate=0.001",
    "--hp",
    "gamma=0.5",
    "--hp",
    "policy_kwargs={'net_arch': [32, 32]}",
    "--eval-episodes",
    "0",
    "--no-progress",
    "--checkpoint-every",
    "0",
]


def _train_small(
    tmp_path, name: str, steps: int, *lag: str, extra: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    from edgeft.agents.lagrangian import read_curves

    out = tmp_path / name
    assert (
        main(
            [
                "train",
                *SMALL_PROBLEM,
                "--timesteps",
                str(steps),
                "--out",
                str(out),
                *[x for kv in lag for x in ("--lag", kv)],
                *extra,
            ]
        )
        == 0
    )
    return read_curves(out)


@pytest.mark.slow
def test_lambda_settles_where_fixed_penalties_miss_the_limit(tmp_path):
    """K = 4 devices, 20-round episodes: a fixed small penalty breaks the budget, a fixed large
    one leaves it unused; dual ascent settles lambda between them with the budget met."""
    steps = 40_000

    def tail(c, key):  # the last quarter of training
        return c[key][-len(c[key]) // 4 :]

    low = _train_small(tmp_path, "low", steps, "ki=0", "kp=0", "lambda_init=0.02")
    high = _train_small(tmp_path, "high", steps, "ki=0", "kp=0", "lambda_init=1.5")
    lag = _train_small(tmp_path, "lag", steps, "ki=0.05", "kp=0.3")
    assert tail(low, "cost").mean() > 1.15
    assert tail(high, "cost").mean() < 0.8
    cost = tail(lag, "cost").mean()
    lam = tail(lag, "lambda")
    assert 0.9 < cost < 1.1, cost
    assert 0.02 < lam.mean() < 1.5
    assert lam.std() < 0.25 * lam.mean()  # settled, not drifting
    assert tail(lag, "devices").mean() > tail(high, "devices").mean()


@pytest.mark.slow
def test_episode_constraint_keeps_each_episode_within_the_budget(tmp_path):
    """The same small problem: the mean constraint meets the budget on average over episodes
    with single episodes over it; the per-episode constraint (``constraint=episode``) brings the
    mean overshoot per episode near its limit eps, several times below the mean constraint's,
    while scheduling almost as many devices."""
    steps = 60_000

    def tail(c, key):
        return c[key][-len(c[key]) // 4 :]

    mean = _train_small(tmp_path, "mean", steps, "ki=0.05", "kp=0.3")
    episode = _train_small(
        tmp_path,
        "episode",
        steps,
        "constraint=episode",
        "excess_limit=0.005",
        "ki=5",
        "kp=10",
        "max_error=20",
        "lambda_init=0.5",
        extra=("--hp", "gamma=0.95"),
    )
    assert tail(mean, "excess").mean() > 0.02
    assert tail(episode, "excess").mean() < 0.5 * tail(mean, "excess").mean()
    assert tail(episode, "excess").mean() < 0.02
    assert tail(episode, "devices").mean() > 0.8 * tail(mean, "devices").mean()


def test_mec_cost_is_the_energy_constraint_and_ppo_lag_runs_there(tmp_path):
    kw = {"num_users": 4, "num_servers": 2, "episode_rounds": 3, "action_mode": "discrete"}
    env = gym.make(MEC, **kw)
    assert cost_limit(env.unwrapped.config) == 1.0
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    assert constraint_cost([info], "mec")[0] == pytest.approx(float(np.mean(info["costs"])))
    out = tmp_path / "mec"
    assert (
        main(
            [
                "train",
                "--env",
                MEC,
                "--algo",
                "ppo-lag",
                "--seed",
                "1",
                *[x for k, v in kw.items() for x in ("--set", f"{k}={v}")],
                "--n-envs",
                "2",
                "--hp",
                "n_steps=6",
                "--hp",
                "batch_size=12",
                "--hp",
                "n_epochs=1",
                "--timesteps",
                "24",
                "--eval-episodes",
                "1",
                "--eval-every",
                "0",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    meta = json.loads((out / "model.agent.json").read_text())
    assert meta["lagrangian"]["multiplier"]["updates"] == 24 // 6
    assert (out / "curves.csv").is_file()
