"""The MEC observation: its layout, encoding and decoding (the only module that knows offsets).

The observation is the Markov state (:class:`~edgeft.envs.mec.types.MECState`) written out in
float64, block after block, plus two derived features for learning agents (gains g_nm in dB
and queues in units of the per-round budget) that decoding ignores, so a policy that decodes
the observation sees exactly the numbers the env uses. Every function accepts leading batch
axes (``obs`` of shape (..., size)).

Blocks, in order (shapes of one copy; N users, M servers):

==================  ========  ==================================================
block               shape     meaning
==================  ========  ==================================================
round_index         (1,)      rounds played in this episode
user_pos            (N, 2)    user positions (m)
user_vel            (N, 2)    user velocities (m per round)
server_pos          (M, 2)    server positions (m)
fading_re           (N, M)    real part of the small-scale fading h_nm
fading_im           (N, M)    imaginary part of h_nm
tokens              (N,)      this round's token lengths d_n
p_max               (N,)      p_n^max (W)
f_user_max          (N,)      f_n^max (Hz)
cores_user          (N,)      C_n^U
flops_user          (N,)      D_n^U (FLOP/cycle/core)
samples             (N,)      k_n
energy_budget       (N,)      e_bar_n, the device-energy budget per round (J)
energy_queue        (N,)      Q_n, the energy-budget virtual queue (J)
cores_edge          (M,)      C_m^E
flops_edge          (M,)      D_m^E
f_edge_max          (M,)      f_m^max (Hz)
b_max               (M,)      b_m^max (Hz)
gain_db             (N, M)    derived: 10 log10 g_nm
queue_in_budgets    (N,)      derived: Q_n / e_bar_n
==================  ========  ==================================================
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from edgeft.envs.mec.config import MECConfig
from edgeft.envs.mec.types import MECState, gain_matrix

#: the derived blocks (features for agents; decoding ignores them)
DERIVED = ("gain_db", "queue_in_budgets")


def _blocks(n: int, m: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return (
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
    )


@dataclass(frozen=True)
class ObservationLayout:
    """Where each block lies in the flat observation: one ``slice`` per block, by name.

    ``obs[..., layout.tokens]`` is the token block (flat); :meth:`sections` gives every block
    in its shape. Iterating yields ``(name, shape)`` pairs in order (the form
    ``generator.observation_layout`` returned before this class).
    """

    num_users: int
    num_servers: int
    size: int
    round_index: slice
    user_pos: slice
    user_vel: slice
    server_pos: slice
    fading_re: slice
    fading_im: slice
    tokens: slice
    p_max: slice
    f_user_max: slice
    cores_user: slice
    flops_user: slice
    samples: slice
    energy_budget: slice
    energy_queue: slice
    cores_edge: slice
    flops_edge: slice
    f_edge_max: slice
    b_max: slice
    gain_db: slice
    queue_in_budgets: slice

    @property
    def names(self) -> tuple[str, ...]:
        """Block names in order."""
        return tuple(name for name, _ in _blocks(self.num_users, self.num_servers))

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of block ``name`` for one copy."""
        return dict(_blocks(self.num_users, self.num_servers))[name]

    def __iter__(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        return iter(_blocks(self.num_users, self.num_servers))

    def sections(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Every block of ``obs`` (..., size) as a (..., *shape) view, by name, in order.

        Raises:
            ValueError: the last axis of ``obs`` is not ``size`` long.
        """
        if obs.shape[-1] != self.size:
            raise ValueError(f"observation must have {self.size} entries for this config "
                             f"(N={self.num_users}, M={self.num_servers}), got {obs.shape[-1]}")
        lead = obs.shape[:-1]
        return {name: obs[..., getattr(self, name)].reshape(lead + shape)
                for name, shape in self}


@lru_cache(maxsize=64)
def _layout(n: int, m: int) -> ObservationLayout:
    slices: dict[str, Any] = {}
    i = 0
    for name, shape in _blocks(n, m):
        size = int(np.prod(shape))
        slices[name] = slice(i, i + size)
        i += size
    return ObservationLayout(num_users=n, num_servers=m, size=i, **slices)


def observation_layout(config: MECConfig) -> ObservationLayout:
    """The observation layout of ``config`` (N users, M servers)."""
    return _layout(int(config.num_users), int(config.num_servers))


def observation_size(config: MECConfig) -> int:
    """Length of the flat observation vector."""
    return observation_layout(config).size


def encode_observation(state: MECState, config: MECConfig) -> np.ndarray:
    """The flat float64 observation(s) of ``state`` (one copy, or batched: (..., size))."""
    lead = state.batch_shape
    parts = []
    for name, _shape in observation_layout(config):
        if name == "gain_db":
            value = 10.0 * np.log10(np.maximum(gain_matrix(config, state), 1e-300))
        elif name == "queue_in_budgets":
            value = state.energy_queue / state.energy_budget
        else:
            value = getattr(state, name)
        parts.append(np.asarray(value, dtype=np.float64).reshape(lead + (-1,)))
    return np.concatenate(parts, axis=-1)


def decode_observation(obs: np.ndarray, config: MECConfig) -> MECState:
    """The :class:`MECState` an observation encodes (exact: the env uses the same numbers).

    ``obs`` may carry leading batch axes; the state then carries them too (``round_index`` an
    int array). A 1-D ``obs`` gives one copy's state (``round_index`` an int).

    Raises:
        ValueError: ``obs`` does not have the length of this config's observations.
    """
    obs = np.asarray(obs, dtype=np.float64)
    values: dict[str, Any] = observation_layout(config).sections(obs)
    for name in DERIVED:
        values.pop(name)
    ri = values["round_index"][..., 0]
    values["round_index"] = int(ri) if ri.ndim == 0 else ri.astype(np.int64)
    return MECState(**values)


def observation_sections(config: MECConfig, obs: np.ndarray) -> dict[str, np.ndarray]:
    """The blocks of observations ``obs`` (..., size), each as a (..., *shape) view, by name
    (``observation_layout(config).sections(obs)``; argument order kept from
    ``generator.observation_sections``)."""
    return observation_layout(config).sections(obs)
