"""Numpy-batched vector version of ``edgeft/FedLoRAScheduling-v0`` (surrogate mode).

The vector env made by ::

    gym.make_vec("edgeft/FedLoRAScheduling-v0", num_envs=64,
                 vectorization_mode="vector_entry_point")

steps all copies at once with the same dynamics functions as the single env. Autoreset follows
Gymnasium's NEXT_STEP mode: the step after an episode ends resets that copy (its action is
ignored, reward 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from edgeft.envs.common import build_config
from edgeft.envs.fedlora import dynamics
from edgeft.envs.fedlora.config import PRESETS, FedLoRAConfig
from edgeft.envs.fedlora.env import _BLOCK, FedLoRASchedulingEnv
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
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space


class FedLoRAVectorEnv(VectorEnv):
    """``num_envs`` independent copies of the FedLoRA env stepped as one numpy batch."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
    _INFO_KEYS = ("channel_gain", "scheduled", "bandwidth", "bits", "device_delay", "delay",
                  "delay_ratio", "delay_queue", "cost", "delay_excess", "num_scheduled", "loss",
                  "accuracy", "action_projected")

    def __init__(self, num_envs: int = 1, config: FedLoRAConfig | dict | None = None,
                 **overrides: Any):
        self.config = build_config(FedLoRAConfig, config, PRESETS, **overrides)
        if self.config.mode != "surrogate":
            raise ValueError("the numpy vector env runs mode='surrogate' only; for real mode use "
                             "gym.make_vec(..., vectorization_mode='sync')")
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        single = FedLoRASchedulingEnv(self.config)
        self.single_observation_space = single.observation_space
        self.single_action_space = single.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._params = self.config.surrogate
        self._gap = self._params.initial_loss - self._params.loss_floor
        self._budget = self.config.budget_s
        self._np_random, self._np_random_seed = seeding.np_random(None)
        k, n = self.config.num_devices, self.num_envs
        self._mean_db = np.zeros((n, k))
        self._fade = self._block_db = self._block_gain = self._block_snr = np.empty((0, n, k))
        self._fade_pos = 0
        self._rho = contraction(np.arange(k + 1), k, self._params)  # rho(N) for N = 0..K
        self._all_live = np.ones(n, dtype=bool)
        self._mask_keys = [f"_{key}" for key in self._INFO_KEYS]
        self._no_term = np.zeros(n, dtype=bool)
        self._gain_db = np.zeros((n, k))
        self._gain = np.zeros((n, k))
        self._bits_mbit = np.full((n, k), self.config.bits_per_round / BITS_UNIT)
        self._bits = bits_from_obs(self._bits_mbit)
        self._bits_ln2 = self._bits * LN2
        self._obs_buf = np.empty((n, self.config.obs_size))
        self._age = np.zeros((n, k), dtype=np.int64)
        self._queue = np.zeros(n)
        self._t = np.zeros(n, dtype=np.int64)
        self._loss = np.full(n, self._params.initial_loss)
        self._needs_reset = np.zeros(n, dtype=bool)

    def decode(self, obs: np.ndarray):
        """Typed decoding of a batch of observations."""
        return decode_observation(obs, self.config)

    def _reset_envs(self, which: np.ndarray) -> None:
        cfg = self.config
        idx = np.flatnonzero(which)
        if idx.size == 0:
            return
        self._mean_db[idx] = dynamics.draw_cell(self.np_random, cfg, (idx.size,))
        self._age[idx] = 0
        self._queue[idx] = 0.0
        self._t[idx] = 0
        self._loss[idx] = self._params.initial_loss
        # the rest of the pre-computed block now follows these copies' new mean gains
        pos = self._fade_pos
        self._block_db[pos:, idx] = self._mean_db[idx] + self._fade[pos:, idx]
        self._block_gain[pos:, idx] = db_to_gain(self._block_db[pos:, idx])
        self._block_snr[pos:, idx] = self._block_gain[pos:, idx] / cfg.noise_psd

    def _draw(self) -> None:
        """Next round's fading for every copy: a row of the pre-computed block (``_BLOCK`` rounds
        per RNG call; gain in dB = mean gain in dB + Rayleigh fading in dB, linear gains decoded
        from dB once per block)."""
        if self._fade_pos >= self._fade.shape[0]:
            self._fade = rayleigh_fading_db(self.np_random,
                                            (_BLOCK, self.num_envs, self.config.num_devices))
            self._block_db = self._mean_db + self._fade
            self._block_gain = db_to_gain(self._block_db)
            self._block_snr = self._block_gain / self.config.noise_psd
            self._fade_pos = 0
        self._gain_db = self._block_db[self._fade_pos]
        self._gain = self._block_gain[self._fade_pos]
        self._snr = self._block_snr[self._fade_pos]
        self._fade_pos += 1

    def _obs(self) -> np.ndarray:
        return encode_observation(self._gain_db, self._bits_mbit, self._age, self._queue, self._t,
                                  self._loss, self.config.episode_rounds, out=self._obs_buf).copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        empty = np.empty((0, self.num_envs, self.config.num_devices))
        self._fade = self._block_db = self._block_gain = self._block_snr = empty
        self._fade_pos = 0
        self._reset_envs(np.ones(self.num_envs, dtype=bool))
        self._draw()
        self._needs_reset[:] = False
        return self._obs(), {}

    def step(self, actions):
        cfg = self.config
        n = self.num_envs
        act = dynamics.validate_action(actions, cfg, batch=n)
        gain, bits = self._gain, self._bits
        scheduled, bandwidth, projected = dynamics.allocate(act, cfg, gain, bits)
        dev_delay, delay, x, queue = dynamics.delay_and_queue(
            self._budget, self._bits_ln2, self._snr, bandwidth, scheduled, self._queue)
        num = scheduled.sum(axis=-1)
        noise = self.np_random.standard_normal(n) if self._params.noise > 0 else None
        loss_after = step_loss(self._loss, num, cfg.num_devices, self._params, noise,
                               rho=self._rho[num])
        excess = np.maximum(0.0, x - 1.0)
        reward = dynamics.step_reward(cfg, self._gap, self._loss, loss_after,
                                      num.astype(np.float64), x, excess, self._queue)
        info = {
            "channel_gain": gain, "scheduled": scheduled, "bandwidth": bandwidth,
            "bits": bits.copy(), "device_delay": dev_delay,
            "delay": delay, "delay_ratio": x, "delay_queue": queue, "cost": x,
            "delay_excess": excess, "num_scheduled": num, "loss": loss_after,
            "accuracy": accuracy_of_loss(loss_after, self._params), "action_projected": projected,
        }
        resetting = self._needs_reset
        if not resetting.any():  # every copy is mid-episode: plain in-place updates
            live = self._all_live
            self._age += 1
            self._age[scheduled] = 0
            self._queue, self._loss = queue, loss_after
            self._t += 1
        else:
            live = ~resetting
            self._age = np.where(live[:, None], np.where(scheduled, 0, self._age + 1), self._age)
            self._queue = np.where(live, queue, self._queue)
            self._loss = np.where(live, loss_after, self._loss)
            self._t = np.where(live, self._t + 1, self._t)
            reward = np.where(live, reward, 0.0)
            self._reset_envs(resetting)  # copies that finished last step restart now
        self._draw()
        info.update(dict.fromkeys(self._mask_keys, live))
        truncated = live & (self._t >= cfg.episode_rounds)
        self._needs_reset = truncated
        return (self._obs(), np.asarray(reward, dtype=np.float64), self._no_term.copy(), truncated,
                info)
