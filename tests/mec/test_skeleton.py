"""The MEC env's pieces: one weighted cost, the observation layout, action <-> decision, the
typed state, the config in force and the config's real-mode check."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
from edgeft.baselines.mec import policies as P
from edgeft.baselines.mec import solver as S
from edgeft.envs.common import config_in_force
from edgeft.envs.mec import generator as G
from edgeft.envs.mec import observation as O
from edgeft.envs.mec import reward as R
from edgeft.envs.mec.actions import action_to_decision, decision_to_action
from edgeft.envs.mec.config import MECConfig
from edgeft.envs.mec.resources import fast_resource_rule
from edgeft.envs.mec.types import STATE_FORMAT, MECDecision, MECState, instance_from_state

import edgeft

from .helpers import make_instance
from .test_formulas import _loop_cost, _random_decision

ENV_ID = "edgeft/MECOffloading-v0"
SMALL = {"num_users": 6, "num_servers": 3, "episode_rounds": 4}
DECISION_KEYS = ("alpha", "server", "power", "bandwidth", "freq_user", "freq_edge")


# ----------------------------------------------------------------------- one weighted cost
@pytest.mark.parametrize("preset", ["default", "paper"])
@pytest.mark.parametrize("seed", range(4))
def test_every_weighted_cost_call_site_gives_the_reward_functions_value(seed, preset):
    """The env's info cost, the solver's objective, the policies' per-user cost (alpha choice)
    and a policy's reported cost are all ``reward.weighted_cost``, and it is the plain loop."""
    env = gym.make(ENV_ID, preset=preset, **SMALL)
    cfg = config_in_force(env)
    w, ud = cfg.weights, cfg.upload_delay
    obs, _ = env.reset(seed=seed)
    inst = env.unwrapped.instance_of(obs)
    dec = _random_decision(inst, np.random.default_rng(seed))
    want = R.weighted_cost(inst, dec, w, include_upload_delay=ud)
    assert want == pytest.approx(_loop_cost(inst, dec, w, ud), rel=1e-10)
    # the env (full mode expresses dec up to float rounding: compare with what it applied)
    _, _, _, _, info = env.step(decision_to_action(dec, cfg, "full", inst))
    applied = MECDecision(**{k: info[k] for k in DECISION_KEYS})
    assert info["objective"] == R.weighted_cost(inst, applied, w, include_upload_delay=ud)
    assert info["objective"] == pytest.approx(want, rel=1e-12)
    # the solvers' objective
    assert S.cost_of(inst, dec, w, ud) == want
    # the per-user cost behind best_integer_alpha (policies and the BC teacher)
    assert float(np.sum(P._per_user_cost(inst, dec, w, ud))) == want
    terms = R.per_user_terms(inst, dec, include_upload_delay=ud)
    np.testing.assert_array_equal(P._per_user_cost(inst, dec, w, ud), R.per_user_cost(terms, w))
    # a policy's reported cost
    policy = edgeft.make_policy("alpha-only", env, seed=seed)
    policy.predict(obs)
    assert policy.last_cost == R.weighted_cost(
        inst, policy.last_decision, w, include_upload_delay=ud
    )


def test_reward_is_cost_plus_queue_growth():
    q = np.array([0.0, 2.0, 5.0])
    e = np.array([3.0, 1.0, 0.5])
    budget = np.array([1.0, 2.0, 4.0])
    q_new = R.queue_update(q, e, budget)
    np.testing.assert_array_equal(q_new, [2.0, 1.0, 1.5])
    growth = R.queue_growth(q, q_new, budget)
    assert growth == pytest.approx(np.mean([2.0, -0.5, -0.875]))
    assert R.step_reward(3.0, growth, 2.0) == pytest.approx(-(3.0 + 2.0 * growth))


# ----------------------------------------------------------------------- observation layout
def test_layout_slices_tile_the_observation_in_order():
    config = MECConfig(**SMALL)
    layout = O.observation_layout(config)
    stop = 0
    for name, shape in layout:
        sl = getattr(layout, name)
        assert sl.start == stop and sl.stop - sl.start == int(np.prod(shape)), name
        assert layout.shape(name) == shape
        stop = sl.stop
    assert stop == layout.size == O.observation_size(config)
    assert layout.names[0] == "round_index" and layout.names[-2:] == O.DERIVED
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.size = 3  # type: ignore[misc]


def test_batched_encode_and_decode_match_one_copy_at_a_time():
    config = MECConfig(**SMALL)
    rng = np.random.default_rng(0)
    states = [G.sample_initial_state(config, rng) for _ in range(4)]
    states[2] = G.advance(config, states[2], rng, states[2].energy_queue + 1.0)
    batch = MECState.stack(states)
    obs = O.encode_observation(batch, config)
    assert obs.shape == (4, O.observation_size(config))
    for i, s in enumerate(states):
        one = O.encode_observation(s, config)
        np.testing.assert_array_equal(obs[i], one)
        back = O.decode_observation(one, config)
        assert back.round_index == s.round_index and isinstance(back.round_index, int)
        for name in MECState.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(back, name), getattr(s, name))
    decoded = O.decode_observation(obs.reshape(2, 2, -1), config)  # any leading axes
    assert decoded.batch_shape == (2, 2)
    np.testing.assert_array_equal(decoded.round_index, [[0, 0], [1, 0]])
    np.testing.assert_array_equal(decoded.fading_re[1, 0], states[2].fading_re)
    sec = O.observation_layout(config).sections(obs)
    np.testing.assert_array_equal(
        sec["gain_db"][3], 10 * np.log10(instance_from_state(config, states[3]).gain)
    )
    with pytest.raises(ValueError, match="entries"):
        O.decode_observation(obs[:, :-1], config)


# ----------------------------------------------------------------------- action <-> decision
def cfg_space_contains(cfg, action):
    from edgeft.envs.mec.actions import action_space

    space = action_space(cfg)
    return space.contains(np.asarray(action).astype(space.dtype))


@pytest.mark.parametrize("seed", range(3))
def test_decision_to_action_inverts_action_to_decision(seed):
    config, inst = make_instance(seed, num_users=7, num_servers=3)
    rng = np.random.default_rng(seed)
    alpha = rng.integers(1, config.num_layers, size=7).astype(np.float64)
    server = rng.integers(0, 3, size=7)
    dec = fast_resource_rule(inst, alpha, server, config.weights)  # fills every band
    for mode in config.ACTION_MODES:
        cfg = dataclasses.replace(config, action_mode=mode)
        act = decision_to_action(dec, cfg, inst=inst)
        assert cfg_space_contains(cfg, act)
        back, report = action_to_decision(cfg, act, inst)
        np.testing.assert_array_equal(back.alpha, dec.alpha)
        np.testing.assert_array_equal(back.server, dec.server)
        rtol = 1e-12 if mode != "box" else 1e-6  # box actions are float32
        keys = DECISION_KEYS[2:] if mode != "box" else DECISION_KEYS[2:5]
        for k in keys:
            np.testing.assert_allclose(getattr(back, k), getattr(dec, k), rtol=rtol, err_msg=k)
        if mode == "box":  # the box fills each server's GPU: the same split, scaled up
            used = np.bincount(server, weights=dec.freq_edge, minlength=3)
            np.testing.assert_allclose(
                back.freq_edge, dec.freq_edge * (inst.f_edge_max / used)[server], rtol=1e-6
            )
        if mode == "full":
            assert max(report.values()) < 1e-12
    with pytest.raises(ValueError, match="instance"):
        decision_to_action(dec, config, "box")
    with pytest.raises(ValueError, match="action_mode"):
        decision_to_action(dec, config, "continuous", inst)


# ----------------------------------------------------------------------- typed state
def test_state_round_trips_through_its_dict_and_refuses_other_formats():
    config = MECConfig(**SMALL)
    state = G.sample_initial_state(config, np.random.default_rng(1))
    data = state.to_dict()
    assert data["format"] == STATE_FORMAT
    back = MECState.from_dict(data)
    for name in MECState.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(back, name), getattr(state, name))
    batch = MECState.stack([state, back])
    np.testing.assert_array_equal(MECState.from_dict(batch.to_dict()).round_index, [0, 0])
    with pytest.raises(ValueError, match="format version 0"):
        MECState.from_dict({**data, "format": 0})
    with pytest.raises(ValueError, match="tokens"):
        MECState.from_dict({k: v for k, v in data.items() if k != "tokens"})


# ----------------------------------------------------------------------- config in force
def test_surrogate_config_in_force_is_the_config_and_read_only():
    env = gym.make(ENV_ID, **SMALL)
    assert config_in_force(env) is env.unwrapped.config
    with pytest.raises(AttributeError):
        env.unwrapped.config_in_force = MECConfig()


def test_policies_read_everything_from_the_config_they_are_given():
    """A policy built from a config with other weights decides (and reports costs) by those
    weights, not the env's: make_policy(name, env) passes config_in_force(env)."""
    env = gym.make(ENV_ID, **SMALL)
    obs, _ = env.reset(seed=0)
    other = dataclasses.replace(config_in_force(env), w_stability=5.0)
    policy = edgeft.make_policy("alpha-only", config=other, seed=0)
    policy.predict(obs)
    inst = env.unwrapped.instance_of(obs)
    assert policy.weights == other.weights != config_in_force(env).weights
    assert policy.last_cost == R.weighted_cost(inst, policy.last_decision, other.weights)


def test_training_without_real_mode_is_refused():
    for make in (
        lambda: MECConfig(training={"model": "tiny-bert"}),
        lambda: gym.make(ENV_ID, training={"model": "tiny-bert"}, **SMALL),
    ):
        with pytest.raises(ValueError, match="mode='real'") as err:
            make()
        assert "drop training" in str(err.value)
    assert MECConfig(mode="real", training={"model": "tiny-bert"}).training.model == "tiny-bert"
