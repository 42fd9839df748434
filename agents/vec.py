"""Adapters between edgeft envs and stable-baselines3's ``VecEnv``.

- :class:`NumpyVecEnv` drives a Gymnasium ``VectorEnv`` (the FedLoRA numpy vector env) as an SB3
  ``VecEnv``. SB3 resets a finished copy in the same step and returns its last observation in
  ``info["terminal_observation"]``; Gymnasium's vector env resets it on the next step instead.
  edgeft episodes have a fixed length and all copies start together, so they all finish in the
  same step; the adapter then resets the whole batch at once (a copy finishing alone raises).
- :class:`VecObsTransform` applies an observation transform (``transforms.py``), terminal
  observations included.
- :func:`make_vec_env` builds the SB3 ``VecEnv`` a training run (``train.py``) and behaviour
  cloning (``bc.py``) step: the env's own vector env where it has one, else SB3's
  ``DummyVecEnv``, with the run's reward shaping and observation transform.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper


class NumpyVecEnv(VecEnv):
    """A Gymnasium ``VectorEnv`` with fixed-length episodes as an SB3 ``VecEnv``."""

    def __init__(self, venv: Any, reward_fn: Any = None) -> None:
        self.venv = venv
        self.reward_fn = reward_fn
        self._obs: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._seed: int | None = None

    def reset(self) -> np.ndarray:
        obs, _ = self.venv.reset(seed=self._seed)
        self._seed = None
        self._obs = obs
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, rew, term, trunc, info = self.venv.step(self._actions)
        if self.reward_fn is not None:
            rew = self.reward_fn(self._obs, info)
        done = term | trunc
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done.any():
            if not done.all():
                raise RuntimeError("NumpyVecEnv needs every copy to finish in the same step "
                                   "(fixed-length episodes started together)")
            for i in range(self.num_envs):
                infos[i]["terminal_observation"] = obs[i].copy()
                infos[i]["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
            obs, _ = self.venv.reset()
        self._obs = obs
        return obs, np.asarray(rew, dtype=np.float32), done, infos

    def seed(self, seed: int | None = None):
        self._seed = seed
        return [seed]

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.venv, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *args, indices=None, **kwargs) -> list[Any]:
        return [getattr(self.venv, method_name)(*args, **kwargs)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._get_indices(indices))

    def _get_indices(self, indices):
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else indices


def clipped_drift_plus_penalty(config: Any, zeta: float, clip: float) -> Any:
    """FedLoRA training reward: N - zeta [q min(x, c) + (min(x, c) - 1)^2 / 2].

    The corrected drift-plus-penalty objective with the delay ratio x = D/D-bar capped at c: a
    round in deep fade costs a bounded amount, so a few outliers (x ~ 1e3) do not swamp the
    reward scale. q is the queue the round started with (decoded from the observation).

    Args:
        config: the env's config in force (``edgeft.envs.common.config_in_force``).
        zeta: trade-off weight of the delay term.
        clip: cap c of the delay ratio.
    """
    from edgeft.envs.fedlora.types import decode_observation

    if getattr(config, "family", None) != "fedlora":
        raise ValueError("reward_shaping 'clipped-dpp' is a FedLoRA training reward, not one for "
                         f"the {getattr(config, 'family', '?')} envs")

    def reward(obs_before: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        q = decode_observation(obs_before, config).queue
        x = np.minimum(np.asarray(info["delay_ratio"], dtype=np.float64), clip)
        n = np.asarray(info["num_scheduled"], dtype=np.float64)
        return n - zeta * (q * x + 0.5 * (x - 1.0) ** 2)

    return reward


class VecObsTransform(VecEnvWrapper):
    """Apply ``transform`` (batched) to every observation, terminal observations included."""

    def __init__(self, venv: VecEnv, transform: Any) -> None:
        self.transform = transform
        shape = venv.observation_space.shape
        assert shape is not None, "VecObsTransform needs a Box observation space"
        size = transform(np.zeros(shape)).shape[0]
        space = spaces.Box(-np.inf, np.inf, (size,), np.float64)
        super().__init__(venv, observation_space=space)

    def reset(self) -> np.ndarray:
        return self.transform(self.venv.reset())

    def step_wait(self):
        obs, rew, done, infos = self.venv.step_wait()
        for info in infos:
            if "terminal_observation" in info:
                info["terminal_observation"] = self.transform(info["terminal_observation"])
        return self.transform(obs), rew, done, infos


def make_vec_env(cfg: Any, config: Any, seed: int) -> VecEnv:
    """The SB3 ``VecEnv`` (with the observation transform) of a training run.

    Args:
        cfg: the run's ``TrainConfig`` (``env_id``, ``env_config``, ``n_envs``,
            ``reward_shaping``, ``obs_transform``); the envs are made with
            ``gym.make(cfg.env_id, **cfg.env_config)``.
        config: the config in force of such an env (``edgeft.envs.common.config_in_force``):
            what the reward shaping and the transform read.
        seed: copy i starts from seed + i.

    Raises:
        ValueError: a reward shaping other than ``clipped-dpp``, or one for an env without a
            numpy vector env.
    """
    import gymnasium as gym
    from edgeft.agents.transforms import get_transform
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.vec_env import VecMonitor

    spec = gym.registry[cfg.env_id]
    venv: VecEnv
    if spec.vector_entry_point is not None and getattr(config, "mode", "surrogate") == "surrogate":
        reward_fn = None
        if cfg.reward_shaping:
            rs = dict(cfg.reward_shaping)
            if rs.pop("type", None) != "clipped-dpp":
                raise ValueError("reward_shaping type must be 'clipped-dpp', "
                                 f"got {cfg.reward_shaping}")
            reward_fn = clipped_drift_plus_penalty(config, **rs)
        numpy_venv = NumpyVecEnv(gym.make_vec(cfg.env_id, num_envs=cfg.n_envs,
                                              vectorization_mode="vector_entry_point",
                                              **cfg.env_config),
                                 reward_fn=reward_fn)
        numpy_venv.seed(seed)
        venv = VecMonitor(numpy_venv)
    else:
        if cfg.reward_shaping:
            raise ValueError("reward_shaping needs an env with a numpy vector entry point "
                             "(surrogate mode)")
        venv = sb3_make_vec_env(lambda: gym.make(cfg.env_id, **cfg.env_config),
                                n_envs=cfg.n_envs, seed=seed)
    if cfg.obs_transform != "none":
        venv = VecObsTransform(venv, get_transform(cfg.obs_transform, config))
    return venv
