"""The one episode loop of edgeft: play a policy for an episode and reduce it to metrics.

Used by ``edgeft compare``, the leaderboard (``edgeft.leaderboard``), ``edgeft figures`` and the
training-time evaluation of ``edgeft train``, so a policy is scored the same way everywhere.

Metrics are deterministic functions of (env config, policy, seed). The measured decision time is
kept apart in ``timing`` (it differs from run to run), and per-round curves in ``curves``.

What the MEC metrics are (each a mean over the episode's rounds; a round is one training
iteration of every user): ``energy`` the energy of a round summed over the N users (device +
edge, J), ``delay`` a user's delay in a round averaged over the users (s), ``stability`` the
stability bound averaged over the users, ``cost`` the weighted objective of a round (summed
over users; the env's ``info["objective"]``), ``energy_violation`` the mean over users of
max(0, time-average device energy / budget - 1). FedLoRA: ``avg_delay_s`` the round's delay
(s), the other metrics as titled.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeft.policy import family_of

#: per family: metric -> (column title, lower is better?) in display order
METRICS: dict[str, dict[str, tuple[str, bool]]] = {
    "fedlora": {
        "final_loss": ("final loss", True),
        "final_accuracy": ("final acc", False),
        "avg_scheduled": ("avg devices", False),
        "avg_delay_ratio": ("avg D/Dbar", True),
        "budget_violation": ("budget viol.", True),
        "max_delay_ratio": ("max D/Dbar", True),
        "avg_delay_s": ("avg delay (s)", True),
        "final_queue": ("final q", True),
        "return": ("return", False),
    },
    "mec": {
        "cost": ("weighted cost", True),
        "energy": ("energy (J)", True),
        "delay": ("delay (s)", True),
        "stability": ("stability", True),
        "energy_violation": ("energy viol.", True),
        "final_queue": ("final Q/budget", True),
        "return": ("return", False),
    },
}
TIMING = {"decide_ms": ("decide (ms)", True)}
#: curves kept per episode (fedlora: per round; long episodes are thinned to <= 500 points)
CURVES = {"fedlora": ("loss", "accuracy", "num_scheduled", "delay_ratio"), "mec": ("cost",)}
MAX_CURVE_POINTS = 500
#: curve -> the info key it reads, where they differ (MEC's cost curve is the objective)
CURVE_INFO = {"cost": "objective"}


def play_episode(env: Any, policy: Any, seed: int, *, deterministic: bool = True
                 ) -> dict[str, Any]:
    """Run ``policy`` in ``env`` from ``env.reset(seed=seed)`` to the end of the episode.

    Returns:
        ``{"metrics": {...}, "timing": {"decide_ms": ...}, "curves": {...}, "rounds": T}``.
    """
    family = family_of(env)
    obs, _ = env.reset(seed=int(seed))
    decide = 0.0
    total = 0.0
    rounds = 0
    trace: dict[str, list[float]] = {k: [] for k in CURVES[family]}
    acc: dict[str, Any] = {}
    if family == "fedlora":
        acc.update(delay=0.0, ratio=0.0, max_ratio=0.0, scheduled=0.0)
    else:
        acc.update(energy=0.0, delay=0.0, stability=0.0, cost=0.0, dev_energy=0.0, budget=0.0)
    info: dict[str, Any] = {}
    while True:
        if family == "mec":
            budget = np.asarray(env.unwrapped.state.energy_budget, dtype=np.float64)
        t0 = time.perf_counter()
        action, _ = policy.predict(obs, deterministic=deterministic)
        decide += time.perf_counter() - t0
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        rounds += 1
        if family == "fedlora":
            acc["delay"] += float(info["delay"])
            acc["ratio"] += float(info["delay_ratio"])
            acc["max_ratio"] = max(acc["max_ratio"], float(info["delay_ratio"]))
            acc["scheduled"] += float(info["num_scheduled"])
        else:
            acc["energy"] += float(np.sum(info["energy"]))
            acc["delay"] += float(np.mean(info["delay"]))
            acc["stability"] += float(np.mean(info["stability"]))
            acc["cost"] += float(info["objective"])
            dev_energy = np.asarray(info["device_energy"], dtype=np.float64)
            acc["dev_energy"] = acc["dev_energy"] + dev_energy
            acc["budget"] = acc["budget"] + budget
        for k in trace:
            trace[k].append(float(np.mean(info[CURVE_INFO.get(k, k)])))
        if terminated or truncated:
            break
    if family == "fedlora":
        ratio = acc["ratio"] / rounds
        loss = float(info.get("test_loss", info["loss"]))
        metrics = {
            "final_loss": loss,
            "final_accuracy": float(info["accuracy"]),
            "avg_scheduled": acc["scheduled"] / rounds,
            "avg_delay_ratio": ratio,
            "budget_violation": max(0.0, ratio - 1.0),
            "max_delay_ratio": acc["max_ratio"],
            "avg_delay_s": acc["delay"] / rounds,
            "final_queue": float(info["delay_queue"]),
            "return": total,
        }
    else:
        over = np.maximum(acc["dev_energy"] / acc["budget"] - 1.0, 0.0)
        metrics = {
            "cost": acc["cost"] / rounds,
            "energy": acc["energy"] / rounds,
            "delay": acc["delay"] / rounds,
            "stability": acc["stability"] / rounds,
            "energy_violation": float(np.mean(over)),
            "final_queue": float(np.mean(info["queue_in_budgets"])),
            "return": total,
        }
    step = max(1, -(-rounds // MAX_CURVE_POINTS))
    curves = {k: v[step - 1::step] for k, v in trace.items()}
    if step > 1:
        curves["round"] = list(range(step, rounds + 1, step))
    return {"metrics": metrics, "timing": {"decide_ms": 1e3 * decide / rounds}, "curves": curves,
            "rounds": rounds}


def make_env_and_policy(env_id: str, config: Mapping[str, Any], policy: str, seed: int
                        ) -> tuple[Any, Any]:
    """The env ``gym.make(env_id, **config)`` and the policy ``policy`` built for it.

    A trained agent (``"ALGO:PATH"``) gets the env in the action mode it was trained in; every
    policy gets ``seed`` (the random ones draw from it).
    """
    import gymnasium as gym

    from edgeft.policy import make_policy

    config = dict(config)
    if ":" in policy:
        from edgeft.agents import saved_action_mode

        mode = saved_action_mode(policy)
        if mode is not None:
            config["action_mode"] = mode
    env = gym.make(env_id, **config)
    return env, make_policy(policy, env, seed=int(seed))


def run_episode(env_id: str, config: Mapping[str, Any], policy: str, seed: int
                ) -> dict[str, Any]:
    """:func:`play_episode` of ``policy`` in a fresh ``gym.make(env_id, **config)`` from ``seed``.

    Returns:
        what :func:`play_episode` returns.
    """
    env, pol = make_env_and_policy(env_id, config, policy, seed)
    try:
        return play_episode(env, pol, seed)
    finally:
        env.close()
