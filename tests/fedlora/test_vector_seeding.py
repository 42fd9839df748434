"""Copy i of the FedLoRA vector env plays exactly like the single env reset with seed + i,
autoresets included, for every channel process and with the surrogate's loss noise: the same
channels and delays bit for bit, the same losses and rewards to rounding (the batched
surrogate step sums the heads in another order than the single env's inlined one)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import edgeft  # noqa: F401  (registers the env ids)

ENV_ID = "edgeft/FedLoRAScheduling-v0"
NOISY = {
    "initial_loss": 1.1,
    "loss_floor": 0.6,
    "rate": 0.05,
    "gap_ratio": 0.5,
    "stationary": 0.2,
    "head_rate": 0.1,
    "noise": 0.02,
}
CASES = {
    "iid": {},
    "correlated": {"fading_correlation": 0.9, "mobility_speed_mps": 1.5, "round_duration_s": 2.0},
    "3gpp": {"channel": "3gpp-umi"},
    "noisy": {"surrogate": NOISY},
}


def _single(config: dict, seed: int, actions: np.ndarray, rounds: int) -> list[dict]:
    env = gym.make(ENV_ID, **config)
    obs, _ = env.reset(seed=seed)
    out, t = [], 0
    for a in actions:
        if t == rounds:  # the vector env spends this step on the reset (NEXT_STEP autoreset)
            obs, _ = env.reset()
            out.append({"obs": obs})
            t = 0
            continue
        obs, r, _, trunc, info = env.step(a)
        out.append({"obs": obs, "reward": r, "loss": info["loss"], "delay": info["delay"]})
        t += 1
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_copy_i_is_the_single_env_at_seed_plus_i(case):
    rounds, n, steps = 70, 3, 150  # > one 64-round fading block, two autoresets
    config = {"num_devices": 6, "episode_rounds": rounds, **CASES[case]}
    venv = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", **config)
    obs_v, _ = venv.reset(seed=40)
    rng = np.random.default_rng(1)
    actions = rng.uniform(0.0, 1.0, (steps, n, 6)) * (rng.random((steps, n, 6)) < 0.5)
    rows = []
    for a in actions:
        obs, r, _, _, info = venv.step(a)
        rows.append((obs, r, info))
    for i in range(n):
        single = _single(config, 40 + i, actions[:, i], rounds)
        for step, (want, (obs, r, info)) in enumerate(zip(single, rows)):
            msg = f"copy {i} step {step}"
            np.testing.assert_array_equal(obs[i][:-1], want["obs"][:-1], err_msg=msg)
            np.testing.assert_allclose(obs[i][-1], want["obs"][-1], rtol=1e-13, err_msg=msg)
            if "reward" in want:
                assert info["delay"][i] == want["delay"], msg
                np.testing.assert_allclose(
                    [r[i], info["loss"][i]],
                    [want["reward"], want["loss"]],
                    rtol=1e-12,
                    atol=1e-12,
                    err_msg=msg,
                )


def test_a_list_of_seeds_and_none_continue_each_copy():
    venv = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point")
    a, _ = venv.reset(seed=[7, 9])
    single = [gym.make(ENV_ID).reset(seed=s)[0] for s in (7, 9)]
    np.testing.assert_array_equal(a, np.stack(single))
    b, _ = venv.reset()  # no seed: each copy continues its generator (a new episode)
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="num_envs=2"):
        venv.reset(seed=[1, 2, 3])
