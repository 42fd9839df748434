"""Train a stable-baselines3 agent on an edgeft env.

Trains PPO, A2C, SAC, TD3 or DQN on any registered edgeft env and action mode the algorithm
supports, with a progress bar and periodic validation against a reference policy on validation
seeds; ``ppo-lag``, ``a2c-lag``, ``sac-lag``, ``td3-lag`` and ``dqn-lag`` train their algorithm
on the Lagrangian of the constrained problem (reward minus lambda times the constraint cost,
lambda by dual ascent; the off-policy ones price each sampled transition with the current
lambda; ``edgeft.agents.lagrangian``).
Validation plays the leaderboard's episode loop in the leaderboard's env for the run's
scenario (the reward-only env fields at their defaults) and reports the leaderboard's metrics
under the leaderboard's names: the family's headline value (for a family without one, its first
leaderboard column) and columns such as "return" (under the env's default reward), so its numbers
compare with ``edgeft compare`` and the leaderboard. Writes, into --out:

    model.agent.json, model.safetensors   the final model in the safe agent format (the policy's
                                          class and arguments, spaces, observation transform and
                                          normalisation, env config; the weights): load it with
                                          edgeft.make_policy("ppo:OUT/model", env)
    best.agent.json, best.safetensors     the model best on the validation metric
    eval.jsonl                            one line per validation
    curves.csv, curves.png                training curves (envs with a constraint cost): per
                                          batch of finished episodes the devices per round, the
                                          mean cost against its limit and lambda
    checkpoints/                          the latest checkpoint (policy, optimiser, VecNormalize
                                          statistics, replay buffer of SAC/TD3/DQN, step count;
                                          no pickles); rerunning the same command resumes from it

Defaults per env and algorithm (action mode, reward, observation transform, hyperparameters) are
in edgeft/agents/hyperparams.json; --config FILE (JSON with TrainConfig fields) and the flags
override them. Seeds: training env seeds are SEED, SEED+1, ... (SEED < 100,000,000); validation
seeds start at 500,000,000; the leaderboard's test seeds at 1,000,000,000, so they never overlap.

Examples:

    edgeft train --env edgeft/FedLoRAScheduling-v0 --algo ppo --timesteps 300000 --seed 0
    edgeft train --env edgeft/MECOffloading-v0 --algo ppo --timesteps 50000 --out runs/mec-ppo
    edgeft train --env edgeft/FedLoRAScheduling-v0 --algo dqn --timesteps 1e5 --set num_devices=50
    edgeft train --env edgeft/FedLoRAScheduling-v0 --algo ppo --init bc:lyapunov --timesteps 0
    edgeft train --env edgeft/FedLoRAScheduling-v0 --algo ppo-lag --timesteps 3e6 --seed 0
    edgeft train --env edgeft/FedLoRAScheduling-v0 --algo ppo-lag --policy fedlora-shared

With ``--init bc:POLICY`` the policy is first behaviour-cloned from the reference POLICY on the
run's own observations (DAgger, ``edgeft.agents.bc``; settings in the ``bc`` field, per-iteration
log in ``OUT/bc.jsonl``), then trained with RL for ``--timesteps`` steps (0 = ship the clone).
"""

from __future__ import annotations

from edgeft.train.callbacks import lagrangian_wrapper
from edgeft.train.cli import add_arguments, run
from edgeft.train.config import (
    ALGO_SPACES,
    HYPERPARAMS_FILE,
    MAX_TRAIN_SEED,
    VALIDATION_SEED_BASE,
    TrainConfig,
    build_config,
    default_config,
    default_eval_policy,
    env_family,
    make_env,
    make_env_config,
    planned_timesteps,
    steps_per_rollout,
)
from edgeft.train.evaluator import Evaluator, mean_metrics, validation_metric
from edgeft.train.files import checkpoint_files, run_meta, save_model, write_checkpoint
from edgeft.train.loop import train

__all__ = [
    "ALGO_SPACES",
    "HYPERPARAMS_FILE",
    "MAX_TRAIN_SEED",
    "VALIDATION_SEED_BASE",
    "Evaluator",
    "TrainConfig",
    "add_arguments",
    "build_config",
    "checkpoint_files",
    "default_config",
    "default_eval_policy",
    "env_family",
    "lagrangian_wrapper",
    "make_env",
    "make_env_config",
    "mean_metrics",
    "planned_timesteps",
    "run",
    "run_meta",
    "save_model",
    "steps_per_rollout",
    "train",
    "validation_metric",
    "write_checkpoint",
]
