"""Typed state and decision of the FedLoRA scheduling env.

:class:`State` is what the env computes with: the round's channel and message sizes, each
device's age, the delay queue, the round and the learning state. Its fields broadcast over a
leading env axis: the single env holds one unbatched State (scalars and (K,) arrays), the vector
env one State with a leading axis of ``num_envs``. ``dynamics.step`` updates it in place (one
step function for both), and checkpoints store it with :data:`STATE_FORMAT`.

The observation (``edgeft.envs.fedlora.observation``) encodes exactly these fields; the names of
that module stay importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeAlias

import numpy as np
from edgeft.envs.fedlora.formulas import LN2
from edgeft.envs.fedlora.observation import bits_from_obs, encode_observation

#: One round's decision: ``(scheduled, bandwidth, projected)`` -- which devices are scheduled
#: (bool, (..., K)), their uplink bandwidth in Hz ((..., K), 0 off schedule) and whether the action
#: was projected to get there (bool, (...)). A plain tuple: it is made on every step of the
#: single env's hot path (about 13 us a step), where a named tuple would add about 0.2 us.
#: ``actions.action_to_decision`` makes one from an action, ``actions.decision_to_action`` the
#: action back.
Decision: TypeAlias = tuple[np.ndarray, np.ndarray, Any]

#: version of the checkpoint layout of :class:`State` (``FedLoRASchedulingEnv.state_dict``).
#: 0: the untyped dict of the first release (converted on load); 1: :class:`State` without
#: ``heads`` (converted on load: zero head gaps, exact for the version-2 surrogates of those
#: releases); 2: :class:`State` with the v3 surrogate's per-device ``heads``.
STATE_FORMAT = 2


@dataclass(slots=True)
class State:
    """The env's state; every field has an optional leading env axis.

    Attributes:
        gain_db: |h_k|^2 of this round in dB (K).
        gain: |h_k|^2 (W) decoded from ``gain_db`` (K).
        snr: |h_k|^2 / sigma^2 (Hz) (K).
        bits_mbit: bits each device exchanges if scheduled this round, in Mbit (K).
        bits: the same in bits (K).
        bits_ln2: bits x ln 2 (K), what the delay formula uses.
        age: rounds since each device was last scheduled (int, K).
        queue: delay queue q = D-hat / D-bar.
        t: rounds completed in this episode (int).
        loss: the learning state: current loss (surrogate, or real mode's latest test loss).
        accuracy: the latest accuracy (real mode: measured on the test set, at reset and on
            evaluation rounds; surrogate: implied by the loss, NaN before the first step).
        heads: the v3 surrogate's per-device untrained head parts h_k (K; 1 = untrained, 0 =
            trained): hidden state, not in the observation (a server sees each device's age,
            not its head's loss); zeros in real mode and for version-2 surrogates.
        shared: the v3 surrogate's shared (encoder) gap s; NaN in real mode and for version 2
            (whose state is the loss alone).
        excess_sum: S = the sum of (D/D-bar - 1) over the episode's rounds so far (the
            "progress-budget" reward prices the growth of max(0, S)); unlike the queue q it is
            not reflected at 0, so rounds under the budget bank credit.
    """

    gain_db: np.ndarray
    gain: np.ndarray
    snr: np.ndarray
    bits_mbit: np.ndarray
    bits: np.ndarray
    bits_ln2: np.ndarray
    age: np.ndarray
    queue: Any
    t: Any
    loss: Any
    accuracy: Any = float("nan")
    heads: Any = None
    shared: Any = float("nan")
    excess_sum: Any = 0.0

    def set_bits(self, bits_mbit: np.ndarray) -> None:
        """Set the round's message sizes (Mbit) and the fields derived from them."""
        self.bits_mbit = np.asarray(bits_mbit, dtype=np.float64)
        self.bits = bits_from_obs(self.bits_mbit)
        self.bits_ln2 = self.bits * LN2

    def set_channel(self, gain_db: np.ndarray, gain: np.ndarray, snr: np.ndarray) -> None:
        """Set the round's channel (dB, linear, over the noise density)."""
        self.gain_db, self.gain, self.snr = gain_db, gain, snr

    def copy(self) -> State:
        """A deep copy (arrays copied)."""
        return State(
            **{
                f.name: (v.copy() if isinstance(v := getattr(self, f.name), np.ndarray) else v)
                for f in fields(self)
            }
        )

    def index(self, i: int) -> State:
        """Copy ``i`` of a batched State, as an unbatched State (scalars as Python numbers)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray) and v.ndim >= 1:
                v = v[i].copy()
                if v.ndim == 0:
                    v = v.item()
            out[f.name] = v
        return State(**out)

    def observation(self, episode_rounds: int, out: np.ndarray | None = None) -> np.ndarray:
        """The observation vector(s) of this state."""
        return encode_observation(
            self.gain_db,
            self.bits_mbit,
            self.age,
            self.queue,
            self.t,
            self.loss,
            episode_rounds,
            out=out,
        )
