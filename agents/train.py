"""Train a stable-baselines3 agent on an edgeft env.

Trains PPO, A2C, SAC, TD3 or DQN on any registered edgeft env and action mode the algorithm
supports, with a progress bar and periodic validation against a reference policy on validation
seeds; ``ppo-lag`` / ``a2c-lag`` train PPO / A2C on the Lagrangian of the constrained problem
(reward minus lambda times the constraint cost, lambda by dual ascent;
``edgeft.agents.lagrangian``).
Validation plays the leaderboard's episode loop in the leaderboard's env for the run's
scenario (the reward-only env fields at their defaults) and reports the leaderboard's metrics
under the leaderboard's names: the family's headline value (for a family without one, its first
leaderboard column) and columns such as "return" (under the env's default reward), so its numbers
compare with ``edgeft compare`` and the leaderboard. Writes, into --out:

    model.zip, model.norm.json, model.config.json   the final model, its VecNormalize observation
                                                    statistics and the full config (load it with
                                                    edgeft.make_policy("ppo:OUT/model.zip", env))
    best.zip, best.norm.json, best.config.json      the model best on the validation metric
    eval.jsonl                                      one line per validation
    curves.csv, curves.png                          training curves (envs with a constraint
                                                    cost): per batch of finished episodes the
                                                    devices per round, the mean cost against
                                                    its limit and lambda
    checkpoints/                                    the latest checkpoint (model, VecNormalize,
                                                    replay buffer of SAC/TD3/DQN, step count);
                                                    rerunning the same command resumes from it

Defaults per env and algorithm (action mode, reward, observation transform, hyperparameters) are
in edgeft/agents/hyperparams.json; --config FILE (JSON with TrainConfig fields) and the flags
override them. Seeds: training env seeds are SEED, SEED+1, ... (SEED < 100,000,000); validation
seeds start at 500,000,000; the leaderboard's test seeds at 1,000,000,000, so they never overlap.

Examples:

    edgeft train --env edgeft/FedLoRAScheduling-v0 --algo ppo --timesteps 300000 --seed 0
    edgeft train --env edgeft/MECOffloading-v0 --algo ppo --timesteps 50000 --out runs/mec-ppo
    edgeft train --env edgeft/FedLoRAScheduling-v0 --algo dqn --timesteps 1e5 --set num_devices=50
    edgeft train --env edgeft/FedLoRAScheduling-v0 --algo ppo --init bc:lyapunov --timesteps 0
    edgeft train --env edgeft/FedLoRAScheduling-v0 --algo ppo-lag --timesteps 3e6 --seed 0

With ``--init bc:POLICY`` the policy is first behaviour-cloned from the reference POLICY on the
run's own observations (DAgger, ``edgeft.agents.bc``; settings in the ``bc`` field, per-iteration
log in ``OUT/bc.jsonl``), then trained with RL for ``--timesteps`` steps (0 = ship the clone).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.agents.lagrangian import LAGRANGIAN_ALGOS, base_algo, lagrangian_settings

HYPERPARAMS_FILE = Path(__file__).resolve().parent / "hyperparams.json"
MAX_TRAIN_SEED = 100_000_000
VALIDATION_SEED_BASE = 500_000_000
#: action modes each algorithm can act in (by Gymnasium space type)
ALGO_SPACES = {"ppo": ("Box", "Discrete", "MultiDiscrete", "MultiBinary"),
               "a2c": ("Box", "Discrete", "MultiDiscrete", "MultiBinary"),
               "sac": ("Box",), "td3": ("Box",), "dqn": ("Discrete",),
               "ppo-lag": ("Box", "Discrete", "MultiDiscrete", "MultiBinary"),
               "a2c-lag": ("Box", "Discrete", "MultiDiscrete", "MultiBinary")}


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``model.config.json``).

    Attributes:
        env_id: a registered edgeft env id.
        algo: ppo, a2c, sac, td3, dqn, or the Lagrangian ppo-lag / a2c-lag (the model is a PPO /
            A2C model; ``edgeft.agents.lagrangian``).
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
        lagrangian: multiplier settings of ppo-lag / a2c-lag
            (``edgeft.agents.lagrangian.LAGRANGIAN_DEFAULTS``: cost limit, bounded-cost cap,
            initial lambda, PID gains); only with those algorithms.
        policy: the SB3 policy: ``"MlpPolicy"`` (SB3's, shaped by ``hyperparams.policy_kwargs``)
            or a name of ``edgeft.agents.policies.POLICIES`` (``"mec-shared"``: per-user
            parameter sharing for the MEC ``discrete`` mode on ``mec-users`` features; PPO/A2C).
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

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field and the fix."""
        import gymnasium as gym

        import edgeft  # noqa: F401  (registers the ids)

        known = sorted(k for k in gym.registry if k.startswith("edgeft/"))
        if self.env_id not in known:
            raise ValueError(f"unknown env {self.env_id!r}; known: {known}")
        if self.algo not in ALGO_SPACES:
            raise ValueError(f"unknown algo {self.algo!r}; known: {sorted(ALGO_SPACES)}")
        if int(self.timesteps) < (0 if self.init else 1):
            raise ValueError(f"timesteps must be >= {0 if self.init else 1}, got {self.timesteps}")
        if self.init:
            from edgeft.agents.bc import bc_settings, parse_init

            parse_init(self.init)
            bc_settings(self.bc)
            if base_algo(self.algo) not in ("ppo", "a2c"):
                raise ValueError(f"init {self.init!r} needs an actor-critic algorithm "
                                 f"(ppo, a2c or their -lag variants), not {self.algo}")
        if self.lagrangian and self.algo not in LAGRANGIAN_ALGOS:
            raise ValueError(f"lagrangian settings need a Lagrangian algorithm "
                             f"({sorted(LAGRANGIAN_ALGOS)}), not {self.algo}")
        lagrangian_settings(self.lagrangian)
        if self.policy != "MlpPolicy":
            from edgeft.agents.policies import POLICIES

            if self.policy not in POLICIES:
                raise ValueError(f"unknown policy {self.policy!r}; known: "
                                 f"{['MlpPolicy', *sorted(POLICIES)]}")
            if base_algo(self.algo) not in ("ppo", "a2c"):
                raise ValueError(f"policy {self.policy!r} is an actor-critic policy for ppo or "
                                 f"a2c (or their -lag variants), not {self.algo}; use "
                                 "--policy MlpPolicy")
        if not 0 <= int(self.seed) < MAX_TRAIN_SEED:
            raise ValueError(f"seed must be in [0, {MAX_TRAIN_SEED}) (higher seeds are reserved "
                             f"for validation and test episodes), got {self.seed}")
        if int(self.n_envs) < 1:
            raise ValueError(f"n_envs must be >= 1, got {self.n_envs}")
        for name in ("eval_every", "eval_episodes", "checkpoint_every"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def default_config(env_id: str, algo: str) -> dict[str, Any]:
    """The tuned defaults of ``hyperparams.json`` for (env, algo) (``{}`` when none)."""
    with open(HYPERPARAMS_FILE) as fh:
        table = json.load(fh)
    entry = table.get(env_id, {}).get(algo, {})
    return {k: v for k, v in entry.items() if not k.startswith("_")}


def build_config(env_id: str | None, algo: str | None, file: str | None = None,
                 **overrides: Any) -> TrainConfig:
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
    chosen = {"env_id": env_id or file_values.get("env_id", TrainConfig.env_id),
              "algo": algo or file_values.get("algo", TrainConfig.algo)}
    values: dict[str, Any] = dict(chosen)
    values.update(default_config(chosen["env_id"], chosen["algo"]))
    for src in (file_values, {k: v for k, v in overrides.items() if v is not None}):
        for k, v in src.items():
            if k in ("env_config", "hyperparams", "bc", "lagrangian") and isinstance(v, dict):
                values[k] = {**values.get(k, {}), **v}
            else:
                values[k] = v
    values.update(chosen)  # --env / --algo win over the file's
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid: {sorted(names)}")
    cfg = TrainConfig(**values)
    cfg.timesteps, cfg.seed = int(float(cfg.timesteps)), int(cfg.seed)
    cfg.validate()
    return cfg


# ---------------------------------------------------------------------------- envs
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
            f"(--set action_mode=..., modes: {list(modes)}) or algorithm")
    return config


def env_family(env_id: str) -> str:
    """The family (``config.family``) of the registered env ``env_id``, read from its config
    class (``edgeft.registration.make_config``), not from the id."""
    from edgeft.policy import family_of
    from edgeft.registration import make_config

    return family_of(make_config(env_id))


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


def policy_class(name: str) -> Any:
    """What SB3's algorithm takes as its policy for ``TrainConfig.policy`` ``name``: SB3's own
    name as it is, else the class of ``edgeft.agents.policies.POLICIES``."""
    if name == "MlpPolicy":
        return name
    from edgeft.agents.policies import POLICIES

    return POLICIES[name]


# ---------------------------------------------------------------------------- files
def save_model(model: Any, vecnorm: Any, meta: dict[str, Any], out: Path, name: str) -> Path:
    """Write ``name.zip``, ``name.norm.json`` and ``name.config.json`` into ``out`` atomically."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.tmp.zip"
    model.save(str(tmp))
    if vecnorm is not None and vecnorm.norm_obs:
        rms = vecnorm.obs_rms
        _write_json(out / f"{name}.norm.json", {
            "mean": rms.mean.tolist(), "var": rms.var.tolist(), "count": float(rms.count),
            "clip_obs": float(vecnorm.clip_obs), "epsilon": float(vecnorm.epsilon)})
    _write_json(out / f"{name}.config.json", meta)
    os.replace(tmp, out / f"{name}.zip")
    return out / f"{name}.zip"


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)


def _write_atomic(path: Path, write: Any) -> None:
    """``write(tmp)`` to a hidden temp name beside ``path``, then rename it to ``path``."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write(str(tmp))
    os.replace(tmp, path)


def write_checkpoint(ck: Path, t: int, model: Any, vecnorm: Any, extra: dict[str, Any]) -> None:
    """Write the checkpoint of step ``t`` into ``ck``; it replaces the previous one atomically.

    The model, the VecNormalize wrapper and, for off-policy algorithms, the replay buffer go to
    files named after ``t`` (each written to a temp name, then renamed); ``state.json``, written
    last and atomically, names them and is the commit point: a kill at any moment leaves either
    the previous checkpoint or this one whole, never a mix. Files of older checkpoints are
    removed afterwards.
    """
    ck.mkdir(parents=True, exist_ok=True)
    files = {"model": f"model-{t}.zip"}
    if vecnorm is not None:
        files["vecnormalize"] = f"vecnormalize-{t}.pkl"
    if getattr(model, "replay_buffer", None) is not None:
        files["replay_buffer"] = f"replay_buffer-{t}.pkl"
    _write_atomic(ck / files["model"], model.save)
    if vecnorm is not None:
        _write_atomic(ck / files["vecnormalize"], vecnorm.save)
    if "replay_buffer" in files:
        _write_atomic(ck / files["replay_buffer"], model.save_replay_buffer)
    _write_json(ck / "state.json", {"timesteps": t, **extra, "files": files})
    keep = {"state.json", *files.values()}
    for p in ck.iterdir():
        if p.name not in keep and p.is_file():
            p.unlink()


def checkpoint_files(ck: Path, state: dict[str, Any]) -> dict[str, Path]:
    """The files of the checkpoint that ``state`` (its ``state.json``) describes.

    Checkpoints written before ``state.json`` named its files hold ``model.zip`` and
    ``vecnormalize.pkl`` (no replay buffer).
    """
    names = state.get("files")
    if names is None:
        names = {"model": "model.zip"}
        if (ck / "vecnormalize.pkl").is_file():
            names["vecnormalize"] = "vecnormalize.pkl"
    files = {k: ck / v for k, v in names.items()}
    missing = sorted(str(p) for p in files.values() if not p.is_file())
    if missing:
        raise FileNotFoundError(f"checkpoint {ck} lacks {missing}; delete {ck} to train from "
                                "scratch")
    return files


def run_meta(cfg: TrainConfig, config: Any, **extra: Any) -> dict[str, Any]:
    """The ``*.config.json`` content: train config, resolved env config, versions."""
    import gymnasium
    import stable_baselines3
    import torch
    from edgeft.agents.loader import config_to_dict

    import edgeft

    return {
        "env_id": cfg.env_id, "algo": base_algo(cfg.algo), "obs_transform": cfg.obs_transform,
        "env_config": config_to_dict(config), "train_config": dataclasses.asdict(cfg),
        "versions": {"edgeft": edgeft.__version__,
                     "stable_baselines3": stable_baselines3.__version__,
                     "gymnasium": gymnasium.__version__, "torch": torch.__version__,
                     "python": sys.version.split()[0]},
        **extra,
    }


# ---------------------------------------------------------------------------- evaluation
#: reference policy of the validation runs, per env family, when neither ``--eval-policy`` nor
#: ``--config`` names one
DEFAULT_EVAL_POLICY = {"fedlora": "gs", "mec": "greedy"}
#: leaderboard metrics (``edgeft.episodes.METRICS``) the validation line shows after the
#: validation metric; eval.jsonl holds them all
EVAL_COLUMNS = {"fedlora": ("avg_scheduled", "avg_delay_ratio", "final_loss", "return"),
                "mec": ("energy", "delay", "return")}


@dataclass(frozen=True)
class ValidationMetric:
    """What validation ranks models by (``best.zip`` is the best on it).

    Attributes:
        name: ``"headline"`` (the leaderboard's headline value, ``edgeft.scoring``) or a metric
            of ``edgeft.episodes.METRICS``.
        title: its column title on the leaderboard.
        higher_is_better: its direction.
    """

    name: str
    title: str
    higher_is_better: bool


def validation_metric(family: str) -> ValidationMetric:
    """The leaderboard's headline of ``family`` (``edgeft.scoring.HEADLINES``), else the family's
    first leaderboard column (``edgeft.episodes.METRICS``; MEC: the weighted cost)."""
    from edgeft import scoring
    from edgeft.episodes import METRICS

    head = scoring.HEADLINES.get(family)
    if head is not None:
        return ValidationMetric("headline", head.title, head.higher_is_better)
    name, (title, lower_is_better) = next(iter(METRICS[family].items()))
    return ValidationMetric(name, title, not lower_is_better)


def leaderboard_scenario(cfg: TrainConfig, family: str) -> dict[str, Any]:
    """The run's env config as a leaderboard scenario: without the fields that shape only
    training (the reward-only fields, ``loader.REWARD_ONLY_FIELDS``, and ``action_mode``), which
    take the env's defaults there. The leaderboard plays a trained agent in this scenario with
    its own action mode, and every other policy in the scenario as it is."""
    from edgeft.agents.loader import REWARD_ONLY_FIELDS

    drop = set(REWARD_ONLY_FIELDS.get(family, ())) | {"action_mode"}
    return {k: v for k, v in cfg.env_config.items() if k not in drop}


def mean_metrics(episodes: list[dict[str, Any]], family: str) -> dict[str, float]:
    """The mean over episodes of each leaderboard metric, and of the headline value per episode
    (``"headline"``, for families with one), as the leaderboard summarises them.

    Args:
        episodes: ``edgeft.episodes.play_episode`` results.
        family: the env family.
    """
    from edgeft import scoring

    rows = [dict(e["metrics"]) for e in episodes]
    if family in scoring.HEADLINES:
        for r in rows:
            r["headline"] = scoring.headline_value(family, r)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


class Evaluator:
    """Validation episodes of the current model and of a reference policy (same seeds).

    Both play in the leaderboard's env for the run's scenario (:func:`leaderboard_scenario`;
    the model in its action mode) through the leaderboard's episode loop
    (``edgeft.episodes``), so every number is the quantity the leaderboard reports under the
    same name, on the validation seeds instead of the test seeds.
    """

    def __init__(self, cfg: TrainConfig, config: Any) -> None:
        import gymnasium as gym
        from edgeft.envs.common import config_in_force

        from edgeft.episodes import run_episode
        from edgeft.policy import family_of

        self.cfg = cfg
        self.family = family_of(config)
        self.metric = validation_metric(self.family)
        self.scenario = leaderboard_scenario(cfg, self.family)
        self.env = gym.make(cfg.env_id, **self.scenario, action_mode=config.action_mode)
        self.config = config_in_force(self.env)
        self.seeds = [VALIDATION_SEED_BASE + i for i in range(cfg.eval_episodes)]
        self.anchor, self.bound = score_anchors(cfg.env_id, self.scenario, self.family,
                                                self.seeds)
        self.reference: dict[str, float] | None = None
        if cfg.eval_policy:
            self.reference = self.summarise(
                [run_episode(cfg.env_id, self.scenario, cfg.eval_policy, s) for s in self.seeds])

    def summarise(self, episodes: list[dict[str, Any]]) -> dict[str, float]:
        """:func:`mean_metrics` of the validation episodes (in seed order), plus ``"score"``
        where the family has one (the leaderboard's: 0 = the anchor policy, 100 = the
        hindsight bound, per seed, averaged over the seeds where it is defined)."""
        res = mean_metrics(episodes, self.family)
        if self.anchor is not None and self.bound is not None:
            from edgeft import scoring

            values = [scoring.headline_value(self.family, e["metrics"]) for e in episodes]
            scores = scoring.score(values, self.anchor, self.bound)
            finite = scores[np.isfinite(scores)]
            res["score"] = float(finite.mean()) if finite.size else float("nan")
        return res

    def describe(self) -> str:
        """One line on what the validation reports."""
        m = self.metric
        first, last = self.seeds[0], self.seeds[-1]
        seeds = f"{first:,}" if first == last else f"{first:,}..{last:,}"
        score = ""
        if self.anchor is not None:
            from edgeft import scoring

            score = (f"; score as on the leaderboard: 0 = {scoring.HEADLINES[self.family].anchor}"
                     ", 100 = the hindsight bound, on these seeds")
        return (f"validation: {len(self.seeds)} episode(s), seeds {seeds}, in the leaderboard's "
                f"env for scenario {self.scenario or '{}'} (reward-only fields at their "
                f"defaults); best.zip = best {m.title} "
                f"({'higher' if m.higher_is_better else 'lower'} is better), as on the "
                f"leaderboard{score}")

    def better(self, value: float, best: float | None) -> bool:
        """Whether ``value`` of the validation metric beats ``best`` (None: nothing yet)."""
        if best is None or not np.isfinite(best):
            return True
        return value > best if self.metric.higher_is_better else value < best

    def line(self, t: int, res: dict[str, float]) -> str:
        """The validation line of step ``t``: each value with the reference's beside it."""
        from edgeft.episodes import METRICS

        ref, name = self.reference, self.cfg.eval_policy
        cols = [(self.metric.name, self.metric.title)] + [
            (k, METRICS[self.family][k][0]) for k in EVAL_COLUMNS.get(self.family, ())
            if k != self.metric.name]
        if "score" in res:
            cols.insert(1, ("score", "score"))
        parts = [f"{title} {res[k]:.5g}" + (f" ({name} {ref[k]:.5g})" if ref else "")
                 for k, title in cols]
        return f"[eval @ {t:,}] " + "; ".join(parts)

    def __call__(self, model: Any, vecnorm: Any, meta: dict[str, Any]) -> dict[str, float]:
        from edgeft.agents.loader import SB3Policy

        from edgeft.episodes import play_episode

        norm = None
        if vecnorm is not None and vecnorm.norm_obs:
            norm = {"mean": vecnorm.obs_rms.mean, "var": vecnorm.obs_rms.var,
                    "clip_obs": vecnorm.clip_obs, "epsilon": vecnorm.epsilon}
        policy = SB3Policy(model, meta, norm, self.config, Path("."))
        return self.summarise([play_episode(self.env, policy, s) for s in self.seeds])


def score_anchors(env_id: str, scenario: dict[str, Any], family: str, seeds: list[int]
                  ) -> tuple[list[float] | None, list[float] | None]:
    """Per seed, the headline value of the family's anchor policy (score 0) and the hindsight
    bound (score 100), as the leaderboard computes them (``edgeft.scoring``); both deterministic
    per seed, so a run computes them once. (None, None) for a family without a score."""
    from edgeft import scoring
    from edgeft.episodes import run_episode

    head = scoring.HEADLINES.get(family)
    if head is None or family not in scoring.HINDSIGHT:
        return None, None
    anchor = [scoring.headline_value(family, run_episode(env_id, scenario, head.anchor,
                                                         s)["metrics"]) for s in seeds]
    bound = [float(scoring.hindsight_row(family, env_id, scenario, s)["headline"])
             for s in seeds]
    return anchor, bound


def _make_callback(cfg: TrainConfig, out: Path, evaluator: Evaluator | None, meta: dict[str, Any],
                   vecnorm: Any, start: int, total: int, state: dict[str, Any],
                   lag: Any = None) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class Callback(BaseCallback):
        def _on_training_start(self) -> None:
            self.bar = tqdm(total=total, initial=start, unit="step",
                            desc=f"{cfg.algo} train", disable=not cfg.progress,
                            dynamic_ncols=True)
            self.last_eval = state.get("last_eval", start)
            self.last_ckpt = start
            self.curve_rows = len(lag.log) if lag is not None else 0

        def _on_rollout_start(self) -> None:
            # Between two rollouts the model, its optimiser state, the replay buffer and the step
            # count agree: the last rollout is stored and trained on, the next one not begun. A
            # checkpoint taken here resumes on the same rollout grid as an uninterrupted run.
            t = self.model.num_timesteps
            if cfg.checkpoint_every and t - self.last_ckpt >= cfg.checkpoint_every:
                self.last_ckpt = t
                self.checkpoint(t)

        def _on_step(self) -> bool:
            t = self.model.num_timesteps
            self.bar.update(t - self.bar.n)
            if lag is not None and len(lag.log) != self.curve_rows:
                self.curve_rows = len(lag.log)
                self.bar.set_postfix_str(lag.describe(), refresh=False)
            if cfg.eval_every and evaluator and t - self.last_eval >= cfg.eval_every:
                self.last_eval = t
                self.evaluate(t)
            return True

        def evaluate(self, t: int) -> None:
            assert evaluator is not None
            res = evaluator(self.model, vecnorm, meta)
            metric = evaluator.metric
            row = {"timesteps": t, "metric": metric.name, "agent": res,
                   "reference": evaluator.reference, "reference_policy": cfg.eval_policy,
                   "wall_s": time.time() - state["t0"]}
            if lag is not None:
                row["training"] = lag.state_dict()
            with open(out / "eval.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
            tqdm.write(evaluator.line(t, res) + (f" | training: {lag.describe()}" if lag else ""))
            best = state.get("best") if state.get("best_metric") == metric.name else None
            if evaluator.better(res[metric.name], best):
                state.update(best=res[metric.name], best_metric=metric.name)
                save_model(self.model, vecnorm, {**meta, "timesteps": t, "validation": res,
                                                 **_lag_meta(lag)}, out, "best")

        def checkpoint(self, t: int) -> None:
            write_checkpoint(out / "checkpoints", t, self.model, vecnorm,
                             {"last_eval": self.last_eval, "best": state.get("best"),
                              "best_metric": state.get("best_metric"), **_lag_meta(lag)})

        def _on_training_end(self) -> None:
            self.bar.close()

    return Callback()


def _lag_meta(lag: Any) -> dict[str, Any]:
    """``{"lagrangian": state}`` of the run's VecLagrangian (``{}`` without one)."""
    return {} if lag is None else {"lagrangian": lag.state_dict()}


def lagrangian_wrapper(cfg: TrainConfig, config: Any, venv: Any, log_path: Path | None) -> Any:
    """The run's ``VecLagrangian`` around ``venv``: with a multiplier for ppo-lag / a2c-lag,
    monitoring only (training curves) for other algorithms on envs with a constraint cost
    (``lagrangian.cost_limit``); None for the others."""
    from edgeft.agents.lagrangian import PIDMultiplier, cost_limit
    from edgeft.agents.vec import VecLagrangian

    from edgeft.policy import family_of

    family = family_of(config)
    if cfg.algo in LAGRANGIAN_ALGOS:
        s = lagrangian_settings(cfg.lagrangian)
        limit = cost_limit(config) if s["cost_limit"] is None else float(s["cost_limit"])
        episode = s["constraint"] == "episode"  # the multiplier's limit: eps, not d
        mult = PIDMultiplier.from_settings(s, float(s["excess_limit"]) if episode else limit)
        return VecLagrangian(venv, family, limit, mult, cost_cap=float(s["cost_cap"]),
                             update_episodes=s["update_episodes"], log_path=log_path,
                             constraint=s["constraint"])
    try:
        limit = cost_limit(config)
    except ValueError:
        return None
    return VecLagrangian(venv, family, limit, None, log_path=log_path)


def train(cfg: TrainConfig, out: str | os.PathLike) -> Path:
    """Train (or resume) the run ``cfg`` into ``out``; returns the final model's path.

    Raises:
        ValueError: ``out`` holds a different run or a finished one.
    """
    import torch
    from edgeft.agents.loader import algo_class
    from edgeft.agents.vec import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    out = Path(out)
    config = make_env_config(cfg)
    meta = run_meta(cfg, config)
    saved = out / "run.json"
    resume_from: dict[str, Any] | None = None
    if saved.is_file():
        with open(saved) as fh:
            prev = json.load(fh)
        current = dataclasses.asdict(cfg)
        # a field the saved run predates had its default (TrainConfig.policy: MlpPolicy)
        before = {"policy": TrainConfig.policy, **prev["train_config"]}
        if before != current or prev["env_config"] != meta["env_config"]:
            diff = sorted(k for k, v in current.items() if before.get(k) != v)
            raise ValueError(f"{out} holds a different training run (differs in "
                             f"{diff or ['env_config']}); choose another --out or delete it")
        if (out / "model.zip").is_file():
            raise ValueError(f"{out} holds a finished run ({out / 'model.zip'}); "
                             "choose another --out")
        if (out / "checkpoints" / "state.json").is_file():
            with open(out / "checkpoints" / "state.json") as fh:
                resume_from = json.load(fh)
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no training run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(saved, meta)

    torch.set_num_threads(1)  # small MLPs: one thread is fastest, and leaves a core for the envs
    venv = make_vec_env(cfg, config, cfg.seed)
    lag = lagrangian_wrapper(cfg, config, venv, out / "curves.csv")
    if lag is not None:
        venv = lag
    cls = algo_class(base_algo(cfg.algo))
    start = 0
    state: dict[str, Any] = {"t0": time.time()}
    if resume_from is not None:
        files = checkpoint_files(out / "checkpoints", resume_from)
        vecnorm = None
        if "vecnormalize" in files:
            vecnorm = VecNormalize.load(str(files["vecnormalize"]), venv)
            vecnorm.training = True
        model = cls.load(str(files["model"]), env=vecnorm or venv, device="cpu")
        if "replay_buffer" in files:
            model.load_replay_buffer(str(files["replay_buffer"]))
        start = int(resume_from["timesteps"])
        if lag is not None:
            from edgeft.agents.lagrangian import truncate_log

            lag.load_state_dict(resume_from.get("lagrangian") or {"timesteps": start})
            truncate_log(out / "curves.csv", start)
        state.update(last_eval=int(resume_from.get("last_eval", start)),
                     best=resume_from.get("best"), best_metric=resume_from.get("best_metric"))
        print(f"resuming {out} from its checkpoint at {start} steps", file=sys.stderr)
    else:
        vecnorm = None
        if cfg.normalize_obs or cfg.normalize_reward:
            gamma = float(cfg.hyperparams.get("gamma", 0.99))
            vecnorm = VecNormalize(venv, norm_obs=cfg.normalize_obs,
                                   norm_reward=cfg.normalize_reward, gamma=gamma)
        model = cls(policy_class(cfg.policy), vecnorm or venv, seed=cfg.seed, device="cpu",
                    verbose=0, **cfg.hyperparams)
    total = planned_timesteps(cfg, model, config, start)
    if total > cfg.timesteps:
        print(f"edgeft train: {cfg.algo} learns from whole rollouts of "
              f"{steps_per_rollout(model, config.episode_rounds):,} steps "
              f"({rollout_detail(model)}), so this run trains for {total:,} steps, not "
              f"{cfg.timesteps:,}", file=sys.stderr)
    if resume_from is None and cfg.init:
        from edgeft.agents.bc import behaviour_clone

        behaviour_clone(model, vecnorm, cfg, config, out, progress=cfg.progress)
    if "tensorboard_log" not in cfg.hyperparams:
        # SB3's default logger creates an empty tempdir/SB3-<date> folder in every learn();
        # this run's logs are OUT/eval.jsonl and the progress bar, so SB3 logs nowhere unless
        # asked to (hyperparams.tensorboard_log).
        from stable_baselines3.common.logger import Logger

        model.set_logger(Logger(folder=None, output_formats=[]))
    evaluator = Evaluator(cfg, config) if cfg.eval_episodes > 0 else None
    if evaluator is not None:
        print(evaluator.describe(), flush=True)
    callback = _make_callback(cfg, out, evaluator, meta, vecnorm, start, total, state, lag)
    remaining = cfg.timesteps - start
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=callback,
                    reset_num_timesteps=resume_from is None)
    else:
        callback.init_callback(model)
    if evaluator is not None:
        callback.evaluate(model.num_timesteps)
    path = save_model(model, vecnorm, {**meta, "timesteps": int(model.num_timesteps),
                                       **_lag_meta(lag)}, out, "model")
    if lag is not None and lag.log:
        from edgeft.agents.lagrangian import plot_curves

        plot_curves({cfg.algo: out}, out / "curves.png")
    venv.close()
    return path


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig  # the defaults below are TrainConfig's, unless hyperparams.json or --config
    tuned = "hyperparams.json's for the env and algorithm, else"
    parser.add_argument("--env", default=None, help=f"env id (default: {d.env_id})")
    parser.add_argument("--algo", default=None, choices=sorted(ALGO_SPACES),
                        help=f"SB3 algorithm (default: {d.algo})")
    parser.add_argument("--timesteps", type=float, default=None,
                        help=f"total env steps (default: {d.timesteps:,}); training stops at the "
                             "end of the rollout that reaches it, and says so when that is later")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"training seed (default: {d.seed})")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="JSON file of TrainConfig fields (env_config, hyperparams, ...)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: runs/ENVNAME-ALGO-sSEED, e.g. "
                             "runs/fedlorascheduling-ppo-s0)")
    parser.add_argument("--set", dest="env_overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="env config field, repeatable (e.g. --set action_mode=count)")
    parser.add_argument("--hp", dest="hp_overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="SB3 hyperparameter, repeatable (e.g. --hp learning_rate=1e-4)")
    parser.add_argument("--lag", dest="lag_overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="Lagrangian setting of ppo-lag / a2c-lag, repeatable (e.g. --lag "
                             "ki=0.02; keys: edgeft.agents.lagrangian.LAGRANGIAN_DEFAULTS)")
    parser.add_argument("--n-envs", type=int, default=None,
                        help=f"parallel env copies (default: {tuned} {d.n_envs})")
    parser.add_argument("--eval-every", type=int, default=None,
                        help=f"validate every N steps (default: {d.eval_every:,}; 0 = only at "
                             "the end)")
    parser.add_argument("--eval-episodes", type=int, default=None,
                        help=f"validation episodes per validation (default: {d.eval_episodes}; "
                             "0 = no validation)")
    policies = ", ".join(f"{p} ({f})" for f, p in DEFAULT_EVAL_POLICY.items())
    parser.add_argument("--eval-policy", default=None,
                        help=f"reference policy played on the validation seeds (default: "
                             f"{policies}; none with --config unless the file names one)")
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help=f"checkpoint every N steps (default: {d.checkpoint_every:,})")
    parser.add_argument("--init", default=None, metavar="bc:POLICY",
                        help="behaviour-clone a reference policy before RL (e.g. bc:lyapunov; "
                             "settings: the 'bc' field of the config); --timesteps 0 = BC only")
    parser.add_argument("--policy", default=None,
                        help=f"SB3 policy: MlpPolicy or mec-shared (default: {tuned} "
                             f"{d.policy})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from edgeft.overrides import parse_overrides

    try:
        cfg = build_config(
            args.env, args.algo, args.config, timesteps=args.timesteps, seed=args.seed,
            n_envs=args.n_envs, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
            eval_policy=args.eval_policy, checkpoint_every=args.checkpoint_every,
            progress=False if args.no_progress else None, init=args.init, policy=args.policy,
            env_config=parse_overrides(args.env_overrides) or None,
            hyperparams=parse_overrides(args.hp_overrides) or None,
            lagrangian=parse_overrides(args.lag_overrides) or None)
        if args.eval_policy is None and not args.config:
            cfg.eval_policy = DEFAULT_EVAL_POLICY[env_family(cfg.env_id)]
        env_name = cfg.env_id.split("/")[-1].split("-")[0].lower()  # a folder name, not a family
        out = args.out or f"runs/{env_name}-{cfg.algo}-s{cfg.seed}"
        path = train(cfg, out)
    except (ValueError, FileNotFoundError) as err:
        print(f"edgeft train: error: {err}", file=sys.stderr)
        return 2
    print(f"saved {path} (+ .norm.json, .config.json); load it with "
          f"edgeft.make_policy('{base_algo(cfg.algo)}:{path}', env)")
    return 0

