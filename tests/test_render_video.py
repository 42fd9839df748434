"""Pictures of both envs through the tools people use: ``render_mode="rgb_array"`` frames,
Gymnasium's ``RecordVideo`` (an mp4 per episode, read back frame by frame) and SB3's
``make_vec_env`` (which asks for ``render_mode="rgb_array"``)."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import RecordVideo

import edgeft  # noqa: F401  (registers the ids)

#: small episodes of each env id
CASES = {
    "edgeft/FedLoRAScheduling-v0": {"num_devices": 5, "episode_rounds": 4},
    "edgeft/MECOffloading-v0": {"num_users": 6, "num_servers": 2, "episode_rounds": 4},
}
SHAPE = (480, 640, 3)


@pytest.mark.parametrize("env_id", CASES)
def test_rgb_array_frames(env_id):
    env = gym.make(env_id, render_mode="rgb_array", **CASES[env_id])
    assert "rgb_array" in env.metadata["render_modes"] and env.metadata["render_fps"] > 0
    assert env.render_mode == "rgb_array"
    env.reset(seed=0)
    env.action_space.seed(0)
    frames = [env.render()]
    for _ in range(2):
        env.step(env.action_space.sample())
        frames.append(env.render())
    for frame in frames:
        assert isinstance(frame, np.ndarray) and frame.shape == SHAPE and frame.dtype == np.uint8
    assert not np.array_equal(frames[1], frames[2])
    env.close()


@pytest.mark.parametrize("env_id", CASES)
def test_record_video_writes_one_frame_per_round(env_id, tmp_path):
    moviepy = pytest.importorskip(
        "moviepy", reason="RecordVideo needs moviepy: pip install moviepy"
    )
    env = RecordVideo(
        gym.make(env_id, render_mode="rgb_array", **CASES[env_id]),
        str(tmp_path / "videos"),
        episode_trigger=lambda episode: True,
        name_prefix="episode",
    )
    env.reset(seed=0)
    env.action_space.seed(0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps, done = steps + 1, terminated or truncated
    env.close()
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["episode-episode-0.mp4"]
    clip = moviepy.VideoFileClip(str(videos[0]))
    try:
        frames = list(clip.iter_frames())
    finally:
        clip.close()
    assert len(frames) == steps + 1  # the reset's frame and one per round
    assert frames[0].shape == SHAPE
    # compressed frames still tell the rounds apart
    assert np.abs(frames[1].astype(int) - frames[-1].astype(int)).mean() > 0.5


@pytest.mark.parametrize("env_id", CASES)
def test_sb3_make_vec_env_renders(env_id):
    from stable_baselines3.common.env_util import make_vec_env

    vec = make_vec_env(env_id, n_envs=2, seed=0, env_kwargs=CASES[env_id])
    vec.reset()
    images = vec.get_images()
    assert len(images) == 2 and all(i.shape == SHAPE and i.dtype == np.uint8 for i in images)
    grid = vec.render(mode="rgb_array")
    assert grid.ndim == 3 and grid.dtype == np.uint8
    vec.close()
