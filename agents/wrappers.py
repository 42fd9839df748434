"""Gymnasium and SB3 wrappers with the features, rewards and constraint handling the edgeft
agents train on, for anyone training their own agent (stable-baselines3 or another library).

Gymnasium (one env, ``gym.Wrapper``):

- :class:`FeatureObservation` (``env, name``): the observation transform ``name`` of
  ``edgeft.agents.transforms`` (``sort-by-gain``, ``prefix-delay``, ``mec-compact``,
  ``mec-users``) applied to every observation, with a matching ``Box`` observation space. These
  are the features ``edgeft train`` and the shipped agents see.
- :class:`TrainingReward` (``env, shaping``): the reward replaced by a training reward of
  ``edgeft.agents.vec.REWARD_SHAPINGS`` (``{"type": "devices"}``: N/K, the paper's per-round
  utility; ``{"type": "clipped-dpp", "zeta": 10, "clip": 4}``); ``info`` (``"cost"`` included)
  passes unchanged.

- :class:`ParticipationObservation` (``env``): FedLoRA only; the observation with one more block
  of K values, the share of the episode's rounds so far in which each device took part. Under
  the v3 surrogate a device's head state is a function of how often it was scheduled, which the
  env's observation does not carry (a server knows it from its own decisions); with this block
  a memoryless policy sees it.

SB3 (``VecEnv`` wrappers, re-exported from ``edgeft.agents.vec``):

- :class:`VecObsTransform`: the same features on a ``VecEnv`` (terminal observations included).
- :class:`VecLagrangian`: the Lagrangian of the constrained problem (reward minus lambda times
  the bounded cost ``info["cost"]``, lambda from the true episode cost; see
  ``edgeft.agents.lagrangian``), usable by any on-policy SB3 algorithm unchanged.

Example (PPO-Lagrangian on FedLoRA with the features of ``edgeft train --algo ppo-lag``)::

    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv
    from edgeft.agents.lagrangian import PIDMultiplier
    from edgeft.agents.wrappers import FeatureObservation, TrainingReward, VecLagrangian

    def make():
        env = gym.make("edgeft/FedLoRAScheduling-v0", action_mode="count")
        return FeatureObservation(TrainingReward(env, {"type": "devices"}), "prefix-delay")

    venv = VecLagrangian(DummyVecEnv([make] * 4), "fedlora", limit=1.0,
                         multiplier=PIDMultiplier(limit=1.0, ki=0.05))
    PPO("MlpPolicy", venv).learn(20_000)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from edgeft.agents.transforms import get_transform
from edgeft.agents.vec import VecLagrangian, VecObsTransform, make_reward_fn
from edgeft.envs.fedlora.config import FedLoRAConfig
from gymnasium import spaces


def _config(env: gym.Env) -> Any:
    from edgeft.envs.common import config_in_force

    return config_in_force(env)


class FeatureObservation(gym.ObservationWrapper):
    """The observation transform ``name`` (``edgeft.agents.transforms``) on every observation.

    Args:
        env: an edgeft env (wrapped or not); the transform reads its config in force.
        name: a transform name of ``edgeft.agents.transforms.TRANSFORMS``.

    Raises:
        ValueError: unknown name, or a transform of the other env family.
    """

    def __init__(self, env: gym.Env, name: str) -> None:
        super().__init__(env)
        self.name = name
        self.transform = get_transform(name, _config(env))
        shape = env.observation_space.shape
        assert shape is not None, "FeatureObservation needs a Box observation space"
        size = int(self.transform(np.zeros(shape)).shape[0])
        self.observation_space = spaces.Box(-np.inf, np.inf, (size,), np.float64)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return self.transform(observation)


class _OneCopy(dict):
    """An env's info read as a batch of one (what the batched reward functions index)."""

    def __getitem__(self, key: str) -> np.ndarray:
        return np.asarray(super().__getitem__(key))[None]


class TrainingReward(gym.Wrapper):
    """The env's reward replaced by the training reward ``shaping`` (``vec.REWARD_SHAPINGS``).

    The reward is computed from the observation the step started from and the step's info, as in
    ``edgeft train``; the env's own reward is kept in ``info["env_reward"]``.

    Args:
        env: an edgeft env.
        shaping: e.g. ``{"type": "devices"}`` or ``{"type": "clipped-dpp", "zeta": 10, "clip": 4}``.
    """

    def __init__(self, env: gym.Env, shaping: dict[str, Any]) -> None:
        super().__init__(env)
        self.shaping = dict(shaping)
        self.reward_fn = make_reward_fn(self.shaping, _config(env))
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._obs = np.asarray(obs, dtype=np.float64)
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        obs, reward, terminated, truncated, info = self.env.step(action)
        shaped = float(self.reward_fn(self._obs[None], _OneCopy(info))[0])
        self._obs = np.asarray(obs, dtype=np.float64)
        return obs, shaped, terminated, truncated, {**info, "env_reward": reward}


class ParticipationObservation(gym.Wrapper):
    """FedLoRA: the observation followed by each device's participation so far, count / T
    (``info["scheduled"]`` summed over the episode's steps, over the episode length T); zeros
    after reset.

    Raises:
        ValueError: an env of another family.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        cfg = _config(env)
        if not isinstance(cfg, FedLoRAConfig):
            raise ValueError(
                "ParticipationObservation needs a FedLoRA env "
                f"(edgeft/FedLoRAScheduling-v0), got a {type(cfg).__name__}"
            )
        self.k = int(cfg.num_devices)
        self.horizon = float(cfg.episode_rounds)
        self.counts = np.zeros(self.k)
        shape = env.observation_space.shape
        assert shape is not None, "ParticipationObservation needs a Box observation space"
        self.observation_space = spaces.Box(-np.inf, np.inf, (shape[0] + self.k,), np.float64)

    def _with_counts(self, obs: Any) -> np.ndarray:
        return np.concatenate([np.asarray(obs, dtype=np.float64), self.counts / self.horizon])

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.counts = np.zeros(self.k)
        return self._with_counts(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.counts = self.counts + np.asarray(info["scheduled"], dtype=np.float64)
        return self._with_counts(obs), reward, terminated, truncated, info


__all__ = [
    "FeatureObservation",
    "ParticipationObservation",
    "TrainingReward",
    "VecLagrangian",
    "VecObsTransform",
]
