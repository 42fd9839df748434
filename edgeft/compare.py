"""Compare reference policies on one scenario and print a table.

Plays every chosen policy in the same env on the same seeds (0 .. N-1) and prints the mean over
episodes of the leaderboard's metrics (``edgeft.episodes``; the leaderboard plays the same
episode loop on its own test seeds). Example:

    edgeft compare                                   # FedLoRA default scenario, all FT baselines
    edgeft compare --env edgeft/MECOffloading-v0     # MEC default scenario, all MEC baselines
    edgeft compare --policies lyapunov,gs --set delay_budget_per_bit=1e-6 --episodes 5

MEC columns: energy of a round summed over the users (J), delay of a round averaged over the
users (s), both averaged over the episode's rounds. "decide (ms)" is measured where the command
runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from edgeft.envs.family import get_family
from edgeft.episodes import TIMING
from edgeft.overrides import parse_overrides

__all__ = ["add_arguments", "compare", "format_table", "run"]


def compare(
    env_id: str,
    policies: list[str],
    episodes: int,
    overrides: dict[str, Any],
    progress: bool = True,
    *,
    trust_code: bool = False,
) -> dict[str, dict[str, float]]:
    """Mean metrics of each policy over seeds ``0 .. episodes - 1``: policy -> metric -> mean.

    Metric names are those of the env family's record (``EnvFamily.metrics``), then
    ``decide_ms``. ``trust_code`` allows ``ALGO:PATH`` agents saved as stable-baselines3 zips,
    whose pickles run code when loaded.
    """
    from tqdm import tqdm

    from edgeft.episodes import make_env_and_policy, play_episode

    rows: dict[str, dict[str, float]] = {}
    with tqdm(
        total=len(policies) * episodes, desc="episodes", unit="ep", disable=not progress
    ) as bar:
        for name in policies:
            per_ep = []
            for seed in range(episodes):
                env, policy = make_env_and_policy(
                    env_id, overrides, name, seed, trust_code=trust_code
                )
                try:
                    out = play_episode(env, policy, seed)
                finally:
                    env.close()
                per_ep.append({**out["metrics"], **out["timing"]})
                bar.update()
            rows[name] = {k: float(np.mean([r[k] for r in per_ep])) for k in per_ep[0]}
    return rows


def format_table(rows: dict[str, dict[str, float]], family: str) -> str:
    """A Markdown table, one row per policy, with the leaderboard's column titles."""
    titles = {
        **{m: d.title for m, d in get_family(family).metrics.items()},
        **{m: t for m, (t, _) in TIMING.items()},
    }
    cols = list(next(iter(rows.values())))
    lines = [
        "| policy | " + " | ".join(titles.get(c, c) for c in cols) + " |",
        "|---|" + "|".join("---:" for _ in cols) + "|",
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.4g}" for c in cols) + " |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        default="edgeft/FedLoRAScheduling-v0",
        help="env id (default: %(default)s; the other one is edgeft/MECOffloading-v0)",
    )
    parser.add_argument(
        "--policies",
        default=None,
        help="comma-separated policy names, or ALGO:PATH for a trained model "
        "(default: every reference policy of the env's family)",
    )
    parser.add_argument(
        "--episodes",
        type=int,
        default=3,
        help="episodes per policy, on seeds 0..N-1 (default: %(default)s)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="env config override, repeatable (e.g. --set num_devices=50)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--trust-agent-code",
        action="store_true",
        help="allow ALGO:PATH agents saved as stable-baselines3 zips, whose "
        "pickles run any code their author put in them when loaded (the "
        "same as EDGEFT_TRUST_AGENT_CODE=1)",
    )


def run(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import edgeft
    from edgeft.envs.common import config_in_force
    from edgeft.episodes import make_env_and_policy
    from edgeft.policy import family_of

    overrides = parse_overrides(args.overrides)
    try:
        env = gym.make(args.env, **overrides)
    except gym.error.Error as err:
        known = sorted(k for k in gym.registry if k.startswith("edgeft/"))
        print(
            f"edgeft compare: error: unknown env {args.env!r} ({err}); known: {known}",
            file=sys.stderr,
        )
        return 2
    except ValueError as err:
        print(f"edgeft compare: error: {err}", file=sys.stderr)
        return 2
    family = family_of(env)
    names = (
        args.policies.split(",")
        if args.policies
        else [n for n in edgeft.list_policies(family) if ":" not in n]
    )
    try:
        for name in names:  # fail before any work on a bad name
            if ":" in name:  # a trained model: in the action mode it was trained in
                make_env_and_policy(args.env, overrides, name, 0, trust_code=args.trust_agent_code)[
                    0
                ].close()
            else:
                edgeft.make_policy(name, env)
    except (ValueError, FileNotFoundError) as err:
        print(f"edgeft compare: error: {err}", file=sys.stderr)
        return 2
    rows = compare(
        args.env,
        names,
        args.episodes,
        overrides,
        progress=not args.no_progress,
        trust_code=args.trust_agent_code,
    )
    rounds = getattr(config_in_force(env), "episode_rounds", "?")
    env.close()
    print(
        f"\n{args.env} ({family}), {args.episodes} episodes x {rounds} rounds, "
        f"seeds 0..{args.episodes - 1}; overrides: {overrides or 'none'}\n"
    )
    print(format_table(rows, family))
    return 0
