"""Both env families implement the skeleton contract (``edgeft.envs.skeleton``): a dynamics
module with ``Params``, ``decide(params, action, state)`` and ``step(params, state, decision,
rng) -> (state, reward, info)``, shells that call them, the same method names on every env, and
copy i of each vector env equal to the single env at seed + i."""

from __future__ import annotations

import inspect

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs import skeleton
from edgeft.envs.fedlora import dynamics as fedlora_dynamics
from edgeft.envs.mec import dynamics as mec_dynamics

import edgeft  # noqa: F401  (registers the env ids)

FAMILIES = {
    "fedlora": (
        fedlora_dynamics,
        "edgeft/FedLoRAScheduling-v0",
        {"num_devices": 5, "episode_rounds": 4},
    ),
    "mec": (
        mec_dynamics,
        "edgeft/MECOffloading-v0",
        {"num_users": 4, "num_servers": 2, "episode_rounds": 3},
    ),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_dynamics_module_has_the_contracts_functions(family):
    module, _, _ = FAMILIES[family]
    assert isinstance(module, skeleton.Dynamics)
    assert list(inspect.signature(module.decide).parameters)[:3] == list(skeleton.DECIDE_ARGS)
    assert list(inspect.signature(module.step).parameters)[:4] == list(skeleton.STEP_ARGS)
    assert "config" in {f for f in module.Params.__dataclass_fields__}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_shell_is_decide_then_step(family):
    """Playing the contract's functions by hand gives the env's own step, bit for bit."""
    module, env_id, config = FAMILIES[family]
    env = gym.make(env_id, **config).unwrapped
    twin = gym.make(env_id, **config).unwrapped
    env.reset(seed=3)
    twin.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(config["episode_rounds"]):
        action = env.action_space.sample()
        obs, reward, _, _, info = env.step(action)
        if family == "fedlora":
            params = twin._step_params
            state, r2, info2 = module.step(
                params, twin._state, module.decide(params, action, twin._state), twin.np_random
            )
            twin._state = state
            twin._draw_round()
            obs2 = twin._obs()
        else:
            params = module.Params(twin.config_in_force)
            state, r2, info2 = module.step(
                params, twin._state, module.decide(params, action, twin._state), twin.np_random
            )
            twin._state = state
            from edgeft.envs.mec.observation import encode_observation

            obs2 = encode_observation(state, twin.config_in_force)
        assert r2 == reward
        np.testing.assert_array_equal(obs2, obs)
        assert info2.keys() == info.keys()
    del rng


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_env_offers_the_same_methods(family):
    _, env_id, config = FAMILIES[family]
    env = gym.make(env_id, **config).unwrapped
    venv = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", **config)
    obs, _ = env.reset(seed=0)
    vobs, _ = venv.reset(seed=0)
    for e, o in ((env, obs), (venv.unwrapped, vobs)):
        assert callable(e.decode_observation) and e.config_in_force is not None
        e.decode_observation(o)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_copy_i_of_the_vector_env_is_the_single_env_at_seed_plus_i(family):
    _, env_id, config = FAMILIES[family]
    n = 3
    venv = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **config)
    vobs, _ = venv.reset(seed=21)
    actions = [venv.action_space.sample() for _ in range(config["episode_rounds"] + 2)]
    rows = [vobs]
    for a in actions:
        rows.append(venv.step(a)[0])
    for i in range(n):
        env = gym.make(env_id, **config)
        obs, _ = env.reset(seed=21 + i)
        np.testing.assert_array_equal(rows[0][i], obs)
        for t, a in enumerate(actions, start=1):
            if t == config["episode_rounds"] + 1:  # the vector env's autoreset step
                obs, _ = env.reset()
            else:
                obs = env.step(a[i])[0]
            np.testing.assert_allclose(rows[t][i], obs, rtol=1e-12, atol=0)
