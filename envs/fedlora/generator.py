"""Initial state and random draws of the FedLoRA env: device placement and block Rayleigh
fading, one implementation shared by the single and the vector env (and its checkpoints: the
pre-drawn block is part of a checkpoint, so a resumed episode sees the same fading)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
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
from edgeft.envs.fedlora.types import State

#: rounds of fading drawn per RNG call
BLOCK = 64


def draw_cell(rng: np.random.Generator, config: FedLoRAConfig,
              size: tuple[int, ...] = ()) -> np.ndarray:
    """Mean received gain in dB of K devices placed uniformly in the cell disc (server at the
    origin; path loss (d/d0)^-exponent, transmit power folded in), shape ``size + (K,)``."""
    pos = sample_positions(rng, config.num_devices, (config.cell_center_m, 0.0),
                           config.cell_radius_m, size)
    dist = np.hypot(pos[..., 0], pos[..., 1])
    return gain_to_db(config.tx_power_w * path_gain(dist, config.reference_distance_m,
                                                    config.path_loss_exponent))


def initial_state(config: FedLoRAConfig, batch: int | None = None) -> State:
    """The State at the start of an episode, before its first round's channel is drawn: no
    device scheduled yet (age 0), q = 0, round 0, the surrogate's initial loss, the configured
    message size. ``batch=None``: one env (scalars, (K,) arrays); else ``batch`` copies.
    Draws nothing (the cell and the fading come from :func:`draw_cell` and
    :class:`FadingBlocks`)."""
    k = config.num_devices
    sur = config.surrogate
    loss0 = sur.initial_loss
    v3 = config.mode == "surrogate" and sur.version == 3
    lead = () if batch is None else (batch,)
    empty = np.empty(lead + (0,))
    state = State(gain_db=empty, gain=empty, snr=empty, bits_mbit=empty, bits=empty,
                  bits_ln2=empty, age=np.zeros(lead + (k,), dtype=np.int64),
                  queue=0.0 if batch is None else np.zeros(batch),
                  t=0 if batch is None else np.zeros(batch, dtype=np.int64),
                  loss=float(loss0) if batch is None else np.full(batch, loss0),
                  accuracy=float("nan") if batch is None else np.full(batch, np.nan),
                  heads=np.full(lead + (k,), sur.head_start if v3 else 0.0),
                  shared=(shared_gap0(sur) if v3 else float("nan")) if batch is None
                  else np.full(batch, shared_gap0(sur) if v3 else np.nan))
    state.set_bits(np.full(lead + (k,), config.bits_per_round / BITS_UNIT))
    return state


@dataclass
class FadingBlocks:
    """Pre-drawn fading of ``BLOCK`` rounds for one env (``mean_db`` of shape (K,)) or a batch
    of copies ((n, K)): gain in dB = mean gain in dB + Rayleigh fading in dB, with the linear gain
    (exactly what the observation decodes to) and |h|^2 / sigma^2 computed once per block.

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

    def replace_cells(self, idx: np.ndarray, mean_db: np.ndarray) -> None:
        """New mean gains for copies ``idx`` (batched blocks): the rest of the pre-drawn block
        follows them (the fading draws are kept, so the stream does not depend on resets)."""
        self.mean_db[idx] = mean_db
        if self.db.shape[0]:
            pos = self.pos
            self.db[pos:, idx] = mean_db + self.fade[pos:, idx]
            self.gain[pos:, idx] = db_to_gain(self.db[pos:, idx])
            self.snr[pos:, idx] = self.gain[pos:, idx] / self.noise_psd
