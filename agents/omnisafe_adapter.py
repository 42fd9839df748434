"""The edgeft envs for the safe-RL libraries: OmniSafe's CMDP interface, and plain Gymnasium
helpers for FSRL (tianshou).

Both envs follow the safe-RL convention: ``info["cost"]`` is the step's constraint cost
(FedLoRA: the round's D/D-bar, limit 1 per step; MEC: the energy-budget overshoot, per user in
``info["costs"]``). The libraries constrain the *episode* sum of that cost, so their
``cost_limit`` is :func:`episode_cost_limit` (``episode_rounds`` times the per-step limit of
:func:`edgeft.agents.lagrangian.cost_limit`).

OmniSafe::

    from edgeft.agents.omnisafe_adapter import register
    import omnisafe

    register()  # adds "edgeft/FedLoRAScheduling-v0" and "edgeft/MECOffloading-v0"
    omnisafe.Agent("PPOLag", "edgeft/FedLoRAScheduling-v0",
                   custom_cfgs={"env_cfgs": {"episode_rounds": 100},
                                "lagrange_cfgs": {"cost_limit": 100.0}}).learn()

``env_cfgs`` are ``gym.make`` keywords (plus ``cost_key``, the ``info`` entry used as cost).
:class:`EdgeftCMDP`, the adapter itself, imports neither omnisafe nor (until it is made) torch;
:func:`register` subclasses it from OmniSafe's ``CMDP`` and registers it, or raises an
``ImportError`` naming the blocker (:data:`OMNISAFE_BLOCKER`).

FSRL::

    env = flat_unit_action(gym.make("edgeft/MECOffloading-v0"))
    PPOLagAgent(env, cost_limit=episode_cost_limit(env)).learn(...)

FSRL reads ``info["cost"]`` from plain Gymnasium envs; :func:`flat_unit_action` gives the MEC
env's (users x 6) action as the flat [-1, 1] vector its Gaussian actor needs (FedLoRA's
action is flat already). FSRL installs next to edgeft only without its pins (the commands
and why: :data:`FSRL_BLOCKER`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
from edgeft.envs.family import families
from gymnasium import spaces
from gymnasium.wrappers import RescaleAction, TransformAction

if TYPE_CHECKING:
    import torch

__all__ = [
    "FSRL_BLOCKER",
    "OMNISAFE_BLOCKER",
    "EdgeftCMDP",
    "episode_cost_limit",
    "flat_unit_action",
    "register",
]

#: why OmniSafe does not run next to edgeft (checked with omnisafe 0.5.0, safety-gymnasium
#: 0.1.0-1.0.0, gymnasium 1.4, numpy 2.4)
OMNISAFE_BLOCKER = (
    "OmniSafe cannot be used with gymnasium>=1.0, which edgeft requires: omnisafe (every "
    "release) depends on safety-gymnasium, and every safety-gymnasium release pins gymnasium "
    "(==0.26.3 or ==0.28.1), so pip reports 'safety-gymnasium 1.0.0 depends on "
    "gymnasium==0.28.1'; installed anyway with --no-deps, `import omnisafe` fails in "
    'safety_gymnasium/utils/registration.py: "ModuleNotFoundError: No module named '
    "'gymnasium.wrappers.compatibility'\" (removed in gymnasium 1.0). Until safety-gymnasium "
    "supports gymnasium 1.x, use `edgeft train --algo ppo-lag` or FSRL (see FSRL_BLOCKER)."
)

#: why FSRL is no install extra of edgeft, and the install that works (checked with
#: fast-safe-rl 0.1.0, tianshou 0.5.0 and 0.5.1, gymnasium 1.4, numpy 1.26 and 2.4)
FSRL_BLOCKER = (
    "FSRL is not installed (or does not import). fast-safe-rl 0.1.0 pins wandb~=0.14.0, which "
    'fails to import on numpy 2 ("AttributeError: `np.float_` was removed in the NumPy 2.0 '
    'release") and on setuptools>=81 ("ModuleNotFoundError: No module named '
    "'pkg_resources'\"); pinning numpy<2 for it resolves (pip takes bullet-safety-gym 1.1.0 and "
    "the old gym package) but then edgeft's shipped agents, saved under numpy 2, fail to load "
    "(\"No module named 'numpy._core.numeric'\"), so there is no extra for it. Install it "
    "without its pins, which keeps numpy 2 and runs its PPO-Lagrangian on both envs: `pip "
    "install --no-deps fast-safe-rl==0.1.0 tianshou==0.5.0 pyrallis==0.3.1` and `pip install "
    "h5py numba prettytable tensorboard typing-inspect wandb`."
)


def _config(env: gym.Env) -> Any:
    return env.unwrapped.config  # type: ignore[attr-defined]


def episode_cost_limit(env: gym.Env) -> float:
    """The limit on an episode's summed ``info["cost"]``, the form OmniSafe and FSRL constrain.

    ``episode_rounds`` times the per-step limit (1 in both families:
    :func:`edgeft.agents.lagrangian.cost_limit`).
    """
    from edgeft.agents.lagrangian import cost_limit

    config = _config(env)
    return float(config.episode_rounds) * cost_limit(config)


def flat_unit_action(env: gym.Env) -> gym.Env:
    """The env with its Box action as a flat vector in [-1, 1] (plain Gymnasium wrappers).

    For Gaussian actors that need a 1-D action and one bound for all its components (FSRL's
    ``PPOLagAgent`` takes ``action_space.high[0]`` as the bound): ``RescaleAction`` to [-1, 1],
    then, for a multi-dimensional Box such as MEC's (users x 6), a ``TransformAction`` that
    reshapes the flat vector back.

    Raises:
        TypeError: the action space is not a Box.
    """
    space = env.action_space
    if not isinstance(space, spaces.Box):
        raise TypeError(f"flat_unit_action needs a Box action space, got {space}")
    env = RescaleAction(env, np.float64(-1.0), np.float64(1.0))
    if len(space.shape) == 1:
        return env
    shape = space.shape
    flat = spaces.Box(-1.0, 1.0, (int(np.prod(shape)),), dtype=space.dtype)
    return TransformAction(env, lambda action: np.reshape(action, shape), flat)


def _flat_box(space: gym.Space, what: str) -> spaces.Box:
    if not isinstance(space, spaces.Box):
        raise TypeError(f"OmniSafe needs a Box {what} space, got {space}")
    return spaces.Box(space.low.reshape(-1), space.high.reshape(-1), dtype=space.dtype)


class EdgeftCMDP:
    """OmniSafe's ``CMDP`` interface (``omnisafe.envs.core``) over an edgeft env.

    ``step(action)`` returns OmniSafe's ``(obs, reward, cost, terminated, truncated, info)`` as
    float32 torch tensors on ``device`` (as OmniSafe's own ``SafetyGymnasiumEnv`` does), with
    ``cost = info[cost_key]`` (default ``info["cost"]``, the env's constraint cost) and the
    env's ``info`` passed through. Observations and actions are flattened to 1-D Boxes
    (OmniSafe's actors read ``shape[0]``); the action keeps the env's bounds, which OmniSafe's
    ``ActionScale`` maps to [-1, 1].

    With ``num_envs=1`` the results are unbatched and the env asks for OmniSafe's
    ``TimeLimit`` (at ``max_episode_steps``, the env's ``episode_rounds``, where the env
    truncates too) and ``AutoReset`` wrappers. With ``num_envs > 1`` they are batched over
    ``num_envs`` copies and the adapter resets a finished copy in the same step, the last
    observation in ``info["final_observation"]`` (rows where ``info["_final_observation"]``),
    the copy's info in ``info["final_info"]``, the step's per-copy infos in ``info["infos"]``.

    Args:
        env_id: an edgeft env id (an id of a family record's ``env_ids``).
        num_envs: number of env copies stepped together.
        device: torch device of the returned tensors.
        cost_key: the ``info`` entry returned as cost.
        **kwargs: ``gym.make`` keywords (config overrides, ``preset``, ``action_mode``, ...).
    """

    need_auto_reset_wrapper: bool = True
    need_time_limit_wrapper: bool = True
    need_evaluation: bool = True
    _time_limit: int | None = None
    _support_envs: ClassVar[list[str]] = [i for f in families() for i in f.env_ids]

    @classmethod
    def support_envs(cls) -> list[str]:
        """The env ids this class makes."""
        return cls._support_envs

    def __init__(
        self,
        env_id: str,
        num_envs: int = 1,
        device: Any = "cpu",
        cost_key: str = "cost",
        **kwargs: Any,
    ) -> None:
        import torch

        if env_id not in self.support_envs():
            raise ValueError(
                f"env_id {env_id!r} is not supported by {type(self).__name__}; "
                f"supported: {self.support_envs()}"
            )
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self._envs = [gym.make(env_id, **kwargs) for _ in range(num_envs)]
        self._num_envs = num_envs
        self._device = torch.device(device)
        self._cost_key = cost_key
        first = self._envs[0]
        self._action_shape = first.action_space.shape
        self._action_space = _flat_box(first.action_space, "action")
        self._observation_space = _flat_box(first.observation_space, "observation")
        self._metadata: dict[str, Any] = dict(first.metadata)
        self._episode_steps = int(_config(first).episode_rounds)
        if num_envs > 1:  # OmniSafe's TimeLimit and AutoReset handle one env only
            self.need_auto_reset_wrapper = False
            self.need_time_limit_wrapper = False

    @property
    def action_space(self) -> spaces.Box:
        """The env's action space flattened to 1-D, its bounds kept."""
        return self._action_space

    @property
    def observation_space(self) -> spaces.Box:
        """The env's observation space flattened to 1-D."""
        return self._observation_space

    @property
    def max_episode_steps(self) -> int:
        """Steps per episode: the env's ``episode_rounds``."""
        return self._episode_steps

    @property
    def metadata(self) -> dict[str, Any]:
        """The env's metadata."""
        return self._metadata

    @property
    def num_envs(self) -> int:
        """Number of env copies."""
        return self._num_envs

    @property
    def time_limit(self) -> int | None:
        """OmniSafe's extra time limit (none: the env truncates by itself)."""
        return self._time_limit

    @property
    def envs(self) -> list[gym.Env]:
        """The wrapped Gymnasium envs."""
        return self._envs

    @property
    def episode_cost_limit(self) -> float:
        """OmniSafe's ``lagrange_cfgs.cost_limit`` for this env: :func:`episode_cost_limit`."""
        return episode_cost_limit(self._envs[0])

    def _tensor(self, value: Any) -> torch.Tensor:
        import torch

        return torch.as_tensor(np.asarray(value), dtype=torch.float32, device=self._device)

    def _step_one(
        self, env: gym.Env, action: np.ndarray
    ) -> tuple[np.ndarray, float, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = env.step(action.reshape(self._action_shape))
        return (
            np.asarray(obs).reshape(-1),
            float(reward),
            float(info[self._cost_key]),
            bool(terminated),
            bool(truncated),
            info,
        )

    def step(
        self, action: torch.Tensor
    ) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]
    ]:
        """One step of every env copy.

        Args:
            action: the flat action (``num_envs`` rows of them when ``num_envs > 1``).

        Returns:
            ``(obs, reward, cost, terminated, truncated, info)``, the first five float32
            tensors (leading axis ``num_envs`` when ``num_envs > 1``).
        """
        act = action.detach().cpu().numpy()
        info: dict[str, Any]
        if self._num_envs == 1:
            obs, reward, cost, terminated, truncated, info = self._step_one(self._envs[0], act)
            columns: list[Any] = [obs, reward, cost, terminated, truncated]
        else:
            rows = [
                self._step_one(env, a)
                for env, a in zip(self._envs, act.reshape(self._num_envs, -1))
            ]
            observations = np.stack([r[0] for r in rows])
            final_obs = np.zeros_like(observations)
            done = np.zeros(self._num_envs, dtype=bool)
            final_info: list[dict[str, Any] | None] = [None] * self._num_envs
            for i, (env, row) in enumerate(zip(self._envs, rows)):
                if row[3] or row[4]:
                    done[i], final_obs[i], final_info[i] = True, row[0], row[5]
                    observations[i] = np.asarray(env.reset()[0]).reshape(-1)
            info = {"infos": [r[5] for r in rows]}
            if done.any():
                info.update(
                    final_observation=self._tensor(final_obs),
                    _final_observation=done,
                    final_info=final_info,
                )
            columns = [observations] + [np.array([r[k] for r in rows]) for k in range(1, 5)]
        o, r, c, te, tr = (self._tensor(x) for x in columns)
        return o, r, c, te, tr, info

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reset every env copy (copy ``i`` with ``seed + i``).

        Returns:
            ``(obs, info)``: obs a float32 tensor (leading axis ``num_envs`` when
            ``num_envs > 1``); info the env's (``{"infos": [...]}`` when ``num_envs > 1``).
        """
        results = [
            env.reset(seed=None if seed is None else seed + i, options=options)
            for i, env in enumerate(self._envs)
        ]
        observations = [np.asarray(obs).reshape(-1) for obs, _ in results]
        if self._num_envs == 1:
            return self._tensor(observations[0]), results[0][1]
        return self._tensor(np.stack(observations)), {"infos": [info for _, info in results]}

    def set_seed(self, seed: int) -> None:
        """Seed the envs (by resetting them with ``seed``)."""
        self.reset(seed=seed)

    def render(self) -> Any:
        """The first env copy's render (MEC: ``render_mode="ansi"`` text; FedLoRA: none)."""
        return self._envs[0].render()

    def save(self) -> dict[str, Any]:
        """Components OmniSafe saves with a model (none: normalisers live in its wrappers)."""
        return {}

    def close(self) -> None:
        """Close every env copy."""
        for env in self._envs:
            env.close()


_registered: type | None = None


def register() -> type:
    """Register the edgeft envs with OmniSafe (idempotent).

    Defines ``EdgeftOmniSafeEnv``, :class:`EdgeftCMDP` with OmniSafe's ``CMDP`` as base, and
    registers it with ``omnisafe.envs.core.env_register`` for the edgeft env ids, so that
    ``omnisafe.Agent(algo, "edgeft/FedLoRAScheduling-v0", ...)`` makes it.

    Returns:
        The registered class.

    Raises:
        ImportError: omnisafe cannot be imported; the message names the blocker
            (:data:`OMNISAFE_BLOCKER`) and the underlying error.
    """
    global _registered
    if _registered is not None:
        return _registered
    try:
        from omnisafe.envs.core import CMDP, env_register
    except (ImportError, AttributeError) as exc:  # a dependency's import-time failure too
        raise ImportError(f"{OMNISAFE_BLOCKER} [here: {type(exc).__name__}: {exc}]") from exc

    class EdgeftOmniSafeEnv(EdgeftCMDP, CMDP):  # type: ignore[misc, valid-type]
        """The edgeft envs in OmniSafe (:class:`EdgeftCMDP`)."""

    env_register(EdgeftOmniSafeEnv)
    _registered = EdgeftOmniSafeEnv
    return EdgeftOmniSafeEnv
