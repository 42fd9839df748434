"""Choose the constants of the time-using FedLoRA reference policies on training seeds.

``lyapunov-descending`` (zeta(t) = zeta0 exp(-decay t / T)) and ``gs-profile`` (GS against a
budget growing as exp(growth t / T)) each have constants the papers leave open. They are chosen
here, per data partition, by the v4 leaderboard's own headline (the final loss within the
budget, ``budget_guard`` on) on the scenario of ``fedlora-default`` / ``fedlora-noniid``, over
training seeds only (0 .. SEEDS - 1: never the validation or test seeds, ``edgeft.suites``),
from a fixed grid; ties go to the smaller decay / growth. The result is written to
``edgeft/baselines/fedlora/tuned.json`` with the grid, the seeds and every mean, and the
policies read it. Usage::

    python -m edgeft.tune_references            # writes tuned.json (a few minutes)
    python -m edgeft.tune_references --check    # recomputes and compares with the file
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from typing import Any

import numpy as np

from edgeft.baselines.fedlora.timing import TUNED_FILE
from edgeft.episodes import play_episode
from edgeft.suites import FEDLORA, get_suite

SEEDS = 12
GRIDS: dict[str, dict[str, list[float]]] = {
    "gs-profile": {"growth": [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]},
    "lyapunov-descending": {
        "zeta": [0.3, 1.0, 3.0, 10.0, 30.0],
        "decay": [0.0, 0.5, 1.0, 2.0, 4.0],
    },
}
#: the partition -> the suite whose scenario the constants are tuned on
SUITES = {"iid": "fedlora-default", "dirichlet": "fedlora-noniid"}


#: keyword arguments of ``make_policy`` itself (and the seed set here), not policy constants
RESERVED_OPTIONS = frozenset({"env", "config", "trust_code", "seed"})


def mean_final_loss(policy: str, options: dict[str, float], config: dict[str, Any]) -> float:
    """The mean final loss of ``policy`` with ``options`` over the training seeds.

    Raises:
        ValueError: an option named like one of ``make_policy``'s own arguments
            (:data:`RESERVED_OPTIONS`), which would not reach the policy.
    """
    import gymnasium as gym

    from edgeft.policy import make_policy

    reserved = sorted(RESERVED_OPTIONS & options.keys())
    if reserved:
        raise ValueError(
            f"options {reserved} are make_policy's own arguments, not constants of {policy!r}"
        )
    values = []
    for seed in range(SEEDS):
        env = gym.make(FEDLORA, **config)
        kwargs: dict[str, Any] = {**options, "seed": seed}
        values.append(
            play_episode(env, make_policy(policy, env, **kwargs), seed)["metrics"]["final_loss"]
        )
        env.close()
    return float(np.mean(values))


def tune(progress: bool = True) -> dict[str, Any]:
    """Every grid point's mean final loss and the chosen constants, per policy and partition."""
    out: dict[str, Any] = {}
    for policy, grid in GRIDS.items():
        names = list(grid)
        entry: dict[str, Any] = {
            "grid": grid,
            "seeds": list(range(SEEDS)),
            "values": {},
            "means": {},
        }
        for data, suite in SUITES.items():
            config = dict(get_suite(suite).scenarios[0].config)
            rows = []
            for point in itertools.product(*grid.values()):
                options = dict(zip(names, point))
                loss = mean_final_loss(policy, options, config)
                rows.append((loss, point, options))
                if progress:
                    print(f"{policy} {data} {options}: {loss:.6f}", flush=True)
            best = min(rows, key=lambda r: (round(r[0], 12), r[1][::-1]))
            entry["values"][data] = best[2]
            entry["means"][data] = [[r[2], r[0]] for r in rows]
        out[policy] = entry
    out["_doc"] = (
        "chosen by python -m edgeft.tune_references: the least mean final loss over "
        f"training seeds 0..{SEEDS - 1} on the scenarios of {SUITES}"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--check",
        action="store_true",
        help="recompute and compare with the shipped file instead of writing it",
    )
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    result = tune(progress=not args.no_progress)
    if args.check:
        shipped = json.loads(TUNED_FILE.read_text())
        same = all(shipped[k]["values"] == result[k]["values"] for k in GRIDS)
        print("tuned.json is up to date" if same else "tuned.json differs from a fresh tuning")
        return 0 if same else 1
    TUNED_FILE.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {TUNED_FILE}")
    for k in GRIDS:
        print(k, result[k]["values"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
