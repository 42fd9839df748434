"""What the envs' viewers share: a fixed-size matplotlib figure that renders to an RGB array
(``render_mode="rgb_array"``), drawing its static layer once.

:class:`Canvas` owns a ``Figure`` on its own Agg canvas (no pyplot, the global backend
untouched). Artists that change from frame to frame are registered as animated
(:meth:`Canvas.animate`); everything else (axes, ticks, labels, legends, fixed shapes) is drawn
by ``fig.canvas.draw()`` only when it changed (first frame, or a limit moved through
:meth:`Canvas.set_limits`), kept as a background, and each frame restores it and draws the
animated artists on top (blitting). ``cache=False`` draws the whole figure every frame; the
tests check that both give the same pixels.

matplotlib is imported when a Canvas is made, never by importing this module.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    from matplotlib.backends.backend_agg import FigureCanvasAgg


def check_size(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in [low, high].

    Raises:
        ValueError: not an integer (bools refused) or out of range, naming ``name``.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not low <= value <= high
    ):
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def rgba(colour: str) -> np.ndarray:
    """An ``'#rrggbb'`` colour as RGBA floats in [0, 1], shape (4,)."""
    v = int(colour[1:], 16)
    return np.array([(v >> 16) / 255.0, ((v >> 8) & 255) / 255.0, (v & 255) / 255.0, 1.0])


def nice_ceil(x: float) -> float:
    """The smallest number of the 1-2-5 sequence (..., 0.5, 1, 2, 5, 10, ...) >= ``x`` > 0
    (1 for ``x`` <= 0 or not finite): axis limits that move seldom as data grows."""
    if not math.isfinite(x) or x <= 0.0:
        return 1.0
    e = math.floor(math.log10(x))
    for m in (1.0, 2.0, 5.0, 10.0):
        v = m * 10.0**e
        if v >= x * (1.0 - 1e-12):
            return v
    return 10.0 ** (e + 1)


def finite_max(values: np.ndarray, default: float = 0.0) -> float:
    """The largest finite value (``default`` if none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.max()) if v.size else default


def axes_pixels(ax: Any, points: np.ndarray, height: int) -> np.ndarray:
    """Integer (row, column) in a frame ``height`` pixels high of points given in the data
    coordinates of axes ``ax``, shape (n, 2) (Agg's row 0 is the top)."""
    xy = ax.transData.transform(np.asarray(points, dtype=np.float64).reshape(-1, 2))
    return np.stack([np.floor(height - xy[:, 1]), np.floor(xy[:, 0])], -1).astype(np.int64)


class Canvas:
    """A ``width`` x ``height`` pixel figure whose static layer is drawn once (see the module
    docstring).

    Args:
        width, height: frame size in pixels.
        dpi: dots per inch (text and marker sizes are in points).
        cache: keep the static layer between frames (False: draw everything every frame).
    """

    def __init__(self, width: int, height: int, dpi: int, *, cache: bool = True) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        # Agg truncates width x dpi to whole pixels: half a pixel more keeps float rounding
        # from losing one
        self.fig = Figure(
            figsize=((width + 0.5) / dpi, (height + 0.5) / dpi), dpi=dpi, facecolor="white"
        )
        FigureCanvasAgg(self.fig)
        self.shape = (height, width, 3)
        self.cache = bool(cache)
        self._animated: list[Any] = []
        self._background: Any = None

    def animate(self, *artists: Any) -> None:
        """Register artists that change every frame; they are drawn in this order, on top of
        the static layer."""
        for artist in artists:
            artist.set_animated(True)
            self._animated.append(artist)

    def set_limits(
        self,
        ax: Any,
        xlim: tuple[float, float] | None = None,
        ylim: tuple[float, float] | None = None,
    ) -> None:
        """Set an axes' limits; a change redraws the static layer (ticks) on the next frame."""
        if xlim is not None and tuple(ax.get_xlim()) != tuple(map(float, xlim)):
            ax.set_xlim(*xlim)
            self._background = None
        if ylim is not None and tuple(ax.get_ylim()) != tuple(map(float, ylim)):
            ax.set_ylim(*ylim)
            self._background = None

    def invalidate(self) -> None:
        """Redraw the static layer on the next frame (after changing a static artist)."""
        self._background = None

    def pixels(self) -> np.ndarray:
        """The frame: static layer (redrawn if needed) plus the animated artists, as a new
        (height, width, 3) uint8 array."""
        canvas = cast("FigureCanvasAgg", self.fig.canvas)  # the one __init__ gave it
        if self._background is None or not self.cache:
            canvas.draw()  # animated artists are left out of a full draw
            self._background = canvas.copy_from_bbox(self.fig.bbox)
        else:
            canvas.restore_region(self._background)
        for artist in self._animated:
            self.fig.draw_artist(artist)
        frame = np.array(np.asarray(canvas.buffer_rgba())[..., :3])
        if frame.shape != self.shape:  # never seen; a clear error rather than a wrong video
            raise RuntimeError(
                f"matplotlib drew {frame.shape[:2]} pixels, expected {self.shape[:2]}"
            )
        return frame
