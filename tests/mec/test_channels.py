"""The MEC env's mobility and fading run on the shared ``edgeft.envs.channels`` (the FedLoRA env's
correlated mode uses the same functions): its draws are bit for bit those of the plain formulas
it was written with before they moved there."""

from __future__ import annotations

import numpy as np
import pytest
from edgeft.envs.mec import generator as G
from edgeft.envs.mec.config import MECConfig


def _plain_advance(config, state, rng):
    """The MEC env's exogenous step as written before the shared module: Gauss-Markov velocity,
    reflection into the square (here a loop over coordinates), AR(1) fading (same draws, same
    arithmetic). Also returns whether a user crossed a wall."""
    a = config.mobility_memory
    sigma_v = config.mobility_step_m / np.sqrt(2.0)
    vel = a * state.user_vel + np.sqrt(1.0 - a * a) * rng.normal(
        0.0, sigma_v, size=state.user_vel.shape
    )
    pos = state.user_pos + vel
    side = config.area_m
    crossed = bool(((pos < 0.0) | (pos > side)).any())
    for idx in np.ndindex(pos.shape):  # per coordinate: mirror at the wall it crossed
        if pos[idx] < 0.0:
            pos[idx], vel[idx] = -pos[idx], -vel[idx]
        elif pos[idx] > side:
            pos[idx], vel[idx] = 2 * side - pos[idx], -vel[idx]
        pos[idx] = min(max(pos[idx], 0.0), side)
    rho = config.fading_correlation
    s = np.sqrt((1.0 - rho * rho) / 2.0)
    re = rho * state.fading_re + s * rng.normal(size=state.fading_re.shape)
    im = rho * state.fading_im + s * rng.normal(size=state.fading_im.shape)
    return pos, vel, re, im, crossed


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"fading_correlation": 0.0, "mobility_memory": 0.0},
        {"fading_correlation": 1.0, "mobility_step_m": 250.0, "area_m": 300.0},
    ],
)
def test_mec_advance_is_the_plain_gauss_markov_and_ar1_step(overrides):
    config = MECConfig(num_users=8, num_servers=3, **overrides)
    rng = np.random.default_rng(5)
    state = G.sample_initial_state(config, rng)
    # the initial draws: velocities N(0, sigma^2), then h ~ CN(0, 1) real parts, imaginary parts
    ref = np.random.default_rng(5)
    ref.uniform(0.0, config.area_m, size=(3, 2))
    G._place_users(config, ref, state.server_pos, 8)
    np.testing.assert_array_equal(
        state.user_vel, ref.normal(0.0, config.mobility_step_m / np.sqrt(2.0), size=(8, 2))
    )
    np.testing.assert_array_equal(state.fading_re, ref.normal(0.0, np.sqrt(0.5), size=(8, 3)))
    np.testing.assert_array_equal(state.fading_im, ref.normal(0.0, np.sqrt(0.5), size=(8, 3)))
    bounced = False
    for _ in range(30):
        ref.bit_generator.state = rng.bit_generator.state
        pos, vel, re, im, crossed = _plain_advance(config, state, ref)
        bounced |= crossed
        state = G.advance(config, state, rng, state.energy_queue)
        np.testing.assert_array_equal(state.user_pos, pos)
        np.testing.assert_array_equal(state.user_vel, vel)
        np.testing.assert_array_equal(state.fading_re, re)
        np.testing.assert_array_equal(state.fading_im, im)
        assert ((state.user_pos >= 0.0) & (state.user_pos <= config.area_m)).all()
    assert bounced  # the reflection at the walls was exercised
