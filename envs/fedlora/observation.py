"""Observation of the FedLoRA scheduling env: its layout, and the lossless encoding between the
env's state and the observation vector. The only module that knows the offsets.

Observation vector (float64, length 3K + 3), in this order:

| slice    | content                                                  | decodes to           |
|----------|----------------------------------------------------------|----------------------|
| [0, K)   | channel gain |h_k|^2 this round, dB (tx power folded in) | ``gain`` (W, linear) |
| [K, 2K)  | bits each device exchanges if scheduled this round, Mbit | ``bits``             |
| [2K, 3K) | rounds since each device was last scheduled, / T         | ``age`` (int rounds) |
| 3K       | average-delay virtual queue q = D-hat / D-bar            | ``queue``            |
| 3K + 1   | round index t / T                                        | ``round`` (int)      |
| 3K + 2   | learning state: current training loss                    | ``loss``             |

The env keeps its state in exactly these units and derives physical values with the same
functions the decoder uses, so ``decode_observation(obs)`` gives bit-identical inputs to what the
env computes with: an analytical policy acting on the observation sees the true state.

What is not observed: the v3 surrogate's per-device head parts and shared gap
(``State.heads``, ``State.shared``). A server knows when it last scheduled each device (``age``)
and the global loss it measures, not each device's head loss; the head part of device k is a
function of how often k was scheduled, which a policy can count from ``info["scheduled"]``
(``edgeft.agents.wrappers.ParticipationObservation`` appends those counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.fedlora.formulas import db_to_gain
from edgeft.envs.observation import ObservationLayout
from gymnasium import spaces

BITS_UNIT = 1e6  # observation carries bits in Mbit


def _blocks(k: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return (
        ("gain_db", (k,)),
        ("bits", (k,)),
        ("age", (k,)),
        ("queue", ()),
        ("round", ()),
        ("loss", ()),
    )


def observation_layout(config: FedLoRAConfig) -> ObservationLayout:
    """The observation layout of the env with ``config`` (K devices: 3K + 3 entries).

    Blocks, in order: ``gain_db``, ``bits`` (Mbit), ``age`` (/T), one entry per device;
    ``queue``, ``round`` (/T), ``loss``, one entry each; ``layout.num_devices`` is K.
    """
    return _layout(config.num_devices)


@lru_cache(maxsize=64)
def _layout(k: int) -> ObservationLayout:
    return ObservationLayout.of(_blocks(k), rule="3K+3", num_devices=k)


def observation_space(config: FedLoRAConfig) -> spaces.Box:
    """The env's observation space: gains in dB unbounded, bits and the queue >= 0, age and the
    round in [0, 1] (divided by T), the loss >= 0."""
    lay = observation_layout(config)
    low = np.zeros(lay.size)
    high = np.full(lay.size, np.inf)
    low[lay.gain_db] = -np.inf
    high[lay.age] = 1.0
    high[lay.round] = 1.0
    return spaces.Box(low, high, (lay.size,), np.float64)


@dataclass(frozen=True)
class FedLoRAObservation:
    """Decoded observation (fields broadcast over any leading batch axes).

    Attributes:
        gain_db: |h_k|^2 in dB, shape (..., K).
        gain: |h_k|^2 (W), shape (..., K).
        bits: mu_k, bits device k exchanges if scheduled this round, shape (..., K).
        age: rounds since device k was last scheduled (int), shape (..., K).
        queue: q = D-hat / D-bar, shape (...).
        round: rounds completed in this episode (int), shape (...).
        loss: current training loss (surrogate or measured), shape (...).
    """

    gain_db: np.ndarray
    gain: np.ndarray
    bits: np.ndarray
    age: np.ndarray
    queue: np.ndarray
    round: np.ndarray
    loss: np.ndarray


def bits_from_obs(bits_mbit: np.ndarray) -> np.ndarray:
    """Bits from the observation's Mbit field (the env uses this too)."""
    return np.asarray(bits_mbit, dtype=np.float64) * BITS_UNIT


def encode_observation(
    gain_db: np.ndarray,
    bits_mbit: np.ndarray,
    age: np.ndarray,
    queue: np.ndarray | float,
    round_index: np.ndarray | int,
    loss: np.ndarray | float,
    episode_rounds: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Pack state arrays (leading batch axes allowed) into observation vectors (into ``out`` if
    given, which is returned), in the order of :func:`observation_layout` (written out here with
    plain offsets: this runs on every step of the single env)."""
    gain_db = np.asarray(gain_db)
    k = gain_db.shape[-1]
    if out is None:
        out = np.empty(gain_db.shape[:-1] + (3 * k + 3,))
    t = float(episode_rounds)
    if out.ndim == 1:  # single env: plain slices and one tuple assignment for the scalars
        out[:k] = gain_db
        out[k : 2 * k] = bits_mbit
        np.divide(age, t, out=out[2 * k : 3 * k])
        out[3 * k :] = (queue, round_index / t, loss)
        return out
    out[..., :k] = gain_db
    out[..., k : 2 * k] = bits_mbit
    np.divide(age, t, out=out[..., 2 * k : 3 * k])
    out[..., 3 * k] = queue
    out[..., 3 * k + 1] = np.divide(round_index, t)
    out[..., 3 * k + 2] = loss
    return out


def decode_observation(obs: np.ndarray, config: FedLoRAConfig) -> FedLoRAObservation:
    """Decode one observation or a batch (shape (..., 3K + 3)) of the env with ``config``.

    Raises:
        ValueError: the last axis does not have length 3K + 3.
    """
    obs = np.asarray(obs, dtype=np.float64)
    lay = observation_layout(config)
    lay.check(obs.shape)
    t = config.episode_rounds
    gain_db = obs[..., lay.gain_db]
    return FedLoRAObservation(
        gain_db=gain_db,
        gain=db_to_gain(gain_db),
        bits=bits_from_obs(obs[..., lay.bits]),
        age=np.rint(obs[..., lay.age] * t).astype(np.int64),
        queue=obs[..., lay.queue.start],
        round=np.rint(obs[..., lay.round.start] * t).astype(np.int64),
        loss=obs[..., lay.loss.start],
    )
