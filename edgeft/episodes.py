"""The one episode loop of edgeft: play a policy for an episode and reduce it to metrics.

Used by ``edgeft compare``, the leaderboard (``edgeft.leaderboard``), ``edgeft figures`` and the
training-time evaluation of ``edgeft train``, so a policy is scored the same way everywhere.

Metrics are deterministic functions of (env config, policy, seed). The measured decision time is
kept apart in ``timing`` (it differs from run to run), and per-round curves in ``curves``. What
each family's metrics are is its record's business (``edgeft.envs.<family>.family``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeft.envs.family import EnvFamily, family_of

#: the measured (run-to-run varying) part of an episode's result: name -> (title, lower better)
TIMING = {"decide_ms": ("decide (ms)", True)}
#: long episodes' curves are thinned to at most this many points
MAX_CURVE_POINTS = 500


def metric_titles(family: EnvFamily) -> dict[str, tuple[str, bool]]:
    """The family's metrics as ``name -> (column title, lower is better)``, in display order."""
    return {k: (m.title, m.lower_is_better) for k, m in family.metrics.items()}


def play_episode(env: Any, policy: Any, seed: int, *, deterministic: bool = True) -> dict[str, Any]:
    """Run ``policy`` in ``env`` from ``env.reset(seed=seed)`` to the end of the episode.

    The env's family record (``edgeft.envs.family``) says what the episode is reduced to: its
    metrics (the record's ``recorder``) and per-round curves.

    Returns:
        ``{"metrics": {...}, "timing": {"decide_ms": ...}, "curves": {...}, "rounds": T}``.
    """
    family = family_of(env)
    recorder = family.recorder()
    obs, _ = env.reset(seed=int(seed))
    decide = 0.0
    total = 0.0
    rounds = 0
    trace: dict[str, list[float]] = {k: [] for k in family.curves}
    info: dict[str, Any] = {}
    while True:
        recorder.before_step(env)
        t0 = time.perf_counter()
        action, _ = policy.predict(obs, deterministic=deterministic)
        decide += time.perf_counter() - t0
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        rounds += 1
        recorder.after_step(info)
        for k, key in family.curves.items():
            trace[k].append(float(np.mean(info[key])))
        if terminated or truncated:
            break
    metrics = recorder.metrics(info, total, rounds)
    step = max(1, -(-rounds // MAX_CURVE_POINTS))
    curves = {k: v[step - 1 :: step] for k, v in trace.items()}
    if step > 1:
        curves["round"] = list(range(step, rounds + 1, step))
    return {
        "metrics": metrics,
        "timing": {"decide_ms": 1e3 * decide / rounds},
        "curves": curves,
        "rounds": rounds,
    }


def make_env_and_policy(
    env_id: str, config: Mapping[str, Any], policy: str, seed: int, *, trust_code: bool = False
) -> tuple[Any, Any]:
    """The env ``gym.make(env_id, **config)`` and the policy ``policy`` built for it.

    A trained agent (``"ALGO:PATH"``) gets the env in the action mode it was trained in; every
    policy gets ``seed`` (the random ones draw from it). ``trust_code`` allows a legacy
    stable-baselines3 zip agent, whose pickles run code when loaded (``edgeft.make_policy``).
    """
    import gymnasium as gym

    from edgeft.policy import make_policy

    config = dict(config)
    if ":" in policy:
        from edgeft.agents import saved_action_mode

        mode = saved_action_mode(policy, trust_code=trust_code)
        if mode is not None:
            config["action_mode"] = mode
    env = gym.make(env_id, **config)
    if trust_code:
        return env, make_policy(policy, env, seed=int(seed), trust_code=True)
    return env, make_policy(policy, env, seed=int(seed))


def run_episode(env_id: str, config: Mapping[str, Any], policy: str, seed: int) -> dict[str, Any]:
    """:func:`play_episode` of ``policy`` in a fresh ``gym.make(env_id, **config)`` from ``seed``.

    Returns:
        what :func:`play_episode` returns.
    """
    env, pol = make_env_and_policy(env_id, config, policy, seed)
    try:
        return play_episode(env, pol, seed)
    finally:
        env.close()
