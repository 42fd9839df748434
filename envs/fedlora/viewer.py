"""Pictures of the FedLoRA scheduling env: one RGB frame per round, for
``render_mode="rgb_array"`` (Gymnasium's ``RecordVideo``, SB3's ``make_vec_env``).

:class:`Viewer` turns the env's typed :class:`~edgeft.envs.fedlora.types.State` and the last
step's info into an ``np.ndarray`` of shape (height, width, 3), dtype uint8 (480 x 640 by
default, fixed for the viewer's life). A frame shows

- the cell: the server, the cell disc and the K devices, scheduled ones in orange with an area
  proportional to their bandwidth share, idle ones in light blue, the stragglers (scheduled
  devices whose delay is within 1% of the round's delay D, FT eq. 7: one device, or all of them
  under a min-max-delay split) ringed in black;
- every device's bandwidth share B_k / B of the round;
- the round's delay D against the budget D-bar (a gauge of D / D-bar, green within the budget,
  red above it);
- the loss, and D / D-bar with the delay queue q = D-hat / D-bar (FT eq. 18), over the rounds
  the viewer has drawn in this episode (a short history kept in the viewer: up to ``history``
  rounds; it restarts when the state's round goes back, i.e. after a reset).

Where the devices are drawn (:func:`device_positions`, from the env's channel process; the
State itself holds no positions):

- correlated channels (``CorrelatedChannel``): the devices' true positions, moving with them;
- the default i.i.d. block fading (``FadingBlocks``): the true distance of each device from the
  server, recovered exactly from its mean gain (path loss ``(d / d0)^-exponent``, transmit power
  folded in), at a made-up but fixed bearing (device k on the arc of the cell disc at that
  distance, spread by the golden ratio); the geometry of the channel is right, the angles are not;
- a replayed trace (``TraceChannel``, no geometry): devices ordered by their mean gain over the
  episode's rounds, the strongest nearest the server, at evenly spaced distances across the
  cell and the same made-up bearings;
- no channel given: a fixed sunflower layout of the disc by device index.

Rendering uses matplotlib's Agg canvas on a ``Figure`` the viewer owns (no pyplot, no global
backend switch); matplotlib is imported on the first :meth:`Viewer.render`, so importing this
module (and the env) does not import it. The figure and its artists are made once and updated
in place each frame; axes, ticks and labels are drawn only when they change
(``edgeft.envs.rendering.Canvas``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.fedlora.formulas import db_to_gain
from edgeft.envs.fedlora.generator import CorrelatedChannel, FadingBlocks
from edgeft.envs.fedlora.trace_channel import TraceChannel
from edgeft.envs.fedlora.types import State
from edgeft.envs.rendering import (
    Canvas,
    axes_pixels,
    check_size,
    finite_max,
    nice_ceil,
    rgba,
)

#: colours of the frame
SCHEDULED = "#e6550d"
IDLE = "#9ecae1"
SERVER = "#31a354"
WITHIN = "#31a354"
OVER = "#de2d26"
LOSS = "#3182bd"
QUEUE = "#756bb1"

_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0
#: a scheduled device whose delay is within this fraction of the round's delay D is ringed
SLOWEST_TOL = 0.01
#: device numbers are written next to the markers up to this many devices
_MAX_LABELS = 30


def _bearing_fractions(k: int) -> np.ndarray:
    """Fixed fractions in (-1, 1) for K devices, spread by the golden ratio."""
    return 2.0 * np.mod((np.arange(k) + 0.5) * _GOLDEN, 1.0) - 1.0


def place_at_distances(config: FedLoRAConfig, distance_m: np.ndarray) -> np.ndarray:
    """Positions (m, (K, 2)) in the cell disc of devices at the given distances from the server
    at (0, 0), at fixed made-up bearings: device k on the arc of points of the disc at its
    distance (distances outside the disc's range are clipped to it), at a golden-ratio fraction
    of the arc's half-angle."""
    d = np.asarray(distance_m, dtype=np.float64)
    c, r = config.cell_center_m, config.cell_radius_m
    d = np.clip(d, max(c - r, 1e-9), c + r)
    # points at distance d from the origin inside the disc: cos(phi) >= (d^2 + c^2 - r^2) / 2dc
    cos_lim = (d * d + c * c - r * r) / (2.0 * d * c) if c > 0.0 else np.full_like(d, -1.0)
    half = np.arccos(np.clip(cos_lim, -1.0, 1.0))
    phi = 0.95 * half * _bearing_fractions(d.shape[-1])
    return np.stack([d * np.cos(phi), d * np.sin(phi)], axis=-1)


def sunflower_positions(config: FedLoRAConfig) -> np.ndarray:
    """A fixed layout of K devices filling the cell disc evenly (by index), (K, 2) m."""
    k = config.num_devices
    i = np.arange(k)
    rad = config.cell_radius_m * np.sqrt((i + 0.5) / k)
    theta = 2.0 * np.pi * _GOLDEN * i
    return np.stack([config.cell_center_m + rad * np.cos(theta), rad * np.sin(theta)], axis=-1)


def device_positions(config: FedLoRAConfig, channel: Any = None) -> np.ndarray:
    """Where to draw the K devices (m, (K, 2)), from one env's channel process (the env's
    ``_fading``; see the module docstring for what each process gives).

    Args:
        config: the env's config.
        channel: ``CorrelatedChannel`` (true positions), ``FadingBlocks`` (true distances from
            the mean gains, made-up bearings), ``TraceChannel`` (ranked by mean gain) or None
            (a fixed layout by index).

    Raises:
        ValueError: a channel of another type, or one of several copies (a vector env's).
    """
    k = config.num_devices
    if channel is None:
        return sunflower_positions(config)
    if isinstance(channel, CorrelatedChannel):
        pos = np.asarray(channel.pos, dtype=np.float64)
        if pos.shape != (k, 2):
            raise ValueError(
                f"channel.pos has shape {pos.shape}, expected ({k}, 2): pass one "
                "env's channel (a vector env's copies are drawn one at a time)"
            )
        return pos.copy()
    if isinstance(channel, FadingBlocks):
        mean_db = np.asarray(channel.mean_db, dtype=np.float64)
        if mean_db.shape != (k,):
            raise ValueError(
                f"channel.mean_db has shape {mean_db.shape}, expected ({k},): pass "
                "one env's channel"
            )
        # mean gain = tx power x (d / d0)^-exponent  =>  d = d0 (gain / tx power)^(-1/exponent)
        path = db_to_gain(mean_db) / config.tx_power_w
        dist = config.reference_distance_m * path ** (-1.0 / config.path_loss_exponent)
        return place_at_distances(config, dist)
    if isinstance(channel, TraceChannel):
        mean_db = np.asarray(channel.db, dtype=np.float64).mean(axis=-2)
        if mean_db.shape != (k,):
            raise ValueError(
                f"channel.db has {mean_db.shape[-1:]} devices, expected {k}: pass one env's channel"
            )
        rank = np.empty(k)
        rank[np.argsort(-mean_db, kind="stable")] = np.arange(k)
        c, r = config.cell_center_m, config.cell_radius_m
        return place_at_distances(config, (c - r) + 2.0 * r * (rank + 0.5) / k)
    raise ValueError(
        f"channel must be a CorrelatedChannel, FadingBlocks, TraceChannel or None, "
        f"got {type(channel).__name__}"
    )


class Viewer:
    """Frames of one FedLoRA env (see the module docstring for what a frame shows).

    Args:
        config: the env's config (K, the cell, T; D-bar if the info lacks ``delay_budget``:
            pass the env's ``config_in_force`` in real mode).
        width, height: frame size in pixels (default 640 x 480).
        dpi: dots per inch of the figure (sets the size of text and markers in pixels).
        history: rounds of loss, D / D-bar and q kept for the curves.
        cache: draw axes, ticks and labels only when they change (False: the whole figure every
            frame, same pixels, slower).

    Raises:
        ValueError: a config of another type, or sizes out of range.
    """

    def __init__(
        self,
        config: FedLoRAConfig,
        *,
        width: int = 640,
        height: int = 480,
        dpi: int = 100,
        history: int = 200,
        cache: bool = True,
    ) -> None:
        if not isinstance(config, FedLoRAConfig):
            raise ValueError(f"config must be a FedLoRAConfig, got {type(config).__name__}")
        self.config = config
        self.width = check_size("width", width, 320, 4096)
        self.height = check_size("height", height, 240, 4096)
        self.dpi = check_size("dpi", dpi, 20, 600)
        self.cache = bool(cache)
        self._history: deque[tuple[int, float, float, float]] = deque(
            maxlen=check_size("history", history, 2, 1_000_000)
        )
        self._canvas: Canvas | None = None
        self._a: dict[str, Any] = {}
        self._tops: dict[str, float] = {}
        self._positions: np.ndarray | None = None
        self._labels_animated = False

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of every frame: (height, width, 3)."""
        return (self.height, self.width, 3)

    # ------------------------------------------------------------------ public
    def render(
        self,
        state: State,
        info: Mapping[str, Any] | None = None,
        *,
        positions: np.ndarray | None = None,
    ) -> np.ndarray:
        """The frame of the env's state after a step (or a reset) and that step's info.

        Args:
            state: one env's State (``env.unwrapped.state``; unbatched): the round t, queue and
                loss after the step.
            info: the last step's info (``scheduled``, ``bandwidth``, ``device_delay``,
                ``delay``, ``delay_budget``, ``delay_ratio``, ``budget_guarded`` are read); None,
                or any info at round 0 (a reset's, which has a step's keys with nothing played),
                draws a frame with nobody scheduled.
            positions: device positions (m, (K, 2)), e.g. :func:`device_positions` of the env's
                channel; None draws the fixed layout of :func:`sunflower_positions`.

        Returns:
            A new uint8 array of shape :attr:`shape`.

        Raises:
            ValueError: a batched or mis-shaped state, info arrays or positions of the wrong
                shape.
        """
        cfg = self.config
        k = cfg.num_devices
        if np.ndim(state.t) == 0 and int(state.t) == 0:  # a reset: nothing played yet
            info = None
        age = np.asarray(state.age)
        if age.shape != (k,) or np.ndim(state.queue) != 0:
            raise ValueError(
                f"state must be one env's State (age of shape ({k},), a scalar "
                f"queue), got age of shape {age.shape}; for a vector env draw "
                "state.index(i)"
            )
        info = {} if info is None else info
        pos = (
            sunflower_positions(cfg)
            if positions is None
            else np.asarray(positions, dtype=np.float64)
        )
        if pos.shape != (k, 2) or not np.all(np.isfinite(pos)):
            raise ValueError(f"positions must be finite with shape ({k}, 2), got {pos.shape}")
        played = "scheduled" in info
        sched = self._per_device(info, "scheduled", bool) if played else np.zeros(k, bool)
        bw = self._per_device(info, "bandwidth", float) if played else np.zeros(k)
        dev_delay = self._per_device(info, "device_delay", float) if played else np.zeros(k)
        budget = float(info.get("delay_budget", cfg.budget_s))
        delay = float(info.get("delay", 0.0)) if played else 0.0
        ratio = float(info.get("delay_ratio", delay / budget)) if played else float("nan")
        t, loss, queue = int(state.t), float(state.loss), float(state.queue)
        new_episode = self._record(t, loss, ratio, queue)
        if new_episode:
            self._tops = {}  # a new episode: the axes start from their initial limits

        if self._canvas is None:
            self._build()
        canvas, a = self._canvas, self._a
        assert canvas is not None
        share = bw / cfg.bandwidth_hz
        colours = np.where(sched[:, None], rgba(SCHEDULED), rgba(IDLE))
        a["dots"].set_offsets(pos)
        a["dots"].set_sizes(np.where(sched, 25.0 + 900.0 * share, 25.0))
        a["dots"].set_facecolor(colours)
        edges = np.tile(rgba("#555555"), (k, 1))
        widths = np.where(sched, 0.6, 0.3)
        # the devices that set the round's delay D (within 1%: a min-max split equalises them)
        slowest = sched & (dev_delay >= (1.0 - SLOWEST_TOL) * delay) & (delay > 0.0)
        edges[slowest] = rgba("#000000")
        widths[slowest] = 2.2
        a["dots"].set_edgecolor(edges)
        a["dots"].set_linewidths(widths)
        moved = self._positions is None or not np.array_equal(pos, self._positions)
        if a["labels"] and moved:
            for i, label in enumerate(a["labels"]):
                label.set_position((pos[i, 0], pos[i, 1]))
            if not self._labels_animated:
                if not new_episode:
                    # devices that move within an episode: their labels join the animated layer
                    canvas.animate(*a["labels"])
                    self._labels_animated = True
                canvas.invalidate()  # the static layer redrawn with (or without) the labels
        self._positions = pos.copy()
        a["shares"].set_segments(
            np.stack(
                [np.stack([np.arange(k), np.zeros(k)], -1), np.stack([np.arange(k), share], -1)],
                axis=1,
            )
        )
        a["shares"].set_color(colours)
        top = self._grow("bw", min(1.0, 1.1 * share.max()), 0.1)
        canvas.set_limits(a["ax_bw"], ylim=(0.0, top))

        shown = ratio if np.isfinite(ratio) else 0.0
        a["gauge"].set_width(shown)
        a["gauge"].set_color(WITHIN if shown <= 1.0 else OVER)
        canvas.set_limits(a["ax_gauge"], xlim=(0.0, self._grow("gauge", 1.1 * shown, 2.0)))
        guard = " (budget guard)" if info.get("budget_guarded") else ""
        a["gauge_text"].set_text(
            f"D {delay:.3g} s / D-bar {budget:.3g} s = {shown:.2f}{guard}"
            if played
            else f"no round yet, D-bar {budget:.3g} s"
        )

        hist = np.asarray(self._history, dtype=np.float64)
        rounds = hist[:, 0]
        a["loss"].set_data(rounds, hist[:, 1])
        a["ratio"].set_data(rounds, hist[:, 2])
        a["queue"].set_data(rounds, hist[:, 3])
        xlim = self._round_window(t)
        canvas.set_limits(a["ax_loss"], xlim=xlim, ylim=self._loss_limits(hist[:, 1]))
        canvas.set_limits(
            a["ax_q"], xlim=xlim, ylim=(0.0, self._grow("q", 1.1 * finite_max(hist[:, 2:]), 2.0))
        )
        a["title"].set_text(
            f"round {t}/{cfg.episode_rounds}   scheduled {int(sched.sum())}/{k}"
            f"   loss {loss:.3f}   q {queue:.2f}"
        )
        return canvas.pixels()

    @property
    def history(self) -> list[tuple[int, float, float, float]]:
        """The curves' data: (round, loss, D / D-bar, q) of each drawn round of this episode
        (D / D-bar is NaN for the reset's frame)."""
        return list(self._history)

    def pixels_of(self, panel: str, points: np.ndarray) -> np.ndarray:
        """Integer (row, column) in the frame of points in a panel's data coordinates, (n, 2):
        ``"map"`` (m), ``"bandwidth"`` (device, share), ``"gauge"`` (D / D-bar, 0),
        ``"loss"`` and ``"queue"`` (round, value). For annotating frames, and for the tests.

        Raises:
            ValueError: an unknown panel, or no frame rendered yet.
        """
        names = {
            "map": "ax_map",
            "bandwidth": "ax_bw",
            "gauge": "ax_gauge",
            "loss": "ax_loss",
            "queue": "ax_q",
        }
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
        self._positions = None
        self._labels_animated = False
        self._history.clear()

    # ------------------------------------------------------------------ helpers
    def _per_device(self, info: Mapping[str, Any], key: str, dtype: type) -> np.ndarray:
        k = self.config.num_devices
        if key not in info:
            raise ValueError(f"info lacks {key!r}: pass the info dict of the env's last step")
        v: np.ndarray = np.asarray(info[key], dtype=dtype)
        if v.shape != (k,):
            raise ValueError(
                f"info[{key!r}] has shape {v.shape}, expected ({k},): pass one env's info"
            )
        return v

    def _record(self, t: int, loss: float, ratio: float, queue: float) -> bool:
        """Add a round to the history; True if it starts a new episode (the round went back)."""
        h = self._history
        new = not h or t < h[-1][0]
        if new:
            h.clear()
        elif t == h[-1][0]:  # the same round drawn again
            h.pop()
        h.append((t, loss, ratio, queue))
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

    def _loss_limits(self, losses: np.ndarray) -> tuple[float, float]:
        """y limits of the loss: the surrogate's range [L*, L0] padded, grown in quarters of
        it where the loss leaves it (real mode)."""
        sur = self.config.surrogate
        lo, hi = float(sur.loss_floor), float(sur.initial_loss)
        step = 0.25 * max(hi - lo, 1e-3)
        v = losses[np.isfinite(losses)]
        if v.size:
            if v.min() < lo:
                lo -= step * math.ceil((lo - v.min()) / step)
            if v.max() > hi:
                hi += step * math.ceil((v.max() - hi) / step)
        pad = 0.05 * (hi - lo)
        low, high = self._tops.get("loss_lo", lo - pad), self._tops.get("loss_hi", hi + pad)
        self._tops["loss_lo"], self._tops["loss_hi"] = min(low, lo - pad), max(high, hi + pad)
        return self._tops["loss_lo"], self._tops["loss_hi"]

    def _build(self) -> None:
        """The figure and its artists (made once; :meth:`render` updates them)."""
        from matplotlib.collections import LineCollection
        from matplotlib.lines import Line2D
        from matplotlib.patches import Circle
        from matplotlib.ticker import EngFormatter, MaxNLocator

        cfg = self.config
        k = cfg.num_devices
        canvas = Canvas(self.width, self.height, self.dpi, cache=self.cache)
        fig = canvas.fig
        a: dict[str, Any] = {}
        c, r = cfg.cell_center_m, cfg.cell_radius_m

        ax = fig.add_axes((0.08, 0.32, 0.42, 0.56))
        ax.set_aspect("equal", adjustable="box")
        view = 1.15 * r
        ax.set_xlim(c - view, c + view)
        ax.set_ylim(-view, view)
        ax.add_patch(Circle((c, 0.0), r, facecolor="#f4f4f4", edgecolor="#999999", lw=1.0))
        if c - view <= 0.0:
            ax.plot([0.0], [0.0], marker="^", ms=11, color=SERVER, zorder=4)
            ax.annotate(
                "server",
                (0.0, 0.0),
                xytext=(4, 6),
                textcoords="offset points",
                fontsize=7,
                color=SERVER,
            )
        else:  # the server lies off to the left
            ax.annotate(
                f"server at (0, 0), {c - r:.0f} m from the cell",
                xy=(0.0, 0.04),
                xycoords="axes fraction",
                xytext=(0.1, 0.04),
                textcoords="axes fraction",
                fontsize=6.5,
                color=SERVER,
                va="center",
                arrowprops={"arrowstyle": "-|>", "color": SERVER, "lw": 1.5},
            )
        a["dots"] = ax.scatter(np.full(k, c), np.zeros(k), s=25.0, zorder=3)
        a["labels"] = [
            ax.text(c, 0.0, f" {i}", fontsize=6, color="#333333", zorder=5, va="bottom", ha="left")
            for i in range(k if k <= _MAX_LABELS else 0)
        ]
        ax.set_xlabel("x (m)", fontsize=7, labelpad=1)
        ax.set_ylabel("y (m)", fontsize=7, labelpad=1)
        ax.tick_params(labelsize=6)
        ax.set_title("cell (marker area ~ bandwidth share)", fontsize=8)
        ax.legend(
            handles=[
                Line2D([], [], ls="", marker="o", color=SCHEDULED, label="scheduled"),
                Line2D([], [], ls="", marker="o", color=IDLE, label="idle"),
                Line2D(
                    [], [], ls="", marker="o", mfc="white", mec="black", mew=2, label="delay = D"
                ),
            ],
            fontsize=6,
            loc="upper right",
            framealpha=0.8,
        )
        a["ax_map"] = ax

        ax = fig.add_axes((0.08, 0.08, 0.42, 0.15))
        a["shares"] = LineCollection([], linewidths=max(1.0, min(8.0, 200.0 / k)))
        ax.add_collection(a["shares"])
        ax.set_xlim(-0.5, k - 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=10))
        ax.set_xlabel("device", fontsize=7, labelpad=1)
        ax.set_ylabel("B_k / B", fontsize=7, labelpad=1)
        ax.tick_params(labelsize=6)
        a["ax_bw"] = ax

        ax = fig.add_axes((0.60, 0.78, 0.36, 0.06))
        a["gauge"] = ax.barh([0.0], [0.0], height=0.8, color=WITHIN)[0]
        ax.axvline(1.0, color="black", lw=1.2)
        ax.set_ylim(-0.5, 0.5)
        ax.set_yticks([])
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 1k, 1M: no offset text
        ax.tick_params(labelsize=6)
        ax.set_title("round delay / budget D-bar", fontsize=8)
        a["gauge_text"] = ax.text(0.0, -0.75, "", transform=ax.transAxes, fontsize=6.5, va="top")
        a["ax_gauge"] = ax

        ax = fig.add_axes((0.60, 0.41, 0.36, 0.22))
        (a["loss"],) = ax.plot([], [], color=LOSS, lw=1.3)
        ax.set_title("loss", fontsize=8)
        ax.tick_params(labelsize=6)
        a["ax_loss"] = ax

        ax = fig.add_axes((0.60, 0.08, 0.36, 0.22))
        (a["ratio"],) = ax.plot(
            [], [], color=SCHEDULED, lw=0.8, marker=".", ms=2.5, label="D / D-bar"
        )
        (a["queue"],) = ax.plot([], [], color=QUEUE, lw=1.3, label="queue q")
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.yaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_xlabel("round", fontsize=7, labelpad=1)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6, loc="upper left", framealpha=0.8)
        a["ax_q"] = ax

        fig.text(
            0.02, 0.975, "FedLoRA scheduling", ha="left", va="top", fontsize=8.5, weight="bold"
        )
        a["title"] = fig.text(0.98, 0.975, "", ha="right", va="top", fontsize=8.5)
        canvas.animate(
            a["dots"],
            a["shares"],
            a["gauge"],
            a["gauge_text"],
            a["loss"],
            a["ratio"],
            a["queue"],
            a["title"],
        )
        self._canvas, self._a = canvas, a
