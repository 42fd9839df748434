"""Initial state and random draws of the FedLoRA env: device placement and the channel process,
one implementation shared by the single and the vector env (and its checkpoints: the channel
process, pre-drawn block or Markov state, is part of a checkpoint, so a resumed episode sees the
same fading).

Three channel processes, picked by ``FedLoRAConfig.channel`` and ``correlated_channel``:

- :class:`FadingBlocks` (the defaults, the paper's model): devices fixed for the episode, block
  Rayleigh fading i.i.d. from round to round, drawn ``BLOCK`` rounds per RNG call.
- :class:`CorrelatedChannel` (``fading_correlation > 0`` or ``mobility_speed_mps > 0``): AR(1)
  Rayleigh fading and Gauss-Markov mobility in the cell disc, advanced round by round with the
  functions of ``edgeft.envs.channels`` that the MEC env uses.
- :class:`~edgeft.envs.fedlora.trace_channel.TraceChannel` (``channel="3gpp-umi"``): rounds of a
  cached 3GPP TR 38.901 trace, replayed (trace, offset and device order drawn at reset).

:func:`start_channel` makes one env's; ``next(rng) -> (gain in dB, gain, |h|^2 / sigma^2)``
draws its next round. The vector env gives every copy its own generator and draws each copy as
the single env draws it: :class:`CopyBlocks` (the block fading, batched) and
:class:`CopyChannels` (the other processes, one per copy), made by :func:`copy_channels`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from edgeft.envs.channels import (
    ar1_fading,
    fading_power,
    gauss_markov_start,
    gauss_markov_velocity,
    rayleigh_fading,
    reflect_in_disc,
)
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.fedlora.formulas import (
    db_to_gain,
    gain_to_db,
    path_gain,
    rayleigh_fading_db,
    sample_positions,
)
from edgeft.envs.fedlora.observation import BITS_UNIT
from edgeft.envs.fedlora.surrogate import shared_gap0
from edgeft.envs.fedlora.trace_channel import TraceChannel
from edgeft.envs.fedlora.types import State

#: rounds of fading drawn per RNG call
BLOCK = 64


def draw_positions(
    rng: np.random.Generator, config: FedLoRAConfig, size: tuple[int, ...] = ()
) -> np.ndarray:
    """Positions (m) of K devices placed uniformly in the cell disc, shape ``size + (K, 2)``."""
    return sample_positions(
        rng, config.num_devices, (config.cell_center_m, 0.0), config.cell_radius_m, size
    )


def cell_gain_db(config: FedLoRAConfig, pos: np.ndarray) -> np.ndarray:
    """Mean received gain in dB of devices at ``pos`` (..., K, 2) (server at the origin; path
    loss (d/d0)^-exponent, transmit power folded in), shape (..., K)."""
    dist = np.hypot(pos[..., 0], pos[..., 1])
    return gain_to_db(
        config.tx_power_w * path_gain(dist, config.reference_distance_m, config.path_loss_exponent)
    )


def draw_cell(
    rng: np.random.Generator, config: FedLoRAConfig, size: tuple[int, ...] = ()
) -> np.ndarray:
    """Mean received gain in dB of K devices placed uniformly in the cell disc (server at the
    origin; path loss (d/d0)^-exponent, transmit power folded in), shape ``size + (K,)``."""
    return cell_gain_db(config, draw_positions(rng, config, size))


def start_channel(
    rng: np.random.Generator, config: FedLoRAConfig
) -> FadingBlocks | CorrelatedChannel | TraceChannel:
    """The channel process of a new episode of one env: its cell drawn (the devices'
    positions), nothing of its fading yet (the first ``next`` draws it); with a trace
    ``channel``, its trace, offset and devices drawn."""
    if config.channel != "rayleigh":
        return TraceChannel.start(rng, config)
    if config.correlated_channel:
        return CorrelatedChannel.start(rng, config)
    return FadingBlocks(draw_cell(rng, config), config.noise_psd)


def initial_state(config: FedLoRAConfig, batch: int | None = None) -> State:
    """The State at the start of an episode, before its first round's channel is drawn: no
    device scheduled yet (age 0), q = 0, round 0, the surrogate's initial loss, the configured
    message size. ``batch=None``: one env (scalars, (K,) arrays); else ``batch`` copies.
    Draws nothing (the cell and the fading come from :func:`draw_cell` and
    :class:`FadingBlocks`)."""
    k = config.num_devices
    sur = config.surrogate
    loss0 = sur.initial_loss
    v3 = config.mode == "surrogate" and sur.version >= 3  # the v3 state (v3 and v4)
    lead = () if batch is None else (batch,)
    empty = np.empty(lead + (0,))
    state = State(
        gain_db=empty,
        gain=empty,
        snr=empty,
        bits_mbit=empty,
        bits=empty,
        bits_ln2=empty,
        age=np.zeros(lead + (k,), dtype=np.int64),
        queue=0.0 if batch is None else np.zeros(batch),
        t=0 if batch is None else np.zeros(batch, dtype=np.int64),
        loss=float(loss0) if batch is None else np.full(batch, loss0),
        accuracy=float("nan") if batch is None else np.full(batch, np.nan),
        heads=np.full(lead + (k,), sur.head_start if v3 else 0.0),
        shared=(shared_gap0(sur) if v3 else float("nan"))
        if batch is None
        else np.full(batch, shared_gap0(sur) if v3 else np.nan),
        excess_sum=0.0 if batch is None else np.zeros(batch),
    )
    state.set_bits(np.full(lead + (k,), config.bits_per_round / BITS_UNIT))
    return state


@dataclass
class FadingBlocks:
    """Pre-drawn fading of ``BLOCK`` rounds for one env (``mean_db`` of shape (K,)): gain in
    dB = mean gain in dB + Rayleigh fading in dB, with the linear gain (exactly what the
    observation decodes to) and |h|^2 / sigma^2 computed once per block.

    One RNG call per block instead of per round; the stream is a pure function of the seed.
    """

    mean_db: np.ndarray
    noise_psd: float
    fade: np.ndarray = field(default_factory=lambda: np.empty(0))
    db: np.ndarray = field(default_factory=lambda: np.empty(0))
    gain: np.ndarray = field(default_factory=lambda: np.empty(0))
    snr: np.ndarray = field(default_factory=lambda: np.empty(0))
    pos: int = 0

    def next(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(gain in dB, gain, |h|^2 / sigma^2) of the next round, shape ``mean_db.shape``."""
        if self.pos >= self.db.shape[0]:
            self.fade = rayleigh_fading_db(rng, (BLOCK,) + self.mean_db.shape)
            self.db = self.mean_db + self.fade
            self.gain = db_to_gain(self.db)
            self.snr = self.gain / self.noise_psd
            self.pos = 0
        i = self.pos
        self.pos += 1
        return self.db[i], self.gain[i], self.snr[i]

    def copy(self) -> FadingBlocks:
        """A copy for a checkpoint (the block arrays are replaced, never written, by ``next``;
        ``mean_db`` is copied)."""
        return dataclasses.replace(self, mean_db=self.mean_db.copy())


@dataclass
class CopyBlocks:
    """The block fading of ``n`` copies of the env, each drawn from its own generator exactly as
    the single env draws it (:class:`FadingBlocks`): copy i's cell from its generator at its
    reset, its next ``BLOCK`` rounds of fading from it when its block runs out. Arrays are
    (BLOCK, n, K) with a read position per copy, so a round is one gather for all copies and a
    block refill one draw per copy every ``BLOCK`` rounds."""

    mean_db: np.ndarray
    noise_psd: float
    fade: np.ndarray
    db: np.ndarray
    gain: np.ndarray
    snr: np.ndarray
    pos: np.ndarray

    @classmethod
    def empty(cls, config: FedLoRAConfig, batch: int) -> CopyBlocks:
        """Every copy without a cell and with an empty block (``restart`` draws them)."""
        k = config.num_devices
        z = np.zeros((BLOCK, batch, k))
        return cls(
            np.zeros((batch, k)),
            config.noise_psd,
            z,
            z.copy(),
            z.copy(),
            z.copy(),
            np.full(batch, BLOCK, dtype=np.int64),
        )

    def restart(self, i: int, rng: np.random.Generator, config: FedLoRAConfig) -> None:
        """A new episode for copy ``i``: its cell drawn from ``rng``, its block emptied."""
        self.mean_db[i] = draw_cell(rng, config)
        self.pos[i] = BLOCK

    def next(self, rngs: list[np.random.Generator]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(gain in dB, gain, |h|^2 / sigma^2) of every copy's next round, shape (n, K)."""
        for i in np.flatnonzero(self.pos >= BLOCK).tolist():
            fade = rayleigh_fading_db(rngs[i], (BLOCK, self.mean_db.shape[1]))
            self.fade[:, i] = fade
            self.db[:, i] = self.mean_db[i] + fade
            self.gain[:, i] = db_to_gain(self.db[:, i])
            self.snr[:, i] = self.gain[:, i] / self.noise_psd
            self.pos[i] = 0
        rows, cols = self.pos, np.arange(self.pos.size)
        out = self.db[rows, cols], self.gain[rows, cols], self.snr[rows, cols]
        self.pos += 1
        return out


@dataclass
class CopyChannels:
    """Per-copy channel processes (:class:`CorrelatedChannel` or ``TraceChannel``, each a
    single env's), each advanced with its own copy's generator; a round stacks their values."""

    config: FedLoRAConfig
    channels: list[Any]

    @classmethod
    def empty(cls, config: FedLoRAConfig, batch: int) -> CopyChannels:
        return cls(config, [None] * batch)

    def restart(self, i: int, rng: np.random.Generator, config: FedLoRAConfig) -> None:
        """A new episode for copy ``i``: its channel started from ``rng`` as the single env's."""
        self.channels[i] = start_channel(rng, config)

    def next(self, rngs: list[np.random.Generator]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = [ch.next(rng) for ch, rng in zip(self.channels, rngs)]
        return tuple(np.stack([r[j] for r in rows]) for j in range(3))  # type: ignore[return-value]


def copy_channels(config: FedLoRAConfig, batch: int) -> CopyBlocks | CopyChannels:
    """The channel processes of ``batch`` copies that each draw from their own generator
    (the vector env's): block fading batched, the other processes per copy."""
    if config.channel == "rayleigh" and not config.correlated_channel:
        return CopyBlocks.empty(config, batch)
    return CopyChannels.empty(config, batch)


@dataclass
class CorrelatedChannel:
    """The Markov channel of one env (``pos`` of shape (K, 2)): device positions and velocities
    (Gauss-Markov mobility in the cell disc) and the small-scale fading h = re + j im (AR(1)
    Rayleigh), advanced one round per :meth:`next`.

    Round 0 draws h (and, with mobility, the velocities) from the stationary laws; every later
    round first moves the devices (velocity step, then position += velocity x round duration,
    reflected into the disc; path loss recomputed), then steps the fading. The round's gain in
    dB is the path-loss gain in dB plus 10 log10 |h|^2, decoded to the linear gain exactly as
    the block fading's. Draws per round are fixed (2 K normals for the fading, 2 K more with
    mobility), whatever the actions, so an episode's channels are a function of its seed.

    Attributes:
        config: the env's config (its channel fields).
        pos: device positions (m), (..., K, 2).
        mean_db: their path-loss gain in dB, (..., K).
        vel: velocities (m/s), (..., K, 2); empty before round 0 and without mobility.
        re, im: the fading h, (..., K); empty before round 0.
    """

    config: FedLoRAConfig
    pos: np.ndarray
    mean_db: np.ndarray
    vel: np.ndarray = field(default_factory=lambda: np.empty(0))
    re: np.ndarray = field(default_factory=lambda: np.empty(0))
    im: np.ndarray = field(default_factory=lambda: np.empty(0))

    @classmethod
    def start(cls, rng: np.random.Generator, config: FedLoRAConfig) -> CorrelatedChannel:
        """A new episode's channel: the devices placed in the cell (drawn from ``rng``), no
        fading yet (the first :meth:`next` draws it from its stationary law)."""
        pos = draw_positions(rng, config)
        return cls(config, pos, cell_gain_db(config, pos))

    @property
    def moving(self) -> bool:
        """Whether the devices move (``mobility_speed_mps > 0``)."""
        return self.config.mobility_speed_mps > 0.0

    def next(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(gain in dB, gain, |h|^2 / sigma^2) of the next round, shape ``mean_db.shape``."""
        cfg = self.config
        sigma = cfg.mobility_speed_mps / np.sqrt(2.0)
        if self.re.size == 0:  # round 0: the stationary laws
            if self.moving:
                self.vel = gauss_markov_start(rng, self.pos.shape, sigma)
            self.re, self.im = rayleigh_fading(rng, self.mean_db.shape)
        else:
            if self.moving:
                self.vel = gauss_markov_velocity(rng, self.vel, cfg.mobility_memory, sigma)
                self.pos, self.vel = reflect_in_disc(
                    self.pos + self.vel * cfg.round_duration_s,
                    self.vel,
                    (cfg.cell_center_m, 0.0),
                    cfg.cell_radius_m,
                )
                self.mean_db = cell_gain_db(cfg, self.pos)
            self.re, self.im = ar1_fading(rng, self.re, self.im, cfg.fading_correlation)
        db = self.mean_db + gain_to_db(fading_power(self.re, self.im))
        gain = db_to_gain(db)
        return db, gain, gain / cfg.noise_psd

    def copy(self) -> CorrelatedChannel:
        """A deep copy (for checkpoints)."""
        return CorrelatedChannel(
            self.config,
            self.pos.copy(),
            self.mean_db.copy(),
            self.vel.copy(),
            self.re.copy(),
            self.im.copy(),
        )
