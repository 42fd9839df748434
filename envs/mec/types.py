"""Typed values of the MEC env: the Markov state, one round's physical instance, one decision.

:class:`MECState` is the env's whole Markov state; its fields broadcast over leading env axes
(the vector env keeps one state whose arrays have a leading copy axis). :class:`MECInstance` is
what the cost model needs for one round of one copy (built from a state and the config by
:func:`instance_from_state`), :class:`MECDecision` one round's decision. Imports: numpy, the
formulas and the config only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from edgeft.envs.mec import formulas as F
from edgeft.envs.mec.config import MECConfig

#: Version of the typed state's layout; a stored state (``MECState.to_dict``) records it and
#: ``MECState.from_dict`` refuses any other.
STATE_FORMAT = 1


@dataclass(frozen=True)
class MECState:
    """The env's Markov state (SI units).

    The round index, user positions and velocities (Gauss-Markov mobility), server positions,
    the complex small-scale fading of every user-server link (AR(1) Rayleigh, correlated from
    round to round), this round's token lengths, the per-episode device and server parameters
    and the per-user energy-budget virtual queues. Shapes are those of one copy (below); a
    batch of copies adds the same leading axes to every field (``round_index`` then is an int
    array of the batch shape): :meth:`stack` and :meth:`index` convert.
    """

    round_index: Any  # int, or an int array of the batch shape
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
        return MECState(**values)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The leading env axes (``()`` for one copy)."""
        return tuple(np.shape(self.round_index))

    @staticmethod
    def stack(states: Sequence[MECState]) -> MECState:
        """One batched state of several one-copy states (a new leading axis)."""
        values: dict[str, Any] = {
            f.name: np.stack([getattr(s, f.name) for s in states]) for f in fields(MECState)
        }
        values["round_index"] = np.asarray([int(s.round_index) for s in states], dtype=np.int64)
        return MECState(**values)

    def index(self, i: Any) -> MECState:
        """Copy ``i`` (an index into the leading axes) of a batched state."""
        values: dict[str, Any] = {f.name: getattr(self, f.name)[i] for f in fields(self)}
        ri = np.asarray(self.round_index)[i]
        values["round_index"] = int(ri) if np.ndim(ri) == 0 else ri
        return MECState(**values)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of the fields (copies) with ``format`` = :data:`STATE_FORMAT`."""
        out: dict[str, Any] = {"format": STATE_FORMAT}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = int(v) if f.name == "round_index" and np.ndim(v) == 0 else np.array(v)
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> MECState:
        """The state :meth:`to_dict` wrote.

        Raises:
            ValueError: ``data`` records another format version, or fields are missing.
        """
        fmt = data.get("format")
        if fmt != STATE_FORMAT:
            raise ValueError(
                f"stored MEC state has format version {fmt!r}; this version of "
                f"edgeft reads format {STATE_FORMAT} only"
            )
        names = [f.name for f in fields(MECState)]
        missing = [k for k in names if k not in data]
        if missing:
            raise ValueError(f"stored MEC state (format {fmt}) lacks the field(s) {missing}")
        values: dict[str, Any] = {k: np.array(data[k], dtype=np.float64) for k in names}
        ri = np.asarray(data["round_index"])
        values["round_index"] = int(ri) if ri.ndim == 0 else ri.astype(np.int64)
        return MECState(**values)


@dataclass(frozen=True)
class MECInstance:
    """Everything the cost model needs for one round (SI units).

    Per user (shape (N,)): ``tokens`` d_n, ``p_max`` (W), ``f_user_max`` (Hz), ``cores_user``
    C_n^U, ``flops_user`` D_n^U (FLOP/cycle/core), ``samples`` k_n, ``energy_budget`` (J per
    round) and ``energy_queue`` (J). Per server (shape (M,)): ``cores_edge`` C_m^E,
    ``flops_edge`` D_m^E, ``f_edge_max`` (Hz), ``b_max`` (Hz). ``gain`` (N, M) is g_nm
    (linear power gain, path loss times |h|^2). Scalars: Upsilon ``num_layers``, ``batch_size``
    B, ``hidden_size`` h, ``bits_per_element``, ``kappa_user``, ``kappa_edge``, ``lipschitz``
    L, ``noise_psd`` sigma^2 (W/Hz).
    """

    gain: np.ndarray
    tokens: np.ndarray
    p_max: np.ndarray
    f_user_max: np.ndarray
    cores_user: np.ndarray
    flops_user: np.ndarray
    samples: np.ndarray
    energy_budget: np.ndarray
    energy_queue: np.ndarray
    cores_edge: np.ndarray
    flops_edge: np.ndarray
    f_edge_max: np.ndarray
    b_max: np.ndarray
    num_layers: int
    batch_size: int
    hidden_size: int
    bits_per_element: float
    kappa_user: float
    kappa_edge: float
    lipschitz: float
    noise_psd: float

    @property
    def num_users(self) -> int:
        """N."""
        return int(self.tokens.shape[-1])

    @property
    def num_servers(self) -> int:
        """M."""
        return int(self.b_max.shape[-1])

    @property
    def psi(self) -> np.ndarray:
        """psi(d_n): FLOPs per layer per training iteration, shape (N,)."""
        return F.flops_per_layer(self.tokens, self.batch_size, self.hidden_size)

    @property
    def bits(self) -> np.ndarray:
        """s(d_n): bits of the intermediate result uploaded by user n, shape (N,)."""
        return F.activation_bits(
            self.tokens, self.batch_size, self.hidden_size, self.bits_per_element
        )

    def replace(self, **changes: object) -> MECInstance:
        """A copy with some fields replaced."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return MECInstance(**values)  # type: ignore[arg-type]

    def index(self, i: Any) -> MECInstance:
        """Copy ``i`` (an index into the leading axes) of a batched instance: every array field
        indexed (as :meth:`MECState.index`), the scalar fields shared."""
        changes = {
            f.name: getattr(self, f.name)[i]
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }
        return self.replace(**changes)

    def subset(self, users: np.ndarray) -> MECInstance:
        """The instance restricted to some users (servers unchanged)."""
        per_user = (
            "tokens",
            "p_max",
            "f_user_max",
            "cores_user",
            "flops_user",
            "samples",
            "energy_budget",
            "energy_queue",
        )
        changes: dict[str, object] = {k: getattr(self, k)[users] for k in per_user}
        changes["gain"] = self.gain[users]
        return self.replace(**changes)


@dataclass(frozen=True)
class MECDecision:
    """One round's decision, per user (shape (N,), SI units).

    ``alpha`` layers trained locally (integer-valued in the env; real-valued inside the
    relaxation), ``server`` edge server index, ``power`` p_n (W), ``bandwidth`` b_{n,m(n)} (Hz),
    ``freq_user`` f_n (Hz), ``freq_edge`` f_{n,m(n)} (Hz).
    """

    alpha: np.ndarray
    server: np.ndarray
    power: np.ndarray
    bandwidth: np.ndarray
    freq_user: np.ndarray
    freq_edge: np.ndarray

    def association(self, num_servers: int) -> np.ndarray:
        """chi as a binary (N, M) matrix."""
        chi = np.zeros((self.server.shape[0], num_servers))
        chi[np.arange(self.server.shape[0]), self.server] = 1.0
        return chi


def at_server(values: np.ndarray, server: np.ndarray) -> np.ndarray:
    """Each user's entry of a per-server array: ``values[server]`` for one copy ((M,) values,
    (N,) servers); per copy for a batch ((..., M) values, (..., N) servers)."""
    if server.ndim == 1:
        return values[server]
    if server.ndim == 2:
        return values[np.arange(server.shape[0])[:, None], server]
    return np.take_along_axis(values, server, axis=-1)


def user_gain(gain: np.ndarray, server: np.ndarray) -> np.ndarray:
    """g_{n, m(n)}: each user's gain to its server, from the (..., N, M) gains and the (..., N)
    servers (one copy or a batch)."""
    if server.ndim == 1:
        return gain[np.arange(gain.shape[0]), server]
    if server.ndim == 2:
        copies, n = server.shape
        return gain[np.arange(copies)[:, None], np.arange(n), server]
    return np.take_along_axis(gain, server[..., None], axis=-1)[..., 0]


def gain_matrix(config: MECConfig, state: MECState) -> np.ndarray:
    """g_nm of the state's positions and fading, shape (..., N, M) (``formulas.channel_gain``)."""
    return F.channel_gain(
        state.user_pos, state.server_pos, state.fading_re, state.fading_im, config.min_distance_m
    )


def instance_from_state(
    config: MECConfig, state: MECState, gain: np.ndarray | None = None
) -> MECInstance:
    """The round's :class:`MECInstance` (what the cost model needs) from a state: one copy's,
    or a batch's (every array field then keeps the leading copy axes).

    ``config`` is the config in force (real mode: the env's ``config_in_force``); ``gain``
    the state's :func:`gain_matrix` where the caller has computed it already.
    """
    return MECInstance(
        gain=gain_matrix(config, state) if gain is None else gain,
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
