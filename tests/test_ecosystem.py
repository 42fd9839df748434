"""The ecosystem's own tools take both envs unchanged: TorchRL's ``GymEnv`` (its spec check, a
rollout, the constraint cost read from the info, an unknown keyword refused as ``TypeError``)
and Minari's ``DataCollector`` (episodes recorded with their infos, ``cost`` among them, into a
dataset that loads back). Each test skips, with the install line, where its library is missing;
both are in the ``ecosystem`` extra (part of ``dev``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import edgeft  # noqa: F401  (registers the ids)

FEDLORA = "edgeft/FedLoRAScheduling-v0"
MEC = "edgeft/MECOffloading-v0"
SMALL = {
    FEDLORA: {"num_devices": 5, "episode_rounds": 6},
    MEC: {"num_users": 4, "num_servers": 2, "num_layers": 8, "episode_rounds": 3},
}
INSTALL = 'python -m pip install -c constraints.txt -e ".[ecosystem]"'


def _need(module: str):
    return pytest.importorskip(module, reason=f"{module} is not installed ({INSTALL})")


@pytest.mark.parametrize("env_id", [FEDLORA, MEC])
def test_torchrl_gymenv_checks_and_rolls_out(env_id):
    _need("torchrl")
    from torchrl.envs import GymEnv
    from torchrl.envs.gym_like import default_info_dict_reader
    from torchrl.envs.utils import check_env_specs

    env = GymEnv(env_id, **SMALL[env_id])
    check_env_specs(env, seed=0)
    env.set_info_dict_reader(default_info_dict_reader(["cost"]))
    torch = _need("torch")
    torch.manual_seed(0)  # the random actions of a rollout without a policy
    env.set_seed(3)
    rounds = SMALL[env_id]["episode_rounds"]
    td = env.rollout(rounds + 2, break_when_any_done=True)
    assert td.batch_size[0] == rounds  # one episode, ended by its last round
    cost = td["next", "cost"].numpy().ravel()
    assert cost.shape == (rounds,) and np.isfinite(cost).all() and (cost >= 0).all()
    assert bool(td["next", "done"][-1]) and not td["next", "done"][:-1].any()
    # the same rollout from the same seeds: the env's own seeding reaches through TorchRL
    torch.manual_seed(0)
    env.set_seed(3)
    again = env.rollout(rounds, break_when_any_done=True)
    np.testing.assert_array_equal(again["next", "cost"].numpy().ravel(), cost)


@pytest.mark.parametrize("env_id", [FEDLORA, MEC])
def test_torchrl_unknown_keyword_is_a_type_error_naming_the_field(env_id):
    _need("torchrl")
    from torchrl.envs import GymEnv

    with pytest.raises(TypeError, match="not_a_field"):
        GymEnv(env_id, not_a_field=1)


@pytest.mark.parametrize("env_id", [FEDLORA, MEC])
def test_minari_records_episodes_with_their_cost(env_id, tmp_path, monkeypatch):
    minari = _need("minari")
    pytest.importorskip("jax", reason=f"Minari's DataCollector needs jax ({INSTALL})")
    pytest.importorskip("h5py", reason=f"Minari's HDF5 storage needs h5py ({INSTALL})")
    from minari import DataCollector

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env = DataCollector(gym.make(env_id, **SMALL[env_id]), record_infos=True)
    rounds = SMALL[env_id]["episode_rounds"]
    env.action_space.seed(0)
    costs = []
    for episode in range(2):
        env.reset(seed=10 + episode)
        row = []
        for _ in range(rounds):
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            row.append(float(info["cost"]))
        assert terminated or truncated
        costs.append(row)
    name = "mec" if env_id == MEC else "fedlora"
    dataset_id = f"edgeft/{name}-random-v0"
    env.create_dataset(
        dataset_id=dataset_id,
        algorithm_name="random",
        author="edgeft tests",
        author_email="tests@edgeft.invalid",
        description="random actions, two episodes of a small scenario",
        eval_env=env_id,
    )
    dataset = minari.load_dataset(dataset_id)
    assert dataset.total_episodes == 2 and dataset.total_steps == 2 * rounds
    for recorded, episode in zip(costs, dataset.iterate_episodes()):
        # the reset's info comes first (every key of a step's, no cost yet), then each step's
        stored = np.asarray(episode.infos["cost"], dtype=float)
        assert stored.shape == (rounds + 1,)
        np.testing.assert_allclose(stored[1:], recorded)
        assert episode.actions.shape[0] == rounds
