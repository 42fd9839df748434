"""Configuration of ``edgeft/MECOffloading-v0`` (MEC Section 3 and 5, corrected per
docs/corrections.md).

The config depends on the published formulas only (``formulas``, numpy only) for its derived
reference point and weights; nothing here imports the typed values, the observation or the
dynamics, so every other module of the family can import it without a cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from edgeft.envs.common import check_choice, check_range
from edgeft.envs.mec import formulas as F
from edgeft.envs.real_config import validated_training

ACTION_MODES = ("full", "discrete", "box")
MODES = ("surrogate", "real")

#: Smallest fraction of a budget (p^max, a server's band or GPU, f^max) a decision may use: a zero
#: power, bandwidth or frequency would make a delay infinite. The projection of every action mode,
#: the resource rules and the reference solver all floor at it.
MIN_FRACTION = 1e-3

#: Named scenarios. "paper" is MEC Section 5 literally: D^U = 1 FLOP/cycle/core (so every user
#: keeps alpha = 1) and no upload-delay term in Cost_u (so energy alone drives power to 0).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "num_users": 50,
        "num_servers": 10,
        "num_layers": 32,
        "flops_per_cycle_user": 1.0,
        "upload_delay": False,
        "w_stability": 1.0,
    },
}


@dataclass(frozen=True)
class MECConfig:
    """Parameters of the MEC split-training offloading env.

    Units: powers in W, frequencies in Hz, bandwidth in Hz, energy in J, time in s, lengths in m.

    Attributes:
        num_users: N, mobile users.
        num_servers: M, edge servers.
        num_layers: Upsilon, transformer layers of the shared model (LLaMA-7B: 32). A user trains
            alpha_n in [1, Upsilon - 1] layers locally (alpha = Upsilon makes the stability bound
            infinite; docs/corrections.md).
        w_energy, w_delay, w_stability: weights of the three terms. Each is divided by the term's
            value at a reference point (:attr:`reference_point`) so that weights of 1 mean
            "equal importance" (docs/corrections.md: raw totals differ by 1e7).
            Default w_stability = 0.2:
            with 1 (the paper's value, kept by ``preset="paper"``) the stability bound pins
            nearly every alpha to 1 (measured: 3% of users above 1.5 with D^U = 512), with 0.2
            about a quarter of the users train 4-24 layers locally.
        episode_rounds: rounds per episode (the env truncates after this many steps).
        action_mode: "full" (Box (N, 6): every decision, exactly what the reference policies
            output), "discrete" (MultiDiscrete: alpha and server per user, resources by the env's
            fast rule) or "box" (Box [-1, 1]^(6N), normalised decisions).
        mode: "surrogate" (cost model only) or "real" (each user's job runs on the split-LoRA
            engine of ``edgeft.training``).
        preset: "default" or "paper" (MEC Section 5 literally).
        upload_delay: add w_t s(d_n)/r_nm to Cost_u (docs/corrections.md correction; the
            paper omits it).
        batch_size: B of psi(d) (paper: 512).
        hidden_size: h of psi(d) (paper: 1024).
        tokens_min, tokens_max: d_n ~ U{tokens_min..tokens_max}, drawn anew each round.
        bits_per_element: s(d) = B d h bits_per_element bits (docs/corrections.md: 16).
        area_m: users and servers lie in an area_m x area_m square.
        min_distance_m: minimum user-server distance (path-loss model validity).
        noise_dbm_per_hz: sigma^2 as a density (dBm/Hz); the rate multiplies it by b.
        p_max_range_w: p_n^max ~ U[low, high] W.
        f_user_max_range_hz: f_n^max ~ U[low, high] Hz.
        f_edge_max_range_hz: f_m^max ~ U[low, high] Hz.
        bandwidth_hz: b_m^max per server (Hz).
        cores_user: C_n^U drawn uniformly from these values.
        flops_per_cycle_user: D_n^U. The paper's 1 makes a device ~500x slower per layer than an
            edge server and alpha trivial; the default 512 (an A15-class mobile GPU does about
            400 fp16 FLOP/cycle/core) makes the offloading decision non-trivial (at 256, alpha
            stays 1 for 99% of users under the normalised weights; docs/corrections.md).
        cores_edge_range: C_m^E ~ U{low..high}.
        flops_per_cycle_edge: D_m^E drawn uniformly from these values.
        kappa_user, kappa_edge: kappa_1, kappa_2 in W/(cycle/s)^3 (unspecified;
            docs/corrections.md defaults).
        lipschitz: L of the stability bound 2 L^2 / (k (1 - alpha/Upsilon)).
        samples_range: k_n ~ U{low..high}, training samples of user n.
        mobility_step_m: RMS displacement of a user per round (Gauss-Markov mobility).
        mobility_memory: Gauss-Markov memory of the velocity in [0, 1).
        fading_correlation: AR(1) coefficient of the Rayleigh small-scale fading from round to
            round, in [0, 1] (1 = static fading).
        energy_budget_scale: each user's device-energy budget per round is this times the device
            energy at the reference point times U[0.75, 1.25]; the episode budget is
            episode_rounds times that.
        energy_penalty: reward weight of the energy-budget virtual queue (see the env's docs).
        training: real mode: an ``edgeft.training.TrainingConfig`` or a dict of its fields
            (model, task, LoRA, lr, batch size, dtype, bits per element); None = its defaults
            (the offline pretrained ``"minilm"`` on ``"synthetic-text"``). In real mode the env
            replaces num_layers, hidden_size, batch_size and bits_per_element by the real
            model's and the training config's values and clips tokens_min/tokens_max to the
            longest sequence the data holds (``edgeft.training.mec``), so psi(d) and s(d)
            describe the computation that really runs. The env does not rewrite this config:
            the values in force are ``env.unwrapped.config_in_force`` (read them with
            ``edgeft.envs.common.config_in_force(env)``). Passing ``training`` without
            ``mode="real"`` raises ``ValueError`` (it would be silently ignored).
    """

    family: ClassVar[str] = "mec"
    ACTION_MODES: ClassVar[tuple[str, ...]] = ACTION_MODES

    num_users: int = 50
    num_servers: int = 10
    num_layers: int = 32
    w_energy: float = 1.0
    w_delay: float = 1.0
    w_stability: float = 0.2
    episode_rounds: int = 20
    action_mode: str = "full"
    mode: str = "surrogate"
    preset: str = "default"
    upload_delay: bool = True
    batch_size: int = 512
    hidden_size: int = 1024
    tokens_min: int = 512
    tokens_max: int = 1024
    bits_per_element: float = 16.0
    area_m: float = 1000.0
    min_distance_m: float = 10.0
    noise_dbm_per_hz: float = -134.0
    p_max_range_w: tuple[float, float] = (1.0, 2.0)
    f_user_max_range_hz: tuple[float, float] = (0.5e9, 1.0e9)
    f_edge_max_range_hz: tuple[float, float] = (1.0e9, 3.0e9)
    bandwidth_hz: float = 20e6
    cores_user: tuple[int, ...] = (4, 5, 6)
    flops_per_cycle_user: float = 512.0
    cores_edge_range: tuple[int, int] = (2560, 5120)
    flops_per_cycle_edge: tuple[float, ...] = (1.0, 2.0)
    kappa_user: float = 2e-27
    kappa_edge: float = 3e-26
    lipschitz: float = 1.0
    samples_range: tuple[int, int] = (1000, 5000)
    mobility_step_m: float = 20.0
    mobility_memory: float = 0.8
    fading_correlation: float = 0.9
    energy_budget_scale: float = 1.0
    energy_penalty: float = 1.0
    training: Any = None

    def __post_init__(self) -> None:
        check_range("num_users", self.num_users, 1, 100_000, integer=True)
        check_range("num_servers", self.num_servers, 1, 10_000, integer=True)
        check_range("num_layers", self.num_layers, 2, 10_000, integer=True)
        check_range("w_energy", self.w_energy, 0.0)
        check_range("w_delay", self.w_delay, 0.0)
        check_range("w_stability", self.w_stability, 0.0)
        if self.w_energy + self.w_delay + self.w_stability <= 0:
            raise ValueError("w_energy + w_delay + w_stability must be > 0, got all zero")
        check_range("episode_rounds", self.episode_rounds, 1, 10_000_000, integer=True)
        check_choice("action_mode", self.action_mode, ACTION_MODES)
        check_choice("mode", self.mode, MODES)
        check_choice("preset", self.preset, ("default", *PRESETS))
        if not isinstance(self.upload_delay, bool):
            raise ValueError(f"upload_delay must be a bool, got {self.upload_delay!r}")
        check_range("batch_size", self.batch_size, 1, None, integer=True)
        check_range("hidden_size", self.hidden_size, 1, None, integer=True)
        check_range("tokens_min", self.tokens_min, 1, None, integer=True)
        check_range("tokens_max", self.tokens_max, self.tokens_min, None, integer=True)
        check_range("bits_per_element", self.bits_per_element, 0.0, low_open=True)
        check_range("area_m", self.area_m, 0.0, low_open=True)
        check_range("min_distance_m", self.min_distance_m, 0.0, self.area_m / 4)
        check_range("noise_dbm_per_hz", self.noise_dbm_per_hz, -250.0, 0.0)
        _check_interval("p_max_range_w", self.p_max_range_w, 0.0)
        _check_interval("f_user_max_range_hz", self.f_user_max_range_hz, 0.0)
        _check_interval("f_edge_max_range_hz", self.f_edge_max_range_hz, 0.0)
        check_range("bandwidth_hz", self.bandwidth_hz, 0.0, low_open=True)
        _check_values("cores_user", self.cores_user, integer=True)
        check_range("flops_per_cycle_user", self.flops_per_cycle_user, 0.0, low_open=True)
        _check_interval("cores_edge_range", self.cores_edge_range, 0.0, integer=True)
        _check_values("flops_per_cycle_edge", self.flops_per_cycle_edge)
        check_range("kappa_user", self.kappa_user, 0.0, low_open=True)
        check_range("kappa_edge", self.kappa_edge, 0.0, low_open=True)
        check_range("lipschitz", self.lipschitz, 0.0, low_open=True)
        _check_interval("samples_range", self.samples_range, 0.0, integer=True)
        check_range("mobility_step_m", self.mobility_step_m, 0.0, self.area_m)
        check_range("mobility_memory", self.mobility_memory, 0.0, 1.0, high_open=True)
        check_range("fading_correlation", self.fading_correlation, 0.0, 1.0)
        check_range("energy_budget_scale", self.energy_budget_scale, 0.0, low_open=True)
        check_range("energy_penalty", self.energy_penalty, 0.0)
        object.__setattr__(self, "training", validated_training(self.training, self.mode))
        for name in (
            "num_users",
            "num_servers",
            "num_layers",
            "episode_rounds",
            "batch_size",
            "hidden_size",
            "tokens_min",
            "tokens_max",
        ):
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in (
            "p_max_range_w",
            "f_user_max_range_hz",
            "f_edge_max_range_hz",
            "flops_per_cycle_edge",
        ):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        for name in ("cores_user", "cores_edge_range", "samples_range"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    # ----------------------------------------------------------------- derived quantities
    @property
    def noise_psd(self) -> float:
        """sigma^2 in W/Hz."""
        return 10.0 ** (self.noise_dbm_per_hz / 10.0) * 1e-3

    @property
    def reference_distance_m(self) -> float:
        """Typical user-to-nearest-server distance 0.5 area / sqrt(M) (for the reference point)."""
        return max(self.min_distance_m, 0.5 * self.area_m / math.sqrt(self.num_servers))

    @cached_property
    def _reference(self) -> dict[str, float]:
        return reference_terms(self)

    @property
    def reference_point(self) -> dict[str, float]:
        """Per-user energy (J), delay (s) and stability bound at the reference decision.

        The reference decision is the "middle" of the design space on an average instance:
        alpha = Upsilon/2, p = mean p^max, f_n = mean f^max, N/M users per server sharing its
        bandwidth and GPU equally, mean token length, unit fading at
        :attr:`reference_distance_m`. The weights are w_x divided by N times these values, so
        the weighted cost of the reference decision is about w_energy + w_delay + w_stability.
        (Computed once per config; each call returns a fresh dict.)
        """
        return dict(self._reference)

    @cached_property
    def weights(self) -> tuple[float, float, float]:
        """(omega_e, omega_t, omega_s): the normalised weights of energy, delay and stability
        (computed once per config)."""
        ref = self._reference
        n = self.num_users
        return (
            self.w_energy / (n * ref["energy"]),
            self.w_delay / (n * ref["delay"]),
            self.w_stability / (n * ref["stability"]),
        )

    @property
    def max_alpha(self) -> int:
        """Largest admissible alpha_n: Upsilon - 1."""
        return self.num_layers - 1


def _check_interval(name: str, value: Any, low: float, *, integer: bool = False) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
    check_range(f"{name}[0]", value[0], low, None, low_open=True, integer=integer)
    check_range(f"{name}[1]", value[1], value[0], None, integer=integer)


def _check_values(name: str, value: Any, *, integer: bool = False) -> None:
    if not isinstance(value, (tuple, list)) or len(value) == 0:
        raise ValueError(f"{name} must be a non-empty tuple of positive numbers, got {value!r}")
    for i, v in enumerate(value):
        check_range(f"{name}[{i}]", v, 0.0, None, low_open=True, integer=integer)


def reference_terms(config: MECConfig) -> dict[str, float]:
    """Per-user energy (J), delay (s), stability and device energy at the reference decision.

    See ``MECConfig.reference_point``. Used to normalise the weights (docs/corrections.md: raw
    delay and
    energy totals dwarf the stability term by 1e7, so weights of 1 mean nothing unless
    normalised).
    """
    c = config
    d = 0.5 * (c.tokens_min + c.tokens_max)
    psi = float(F.flops_per_layer(d, c.batch_size, c.hidden_size))
    bits = float(F.activation_bits(d, c.batch_size, c.hidden_size, c.bits_per_element))
    alpha = 0.5 * c.num_layers
    share = c.num_servers / c.num_users
    fu = 0.5 * sum(c.f_user_max_range_hz)
    cu = float(np.mean(c.cores_user))
    fe = 0.5 * sum(c.f_edge_max_range_hz) * share
    ce = 0.5 * sum(c.cores_edge_range)
    de = float(np.mean(c.flops_per_cycle_edge))
    p = 0.5 * sum(c.p_max_range_w)
    g = 10.0 ** (-float(F.path_loss_db(c.reference_distance_m)) / 10.0)
    r = float(F.uplink_rate(c.bandwidth_hz * share, p, g, c.noise_psd))
    device_energy = (
        alpha * float(F.device_compute_energy(psi, fu, cu, c.flops_per_cycle_user, c.kappa_user))
        + bits * p / r
    )
    energy = device_energy + (c.num_layers - alpha) * float(
        F.edge_compute_energy(psi, fe, ce, de, c.kappa_edge)
    )
    delay = (
        alpha * float(F.device_compute_time(psi, fu, cu, c.flops_per_cycle_user))
        + (c.num_layers - alpha) * float(F.edge_compute_time(psi, fe, ce, de))
        + (bits / r if c.upload_delay else 0.0)
    )
    k = 0.5 * sum(c.samples_range)
    stab = float(F.stability_bound(alpha, c.num_layers, c.lipschitz, k))
    return {"energy": energy, "delay": delay, "stability": stab, "device_energy": device_energy}
