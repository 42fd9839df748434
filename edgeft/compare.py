"""Compare reference policies on one scenario and print a table.

Runs every chosen policy through the same env, on the same seeds, and prints per-policy means
over episodes. Example:

    edgeft compare                                   # FedLoRA default scenario, all FT baselines
    edgeft compare --env edgeft/MECOffloading-v0     # MEC default scenario, all MEC baselines
    edgeft compare --policies lyapunov,gs --set delay_budget_per_bit=1e-6 --episodes 5
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

# per family: (info key, column title, reduction over an episode)
METRICS: dict[str, list[tuple[str, str, str]]] = {
    "fedlora": [
        ("num_scheduled", "avg devices", "mean"),
        ("delay_ratio", "avg D/Dbar", "mean"),
        ("delay_ratio", "max D/Dbar", "max"),
        ("loss", "final loss", "last"),
        ("accuracy", "final acc", "last"),
    ],
    "mec": [
        ("energy", "energy (J)", "mean"),
        ("delay", "delay (s)", "mean"),
        ("stability", "stability", "mean"),
        ("cost", "weighted cost", "mean"),
    ],
}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` strings to a dict; values parsed as Python literals where possible."""
    import ast

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


def run_episode(env_id: str, policy_name: str, seed: int,
                overrides: dict[str, Any]) -> dict[str, float]:
    """One episode of ``policy_name``; returns the episode's metrics and mean decision time."""
    import gymnasium as gym

    import edgeft
    from edgeft.policy import family_of

    env = gym.make(env_id, **overrides)
    policy = edgeft.make_policy(policy_name, env,
                                **({"seed": seed} if policy_name == "random" else {}))
    family = family_of(env)
    obs, _ = env.reset(seed=seed)
    traces: dict[str, list[float]] = {key: [] for key, _, _ in METRICS[family]}
    decide, reward = [], 0.0
    while True:
        t0 = time.perf_counter()
        action, _ = policy.predict(obs, deterministic=True)
        decide.append(time.perf_counter() - t0)
        obs, r, terminated, truncated, info = env.step(action)
        reward += float(r)
        for key in traces:
            traces[key].append(float(np.mean(info[key])))
        if terminated or truncated:
            break
    row = {}
    for key, title, how in METRICS[family]:
        v = np.asarray(traces[key])
        row[title] = float({"mean": v.mean, "max": v.max, "last": lambda v=v: v[-1]}[how]())
    row["return"] = reward
    row["decide (ms)"] = 1e3 * float(np.mean(decide))
    return row


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table, one row per policy."""
    cols = list(next(iter(rows.values())))
    head = "| policy | " + " | ".join(cols) + " |"
    sep = "|---|" + "|".join("---:" for _ in cols) + "|"
    lines = [head, sep]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.4g}" for c in cols) + " |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="edgeft/FedLoRAScheduling-v0",
                        help="env id (default: %(default)s)")
    parser.add_argument("--policies", default=None,
                        help="comma-separated policy names "
                             "(default: every reference policy of the env)")
    parser.add_argument("--episodes", type=int, default=3,
                        help="episodes per policy, seeds 0..N-1 (default 3)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable (e.g. --set num_devices=50)")


def run(args: argparse.Namespace) -> int:
    import gymnasium as gym
    from tqdm import tqdm

    import edgeft
    from edgeft.policy import family_of

    overrides = parse_overrides(args.overrides)
    try:
        env = gym.make(args.env, **overrides)
    except gym.error.Error as err:
        known = sorted(k for k in gym.registry if k.startswith("edgeft/"))
        raise SystemExit(f"unknown env {args.env!r} ({err}); known: {known}") from err
    family = family_of(env)
    names = args.policies.split(",") if args.policies else [
        n for n in edgeft.list_policies(family) if ":" not in n]
    for name in names:  # fail before any work on a bad name
        edgeft.make_policy(name, env)
    rows: dict[str, dict[str, float]] = {}
    with tqdm(total=len(names) * args.episodes, desc="episodes", unit="ep") as bar:
        for name in names:
            per_ep = []
            for seed in range(args.episodes):
                per_ep.append(run_episode(args.env, name, seed, overrides))
                bar.update()
            rows[name] = {c: float(np.mean([r[c] for r in per_ep])) for c in per_ep[0]}
    cfg = env.unwrapped.config
    rounds = getattr(cfg, "episode_rounds", "?")
    print(f"\n{args.env} ({family}), {args.episodes} episodes x {rounds} rounds, "
          f"seeds 0..{args.episodes - 1}; overrides: {overrides or 'none'}\n")
    print(format_table(rows))
    return 0
