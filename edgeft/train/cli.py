"""``edgeft train``: its arguments and the run."""

from __future__ import annotations

import argparse
import sys

from edgeft.agents.lagrangian import base_algo
from edgeft.envs.family import families
from edgeft.overrides import parse_overrides
from edgeft.train.config import ALGO_SPACES, TrainConfig, build_config, default_eval_policy
from edgeft.train.loop import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # the defaults named in the help are TrainConfig's, unless hyperparams.json or --config
    _add_run(parser.add_argument_group("the run"))
    _add_settings(parser.add_argument_group("env, algorithm and Lagrangian settings"))
    _add_validation(parser.add_argument_group("validation and checkpoints"))
    _add_policy(parser.add_argument_group("policy network and start"))


_TUNED = "hyperparams.json's for the env and algorithm, else"


def _add_run(parser: argparse._ArgumentGroup) -> None:
    d = TrainConfig
    parser.add_argument("--env", default=None, help=f"env id (default: {d.env_id})")
    parser.add_argument(
        "--algo",
        default=None,
        choices=sorted(ALGO_SPACES),
        help=f"SB3 algorithm (default: {d.algo})",
    )
    parser.add_argument(
        "--timesteps",
        type=float,
        default=None,
        help=f"total env steps (default: {d.timesteps:,}); training stops at the "
        "end of the rollout that reaches it, and says so when that is later",
    )
    parser.add_argument("--seed", type=int, default=None, help=f"training seed (default: {d.seed})")
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="JSON file of TrainConfig fields (env_config, hyperparams, ...)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: runs/ENVNAME-ALGO-sSEED, e.g. runs/fedlorascheduling-ppo-s0)",
    )


def _add_settings(parser: argparse._ArgumentGroup) -> None:
    d, tuned = TrainConfig, _TUNED
    parser.add_argument(
        "--set",
        dest="env_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="env config field, repeatable (e.g. --set action_mode=count)",
    )
    parser.add_argument(
        "--hp",
        dest="hp_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="SB3 hyperparameter, repeatable (e.g. --hp learning_rate=1e-4)",
    )
    parser.add_argument(
        "--lag",
        dest="lag_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Lagrangian setting of the -lag algorithms, repeatable (e.g. --lag "
        "ki=0.02; keys: edgeft.agents.lagrangian.LAGRANGIAN_DEFAULTS)",
    )
    parser.add_argument(
        "--n-envs",
        type=int,
        default=None,
        help=f"parallel env copies (default: {tuned} {d.n_envs})",
    )


def _add_validation(parser: argparse._ArgumentGroup) -> None:
    d = TrainConfig
    parser.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help=f"validate every N steps (default: {d.eval_every:,}; 0 = only at the end)",
    )
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=None,
        help=f"validation episodes per validation (default: {d.eval_episodes}; 0 = no validation)",
    )
    policies = ", ".join(f"{f.eval_policy} ({f.name})" for f in families() if f.eval_policy)
    parser.add_argument(
        "--eval-policy",
        default=None,
        help=f"reference policy played on the validation seeds (default: "
        f"{policies}; none with --config unless the file names one)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help=f"checkpoint every N steps (default: {d.checkpoint_every:,})",
    )


def _add_policy(parser: argparse._ArgumentGroup) -> None:
    d, tuned = TrainConfig, _TUNED
    parser.add_argument(
        "--init",
        default=None,
        metavar="bc:POLICY",
        help="behaviour-clone a reference policy before RL (e.g. bc:lyapunov; "
        "settings: the 'bc' field of the config); --timesteps 0 = BC only",
    )
    parser.add_argument(
        "--policy",
        default=None,
        help=f"SB3 policy: MlpPolicy, or a size-independent network shared "
        f"over devices or users that plays any K or N: fedlora-shared "
        f"(ppo, a2c, sac, td3 and their -lag variants), mec-shared (ppo, "
        f"a2c); it brings its own features (default: {tuned} {d.policy})",
    )
    parser.add_argument(
        "--scenarios",
        default=None,
        metavar="NAME",
        help="train on an instance distribution: every episode a new scenario drawn from "
        "its training split (FedLoRA: fedlora-general; edgeft.envs.fedlora.scenarios); "
        "validation stays on the run's scenario; with --init bc:POLICY each env copy's "
        "teacher is built for its current scenario",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = build_config(
            args.env,
            args.algo,
            args.config,
            timesteps=args.timesteps,
            seed=args.seed,
            n_envs=args.n_envs,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            eval_policy=args.eval_policy,
            checkpoint_every=args.checkpoint_every,
            progress=False if args.no_progress else None,
            init=args.init,
            policy=args.policy,
            scenarios=args.scenarios,
            env_config=parse_overrides(args.env_overrides) or None,
            hyperparams=parse_overrides(args.hp_overrides) or None,
            lagrangian=parse_overrides(args.lag_overrides) or None,
        )
        if args.eval_policy is None and not args.config:
            cfg.eval_policy = default_eval_policy(cfg.env_id)
        env_name = cfg.env_id.split("/")[-1].split("-")[0].lower()  # a folder name, not a family
        out = args.out or f"runs/{env_name}-{cfg.algo}-s{cfg.seed}"
        path = train(cfg, out)
    except (ValueError, FileNotFoundError) as err:
        print(f"edgeft train: error: {err}", file=sys.stderr)
        return 2
    weights = path.name[: -len(".agent.json")] + ".safetensors"
    print(
        f"saved {path} (+ {weights} beside it); load it with "
        f"edgeft.make_policy('{base_algo(cfg.algo)}:{path}', env)"
    )
    return 0
