"""Adapters between edgeft envs and stable-baselines3's ``VecEnv``.

- :class:`NumpyVecEnv` drives a Gymnasium ``VectorEnv`` (the FedLoRA numpy vector env) as an SB3
  ``VecEnv``. SB3 resets a finished copy in the same step and returns its last observation in
  ``info["terminal_observation"]``; Gymnasium's vector env resets it on the next step instead.
  edgeft episodes have a fixed length and all copies start together, so they all finish in the
  same step; the adapter then resets the whole batch at once (a copy finishing alone raises).
- :class:`VecLagrangian` trains on the Lagrangian of a constrained problem: reward minus lambda
  times the bounded constraint cost, lambda updated from the true episode cost
  (``lagrangian.py``); without a multiplier it only logs the training curves.
- :class:`VecObsTransform` applies an observation transform (``transforms.py``), terminal
  observations included.
- :func:`make_vec_env` builds the SB3 ``VecEnv`` a training run (``train.py``) and behaviour
  cloning (``bc.py``) step: the env's own vector env where it has one, else SB3's
  ``DummyVecEnv``, with the run's reward shaping and observation transform.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.agents.lagrangian import CONSTRAINTS, CURVE_COLUMNS, PIDMultiplier, constraint_cost
from edgeft.envs.fedlora.config import FedLoRAConfig
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

#: per-copy scalars of the vector env's info that :class:`NumpyVecEnv` passes on in each copy's
#: SB3 info dict (what ``lagrangian.VecLagrangian`` and the training curves read)
INFO_KEYS = ("cost", "num_scheduled", "objective")


class NumpyVecEnv(VecEnv):
    """A Gymnasium ``VectorEnv`` with fixed-length episodes as an SB3 ``VecEnv``.

    Each copy's SB3 info holds the :data:`INFO_KEYS` the vector env reports (as floats).
    """

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
        passed = {k: np.asarray(info[k], dtype=np.float64) for k in INFO_KEYS if k in info}
        infos: list[dict[str, Any]] = [
            {k: float(v[i]) for k, v in passed.items()} for i in range(self.num_envs)
        ]
        if done.any():
            if not done.all():
                raise RuntimeError(
                    "NumpyVecEnv needs every copy to finish in the same step "
                    "(fixed-length episodes started together)"
                )
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
    from edgeft.envs.fedlora.observation import decode_observation

    if not isinstance(config, FedLoRAConfig):
        raise ValueError(
            "reward_shaping 'clipped-dpp' is a FedLoRA training reward, not one for "
            f"the {getattr(config, 'family', '?')} envs"
        )

    def reward(obs_before: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        q = decode_observation(obs_before, config).queue
        x = np.minimum(np.asarray(info["delay_ratio"], dtype=np.float64), clip)
        n = np.asarray(info["num_scheduled"], dtype=np.float64)
        return n - zeta * (q * x + 0.5 * (x - 1.0) ** 2)

    return reward


def devices_utility(config: Any) -> Any:
    """FedLoRA training reward: N / K, the paper's per-round utility (the share of the K devices
    scheduled), for constrained training where the delay is the separate constraint cost
    (``--algo ppo-lag``; ``lagrangian.VecLagrangian`` subtracts lambda times the bounded cost).

    The env's default ``progress`` reward hardly depends on the schedule in the surrogate, and
    the drift-plus-penalty rewards fold the constraint into the reward with a fixed weight; this
    one leaves the constraint to the multiplier.

    Args:
        config: the env's config in force (``edgeft.envs.common.config_in_force``).
    """
    if not isinstance(config, FedLoRAConfig):
        raise ValueError(
            "reward_shaping 'devices' is a FedLoRA training reward, not one for "
            f"the {getattr(config, 'family', '?')} envs"
        )
    k = float(config.num_devices)

    def reward(obs_before: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        return np.asarray(info["num_scheduled"], dtype=np.float64) / k

    return reward


#: training rewards of ``reward_shaping``: type -> builder(config, **options)
REWARD_SHAPINGS: dict[str, Callable[..., Any]] = {
    "clipped-dpp": clipped_drift_plus_penalty,
    "devices": devices_utility,
}


def make_reward_fn(shaping: dict[str, Any], config: Any) -> Any:
    """The training reward ``fn(obs_before, info) -> (n,)`` that ``shaping`` names.

    Raises:
        ValueError: an unknown type (the message lists the known ones) or bad options.
    """
    rs = dict(shaping)
    kind = rs.pop("type", None)
    if kind not in REWARD_SHAPINGS:
        raise ValueError(
            f"reward_shaping type must be one of {sorted(REWARD_SHAPINGS)}, got {shaping}"
        )
    try:
        return REWARD_SHAPINGS[kind](config, **rs)
    except TypeError as err:
        raise ValueError(f"reward_shaping {shaping}: {err}") from err


@dataclass
class _Batch:
    utility: list[float] = field(default_factory=list)
    devices: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    cost_bounded: list[float] = field(default_factory=list)
    cost_max: list[float] = field(default_factory=list)
    excess: list[float] = field(default_factory=list)


class VecLagrangian(VecEnvWrapper):
    """Reward minus lambda times the bounded constraint cost, lambda from the true episode cost.

    Wraps an SB3 ``VecEnv`` whose step infos carry ``"cost"`` (and, for the curves,
    ``"num_scheduled"`` where the env has it). Without a multiplier it only monitors: rewards
    pass unchanged and the curves are logged (plain PPO runs use it so their curves compare).

    Per finished episode it records the mean per-step reward (the utility), the mean of
    ``num_scheduled``, the true mean cost, the mean bounded cost and the worst step's cost; after
    ``update_episodes`` episodes it updates the multiplier from their mean true cost and appends
    one row (:data:`CURVE_COLUMNS`) to :attr:`log` (and to ``log_path`` as CSV).

    Args:
        venv: the vector env (any SB3 ``VecEnv``).
        family: env family (what :func:`constraint_cost` reads).
        limit: per-step cost limit d (logged; the multiplier's own).
        multiplier: the multiplier, or None to monitor only.
        cost_cap: the learning signal is ``reward - lambda min(cost, cost_cap)``.
        update_episodes: finished episodes per update (default: one per env copy).
        log_path: CSV file the rows are appended to (None: kept in memory only).
        constraint: ``"mean"``: the multiplier prices the bounded cost of each step and follows
            the batch's mean cost against ``limit`` (the expected time-average); ``"episode"``:
            it prices the growth of each episode's running overshoot
            ``max(0, sum_t (c~_t - limit))`` and follows the batch mean of the episodes'
            overshoot ``max(0, mean_t c_t - limit)`` (the multiplier's own limit is
            then the tolerated mean overshoot; ``edgeft.agents.lagrangian``, "Per-episode
            constraint").
        relabel: off-policy training (:class:`LagrangianReplayBuffer`): the reward passes
            unpriced and each step's priced cost goes into its info as ``"lagrangian_cost"``,
            for the replay buffer to price with the multiplier in force when it samples.
    """

    def __init__(
        self,
        venv: VecEnv,
        family: str,
        limit: float,
        multiplier: PIDMultiplier | None = None,
        cost_cap: float = 4.0,
        update_episodes: int | None = None,
        log_path: str | Path | None = None,
        constraint: str = "mean",
        relabel: bool = False,
    ) -> None:
        super().__init__(venv)
        self.relabel = bool(relabel)
        if constraint not in CONSTRAINTS:
            raise ValueError(f"constraint must be one of {list(CONSTRAINTS)}, got {constraint!r}")
        self.family = family
        self.limit = float(limit)
        self.multiplier = multiplier
        self.constraint = constraint
        self.cost_cap = float(cost_cap)
        self.update_episodes = int(update_episodes or venv.num_envs)
        self.log_path = Path(log_path) if log_path is not None else None
        self.log: list[dict[str, float]] = []
        self.timesteps = 0
        self.episodes = 0
        n = venv.num_envs
        self._sums = {k: np.zeros(n) for k in ("utility", "devices", "cost", "cost_bounded")}
        self._max = np.zeros(n)
        self._len = np.zeros(n, dtype=np.int64)
        self._excess = np.zeros(n)  # running sum of (bounded cost - limit) this episode
        self._batch = _Batch()

    @property
    def lam(self) -> float:
        """The current multiplier (0 when monitoring only)."""
        return 0.0 if self.multiplier is None else self.multiplier.value

    def reset(self) -> Any:
        for v in self._sums.values():
            v[:] = 0.0
        self._max[:] = 0.0
        self._len[:] = 0
        self._excess[:] = 0.0
        return self.venv.reset()

    def step_wait(self):
        obs, rew, done, infos = self.venv.step_wait()
        cost = constraint_cost(infos, self.family)
        bounded = np.minimum(cost, self.cost_cap)
        self._sums["utility"] += rew
        self._sums["devices"] += [float(i.get("num_scheduled", np.nan)) for i in infos]
        self._sums["cost"] += cost
        self._sums["cost_bounded"] += bounded
        self._max = np.maximum(self._max, cost)
        self._len += 1
        self.timesteps += self.num_envs
        before = np.maximum(self._excess, 0.0)
        self._excess += bounded - self.limit
        if self.multiplier is not None:
            priced = (
                bounded if self.constraint == "mean" else np.maximum(self._excess, 0.0) - before
            )
            if self.relabel:
                for i, info in enumerate(infos):
                    info["lagrangian_cost"] = float(priced[i])
            else:
                rew = (rew - self.multiplier.value * priced).astype(np.float32)
        for i in np.flatnonzero(done):
            n = max(int(self._len[i]), 1)
            b = self._batch
            mean_cost = self._sums["cost"][i] / n
            b.utility.append(self._sums["utility"][i] / n)
            b.devices.append(self._sums["devices"][i] / n)
            b.cost.append(mean_cost)
            b.cost_bounded.append(self._sums["cost_bounded"][i] / n)
            b.cost_max.append(float(self._max[i]))
            b.excess.append(max(0.0, mean_cost - self.limit))
            infos[i]["episode_cost"] = {
                "mean": mean_cost,
                "max": float(self._max[i]),
                "excess": b.excess[-1],
                "lambda": self.lam,
            }
            for v in self._sums.values():
                v[i] = 0.0
            self._max[i] = 0.0
            self._len[i] = 0
            self._excess[i] = 0.0
            self.episodes += 1
        if len(self._batch.cost) >= self.update_episodes:
            self._end_batch()
        return obs, rew, done, infos

    def _end_batch(self) -> None:
        b = self._batch
        mean_cost = float(np.mean(b.cost))
        excess = float(np.mean(b.excess))
        if self.multiplier is not None:
            self.multiplier.update(mean_cost if self.constraint == "mean" else excess)
        row = {
            "timesteps": self.timesteps,
            "episodes": self.episodes,
            "utility": float(np.mean(b.utility)),
            "devices": float(np.mean(b.devices)),
            "cost": mean_cost,
            "cost_bounded": float(np.mean(b.cost_bounded)),
            "cost_max": float(np.max(b.cost_max)),
            "cost_limit": self.limit,
            "lambda": self.lam,
            "excess": excess,
            "excess_max": float(np.max(b.excess)),
        }
        self.log.append(row)
        if self.log_path is not None:
            new = not self.log_path.is_file()
            with open(self.log_path, "a", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=CURVE_COLUMNS)
                if new:
                    w.writeheader()
                w.writerow(row)
        self._batch = _Batch()

    def describe(self) -> str:
        """The progress-line text: lambda and the last batch's cost against the limit."""
        last = self.log[-1] if self.log else None
        cost = f"{last['cost']:.3g}" if last else "-"
        dev = f"; devices {last['devices']:.3g}" if last and np.isfinite(last["devices"]) else ""
        lam = f"lambda {self.lam:.4g}; " if self.multiplier is not None else ""
        over = (
            f"; episodes over by {last['excess']:.3g} (worst {last['excess_max']:.3g})"
            if last and self.constraint == "episode"
            else ""
        )
        return f"{lam}cost {cost}/{self.limit:g}{over}{dev}"

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the multiplier and the step/episode counters."""
        return {
            "multiplier": None if self.multiplier is None else self.multiplier.state_dict(),
            "timesteps": self.timesteps,
            "episodes": self.episodes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (resume continues with the same lambda)."""
        if self.multiplier is not None and state.get("multiplier") is not None:
            self.multiplier = PIDMultiplier(**state["multiplier"])
        self.timesteps = int(state.get("timesteps", 0))
        self.episodes = int(state.get("episodes", 0))


def find_lagrangian(venv: Any) -> VecLagrangian | None:
    """The :class:`VecLagrangian` inside a stack of VecEnv wrappers (None if there is none)."""
    while venv is not None:
        if isinstance(venv, VecLagrangian):
            return venv
        venv = getattr(venv, "venv", None)
    return None


class LagrangianReplayBuffer(ReplayBuffer):
    """SB3's replay buffer for the off-policy Lagrangian algorithms (``sac-lag``, ``td3-lag``,
    ``dqn-lag``): it stores each step's priced cost (``info["lagrangian_cost"]``, written by a
    :class:`VecLagrangian` with ``relabel=True``) beside its reward, and a sampled batch's
    rewards are ``reward - lambda x cost`` with the multiplier in force when it is sampled
    (then normalised as SB3 does). Without an attached wrapper, or before the first priced step,
    lambda is 0.

    The costs are a plain array (``costs``, like ``rewards``), so the checkpoint's replay-buffer
    file keeps them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.costs = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.lagrangian: VecLagrangian | None = None

    def attach(self, lagrangian: VecLagrangian | None) -> None:
        """Price with ``lagrangian``'s multiplier (the run's :class:`VecLagrangian`)."""
        if lagrangian is not None and not lagrangian.relabel:
            raise ValueError(
                "the VecLagrangian of an off-policy Lagrangian run must have "
                "relabel=True (else its rewards are priced twice)"
            )
        self.lagrangian = lagrangian

    @property
    def lam(self) -> float:
        """The multiplier a batch sampled now is priced with."""
        return 0.0 if self.lagrangian is None else self.lagrangian.lam

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        self.costs[self.pos] = [float(info.get("lagrangian_cost", 0.0)) for info in infos]
        super().add(obs, next_obs, action, reward, done, infos)

    def _get_samples(self, batch_inds: np.ndarray, env: Any = None) -> ReplayBufferSamples:
        # SB3's sampling with the rewards priced: the env index of each sample from numpy's
        # global state, as SB3 draws it (set_random_seed seeds it: runs stay reproducible)
        size = (len(batch_inds),)
        env_indices = np.random.randint(0, high=self.n_envs, size=size)  # noqa: NPY002
        if self.optimize_memory_usage:
            next_obs = self._normalize_obs(
                self.observations[(batch_inds + 1) % self.buffer_size, env_indices, :], env
            )
        else:
            next_obs = self._normalize_obs(self.next_observations[batch_inds, env_indices, :], env)
        rewards = (
            self.rewards[batch_inds, env_indices]
            - np.float32(self.lam) * self.costs[batch_inds, env_indices]
        )
        data = (
            self._normalize_obs(self.observations[batch_inds, env_indices, :], env),
            self.actions[batch_inds, env_indices, :],
            next_obs,
            (
                self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])
            ).reshape(-1, 1),
            self._normalize_reward(rewards.reshape(-1, 1), env),
        )
        return ReplayBufferSamples(*tuple(map(self.to_torch, data)))


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
        ValueError: an unknown reward shaping (``REWARD_SHAPINGS``), or one for an env without a
            numpy vector env.
    """
    import gymnasium as gym
    from edgeft.agents.transforms import get_transform
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.vec_env import VecMonitor

    if getattr(cfg, "scenarios", ""):
        return scenario_vec_env(cfg, seed)
    spec = gym.registry[cfg.env_id]
    venv: VecEnv
    if spec.vector_entry_point is not None and getattr(config, "mode", "surrogate") == "surrogate":
        reward_fn = make_reward_fn(cfg.reward_shaping, config) if cfg.reward_shaping else None
        numpy_venv = NumpyVecEnv(
            gym.make_vec(
                cfg.env_id,
                num_envs=cfg.n_envs,
                vectorization_mode="vector_entry_point",
                **cfg.env_config,
            ),
            reward_fn=reward_fn,
        )
        numpy_venv.seed(seed)
        venv = VecMonitor(numpy_venv)
    else:
        if cfg.reward_shaping:
            raise ValueError(
                "reward_shaping needs an env with a numpy vector entry point (surrogate mode)"
            )
        venv = sb3_make_vec_env(
            lambda: gym.make(cfg.env_id, **cfg.env_config), n_envs=cfg.n_envs, seed=seed
        )
    if cfg.obs_transform != "none":
        venv = VecObsTransform(venv, get_transform(cfg.obs_transform, config))
    return venv


def scenario_vec_env(cfg: Any, seed: int) -> VecEnv:
    """The SB3 ``VecEnv`` of a run on an instance distribution (``cfg.scenarios``): copy i a
    ``ScenarioEnv`` on the training split's stream i, seeded with seed + i (its scenarios then
    come from the stream (i, seed + i)), each episode's observation transform and reward
    shaping built with that episode's config."""
    from edgeft.agents.transforms import get_transform
    from edgeft.envs.fedlora.scenarios import ScenarioEnv
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    first = _first_config(cfg)
    transform: Callable[[np.ndarray, Any], np.ndarray] | None = None
    if cfg.obs_transform != "none":
        get_transform(cfg.obs_transform, first)  # an unknown or wrong-family name fails here
        transform = functools.partial(_transform_with, cfg.obs_transform)
    reward: Callable[[Any], Any] | None = None
    if cfg.reward_shaping:
        make_reward_fn(cfg.reward_shaping, first)  # bad options fail here
        reward = functools.partial(make_reward_fn, dict(cfg.reward_shaping))
    makers: list[Callable[[], Any]] = [
        functools.partial(ScenarioEnv, cfg.scenarios, "train", i, cfg.env_config, transform, reward)
        for i in range(int(cfg.n_envs))
    ]
    venv = DummyVecEnv(makers)
    venv.seed(seed)
    return VecMonitor(venv)


def _transform_with(name: str, obs: np.ndarray, config: Any) -> np.ndarray:
    """The observation transform ``name`` built for ``config``, applied to ``obs``."""
    from edgeft.agents.transforms import get_transform

    return get_transform(name, config)(obs)


def _first_config(cfg: Any) -> Any:
    from edgeft.envs.fedlora.config import FedLoRAConfig
    from edgeft.envs.fedlora.scenarios import get_distribution

    return FedLoRAConfig(**{**cfg.env_config, **get_distribution(cfg.scenarios).draw("train", 0)})
