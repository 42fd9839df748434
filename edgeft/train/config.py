"""The configuration of a training run (``TrainConfig``), its tuned defaults
(``edgeft/agents/hyperparams.json``) and what follows from it: the env, its config in force and
the length of a run in whole rollouts."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeft import agents
from edgeft.agents.lagrangian import LAGRANGIAN_ALGOS, base_algo, lagrangian_settings
from edgeft.envs.family import get_family, make_config

#: the tuned defaults per env id and algorithm (shipped with ``edgeft.agents``)
HYPERPARAMS_FILE = Path(agents.__file__).resolve().parent / "hyperparams.json"
MAX_TRAIN_SEED = 100_000_000
VALIDATION_SEED_BASE = 500_000_000
#: action modes each algorithm can act in (by Gymnasium space type)
ALGO_SPACES = {
    "ppo": ("Box", "Discrete", "MultiDiscrete", "MultiBinary"),
    "a2c": ("Box", "Discrete", "MultiDiscrete", "MultiBinary"),
    "sac": ("Box",),
    "td3": ("Box",),
    "dqn": ("Discrete",),
    "ppo-lag": ("Box", "Discrete", "MultiDiscrete", "MultiBinary"),
    "a2c-lag": ("Box", "Discrete", "MultiDiscrete", "MultiBinary"),
    "sac-lag": ("Box",),
    "td3-lag": ("Box",),
    "dqn-lag": ("Discrete",),
}


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``model.config.json``).

    Attributes:
        env_id: a registered edgeft env id.
        algo: ppo, a2c, sac, td3, dqn, or a Lagrangian variant ppo-lag, a2c-lag, sac-lag,
            td3-lag, dqn-lag (the model is a model of the base algorithm;
            ``edgeft.agents.lagrangian``).
        timesteps: total environment steps; training stops at the end of the rollout that
            reaches them (:func:`planned_timesteps`).
        seed: training seed (torch, SB3 and the training envs), 0 <= seed < 100,000,000.
        env_config: env config fields (overrides of the env's defaults), incl. ``action_mode``.
        obs_transform: observation transform (``edgeft.agents.transforms``).
        n_envs: parallel env copies (the numpy vector env where the env has one).
        normalize_obs, normalize_reward: VecNormalize switches.
        hyperparams: keyword arguments of the SB3 algorithm.
        eval_every: validate every this many steps (0 = only at the end).
        eval_episodes: validation episodes per validation (0 = none).
        eval_policy: reference policy evaluated on the same validation seeds ("" = none).
        checkpoint_every: checkpoint every this many steps.
        progress: show a progress bar.
        reward_shaping: training reward replacing the env's (numpy vector env only):
            ``{"type": "clipped-dpp", "zeta": 10, "clip": 4}`` (``vec.clipped_drift_plus_penalty``);
            ``{}`` = the env's reward. Validation uses the leaderboard's env and metrics
            (:class:`Evaluator`), whatever the training reward.
        init: ``""`` (random initialisation) or ``"bc:POLICY"``: behaviour-clone the reference
            policy POLICY (DAgger, ``edgeft.agents.bc``) before RL; ``timesteps`` may then be 0
            (the cloned policy is the model).
        bc: behaviour-cloning settings (``edgeft.agents.bc.BC_DEFAULTS``), used with ``init``.
        lagrangian: multiplier settings of the -lag algorithms
            (``edgeft.agents.lagrangian.LAGRANGIAN_DEFAULTS``: cost limit, bounded-cost cap,
            initial lambda, PID gains); only with those algorithms.
        policy: the SB3 policy: ``"MlpPolicy"`` (SB3's, shaped by ``hyperparams.policy_kwargs``)
            or a name of ``edgeft.agents.policies.POLICIES``, size-independent networks shared
            over users or devices: ``"mec-shared"`` (the MEC ``discrete`` mode on ``mec-users``
            features; PPO/A2C), ``"fedlora-shared"`` (the FedLoRA count, subset, score and
            bandwidth modes on ``fedlora-devices`` features; PPO/A2C, and SAC/TD3 in the score
            and bandwidth modes). Choosing one picks its features unless ``obs_transform`` is
            set too.
        scenarios: ``""`` (every episode in ``env_config``'s scenario) or the name of an
            instance distribution (``edgeft.envs.fedlora.scenarios.DISTRIBUTIONS``, e.g.
            ``"fedlora-general"``): every training episode plays a new scenario drawn from its
            training split on top of ``env_config`` (``ScenarioEnv``; validation stays on
            ``env_config``'s scenario). FedLoRA only.
    """

    env_id: str = "edgeft/FedLoRAScheduling-v0"
    algo: str = "ppo"
    timesteps: int = 100_000
    seed: int = 0
    env_config: dict[str, Any] = field(default_factory=dict)
    obs_transform: str = "none"
    n_envs: int = 8
    normalize_obs: bool = True
    normalize_reward: bool = True
    hyperparams: dict[str, Any] = field(default_factory=dict)
    eval_every: int = 50_000
    eval_episodes: int = 5
    eval_policy: str = ""
    checkpoint_every: int = 50_000
    progress: bool = True
    reward_shaping: dict[str, Any] = field(default_factory=dict)
    init: str = ""
    bc: dict[str, Any] = field(default_factory=dict)
    lagrangian: dict[str, Any] = field(default_factory=dict)
    policy: str = "MlpPolicy"
    scenarios: str = ""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field and the fix."""
        import gymnasium as gym

        known = sorted(k for k in gym.registry if k.startswith("edgeft/"))
        if self.env_id not in known:
            raise ValueError(f"unknown env {self.env_id!r}; known: {known}")
        if self.algo not in ALGO_SPACES:
            raise ValueError(f"unknown algo {self.algo!r}; known: {sorted(ALGO_SPACES)}")
        if int(self.timesteps) < (0 if self.init else 1):
            raise ValueError(f"timesteps must be >= {0 if self.init else 1}, got {self.timesteps}")
        self._validate_init()
        if self.lagrangian and self.algo not in LAGRANGIAN_ALGOS:
            raise ValueError(
                f"lagrangian settings need a Lagrangian algorithm "
                f"({sorted(LAGRANGIAN_ALGOS)}), not {self.algo}"
            )
        lagrangian_settings(self.lagrangian)
        self._validate_policy()
        self._validate_scenarios()
        if not 0 <= int(self.seed) < MAX_TRAIN_SEED:
            raise ValueError(
                f"seed must be in [0, {MAX_TRAIN_SEED}) (higher seeds are reserved "
                f"for validation and test episodes), got {self.seed}"
            )
        if int(self.n_envs) < 1:
            raise ValueError(f"n_envs must be >= 1, got {self.n_envs}")
        for name in ("eval_every", "eval_episodes", "checkpoint_every"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def _validate_init(self) -> None:
        """``init`` (``bc:POLICY``) and its ``bc`` settings, on an actor-critic algorithm."""
        if not self.init:
            return
        from edgeft.agents.bc import bc_settings, parse_init

        parse_init(self.init)
        bc_settings(self.bc)
        if base_algo(self.algo) not in ("ppo", "a2c"):
            raise ValueError(
                f"init {self.init!r} needs an actor-critic algorithm "
                f"(ppo, a2c or their -lag variants), not {self.algo}"
            )

    def _validate_scenarios(self) -> None:
        """A known instance distribution, of the FedLoRA env, that leaves the fields it draws to
        its draws."""
        if not self.scenarios:
            return
        from edgeft.envs.fedlora.scenarios import DRAWN_FIELDS, ENV_ID, get_distribution

        get_distribution(self.scenarios)
        if self.env_id != ENV_ID:
            raise ValueError(
                f"scenarios {self.scenarios!r} are {ENV_ID} scenarios, not {self.env_id}"
            )
        if self.init and int(self.bc.get("permute_users", 0)):
            raise ValueError(
                "bc permute_users adds user-permuted copies of MEC states; leave it out with "
                "scenarios"
            )
        drawn = set(DRAWN_FIELDS) & set(self.env_config)
        if drawn:
            raise ValueError(
                f"env_config sets {sorted(drawn)}, which the scenarios {self.scenarios!r} may "
                "draw; leave them out"
            )

    def _validate_policy(self) -> None:
        """A policy name with a class for the algorithm, on the features it reads."""
        if self.policy == "MlpPolicy":
            return
        from edgeft.agents.policies import POLICY_TRANSFORMS, policy_for

        policy_for(self.policy, self.algo)  # an unknown name, or none for this algorithm
        want = POLICY_TRANSFORMS.get(self.policy)
        if want is not None and self.obs_transform != want:
            raise ValueError(
                f"policy {self.policy!r} reads the {want!r} features, not "
                f"obs_transform {self.obs_transform!r}; set obs_transform to "
                f"{want!r} (or leave it out: --policy picks it)"
            )


def default_config(env_id: str, algo: str) -> dict[str, Any]:
    """The tuned defaults of ``hyperparams.json`` for (env, algo) (``{}`` when none)."""
    with open(HYPERPARAMS_FILE) as fh:
        table = json.load(fh)
    entry = table.get(env_id, {}).get(algo, {})
    return {k: v for k, v in entry.items() if not k.startswith("_")}


def build_config(
    env_id: str | None, algo: str | None, file: str | None = None, **overrides: Any
) -> TrainConfig:
    """Tuned defaults < ``file`` (JSON of TrainConfig fields) < ``overrides`` (None = unset).

    ``env_id`` and ``algo`` (None: the file's, else TrainConfig's defaults) pick the tuned
    defaults of ``hyperparams.json``.
    """
    file_values: dict[str, Any] = {}
    if file:
        with open(file) as fh:
            file_values = json.load(fh)
        if not isinstance(file_values, dict):
            raise ValueError(f"{file} must hold a JSON object of TrainConfig fields")
        # keys starting with "_" are comments, as in hyperparams.json
        file_values = {k: v for k, v in file_values.items() if not k.startswith("_")}
    chosen = {
        "env_id": env_id or file_values.get("env_id", TrainConfig.env_id),
        "algo": algo or file_values.get("algo", TrainConfig.algo),
    }
    values: dict[str, Any] = dict(chosen)
    values.update(default_config(chosen["env_id"], chosen["algo"]))
    for src in (file_values, {k: v for k, v in overrides.items() if v is not None}):
        for k, v in src.items():
            if k in ("env_config", "hyperparams", "bc", "lagrangian") and isinstance(v, dict):
                values[k] = {**values.get(k, {}), **v}
            else:
                values[k] = v
    values.update(chosen)  # --env / --algo win over the file's
    # a size-independent policy chosen by the file or a flag brings the features it reads,
    # unless those set obs_transform too
    chosen_policy = overrides.get("policy") or file_values.get("policy")
    if (
        chosen_policy
        and overrides.get("obs_transform") is None
        and "obs_transform" not in file_values
    ):
        from edgeft.agents.policies import POLICY_TRANSFORMS

        if chosen_policy in POLICY_TRANSFORMS:
            values["obs_transform"] = POLICY_TRANSFORMS[chosen_policy]
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid: {sorted(names)}")
    cfg = TrainConfig(**values)
    cfg.timesteps, cfg.seed = int(float(cfg.timesteps)), int(cfg.seed)
    cfg.validate()
    return cfg


def make_env(cfg: TrainConfig, **changes: Any) -> Any:
    """``gym.make(cfg.env_id, **cfg.env_config)``, with ``changes`` to the env config."""
    import gymnasium as gym

    return gym.make(cfg.env_id, **{**cfg.env_config, **changes})


def make_env_config(cfg: TrainConfig) -> Any:
    """The config in force of this run's env (``edgeft.envs.common.config_in_force``).

    Raises:
        ValueError: ``cfg.algo`` cannot act in the env's action space.
    """
    from edgeft.envs.common import config_in_force

    env = make_env(cfg)
    config = config_in_force(env)
    space = type(env.action_space).__name__
    env.close()
    if space not in ALGO_SPACES[cfg.algo]:
        modes = getattr(config, "ACTION_MODES", ())
        raise ValueError(
            f"{cfg.algo} cannot act in {cfg.env_id} action_mode={config.action_mode!r} ({space}); "
            f"it needs {'/'.join(ALGO_SPACES[cfg.algo])}. Choose another action_mode "
            f"(--set action_mode=..., modes: {list(modes)}) or algorithm"
        )
    return config


def steps_per_rollout(model: Any, episode_rounds: int) -> int:
    """Env steps ``model`` collects between two updates (all copies together).

    ``learn(total_timesteps=T)`` stops at the first whole rollout at or after T steps: on-policy
    algorithms collect ``n_steps`` per copy; off-policy ones ``train_freq`` steps per copy, or
    ``train_freq`` whole episodes of ``episode_rounds`` steps (edgeft episodes have a fixed
    length; SB3 counts episodes with one env copy only).
    """
    n_envs = int(model.n_envs)
    train_freq = getattr(model, "train_freq", None)
    if train_freq is None:  # on-policy
        return int(model.n_steps) * n_envs
    if str(getattr(train_freq.unit, "value", train_freq.unit)) == "episode":
        return int(train_freq.frequency) * int(episode_rounds) * n_envs
    return int(train_freq.frequency) * n_envs


def planned_timesteps(cfg: TrainConfig, model: Any, config: Any, start: int = 0) -> int:
    """The step count a run of ``cfg.timesteps`` steps ends at, from step ``start`` (0, or a
    checkpoint's step, which lies between two rollouts): whole rollouts until at least
    ``cfg.timesteps`` (no RL at all when ``start >= cfg.timesteps``)."""
    if cfg.timesteps <= start:
        return start
    per = steps_per_rollout(model, config.episode_rounds)
    return start + -(-(cfg.timesteps - start) // per) * per


def rollout_detail(model: Any) -> str:
    """How :func:`steps_per_rollout` came about, in words."""
    train_freq = getattr(model, "train_freq", None)
    if train_freq is None:
        return f"n_steps {int(model.n_steps):,} x {int(model.n_envs)} envs"
    unit = str(getattr(train_freq.unit, "value", train_freq.unit))
    return f"train_freq {int(train_freq.frequency)} {unit}(s) x {int(model.n_envs)} envs"


def policy_class(name: str, algo: str) -> Any:
    """What SB3's algorithm ``algo`` takes as its policy for ``TrainConfig.policy`` ``name``:
    SB3's own name as it is, else the class of ``edgeft.agents.policies.policy_for``."""
    if name == "MlpPolicy":
        return name
    from edgeft.agents.policies import policy_for

    return policy_for(name, algo)


def env_family(env_id: str) -> str:
    """The family's name (``config.family``) of the registered env ``env_id``, read from its
    config class (``edgeft.envs.family.make_config``), not from the id."""
    return make_config(env_id).family


def default_eval_policy(env_id: str) -> str:
    """The reference policy validation plays by default: the family record's
    (``EnvFamily.eval_policy``; ``""`` for none)."""
    return get_family(env_family(env_id)).eval_policy or ""
