"""``edgeft/FedLoRAScheduling-v0``: device scheduling and bandwidth allocation for federated
split-LoRA fine-tuning over a wireless uplink (FT paper)."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from edgeft.envs.common import as_action_array, build_config
from edgeft.envs.fedlora import dynamics
from edgeft.envs.fedlora.config import PRESETS, FedLoRAConfig
from edgeft.envs.fedlora.formulas import (
    LN2,
    db_to_gain,
    rayleigh_fading_db,
)
from edgeft.envs.fedlora.surrogate import accuracy_of_loss, contraction, step_loss
from edgeft.envs.fedlora.types import (
    BITS_UNIT,
    bits_from_obs,
    decode_observation,
    encode_observation,
)
from gymnasium import spaces

_BLOCK = 64  # rounds of fading drawn per RNG call
_SHARES = dynamics.ACTION_WHAT["bandwidth"]


class FedLoRASchedulingEnv(gym.Env):
    """Federated split-LoRA fine-tuning over a wireless uplink, one round per step.

    ## Description
    K devices fine-tune a foundation model with a server by split federated LoRA (FT paper): each
    round the scheduled devices send embeddings up, receive features, and send feature gradients
    up; the server averages the LoRA gradient over them (FT eqs. 2-4). The uplink is FDMA over B Hz
    with block Rayleigh fading, so the round's delay is set by the slowest scheduled device
    (eq. 7). Scheduling more devices speeds learning up (FT Theorem 1) but costs delay; the
    long-term average delay must stay within D-bar (eq. 8), tracked by the virtual queue of eq. 18.

    ## Action space (``action_mode``)
    | mode         | space                 | meaning                                               |
    |--------------|-----------------------|-------------------------------------------------------|
    | "bandwidth"  | Box(0, 1, (K,), f64)  | bandwidth share per device; 0 = not scheduled         |
    | "count"      | Discrete(K + 1)       | schedule the n strongest devices, min-max-delay split |
    | "subset"     | MultiBinary(K)        | schedule these devices, min-max-delay split           |

    "bandwidth" expresses every reference policy's decision exactly. Projection (reported as
    ``info["action_projected"]``): shares are clipped to [0, 1] and divided by their sum if it
    exceeds 1 (leftover bandwidth stays unused). Everything else that is not an element of the
    action space raises ``ValueError`` naming the allowed values: a wrong shape (a (K, 1) array
    for K devices included), NaN/inf, a count that is not an integer in [0, K] (``step(99)``,
    ``step(-1)``), a subset entry other than 0 or 1 (0.5, -1, 2). ``count`` mode accepts a scalar
    or a one-element array.

    ## Observation space
    Box(-inf, inf, (3K + 3,), float64): channel gains in dB, bits per device (Mbit), rounds since
    each device was last scheduled (/T), the delay queue q = D-hat / D-bar, the round (/T) and the
    current loss. Lossless: ``env.unwrapped.decode(obs)`` (or ``types.decode_observation``) returns
    the exact state the env computes with (see ``edgeft.envs.fedlora.types``).

    ## Reward (``reward``)
    - "progress" (default): ``progress_scale * (loss_before - loss_after) / (L0 - L*) -
      delay_penalty * max(0, D/D-bar - 1)``.
    - "drift-plus-penalty": N - zeta [q x + (x - 1)^2 / 2], x = D / D-bar (corrected Lemma 2).
    - "drift-plus-penalty-paper": N - zeta q x (the paper's P1).

    The constrained-RL cost is ``info["cost"] = D / D-bar``; the constraint is mean cost <= 1.

    ## Starting state
    Device positions uniform in the cell disc (fixed for the episode), fresh fading, q = 0, the
    surrogate's initial loss (real mode: a freshly initialised LoRA model and task heads).

    ## Episode end
    No termination; truncation after ``episode_rounds`` steps.

    ## Info
    ``channel_gain`` (|h_k|^2 used this round, K), ``scheduled`` (bool, K), ``bandwidth`` (Hz, K),
    ``device_delay`` (s, K; 0 off schedule), ``delay`` (s), ``delay_budget`` (s), ``delay_ratio``,
    ``delay_queue`` (q after the round), ``cost``, ``delay_excess``, ``num_scheduled``,
    ``bits`` (K), ``loss``, ``accuracy``, ``action_projected``. In real mode ``loss`` (also the
    observation's loss and the progress reward's) is the latest global test loss of FT eq. (1),
    the quantity the calibrated surrogate models, measured at reset and on evaluation rounds;
    real mode adds ``train_loss`` (mean minibatch loss of the scheduled devices, NaN if none),
    ``device_loss`` and, on evaluation rounds (every ``training.eval_every`` rounds and the
    last), ``test_loss`` and ``test_accuracy``; its ``accuracy`` is the latest test accuracy (the
    first is measured at reset).

    ## Arguments
    ``gym.make("edgeft/FedLoRAScheduling-v0", config=FedLoRAConfig(...) or dict, **overrides)``;
    see :class:`~edgeft.envs.fedlora.config.FedLoRAConfig` for every field. ``preset="paper"``
    gives FT Section V.A.

    ## Version history
    - v0: initial release. Before release, the default surrogate constants became the shipped
      calibration (``envs/fedlora/calibration/default.json``, ``edgeft calibrate``) instead of
      built-in values, and the surrogate gained the ``head_share`` and ``onset`` constants.
      Then out-of-space ``count`` and ``subset`` actions raise instead of being clipped /
      thresholded, and ``training`` without ``mode="real"`` raises; valid actions give the same
      results as before.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: FedLoRAConfig | dict | None = None, *,
                 render_mode: str | None = None, **overrides: Any) -> None:
        self.config = build_config(FedLoRAConfig, config, PRESETS, **overrides)
        if render_mode is not None:
            raise ValueError(
                f"render_mode must be None (this env does not render), got {render_mode!r}")
        self.render_mode = None
        cfg = self.config
        k = cfg.num_devices
        if cfg.action_mode == "bandwidth":
            self.action_space = spaces.Box(0.0, 1.0, (k,), np.float64)
        elif cfg.action_mode == "count":
            self.action_space = spaces.Discrete(k + 1)
        else:
            self.action_space = spaces.MultiBinary(k)
        low = np.concatenate([np.full(k, -np.inf), np.zeros(2 * k + 3)])
        high = np.concatenate([np.full(2 * k, np.inf), np.ones(k), [np.inf, 1.0, np.inf]])
        self.observation_space = spaces.Box(low, high, (cfg.obs_size,), np.float64)
        self._params = cfg.surrogate
        # rho(N) for N = 0..K as plain floats: one list lookup per step
        self._rho = contraction(np.arange(k + 1), k, self._params).tolist()
        self._gap = self._params.initial_loss - self._params.loss_floor
        self._learner = None
        self._budget = cfg.budget_s
        if cfg.mode == "real":
            self._learner = _make_learner(cfg)
            if cfg.delay_budget is None:
                # D-bar follows the real message size: per-bit budget x expected bits per device
                # and round. Written into the env's config, so policies built from the env (which
                # read D-bar from it) use the same budget as the env.
                nominal = self._learner.nominal_bits()
                self.config = cfg = dataclasses.replace(
                    cfg, delay_budget=cfg.delay_budget_per_bit * nominal, bits_per_round=nominal)
                self._budget = cfg.budget_s
        self._state: dict[str, Any] | None = None
        self._obs_buf = np.empty(cfg.obs_size)
        self._bandwidth_mode = cfg.action_mode == "bandwidth"
        self._action_shape = (k,)

    # ------------------------------------------------------------------ helpers
    @property
    def budget(self) -> float:
        """D-bar (s/round) in force (real mode without ``delay_budget``: per-bit budget x the
        learner's expected bits per device and round, also written into ``self.config``)."""
        return self._budget

    def decode(self, obs: np.ndarray):
        """Typed decoding of an observation (or a batch) of this env."""
        return decode_observation(obs, self.config)

    def _draw_round(self) -> None:
        """Next round's fading (and, in real mode, message sizes).

        Fading is drawn in blocks of ``_BLOCK`` rounds (one RNG call and one dB conversion per
        block instead of per step); the stream is still a pure function of the seed.
        """
        s = self._state
        assert s is not None
        if s["block_pos"] >= s["block_db"].shape[0]:
            s["block_db"] = s["mean_db"] + rayleigh_fading_db(
                self.np_random, (_BLOCK, self.config.num_devices))
            s["block_gain"] = db_to_gain(s["block_db"])  # exactly what the observation decodes to
            s["block_snr"] = s["block_gain"] / self.config.noise_psd
            s["block_pos"] = 0
        s["gain_db"] = s["block_db"][s["block_pos"]]
        s["gain"] = s["block_gain"][s["block_pos"]]
        s["snr"] = s["block_snr"][s["block_pos"]]
        s["block_pos"] += 1
        if self._learner is not None:
            s["bits_mbit"] = np.asarray(self._learner.draw_round(), dtype=np.float64) / BITS_UNIT
            s["bits"] = bits_from_obs(s["bits_mbit"])
            s["bits_ln2"] = s["bits"] * LN2

    def _obs(self) -> np.ndarray:
        s = self._state
        assert s is not None
        return encode_observation(s["gain_db"], s["bits_mbit"], s["age"], s["queue"], s["t"],
                                  s["loss"], self.config.episode_rounds, out=self._obs_buf).copy()

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        cfg = self.config
        k = cfg.num_devices
        self._state = {
            "mean_db": dynamics.draw_cell(self.np_random, cfg),
            "bits_mbit": np.full(k, cfg.bits_per_round / BITS_UNIT),
            "age": np.zeros(k, dtype=np.int64),
            "queue": 0.0,
            "t": 0,
            "loss": float(self._params.initial_loss),
            "block_db": np.empty((0, k)),
            "block_gain": np.empty((0, k)),
            "block_pos": 0,
        }
        self._state["bits"] = bits_from_obs(self._state["bits_mbit"])
        self._state["bits_ln2"] = self._state["bits"] * LN2
        if self._learner is not None:
            self._learner.reset(int(self.np_random.integers(2**31 - 1)))
            ev = self._learner.evaluate()
            self._state["test_loss"] = float(ev["test_loss"])
            self._state["accuracy"] = float(ev["test_accuracy"])
            self._state["loss"] = self._state["test_loss"]  # real mode: global test loss (eq. 1)
        self._draw_round()
        return self._obs(), {"delay_budget": self._budget}

    def step(self, action):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        cfg = self.config
        s = self._state
        gain, bits = s["gain"], s["bits"]
        if self._bandwidth_mode:  # hot path: no batch axis, no min-max solve
            act = as_action_array(action, self._action_shape, _SHARES, reshape=False)
            shares, projected = dynamics.project_shares(act)
            bandwidth = shares * cfg.bandwidth_hz
            scheduled = bandwidth > 0.0
        else:
            act = dynamics.validate_action(action, cfg)
            scheduled, bandwidth, projected = dynamics.allocate(act, cfg, gain[None], bits[None])
            scheduled, bandwidth, projected = scheduled[0], bandwidth[0], projected[0]
        dev_delay, delay, x, queue = dynamics.delay_and_queue(self._budget, s["bits_ln2"], s["snr"],
                                                              bandwidth, scheduled, s["queue"])
        n = int(np.count_nonzero(scheduled))
        loss_before = s["loss"]
        info: dict[str, Any] = {}
        if self._learner is None:
            noise = self.np_random.standard_normal() if self._params.noise > 0 else None
            loss_after = float(step_loss(loss_before, n, cfg.num_devices, self._params, noise,
                                         rho=self._rho[n]))
            accuracy = float(accuracy_of_loss(loss_after, self._params))
        else:
            out = self._learner.run_round(scheduled)
            measured = float(out["loss"])
            loss_after = loss_before  # the latest global test loss; updated on evaluation rounds
            info["train_loss"] = measured
            info["device_loss"] = np.asarray(out["device_loss"], dtype=np.float64)
            every = self._learner.config.eval_every
            t_next = s["t"] + 1
            if t_next % every == 0 or t_next >= cfg.episode_rounds:
                ev = self._learner.evaluate()
                s["test_loss"], s["accuracy"] = float(ev["test_loss"]), float(ev["test_accuracy"])
                info["test_loss"], info["test_accuracy"] = s["test_loss"], s["accuracy"]
                loss_after = s["test_loss"]
            accuracy = s["accuracy"]  # the latest evaluation (round 0: at reset)
        excess = max(0.0, x - 1.0)
        reward = dynamics.step_reward(cfg, self._gap, loss_before, loss_after, n, x, excess,
                                      s["queue"])
        info.update({
            "channel_gain": gain,
            "scheduled": scheduled,
            "bandwidth": bandwidth,
            "device_delay": dev_delay,
            "bits": bits.copy(),
            "delay": delay,
            "delay_budget": self._budget,
            "delay_ratio": x,
            "delay_queue": queue,
            "cost": x,
            "delay_excess": excess,
            "num_scheduled": n,
            "loss": loss_after,
            "accuracy": accuracy,
            "action_projected": bool(projected),
        })
        s["age"] += 1
        s["age"][scheduled] = 0
        s["queue"] = queue
        s["loss"] = loss_after
        s["t"] += 1
        truncated = s["t"] >= cfg.episode_rounds
        self._draw_round()
        return self._obs(), float(reward), False, truncated, info

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this episode exactly (env state, RNG, learner)."""
        if self._state is None:
            raise RuntimeError("call reset() before state_dict()")
        return {
            "config": self.config,
            "state": {k: (v.copy() if isinstance(v, np.ndarray) else v)
                      for k, v in self._state.items()},
            "budget": self._budget,
            "rng": self.np_random.bit_generator.state,
            "learner": None if self._learner is None else self._learner.state_dict(),
        }

    def load_state_dict(self, data: dict[str, Any]) -> np.ndarray:
        """Restore :meth:`state_dict` output; returns the current observation."""
        if data["config"] != self.config:
            raise ValueError("checkpoint was written by an env with a different config; build the "
                             "env with the checkpoint's config (data['config'])")
        if self._state is None:
            self.reset()
        self._state = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                       for k, v in data["state"].items()}
        self._budget = data["budget"]
        self.np_random.bit_generator.state = data["rng"]
        if self._learner is not None:
            self._learner.load_state_dict(data["learner"])
        return self._obs()

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (an existing file is replaced only
        once the new one is complete)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(self.state_dict(), fh)
        os.replace(tmp, path)

    def load_checkpoint(self, path: str | os.PathLike) -> np.ndarray:
        """Restore a checkpoint written by :meth:`save_checkpoint`; returns the observation."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        with open(path, "rb") as fh:
            data = pickle.load(fh)
        return self.load_state_dict(data)


def _make_learner(cfg: FedLoRAConfig):
    try:
        from edgeft.training.config import TrainingConfig
        from edgeft.training.learner import SplitLoRALearner
    except ImportError as err:
        raise ImportError(
            "mode='real' needs the split-LoRA engine (edgeft.training) with torch, transformers "
            f"and peft installed: `pip install edgeft` pulls them in ({err})"
        ) from err
    return SplitLoRALearner(TrainingConfig.from_any(cfg.training), cfg.num_devices)
