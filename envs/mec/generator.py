"""Scenario generation and the exogenous random dynamics of the MEC env.

:func:`sample_initial_state` draws an episode (positions, device and server parameters, fading,
token lengths, empty queues); :func:`advance` draws the next round's exogenous values (mobility,
correlated fading, token lengths). Every draw comes from the ``rng`` passed in, in a fixed
order. The state type lives in ``types`` and the observation in ``observation``.
"""

from __future__ import annotations

import numpy as np
from edgeft.envs.channels import (
    ar1_fading,
    gauss_markov_start,
    gauss_markov_velocity,
    rayleigh_fading,
    reflect_in_square,
)
from edgeft.envs.mec.config import MECConfig
from edgeft.envs.mec.types import MECState


def _place_users(
    config: MECConfig, rng: np.random.Generator, servers: np.ndarray, n: int
) -> np.ndarray:
    pos = rng.uniform(0.0, config.area_m, size=(n, 2))
    for _ in range(100):  # resample users closer than min_distance_m to a server
        d = np.sqrt(((pos[:, None, :] - servers[None]) ** 2).sum(-1)).min(axis=1)
        bad = d < config.min_distance_m
        if not bad.any():
            break
        pos[bad] = rng.uniform(0.0, config.area_m, size=(int(bad.sum()), 2))
    return pos


def sample_tokens(
    config: MECConfig, rng: np.random.Generator, batch_shape: tuple[int, ...] = ()
) -> np.ndarray:
    """d_n ~ U{tokens_min..tokens_max}, drawn anew every round; ``batch_shape`` the leading
    copy axes of a batch (``rng`` then draws each copy's from its own generator)."""
    size = batch_shape + (config.num_users,) if batch_shape else config.num_users
    return rng.integers(config.tokens_min, config.tokens_max + 1, size=size).astype(np.float64)


def sample_initial_state(config: MECConfig, rng: np.random.Generator) -> MECState:
    """Draw an episode: positions, device/server parameters, fading, tokens; empty queues."""
    n, m = config.num_users, config.num_servers
    p_lo, p_hi = config.p_max_range_w
    fu_lo, fu_hi = config.f_user_max_range_hz
    fe_lo, fe_hi = config.f_edge_max_range_hz
    servers = rng.uniform(0.0, config.area_m, size=(m, 2))
    users = _place_users(config, rng, servers, n)
    sigma_v = config.mobility_step_m / np.sqrt(2.0)
    vel = gauss_markov_start(rng, (n, 2), sigma_v)
    re, im = rayleigh_fading(rng, (n, m))
    ref_dev = config.reference_point["device_energy"]
    budget = config.energy_budget_scale * ref_dev * rng.uniform(0.75, 1.25, size=n)
    return MECState(
        round_index=0,
        user_pos=users,
        user_vel=vel,
        server_pos=servers,
        fading_re=re,
        fading_im=im,
        tokens=sample_tokens(config, rng),
        p_max=rng.uniform(p_lo, p_hi, size=n),
        f_user_max=rng.uniform(fu_lo, fu_hi, size=n),
        cores_user=rng.choice(np.asarray(config.cores_user, dtype=np.float64), size=n),
        flops_user=np.full(n, float(config.flops_per_cycle_user)),
        samples=rng.integers(config.samples_range[0], config.samples_range[1] + 1, size=n).astype(
            np.float64
        ),
        energy_budget=budget,
        energy_queue=np.zeros(n),
        cores_edge=rng.integers(
            config.cores_edge_range[0], config.cores_edge_range[1] + 1, size=m
        ).astype(np.float64),
        flops_edge=rng.choice(np.asarray(config.flops_per_cycle_edge, dtype=np.float64), size=m),
        f_edge_max=rng.uniform(fe_lo, fe_hi, size=m),
        b_max=np.full(m, float(config.bandwidth_hz)),
    )


def advance(
    config: MECConfig, state: MECState, rng: np.random.Generator, energy_queue: np.ndarray
) -> MECState:
    """The next round's state: users move, fading evolves, new token lengths, new queues.

    Mobility (Gauss-Markov): v' = a v + sqrt(1 - a^2) sigma w, x' = x + v' reflected into the
    area. Fading (AR(1) Rayleigh): h' = rho h + sqrt(1 - rho^2) w, w ~ CN(0, 1). Both are the
    shared implementations of ``edgeft.envs.channels`` (the FedLoRA env's correlated mode uses
    them too).

    A batched ``state`` (a leading copy axis) advances every copy at once with an ``rng`` whose
    ``normal`` and ``integers`` draw each copy's values from that copy's own generator
    (``vector.CopyGenerators``): the same calls per copy, in the same order, as one copy's.
    """
    sigma_v = config.mobility_step_m / np.sqrt(2.0)
    vel = gauss_markov_velocity(rng, state.user_vel, config.mobility_memory, sigma_v)
    pos, vel = reflect_in_square(state.user_pos + vel, vel, config.area_m)
    re, im = ar1_fading(rng, state.fading_re, state.fading_im, config.fading_correlation)
    return state.replace(
        round_index=state.round_index + 1,
        user_pos=pos,
        user_vel=vel,
        fading_re=re,
        fading_im=im,
        tokens=sample_tokens(config, rng, state.batch_shape),
        energy_queue=np.asarray(energy_queue, dtype=np.float64),
    )
