"""Validation during training: the current model and a reference policy played on the
validation seeds through the leaderboard's own episode loop, scored as the leaderboard scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeft import scoring
from edgeft.envs.common import config_in_force
from edgeft.envs.family import get_family
from edgeft.episodes import play_episode, run_episode
from edgeft.train.config import VALIDATION_SEED_BASE, TrainConfig


@dataclass(frozen=True)
class ValidationMetric:
    """What validation ranks models by (``best.agent.json`` is the best on it).

    Attributes:
        name: ``"headline"`` (the leaderboard's headline value, ``edgeft.scoring``) or a metric
            of the family's record (``EnvFamily.metrics``).
        title: its column title on the leaderboard.
        higher_is_better: its direction.
    """

    name: str
    title: str
    higher_is_better: bool


def validation_metric(family: str) -> ValidationMetric:
    """The leaderboard's headline of ``family`` (``EnvFamily.headline``), else the family's
    first leaderboard column (``EnvFamily.metrics``)."""
    record = get_family(family)
    head = record.headline
    if head is not None:
        return ValidationMetric("headline", head.title, head.higher_is_better)
    name, metric = next(iter(record.metrics.items()))
    return ValidationMetric(name, metric.title, not metric.lower_is_better)


def leaderboard_scenario(cfg: TrainConfig, family: str) -> dict[str, Any]:
    """The run's env config as a leaderboard scenario: without the fields that shape only
    training (the family's reward-only fields, ``EnvFamily.reward_only_fields``, and
    ``action_mode``), which take the env's defaults there, and with the fields every suite of
    the family's headline sets (``Headline.scenario``: the FedLoRA final loss's budget guard).
    The leaderboard plays a trained agent in this scenario with its own action mode, and every
    other policy in the scenario as it is."""
    record = get_family(family)
    drop = set(record.reward_only_fields) | {"action_mode"}
    scenario = {k: v for k, v in cfg.env_config.items() if k not in drop}
    if record.headline is not None:
        scenario.update(record.headline.scenario)
    return scenario


def mean_metrics(episodes: list[dict[str, Any]], family: str) -> dict[str, float]:
    """The mean over episodes of each leaderboard metric, and of the headline value per episode
    (``"headline"``, for families with one), as the leaderboard summarises them.

    Args:
        episodes: ``edgeft.episodes.play_episode`` results.
        family: the env family.
    """
    rows = [dict(e["metrics"]) for e in episodes]
    if get_family(family).headline is not None:
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

        self.cfg = cfg
        self.family = config.family
        self.metric = validation_metric(self.family)
        self.scenario = leaderboard_scenario(cfg, self.family)
        self.env = gym.make(cfg.env_id, **self.scenario, action_mode=config.action_mode)
        self.config = config_in_force(self.env)
        self.seeds = [VALIDATION_SEED_BASE + i for i in range(cfg.eval_episodes)]
        self.anchor, self.bound = score_anchors(cfg.env_id, self.scenario, self.family, self.seeds)
        self.reference: dict[str, float] | None = None
        if cfg.eval_policy:
            self.reference = self.summarise(
                [run_episode(cfg.env_id, self.scenario, cfg.eval_policy, s) for s in self.seeds]
            )

    def summarise(self, episodes: list[dict[str, Any]]) -> dict[str, float]:
        """:func:`mean_metrics` of the validation episodes (in seed order), plus ``"score"``
        where the family has one (the leaderboard's: 0 = the anchor policy, 100 = the
        hindsight bound, per seed, averaged over the seeds where it is defined)."""
        res = mean_metrics(episodes, self.family)
        if self.anchor is not None and self.bound is not None:
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
            anchor = scoring.headline_of(self.family).anchor
            score = (
                f"; score as on the leaderboard: 0 = {anchor}"
                ", 100 = the hindsight bound, on these seeds"
            )
        return (
            f"validation: {len(self.seeds)} episode(s), seeds {seeds}, in the leaderboard's "
            f"env for scenario {self.scenario or '{}'} (reward-only fields at their "
            f"defaults); best.agent.json = best {m.title} "
            f"({'higher' if m.higher_is_better else 'lower'} is better), as on the "
            f"leaderboard{score}"
        )

    def better(self, value: float, best: float | None) -> bool:
        """Whether ``value`` of the validation metric beats ``best`` (None: nothing yet)."""
        if best is None or not np.isfinite(best):
            return True
        return value > best if self.metric.higher_is_better else value < best

    def line(self, t: int, res: dict[str, float]) -> str:
        """The validation line of step ``t``: each value with the reference's beside it."""
        record = get_family(self.family)
        ref, name = self.reference, self.cfg.eval_policy
        cols = [(self.metric.name, self.metric.title)] + [
            (k, record.metrics[k].title) for k in record.eval_columns if k != self.metric.name
        ]
        if "score" in res:
            cols.insert(1, ("score", "score"))
        parts = [
            f"{title} {res[k]:.5g}" + (f" ({name} {ref[k]:.5g})" if ref else "")
            for k, title in cols
        ]
        return f"[eval @ {t:,}] " + "; ".join(parts)

    def __call__(self, model: Any, vecnorm: Any, meta: dict[str, Any]) -> dict[str, float]:
        from edgeft.agents.loader import SB3Policy

        norm = None
        if vecnorm is not None and vecnorm.norm_obs:
            norm = {
                "mean": vecnorm.obs_rms.mean,
                "var": vecnorm.obs_rms.var,
                "clip_obs": vecnorm.clip_obs,
                "epsilon": vecnorm.epsilon,
            }
        policy = SB3Policy(model, meta, norm, self.config, Path("."))
        return self.summarise([play_episode(self.env, policy, s) for s in self.seeds])


def score_anchors(
    env_id: str, scenario: dict[str, Any], family: str, seeds: list[int]
) -> tuple[list[float] | None, list[float] | None]:
    """Per seed, the headline value of the family's anchor policy (score 0) and the hindsight
    bound (score 100), as the leaderboard computes them (``edgeft.scoring``); both deterministic
    per seed, so a run computes them once. (None, None) for a family without a score."""
    if not scoring.is_scored(family):
        return None, None
    head = scoring.headline_of(family)
    anchor = [
        scoring.headline_value(family, run_episode(env_id, scenario, head.anchor, s)["metrics"])
        for s in seeds
    ]
    bound = [float(scoring.hindsight_row(family, env_id, scenario, s)["headline"]) for s in seeds]
    return anchor, bound
