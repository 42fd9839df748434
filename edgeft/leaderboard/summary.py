"""The summary of a leaderboard run: per (scenario, policy) the mean and bootstrap interval of
every metric, and for scored families the headline, the score and the paired differences."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from edgeft import scoring
from edgeft.envs.family import Headline, get_family
from edgeft.episodes import TIMING
from edgeft.leaderboard.tasks import HINDSIGHT
from edgeft.scoring import bootstrap_ci
from edgeft.suites import Suite


def summarize(
    suite: Suite, policies: Sequence[str], rows: Iterable[dict[str, Any]]
) -> dict[str, Any]:
    """Mean and bootstrap 95% interval per (scenario, policy, metric); timing kept apart; and,
    for families with a headline (``edgeft.scoring``), each policy's headline value, score and
    paired per-seed difference from the suite's reference policy."""
    family = get_family(suite.family)
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["scenario"], r["policy"]), []).append(r)
    entries = []
    for sc in suite.scenarios:
        for pol in policies:
            rs = sorted(by.get((sc.name, pol), []), key=lambda r: int(r["seed"]))
            if not rs:
                continue
            entry: dict[str, Any] = {
                "scenario": sc.name,
                "policy": pol,
                "episodes": len(rs),
                "seeds": [int(r["seed"]) for r in rs],
                "metrics": {},
                "timing": {},
            }
            if sc.sweep_value is not None:
                entry["sweep_value"] = sc.sweep_value
            ood = sorted({f for r in rs for f in r.get("out_of_distribution", ())})
            if ood:  # the fields in which the suite's env differs from the agent's training env
                entry["out_of_distribution"] = ood
            for part, names in (("metrics", family.metrics), ("timing", TIMING)):
                for m in names:
                    vals = [float(r[part][m]) for r in rs]
                    lo, hi = bootstrap_ci(vals)
                    entry[part][m] = {"mean": float(np.mean(vals)), "ci_low": lo, "ci_high": hi}
            entries.append(entry)
    summary = {
        "suite": suite.name,
        "version": suite.version,
        "fingerprint": suite.fingerprint(),
        "family": suite.family,
        "description": suite.description,
        "policies": list(policies),
        "expected_episodes": len(suite.scenarios) * len(policies) * suite.num_seeds,
        "episodes": sum(e["episodes"] for e in entries),
        "results": entries,
    }
    head = (
        family.get_headline(suite.headline) if suite.headline or family.default_headline else None
    )
    if head is not None:
        summary["headline"] = {
            "title": head.title,
            "higher_is_better": head.higher_is_better,
            "constraint": head.constraint,
            "anchor": head.anchor,
            "reference": head.reference,
            "bound": HINDSIGHT if head.hindsight is not None else None,
        }
        _add_scores(suite.family, head, entries, by)
    return summary


def _headline_of(head: Headline, row: dict[str, Any]) -> float:
    if row["policy"] == HINDSIGHT:
        return float(row["bound"]["headline"])
    return float(head.value(row["metrics"]))


def _stat(values: Sequence[float]) -> dict[str, float]:
    lo, hi = bootstrap_ci(values)
    return {"mean": float(np.mean(values)), "ci_low": lo, "ci_high": hi}


def _add_scores(
    family: str,
    head: Headline,
    entries: list[dict[str, Any]],
    by: dict[tuple[str, str], list[dict[str, Any]]],
) -> None:
    """Adds "headline", "score", "vs_reference", "breaks_constraint" and "bound" to each entry
    (per seed: score = 100 (value - anchor) / (bound - anchor) on that seed; see
    ``edgeft.scoring``)."""

    def per_seed(key: tuple[str, str]) -> dict[int, float]:
        # in seed order: the means must not depend on the order episodes finished in
        rs = sorted(by.get(key, []), key=lambda r: int(r["seed"]))
        return {int(r["seed"]): _headline_of(head, r) for r in rs}

    for e in entries:
        sc = e["scenario"]
        values = per_seed((sc, e["policy"]))
        e["headline"] = _stat(list(values.values()))
        e["bound"] = e["policy"] == HINDSIGHT
        if not e["bound"]:
            e["breaks_constraint"] = sum(
                bool(head.breaks_constraint(r["metrics"])) for r in by[(sc, e["policy"])]
            )
        anchor = per_seed((sc, head.anchor))
        bound = per_seed((sc, HINDSIGHT))
        seeds = sorted(set(values) & set(anchor) & set(bound))
        if seeds:
            scores = scoring.score(
                [values[s] for s in seeds], [anchor[s] for s in seeds], [bound[s] for s in seeds]
            )
            finite = scores[np.isfinite(scores)]
            if finite.size:
                e["score"] = {**_stat(finite.tolist()), "episodes": int(finite.size)}
            if not e["bound"]:
                e["above_bound"] = _stat(
                    above_bound([values[s] for s in seeds], [bound[s] for s in seeds], head)
                )
        ref = per_seed((sc, head.reference))
        if e["policy"] != head.reference and set(values) & set(ref):
            e["vs_reference"] = scoring.paired_difference(values, ref)


def above_bound(values: Sequence[float], bounds: Sequence[float], head: Headline) -> list[float]:
    """Per seed, how far the headline value is from the hindsight bound, in % of the bound
    (>= 0 for every policy: the bound is the best any policy could reach)."""
    v, b = np.asarray(values, dtype=np.float64), np.asarray(bounds, dtype=np.float64)
    gap = (b - v) if head.higher_is_better else (v - b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (100.0 * gap / np.abs(b)).tolist()


def ranked(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary's entries in table order: per scenario, the bound first, then by score
    (best first; unscored policies last, in run order)."""
    order = {sc: i for i, sc in enumerate(dict.fromkeys(e["scenario"] for e in summary["results"]))}

    def key(item: tuple[int, dict[str, Any]]) -> tuple[int, int, float, int]:
        i, e = item
        if e.get("bound"):
            return (order[e["scenario"]], 0, 0.0, i)
        sc = e.get("score")
        return (order[e["scenario"]], 1 if sc else 2, -sc["mean"] if sc else 0.0, i)

    return [e for _, e in sorted(enumerate(summary["results"]), key=key)]
