"""Vector version of ``edgeft/MECOffloading-v0`` (surrogate mode): copies over one pure step.

The vector env made by ::

    gym.make_vec("edgeft/MECOffloading-v0", num_envs=8, vectorization_mode="vector_entry_point")

keeps one batched :class:`~edgeft.envs.mec.types.MECState` (a leading copy axis) and steps every
copy with the single env's functions (``actions.action_to_decision``, ``dynamics.step``), in a
loop over copies: the discrete mode's resource rule runs per-server Newton iterations until
every server of the instance has converged, so batching copies would make a copy's numbers
depend on the other copies (at round-off); the loop keeps each copy exactly the single env.
Copy i draws from its own generator, seeded with ``seed + i`` on ``reset(seed=seed)``
(as ``SyncVectorEnv`` seeds its envs), so copy i's trajectory is the single env's from
``reset(seed=seed + i)``, autoresets included. Autoreset follows Gymnasium's NEXT_STEP mode (as
the FedLoRA vector env): the step after an episode ends resets that copy (its action is
ignored, reward 0, info = the reset info). Infos are merged as Gymnasium's vector envs merge
them (a ``_key`` mask per key).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from edgeft.envs.common import build_config
from edgeft.envs.mec import actions as A
from edgeft.envs.mec import dynamics as D
from edgeft.envs.mec import generator as G
from edgeft.envs.mec import observation as O
from edgeft.envs.mec.config import PRESETS, MECConfig
from edgeft.envs.mec.types import MECState
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, iterate


class MECVectorEnv(VectorEnv):
    """``num_envs`` independent copies of the MEC env over the one pure step."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self, num_envs: int = 1, config: MECConfig | dict | None = None, **overrides: Any
    ) -> None:
        self.config: MECConfig = build_config(MECConfig, config, PRESETS, **overrides)
        if self.config.mode != "surrogate":
            raise ValueError(
                "the MEC vector env runs mode='surrogate' only; for real mode use "
                "gym.make_vec(..., vectorization_mode='sync')"
            )
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        cfg = self.config
        self.single_observation_space = spaces.Box(
            -np.inf, np.inf, shape=(O.observation_size(cfg),), dtype=np.float64
        )
        self.single_action_space = A.action_space(cfg)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._states: list[MECState] = []
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    @property
    def config_in_force(self) -> MECConfig:
        """The config the copies run with (surrogate mode only: ``config`` itself)."""
        return self.config

    @property
    def state(self) -> MECState:
        """The batched Markov state (a leading copy axis; after ``reset``)."""
        if not self._states:
            raise RuntimeError("call reset() before reading the state")
        return MECState.stack(self._states)

    def decode_observation(self, obs: np.ndarray) -> MECState:
        """Typed decoding of a batch of observations."""
        return O.decode_observation(obs, self.config)

    def _reset_copy(self, i: int, seed: int | None) -> None:
        rng = self._rngs[i]
        if seed is not None or rng is None:
            rng, _ = seeding.np_random(seed)
            self._rngs[i] = rng
        state = G.sample_initial_state(self.config, rng)
        if len(self._states) == self.num_envs:
            self._states[i] = state
        else:
            self._states.append(state)

    def _obs(self) -> np.ndarray:
        return O.encode_observation(MECState.stack(self._states), self.config)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every copy; ``seed`` an int (copy i gets ``seed + i``), a list, or None."""
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(
                    f"a list of seeds must have num_envs={self.num_envs} entries, got {len(seeds)}"
                )
        self._states = []
        for i, s in enumerate(seeds):
            self._reset_copy(i, s)
        self._needs_reset[:] = False
        infos: dict[str, Any] = {}
        for i in range(self.num_envs):
            infos = self._add_info(infos, D.reset_info(D.Params(self.config), self._states[i]), i)
        return self._obs(), infos

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._states:
            raise RuntimeError("call reset() before step()")
        cfg = self.config
        n = self.num_envs
        rewards = np.zeros(n)
        truncated = np.zeros(n, dtype=bool)
        infos: dict[str, Any] = {}
        for i, action in enumerate(iterate(self.action_space, actions)):
            if self._needs_reset[i]:  # NEXT_STEP autoreset: the action is ignored
                self._reset_copy(i, None)
                infos = self._add_info(infos, D.reset_info(D.Params(cfg), self._states[i]), i)
                continue
            state = self._states[i]
            rng = self._rngs[i]
            assert rng is not None
            params = D.Params(cfg)
            nxt, reward, info = D.step(params, state, D.decide(params, action, state), rng)
            self._states[i] = nxt
            rewards[i] = reward
            truncated[i] = nxt.round_index >= cfg.episode_rounds
            infos = self._add_info(infos, info, i)
        self._needs_reset = truncated.copy()
        return self._obs(), rewards, np.zeros(n, dtype=bool), truncated, infos
