"""Both env families take exactly the elements of their action spaces: an action outside its
space (shape, dtype, NaN/inf, entries outside the bounds beyond round-off) raises ``ValueError``
naming the allowed values before anything changes, in the single and the vector env; within
the space, what the projection changes is reported and valid actions play as they always did."""

import re

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs.common import ACTION_TOLERANCE
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.mec.config import MECConfig

import edgeft  # noqa: F401  (registers the ids)

FEDLORA = "edgeft/FedLoRAScheduling-v0"
MEC = "edgeft/MECOffloading-v0"
MEC_SMALL = {"num_users": 4, "num_servers": 3, "num_layers": 8, "episode_rounds": 4}
FED_SMALL = {"num_devices": 4, "episode_rounds": 4}


def _full(alpha=2.0, server=1.0, power=0.5, band=0.2, fu=0.5, fe=0.2, users=4):
    return np.tile([alpha, server, power, band, fu, fe], (users, 1)).astype(np.float64)


def _batched(match: str) -> str:
    """``match`` for a batch of two: a vector env names the batch's shapes, (2, ...)."""
    import re

    def shape(m: re.Match) -> str:
        inner = m.group(2).rstrip(",")
        return rf"{m.group(1)}\(2, {inner}\)"

    return re.sub(r"((?:of|got) shape )\\\((.*?)\\\)", shape, match)


def test_batched_patterns_name_the_batch_shapes():
    assert _batched(r"of shape \(4, 6\), got shape \(6, 4\)") == (
        r"of shape \(2, 4, 6\), got shape \(2, 6, 4\)"
    )
    assert _batched(r"of shape \(24,\), got shape \(4, 6\)") == (
        r"of shape \(2, 24\), got shape \(2, 4, 6\)"
    )
    assert _batched("finite") == "finite"


def _refused(env_id, mode, action, match, small):
    """The single env's error message for ``action``; on the way, a vector env of two copies
    refuses it too (each copy's, with a message matching ``match``) and a refused step leaves
    its state as it was."""
    env = gym.make(env_id, action_mode=mode, **small).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError) as refused:
        env.step(action)
    venv = gym.make_vec(
        env_id, num_envs=2, vectorization_mode="vector_entry_point", action_mode=mode, **small
    )
    obs, _ = venv.reset(seed=0)
    arr = np.asarray(action)
    with pytest.raises(ValueError, match=_batched(match)):
        venv.step(np.stack([arr, arr]))
    # a refused step changes nothing: the next valid step plays as from the reset
    twin = gym.make_vec(
        env_id, num_envs=2, vectorization_mode="vector_entry_point", action_mode=mode, **small
    )
    twin_obs, _ = twin.reset(seed=0)
    np.testing.assert_array_equal(obs, twin_obs)
    venv.action_space.seed(5)
    twin.action_space.seed(5)
    a = venv.action_space.sample()
    np.testing.assert_array_equal(venv.step(a)[0], twin.step(twin.action_space.sample())[0])
    return str(refused.value)


# ----------------------------------------------------------------------------- MEC
@pytest.mark.parametrize(
    "action,match",
    [
        (np.zeros((6, 4)), r"of shape \(4, 6\), got shape \(6, 4\)"),  # transposed, same size
        (np.zeros(24), r"of shape \(4, 6\), got shape \(24,\)"),
        (_full(server=3.0), r"user 0's server = 3\.0, outside \[0, 2\]"),
        (_full(server=-1.0), r"user 0's server = -1\.0, outside \[0, 2\]"),
        (_full(alpha=8.0), r"user 0's alpha = 8\.0, outside \[1, 7\]"),
        (_full(alpha=0.0), r"user 0's alpha = 0\.0, outside \[1, 7\]"),
        (_full(power=-0.5), r"user 0's power = -0\.5, outside \[0, 1\]"),
        (_full(band=1.5), r"user 0's bandwidth = 1\.5, outside \[0, 1\]"),
        (_full(fu=2.0), r"user 0's freq_user = 2\.0, outside \[0, 1\]"),
        (_full(fe=-1e-6), r"user 0's freq_edge = -1e-06, outside \[0, 1\]"),
        (_full(fe=np.nan), "finite"),
        (_full(power=np.inf), "finite"),
        (_full().astype(np.complex128), "real numbers.*complex128"),
        (_full().astype(object), "real numbers.*object"),
        (_full().astype(str), "could not convert"),
    ],
)
def test_mec_full_refuses_what_is_not_in_its_space(action, match):
    """A ValueError whose message matches (the vector env and the state checks in _refused)."""
    assert re.search(match, _refused(MEC, "full", action, match, MEC_SMALL))


@pytest.mark.parametrize(
    "action,match",
    [
        (np.zeros((4, 6), dtype=np.float32), r"of shape \(24,\), got shape \(4, 6\)"),
        (np.full(24, 1.5, dtype=np.float32), r"outside \[-1, 1\]"),
        (np.r_[np.zeros(23), -2.0], r"user 3's freq_edge = -2\.0, outside \[-1, 1\]"),
        (np.zeros(24, dtype=np.complex64), "real numbers"),
    ],
)
def test_mec_box_refuses_what_is_not_in_its_space(action, match):
    """A ValueError whose message matches (the vector env and the state checks in _refused)."""
    assert re.search(match, _refused(MEC, "box", action, match, MEC_SMALL))


@pytest.mark.parametrize(
    "action,match",
    [
        (np.zeros((2, 4), dtype=np.int64), r"of shape \(8,\), got shape \(2, 4\)"),
        (np.r_[np.zeros(4), 3, 0, 0, 0], "MultiDiscrete range"),
        (np.zeros(8, dtype=np.complex128), "real numbers"),
    ],
)
def test_mec_discrete_refuses_what_is_not_in_its_space(action, match):
    """A ValueError whose message matches (the vector env and the state checks in _refused)."""
    assert re.search(match, _refused(MEC, "discrete", action, match, MEC_SMALL))


def test_mec_in_space_projection_is_reported():
    """Inside the space the projection (rounding, the MIN_FRACTION floor, per-server caps)
    works and is reported as before."""
    env = gym.make(MEC, **MEC_SMALL).unwrapped
    env.reset(seed=0)
    # alpha and server fractional, power below the floor, four users' shares of 0.9 on server 2
    action = _full(alpha=3.4, server=1.6, power=0.0, band=0.9, fu=1.0, fe=0.9)
    _, _, _, _, info = env.step(action)
    assert info["action_projected"]
    report = info["projection"]
    assert report["alpha"] == pytest.approx(0.4) and report["server"] == pytest.approx(0.4)
    assert report["power"] == pytest.approx(1e-3)
    assert report["bandwidth"] == pytest.approx(0.9 - 0.25)
    np.testing.assert_array_equal(info["alpha"], 3.0)
    np.testing.assert_array_equal(info["server"], 2)
    assert max(info["violations"].values()) < 1e-12


def test_mec_round_off_outside_the_bounds_is_clipped_as_before():
    env = gym.make(MEC, **MEC_SMALL).unwrapped
    env.reset(seed=0)
    tiny = ACTION_TOLERANCE / 10
    action = _full(alpha=7.0 + tiny, server=2.0 + tiny, power=1.0 + tiny, band=-tiny)
    _, _, _, _, info = env.step(action)
    np.testing.assert_array_equal(info["alpha"], 7.0)
    np.testing.assert_array_equal(info["server"], 2)
    np.testing.assert_array_equal(info["power"], env.state.p_max)  # clipped to 1 x p_max
    assert info["action_projected"]


def test_mec_reports_the_projection_under_the_fedlora_key():
    env = gym.make(MEC, **MEC_SMALL).unwrapped
    _, reset_info = env.reset(seed=0)
    assert not reset_info["action_projected"]
    _, _, _, _, info = env.step(_full(power=0.0))
    assert info["action_projected"] and info["projection"]["power"] > 0
    _, _, _, _, info = env.step(_full())
    assert not info["action_projected"] and max(info["projection"].values()) == 0
    assert "projected" not in info


# ----------------------------------------------------------------------------- FedLoRA
@pytest.mark.parametrize(
    "mode,action,match",
    [
        ("score", np.full(4, 5.0), r"schedule scores in \[-1, 1\].*entries outside"),
        ("score", np.r_[0.5, -1.5, 0.0, 0.0], r"entry 1 = -1\.5, outside \[-1, 1\]"),
        ("score", np.full(4, 5.0, dtype=np.float32), r"outside \[-1, 1\]"),
        ("bandwidth", np.r_[0.8, 0.8, -0.3, 0.4], r"entry 2 = -0\.3, outside \[0, 1\]"),
        ("bandwidth", np.r_[1.5, 0.0, 0.0, 0.0], r"entry 0 = 1\.5, outside \[0, 1\]"),
        ("bandwidth", [0.1, 0.1, 0.1, 2], r"entry 3 = 2\.0, outside \[0, 1\]"),
        ("bandwidth", np.full(4, 0.1, dtype=np.complex128), "real numbers.*complex128"),
        ("score", np.full(4, 0.1).astype(object), "real numbers.*object"),
        ("subset", np.array([1, 0, 1, 0], dtype=object), "real numbers.*object"),
        ("subset", np.array([1, 0, 1, 0], dtype=np.complex64), "real numbers"),
        ("count", np.array(2 + 0j), "real numbers"),
        ("count", np.array(2, dtype=object), "real numbers"),
    ],
)
def test_fedlora_refuses_what_is_not_in_its_space(mode, action, match):
    """A ValueError whose message matches (the vector env and the state checks in _refused)."""
    assert re.search(match, _refused(FEDLORA, mode, action, match, FED_SMALL))


def test_fedlora_in_space_projection_is_reported():
    """Shares in [0, 1] that sum to more than 1 are divided by their sum, as before."""
    env = gym.make(FEDLORA, **FED_SMALL).unwrapped
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0.8, 0.8, 0.0, 0.4]))
    np.testing.assert_allclose(info["bandwidth"] / env.config.bandwidth_hz, [0.4, 0.4, 0.0, 0.2])
    assert info["action_projected"] and not info["scheduled"][2]
    _, _, _, _, info = env.step(np.array([0.2, 0.2, 0.0, 0.1]))
    assert not info["action_projected"]


@pytest.mark.parametrize(
    "mode,action",
    [
        ("score", np.r_[1.0 + ACTION_TOLERANCE / 10, -0.2, 0.3, -1.0 - ACTION_TOLERANCE / 10]),
        ("bandwidth", np.r_[-ACTION_TOLERANCE / 10, 0.2, 0.3, 0.1]),
    ],
)
def test_fedlora_round_off_outside_the_bounds_is_clipped_as_before(mode, action):
    env = gym.make(FEDLORA, action_mode=mode, **FED_SMALL).unwrapped
    env.reset(seed=0)
    _, _, _, _, info = env.step(action)
    assert info["action_projected"]
    np.testing.assert_array_equal(info["scheduled"], action > 0)


# ----------------------------------------------------------------------------- both
@pytest.mark.parametrize(
    "env_id,mode",
    [(FEDLORA, m) for m in FedLoRAConfig.ACTION_MODES] + [(MEC, m) for m in MECConfig.ACTION_MODES],
)
def test_every_element_of_the_space_is_taken(env_id, mode):
    """Samples of the action space, its corners included, are accepted in every mode."""
    small = FED_SMALL if env_id == FEDLORA else MEC_SMALL
    env = gym.make(env_id, action_mode=mode, **small).unwrapped
    env.reset(seed=1)
    space = env.action_space
    space.seed(2)
    actions = [space.sample() for _ in range(12)]
    if isinstance(space, gym.spaces.Box):
        actions += [space.low.copy(), space.high.copy()]
    for action in actions:
        assert space.contains(action)
        _, reward, _, _, info = env.step(action)
        assert np.isfinite(reward)
        played = env.state.round_index if env_id == MEC else env.state.t
        if played >= small["episode_rounds"]:
            env.reset(seed=1)
