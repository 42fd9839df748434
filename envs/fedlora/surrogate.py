"""A fast surrogate of the federated split-LoRA learning curve, shaped by FT Theorem 1.

Version 3 (the default calibrations ``calibration/iid.json`` and ``calibration/dirichlet.json``):
the loss of FT eq. (1) is the mean of the K devices' losses, each with its own task head on the
shared LoRA encoder, so the state has a shared part s (the encoder) and a per-device part h_k
(how untrained head k still is: 1 at the start, 0 = fully trained)::

    loss_k(t) = loss_floor + s(t) + h_k(t) (G0 - s(t)),    G0 = initial_loss - loss_floor
    loss(t)   = mean_k loss_k(t) = loss_floor + s(t) + H(t) (G0 - s(t)),   H = mean_k h_k

A device whose head never trains stays at the initial loss whatever the encoder learns (what the
real runs show: the 15 devices left out of a fixed 5-device subset end at their initial loss);
a fully trained head gets the encoder's loss ``loss_floor + s``.

* the shared gap s follows Theorem 1 in full: the contraction rho(N) below and the stationary
  term the theorem's variance of an N-of-K average adds,
  ``s*(N) = stationary * (K - N) / (N (K - 1))`` (0 at N = K), so a schedule's count sets where
  the loss settles, not only how fast it gets there::

      s(t+1) = s*(N) + (1 - rho(N) w(s)) (s(t) - s*(N))         (unchanged when N = 0)

  starting at ``s(0) = (1 - head_fraction) G0``: ``head_fraction`` is the share of the gap a
  trained head closes on the pretrained encoder alone;
* head k only learns in the rounds its device is scheduled (its head trains on its own data):
  ``h_k(t+1) = (1 - head_rate) h_k(t)`` if scheduled, else ``h_k(t)``. So which devices take part
  matters: a fixed subset leaves the other heads untrained, rotating the same count trains all.

Version 4 (``drift_rate > 0``, ``settle_power != 1`` or ``settle_cap``; shipped as
``calibration/iid-v4.json``, ``surrogate="iid-v4"``, fitted by the timing protocol's refit,
``edgeft.training.timing_refit``; no v4 form met the criteria on Dirichlet shards, in two
rounds) adds two things the timing protocol's real runs show, both 0 / off in v3:

* a round with few devices on an encoder better than s*(N) makes it *forget* fast (client drift:
  the update follows a few devices' data): below s*(N) the shared gap rises at ``drift_rate`` per
  round, ``s(t+1) = s*(N) - (1 - drift_rate) (s*(N) - s(t))``, instead of at the (slow) rho(N) w(s)
  of the descent above it (``drift_rate = 0``: v3, the same rate both ways);
* the settle level's shape in N, ``s*(N) = stationary ((K - N) / (N (K - 1)))^settle_power``
  (v3: power 1), optionally capped at the pretrained gap s(0) (``settle_cap``: rounds with few
  devices cannot make the encoder worse than the pretrained one).

The noise (``noise > 0``) is added to the reported loss, not to the state. Data heterogeneity
(i.i.d. vs Dirichlet shards) is a property of the calibration: the two shipped files are fitted
to real runs on each kind of partition. With ``head_rate = head_fraction = stationary = 0`` the
model is version 2 exactly (below, the loss is the state), which is how older calibrations
(``calibration/v2-synthetic.json``) and checkpoints keep their numbers.

Version 2:

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
#: the shipped calibrations, by the data partition they were fitted on
DEFAULT_CALIBRATIONS = {
    "iid": CALIBRATION_DIR / "iid.json",
    "dirichlet": CALIBRATION_DIR / "dirichlet.json",
}
DEFAULT_CALIBRATION = DEFAULT_CALIBRATIONS["iid"]
#: the version-2 calibration of the first releases (synthetic task, pooled heads)
V2_CALIBRATION = CALIBRATION_DIR / "v2-synthetic.json"
#: the shipped calibrations by name (``surrogate="iid"`` etc.; ``iid-v4``: surrogate v4 on i.i.d.
#: shards, from the timing protocol's refit, ``edgeft.training.timing_refit``)
SHIPPED = ("iid", "dirichlet", "v2-synthetic", "iid-v4")
_DEFAULT_CACHE: dict[str, tuple[int, SurrogateParams]] = {}


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
        stationary: v3: settled excess of the shared gap with one of K devices scheduled
            (``s*(N) = stationary (K - N) / (N (K - 1))``), >= 0; 0 = one floor for every N.
        head_fraction: v3: share of the initial gap a trained head closes on the pretrained
            encoder alone, in [0, 1) (0: the encoder and the heads only gain together).
        head_rate: v3: share of a head's untrained part closed in a round its device is
            scheduled, in [0, 1]; > 0 turns the per-device heads on (each starts untrained).
        drift_rate: v4: per-round rate at which a shared gap below s*(N) rises to it, in [0, 1]
            (0 = v3: the descent's rate rho(N) w(s) both ways).
        settle_power: v4: exponent of s*(N)'s shape in N, > 0 (1 = v3).
        settle_cap: v4: cap s*(N) at the pretrained shared gap s(0) (False = v3).
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
    stationary: float = 0.0
    head_fraction: float = 0.0
    head_rate: float = 0.0
    drift_rate: float = 0.0
    settle_power: float = 1.0
    settle_cap: bool = False
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
        check_range("surrogate.stationary", self.stationary, 0.0)
        check_range("surrogate.head_fraction", self.head_fraction, 0.0, 1.0, high_open=True)
        check_range("surrogate.head_rate", self.head_rate, 0.0, 1.0)
        check_range("surrogate.drift_rate", self.drift_rate, 0.0, 1.0)
        check_range("surrogate.settle_power", self.settle_power, 0.0, low_open=True)
        if not isinstance(self.settle_cap, (bool, np.bool_)):
            raise ValueError(f"surrogate.settle_cap must be true or false, got {self.settle_cap!r}")
        check_range("surrogate.noise", self.noise, 0.0)
        check_range("surrogate.initial_accuracy", self.initial_accuracy, 0.0, 1.0)
        check_range("surrogate.final_accuracy", self.final_accuracy, 0.0, 1.0)

    @property
    def version(self) -> int:
        """4 when a v4 term is on (``drift_rate > 0``, ``settle_power != 1``, ``settle_cap``);
        else 3 when the per-device heads (``head_rate > 0``), the stationary term or the encoder's
        head start (``head_fraction > 0``) are on; else 2 (the loss is the whole state)."""
        if self.drift_rate > 0.0 or self.settle_power != 1.0 or self.settle_cap:
            return 4
        on = self.head_rate > 0.0 or self.stationary > 0.0 or self.head_fraction > 0.0
        return 3 if on else 2

    @property
    def head_start(self) -> float:
        """Each head's untrained part at the start: 1 with per-device heads (``head_rate > 0``),
        0 without."""
        return 1.0 if self.head_rate > 0.0 else 0.0

    @classmethod
    def from_json(cls, path: str | Path) -> SurrogateParams:
        """Load constants written by ``edgeft calibrate`` (extra keys in the file are ignored)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"surrogate calibration file {path} not found; run `edgeft calibrate --out "
                f"{path}`, pass a shipped calibration by name ({', '.join(SHIPPED)}) or 'built-in'"
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
    def resolve(cls, spec: Any, partition: str = "iid") -> SurrogateParams:
        """``"default"`` (the shipped calibration of ``partition``: ``calibration/iid.json`` or
        ``calibration/dirichlet.json``), the name of a shipped calibration (:data:`SHIPPED`),
        ``"built-in"``, a path, a dict or params."""
        if isinstance(spec, SurrogateParams):
            return spec
        if isinstance(spec, dict):
            return cls(**spec)
        if spec == "built-in":
            return cls()
        if spec == "default":
            if partition not in DEFAULT_CALIBRATIONS:
                raise ValueError(
                    f"data partition must be one of {sorted(DEFAULT_CALIBRATIONS)}, "
                    f"got {partition!r}"
                )
            path = DEFAULT_CALIBRATIONS[partition]
            if not path.is_file():
                return cls()
            stamp = path.stat().st_mtime_ns  # parsed once per file version
            cached = _DEFAULT_CACHE.get(partition)
            if cached is None or cached[0] != stamp:
                cached = _DEFAULT_CACHE[partition] = (stamp, cls.from_json(path))
            return cached[1]
        if isinstance(spec, str) and spec in SHIPPED:
            return cls.from_json(CALIBRATION_DIR / f"{spec}.json")
        if isinstance(spec, (str, Path)):
            return cls.from_json(spec)
        raise ValueError(
            f"surrogate must be 'default', one of {list(SHIPPED)}, 'built-in', a calibration JSON "
            f"path, a dict or SurrogateParams, got {spec!r}"
        )


def contraction(
    num_scheduled: np.ndarray | int, num_devices: int, params: SurrogateParams
) -> np.ndarray | float:
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


def settle_table(num_devices: int, params: SurrogateParams) -> np.ndarray:
    """s*(N) for N = 0..K: the shared gap a constant N settles at (v3's stationary term;
    ``stationary ((K - N) / (N (K - 1)))^settle_power``, capped at s(0) with ``settle_cap``;
    0 at N = 0 and N = K)."""
    k = num_devices
    ns = np.arange(k + 1, dtype=np.float64)
    shape = (k - ns) / (np.maximum(ns, 1.0) * max(k - 1, 1))
    if params.settle_power != 1.0:
        shape = shape**params.settle_power
    out = params.stationary * shape
    if params.settle_cap:
        out = np.minimum(out, shared_gap0(params))
    out[0] = 0.0
    return out


def step_loss(
    loss: np.ndarray | float,
    num_scheduled: np.ndarray | int,
    num_devices: int,
    params: SurrogateParams,
    noise: np.ndarray | float | None = None,
    rho: np.ndarray | float | None = None,
) -> np.ndarray | float:
    """One round of the version-2 surrogate: the loss after a round with ``num_scheduled``
    devices (v3: :func:`step_shared`, :func:`step_heads`, :func:`loss_of`).

    ``noise`` is a standard-normal draw of the same shape (ignored when ``params.noise`` is 0);
    ``rho`` may pass ``contraction(num_scheduled, ...)`` precomputed (e.g. from a table over N).
    """
    if rho is None:
        rho = contraction(num_scheduled, num_devices, params)
    gap = loss - params.loss_floor
    rho = _warm_up(rho, gap, params.initial_loss - params.loss_floor, params)
    new = params.loss_floor + (1.0 - rho) * gap
    return _noisy(new, num_scheduled, params, noise)


def _warm_up(rho: Any, gap: Any, gap0: float, params: SurrogateParams) -> Any:
    """rho times the warm-up factor ``onset + (1 - onset) (1 - gap / gap0)`` (clipped)."""
    if params.onset < 1.0:  # warm-up: onset of the full rate at gap_0, growing as the gap closes
        frac = 1.0 - gap / gap0
        if isinstance(frac, float):  # the single env's hot path
            frac = min(max(frac, 0.0), 1.0)
        else:
            frac = np.clip(frac, 0.0, 1.0)
        rho = rho * (params.onset + (1.0 - params.onset) * frac)
    return rho


def _noisy(new: Any, num_scheduled: Any, params: SurrogateParams, noise: Any) -> Any:
    if params.noise > 0.0 and noise is not None:
        n = np.maximum(np.asarray(num_scheduled, dtype=np.float64), 1.0)
        new = new + np.where(np.asarray(num_scheduled) > 0, params.noise * noise / np.sqrt(n), 0.0)
        new = np.maximum(new, 0.0)
    return new


def shared_gap0(params: SurrogateParams) -> float:
    """v3: the shared gap at the start, ``(1 - head_fraction) G0`` (``G0`` without per-device
    heads, so that the loss starts at ``initial_loss``)."""
    hf = params.head_fraction if params.head_rate > 0.0 else 0.0
    return (1.0 - hf) * (params.initial_loss - params.loss_floor)


def step_shared(
    shared: np.ndarray | float,
    rho: np.ndarray | float,
    settle: np.ndarray | float,
    params: SurrogateParams,
) -> np.ndarray | float:
    """v3: the shared gap after a round (``rho`` = rho(N), ``settle`` = s*(N) of the round's N;
    v4 with ``drift_rate > 0``: a gap below ``settle`` rises to it at ``drift_rate``). A round
    with N = 0 (rho 0, settle 0, the gap >= 0) leaves the gap as it is."""
    rho = _warm_up(rho, shared, shared_gap0(params), params)
    if params.drift_rate > 0.0:
        rho = np.where(shared < settle, params.drift_rate, rho)
        if rho.ndim == 0:
            rho = float(rho)
    return settle + (1.0 - rho) * (shared - settle)


def loss_of(
    shared: np.ndarray | float, heads_mean: np.ndarray | float, params: SurrogateParams
) -> np.ndarray | float:
    """v3: the global loss ``loss_floor + s + H (G0 - s)`` of a shared gap and mean head gap."""
    g0 = params.initial_loss - params.loss_floor
    return params.loss_floor + shared + heads_mean * (g0 - shared)


def step_heads(heads: np.ndarray, scheduled: np.ndarray, params: SurrogateParams) -> np.ndarray:
    """v3's per-device part: each scheduled device's head gap shrinks by ``head_rate``, the others
    stay (a new array; ``heads`` and ``scheduled`` of shape (..., K))."""
    return np.where(scheduled, heads * (1.0 - params.head_rate), heads)


def simulate_masks(masks: np.ndarray, params: SurrogateParams) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free v3 trajectories of schedules: masks (..., T, K) bool -> (loss (..., T + 1),
    per-device loss (..., T + 1, K)), index 0 being the start. Any leading axes are a batch of
    schedules stepped together (what ``edgeft calibrate --refit`` fits with)."""
    masks = np.asarray(masks, dtype=bool)
    lead, (T, k) = masks.shape[:-2], masks.shape[-2:]
    masks = masks.reshape((-1, T, k))
    B = masks.shape[0]
    rho = np.asarray(contraction(np.arange(k + 1), k, params))
    settle = settle_table(k, params)
    g0 = params.initial_loss - params.loss_floor
    heads = np.full((B, k), params.head_start)
    shared: Any = np.full(B, shared_gap0(params))
    out = np.empty((B, T + 1))
    dev = np.empty((B, T + 1, k))
    counts = masks.sum(-1)
    for t in range(T + 1):
        if t > 0:
            n = counts[:, t - 1]
            shared = step_shared(shared, rho[n], settle[n], params)
            heads = step_heads(heads, masks[:, t - 1], params)
        dev[:, t] = params.loss_floor + shared[:, None] + heads * (g0 - shared)[:, None]
        out[:, t] = loss_of(shared, heads.mean(-1), params)
    return out.reshape(lead + (T + 1,)), dev.reshape(lead + (T + 1, k))


def accuracy_of_loss(loss: np.ndarray | float, params: SurrogateParams) -> np.ndarray | float:
    """Test accuracy implied by a surrogate loss (affine between the initial and final points,
    clipped to [0, 1])."""
    frac = (loss - params.loss_floor) / (params.initial_loss - params.loss_floor)
    acc = params.final_accuracy - (params.final_accuracy - params.initial_accuracy) * frac
    if isinstance(acc, (float, np.floating)):
        return min(max(float(acc), 0.0), 1.0)
    return np.minimum(np.maximum(acc, 0.0), 1.0)
