"""The FedLoRA viewer (frames for ``render_mode="rgb_array"``): frame size and type, what each
pixel shows checked against the round it draws (scheduled colours, marker areas, the delay
gauge, the curves), device placement checked against the generator's own path-loss geometry,
the cached static layer against full redraws, and bad input."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.fedlora.generator import cell_gain_db, initial_state, start_channel
from edgeft.envs.fedlora.viewer import (
    IDLE,
    LOSS,
    OVER,
    QUEUE,
    SCHEDULED,
    WITHIN,
    Viewer,
    device_positions,
    sunflower_positions,
)
from edgeft.envs.rendering import rgba

import edgeft  # noqa: F401  (registers the ids)

ENV_ID = "edgeft/FedLoRAScheduling-v0"
#: four devices far apart in the default cell (centre (300, 0), radius 50)
LINE = np.array([[270.0, -20.0], [290.0, 20.0], [310.0, -20.0], [330.0, 20.0]])


def _rgb(colour):
    return np.round(rgba(colour)[:3] * 255.0)


def _near(frame, pixel, colour, tol=12.0, reach=1):
    """Whether a pixel within ``reach`` of ``pixel`` has ``colour`` (within ``tol`` per
    channel)."""
    r, c = pixel
    patch = frame[r - reach : r + reach + 1, c - reach : c + reach + 1].reshape(-1, 3)
    return bool((np.abs(patch - _rgb(colour)).max(axis=1) <= tol).any())


def _colours(frame):
    """The number of distinct colours in a frame."""
    packed = frame.astype(np.int64)
    return len(np.unique((packed[..., 0] << 16) | (packed[..., 1] << 8) | packed[..., 2]))


def _played(shares, seed=0, **kw):
    """(env, unwrapped env, info) after one step with bandwidth shares ``shares``."""
    env = gym.make(ENV_ID, num_devices=len(shares), **kw)
    env.reset(seed=seed)
    *_, info = env.step(np.asarray(shares, dtype=np.float64))
    return env, env.unwrapped, info


def test_importing_the_env_and_viewer_does_not_import_matplotlib():
    code = (
        "import sys, gymnasium as gym, edgeft\n"
        "import edgeft.envs.fedlora.viewer\n"
        f"env = gym.make({ENV_ID!r}); env.reset(seed=0)\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'matplotlib']\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("size", [{}, {"width": 401, "height": 299}])
def test_frame_has_the_fixed_shape_and_is_not_blank(size):
    env, u, info = _played([0.5, 0.0, 0.3, 0.0])
    viewer = Viewer(u.config, **size)
    frames = [viewer.render(u.state, info, positions=LINE)]
    *_, info = env.step(np.array([0.0, 0.4, 0.0, 0.4]))
    frames.append(viewer.render(u.state, info, positions=LINE))
    for frame in frames:
        assert frame.shape == viewer.shape == (size.get("height", 480), size.get("width", 640), 3)
        assert frame.dtype == np.uint8
        assert _colours(frame) > 50  # text, markers, bars, curves: far from a blank canvas
        for colour in (SCHEDULED, IDLE):
            assert (np.abs(frame.reshape(-1, 3) - _rgb(colour)).max(axis=1) == 0).any()


def test_scheduled_devices_are_drawn_in_the_scheduled_colour():
    env, u, info = _played([0.7, 0.0, 0.2, 0.0])
    assert info["scheduled"].tolist() == [True, False, True, False]
    viewer = Viewer(u.config)
    first = viewer.render(u.state, info, positions=LINE)
    px = viewer.pixels_of("map", LINE)
    for k, on in enumerate(info["scheduled"]):
        assert np.array_equal(first[px[k, 0], px[k, 1]], _rgb(SCHEDULED if on else IDLE))
    *_, info = env.step(np.array([0.0, 0.5, 0.0, 0.5]))
    second = viewer.render(u.state, info, positions=LINE)
    for k, on in enumerate(info["scheduled"]):
        assert on == (k in (1, 3))
        assert np.array_equal(second[px[k, 0], px[k, 1]], _rgb(SCHEDULED if on else IDLE))
    assert not np.array_equal(first, second)


def test_marker_area_grows_with_the_bandwidth_share():
    counts = []
    for share in (0.1, 0.8):
        _, u, info = _played([share, 0.0, 0.0, 0.0])
        viewer = Viewer(u.config)
        frame = viewer.render(u.state, info, positions=LINE)
        r, c = viewer.pixels_of("map", LINE[:1])[0]
        box = frame[r - 30 : r + 31, c - 30 : c + 31].reshape(-1, 3)
        counts.append(int((np.abs(box - _rgb(SCHEDULED)).max(axis=1) <= 10).sum()))
    # marker area 25 + 900 x share (points^2): 115 vs 745, less the black ring of the
    # slowest device on both
    assert counts[1] > 3 * counts[0] > 0


def test_bandwidth_bars_reach_each_share():
    _, u, info = _played([0.6, 0.0, 0.3, 0.1])
    viewer = Viewer(u.config)
    frame = viewer.render(u.state, info, positions=LINE)
    share = info["bandwidth"] / u.config.bandwidth_hz
    inside = viewer.pixels_of("bandwidth", np.stack([np.arange(4), share / 2], -1))
    above = viewer.pixels_of("bandwidth", np.stack([np.arange(4), share + 0.05], -1))
    for k in range(4):
        if share[k] > 0.05:
            assert np.array_equal(frame[inside[k, 0], inside[k, 1]], _rgb(SCHEDULED))
        assert not _near(frame, above[k], SCHEDULED, reach=0)


@pytest.mark.parametrize("ratio, colour", [(0.5, WITHIN), (1.5, OVER), (3.7, OVER)])
def test_delay_gauge_against_the_budget(ratio, colour):
    _, u, info = _played([0.5, 0.0, 0.3, 0.0])
    viewer = Viewer(u.config)
    frame = viewer.render(u.state, dict(info, delay_ratio=ratio), positions=LINE)
    r, c = viewer.pixels_of("gauge", [[ratio / 2, 0.0]])[0]
    assert np.array_equal(frame[r, c], _rgb(colour))
    r, c = viewer.pixels_of("gauge", [[ratio + 0.15, 0.0]])[0]
    assert not _near(frame, (r, c), colour, reach=0)


def test_history_follows_the_episode_and_restarts_at_reset():
    env = gym.make(ENV_ID, num_devices=4)
    u = env.unwrapped
    viewer = Viewer(u.config)
    _, info = env.reset(seed=3)
    viewer.render(u.state, info)
    loss0 = u.state.loss
    assert len(viewer.history) == 1 and viewer.history[0][:2] == (0, loss0)
    assert np.isnan(viewer.history[0][2])
    rng = np.random.default_rng(0)
    for t in range(1, 7):
        *_, info = env.step(rng.random(4) * 0.5)
        frame = viewer.render(u.state, info)
        viewer.render(u.state, info)  # drawn twice: recorded once
        assert viewer.history[-1] == (t, info["loss"], info["delay_ratio"], info["delay_queue"])
        assert [h[0] for h in viewer.history] == list(range(t + 1))
    # the curves pass through the last round's values
    rounds = np.array([h[0] for h in viewer.history], dtype=float)
    losses = np.array([h[1] for h in viewer.history])
    queues = np.array([h[3] for h in viewer.history])
    px = viewer.pixels_of("loss", np.stack([rounds, losses], -1))
    assert all(_near(frame, p, LOSS, tol=40) for p in px[1:])
    px = viewer.pixels_of("queue", np.stack([rounds, queues], -1))
    assert _near(frame, px[-1], QUEUE, tol=40)
    _, info = env.reset(seed=4)
    viewer.render(u.state, info)
    assert len(viewer.history) == 1 and viewer.history[0][0] == 0


def test_reset_frame_draws_nobody_scheduled():
    env = gym.make(ENV_ID, num_devices=4)
    u = env.unwrapped
    _, info = env.reset(seed=0)
    viewer = Viewer(u.config)
    frame = viewer.render(u.state, info, positions=LINE)
    px = viewer.pixels_of("map", LINE)
    assert all(np.array_equal(frame[r, c], _rgb(IDLE)) for r, c in px)
    assert np.array_equal(viewer.render(u.state, None, positions=LINE), frame)


@pytest.mark.parametrize(
    "kw", [{}, {"preset": "paper"}, {"cell_center_m": 60.0, "cell_radius_m": 55.0}]
)
def test_block_fading_positions_reproduce_the_mean_gains(kw):
    config = FedLoRAConfig(**kw)
    channel = start_channel(np.random.default_rng(5), config)
    pos = device_positions(config, channel)
    assert pos.shape == (config.num_devices, 2)
    # the generator's own path loss of the drawn positions gives back the channel's mean gains
    np.testing.assert_allclose(cell_gain_db(config, pos), channel.mean_db, rtol=0, atol=1e-9)
    inside = np.hypot(pos[:, 0] - config.cell_center_m, pos[:, 1])
    assert np.all(inside <= config.cell_radius_m * (1 + 1e-9))


def test_correlated_channel_positions_are_the_devices_positions():
    config = FedLoRAConfig(num_devices=6, mobility_speed_mps=4.0, fading_correlation=0.5)
    channel = start_channel(np.random.default_rng(1), config)
    rng = np.random.default_rng(2)
    for _ in range(3):
        channel.next(rng)
        pos = device_positions(config, channel)
        np.testing.assert_array_equal(pos, channel.pos)
        pos[:] = 0.0  # a copy: the channel is untouched
        assert not np.array_equal(channel.pos, pos)


def test_trace_channel_places_stronger_devices_nearer_the_server():
    config = FedLoRAConfig(num_devices=8, channel="3gpp-umi")
    channel = start_channel(np.random.default_rng(0), config)
    pos = device_positions(config, channel)
    inside = np.hypot(pos[:, 0] - config.cell_center_m, pos[:, 1])
    assert np.all(inside <= config.cell_radius_m * (1 + 1e-9))
    distance = np.hypot(pos[:, 0], pos[:, 1])
    mean_db = channel.db.mean(axis=0)
    assert np.array_equal(np.argsort(distance), np.argsort(-mean_db))


def test_default_layout_without_a_channel():
    config = FedLoRAConfig(num_devices=30)
    pos = device_positions(config)
    np.testing.assert_array_equal(pos, sunflower_positions(config))
    assert np.all(np.hypot(pos[:, 0] - config.cell_center_m, pos[:, 1]) <= config.cell_radius_m)
    gaps = np.hypot(*(pos[:, None] - pos[None]).transpose(2, 0, 1))
    assert gaps[~np.eye(30, dtype=bool)].min() > 1.0


@pytest.mark.parametrize("moving", [False, True])
def test_cached_frames_equal_full_redraws(moving):
    # limits that grow (a starved device blows D / D-bar up in round 2), moving devices (their
    # labels leave the static layer) and a reset in between
    kw = {"mobility_speed_mps": 3.0, "fading_correlation": 0.8} if moving else {}
    env = gym.make(ENV_ID, num_devices=6, episode_rounds=10, **kw)
    u = env.unwrapped
    cached, full = Viewer(u.config), Viewer(u.config, cache=False)
    rng = np.random.default_rng(0)
    starved = np.array([1e-4, 0.0, 0.0, 0.0, 0.0, 0.0])
    for seed in (0, 1):
        _, info = env.reset(seed=seed)
        for t in range(4):
            pos = device_positions(u.config, u._fading)
            assert np.array_equal(
                cached.render(u.state, info, positions=pos),
                full.render(u.state, info, positions=pos),
            ), (seed, t)
            *_, info = env.step(starved if t == 1 else rng.random(6) ** 3)


def test_close_then_render_draws_the_same_frame_as_a_new_viewer():
    _, u, info = _played([0.5, 0.0, 0.3, 0.0])
    viewer = Viewer(u.config)
    viewer.render(u.state, info, positions=LINE)
    viewer.close()
    assert viewer.history == []
    again = viewer.render(u.state, info, positions=LINE)
    assert np.array_equal(again, Viewer(u.config).render(u.state, info, positions=LINE))


def test_bad_input_raises_naming_the_fix():
    _, u, info = _played([0.5, 0.0, 0.3, 0.0])
    viewer = Viewer(u.config)
    with pytest.raises(ValueError, match=r"state.index\(i\)"):
        viewer.render(initial_state(u.config, batch=2), info)
    with pytest.raises(ValueError, match="positions"):
        viewer.render(u.state, info, positions=LINE[:3])
    with pytest.raises(ValueError, match="positions"):
        viewer.render(u.state, info, positions=np.full((4, 2), np.nan))
    with pytest.raises(ValueError, match="scheduled"):
        viewer.render(u.state, dict(info, scheduled=np.ones(5, bool)))
    with pytest.raises(ValueError, match="bandwidth"):
        viewer.render(u.state, {k: v for k, v in info.items() if k != "bandwidth"})
    with pytest.raises(ValueError, match="config"):
        Viewer({"num_devices": 4})
    for bad in ({"width": True}, {"height": 10}, {"history": 1}, {"dpi": 2.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Viewer(u.config, **bad)
    with pytest.raises(ValueError, match="channel"):
        device_positions(u.config, object())
    batched = start_channel(np.random.default_rng(0), u.config)
    batched.mean_db = np.stack([batched.mean_db] * 2)
    with pytest.raises(ValueError, match="one env"):
        device_positions(u.config, batched)
    with pytest.raises(ValueError, match="panel"):
        viewer.pixels_of("cell", LINE)
    with pytest.raises(ValueError, match="render a frame"):
        Viewer(u.config).pixels_of("map", LINE)
