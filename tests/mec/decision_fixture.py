"""Recorded decisions of every MEC reference policy on a sample of the leaderboard suites.

``tests/mec/data/reference_decisions.npz`` holds, for each case below, every round's decision
(alpha, server, power, bandwidth, freq_user, freq_edge: the policy's ``last_decision``) and the
round's objective (``info["objective"]``), played as the leaderboard plays an episode (a fresh
env, the policy built with the episode's seed, reset with that seed). The metadata keep each
case's env id, config and seed, so the replay does not depend on the suites' definitions.
It was recorded with the cvxpy/Clarabel implementation of ``baselines.mec.solver``, before
the solvers dropped cvxpy from their inner loops, so ``test_decision_fixture.py`` checks that
the faster solvers take the same decisions.

Re-record (only when a change is meant to change decisions; say why in the commit)::

    python -m tests.mec.decision_fixture [--only SUITE] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PATH = Path(__file__).parent / "data" / "reference_decisions.npz"
FIELDS = ("alpha", "server", "power", "bandwidth", "freq_user", "freq_edge")
#: every MEC reference policy (``edgeft.list_policies("mec")`` less the trained agents)
POLICIES = (
    "alpha-only",
    "ao",
    "fp-cccp",
    "fp-cccp-dpp",
    "greedy",
    "greedy-dpp",
    "greedy-fast",
    "random",
    "resource-only",
)


@dataclass(frozen=True)
class Case:
    """One sampled episode prefix: a suite's scenario, test seed and first rounds."""

    suite: str
    scenario: str
    seed_index: int
    rounds: int
    policies: tuple[str, ...] = POLICIES

    def key(self, policy: str) -> str:
        """The fixture's key prefix of ``policy`` in this case."""
        return f"{self.suite}|{self.scenario}|{self.seed_index}|{policy}"


CASES = (
    Case("mec-default", "n20-m4-150m", 0, 3),
    Case("mec-default", "n20-m4-150m", 1, 3),
    Case("mec-paper", "literal", 0, 2),
    Case("mec-paper", "corrected", 0, 2),
    Case("mec-large", "n200-m20", 0, 1),
)


def scenario_of(case: Case) -> tuple[str, dict[str, Any], int]:
    """(env id, config, seed) of a case, from the suite's definition."""
    from edgeft.suites import get_suite

    suite = get_suite(case.suite)
    sc = suite.scenario(case.scenario)
    return sc.env_id, dict(sc.config), suite.seeds[case.seed_index]


def play(
    case: Case, policy: str, scenario: tuple[str, dict[str, Any], int] | None = None
) -> Iterator[tuple[Any, float, Any, Any]]:
    """Play ``policy`` on the case's episode: yields (decision, objective, policy, the round's
    instance) per round.

    ``scenario``: (env id, config, seed) as recorded (default: from the suite's definition).
    The env and the policy are built as the leaderboard builds them (a fresh env, the policy
    with the episode's seed).
    """
    import gymnasium as gym

    import edgeft

    env_id, config, seed = scenario if scenario is not None else scenario_of(case)
    env = gym.make(env_id, **config)
    pol = edgeft.make_policy(policy, env, seed=int(seed))
    try:
        obs, _ = env.reset(seed=int(seed))
        for _ in range(case.rounds):
            inst = env.unwrapped.instance_of(obs)
            action, _ = pol.predict(obs, deterministic=True)
            dec = pol.last_decision
            obs, _, _, _, info = env.step(action)
            yield dec, float(info["objective"]), pol, inst
    finally:
        env.close()


def load(path: Path = PATH) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The recorded arrays and the metadata."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"]))
    return arrays, meta


def record(only: str | None = None, out: Path = PATH) -> None:
    """Play every case and write the fixture (prints each case's time)."""
    arrays: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for case in CASES:
        if only is not None and case.suite != only:
            continue
        for policy in case.policies:
            t0 = time.process_time()
            decs, objs = [], []
            for dec, obj, _, _ in play(case, policy):
                decs.append(dec)
                objs.append(obj)
            key = case.key(policy)
            for f in FIELDS:
                arr = np.stack([getattr(d, f) for d in decs])
                arrays[f"{key}|{f}"] = arr.astype(np.int64 if f == "server" else np.float64)
            arrays[f"{key}|objective"] = np.asarray(objs, dtype=np.float64)
            seconds[key] = time.process_time() - t0
            print(f"{key:50s} {seconds[key]:8.2f} CPU-s  objective {objs}", flush=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    cases = []
    for c in CASES:
        env_id, config, seed = scenario_of(c)
        cases.append(
            c.__dict__
            | {"policies": list(c.policies), "env_id": env_id, "config": config, "seed": int(seed)}
        )
    meta = {"format": 1, "commit": commit, "cpu_seconds": seconds, "cases": cases}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, meta=np.asarray(json.dumps(meta)), **arrays)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="one suite's cases")
    parser.add_argument("--out", type=Path, default=PATH)
    args = parser.parse_args()
    record(args.only, args.out)


if __name__ == "__main__":
    main()
