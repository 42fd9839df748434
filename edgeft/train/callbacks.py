"""The training loop's callback (progress bar, validation, best model, checkpoints between
rollouts) and the run's Lagrangian wrapper."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edgeft.agents.lagrangian import LAGRANGIAN_ALGOS, OFF_POLICY_LAGRANGIAN, lagrangian_settings
from edgeft.train.config import TrainConfig
from edgeft.train.evaluator import Evaluator
from edgeft.train.files import save_model, write_checkpoint


def make_callback(
    cfg: TrainConfig,
    out: Path,
    evaluator: Evaluator | None,
    meta: dict[str, Any],
    vecnorm: Any,
    start: int,
    total: int,
    state: dict[str, Any],
    lag: Any = None,
) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class Callback(BaseCallback):
        def _on_training_start(self) -> None:
            self.bar = tqdm(
                total=total,
                initial=start,
                unit="step",
                desc=f"{cfg.algo} train",
                disable=not cfg.progress,
                dynamic_ncols=True,
            )
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
            _validate(self.model, t, cfg, out, evaluator, meta, vecnorm, state, lag)

        def checkpoint(self, t: int) -> None:
            extra = {"last_eval": self.last_eval}
            _checkpoint(self.model, t, extra, out, vecnorm, meta, state, lag)

        def _on_training_end(self) -> None:
            self.bar.close()

    return Callback()


def _validate(
    model: Any,
    t: int,
    cfg: TrainConfig,
    out: Path,
    evaluator: Evaluator,
    meta: dict[str, Any],
    vecnorm: Any,
    state: dict[str, Any],
    lag: Any,
) -> None:
    """One validation at step ``t``: a row of ``eval.jsonl``, a line, the best model kept."""
    from tqdm import tqdm

    res = evaluator(model, vecnorm, meta)
    metric = evaluator.metric
    row = {
        "timesteps": t,
        "metric": metric.name,
        "agent": res,
        "reference": evaluator.reference,
        "reference_policy": cfg.eval_policy,
        "wall_s": time.time() - state["t0"],
    }
    if lag is not None:
        row["training"] = lag.state_dict()
    with open(out / "eval.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    tqdm.write(evaluator.line(t, res) + (f" | training: {lag.describe()}" if lag else ""))
    best = state.get("best") if state.get("best_metric") == metric.name else None
    if evaluator.better(res[metric.name], best):
        state.update(best=res[metric.name], best_metric=metric.name)
        save_model(
            model,
            vecnorm,
            {**meta, "timesteps": t, "validation": res, **lag_meta(lag)},
            out,
            "best",
        )


def _checkpoint(
    model: Any,
    t: int,
    extra: dict[str, Any],
    out: Path,
    vecnorm: Any,
    meta: dict[str, Any],
    state: dict[str, Any],
    lag: Any,
) -> None:
    """The checkpoint at step ``t`` (``extra``: the callback's own counters)."""
    write_checkpoint(
        out / "checkpoints",
        t,
        model,
        vecnorm,
        {
            **extra,
            "best": state.get("best"),
            "best_metric": state.get("best_metric"),
            **lag_meta(lag),
        },
        {**meta, **lag_meta(lag)},
    )


def lag_meta(lag: Any) -> dict[str, Any]:
    """``{"lagrangian": state}`` of the run's VecLagrangian (``{}`` without one)."""
    return {} if lag is None else {"lagrangian": lag.state_dict()}


def lagrangian_wrapper(cfg: TrainConfig, config: Any, venv: Any, log_path: Path | None) -> Any:
    """The run's ``VecLagrangian`` around ``venv``: with a multiplier for the Lagrangian
    algorithms (pricing at sampling time for the off-policy ones),
    monitoring only (training curves) for other algorithms on envs with a constraint cost
    (``lagrangian.cost_limit``); None for the others."""
    from edgeft.agents.lagrangian import PIDMultiplier, cost_limit
    from edgeft.agents.vec import VecLagrangian

    family = config.family
    if cfg.algo in LAGRANGIAN_ALGOS:
        s = lagrangian_settings(cfg.lagrangian)
        limit = cost_limit(config) if s["cost_limit"] is None else float(s["cost_limit"])
        episode = s["constraint"] == "episode"  # the multiplier's limit: eps, not d
        mult = PIDMultiplier.from_settings(s, float(s["excess_limit"]) if episode else limit)
        return VecLagrangian(
            venv,
            family,
            limit,
            mult,
            cost_cap=float(s["cost_cap"]),
            update_episodes=s["update_episodes"],
            log_path=log_path,
            constraint=s["constraint"],
            relabel=cfg.algo in OFF_POLICY_LAGRANGIAN,
        )
    try:
        limit = cost_limit(config)
    except ValueError:
        return None
    return VecLagrangian(venv, family, limit, None, log_path=log_path)
