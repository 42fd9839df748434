"""Pictures of the MEC offloading env: one RGB frame per round, for ``render_mode="rgb_array"``
(Gymnasium's ``RecordVideo``, SB3's ``make_vec_env``).

:class:`Viewer` turns the env's typed :class:`~edgeft.envs.mec.types.MECState` and the last
step's info into an ``np.ndarray`` of shape (height, width, 3), dtype uint8 (480 x 640 by
default, fixed for the viewer's life). A frame shows

- the area: the M edge servers (squares, one colour each) and the N users (dots) where the
  state has them, each user's dot coloured by alpha_n, the layers it trains on the device
  (colour bar), and a line from each user to the server it used in the last round (chi, in
  that server's colour);
- every user's energy queue in per-round budgets, Q_n / e_bar_n (bars), and the round's device
  energy in budgets, e_n / e_bar_n (dots; the constraint cost ``info["costs"]``, limit 1 on
  average);
- how many users each server served in the round;
- the round's weighted objective and mean constraint cost over the rounds the viewer has drawn
  in this episode (kept in the viewer, up to ``history`` rounds; restarted when the round goes
  back, i.e. after a reset).

The state after a step holds the next round's positions (users move between rounds, by about
``mobility_step_m``), so the association lines end where the users are now, not where they
were when they uploaded. Before the first step (the reset's info) no association is drawn.

Rendering uses matplotlib's Agg canvas (``edgeft.envs.rendering.Canvas``: no pyplot, static
layer drawn once); matplotlib is imported on the first :meth:`Viewer.render`, so importing this
module (and the env) does not import it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
from edgeft.envs.mec.config import MECConfig
from edgeft.envs.mec.types import MECState
from edgeft.envs.rendering import (
    Canvas,
    axes_pixels,
    check_size,
    finite_max,
    nice_ceil,
    rgba,
)

#: one colour per server, cycled when there are more servers
SERVER_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
)
#: colour map of alpha (layers on the device)
ALPHA_CMAP = "viridis"
NO_ROUND = "#bdbdbd"
QUEUE = "#756bb1"
COST = "#e6550d"
OBJECTIVE = "#3182bd"
#: server numbers are written next to the squares up to this many servers
_MAX_LABELS = 20


def server_colours(num_servers: int) -> np.ndarray:
    """RGBA colour of each server, (M, 4)."""
    return np.array([rgba(SERVER_COLOURS[m % len(SERVER_COLOURS)]) for m in range(num_servers)])


class Viewer:
    """Frames of one MEC env (see the module docstring for what a frame shows).

    Args:
        config: the env's config in force (N, M, Upsilon, the area, T; real mode: the env's
            ``config_in_force``, whose Upsilon is the real model's).
        width, height: frame size in pixels (default 640 x 480).
        dpi: dots per inch of the figure.
        history: rounds of objective and cost kept for the curves.
        cache: draw axes, ticks and labels only when they change (False: the whole figure every
            frame, same pixels, slower).

    Raises:
        ValueError: a config of another type, or sizes out of range.
    """

    def __init__(
        self,
        config: MECConfig,
        *,
        width: int = 640,
        height: int = 480,
        dpi: int = 100,
        history: int = 200,
        cache: bool = True,
    ) -> None:
        if not isinstance(config, MECConfig):
            raise ValueError(f"config must be a MECConfig, got {type(config).__name__}")
        self.config = config
        self.width = check_size("width", width, 320, 4096)
        self.height = check_size("height", height, 240, 4096)
        self.dpi = check_size("dpi", dpi, 20, 600)
        self.cache = bool(cache)
        self._history: deque[tuple[int, float, float]] = deque(
            maxlen=check_size("history", history, 2, 1_000_000)
        )
        self._canvas: Canvas | None = None
        self._a: dict[str, Any] = {}
        self._tops: dict[str, float] = {}
        self._servers: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of every frame: (height, width, 3)."""
        return (self.height, self.width, 3)

    # ------------------------------------------------------------------ public
    def render(self, state: MECState, info: Mapping[str, Any] | None = None) -> np.ndarray:
        """The frame of the env's state after a step (or a reset) and that step's info.

        Args:
            state: one env's MECState (``env.unwrapped.state``; unbatched): positions, energy
                queues and budgets, the round index.
            info: the last step's info (``alpha``, ``server``, ``costs``, ``objective``,
                ``cost``, ``delay_mean``, ``energy_total`` are read); None, or any info at round
                0 (a reset's, which has a step's keys with nothing played), draws the users
                without association.

        Returns:
            A new uint8 array of shape :attr:`shape`.

        Raises:
            ValueError: a batched or mis-shaped state, info arrays of the wrong shape or
                server indices out of range.
        """
        cfg = self.config
        n, m = cfg.num_users, cfg.num_servers
        if np.ndim(state.round_index) == 0 and int(state.round_index) == 0:  # a reset
            info = None
        users = np.asarray(state.user_pos, dtype=np.float64)
        servers = np.asarray(state.server_pos, dtype=np.float64)
        if users.shape != (n, 2) or servers.shape != (m, 2) or np.ndim(state.round_index):
            raise ValueError(
                f"state must be one env's MECState (user_pos ({n}, 2), server_pos "
                f"({m}, 2)), got user_pos {users.shape} and server_pos "
                f"{servers.shape}; for a vector env draw state.index(i)"
            )
        info = {} if info is None else info
        played = "alpha" in info
        if played:
            alpha = self._per_user(info, "alpha")
            server = self._per_user(info, "server").astype(np.int64)
            if server.min() < 0 or server.max() >= m:
                raise ValueError(f"info['server'] must hold server indices in [0, {m - 1}]")
            costs = self._per_user(info, "costs") if "costs" in info else np.full(n, np.nan)
        queue = np.asarray(state.energy_queue, dtype=np.float64) / np.asarray(
            state.energy_budget, dtype=np.float64
        )
        t = int(state.round_index)
        objective = float(info.get("objective", np.nan))
        cost = float(info.get("cost", np.nan))
        if self._record(t, objective, cost):
            self._tops = {}

        if self._canvas is None:
            self._build()
        canvas, a = self._canvas, self._a
        assert canvas is not None
        if self._servers is None or not np.array_equal(servers, self._servers):
            a["servers"].set_offsets(servers)
            for j, label in enumerate(a["server_labels"]):
                label.set_position((servers[j, 0], servers[j, 1]))
            canvas.invalidate()  # a new episode's servers: their labels are static
            self._servers = servers.copy()
        a["users"].set_offsets(users)
        if played:
            a["users"].set_facecolor(a["cmap"](a["norm"](alpha)))
            a["links"].set_segments(np.stack([users, servers[server]], axis=1))
            a["links"].set_color(a["colours"][server] * [1.0, 1.0, 1.0, 0.55])
            load = np.bincount(server, minlength=m).astype(np.float64)
        else:
            a["users"].set_facecolor(np.tile(rgba(NO_ROUND), (n, 1)))
            a["links"].set_segments([])
            load = np.zeros(m)
            costs = np.full(n, np.nan)

        x = np.arange(n, dtype=np.float64)
        a["queues"].set_segments(
            np.stack([np.stack([x, np.zeros(n)], -1), np.stack([x, queue], -1)], axis=1)
        )
        a["costs"].set_offsets(np.stack([x, np.where(np.isfinite(costs), costs, -1.0)], -1))
        top = self._grow("queue", 1.1 * max(finite_max(queue), finite_max(costs)), 2.0)
        canvas.set_limits(a["ax_queue"], ylim=(0.0, top))
        xm = np.arange(m, dtype=np.float64)
        a["load"].set_segments(
            np.stack([np.stack([xm, np.zeros(m)], -1), np.stack([xm, load], -1)], axis=1)
        )
        canvas.set_limits(a["ax_load"], ylim=(0.0, self._grow("load", 1.1 * load.max(), 5.0)))

        hist = np.asarray(self._history, dtype=np.float64)
        a["objective"].set_data(hist[:, 0], hist[:, 1])
        a["cost"].set_data(hist[:, 0], hist[:, 2])
        canvas.set_limits(
            a["ax_hist"],
            xlim=self._round_window(t),
            ylim=(0.0, self._grow("hist", 1.1 * finite_max(hist[:, 1:]), 2.0)),
        )
        if played:
            a["title"].set_text(
                f"round {t}/{cfg.episode_rounds}   objective {objective:.3g}   cost {cost:.3g}"
                f"   delay {float(info.get('delay_mean', np.nan)):.4g} s"
            )
        else:
            a["title"].set_text(f"round {t}/{cfg.episode_rounds}   no round played yet")
        return canvas.pixels()

    @property
    def history(self) -> list[tuple[int, float, float]]:
        """The curves' data: (round, objective, cost) of each drawn round of this episode (NaN
        for the reset's frame)."""
        return list(self._history)

    def pixels_of(self, panel: str, points: np.ndarray) -> np.ndarray:
        """Integer (row, column) in the frame of points in a panel's data coordinates, (n, 2):
        ``"map"`` (m), ``"queue"`` (user, budgets), ``"load"`` (server, users), ``"history"``
        (round, value). For annotating frames, and for the tests.

        Raises:
            ValueError: an unknown panel, or no frame rendered yet.
        """
        names = {"map": "ax_map", "queue": "ax_queue", "load": "ax_load", "history": "ax_hist"}
        if panel not in names:
            raise ValueError(f"panel must be one of {sorted(names)}, got {panel!r}")
        if not self._a:
            raise ValueError("render a frame before asking where its points are")
        return axes_pixels(self._a[names[panel]], points, self.height)

    def close(self) -> None:
        """Release the figure (a later :meth:`render` makes a new one) and the history."""
        self._canvas = None
        self._a = {}
        self._tops = {}
        self._servers = None
        self._history.clear()

    # ------------------------------------------------------------------ helpers
    def _per_user(self, info: Mapping[str, Any], key: str) -> np.ndarray:
        n = self.config.num_users
        if key not in info:
            raise ValueError(f"info lacks {key!r}: pass the info dict of the env's last step")
        v = np.asarray(info[key], dtype=np.float64)
        if v.shape != (n,):
            raise ValueError(
                f"info[{key!r}] has shape {v.shape}, expected ({n},): pass one env's info"
            )
        return v

    def _record(self, t: int, objective: float, cost: float) -> bool:
        """Add a round to the history; True if it starts a new episode (the round went back)."""
        h = self._history
        new = not h or t < h[-1][0]
        if new:
            h.clear()
        elif t == h[-1][0]:  # the same round drawn again
            h.pop()
        h.append((t, objective, cost))
        return new

    def _grow(self, name: str, needed: float, least: float) -> float:
        """An upper axis limit that only grows within an episode, in 1-2-5 steps."""
        top = max(self._tops.get(name, least), nice_ceil(needed) if needed > least else least)
        self._tops[name] = top
        return top

    def _round_window(self, t: int) -> tuple[float, float]:
        """x limits of the curves: [0, W] with W = min(history, T), then windows of W rounds
        moving by W / 2."""
        w = min(self._history.maxlen or 2, self.config.episode_rounds)
        if t <= w:
            return (0.0, float(w))
        half = w / 2.0
        lo = math.ceil((t - w) / half) * half
        return (lo, lo + w)

    def _build(self) -> None:
        """The figure and its artists (made once; :meth:`render` updates them)."""
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable
        from matplotlib.collections import LineCollection
        from matplotlib.colors import Normalize
        from matplotlib.lines import Line2D
        from matplotlib.ticker import EngFormatter, MaxNLocator

        cfg = self.config
        n, m, area = cfg.num_users, cfg.num_servers, cfg.area_m
        canvas = Canvas(self.width, self.height, self.dpi, cache=self.cache)
        fig = canvas.fig
        a: dict[str, Any] = {
            "colours": server_colours(m),
            "cmap": colormaps[ALPHA_CMAP],
            "norm": Normalize(1.0, max(2.0, cfg.num_layers - 1.0)),
        }

        ax = fig.add_axes((0.07, 0.20, 0.46, 0.70))
        ax.set_aspect("equal", adjustable="box")
        ax.set_anchor("N")
        pad = 0.03 * area
        ax.set_xlim(-pad, area + pad)
        ax.set_ylim(-pad, area + pad)
        ax.add_patch(_square(area))
        a["ax_map"] = ax
        a["links"] = LineCollection([], linewidths=0.8, zorder=2)
        ax.add_collection(a["links"])
        size = float(np.clip(1500.0 / n, 6.0, 30.0))
        a["users"] = ax.scatter(
            np.zeros(n), np.zeros(n), s=size, edgecolors="#333333", linewidths=0.3, zorder=3
        )
        a["servers"] = ax.scatter(
            np.zeros(m),
            np.zeros(m),
            s=70.0,
            marker="s",
            c=a["colours"],
            edgecolors="black",
            linewidths=1.0,
            zorder=4,
        )
        a["server_labels"] = [
            ax.text(
                0.0, 0.0, f" {j}", fontsize=6.5, weight="bold", va="bottom", ha="left", zorder=5
            )
            for j in range(m if m <= _MAX_LABELS else 0)
        ]
        ax.set_xlabel("x (m)", fontsize=7, labelpad=1)
        ax.set_ylabel("y (m)", fontsize=7, labelpad=1)
        ax.tick_params(labelsize=6)
        ax.set_title("servers (squares), users (dots), user-server links", fontsize=8)
        cax = fig.add_axes((0.09, 0.15, 0.42, 0.022))
        bar = fig.colorbar(ScalarMappable(a["norm"], a["cmap"]), cax=cax, orientation="horizontal")
        bar.set_label("user colour: alpha, layers trained on the device", fontsize=7, labelpad=1)
        bar.ax.tick_params(labelsize=6)

        panel_w = 0.34
        ax = fig.add_axes((0.63, 0.62, panel_w, 0.25))
        a["queues"] = LineCollection(
            [], colors=QUEUE, linewidths=_bar_width(fig, panel_w, n), zorder=2
        )
        ax.add_collection(a["queues"])
        a["costs"] = ax.scatter(np.zeros(n), np.full(n, -1.0), s=6.0, color=COST, zorder=3)
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_title("energy in per-round budgets", fontsize=8)
        ax.yaxis.set_major_formatter(EngFormatter(sep=""))  # 1k, 1M: no offset text
        ax.set_xlabel("user", fontsize=7, labelpad=1)
        ax.tick_params(labelsize=6)
        ax.legend(
            handles=[
                Line2D([], [], color=QUEUE, lw=3, label="queue Q_n / e_bar_n"),
                Line2D([], [], ls="", marker=".", color=COST, label="round e_n / e_bar_n"),
            ],
            fontsize=6,
            loc="upper left",
            framealpha=0.8,
        )
        a["ax_queue"] = ax

        ax = fig.add_axes((0.63, 0.36, panel_w, 0.15))
        a["load"] = LineCollection(
            [], colors=a["colours"], linewidths=_bar_width(fig, panel_w, m), zorder=2
        )
        ax.add_collection(a["load"])
        ax.set_xlim(-0.5, m - 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("users per server", fontsize=8)
        ax.tick_params(labelsize=6)
        a["ax_load"] = ax

        ax = fig.add_axes((0.63, 0.08, panel_w, 0.18))
        (a["objective"],) = ax.plot(
            [], [], color=OBJECTIVE, lw=1.3, marker=".", ms=3, label="objective"
        )
        (a["cost"],) = ax.plot(
            [], [], color=COST, lw=1.0, marker=".", ms=3, label="cost (mean e_n / e_bar_n)"
        )
        ax.set_xlabel("round", fontsize=7, labelpad=1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(EngFormatter(sep=""))
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6, loc="upper left", framealpha=0.8)
        a["ax_hist"] = ax

        fig.text(0.02, 0.975, "MEC offloading", ha="left", va="top", fontsize=8.5, weight="bold")
        a["title"] = fig.text(0.98, 0.975, "", ha="right", va="top", fontsize=8.5)
        canvas.animate(
            a["links"],
            a["users"],
            a["servers"],
            a["queues"],
            a["costs"],
            a["load"],
            a["objective"],
            a["cost"],
            a["title"],
        )
        self._canvas, self._a = canvas, a


def _square(area: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((0.0, 0.0), area, area, facecolor="#f7f7f7", edgecolor="#999999", lw=1.0)


def _bar_width(fig: Any, axes_width: float, count: int) -> float:
    """Line width (points) of ``count`` bars filling 70% of an axes ``axes_width`` of the
    figure wide."""
    points = fig.get_figwidth() * 72.0 * axes_width
    return float(np.clip(0.7 * points / max(count, 1), 0.5, 20.0))
