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

from functools import lru_cache
from typing import Any

import numpy as np
from edgeft.envs.mec.config import MECConfig
from edgeft.envs.mec.types import MECState, gain_matrix
from edgeft.envs.observation import ObservationLayout

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


@lru_cache(maxsize=64)
def _layout(n: int, m: int) -> ObservationLayout:
    return ObservationLayout.of(_blocks(n, m), num_users=n, num_servers=m)


def observation_layout(config: MECConfig) -> ObservationLayout:
    """The observation layout of ``config`` (N users, M servers; ``layout.num_users``,
    ``layout.num_servers``): ``layout.tokens`` is the token block's slice (flat),
    ``layout.sections(obs)`` gives every block in its shape."""
    return _layout(int(config.num_users), int(config.num_servers))


def observation_size(config: MECConfig) -> int:
    """Length of the flat observation vector."""
    return observation_layout(config).size


def encode_observation(
    state: MECState, config: MECConfig, gain: np.ndarray | None = None
) -> np.ndarray:
    """The flat float64 observation(s) of ``state`` (one copy, or batched: (..., size));
    ``gain`` the state's ``types.gain_matrix`` where the caller has it."""
    lead = state.batch_shape
    parts = []
    for name, _shape in observation_layout(config):
        if name == "gain_db":
            g = gain_matrix(config, state) if gain is None else gain
            value = 10.0 * np.log10(np.maximum(g, 1e-300))
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
