"""The training loop of ``edgeft train``: prepare (or resume) the run folder, build the
vectorised env, the model and the Lagrangian wrapper, learn, validate and save."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeft.agents.lagrangian import OFF_POLICY_LAGRANGIAN, base_algo
from edgeft.train.callbacks import lag_meta, lagrangian_wrapper, make_callback
from edgeft.train.config import (
    TrainConfig,
    make_env_config,
    planned_timesteps,
    policy_class,
    rollout_detail,
    steps_per_rollout,
)
from edgeft.train.evaluator import Evaluator
from edgeft.train.files import (
    checkpoint_dir,
    checkpoint_files,
    load_optimizers,
    load_replay_buffer,
    load_vecnormalize_state,
    read_checkpoint_state,
    restore_counters,
    run_meta,
    save_model,
    write_json,
)


@dataclass
class Run:
    """What the loop builds for one run (see :func:`train`)."""

    cfg: TrainConfig
    out: Path
    config: Any
    meta: dict[str, Any]
    venv: Any = None
    lag: Any = None
    vecnorm: Any = None
    model: Any = None
    start: int = 0
    state: dict[str, Any] = field(default_factory=lambda: {"t0": time.time()})


def prepare_out(cfg: TrainConfig, out: Path, meta: dict[str, Any]) -> dict[str, Any] | None:
    """Check ``out`` and write its ``run.json``; returns the checkpoint state to resume from
    (None: a fresh run).

    Raises:
        ValueError: ``out`` holds another run, a finished one, or files of no run.
    """
    saved = out / "run.json"
    resume_from: dict[str, Any] | None = None
    if saved.is_file():
        with open(saved) as fh:
            prev = json.load(fh)
        current = dataclasses.asdict(cfg)
        # a field the saved run predates had its default (TrainConfig.policy: MlpPolicy,
        # TrainConfig.scenarios: none)
        defaults = {"policy": TrainConfig.policy, "scenarios": TrainConfig.scenarios}
        before = {**defaults, **prev["train_config"]}
        if before != current or prev["env_config"] != meta["env_config"]:
            diff = sorted(k for k, v in current.items() if before.get(k) != v)
            raise ValueError(
                f"{out} holds a different training run (differs in "
                f"{diff or ['env_config']}); choose another --out or delete it"
            )
        for final in ("model.agent.json", "model.zip"):
            if (out / final).is_file():
                raise ValueError(
                    f"{out} holds a finished run ({out / final}); choose another --out"
                )
        resume_from = read_checkpoint_state(out)
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no training run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(saved, meta)
    return resume_from


def _undo_fresh_out(out: Path, existed: bool) -> None:
    """Remove what :func:`prepare_out` wrote for a fresh run that failed before training: its
    ``run.json``, and the folder if this run created it and nothing else is in it."""
    (out / "run.json").unlink(missing_ok=True)
    (out / "curves.csv").unlink(missing_ok=True)
    if not existed and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def resume_model(run: Run, resume_from: dict[str, Any], cls: Any) -> None:
    """Load the model, optimisers, VecNormalize, replay buffer and Lagrangian state of the
    run's checkpoint (files inside ``OUT/checkpoints`` only, no pickle: ``edgeft.train.files``).

    The model is built as a fresh run builds it (same config), then its weights, optimiser
    states, learning counters, VecNormalize statistics and replay buffer are set from the files.
    """
    from edgeft.agents.agent_format import load_weights, read_agent

    files = checkpoint_files(checkpoint_dir(run.out), resume_from)
    if resume_from.get("format_version") is None:
        _resume_pickled(run, files, cls)  # an earlier version's checkpoint, opted in
    else:
        new_model(run, cls)
        if "vecnormalize" in files:
            if run.vecnorm is None:
                raise ValueError(
                    f"{files['vecnormalize']}: the checkpoint has VecNormalize "
                    "statistics but the run normalises nothing"
                )
            load_vecnormalize_state(run.vecnorm, files["vecnormalize"])
            run.vecnorm.training = True
        doc = read_agent(files["model"])
        if "weights" in files and doc["weights"]["file"] != files["weights"].name:
            raise ValueError(
                f"{files['model']} names the weights {doc['weights']['file']}, "
                f"state.json {files['weights'].name}"
            )
        policy_class = type(run.model.policy).__name__
        load_optimizers(run.model, files["optimizer"], load_weights(files["model"], doc))
        restore_counters(run.model, resume_from.get("algorithm") or {})
        run.model.num_timesteps = int(resume_from["timesteps"])
        if "replay_buffer" in files:
            if getattr(run.model, "replay_buffer", None) is None:
                raise ValueError(
                    f"{files['replay_buffer']}: a replay buffer, but the run's "
                    f"{policy_class} model has none"
                )
            load_replay_buffer(run.model.replay_buffer, files["replay_buffer"])
    run.start = int(resume_from["timesteps"])
    if run.lag is not None:
        from edgeft.agents.lagrangian import truncate_log

        run.lag.load_state_dict(resume_from.get("lagrangian") or {"timesteps": run.start})
        truncate_log(run.out / "curves.csv", run.start)
    run.state.update(
        last_eval=int(resume_from.get("last_eval", run.start)),
        best=resume_from.get("best"),
        best_metric=resume_from.get("best_metric"),
    )
    print(f"resuming {run.out} from its checkpoint at {run.start} steps", file=sys.stderr)


def _resume_pickled(run: Run, files: dict[str, Path], cls: Any) -> None:
    """A checkpoint of an earlier edgeft (pickled model, VecNormalize and replay buffer): read
    only after ``checkpoint_files`` saw ``EDGEFT_TRUST_AGENT_CODE=1``."""
    from stable_baselines3.common.vec_env import VecNormalize

    if "vecnormalize" in files:
        run.vecnorm = VecNormalize.load(str(files["vecnormalize"]), run.venv)
        run.vecnorm.training = True
    run.model = cls.load(str(files["model"]), env=run.vecnorm or run.venv, device="cpu")
    if "replay_buffer" in files:
        run.model.load_replay_buffer(str(files["replay_buffer"]))


def new_model(run: Run, cls: Any) -> None:
    """A fresh model (behind VecNormalize when the run normalises), seeded with the run's seed."""
    from stable_baselines3.common.vec_env import VecNormalize

    cfg = run.cfg
    if cfg.normalize_obs or cfg.normalize_reward:
        gamma = float(cfg.hyperparams.get("gamma", 0.99))
        run.vecnorm = VecNormalize(
            run.venv, norm_obs=cfg.normalize_obs, norm_reward=cfg.normalize_reward, gamma=gamma
        )
    extra: dict[str, Any] = {}
    if cfg.algo in OFF_POLICY_LAGRANGIAN:  # rewards priced at sampling, with the current lambda
        from edgeft.agents.vec import LagrangianReplayBuffer

        if "replay_buffer_class" in cfg.hyperparams:
            raise ValueError(
                f"{cfg.algo} brings its own replay buffer (the Lagrangian's); drop "
                "hyperparams.replay_buffer_class"
            )
        extra["replay_buffer_class"] = LagrangianReplayBuffer
    hyperparams = dict(cfg.hyperparams)
    if "action_noise" in hyperparams:
        hyperparams["action_noise"] = action_noise(hyperparams["action_noise"], run.venv)
    try:
        run.model = cls(
            policy_class(cfg.policy, cfg.algo),
            run.vecnorm or run.venv,
            seed=cfg.seed,
            device="cpu",
            verbose=0,
            **extra,
            **hyperparams,
        )
    except (AssertionError, TypeError, ValueError) as err:  # SB3's own checks of its arguments
        given = ", ".join(f"{k}={v!r}" for k, v in sorted(cfg.hyperparams.items()))
        raise ValueError(
            f"stable-baselines3's {cls.__name__} refused the hyperparameters ({given}): "
            f"{str(err).strip() or type(err).__name__}; fix them (--hp KEY=VALUE, or "
            "hyperparams in --config)"
        ) from err
    if extra:
        run.model.replay_buffer.attach(run.lag)


#: ``hyperparams.action_noise`` types (JSON: ``{"type": "normal", "sigma": 0.1}``) -> SB3's class
ACTION_NOISES = ("normal", "ornstein-uhlenbeck")


def action_noise(spec: Any, venv: Any) -> Any:
    """SB3's exploration noise of TD3 / SAC / DDPG from its JSON description (``None`` passes):
    ``{"type": "normal" | "ornstein-uhlenbeck", "sigma": s}``, ``s`` the standard deviation in
    units of the action's half-range, the same for every action dimension.

    Raises:
        ValueError: an unknown type, a sigma that is not > 0, or an action space without a shape.
    """
    if spec is None:
        return None
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    if (
        not isinstance(spec, dict)
        or spec.get("type") not in ACTION_NOISES
        or set(spec) - {"type", "sigma"}
    ):
        raise ValueError(
            f"hyperparams.action_noise must be {{'type': one of "
            f"{list(ACTION_NOISES)}, 'sigma': float}}, got {spec!r}"
        )
    sigma = float(spec.get("sigma", 0.1))
    if not sigma > 0:
        raise ValueError(f"hyperparams.action_noise.sigma must be > 0, got {sigma}")
    shape = venv.action_space.shape
    if not shape:
        raise ValueError(
            f"hyperparams.action_noise needs a Box action space, not {venv.action_space}"
        )
    half = (venv.action_space.high - venv.action_space.low) / 2.0
    cls = NormalActionNoise if spec["type"] == "normal" else OrnsteinUhlenbeckActionNoise
    return cls(mean=np.zeros(shape), sigma=sigma * half * np.ones(shape))


def csv_logger(run: Run, resumed: bool) -> None:
    """SB3's training log as ``OUT/progress.csv`` (SB3's own CSV format: losses, entropy, the
    rollout's mean return, ... per update), unless ``hyperparams.tensorboard_log`` asks for
    SB3's default logging. A resumed run keeps the rows up to its checkpoint's step and appends
    to them (rows written after the checkpoint by the interrupted run are dropped: the resumed
    run writes them again)."""
    if "tensorboard_log" in run.cfg.hyperparams:
        return
    from stable_baselines3.common.logger import Logger

    path = run.out / "progress.csv"
    run.model.set_logger(
        Logger(
            folder=str(run.out),
            output_formats=[
                _resumed_csv(path, run.start) if resumed and path.is_file() else _fresh_csv(path)
            ],
        )
    )


def _fresh_csv(path: Path) -> Any:
    from stable_baselines3.common.logger import CSVOutputFormat

    return CSVOutputFormat(str(path))


def _resumed_csv(path: Path, start: int) -> Any:
    """SB3's CSV output continuing an existing ``progress.csv`` from its rows up to step
    ``start`` (its ``time/total_timesteps`` column)."""
    import csv

    from stable_baselines3.common.logger import CSVOutputFormat

    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = (rows[0], rows[1:]) if rows else ([], [])
    col = header.index("time/total_timesteps") if "time/total_timesteps" in header else None
    keep = [r for r in body if col is None or (r[col] and float(r[col]) <= start)]
    with open(path, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([header, *keep] if header else [])
    out = CSVOutputFormat.__new__(CSVOutputFormat)  # SB3's writer, on the kept rows
    out.file = open(path, "r+")  # noqa: SIM115  (SB3 keeps it open and closes it itself)
    out.file.seek(0, 2)
    out.keys, out.separator, out.quotechar = list(header), ",", '"'
    return out


def learn(run: Run, resumed: bool) -> None:
    """RL for the rest of the run's steps, validating and checkpointing through the callback;
    then the final validation."""
    cfg, model = run.cfg, run.model
    total = planned_timesteps(cfg, model, run.config, run.start)
    if total > cfg.timesteps:
        print(
            f"edgeft train: {cfg.algo} learns from whole rollouts of "
            f"{steps_per_rollout(model, run.config.episode_rounds):,} steps "
            f"({rollout_detail(model)}), so this run trains for {total:,} steps, not "
            f"{cfg.timesteps:,}",
            file=sys.stderr,
        )
    evaluator = Evaluator(cfg, run.config) if cfg.eval_episodes > 0 else None
    if evaluator is not None:
        print(evaluator.describe(), flush=True)
    callback = make_callback(
        cfg, run.out, evaluator, run.meta, run.vecnorm, run.start, total, run.state, run.lag
    )
    remaining = cfg.timesteps - run.start
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=callback, reset_num_timesteps=not resumed)
    else:
        callback.init_callback(model)
    if evaluator is not None:
        callback.evaluate(model.num_timesteps)


def train(cfg: TrainConfig, out: str | os.PathLike) -> Path:
    """Train (or resume) the run ``cfg`` into ``out``; returns the final model's path.

    Raises:
        ValueError: ``out`` holds a different run or a finished one.
    """
    import torch

    from edgeft.agents.loader import algo_class
    from edgeft.agents.vec import make_vec_env

    config = make_env_config(cfg)
    run = Run(cfg, Path(out), config, run_meta(cfg, config))
    existed, fresh = run.out.exists(), not (run.out / "run.json").is_file()
    resume_from = prepare_out(cfg, run.out, run.meta)
    torch.set_num_threads(1)  # small MLPs: one thread is fastest, and leaves a core for the envs
    cls = algo_class(base_algo(cfg.algo))
    try:
        run.venv = make_vec_env(cfg, config, cfg.seed)
        run.lag = lagrangian_wrapper(cfg, config, run.venv, run.out / "curves.csv")
        if run.lag is not None:
            run.venv = run.lag
        if resume_from is not None:
            resume_model(run, resume_from, cls)
        else:
            new_model(run, cls)
    except BaseException:
        if fresh:  # a rejected option leaves nothing behind
            _undo_fresh_out(run.out, existed)
        raise
    if resume_from is None:
        if cfg.init:
            from edgeft.agents.bc import behaviour_clone

            behaviour_clone(run.model, run.vecnorm, cfg, config, run.out, progress=cfg.progress)
    csv_logger(run, resume_from is not None)
    learn(run, resume_from is not None)
    path = save_model(
        run.model,
        run.vecnorm,
        {**run.meta, "timesteps": int(run.model.num_timesteps), **lag_meta(run.lag)},
        run.out,
        "model",
    )
    if run.lag is not None and run.lag.log:
        from edgeft.agents.lagrangian import plot_curves

        plot_curves({cfg.algo: run.out}, run.out / "curves.png")
    run.venv.close()
    return path
