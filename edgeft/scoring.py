"""One headline number per suite: the score, and paired differences between policies.

Each env family names its headline metric and its constraint (:data:`HEADLINES`). Per test
episode, a policy's headline value is put on a scale on which 0 is the ``random`` policy on the
same seed and 100 is the episode's hindsight bound (the best any policy could do knowing the
whole episode in advance, ``edgeft.baselines.<family>.hindsight``); the score is the mean over the
suite's test seeds. Because every policy sees the same seeds, policies are also compared seed by
seed: :func:`paired_difference` gives the mean and bootstrap interval of the per-seed differences
from the suite's reference policy, which shows small gaps that are consistent across seeds and
would hide inside the unpaired intervals.

FedLoRA (``fedlora``): the headline is the paper's objective, devices scheduled per round, under
the time-average delay budget (FT problem 17 / P1). A policy whose average delay exceeds the
budget by a factor x > 1 is credited ``devices / x``: within the episode's total delay budget
T x D-bar it would complete only T / x of its rounds. The hindsight bound is the Lagrangian dual
of the offline problem, which equals its linear relaxation, so ``devices / x <= bound`` holds for
every policy (the relaxation's value is concave in the budget and 0 at budget 0, hence its value
per unit budget falls as the budget grows): no policy scores above 100, whatever it violates.
Policies over the budget by more than :data:`BUDGET_TOLERANCE` are marked in the summary.

MEC (``mec``): the headline is the weighted cost per round (lower is better) under each user's
time-average device-energy budget. A policy over budget pays the overshoot at
:data:`MEC_OVERSHOOT_PRICE` P per budget and user: headline = cost + P x ``energy_violation``
(the mean over users of max(0, time-average device energy / budget - 1)). The hindsight bound
(``edgeft.baselines.mec.hindsight``) is a Lagrangian dual with multipliers boxed in [0, P] and
capacity prices on the servers, a certified lower bound on this headline for every policy,
whatever it violates, so no policy scores above 100. Policies whose ``energy_violation``
exceeds :data:`BUDGET_TOLERANCE` are marked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240607
#: relative excess of the time-average constraint above which a policy is marked as breaking it
BUDGET_TOLERANCE = 0.01
#: MEC: cost per round charged per unit of mean relative energy overshoot (see the module doc)
MEC_OVERSHOOT_PRICE = 100.0


@dataclass(frozen=True)
class Headline:
    """What a family's suites rank policies by.

    Attributes:
        family: env family (``config.family``).
        title: column title of the headline value.
        higher_is_better: direction of the headline value.
        constraint: the constraint, in words (shown under the summary table).
        anchor: policy scored 0 (played on the same seeds).
        reference: policy that paired differences are taken from.
    """

    family: str
    title: str
    higher_is_better: bool
    constraint: str
    anchor: str
    reference: str


HEADLINES: dict[str, Headline] = {
    "fedlora": Headline(
        "fedlora", "devices/round within budget", True,
        "time-average delay <= D-bar; over it by a factor x, devices are divided by x",
        anchor="random", reference="lyapunov"),
    "mec": Headline(
        "mec", "cost/round + priced overshoot", False,
        "time-average device energy <= each user's budget; the mean relative overshoot is "
        f"charged {MEC_OVERSHOOT_PRICE:g} per round",
        anchor="random", reference="greedy-dpp"),
}


#: per family: "module:function" that computes the ``hindsight`` row of one leaderboard episode,
#: ``fn(env_id, config, seed) -> dict`` with ``play_episode``'s keys (the metrics of a feasible
#: schedule found in hindsight) plus ``"headline"`` (the certified bound, in the units of
#: :func:`headline_value`) and ``"gap"`` (bound minus the feasible schedule's headline value).
HINDSIGHT: dict[str, str] = {
    "fedlora": "edgeft.baselines.fedlora.hindsight:leaderboard_row",
    "mec": "edgeft.baselines.mec.hindsight:leaderboard_row",
}


def hindsight_row(family: str, env_id: str, config: Mapping[str, Any], seed: int
                  ) -> dict[str, Any]:
    """The family's hindsight row of one episode (see :data:`HINDSIGHT`)."""
    import importlib

    if family not in HINDSIGHT:
        raise ValueError(f"no hindsight bound for family {family!r}; known: {sorted(HINDSIGHT)}")
    module, _, name = HINDSIGHT[family].partition(":")
    fn = getattr(importlib.import_module(module), name)
    return dict(fn(env_id, dict(config), int(seed)))


def fedlora_headline(metrics: Mapping[str, Any]) -> float:
    """Devices per round credited within the delay budget: avg devices / max(1, avg D/D-bar)."""
    return float(metrics["avg_scheduled"]) / max(1.0, float(metrics["avg_delay_ratio"]))


def fedlora_breaks_constraint(metrics: Mapping[str, Any]) -> bool:
    """Whether the time-average delay exceeds the budget by more than the tolerance."""
    return float(metrics["avg_delay_ratio"]) > 1.0 + BUDGET_TOLERANCE


def mec_headline(metrics: Mapping[str, Any]) -> float:
    """Cost per round plus the priced overshoot: cost + P x energy_violation."""
    return float(metrics["cost"]) + MEC_OVERSHOOT_PRICE * float(metrics["energy_violation"])


def mec_breaks_constraint(metrics: Mapping[str, Any]) -> bool:
    """Whether the mean relative energy overshoot exceeds the tolerance."""
    return float(metrics["energy_violation"]) > BUDGET_TOLERANCE


def headline_value(family: str, metrics: Mapping[str, Any]) -> float:
    """The headline value of one episode's metrics."""
    if family == "fedlora":
        return fedlora_headline(metrics)
    if family == "mec":
        return mec_headline(metrics)
    raise ValueError(f"no headline defined for family {family!r}; known: {sorted(HEADLINES)}")


def breaks_constraint(family: str, metrics: Mapping[str, Any]) -> bool:
    """Whether one episode breaks its family's constraint (beyond the stated tolerance)."""
    if family == "fedlora":
        return fedlora_breaks_constraint(metrics)
    if family == "mec":
        return mec_breaks_constraint(metrics)
    raise ValueError(f"no headline defined for family {family!r}; known: {sorted(HEADLINES)}")


def score(value: float | Sequence[float] | np.ndarray,
          anchor: float | Sequence[float] | np.ndarray,
          bound: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """100 x (value - anchor) / (bound - anchor): 0 at the anchor policy, 100 at the bound.

    Works for either direction of the headline (the bound lies on the better side of the
    anchor). NaN where the bound equals the anchor (nothing to gain on that episode).
    """
    v, a, b = (np.asarray(x, dtype=np.float64) for x in (value, anchor, bound))
    span = b - a
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(span != 0.0, 100.0 * (v - a) / span, np.nan)


def bootstrap_ci(values: Sequence[float] | np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean (deterministic: fixed seed)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return (float("nan"), float("nan"))
    if v.size == 1 or np.all(v == v[0]):
        return (float(v.mean()), float(v.mean()))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def paired_difference(values: Mapping[int, float], reference: Mapping[int, float]
                      ) -> dict[str, float]:
    """Mean and bootstrap 95% interval of ``values[s] - reference[s]`` over the common seeds.

    Raises:
        ValueError: the two share no seed.
    """
    seeds = sorted(set(values) & set(reference))
    if not seeds:
        raise ValueError("paired_difference needs results on common seeds")
    diff = np.array([values[s] - reference[s] for s in seeds], dtype=np.float64)
    lo, hi = bootstrap_ci(diff)
    return {"mean": float(diff.mean()), "ci_low": lo, "ci_high": hi, "episodes": len(seeds)}
