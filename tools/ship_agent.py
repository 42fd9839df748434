"""Ship a trained agent: copy it into ``agents/models`` under its shipped name and record its
actions for the tests.

    python tools/ship_agent.py ALGO:PATH NAME [--record tests/agents/data/shipped_agent_actions.npz]

copies ``PATH.agent.json`` and ``PATH.safetensors`` (an ``edgeft train`` output such as
``runs/x/best``) to ``agents/models/ALGO-NAME.agent.json`` and ``.safetensors`` (the weights'
file name rewritten in the JSON, their hash unchanged), plays the shipped agent in its own
training env (deterministic actions, every fourth one random, as
``tools/convert_legacy_agents.py`` does) and records its first ``--keep`` observations and
actions in the ``--record`` file beside the other shipped agents' (replacing this agent's, if
there), for ``tests/agents/test_safe_loading.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "agents" / "models"
RECORD = ROOT / "tests" / "agents" / "data" / "shipped_agent_actions.npz"


def ship(algo: str, path: str, name: str) -> Path:
    """Copy the agent ``path`` to ``agents/models/ALGO-NAME.*``; returns the JSON's path."""
    from edgeft.agents.loader import resolve_model_path

    src = resolve_model_path(algo, path)
    doc = json.loads(src.read_text(encoding="utf-8"))
    stem = f"{algo}-{name}"
    shutil.copyfile(src.parent / doc["weights"]["file"], MODELS / f"{stem}.safetensors")
    doc["weights"]["file"] = f"{stem}.safetensors"
    out = MODELS / f"{stem}.agent.json"
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return out


def record(algo: str, name: str, keep: int, where: Path) -> None:
    """Play the shipped agent and store its observations and actions in ``where``."""
    sys.path.insert(0, str(Path(__file__).parent))
    from convert_legacy_agents import observations

    import edgeft

    doc = json.loads((MODELS / f"{algo}-{name}.agent.json").read_text(encoding="utf-8"))
    env = gym.make(doc["env_id"], config=doc["env_config"])
    policy = edgeft.make_policy(f"{algo}:{name}", env)
    obs = observations(env, policy, keep, seed=0).astype(np.float32)
    actions, _ = policy.predict(obs.astype(np.float64), deterministic=True)
    old = dict(np.load(where, allow_pickle=False)) if where.exists() else {}
    old[f"{algo}-{name}/observations"] = obs
    old[f"{algo}-{name}/actions"] = np.asarray(actions)
    np.savez_compressed(where, **old)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("agent", help="ALGO:PATH of the trained agent")
    parser.add_argument("name", help="the shipped name (ALGO:NAME loads it)")
    parser.add_argument("--record", type=Path, default=RECORD)
    parser.add_argument("--keep", type=int, default=64)
    args = parser.parse_args(argv)
    algo, _, path = args.agent.partition(":")
    out = ship(algo, path, args.name)
    record(algo, args.name, args.keep, args.record)
    print(f"shipped {out} (+ weights); recorded {args.keep} actions in {args.record}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
