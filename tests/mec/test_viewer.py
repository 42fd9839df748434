"""The MEC viewer (frames for ``render_mode="rgb_array"``): frame size and type, what each pixel
shows checked against the round it draws (users coloured by alpha, user-server links in the
server's colour, users per server, energy queues), the cached static layer against full
redraws, and bad input."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs.mec.types import MECState
from edgeft.envs.mec.viewer import NO_ROUND, QUEUE, Viewer, server_colours
from edgeft.envs.rendering import rgba
from matplotlib import colormaps
from matplotlib.colors import Normalize

import edgeft  # noqa: F401  (registers the ids)

ENV_ID = "edgeft/MECOffloading-v0"
SMALL = {"num_users": 4, "num_servers": 2, "episode_rounds": 6}
#: users and servers far apart in the default 1000 m area
USERS = np.array([[200.0, 200.0], [200.0, 800.0], [800.0, 200.0], [800.0, 800.0]])
SERVERS = np.array([[500.0, 300.0], [500.0, 700.0]])


def _rgb(colour):
    colour = rgba(colour) if isinstance(colour, str) else np.asarray(colour)
    return np.round(colour[:3] * 255.0)


def _colours(frame):
    """The number of distinct colours in a frame."""
    packed = frame.astype(np.int64)
    return len(np.unique((packed[..., 0] << 16) | (packed[..., 1] << 8) | packed[..., 2]))


def _near(frame, pixel, colour, tol=12.0, reach=1):
    """Whether a pixel within ``reach`` of ``pixel`` has ``colour`` (within ``tol`` per
    channel)."""
    r, c = pixel
    patch = frame[r - reach : r + reach + 1, c - reach : c + reach + 1].reshape(-1, 3)
    return bool((np.abs(patch - _rgb(colour)).max(axis=1) <= tol).any())


def _action(alpha, server):
    """A "full" action: these alpha and servers, full power and GPU, equal shares."""
    n = len(alpha)
    return np.column_stack(
        [alpha, server, np.ones(n), np.full(n, 0.25), np.ones(n), np.full(n, 0.25)]
    ).astype(np.float64)


def _played(alpha, server, seed=0, **kw):
    """(env, unwrapped env, state with the test's positions, info) after one step."""
    env = gym.make(ENV_ID, **{**SMALL, **kw})
    env.reset(seed=seed)
    *_, info = env.step(_action(alpha, server))
    u = env.unwrapped
    return env, u, u.state.replace(user_pos=USERS, server_pos=SERVERS), info


def test_importing_the_env_and_viewer_does_not_import_matplotlib():
    code = (
        "import sys, gymnasium as gym, edgeft\n"
        "import edgeft.envs.mec.viewer\n"
        f"env = gym.make({ENV_ID!r}); env.reset(seed=0)\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'matplotlib']\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("size", [{}, {"width": 401, "height": 299}])
def test_frame_has_the_fixed_shape_and_is_not_blank(size):
    env = gym.make(ENV_ID, episode_rounds=3)
    u = env.unwrapped
    viewer = Viewer(u.config, **size)
    _, info = env.reset(seed=0)
    frames = [viewer.render(u.state, info)]
    env.action_space.seed(0)
    for _ in range(2):
        *_, info = env.step(env.action_space.sample())
        frames.append(viewer.render(u.state, info))
    for frame in frames:
        assert frame.shape == viewer.shape == (size.get("height", 480), size.get("width", 640), 3)
        assert frame.dtype == np.uint8
        assert _colours(frame) > 50
    assert not np.array_equal(frames[1], frames[2])


def test_users_are_coloured_by_their_layers_on_the_device():
    alpha = np.array([1, 8, 20, 31])
    _, u, state, info = _played(alpha, [0, 1, 0, 1])
    np.testing.assert_array_equal(info["alpha"], alpha)
    viewer = Viewer(u.config)
    frame = viewer.render(state, info)
    expected = colormaps["viridis"](Normalize(1.0, u.config.num_layers - 1.0)(alpha))
    for (r, c), colour in zip(viewer.pixels_of("map", USERS), expected):
        assert np.abs(frame[r, c] - _rgb(colour)).max() <= 1


def test_links_follow_the_association():
    colours = server_colours(2)
    background = _rgb("#f7f7f7")
    frames = []
    for server in (0, 1):
        _, u, state, info = _played([4, 4, 4, 4], [server] * 4)
        viewer = Viewer(u.config)
        frames.append(viewer.render(state, info))
        # the middle of each user's link to each server
        for j in (0, 1):
            mid = viewer.pixels_of("map", (USERS + SERVERS[j]) / 2)
            link = np.round(0.55 * _rgb(colours[j]) + 0.45 * background) / 255.0
            drawn = [_near(frames[-1], p, np.append(link, 1.0), tol=25) for p in mid]
            assert drawn == [j == server] * 4, (server, j, drawn)
        # users per server: server `server` served all four
        load = np.array([4.0 if j == server else 0.0 for j in (0, 1)])
        inside = viewer.pixels_of("load", np.stack([[0.0, 1.0], load / 2], -1))
        above = viewer.pixels_of("load", np.stack([[0.0, 1.0], load + 0.5], -1))
        for j in (0, 1):
            assert np.array_equal(frames[-1][tuple(inside[j])], _rgb(colours[j])) == (j == server)
            assert not np.array_equal(frames[-1][tuple(above[j])], _rgb(colours[j]))
    assert not np.array_equal(*frames)


def test_energy_queue_bars_in_budgets():
    _, u, state, info = _played([4, 4, 4, 4], [0, 1, 0, 1])
    q = np.array([0.5, 1.5, 3.0, 0.0])
    state = state.replace(energy_queue=q * state.energy_budget)
    info = {k: v for k, v in info.items() if k != "costs"}  # no cost dots over the bars
    viewer = Viewer(u.config)
    frame = viewer.render(state, info)
    users = np.arange(4.0)
    inside = viewer.pixels_of("queue", np.stack([users, q / 2], -1))
    above = viewer.pixels_of("queue", np.stack([users, q + 0.4], -1))
    for n in range(4):
        if q[n] > 0:
            assert np.array_equal(frame[tuple(inside[n])], _rgb(QUEUE)), n
        assert not _near(frame, above[n], QUEUE, reach=0), n


def test_reset_frame_has_no_association_and_history_restarts():
    env = gym.make(ENV_ID, **SMALL)
    u = env.unwrapped
    viewer = Viewer(u.config)
    _, info = env.reset(seed=2)
    state = u.state.replace(user_pos=USERS, server_pos=SERVERS)
    frame = viewer.render(state, info)
    for r, c in viewer.pixels_of("map", USERS):
        assert np.array_equal(frame[r, c], _rgb(NO_ROUND))
    assert len(viewer.history) == 1 and viewer.history[0][0] == 0
    for t in range(1, 4):
        *_, info = env.step(_action([2, 3, 4, 5], [0, 1, 1, 0]))
        viewer.render(u.state, info)
        viewer.render(u.state, info)  # drawn twice: recorded once
        assert viewer.history[-1] == (t, info["objective"], info["cost"])
        assert [h[0] for h in viewer.history] == list(range(t + 1))
    _, info = env.reset(seed=3)
    viewer.render(u.state, info)
    assert len(viewer.history) == 1 and viewer.history[0][0] == 0


def test_cached_frames_equal_full_redraws():
    env = gym.make(ENV_ID, **SMALL)
    u = env.unwrapped
    cached, full = Viewer(u.config), Viewer(u.config, cache=False)
    env.action_space.seed(1)
    for seed in (0, 1):  # the second episode has new servers
        _, info = env.reset(seed=seed)
        for t in range(4):
            assert np.array_equal(cached.render(u.state, info), full.render(u.state, info)), (
                seed,
                t,
            )
            *_, info = env.step(env.action_space.sample())


def test_close_then_render_draws_the_same_frame_as_a_new_viewer():
    _, u, state, info = _played([4, 4, 4, 4], [0, 1, 0, 1])
    viewer = Viewer(u.config)
    viewer.render(state, info)
    viewer.close()
    assert viewer.history == []
    assert np.array_equal(viewer.render(state, info), Viewer(u.config).render(state, info))


def test_bad_input_raises_naming_the_fix():
    _, u, state, info = _played([4, 4, 4, 4], [0, 1, 0, 1])
    viewer = Viewer(u.config)
    with pytest.raises(ValueError, match=r"state.index\(i\)"):
        viewer.render(MECState.stack([state, state]), info)
    with pytest.raises(ValueError, match="server"):
        viewer.render(state, dict(info, server=np.array([0, 1, 2, 0])))
    with pytest.raises(ValueError, match="alpha"):
        viewer.render(state, dict(info, alpha=np.ones(5)))
    with pytest.raises(ValueError, match="server"):
        viewer.render(state, {k: v for k, v in info.items() if k != "server"})
    with pytest.raises(ValueError, match="config"):
        Viewer({"num_users": 4})
    for bad in ({"width": 99999}, {"height": False}, {"history": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Viewer(u.config, **bad)
    with pytest.raises(ValueError, match="panel"):
        viewer.pixels_of("area", USERS)
    with pytest.raises(ValueError, match="render a frame"):
        Viewer(u.config).pixels_of("map", USERS)
