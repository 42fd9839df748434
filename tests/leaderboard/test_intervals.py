"""The leaderboard's 95% intervals (``edgeft.scoring.bootstrap_ci``, the studentized bootstrap)
cover the true mean at their nominal rate at the suites' number of test seeds (30), checked by
simulation: normal data, lognormal data more skewed than any suite's per-seed values (the suites'
per-seed headline values have |skewness| <= 1.5; lognormal(0, 0.5) has 1.75), and values
resampled from real leaderboard runs. The simulations use fixed generators, so the figures are
the same on every run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeft.scoring import bootstrap_ci, paired_difference
from edgeft.suites import get_suite

SIMULATIONS = 2000
GOAL = 0.93
SEEDS = 30
DATA = json.loads((Path(__file__).with_name("data") / "suite_values.json").read_text())["values"]


def coverage(
    draw, true_mean: float, n: int = SEEDS, sims: int = SIMULATIONS, seed: int = 0
) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for i in range(sims):
        lo, hi = bootstrap_ci(draw(rng, n), seed=i)
        hits += lo <= true_mean <= hi
    return hits / sims


def test_the_default_suites_have_the_seeds_the_coverage_was_checked_at():
    for name in ("fedlora-default", "fedlora-noniid", "mec-default"):
        assert get_suite(name).num_seeds >= SEEDS, name


@pytest.mark.parametrize("dist", ["normal", "lognormal"])
def test_coverage_on_normal_and_skewed_data(dist):
    if dist == "normal":
        cov = coverage(lambda rng, n: rng.normal(3.0, 2.0, n), 3.0)
    else:
        cov = coverage(lambda rng, n: rng.lognormal(0.0, 0.5, n), float(np.exp(0.125)))
    assert cov >= GOAL, f"{dist}: {cov:.3f}"


@pytest.mark.parametrize("name", sorted(DATA))
def test_coverage_on_values_resampled_from_real_suites(name):
    population = np.asarray(DATA[name], dtype=np.float64)
    cov = coverage(lambda rng, n: rng.choice(population, n), float(population.mean()), sims=500)
    assert cov >= GOAL, f"{name}: {cov:.3f}"


def test_paired_differences_use_the_same_interval():
    rng = np.random.default_rng(5)
    a = dict(enumerate(rng.normal(0.0, 1.0, 30)))
    b = {k: v - 0.3 + rng.normal(0.0, 0.1) for k, v in a.items()}
    d = paired_difference(a, b)
    lo, hi = bootstrap_ci([a[k] - b[k] for k in sorted(a)])
    assert (d["ci_low"], d["ci_high"]) == (lo, hi) and lo < 0.3 < hi
