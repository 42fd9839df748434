"""Surrogate v3: the shared (LoRA) gap with Theorem 1's stationary term and the per-device heads,
checked against a plain per-device loop of the recurrence, through the single and the vector env
(and v4: forgetting below s*(N), the settle level's power and cap)."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs.fedlora.surrogate import SurrogateParams, simulate_masks

ENV_ID = "edgeft/FedLoRAScheduling-v0"
V3 = SurrogateParams(
    initial_loss=1.1,
    loss_floor=0.5,
    rate=0.05,
    gap_ratio=0.3,
    onset=0.3,
    stationary=0.12,
    head_fraction=0.4,
    head_rate=0.1,
)
#: v4 terms on, strong enough to matter in a few rounds
V4 = dataclasses.replace(V3, drift_rate=0.4, settle_power=0.75, settle_cap=True, stationary=0.8)


def loop_reference(masks: np.ndarray, p: SurrogateParams) -> tuple[list[float], list[list[float]]]:
    """The recurrence written out per device, in plain Python (the definition in the module
    docstring), without the module's tables or vector operations (v4's terms included)."""
    T, K = masks.shape
    g0 = p.initial_loss - p.loss_floor
    heads = [1.0] * K
    shared = s0 = (1 - p.head_fraction) * g0
    losses, devices = [], []
    for t in range(T + 1):
        if t > 0:
            n = sum(bool(m) for m in masks[t - 1])
            if n > 0:
                rho = p.rate * (1 - p.gap_ratio * (K - n) / (n * (K - 1)))
                rho *= p.onset + (1 - p.onset) * min(max(1 - shared / s0, 0.0), 1.0)
                settle = p.stationary * ((K - n) / (n * (K - 1))) ** p.settle_power
                if p.settle_cap:
                    settle = min(settle, s0)
                if p.drift_rate > 0 and shared < settle:
                    rho = p.drift_rate  # v4: forgetting below the settle level
                shared = settle + (1 - rho) * (shared - settle)
            for k in range(K):
                if masks[t - 1][k]:
                    heads[k] = heads[k] * (1 - p.head_rate)
        dev = [p.loss_floor + shared + h * (g0 - shared) for h in heads]
        devices.append(dev)
        losses.append(sum(dev) / K)
    return losses, devices


@pytest.mark.parametrize("params", [V3, V4], ids=["v3", "v4"])
@pytest.mark.parametrize("seed", range(6))
def test_vectorised_surrogate_matches_the_per_device_loop(seed, params):
    rng = np.random.default_rng(seed)
    K, T = int(rng.integers(2, 12)), 60
    masks = rng.random((T, K)) < rng.uniform(0.05, 0.9)
    loss, dev = simulate_masks(masks, params)
    ref_loss, ref_dev = loop_reference(masks, params)
    np.testing.assert_allclose(loss, ref_loss, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dev, ref_dev, rtol=0, atol=1e-12)
    # a device's head moves only in rounds it is scheduled: a device never scheduled so far
    # stays at the initial loss, and a scheduled device's loss falls further than it would have
    never = np.cumsum(masks, axis=0) == 0
    np.testing.assert_allclose(dev[1:][never], V3.initial_loss, rtol=0, atol=1e-12)
    delta = np.diff(dev, axis=0)
    for t in range(1, T):
        off = ~masks[t] & ~never[t]
        if off.any() and masks[t].any():
            # same head state before -> the scheduled one ends lower than the unscheduled one
            assert delta[t, masks[t]].min() < delta[t, off].max() + 1e-12


@pytest.mark.parametrize("params", [V3, V4], ids=["v3", "v4"])
def test_env_single_and_vector_follow_the_recurrence_for_random_schedules(params):
    K, T, n = 7, 40, 4
    env = gym.make(ENV_ID, num_devices=K, episode_rounds=T, action_mode="subset", surrogate=params)
    venv = gym.make_vec(
        ENV_ID,
        num_envs=n,
        vectorization_mode="vector_entry_point",
        num_devices=K,
        episode_rounds=T,
        action_mode="subset",
        surrogate=params,
    )
    rng = np.random.default_rng(3)
    # few devices late in the episode, so that v4's forgetting is exercised
    masks = rng.random((T, n, K)) < np.where(np.arange(T) < T // 2, 0.7, 0.15)[:, None, None]
    venv.reset(seed=0)
    vec_loss = np.empty((T, n))
    for t in range(T):
        _, _, _, _, info = venv.step(masks[t].astype(np.int8))
        vec_loss[t] = info["loss"]
    for i in range(n):
        env.reset(seed=i)
        single = [env.step(masks[t, i].astype(np.int8))[4]["loss"] for t in range(T)]
        ref, _ = loop_reference(masks[:, i], params)
        np.testing.assert_allclose(single, ref[1:], rtol=0, atol=1e-12)
        np.testing.assert_allclose(vec_loss[:, i], ref[1:], rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            env.unwrapped.state.heads, _heads_after(masks[:, i]), rtol=0, atol=1e-12
        )


def _heads_after(masks: np.ndarray) -> np.ndarray:
    return (1 - V3.head_rate) ** masks.sum(axis=0)


@pytest.mark.parametrize("params", [V3, V4, "iid", "dirichlet", "iid-v4"])
def test_settled_loss_decreases_with_the_number_of_devices(params):
    """Theorem 1's stationary term: a constant schedule of N devices (rotating, so every head is
    trained) settles lower for larger N (the test constants and both shipped calibrations)."""
    p = SurrogateParams.resolve(params)
    K, T = 20, 3000
    finals = []
    for n in (1, 2, 5, 10, 20):
        masks = np.zeros((T, K), dtype=bool)
        for t in range(T):
            masks[t, (n * t + np.arange(n)) % K] = True
        finals.append(simulate_masks(masks, p)[0][-1])
    assert all(a > b for a, b in zip(finals, finals[1:], strict=False)), finals
    assert finals[-1] == pytest.approx(p.loss_floor, abs=1e-3)


@pytest.mark.parametrize("data", ["iid", "dirichlet"])
def test_shipped_calibrations_rank_fixed_below_rotating_in_the_env(data):
    K = 20
    finals = {}
    for name in ("fixed-5", "rotating-5"):
        env = gym.make(ENV_ID, num_devices=K, data=data, action_mode="subset")
        env.reset(seed=0)
        for t in range(env.unwrapped.config.episode_rounds):
            mask = np.zeros(K, dtype=np.int8)
            mask[((0 if name == "fixed-5" else 5 * t) + np.arange(5)) % K] = 1
            info = env.step(mask)[4]
        finals[name] = info["loss"]
    assert finals["rotating-5"] < finals["fixed-5"] - 0.05


def test_rotating_beats_a_fixed_subset_of_the_same_size():
    K, T, n = 20, 100, 5
    fixed = np.zeros((T, K), dtype=bool)
    fixed[:, :n] = True
    rotating = np.zeros((T, K), dtype=bool)
    for t in range(T):
        rotating[t, (n * t + np.arange(n)) % K] = True
    lf, df = simulate_masks(fixed, V3)
    lr, _ = simulate_masks(rotating, V3)
    assert lr[-1] < lf[-1] - 0.1
    # the devices left out of the fixed subset stay at the initial loss
    np.testing.assert_allclose(df[-1, n:], V3.initial_loss, rtol=0, atol=1e-12)
    assert np.all(df[-1, :n] < V3.initial_loss - 0.2)


def test_version2_params_give_the_version2_numbers():
    """head_fraction = stationary = 0: the env runs the v2 formula (one gap, one floor) bit for
    bit, and the v3 recurrence agrees with it to rounding."""
    from edgeft.envs.fedlora.surrogate import contraction

    p = SurrogateParams(rate=0.07, gap_ratio=0.3, head_share=0.2, onset=0.1)
    assert p.version == 2
    rng = np.random.default_rng(0)
    masks = rng.random((50, 8)) < 0.5
    env = gym.make(ENV_ID, num_devices=8, episode_rounds=50, action_mode="subset", surrogate=p)
    env.reset(seed=0)
    loss, _ = simulate_masks(masks, p)
    x = p.initial_loss
    for t, m in enumerate(masks):
        n = int(m.sum())
        gap = x - p.loss_floor  # the v2 step, written out
        rho = contraction(n, 8, p)
        frac = min(max(1.0 - gap / (p.initial_loss - p.loss_floor), 0.0), 1.0)
        rho = rho * (p.onset + (1.0 - p.onset) * frac)
        x = p.loss_floor + (1.0 - rho) * gap
        assert env.step(m.astype(np.int8))[4]["loss"] == x
        assert loss[t + 1] == pytest.approx(x, abs=1e-12)


def test_v3_fields_are_validated_with_their_names():
    with pytest.raises(ValueError, match="surrogate.head_fraction"):
        SurrogateParams(head_fraction=1.0)
    with pytest.raises(ValueError, match="surrogate.head_rate"):
        SurrogateParams(head_rate=1.5)
    with pytest.raises(ValueError, match="surrogate.stationary"):
        SurrogateParams(stationary=-0.1)
    with pytest.raises(ValueError, match="data"):
        gym.make(ENV_ID, data="non-iid")


def test_v4_forgets_fast_below_the_settle_level_and_is_v3_with_its_terms_off():
    """A trained encoder handed to one device per round rises to s*(1) at drift_rate per round
    (v3: at the slow rho(1)); every v4 field at its default gives version 3 and v3's numbers."""
    K, T = 10, 80
    masks = np.zeros((T, K), dtype=bool)
    masks[:60] = True  # everyone: the shared gap settles near 0
    masks[60:, 0] = True  # then one device per round
    v3 = dataclasses.replace(V3, stationary=0.8)
    drift = dataclasses.replace(v3, drift_rate=0.5)
    assert drift.version == 4 and v3.version == 3
    l3, _ = simulate_masks(masks, v3)
    ld, dd = simulate_masks(masks, drift)
    np.testing.assert_allclose(ld[:61], l3[:61], rtol=0, atol=1e-15)  # the same while descending
    # device 0's loss is floor + s + h (G0 - s), its head h known: recover the shared gap s
    g0 = v3.initial_loss - v3.loss_floor
    h0 = (1 - v3.head_rate) ** np.cumsum(masks[:, 0])  # after each round
    shared = [(dd[t + 1, 0] - v3.loss_floor - h0[t] * g0) / (1 - h0[t]) for t in range(59, 66)]
    settle = v3.stationary  # s*(1)
    assert shared[0] < 0.1 * settle
    for a, b in zip(shared, shared[1:], strict=False):  # the gap to s*(1) halves every round
        assert settle - b == pytest.approx(0.5 * (settle - a), rel=1e-9)
    assert ld[-1] > l3[-1] + 0.1  # forgetting is fast, v3's rise at rho(1) slow
    # v4 fields at their defaults: v3 exactly
    same = SurrogateParams(
        **{**dataclasses.asdict(V3), "drift_rate": 0.0, "settle_power": 1.0, "settle_cap": False}
    )
    assert same.version == 3
    np.testing.assert_array_equal(simulate_masks(masks, same)[0], simulate_masks(masks, V3)[0])


def test_v4_params_round_trip_and_are_validated(tmp_path):
    path = tmp_path / "v4.json"
    V4.to_json(path)
    assert SurrogateParams.from_json(path) == V4
    with pytest.raises(ValueError, match="surrogate.drift_rate"):
        SurrogateParams(drift_rate=1.5)
    with pytest.raises(ValueError, match="surrogate.settle_power"):
        SurrogateParams(settle_power=0.0)
    with pytest.raises(ValueError, match="surrogate.settle_cap"):
        SurrogateParams(settle_cap="yes")
