"""Turn a stable-baselines3 model zip into an edgeft agent in the safe format, for the leaderboard.

A model trained with plain stable-baselines3 on an edgeft env and saved with ``model.save``::

    edgeft export ppo:tiny_ppo.zip --suite fedlora-default --set action_mode=count \\
        --trust-agent-code --out tiny_ppo
    edgeft leaderboard --suite fedlora-default --policies ppo:tiny_ppo.agent.json

(``--suite``: the env id and config of the suite's scenario; or ``--env ID --set KEY=VALUE``)
writes ``tiny_ppo.agent.json`` (what the agent is: algorithm, policy class and arguments,
spaces, observation transform, normalisation statistics, env id and config) and
``tiny_ppo.safetensors`` (the weights); neither holds code, so anyone can load them safely.

An SB3 zip stores the model as pickles: loading it runs any code its author put in it, so
export reads one only with --trust-agent-code (or EDGEFT_TRUST_AGENT_CODE=1): export your own
models, or ones whose author you trust. A zip saved by an earlier ``edgeft train`` (with
NAME.config.json and NAME.norm.json beside it) takes its env, transform and statistics from
those files. A model trained behind VecNormalize needs its observation statistics:
--vecnormalize FILE (SB3's ``VecNormalize.save`` file, a pickle read only with the opt-in, or a
JSON file with mean, var, clip_obs and epsilon). From Python: ``edgeft.agents.
save_for_leaderboard(model, env, "NAME", vecnormalize=venv)``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path
from typing import Any

from edgeft.overrides import parse_overrides

__all__ = ["add_arguments", "export_zip", "run"]

#: the keys of a legacy ``NAME.config.json`` that describe the agent (the rest is information)
_DESCRIPTION = ("env_id", "algo", "obs_transform", "env_config")


def _read_normalization(path: Path, trust_code: bool) -> dict[str, Any] | None:
    """Observation statistics from a JSON file or (with the opt-in) SB3's VecNormalize pickle."""
    from edgeft.agents.agent_format import (
        UntrustedCodeError,
        normalization_of,
        trusted,
    )

    if path.suffix == ".json":
        with open(path) as fh:
            return json.load(fh)
    if not trusted(trust_code):
        raise UntrustedCodeError(
            f"--vecnormalize {path} is a pickle (SB3's VecNormalize.save): loading it runs any "
            "code in it; pass --trust-agent-code if you trust its author, or give the statistics "
            "as JSON (mean, var, clip_obs, epsilon)"
        )
    with open(path, "rb") as fh:
        vecnorm = pickle.load(fh)  # only with the opt-in above
    norm = normalization_of(vecnorm)
    if norm is None:
        raise ValueError(f"{path} holds no observation statistics (norm_obs is off)")
    return norm


def _zip_and_algo(name: str, trust_code: bool) -> tuple[str, Path]:
    """The algorithm and the zip file of ``ALGO:PATH`` / ``PATH``, the algorithm checked against
    (or read from) the zip; only with the opt-in to read pickles.

    Raises:
        UntrustedCodeError: without the opt-in.
        FileNotFoundError: no such zip.
        ValueError: an unknown algorithm, one other than the zip's, or none to be told.
    """
    from edgeft.agents.agent_format import (
        ALGOS,
        UntrustedCodeError,
        legacy_zip_algo,
        trusted,
        untrusted_zip_message,
    )

    algo, sep, path = name.partition(":")
    if not sep:
        algo, path = "", name
    elif algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r} in {name!r}; known: {list(ALGOS)}")
    zp = Path(path).expanduser()
    if not zp.is_file() and zp.with_name(zp.name + ".zip").is_file():
        zp = zp.with_name(zp.name + ".zip")
    if not zp.is_file():
        raise FileNotFoundError(f"no model zip {path!r}")
    if zp.name.endswith(".agent.json"):
        raise ValueError(f"{zp} is already an agent in the safe format")
    if not trusted(trust_code):
        raise UntrustedCodeError(untrusted_zip_message(zp, name))
    inside = legacy_zip_algo(zp)
    if algo and inside is not None and inside != algo:
        raise ValueError(
            f"{zp.name} holds a {inside.upper()} model, not {algo.upper()}; "
            f"export it as {inside}:{path}"
        )
    algo = algo or inside or ""
    if not algo:
        raise ValueError(f"cannot tell the algorithm of {zp.name}; name it: ALGO:{path}")
    return algo, zp


def export_zip(
    name: str,
    out: str | Path,
    *,
    env_id: str | None = None,
    overrides: dict[str, Any] | None = None,
    obs_transform: str | None = None,
    vecnormalize: str | Path | None = None,
    trust_code: bool = False,
) -> Path:
    """Convert the SB3 zip ``name`` (``ALGO:PATH`` or ``PATH``) into ``out.agent.json`` +
    ``out.safetensors``; returns the JSON's path.

    Args:
        name: ``ppo:model.zip`` (the algorithm is checked against the zip's) or ``model.zip``
            (the algorithm read from the zip).
        out: ``NAME`` of the files written.
        env_id: the env the model was trained on (default: the zip's ``NAME.config.json``,
            else ``edgeft/FedLoRAScheduling-v0``).
        overrides: env config fields (``action_mode`` ...), over the saved config if any.
        obs_transform: the observation transform (default: the saved one, else ``"none"``).
        vecnormalize: a VecNormalize statistics file (default: ``NAME.norm.json`` if any).
        trust_code: allow reading the pickles (also ``EDGEFT_TRUST_AGENT_CODE=1``).

    Raises:
        UntrustedCodeError: without the opt-in.
        FileNotFoundError: no such zip.
        ValueError: an algorithm other than the zip's, spaces that do not fit the env, or a
            model trained on normalised observations without their statistics.
    """
    import gymnasium as gym

    from edgeft.agents.agent_format import algo_class
    from edgeft.agents.loader import save_for_leaderboard, sidecar

    algo, zp = _zip_and_algo(name, trust_code)
    saved: dict[str, Any] = {}
    if zp.name.endswith(".zip") and sidecar(zp, "config").is_file():
        saved = json.loads(sidecar(zp, "config").read_text())
        if saved.get("algo", algo) != algo:
            raise ValueError(
                f"{sidecar(zp, 'config').name} says {saved['algo']}, the zip holds {algo}"
            )
    env_id = env_id or saved.get("env_id") or "edgeft/FedLoRAScheduling-v0"
    env_config = saved.get("env_config") if env_id == saved.get("env_id") else None
    env = (
        gym.make(env_id, config=env_config, **(overrides or {}))
        if env_config
        else gym.make(env_id, **(overrides or {}))
    )
    try:
        norm = None
        if vecnormalize is not None:
            norm = _read_normalization(Path(vecnormalize), trust_code)
        elif zp.name.endswith(".zip") and sidecar(zp, "norm").is_file():
            norm = json.loads(sidecar(zp, "norm").read_text())
        model = algo_class(algo).load(str(zp), device="cpu")
        transform = obs_transform or saved.get("obs_transform") or "none"
        info = {k: v for k, v in saved.items() if k not in _DESCRIPTION}
        info["exported_from"] = zp.name
        return save_for_leaderboard(
            model, env, out, obs_transform=transform, vecnormalize=norm, meta=info
        )
    finally:
        env.close()


def _suite_env(
    suite: str, scenario: str | None, env_id: str | None, overrides: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The env id and config of a suite's scenario, with ``overrides`` over the config."""
    from edgeft.suites import get_suite

    s = get_suite(suite)
    scenarios = {sc.name: sc for sc in s.scenarios}
    if scenario is not None and scenario not in scenarios:
        raise ValueError(
            f"suite {suite} has no scenario {scenario!r}; its scenarios: {sorted(scenarios)}"
        )
    sc = scenarios[scenario] if scenario is not None else s.scenarios[0]
    if env_id is not None and env_id != sc.env_id:
        raise ValueError(f"--env {env_id} is not the env of suite {suite} ({sc.env_id})")
    return sc.env_id, {**sc.config, **overrides}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="ALGO:PATH",
        help="the SB3 model zip, e.g. ppo:tiny_ppo.zip (ALGO may be left out)",
    )
    parser.add_argument(
        "--out", required=True, metavar="NAME", help="writes NAME.agent.json and NAME.safetensors"
    )
    parser.add_argument(
        "--env",
        default=None,
        help="env id the model was trained on (default: the zip's "
        "NAME.config.json, else edgeft/FedLoRAScheduling-v0)",
    )
    parser.add_argument(
        "--suite",
        default=None,
        help="take the env id and config from this leaderboard suite's first "
        "scenario (or --scenario), under --set",
    )
    parser.add_argument("--scenario", default=None, help="the suite's scenario (with --suite)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="env config field, repeatable (e.g. --set action_mode=count)",
    )
    parser.add_argument(
        "--obs-transform",
        default=None,
        help="observation transform the model was trained on (default: none)",
    )
    parser.add_argument(
        "--vecnormalize",
        default=None,
        metavar="FILE",
        help="VecNormalize statistics of a model trained behind VecNormalize: "
        "SB3's VecNormalize.save file, or JSON (mean, var, clip_obs, "
        "epsilon)",
    )
    parser.add_argument(
        "--trust-agent-code",
        action="store_true",
        help="read the zip's pickles (they run code when loaded: only for "
        "models whose author you trust)",
    )


def run(args: argparse.Namespace) -> int:
    from edgeft.agents.agent_format import read_agent

    try:
        env_id, overrides = args.env, parse_overrides(args.overrides)
        if args.suite:
            env_id, overrides = _suite_env(args.suite, args.scenario, env_id, overrides)
        elif args.scenario:
            raise ValueError("--scenario needs --suite")
        path = export_zip(
            args.model,
            args.out,
            env_id=env_id,
            overrides=overrides,
            obs_transform=args.obs_transform,
            vecnormalize=args.vecnormalize,
            trust_code=args.trust_agent_code,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"edgeft export: error: {err}", file=sys.stderr)
        return 2
    doc = read_agent(path)
    norm = "with" if doc["normalization"] is not None else "without"
    print(
        f"wrote {path} and {doc['weights']['file']} ({doc['algo']}, {doc['env_id']}, "
        f"action_mode={doc['env_config']['action_mode']}, obs_transform="
        f"{doc['obs_transform']}, {norm} observation statistics); evaluate it with:\n"
        f"  edgeft leaderboard{' --suite ' + args.suite if args.suite else ''} --policies "
        f"{doc['algo']}:{path}"
    )
    return 0
