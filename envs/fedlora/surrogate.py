"""A fast surrogate of the federated split-LoRA learning curve, shaped by FT Theorem 1.

FT Theorem 1 bounds the optimality gap after round t by ``(1 - 2 tau sigma(N(t)))`` times the gap
before it (plus noise-floor terms), with

    sigma(N) = -(L eta^2 - eta)/K^2 - (K - N) L / (2 N (K - 1) K^2),

increasing and concave in the number N of scheduled devices. The surrogate keeps that shape and
fits its free constants to real runs (``edgeft calibrate``):

    rho(N) = rate * ((1 - head_share) * (1 - gap_ratio * (K - N) / (N (K - 1)))
                     + head_share * N / K)                        (rho(0) = 0)
    w(gap) = onset + (1 - onset) * (1 - gap / gap_0)              (gap = loss - loss_floor)
    loss(t+1) = loss_floor + (1 - rho(N) w(gap)) * (loss(t) - loss_floor) + noise * xi / sqrt(N)

so ``rate`` = 2 tau A is the per-round contraction with every device scheduled and
``gap_ratio`` = L / (2 (eta - L eta^2)) in [0, 1) sets how much less one device achieves. The
``head_share`` term is what Theorem 1 leaves out: the loss of FT eq. (1) averages K per-device task
heads, and a head only learns in the rounds its device is scheduled, a fraction N / K of the gap
per round (linear, so rho stays increasing and concave). ``head_share = 0`` is Theorem 1's shape
exactly. ``onset`` in (0, 1] is the warm-up of real fine-tuning: the LoRA adapters start at zero,
and the first rounds close only ``onset`` of the full rate, which then grows as the gap closes
(gap_0 = initial_loss - loss_floor); ``onset = 1`` is a plain geometric contraction. Accuracy is
an affine map of the loss between the initial and final points.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.envs.common import check_range

CALIBRATION_DIR = Path(__file__).with_name("calibration")
DEFAULT_CALIBRATION = CALIBRATION_DIR / "default.json"
_DEFAULT_CACHE: dict[str, Any] = {}


@dataclass(frozen=True)
class SurrogateParams:
    """Constants of the learning-curve surrogate.

    Attributes:
        initial_loss: training loss before the first round.
        loss_floor: loss the curve converges to (L* of the fit).
        rate: per-round contraction of the gap with every device scheduled, in (0, 1).
        gap_ratio: relative shortfall of one scheduled device vs all, in [0, 1).
        head_share: share of the per-round progress that is per-device head training (grows
            linearly with N / K), in [0, 1]; 0 = FT Theorem 1's shape.
        onset: fraction of the full per-round progress at the initial loss, in (0, 1]; the
            progress rate grows linearly to the full rate as the gap closes (1 = no warm-up).
        noise: std of the per-round loss noise at N = 1 (scaled by 1/sqrt(N)); 0 = deterministic.
        initial_accuracy: test accuracy at ``initial_loss``.
        final_accuracy: test accuracy at ``loss_floor``.
        source: where the constants come from (a calibration run, or "built-in").
    """

    initial_loss: float = 0.6931
    loss_floor: float = 0.25
    rate: float = 0.02
    gap_ratio: float = 0.6
    head_share: float = 0.0
    onset: float = 1.0
    noise: float = 0.0
    initial_accuracy: float = 0.5
    final_accuracy: float = 0.9
    source: str = "built-in"

    def __post_init__(self) -> None:
        check_range("surrogate.initial_loss", self.initial_loss, 0.0, low_open=True)
        check_range("surrogate.loss_floor", self.loss_floor, 0.0, self.initial_loss, high_open=True)
        check_range("surrogate.rate", self.rate, 0.0, 1.0, low_open=True, high_open=True)
        check_range("surrogate.gap_ratio", self.gap_ratio, 0.0, 1.0, high_open=True)
        check_range("surrogate.head_share", self.head_share, 0.0, 1.0)
        check_range("surrogate.onset", self.onset, 0.0, 1.0, low_open=True)
        check_range("surrogate.noise", self.noise, 0.0)
        check_range("surrogate.initial_accuracy", self.initial_accuracy, 0.0, 1.0)
        check_range("surrogate.final_accuracy", self.final_accuracy, 0.0, 1.0)

    @classmethod
    def from_json(cls, path: str | Path) -> SurrogateParams:
        """Load constants written by ``edgeft calibrate`` (extra keys in the file are ignored)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"surrogate calibration file {path} not found; run `edgeft calibrate --out {path}` "
                "or pass surrogate='built-in'"
            )
        data = json.loads(path.read_text())
        params = data.get("params", data)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})

    def to_json(self, path: str | Path, **extra: Any) -> None:
        """Write the constants (and any extra metadata, e.g. fit quality) as JSON."""
        data = {"params": dataclasses.asdict(self), **extra}
        Path(path).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def resolve(cls, spec: Any) -> SurrogateParams:
        """``"default"`` (the shipped calibration, if present), ``"built-in"``, a path, a dict or
        params."""
        if isinstance(spec, SurrogateParams):
            return spec
        if isinstance(spec, dict):
            return cls(**spec)
        if spec == "built-in":
            return cls()
        if spec == "default":
            if not DEFAULT_CALIBRATION.is_file():
                return cls()
            stamp = DEFAULT_CALIBRATION.stat().st_mtime_ns  # parsed once per file version
            if _DEFAULT_CACHE.get("stamp") != stamp:
                _DEFAULT_CACHE.update(stamp=stamp, params=cls.from_json(DEFAULT_CALIBRATION))
            return _DEFAULT_CACHE["params"]
        if isinstance(spec, (str, Path)):
            return cls.from_json(spec)
        raise ValueError(
            "surrogate must be 'default', 'built-in', a calibration JSON path, a dict or "
            f"SurrogateParams, got {spec!r}"
        )


def contraction(num_scheduled: np.ndarray | int, num_devices: int,
                params: SurrogateParams) -> np.ndarray | float:
    """rho(N): the fraction of the loss gap closed in one round with N devices (FT Theorem 1 shape).

    rho(N) = rate ((1 - h) (1 - gap_ratio (K - N) / (N (K - 1))) + h N / K) for N >= 1 with
    h = head_share, rho(0) = 0. A plain float for a scalar N (the single env's hot path), an array
    otherwise.
    """
    k1 = max(num_devices - 1, 1)
    h = params.head_share
    if isinstance(num_scheduled, (int, float, np.integer, np.floating)):
        n = float(num_scheduled)
        if n < 1:
            return 0.0
        theorem1 = 1.0 - params.gap_ratio * (num_devices - n) / (n * k1)
        return params.rate * ((1.0 - h) * theorem1 + h * n / num_devices)
    ns = np.asarray(num_scheduled, dtype=np.float64)
    shortfall = (num_devices - ns) / (np.maximum(ns, 1.0) * k1)
    theorem1_n = 1.0 - params.gap_ratio * shortfall
    return params.rate * ((1.0 - h) * theorem1_n + h * ns / num_devices) * (ns >= 1)


def step_loss(loss: np.ndarray | float, num_scheduled: np.ndarray | int, num_devices: int,
              params: SurrogateParams, noise: np.ndarray | float | None = None,
              rho: np.ndarray | float | None = None) -> np.ndarray | float:
    """One round of the surrogate: the loss after a round with ``num_scheduled`` devices.

    ``noise`` is a standard-normal draw of the same shape (ignored when ``params.noise`` is 0);
    ``rho`` may pass ``contraction(num_scheduled, ...)`` precomputed (e.g. from a table over N).
    """
    if rho is None:
        rho = contraction(num_scheduled, num_devices, params)
    gap = loss - params.loss_floor
    if params.onset < 1.0:  # warm-up: onset of the full rate at gap_0, growing as the gap closes
        frac = 1.0 - gap / (params.initial_loss - params.loss_floor)
        if isinstance(frac, float):  # the single env's hot path
            frac = min(max(frac, 0.0), 1.0)
        else:
            frac = np.clip(frac, 0.0, 1.0)
        rho = rho * (params.onset + (1.0 - params.onset) * frac)
    new = params.loss_floor + (1.0 - rho) * gap
    if params.noise > 0.0 and noise is not None:
        n = np.maximum(np.asarray(num_scheduled, dtype=np.float64), 1.0)
        new = new + np.where(np.asarray(num_scheduled) > 0, params.noise * noise / np.sqrt(n), 0.0)
        new = np.maximum(new, 0.0)
    return new


def accuracy_of_loss(loss: np.ndarray | float, params: SurrogateParams) -> np.ndarray | float:
    """Test accuracy implied by a surrogate loss (affine between the initial and final points,
    clipped to [0, 1])."""
    frac = (loss - params.loss_floor) / (params.initial_loss - params.loss_floor)
    acc = params.final_accuracy - (params.final_accuracy - params.initial_accuracy) * frac
    if isinstance(acc, (float, np.floating)):
        return min(max(float(acc), 0.0), 1.0)
    return np.minimum(np.maximum(acc, 0.0), 1.0)
