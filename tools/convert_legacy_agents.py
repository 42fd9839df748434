"""Convert legacy agents (SB3 zip + NAME.config.json + NAME.norm.json) to the safe agent format,
and check that each converted agent plays exactly the actions of the original.

The shipped agents in ``agents/models`` were converted with this script from the zips of the
commit before the safe format (``git show <commit>:agents/models/<file>``, into a folder)::

    python tools/convert_legacy_agents.py LEGACY_FOLDER agents/models \\
        --record tests/agents/data/shipped_agent_actions.npz

For each ``ALGO-NAME.zip`` in LEGACY_FOLDER it writes ``OUT/ALGO-NAME.agent.json`` and
``OUT/ALGO-NAME.safetensors`` (``edgeft.export.export_zip``), then plays the original in its own
training env (deterministic actions, with a random action every fourth step so that the states
are varied) for ``--observations`` observations, and compares on all of them: the network's
features, the deterministic actions and every weight tensor, original vs converted (exactly).
``--record`` keeps the first ``--keep`` observations of each agent (as float32) with the
original's actions on them, for ``tests/agents/test_safe_loading.py``.

The legacy zips are pickles: run this only on files you trust (it loads them with
``trust_code=True``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np


def observations(env: gym.Env, policy, count: int, seed: int) -> np.ndarray:
    """``count`` observations of ``policy`` playing ``env`` (every fourth action random)."""
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    out = []
    episode = 0
    while len(out) < count:
        obs, _ = env.reset(seed=seed + episode)
        episode += 1
        done = False
        while not done and len(out) < count:
            out.append(np.asarray(obs, dtype=np.float64))
            if rng.random() < 0.25:
                action = env.action_space.sample()
            else:
                action, _ = policy.predict(obs, deterministic=True)
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    return np.stack(out)


def convert(zip_path: Path, out_dir: Path, count: int, keep: int) -> dict[str, np.ndarray]:
    """Convert one legacy agent, check it, and return the observations and actions to keep."""
    import torch
    from edgeft.agents.loader import load_meta, load_policy

    from edgeft.export import export_zip

    algo, _, name = zip_path.stem.partition("-")
    meta = load_meta(algo, str(zip_path), trust_code=True)
    env = gym.make(meta["env_id"], config=meta["env_config"])
    legacy = load_policy(algo, str(zip_path), env, trust_code=True)
    obs = observations(env, legacy, count, seed=12_345)
    path = export_zip(f"{algo}:{zip_path}", out_dir / zip_path.stem, trust_code=True)
    safe = load_policy(algo, str(path), env)
    a_old, _ = legacy.predict(obs, deterministic=True)
    a_new, _ = safe.predict(obs, deterministic=True)
    same_features = np.array_equal(legacy.features(obs), safe.features(obs))
    same_actions = np.array_equal(a_old, a_new)
    old_sd, new_sd = legacy.model.policy.state_dict(), safe.model.policy.state_dict()
    same_weights = old_sd.keys() == new_sd.keys() and all(
        torch.equal(old_sd[k], new_sd[k]) for k in old_sd
    )
    distinct = len({np.asarray(a).tobytes() for a in a_old})
    print(
        f"{algo}:{name}: {len(obs)} observations, {distinct} distinct actions; features "
        f"equal: {same_features}; actions equal: {same_actions}; "
        f"{len(old_sd)} weight tensors equal: {same_weights}"
    )
    if not (same_features and same_actions and same_weights):
        raise SystemExit(f"{zip_path}: the converted agent differs from the original")
    kept = obs[:keep].astype(np.float32)
    kept_actions, _ = legacy.predict(kept.astype(np.float64), deterministic=True)
    env.close()
    return {f"{algo}-{name}/observations": kept, f"{algo}-{name}/actions": np.asarray(kept_actions)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("legacy", type=Path, help="folder of the legacy ALGO-NAME.zip files")
    parser.add_argument("out", type=Path, help="folder to write the safe agents into")
    parser.add_argument("--observations", type=int, default=300)
    parser.add_argument("--keep", type=int, default=64)
    parser.add_argument(
        "--record",
        type=Path,
        default=None,
        help=".npz of kept observations and the original actions",
    )
    args = parser.parse_args(argv)
    zips = sorted(args.legacy.glob("*.zip"))
    if not zips:
        print(f"no .zip files in {args.legacy}", file=sys.stderr)
        return 2
    recorded: dict[str, np.ndarray] = {}
    for zp in zips:
        recorded.update(convert(zp, args.out, args.observations, args.keep))
    if args.record is not None:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.record, **recorded)
        print(f"recorded {len(zips)} agents' observations and actions in {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
