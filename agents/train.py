"""Train a stable-baselines3 agent on an edgeft env.

Trains PPO, A2C, SAC, TD3 or DQN on any registered edgeft env and action mode the algorithm
supports, with a progress bar and periodic evaluation against a reference policy on validation
seeds. Writes, into --out:

    model.zip, model.norm.json, model.config.json   the final model, its VecNormalize observation
                                                    statistics and the full config (load it with
                                                    edgeft.make_policy("ppo:OUT/model.zip", env))
    best.zip, best.norm.json, best.config.json      the model with the best validation return
    eval.jsonl                                      one line per evaluation
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

With ``--init bc:POLICY`` the policy is first behaviour-cloned from the reference POLICY on the
run's own observations (DAgger, ``edgeft.agents.bc``; settings in the ``bc`` field, per-iteration
log in ``OUT/bc.jsonl``), then trained with RL for ``--timesteps`` steps (0 = ship the clone).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HYPERPARAMS_FILE = Path(__file__).resolve().parent / "hyperparams.json"
MAX_TRAIN_SEED = 100_000_000
VALIDATION_SEED_BASE = 500_000_000
#: action modes each algorithm can act in (by Gymnasium space type)
ALGO_SPACES = {"ppo": ("Box", "Discrete", "MultiDiscrete", "MultiBinary"),
               "a2c": ("Box", "Discrete", "MultiDiscrete", "MultiBinary"),
               "sac": ("Box",), "td3": ("Box",), "dqn": ("Discrete",)}


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``model.config.json``).

    Attributes:
        env_id: a registered edgeft env id.
        algo: ppo, a2c, sac, td3 or dqn.
        timesteps: total environment steps.
        seed: training seed (torch, SB3 and the training envs), 0 <= seed < 100,000,000.
        env_config: env config fields (overrides of the env's defaults), incl. ``action_mode``.
        obs_transform: observation transform (``edgeft.agents.transforms``).
        n_envs: parallel env copies (the numpy vector env where the env has one).
        normalize_obs, normalize_reward: VecNormalize switches.
        hyperparams: keyword arguments of the SB3 algorithm.
        eval_every: evaluate every this many steps (0 = only at the end).
        eval_episodes: validation episodes per evaluation.
        eval_policy: reference policy evaluated on the same validation seeds ("" = none).
        checkpoint_every: checkpoint every this many steps.
        progress: show a progress bar.
        reward_shaping: training reward replacing the env's (numpy vector env only):
            ``{"type": "clipped-dpp", "zeta": 10, "clip": 4}`` (``vec.clipped_drift_plus_penalty``);
            ``{}`` = the env's reward. Validation returns use the env's reward.
        init: ``""`` (random initialisation) or ``"bc:POLICY"``: behaviour-clone the reference
            policy POLICY (DAgger, ``edgeft.agents.bc``) before RL; ``timesteps`` may then be 0
            (the cloned policy is the model).
        bc: behaviour-cloning settings (``edgeft.agents.bc.BC_DEFAULTS``), used with ``init``.
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
            if self.algo not in ("ppo", "a2c"):
                raise ValueError(f"init {self.init!r} needs an actor-critic algorithm "
                                 f"(ppo or a2c), not {self.algo}")
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


def build_config(env_id: str, algo: str, file: str | None = None, **overrides: Any) -> TrainConfig:
    """Tuned defaults < ``file`` (JSON of TrainConfig fields) < ``overrides`` (None = unset)."""
    values: dict[str, Any] = {"env_id": env_id, "algo": algo}
    file_values: dict[str, Any] = {}
    if file:
        with open(file) as fh:
            file_values = json.load(fh)
        if not isinstance(file_values, dict):
            raise ValueError(f"{file} must hold a JSON object of TrainConfig fields")
        values["env_id"] = file_values.get("env_id", env_id) if env_id is None else env_id
        values["algo"] = file_values.get("algo", algo) if algo is None else algo
    values.update(default_config(values["env_id"], values["algo"]))
    for src in (file_values, {k: v for k, v in overrides.items() if v is not None}):
        for k, v in src.items():
            if k in ("env_config", "hyperparams", "bc") and isinstance(v, dict):
                values[k] = {**values.get(k, {}), **v}
            else:
                values[k] = v
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid: {sorted(names)}")
    cfg = TrainConfig(**values)
    cfg.timesteps, cfg.seed = int(float(cfg.timesteps)), int(cfg.seed)
    cfg.validate()
    return cfg


# ---------------------------------------------------------------------------- envs
def make_env_config(cfg: TrainConfig) -> Any:
    """The env config object of this run."""
    import gymnasium as gym

    env = gym.make(cfg.env_id, **cfg.env_config)
    config = env.unwrapped.config
    env.close()
    space = type(gym.make(cfg.env_id, **cfg.env_config).action_space).__name__
    if space not in ALGO_SPACES[cfg.algo]:
        modes = getattr(config, "ACTION_MODES", ())
        raise ValueError(
            f"{cfg.algo} cannot act in {cfg.env_id} action_mode={config.action_mode!r} ({space}); "
            f"it needs {'/'.join(ALGO_SPACES[cfg.algo])}. Choose another action_mode "
            f"(--set action_mode=..., modes: {list(modes)}) or algorithm")
    return config


def make_vec_env(cfg: TrainConfig, config: Any, seed: int) -> Any:
    """The SB3 VecEnv (with the observation transform) of this run."""
    import gymnasium as gym
    from edgeft.agents.transforms import get_transform
    from edgeft.agents.vec import NumpyVecEnv, VecObsTransform
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.vec_env import VecMonitor

    spec = gym.registry[cfg.env_id]
    if spec.vector_entry_point is not None and getattr(config, "mode", "surrogate") == "surrogate":
        reward_fn = None
        if cfg.reward_shaping:
            from edgeft.agents.vec import clipped_drift_plus_penalty

            rs = dict(cfg.reward_shaping)
            if rs.pop("type", None) != "clipped-dpp":
                raise ValueError("reward_shaping type must be 'clipped-dpp', "
                                 f"got {cfg.reward_shaping}")
            reward_fn = clipped_drift_plus_penalty(config, **rs)
        venv = NumpyVecEnv(gym.make_vec(cfg.env_id, num_envs=cfg.n_envs,
                                        vectorization_mode="vector_entry_point", config=config),
                           reward_fn=reward_fn)
        venv.seed(seed)
        venv = VecMonitor(venv)
    else:
        if cfg.reward_shaping:
            raise ValueError("reward_shaping needs an env with a numpy vector entry point "
                             "(FedLoRA, surrogate mode)")
        venv = sb3_make_vec_env(lambda: gym.make(cfg.env_id, config=config), n_envs=cfg.n_envs,
                                seed=seed)
    if cfg.obs_transform != "none":
        venv = VecObsTransform(venv, get_transform(cfg.obs_transform, config))
    return venv


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
        "env_id": cfg.env_id, "algo": cfg.algo, "obs_transform": cfg.obs_transform,
        "env_config": config_to_dict(config), "train_config": dataclasses.asdict(cfg),
        "versions": {"edgeft": edgeft.__version__,
                     "stable_baselines3": stable_baselines3.__version__,
                     "gymnasium": gymnasium.__version__, "torch": torch.__version__,
                     "python": sys.version.split()[0]},
        **extra,
    }


# ---------------------------------------------------------------------------- evaluation
class Evaluator:
    """Validation episodes of the current model and of a reference policy (same seeds)."""

    def __init__(self, cfg: TrainConfig, config: Any) -> None:
        import gymnasium as gym

        self.cfg, self.config = cfg, config
        self.env = gym.make(cfg.env_id, config=config)
        self.seeds = [VALIDATION_SEED_BASE + i for i in range(cfg.eval_episodes)]
        self.reference: dict[str, float] | None = None
        if cfg.eval_policy:
            import edgeft

            ref_env = gym.make(cfg.env_id, config=config)
            ref_cfg = dataclasses.replace(config, action_mode=ref_env.unwrapped.config.action_mode)
            policy = edgeft.make_policy(cfg.eval_policy, ref_env)
            self.reference = self._run(policy, ref_env)
            del ref_cfg

    def _run(self, policy: Any, env: Any) -> dict[str, float]:
        from edgeft.episodes import play_episode

        rows = [play_episode(env, policy, s)["metrics"] for s in self.seeds]
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    def __call__(self, model: Any, vecnorm: Any, meta: dict[str, Any]) -> dict[str, float]:
        from edgeft.agents.loader import SB3Policy

        norm = None
        if vecnorm is not None and vecnorm.norm_obs:
            norm = {"mean": vecnorm.obs_rms.mean, "var": vecnorm.obs_rms.var,
                    "clip_obs": vecnorm.clip_obs, "epsilon": vecnorm.epsilon}
        policy = SB3Policy(model, meta, norm, self.config, Path("."))
        return self._run(policy, self.env)


def _make_callback(cfg: TrainConfig, out: Path, evaluator: Evaluator | None, meta: dict[str, Any],
                   vecnorm: Any, start: int, state: dict[str, Any]) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    family = meta["env_config"].get("family") or evaluator and evaluator.config.family
    key = "final_loss" if family == "fedlora" else "cost"

    class Callback(BaseCallback):
        def _on_training_start(self) -> None:
            self.bar = tqdm(total=cfg.timesteps, initial=start, unit="step",
                            desc=f"{cfg.algo} train", disable=not cfg.progress,
                            dynamic_ncols=True)
            self.last_eval = state.get("last_eval", start)
            self.last_ckpt = start

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
            if cfg.eval_every and evaluator and t - self.last_eval >= cfg.eval_every:
                self.last_eval = t
                self.evaluate(t)
            return True

        def evaluate(self, t: int) -> None:
            res = evaluator(self.model, vecnorm, meta)
            row = {"timesteps": t, "agent": res, "reference": evaluator.reference,
                   "reference_policy": cfg.eval_policy, "wall_s": time.time() - state["t0"]}
            with open(out / "eval.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
            ref = evaluator.reference
            msg = (f"[eval @ {t}] return {res['return']:.4g}, {key} {res[key]:.5g}"
                   + (f" | {cfg.eval_policy}: return {ref['return']:.4g}, {key} {ref[key]:.5g}"
                      if ref else ""))
            if "avg_delay_ratio" in res:
                msg += (f" | agent avg D/Dbar {res['avg_delay_ratio']:.4f}, "
                        f"devices {res['avg_scheduled']:.2f}")
            tqdm.write(msg)
            if res["return"] > state.get("best_return", -np.inf):
                state["best_return"] = res["return"]
                save_model(self.model, vecnorm, {**meta, "timesteps": t, "validation": res}, out,
                           "best")

        def checkpoint(self, t: int) -> None:
            write_checkpoint(out / "checkpoints", t, self.model, vecnorm,
                             {"last_eval": self.last_eval,
                              "best_return": state.get("best_return", -1e300)})

        def _on_training_end(self) -> None:
            self.bar.close()

    return Callback()


def train(cfg: TrainConfig, out: str | os.PathLike) -> Path:
    """Train (or resume) the run ``cfg`` into ``out``; returns the final model's path.

    Raises:
        ValueError: ``out`` holds a different run or a finished one.
    """
    import torch
    from edgeft.agents.loader import algo_class
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
        if prev["train_config"] != current or prev["env_config"] != meta["env_config"]:
            diff = sorted(k for k, v in current.items() if prev["train_config"].get(k) != v)
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
    cls = algo_class(cfg.algo)
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
        state.update(last_eval=int(resume_from.get("last_eval", start)),
                     best_return=float(resume_from.get("best_return", -np.inf)))
        print(f"resuming {out} from its checkpoint at {start} steps", file=sys.stderr)
    else:
        vecnorm = None
        if cfg.normalize_obs or cfg.normalize_reward:
            gamma = float(cfg.hyperparams.get("gamma", 0.99))
            vecnorm = VecNormalize(venv, norm_obs=cfg.normalize_obs,
                                   norm_reward=cfg.normalize_reward, gamma=gamma)
        model = cls("MlpPolicy", vecnorm or venv, seed=cfg.seed, device="cpu", verbose=0,
                    **cfg.hyperparams)
        if cfg.init:
            from edgeft.agents.bc import behaviour_clone

            behaviour_clone(model, vecnorm, cfg, config, out, progress=cfg.progress)
    if "tensorboard_log" not in cfg.hyperparams:
        # SB3's default logger creates an empty tempdir/SB3-<date> folder in every learn();
        # this run's logs are OUT/eval.jsonl and the progress bar, so SB3 logs nowhere unless
        # asked to (hyperparams.tensorboard_log).
        from stable_baselines3.common.logger import Logger

        model.set_logger(Logger(folder=None, output_formats=[]))
    evaluator = Evaluator(cfg, config) if cfg.eval_episodes > 0 else None
    callback = _make_callback(cfg, out, evaluator, meta, vecnorm, start, state)
    remaining = cfg.timesteps - start
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=callback,
                    reset_num_timesteps=resume_from is None)
    else:
        callback.init_callback(model)
    if evaluator is not None:
        callback.evaluate(model.num_timesteps)
    path = save_model(model, vecnorm, {**meta, "timesteps": int(model.num_timesteps)}, out, "model")
    venv.close()
    return path


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default=None, help="env id (default: edgeft/FedLoRAScheduling-v0)")
    parser.add_argument("--algo", default=None, choices=sorted(ALGO_SPACES),
                        help="SB3 algorithm (default ppo)")
    parser.add_argument("--timesteps", type=float, default=None, help="total env steps")
    parser.add_argument("--seed", type=int, default=None, help="training seed (default 0)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="JSON file of TrainConfig fields (env_config, hyperparams, ...)")
    parser.add_argument("--out", default=None,
                        help="output folder (default runs/<env>-<algo>-s<seed>)")
    parser.add_argument("--set", dest="env_overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="env config field, repeatable (e.g. --set action_mode=count)")
    parser.add_argument("--hp", dest="hp_overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="SB3 hyperparameter, repeatable (e.g. --hp learning_rate=1e-4)")
    parser.add_argument("--n-envs", type=int, default=None, help="parallel env copies")
    parser.add_argument("--eval-every", type=int, default=None, help="evaluate every N steps")
    parser.add_argument("--eval-episodes", type=int, default=None,
                        help="validation episodes per evaluation")
    parser.add_argument("--eval-policy", default=None,
                        help="reference policy for the evaluations (default: gs / greedy)")
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="checkpoint every N steps")
    parser.add_argument("--init", default=None, metavar="bc:POLICY",
                        help="behaviour-clone a reference policy before RL (e.g. bc:lyapunov; "
                             "settings: the 'bc' field of the config); --timesteps 0 = BC only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from edgeft.overrides import parse_overrides

    env_id = args.env or (None if args.config else "edgeft/FedLoRAScheduling-v0")
    algo = args.algo or (None if args.config else "ppo")
    try:
        if env_id is None or algo is None:
            with open(args.config) as fh:
                f = json.load(fh)
            env_id = env_id or f.get("env_id", "edgeft/FedLoRAScheduling-v0")
            algo = algo or f.get("algo", "ppo")
        eval_policy = args.eval_policy
        if eval_policy is None and not args.config:
            eval_policy = "greedy" if "MEC" in env_id else "gs"
        cfg = build_config(
            env_id, algo, args.config, timesteps=args.timesteps, seed=args.seed, n_envs=args.n_envs,
            eval_every=args.eval_every, eval_episodes=args.eval_episodes, eval_policy=eval_policy,
            checkpoint_every=args.checkpoint_every, progress=False if args.no_progress else None,
            init=args.init,
            env_config=parse_overrides(args.env_overrides) or None,
            hyperparams=parse_overrides(args.hp_overrides) or None)
        family = cfg.env_id.split("/")[-1].split("-")[0].lower()
        out = args.out or f"runs/{family}-{cfg.algo}-s{cfg.seed}"
        path = train(cfg, out)
    except (ValueError, FileNotFoundError) as err:
        print(f"edgeft train: error: {err}", file=sys.stderr)
        return 2
    print(f"saved {path} (+ .norm.json, .config.json); load it with "
          f"edgeft.make_policy('{cfg.algo}:{path}', env)")
    return 0


del shutil
