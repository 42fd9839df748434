"""Leaderboard tasks: one (scenario, policy, seed) episode each, and how to play one."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from edgeft import episodes
from edgeft.envs.family import family_of_env_id
from edgeft.suites import Suite

#: the row name of the hindsight bound (written like a policy's, never ranked)
HINDSIGHT = "hindsight"


def make_tasks(suite: Suite, policies: Sequence[str]) -> list[dict[str, Any]]:
    """Every (scenario, policy, seed) episode of ``suite`` as a task dict."""
    tasks = []
    for sc in suite.scenarios:
        for pol in policies:
            for seed in suite.seeds:
                tasks.append(
                    {
                        "suite": suite.name,
                        "version": suite.version,
                        "scenario": sc.name,
                        "env_id": sc.env_id,
                        "config": dict(sc.config),
                        "policy": pol,
                        "seed": int(seed),
                        "headline": suite.headline,
                    }
                )
    return tasks


def task_key(row: dict[str, Any]) -> tuple[str, str, int]:
    """(scenario, policy, seed): what identifies an episode of a run."""
    return (str(row["scenario"]), str(row["policy"]), int(row["seed"]))


def make_env_and_policy(task: dict[str, Any]) -> tuple[Any, Any]:
    """The env and policy of a task (a trained agent gets the action mode it was trained in)."""
    return episodes.make_env_and_policy(
        task["env_id"], task["config"], task["policy"], int(task["seed"])
    )


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Play one task's episode; returns its result row (deterministic apart from ``timing``)."""
    extra: dict[str, Any] = {}
    if task["policy"] == HINDSIGHT:
        from edgeft import scoring  # scipy.stats: only where the bound is computed

        t0 = time.perf_counter()
        family = family_of_env_id(task["env_id"])
        out = scoring.hindsight_row(
            family, task["env_id"], task["config"], int(task["seed"]), task.get("headline") or None
        )
        # its "decision time": computing the bound and replaying its schedule, per round
        out["timing"] = {"decide_ms": 1e3 * (time.perf_counter() - t0) / max(1, out["rounds"])}
        extra["bound"] = {"headline": float(out["headline"]), "gap": float(out["gap"])}
    else:
        env, policy = make_env_and_policy(task)
        try:
            out = episodes.play_episode(env, policy, int(task["seed"]))
        finally:
            env.close()
        ood = getattr(policy, "out_of_distribution", None)
        if ood:  # a trained agent playing an env unlike its training env
            extra["out_of_distribution"] = sorted(d.split(":", 1)[0] for d in ood)
    return {
        "suite": task["suite"],
        "version": task["version"],
        "scenario": task["scenario"],
        "policy": task["policy"],
        "seed": task["seed"],
        "env_id": task["env_id"],
        "rounds": out["rounds"],
        "metrics": out["metrics"],
        "timing": out["timing"],
        "curves": out["curves"],
        **extra,
    }


def task_cost(task: dict[str, Any]) -> float:
    """Rough relative cost of a task's episode: policy cost x rounds x devices or users.

    Only the order matters (the backends start the costliest tasks first; results do not
    depend on it). The units of the two families are of one order of magnitude (per round and
    device or user, a cost-1 FedLoRA policy ~0.1 ms, a cost-1 MEC policy ~0.1-0.3 ms of CPU),
    so the tasks of several suites are ordered together. The ``hindsight`` bound of an episode
    solves the whole episode in hindsight and replays it: it costs more than the family's
    costliest reference policy (mec-large: 4.2 s against fp-cccp's 1.2 s; fedlora-default:
    0.65 s against lyapunov-paper's 0.26 s), so it is costed just above it and starts first.
    """
    from edgeft.policy import policy_cost

    fam = family_of_env_id(task["env_id"])
    cfg = fam.make_config(task["config"])
    size = int(getattr(cfg, fam.size_field, 1))
    if task["policy"] == HINDSIGHT:
        cost = hindsight_cost(fam.name)
    else:
        cost = policy_cost(task["policy"], fam.name)
    return cost * cfg.episode_rounds * size


def hindsight_cost(family: str) -> float:
    """The ``hindsight`` rows' cost: one more than the family's costliest reference policy."""
    import edgeft
    from edgeft.policy import policy_cost

    refs = [n for n in edgeft.list_policies(family) if ":" not in n]
    return 1.0 + max((policy_cost(n, family) for n in refs), default=0.0)
