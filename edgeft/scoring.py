"""One headline number per suite: the score, and paired differences between policies.

Each env family's record names its headline and its constraint (``EnvFamily.headline``,
``edgeft.envs.<family>.family``). Per test
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
from typing import Any

import numpy as np
from scipy import stats

from edgeft.envs import family as family_records
from edgeft.envs.family import EnvFamily, Headline, HindsightPlan, get_family, resolve
from edgeft.envs.mec import family as mec_family

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240607
#: fewer values than this get Student's t interval instead of the studentized bootstrap
MIN_BOOTSTRAP_N = 10
#: relative excess of the time-average constraint above which a policy is marked as breaking it
BUDGET_TOLERANCE = family_records.BUDGET_TOLERANCE
#: MEC: cost per round charged per unit of mean relative energy overshoot (see the module doc)
MEC_OVERSHOOT_PRICE = mec_family.OVERSHOOT_PRICE


def headline_of(family: str | EnvFamily, name: str | None = None) -> Headline:
    """The headline ``name`` of a family (by name or record; None or "": its default).

    Raises:
        ValueError: the family has no such headline (or none: its suites are not scored).
    """
    fam = get_family(family) if isinstance(family, str) else family
    return fam.get_headline(name)


def headline_value(
    family: str | EnvFamily, metrics: Mapping[str, Any], name: str | None = None
) -> float:
    """The headline value of one episode's metrics."""
    return float(headline_of(family, name).value(metrics))


def breaks_constraint(
    family: str | EnvFamily, metrics: Mapping[str, Any], name: str | None = None
) -> bool:
    """Whether one episode breaks its headline's constraint (beyond the stated tolerance)."""
    return bool(headline_of(family, name).breaks_constraint(metrics))


def is_scored(family: str | EnvFamily, name: str | None = None) -> bool:
    """Whether suites ranking by the headline ``name`` get a score: it exists and has a
    hindsight bound."""
    fam = get_family(family) if isinstance(family, str) else family
    key = name or fam.default_headline
    return key is not None and key in fam.headlines and fam.headlines[key].hindsight is not None


def hindsight_row(
    family: str | EnvFamily,
    env_id: str,
    config: Mapping[str, Any],
    seed: int,
    name: str | None = None,
) -> dict[str, Any]:
    """The ``hindsight`` row of one leaderboard episode: the family's certified bound on the
    headline (``fn(env_id, config, seed) -> HindsightPlan``, named by the record) and the metrics
    of the feasible schedule found in hindsight, replayed through the leaderboard's own episode
    loop.

    Returns:
        ``play_episode``'s dict plus ``"headline"`` (the bound) and ``"gap"`` (its distance to
        the replayed schedule's headline value, >= 0), and the plan's extra fields.
    """
    import gymnasium as gym

    from edgeft.episodes import play_episode

    fam = get_family(family) if isinstance(family, str) else family
    head = headline_of(fam, name)
    if head.hindsight is None:
        raise ValueError(f"no hindsight bound for the {fam.name} headline {head.name!r}")
    plan: HindsightPlan = resolve(head.hindsight)(env_id, dict(config), int(seed))
    replay = gym.make(env_id, **{**config, "action_mode": plan.action_mode})
    try:
        out = play_episode(replay, plan.policy, seed)
    finally:
        replay.close()
    out["headline"] = plan.bound
    if plan.gap is not None:
        out["gap"] = plan.gap
    else:
        value = float(head.value(out["metrics"]))
        out["gap"] = (plan.bound - value) if head.higher_is_better else (value - plan.bound)
    out.update(plan.extra)
    return out


def score(
    value: float | Sequence[float] | np.ndarray,
    anchor: float | Sequence[float] | np.ndarray,
    bound: float | Sequence[float] | np.ndarray,
) -> np.ndarray:
    """100 x (value - anchor) / (bound - anchor): 0 at the anchor policy, 100 at the bound.

    Works for either direction of the headline (the bound lies on the better side of the
    anchor). NaN where the bound equals the anchor (nothing to gain on that episode).
    """
    v, a, b = (np.asarray(x, dtype=np.float64) for x in (value, anchor, bound))
    span = b - a
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(span != 0.0, 100.0 * (v - a) / span, np.nan)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Studentized bootstrap (bootstrap-t) 95% interval of the mean (deterministic: fixed seed).

    Each resample's mean is standardised by its own standard error, and the interval is
    ``mean - t*_(97.5%) se, mean - t*_(2.5%) se``. Unlike the percentile bootstrap it corrects
    for skewness, and at the suites' 30 test seeds it covers the true mean at its nominal rate
    (checked by simulation in tests/leaderboard/test_intervals.py: normal data, lognormal data
    more skewed than any suite's per-seed values, and resampled values of a real suite). Below
    :data:`MIN_BOOTSTRAP_N` values it is Student's t interval (the bootstrap's t distribution
    needs more values to be estimated). With one value, or all values equal, the interval is
    that value.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return (float("nan"), float("nan"))
    mean = float(v.mean())
    if v.size == 1 or np.all(v == v[0]):
        return (mean, mean)
    n = v.size
    se = float(v.std(ddof=1)) / np.sqrt(n)
    if n < MIN_BOOTSTRAP_N:  # too few values to estimate t's distribution: Student's t
        half = float(stats.t.ppf(0.975, n - 1)) * se
        return (mean - half, mean + half)
    rng = np.random.default_rng(seed)
    sample = v[rng.integers(0, n, size=(resamples, n))]
    means = sample.mean(axis=1)
    ses = sample.std(axis=1, ddof=1) / np.sqrt(n)
    # resamples of (nearly) one repeated value say nothing about the spread: left out
    ok = ses > 1e-3 * se
    t = (means[ok] - mean) / ses[ok]
    hi_q, lo_q = np.percentile(t, [97.5, 2.5])
    return float(mean - hi_q * se), float(mean - lo_q * se)


def paired_difference(
    values: Mapping[int, float], reference: Mapping[int, float]
) -> dict[str, float]:
    """Mean and 95% interval (:func:`bootstrap_ci`) of ``values[s] - reference[s]`` over the
    common seeds.

    Raises:
        ValueError: the two share no seed.
    """
    seeds = sorted(set(values) & set(reference))
    if not seeds:
        raise ValueError("paired_difference needs results on common seeds")
    diff = np.array([values[s] - reference[s] for s in seeds], dtype=np.float64)
    lo, hi = bootstrap_ci(diff)
    return {"mean": float(diff.mean()), "ci_low": lo, "ci_high": hi, "episodes": len(seeds)}
