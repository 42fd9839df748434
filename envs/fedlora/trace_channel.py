"""Channels replayed from cached traces of a standard channel model: ``channel="3gpp-umi"``.

A trace file ``channels/<channel>.npz`` (next to this module) holds ``gain_db``, float32 of shape
(traces, rounds, devices): each device's channel gain |h_k|^2 of each round in dB, in the env's
units (W received per W of ``tx_power_w``, over the env's ``noise_psd``), and a JSON sidecar
``channels/<channel>.json`` says how it was made. ``3gpp-umi`` was generated with sionna's
3GPP TR 38.901 UMi model (``python -m edgeft.envs.fedlora.make_3gpp_trace``, the optional extra
``edgeft[3gpp]``); reading it needs numpy only, so the env, its tests and CI stay offline and
never import sionna.

An episode replays part of one trace (:class:`TraceChannel`): at reset the env's RNG picks, with
one ``rng.random(2 + devices)`` call (whatever the values),

- the trace, uniformly among the file's traces;
- the first round, uniformly among the ``max(1, R - T)`` offsets at which the episode's T
  rounds and the observation after its last step fit in the trace's R rounds (with T = R the
  offset is 0 and that last observation wraps round to the trace's first round);
- which K of the trace's devices play, in which order (a uniformly random permutation, its first
  K; devices of a trace are exchangeable, so this adds variety, not bias).

The round's gain in dB is the trace's plus 10 log10(``tx_power_w`` / 1 W) (0 dB at the default
1 W), the linear gain is decoded from it exactly as the block fading's, and the SNR density is
gain / ``noise_psd``. Nothing is drawn after the reset: an episode's channels are a function of
its seed, as with the other channel processes, and a checkpoint holds the episode's position in
its trace (trace, offset, devices, rounds read).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from edgeft.envs.channel_traces import (  # noqa: F401  (importable from here too)
    TRACE_CHANNELS,
    Trace,
    check_fits,
    load_trace,
    trace_path,
)
from edgeft.envs.fedlora.formulas import db_to_gain

if TYPE_CHECKING:
    from edgeft.envs.fedlora.config import FedLoRAConfig


@dataclass
class TraceChannel:
    """The replayed channel of one env (``db`` of shape (R, K)): the episode's rounds of its
    trace, in order from its offset (read circularly), for its K devices, and how many rounds
    were read (the vector env keeps one per copy).

    Attributes:
        config: the env's config (``channel``, ``tx_power_w``, ``noise_psd``, K, T).
        trace, offset: the trace and its first round.
        devices: the trace's devices that play, in the env's order, (K,).
        pos: rounds read in this episode (the next :meth:`next` returns round ``pos``).
        db, gain, snr: the episode's gains in dB, linear (W) and over the noise density (Hz),
            (R, K).
    """

    config: FedLoRAConfig
    trace: int
    offset: int
    devices: np.ndarray
    pos: int
    db: np.ndarray
    gain: np.ndarray
    snr: np.ndarray

    @classmethod
    def start(cls, rng: np.random.Generator, config: FedLoRAConfig) -> TraceChannel:
        """The channel of a new episode of one env, its trace, offset and devices drawn."""
        trace, offset, devices = draw_episode(rng, config)
        db, gain, snr = _episode_rows(config, trace, offset, devices)
        return cls(config, int(trace), int(offset), devices, 0, db, gain, snr)

    def next(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(gain in dB, gain, |h|^2 / sigma^2) of the next round, shape (K,); draws nothing
        from ``rng``."""
        i = self.pos % self.db.shape[-2]
        self.pos += 1
        return self.db[i], self.gain[i], self.snr[i]

    def copy(self) -> TraceChannel:
        """A deep copy (for checkpoints)."""
        return dataclasses.replace(
            self,
            devices=self.devices.copy(),
            db=self.db.copy(),
            gain=self.gain.copy(),
            snr=self.snr.copy(),
        )


def draw_episode(
    rng: np.random.Generator, config: FedLoRAConfig, size: tuple[int, ...] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(trace, offset, devices) of new episodes, shapes ``size``, ``size``, ``size + (K,)``:
    one ``rng.random(size + (2 + devices,))`` call (the same numbers for ``size=()`` and
    ``(1,)``, so one copy of the vector env replays the single env)."""
    tr = load_trace(config.channel)
    starts = max(1, tr.rounds - config.episode_rounds)
    u = rng.random(size + (2 + tr.num_devices,))
    trace = np.minimum((u[..., 0] * tr.num_traces).astype(np.int64), tr.num_traces - 1)
    offset = np.minimum((u[..., 1] * starts).astype(np.int64), starts - 1)
    devices = np.argsort(u[..., 2:], axis=-1, kind="stable")[..., : config.num_devices]
    return trace, offset, devices


def _episode_rows(
    config: FedLoRAConfig, trace: np.ndarray, offset: np.ndarray, devices: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The R rounds of episodes (trace, offset, devices) from their offset on (circularly):
    gains in dB (tx power folded in), linear, over the noise density; (..., R, K)."""
    tr = load_trace(config.channel)
    rows = (np.asarray(offset)[..., None] + np.arange(tr.rounds)) % tr.rounds
    db = tr.gain_db[np.asarray(trace)[..., None, None], rows[..., :, None], devices[..., None, :]]
    if config.tx_power_w != 1.0:
        db = db + 10.0 * np.log10(config.tx_power_w)
    gain = db_to_gain(db)
    return db, gain, gain / config.noise_psd
