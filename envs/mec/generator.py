"""Scenario generation and exogenous dynamics of the MEC env; observation encoding.

The Markov state (:class:`MECState`) is: the round index, user positions and velocities
(Gauss-Markov mobility), server positions, the complex small-scale fading of every user-server
link (AR(1) Rayleigh, so channels are correlated from round to round), this round's token
lengths, the per-episode device and server parameters, and the per-user energy-budget virtual
queues. The observation is that state written out in float64, plus two derived features (gains in
dB and queues in units of the per-round budget) that decoding ignores, so a policy that decodes
the observation sees exactly the numbers the env uses.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from edgeft.envs.mec import formulas as F
from edgeft.envs.mec.config import MECConfig
from edgeft.envs.mec.types import MECInstance


@dataclass(frozen=True)
class MECState:
    """The env's Markov state (SI units; see the module docstring)."""

    round_index: int
    user_pos: np.ndarray  # (N, 2) m
    user_vel: np.ndarray  # (N, 2) m per round
    server_pos: np.ndarray  # (M, 2) m
    fading_re: np.ndarray  # (N, M)
    fading_im: np.ndarray  # (N, M)
    tokens: np.ndarray  # (N,)
    p_max: np.ndarray  # (N,) W
    f_user_max: np.ndarray  # (N,) Hz
    cores_user: np.ndarray  # (N,)
    flops_user: np.ndarray  # (N,)
    samples: np.ndarray  # (N,)
    energy_budget: np.ndarray  # (N,) J per round
    energy_queue: np.ndarray  # (N,) J
    cores_edge: np.ndarray  # (M,)
    flops_edge: np.ndarray  # (M,)
    f_edge_max: np.ndarray  # (M,) Hz
    b_max: np.ndarray  # (M,) Hz

    def replace(self, **changes: object) -> MECState:
        """A copy with some fields replaced."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return MECState(**values)  # type: ignore[arg-type]


def observation_layout(config: MECConfig) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of the observation's sections, in order.

    The ``gain_db`` (N, M) and ``queue_in_budgets`` (N,) sections are derived features for
    learning agents; :func:`decode_observation` ignores them.
    """
    n, m = config.num_users, config.num_servers
    return [
        ("round_index", (1,)),
        ("user_pos", (n, 2)),
        ("user_vel", (n, 2)),
        ("server_pos", (m, 2)),
        ("fading_re", (n, m)),
        ("fading_im", (n, m)),
        ("tokens", (n,)),
        ("p_max", (n,)),
        ("f_user_max", (n,)),
        ("cores_user", (n,)),
        ("flops_user", (n,)),
        ("samples", (n,)),
        ("energy_budget", (n,)),
        ("energy_queue", (n,)),
        ("cores_edge", (m,)),
        ("flops_edge", (m,)),
        ("f_edge_max", (m,)),
        ("b_max", (m,)),
        ("gain_db", (n, m)),
        ("queue_in_budgets", (n,)),
    ]


def observation_sections(config: MECConfig, obs: np.ndarray) -> dict[str, np.ndarray]:
    """The sections of a batch of flat observations ``obs`` (B, size), each as (B, *shape)
    views, by name (layout: :func:`observation_layout`)."""
    out, i = {}, 0
    for name, shape in observation_layout(config):
        size = int(np.prod(shape))
        out[name] = obs[:, i:i + size].reshape((obs.shape[0],) + shape)
        i += size
    return out


def observation_size(config: MECConfig) -> int:
    """Length of the flat observation vector."""
    return int(sum(np.prod(s) for _, s in observation_layout(config)))


def gain_matrix(config: MECConfig, state: MECState) -> np.ndarray:
    """g_nm = 10^(-PL(max(dist, min_distance))/10) |h_nm|^2, shape (N, M)."""
    diff = state.user_pos[:, None, :] - state.server_pos[None, :, :]
    dist = np.maximum(np.sqrt((diff**2).sum(-1)), config.min_distance_m)
    return 10.0 ** (-F.path_loss_db(dist) / 10.0) * (state.fading_re**2 + state.fading_im**2)


def encode_observation(config: MECConfig, state: MECState) -> np.ndarray:
    """The flat float64 observation of ``state`` (layout: :func:`observation_layout`)."""
    parts = []
    for name, _shape in observation_layout(config):
        if name == "gain_db":
            value = 10.0 * np.log10(np.maximum(gain_matrix(config, state), 1e-300))
        elif name == "queue_in_budgets":
            value = state.energy_queue / state.energy_budget
        else:
            value = getattr(state, name)
        parts.append(np.asarray(value, dtype=np.float64).ravel())
    return np.concatenate(parts)


def decode_observation(config: MECConfig, obs: np.ndarray) -> MECState:
    """The :class:`MECState` an observation encodes (exact: the env uses the same numbers).

    Raises:
        ValueError: ``obs`` does not have the length of this config's observations.
    """
    obs = np.asarray(obs, dtype=np.float64).ravel()
    size = observation_size(config)
    if obs.shape[0] != size:
        raise ValueError(f"observation must have {size} entries for this config "
                         f"(N={config.num_users}, M={config.num_servers}), got {obs.shape[0]}")
    values = {k: v[0] for k, v in observation_sections(config, obs[None, :]).items()}
    values.pop("gain_db")
    values.pop("queue_in_budgets")
    values["round_index"] = int(values["round_index"][0])
    return MECState(**values)


def instance_from_state(config: MECConfig, state: MECState) -> MECInstance:
    """The round's :class:`MECInstance` (what the cost model needs) from the state."""
    return MECInstance(
        gain=gain_matrix(config, state),
        tokens=state.tokens,
        p_max=state.p_max,
        f_user_max=state.f_user_max,
        cores_user=state.cores_user,
        flops_user=state.flops_user,
        samples=state.samples,
        energy_budget=state.energy_budget,
        energy_queue=state.energy_queue,
        cores_edge=state.cores_edge,
        flops_edge=state.flops_edge,
        f_edge_max=state.f_edge_max,
        b_max=state.b_max,
        num_layers=config.num_layers,
        batch_size=config.batch_size,
        hidden_size=config.hidden_size,
        bits_per_element=config.bits_per_element,
        kappa_user=config.kappa_user,
        kappa_edge=config.kappa_edge,
        lipschitz=config.lipschitz,
        noise_psd=config.noise_psd,
    )


def _place_users(config: MECConfig, rng: np.random.Generator, servers: np.ndarray,
                 n: int) -> np.ndarray:
    pos = rng.uniform(0.0, config.area_m, size=(n, 2))
    for _ in range(100):  # resample users closer than min_distance_m to a server
        d = np.sqrt(((pos[:, None, :] - servers[None]) ** 2).sum(-1)).min(axis=1)
        bad = d < config.min_distance_m
        if not bad.any():
            break
        pos[bad] = rng.uniform(0.0, config.area_m, size=(int(bad.sum()), 2))
    return pos


def sample_tokens(config: MECConfig, rng: np.random.Generator) -> np.ndarray:
    """d_n ~ U{tokens_min..tokens_max}, drawn anew every round."""
    return rng.integers(config.tokens_min, config.tokens_max + 1,
                        size=config.num_users).astype(np.float64)


def sample_initial_state(config: MECConfig, rng: np.random.Generator) -> MECState:
    """Draw an episode: positions, device/server parameters, fading, tokens; empty queues."""
    n, m = config.num_users, config.num_servers
    servers = rng.uniform(0.0, config.area_m, size=(m, 2))
    users = _place_users(config, rng, servers, n)
    sigma_v = config.mobility_step_m / np.sqrt(2.0)
    vel = rng.normal(0.0, sigma_v, size=(n, 2))
    re = rng.normal(0.0, np.sqrt(0.5), size=(n, m))
    im = rng.normal(0.0, np.sqrt(0.5), size=(n, m))
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
        p_max=rng.uniform(*config.p_max_range_w, size=n),
        f_user_max=rng.uniform(*config.f_user_max_range_hz, size=n),
        cores_user=rng.choice(np.asarray(config.cores_user, dtype=np.float64), size=n),
        flops_user=np.full(n, float(config.flops_per_cycle_user)),
        samples=rng.integers(config.samples_range[0], config.samples_range[1] + 1,
                             size=n).astype(np.float64),
        energy_budget=budget,
        energy_queue=np.zeros(n),
        cores_edge=rng.integers(config.cores_edge_range[0], config.cores_edge_range[1] + 1,
                                size=m).astype(np.float64),
        flops_edge=rng.choice(np.asarray(config.flops_per_cycle_edge, dtype=np.float64), size=m),
        f_edge_max=rng.uniform(*config.f_edge_max_range_hz, size=m),
        b_max=np.full(m, float(config.bandwidth_hz)),
    )


def advance(config: MECConfig, state: MECState, rng: np.random.Generator,
            energy_queue: np.ndarray) -> MECState:
    """The next round's state: users move, fading evolves, new token lengths, new queues.

    Mobility (Gauss-Markov): v' = a v + sqrt(1 - a^2) sigma w, x' = x + v' reflected into the
    area. Fading (AR(1) Rayleigh): h' = rho h + sqrt(1 - rho^2) w, w ~ CN(0, 1).
    """
    a = config.mobility_memory
    sigma_v = config.mobility_step_m / np.sqrt(2.0)
    vel = a * state.user_vel + np.sqrt(1.0 - a * a) * rng.normal(0.0, sigma_v,
                                                                  size=state.user_vel.shape)
    pos = state.user_pos + vel
    side = config.area_m
    low, high = pos < 0.0, pos > side
    pos = np.where(low, -pos, np.where(high, 2 * side - pos, pos))
    vel = np.where(low | high, -vel, vel)
    pos = np.clip(pos, 0.0, side)
    rho = config.fading_correlation
    s = np.sqrt((1.0 - rho * rho) / 2.0)
    re = rho * state.fading_re + s * rng.normal(size=state.fading_re.shape)
    im = rho * state.fading_im + s * rng.normal(size=state.fading_im.shape)
    return state.replace(round_index=state.round_index + 1, user_pos=pos, user_vel=vel,
                         fading_re=re, fading_im=im, tokens=sample_tokens(config, rng),
                         energy_queue=np.asarray(energy_queue, dtype=np.float64))
