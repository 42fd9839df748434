"""Numpy-batched vector version of ``edgeft/FedLoRAScheduling-v0`` (surrogate mode).

The vector env made by ::

    gym.make_vec("edgeft/FedLoRAScheduling-v0", num_envs=64,
                 vectorization_mode="vector_entry_point")

steps all copies at once: one batched :class:`~edgeft.envs.fedlora.types.State` advanced by the
same ``dynamics.step`` as the single env, with the same info keys (plus a ``_key`` mask for each).
Copy i draws from its own generator, seeded with ``seed + i`` on ``reset(seed=seed)`` (as
``SyncVectorEnv`` seeds its envs), in the single env's order (its cell at a reset, a block of
fading when its block runs out, the surrogate's loss noise in a step), so copy i's trajectory is
the single env's from ``reset(seed=seed + i)``, autoresets included (tested). Autoreset follows
Gymnasium's NEXT_STEP mode: the step after an episode ends resets that copy (its action is
ignored, reward 0).

Version history: before the per-copy generators, the copies shared one generator (copy i's draws
were interleaved with the others', so only a single copy matched the single env).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from edgeft.envs.common import build_config
from edgeft.envs.fedlora import dynamics
from edgeft.envs.fedlora.actions import action_space
from edgeft.envs.fedlora.config import PRESETS, FedLoRAConfig
from edgeft.envs.fedlora.generator import copy_channels, initial_state
from edgeft.envs.fedlora.observation import (
    FedLoRAObservation,
    decode_observation,
    encode_observation,
    observation_space,
)
from edgeft.envs.fedlora.types import State
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space


class FedLoRAVectorEnv(VectorEnv):
    """``num_envs`` independent copies of the FedLoRA env stepped as one numpy batch: one batched
    :class:`~edgeft.envs.fedlora.types.State` advanced by the same ``dynamics.step`` as the
    single env."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self, num_envs: int = 1, config: FedLoRAConfig | dict | None = None, **overrides: Any
    ):
        self.config = build_config(FedLoRAConfig, config, PRESETS, **overrides)
        if self.config.mode != "surrogate":
            raise ValueError(
                "the numpy vector env runs mode='surrogate' only; for real mode use "
                "gym.make_vec(..., vectorization_mode='sync')"
            )
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.single_observation_space = observation_space(self.config)
        self.single_action_space = action_space(self.config)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._step_params = dynamics.Params.surrogate(self.config)
        self._rngs: list[np.random.Generator] = []
        n = self.num_envs
        self._all_live = np.ones(n, dtype=bool)
        self._mask_keys = [f"_{key}" for key in dynamics.INFO_KEYS]
        self._no_term = np.zeros(n, dtype=bool)
        self._obs_buf = np.empty((n, self.config.obs_size))
        self._state = initial_state(self.config, n)
        self._fading = copy_channels(self.config, n)
        self._needs_reset = np.zeros(n, dtype=bool)

    @property
    def config_in_force(self) -> FedLoRAConfig:
        """The config the copies run with (surrogate mode: ``config``)."""
        return self.config

    @property
    def state(self) -> State:
        """The batched typed state of the current round (a copy)."""
        return self._state.copy()

    def decode_observation(self, obs: np.ndarray) -> FedLoRAObservation:
        """Typed decoding of a batch of observations."""
        return decode_observation(obs, self.config)

    def _reset_envs(self, which: np.ndarray) -> None:
        idx = np.flatnonzero(which)
        if idx.size == 0:
            return
        s = self._state
        for i in idx.tolist():  # each copy's new episode, from its own generator
            self._fading.restart(i, self._rngs[i], self.config)
        start = initial_state(self.config, idx.size)
        # bits: fixed in surrogate mode
        for name in ("age", "queue", "t", "loss", "accuracy", "heads", "shared", "excess_sum"):
            getattr(s, name)[idx] = getattr(start, name)

    def _draw_round(self) -> None:
        """Next round's channel for every copy (one row of the pre-drawn block, or one step of
        the correlated channel)."""
        s = self._state
        s.gain_db, s.gain, s.snr = self._fading.next(self._rngs)

    def _obs(self) -> np.ndarray:
        s = self._state
        return encode_observation(
            s.gain_db,
            s.bits_mbit,
            s.age,
            s.queue,
            s.t,
            s.loss,
            self.config.episode_rounds,
            out=self._obs_buf,
        ).copy()

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        """Reset every copy; ``seed`` an int (copy i gets ``seed + i``), a list, or None (each
        copy continues its own generator, fresh ones on the first reset)."""
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(
                    f"a list of seeds must have num_envs={n} entries, got {len(seeds)}"
                )
        if not self._rngs:
            self._rngs = [seeding.np_random(None)[0] for _ in range(n)]
        for i, s in enumerate(seeds):
            if s is not None:
                self._rngs[i] = seeding.np_random(s)[0]
        self._fading = copy_channels(self.config, n)
        self._reset_envs(np.ones(n, dtype=bool))
        self._draw_round()
        self._needs_reset[:] = False
        info = dynamics.reset_info(self._step_params, self._state)  # the single env's, batched
        info.update(dict.fromkeys(self._mask_keys, np.ones(self.num_envs, dtype=bool)))
        return self._obs(), info

    def step(self, actions):
        resetting = self._needs_reset
        any_reset = bool(resetting.any())
        live = ~resetting if any_reset else self._all_live
        params = self._step_params
        decision = dynamics.decide(params, actions, self._state)
        self._state, reward, info = dynamics.step(
            params,
            self._state,
            decision,
            CopyNormals(self._rngs, live),
            live if any_reset else None,
        )
        if any_reset:
            reward = np.where(live, reward, 0.0)
            self._reset_envs(resetting)  # copies that finished last step restart now
        self._draw_round()
        info.update(dict.fromkeys(self._mask_keys, live))
        truncated = live & (self._state.t >= self.config.episode_rounds)
        self._needs_reset = truncated
        return (
            self._obs(),
            np.asarray(reward, dtype=np.float64),
            self._no_term.copy(),
            truncated,
            info,
        )


class CopyNormals:
    """The generator ``dynamics.step`` gets for a batch: a standard normal per live copy, each
    from that copy's own generator (the single env's one draw per step; a copy about to reset
    draws nothing, as the single env draws nothing then)."""

    def __init__(self, rngs: list[np.random.Generator], live: np.ndarray) -> None:
        self.rngs, self.live = rngs, live

    def standard_normal(self, size: int) -> np.ndarray:
        out = np.zeros(size)
        for i in np.flatnonzero(self.live).tolist():
            out[i] = self.rngs[i].standard_normal()
        return out
