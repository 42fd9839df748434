"""Numpy-batched vector version of ``edgeft/MECOffloading-v0`` (surrogate mode).

The vector env made by ::

    gym.make_vec("edgeft/MECOffloading-v0", num_envs=64, vectorization_mode="vector_entry_point")

keeps one batched :class:`~edgeft.envs.mec.types.MECState` (a leading copy axis) and steps all
copies at once with the single env's ``dynamics.decide`` and ``dynamics.step``, which take a
batched state: the projection of the actions, channel gains, rates, energy, delay and stability
terms, queues, rewards, constraint violations, infos and the observation encoding are numpy
arithmetic over the batch. Each copy's sums over its users run in the order of one copy's (per
row along the last axis, or ``np.bincount`` in user order), so copy i's numbers are the single
env's, bit for bit (tested). In the ``"discrete"`` action mode the resource rule
(``resources.fast_resource_rule``, per-server Newton iterations until every server of the
instance has converged) runs copy by copy, since batching it would make a copy's numbers depend
on the other copies; the rest of its step is batched.

Copy i draws from its own generator, seeded with ``seed + i`` on ``reset(seed=seed)`` (as
``SyncVectorEnv`` seeds its envs), in the single env's order (a loop over copies for the draws
of a reset and of each step: :class:`CopyGenerators`), so copy i's trajectory is the single
env's from ``reset(seed=seed + i)``, autoresets included. Autoreset follows Gymnasium's
NEXT_STEP mode (as the FedLoRA vector env): the step after an episode ends resets that copy
(its action is ignored, reward 0, info = the reset info). Infos are those Gymnasium's vector
envs give by merging the copies' infos (an array per key and a ``_key`` mask per key).
Malformed actions raise ``ValueError`` naming the copy and the entry, before anything changes.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np
from edgeft.envs.common import build_config
from edgeft.envs.mec import actions as A
from edgeft.envs.mec import dynamics as D
from edgeft.envs.mec import generator as G
from edgeft.envs.mec import observation as O
from edgeft.envs.mec.config import PRESETS, MECConfig
from edgeft.envs.mec.types import MECState, gain_matrix
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

_FIELDS = tuple(f.name for f in fields(MECState))


class CopyGenerators:
    """The generator ``generator.advance`` gets for a batch: each of its draws (``normal``,
    ``integers``, ``size`` with the leading copy axis) comes copy by copy from that copy's own
    generator, the values the single env draws; a copy about to reset draws nothing (its
    entries are 0), as the single env draws nothing then.

    ``normal(loc, scale)`` is numpy's ``loc + scale * z`` of standard normals z (what
    ``Generator.normal`` computes per value). A copy's ``normals`` standard normals of the
    round (``advance``'s velocity, then real and imaginary fading innovations) come from one
    ``standard_normal`` call, the stream its successive calls would draw; each ``normal`` takes
    the next of them for every copy and applies ``loc + scale * z`` to the batch.
    """

    def __init__(self, rngs: list[np.random.Generator], live: np.ndarray, normals: int) -> None:
        self.rngs = rngs
        self.live = np.flatnonzero(live).tolist()
        self._z = np.zeros((live.shape[0], normals))
        for i in self.live:
            rngs[i].standard_normal(out=self._z[i])
        self._taken = 0

    def normal(
        self, loc: float = 0.0, scale: float = 1.0, size: tuple[int, ...] = (1,)
    ) -> np.ndarray:
        count = int(np.prod(size[1:]))
        start, self._taken = self._taken, self._taken + count
        if self._taken > self._z.shape[1]:
            raise RuntimeError("more normals drawn in a round than CopyGenerators was given")
        return loc + scale * self._z[:, start : self._taken].reshape(size)

    def integers(self, low: int, high: int, size: tuple[int, ...] = (1,)) -> np.ndarray:
        out = np.zeros(size, dtype=np.int64)
        one = tuple(size[1:])
        for i in self.live:
            out[i] = self.rngs[i].integers(low, high, size=one)
        return out


class MECVectorEnv(VectorEnv):
    """``num_envs`` independent copies of the MEC env stepped as one numpy batch."""

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
        self._params = D.Params(cfg)
        # standard normals a copy draws per round (generator.advance): velocity, then fading
        self._normals = 2 * cfg.num_users + 2 * cfg.num_users * cfg.num_servers
        self._rngs: list[np.random.Generator] = []
        self._state: MECState | None = None
        self._gain = np.zeros(0)  # the state's gain_matrix (the observation's and the step's)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)
        # what a resetting copy's ignored action is replaced with (an element of the space)
        space = self.single_action_space
        self._placeholder = (
            np.asarray(space.low, dtype=np.float64)
            if isinstance(space, spaces.Box)
            else np.zeros(tuple(space.shape or ()))
        )

    @property
    def config_in_force(self) -> MECConfig:
        """The config the copies run with (surrogate mode only: ``config`` itself)."""
        return self.config

    @property
    def state(self) -> MECState:
        """The batched Markov state (a leading copy axis; after ``reset``; a copy)."""
        if self._state is None:
            raise RuntimeError("call reset() before reading the state")
        s = self._state
        return MECState(**{name: np.array(getattr(s, name)) for name in _FIELDS})

    def decode_observation(self, obs: np.ndarray) -> MECState:
        """Typed decoding of a batch of observations."""
        return O.decode_observation(obs, self.config)

    def _reset_copies(self, idx: list[int]) -> None:
        """New episodes for copies ``idx``, each drawn from its own generator."""
        if self._state is None:
            fresh = [G.sample_initial_state(self.config, self._rngs[i]) for i in idx]
            self._state = MECState.stack(fresh)
            return
        s = self._state
        for i in idx:
            start = G.sample_initial_state(self.config, self._rngs[i])
            for name in _FIELDS:
                getattr(s, name)[i] = getattr(start, name)

    def _obs(self) -> np.ndarray:
        """The observations of the state (and its gains, kept for the next step)."""
        assert self._state is not None
        self._gain = gain_matrix(self.config, self._state)
        return O.encode_observation(self._state, self.config, self._gain)

    def _infos(self, values: dict[str, Any]) -> dict[str, Any]:
        """Batched info values with a ``_key`` mask per key (every copy has every key)."""
        out: dict[str, Any] = {}
        for key, value in values.items():
            out[key] = self._infos(value) if isinstance(value, dict) else value
            out[f"_{key}"] = np.ones(self.num_envs, dtype=bool)
        return out

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
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
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        else:
            for i, s in enumerate(seeds):
                if s is not None:
                    self._rngs[i] = seeding.np_random(s)[0]
        self._state = None
        self._reset_copies(list(range(n)))
        self._needs_reset[:] = False
        assert self._state is not None
        info = D.reset_info_batch(self._params, self._state)
        return self._obs(), self._infos(info)

    def _live_actions(self, actions: Any, resetting: np.ndarray) -> Any:
        """``actions`` with the rows of resetting copies (ignored) replaced by an element of
        the action space, where the batch has the right shape and a real dtype (anything else
        is left to ``dynamics.decide`` to refuse)."""
        try:
            arr = np.asarray(actions)
        except (TypeError, ValueError):
            return actions
        if arr.dtype.kind not in "biuf" or arr.shape != self.action_space.shape:
            return actions
        arr = arr.astype(np.float64)  # a copy: the caller's actions stay as they are
        arr[resetting] = self._placeholder
        return arr

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        cfg = self.config
        resetting = self._needs_reset
        live = ~resetting
        if resetting.any():
            actions = self._live_actions(actions, resetting)
        params = self._params
        decided = D.decide(params, actions, self._state, self._gain)  # refuses malformed ones
        draws: Any = CopyGenerators(self._rngs, live, self._normals)  # a generator per copy
        state, reward, info = D.step(params, self._state, decided, draws)
        rewards = np.asarray(reward, dtype=np.float64)
        self._state = state
        truncated = live & (np.asarray(state.round_index) >= cfg.episode_rounds)
        if resetting.any():
            idx = np.flatnonzero(resetting)
            rewards = np.where(live, rewards, 0.0)
            self._reset_copies(idx.tolist())
            fresh = D.reset_info_batch(params, self._state.index(idx))
            if resetting[0]:  # the merged key takes copy 0's dtype (a reset's integer alpha)
                info["alpha"] = info["alpha"].astype(fresh["alpha"].dtype)
            _put_rows(info, fresh, idx)
        self._needs_reset = truncated
        return (
            self._obs(),
            np.asarray(rewards, dtype=np.float64),
            np.zeros(self.num_envs, dtype=bool),
            truncated,
            self._infos(info),
        )


def _put_rows(info: dict[str, Any], rows: dict[str, Any], idx: np.ndarray) -> None:
    """Write ``rows`` (the infos of copies ``idx``) into the batched ``info``, key by key."""
    for key, value in rows.items():
        if isinstance(value, dict):
            _put_rows(info[key], value, idx)
        else:
            info[key][idx] = value
