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
from edgeft.envs.common import Bound, check_choice, check_pair, check_values
from edgeft.envs.mec import formulas as F
from edgeft.envs.real_config import validated_training

ACTION_MODES = ("full", "discrete", "box", "discrete-priced")
#: the MultiDiscrete modes: (alpha, server) per user, resources by the env's exact rule; in
#: ``"discrete-priced"`` the rule prices device energy with the energy-budget queues
DISCRETE_MODES = ("discrete", "discrete-priced")
MODES = ("surrogate", "real")
#: the headline's price P of energy overshoot: cost per round charged per unit of mean relative
#: overshoot (the hindsight bound's multipliers are boxed in [0, P]; greedy-dpp and the
#: ``"discrete-priced"`` mode price energy at most P / N per user)
OVERSHOOT_PRICE = 100.0
#: V of the ``"discrete-priced"`` mode's drift-plus-penalty price
#: (``resources.queue_energy_price``), the default of the drift-plus-penalty reference
#: policies (``greedy-dpp``)
PRICE_V = 10.0

#: Smallest fraction of a budget (p^max, a server's band or GPU, f^max) a decision may use: a zero
#: power, bandwidth or frequency would make a delay infinite. The projection of every action mode,
#: the resource rules and the reference solver all floor at it.
MIN_FRACTION = 1e-3

#: The accepted range of every numeric field, and of each entry of the tuple fields (units in the
#: field's docs); the single source of the validation and of the tests that draw configs. Every
#: range is physically meaningful; with :data:`REFERENCE_RANGE` they keep the observations and
#: rewards finite in float32.
FIELD_RANGES: dict[str, Bound] = {
    "num_users": Bound(1, 100_000, "mobile users N", integer=True),
    "num_servers": Bound(1, 10_000, "edge servers M", integer=True),
    "num_layers": Bound(2, 10_000, "transformer layers Upsilon", integer=True),
    "w_energy": Bound(0.0, 1e6, "weight of the energy term, dimensionless"),
    "w_delay": Bound(0.0, 1e6, "weight of the delay term, dimensionless"),
    "w_stability": Bound(0.0, 1e6, "weight of the stability term, dimensionless"),
    "episode_rounds": Bound(1, 10_000_000, "rounds per episode", integer=True),
    "batch_size": Bound(1, 100_000, "batch size B of psi(d)", integer=True),
    "hidden_size": Bound(1, 100_000, "hidden size h of psi(d)", integer=True),
    "tokens_min": Bound(1, 1_000_000, "tokens per sample", integer=True),
    "tokens_max": Bound(1, 1_000_000, "tokens per sample, at least tokens_min", integer=True),
    "bits_per_element": Bound(1.0, 64.0, "bits per uploaded activation element"),
    "area_m": Bound(1.0, 50_000.0, "side of the square area in m"),
    "min_distance_m": Bound(0.1, 12_500.0, "minimum user-server distance in m, <= area_m / 4"),
    "noise_dbm_per_hz": Bound(-200.0, -100.0, "noise density in dBm/Hz"),
    "p_max_range_w": Bound(1e-6, 1e3, "maximum transmit power in W"),
    "f_user_max_range_hz": Bound(1e6, 1e11, "maximum device frequency in Hz"),
    "f_edge_max_range_hz": Bound(1e6, 1e11, "maximum edge-server frequency in Hz"),
    "bandwidth_hz": Bound(1e3, 1e11, "bandwidth per server in Hz"),
    "cores_user": Bound(1, 1_000_000, "device cores", integer=True),
    "flops_per_cycle_user": Bound(1e-3, 1e5, "device FLOP per cycle and core"),
    "cores_edge_range": Bound(1, 1_000_000, "edge-server cores", integer=True),
    "flops_per_cycle_edge": Bound(1e-3, 1e5, "edge-server FLOP per cycle and core"),
    "kappa_user": Bound(1e-35, 1e-20, "device switched capacitance in W/(cycle/s)^3"),
    "kappa_edge": Bound(1e-35, 1e-20, "edge switched capacitance in W/(cycle/s)^3"),
    "lipschitz": Bound(1e-6, 1e6, "Lipschitz constant L of the stability bound"),
    "samples_range": Bound(1, 1_000_000_000, "training samples per user", integer=True),
    "mobility_step_m": Bound(0.0, 50_000.0, "RMS displacement per round in m, <= area_m"),
    "mobility_memory": Bound(0.0, 1.0, "Gauss-Markov velocity memory", high_open=True),
    "fading_correlation": Bound(0.0, 1.0, "AR(1) fading correlation"),
    "energy_budget_scale": Bound(1e-3, 1e3, "energy budget over the reference device energy"),
    "energy_penalty": Bound(0.0, 1e6, "reward weight of the energy queue, dimensionless"),
}
#: The fields given as a (low, high) pair, and those given as a tuple of values to draw from;
#: each entry lies in the field's :data:`FIELD_RANGES` entry.
PAIR_FIELDS = (
    "p_max_range_w",
    "f_user_max_range_hz",
    "f_edge_max_range_hz",
    "cores_edge_range",
    "samples_range",
)
VALUES_FIELDS = ("cores_user", "flops_per_cycle_edge")
#: Range of each term of the reference point (energy and device energy in J, delay in s, the
#: stability bound): the weights divide by them and the energy budgets scale with the device
#: energy, so a config whose reference lies outside is refused, naming the fields behind it.
REFERENCE_RANGE = Bound(1e-30, 1e15, "per-user value at the reference decision")
#: The fields each reference term depends on (named when it lies outside :data:`REFERENCE_RANGE`).
_SIZES = "tokens_min, tokens_max, batch_size, hidden_size, num_layers"
_UPLINK = (
    "p_max_range_w, bits_per_element, bandwidth_hz, noise_dbm_per_hz, area_m, min_distance_m, "
    "num_users, num_servers"
)
_REFERENCE_FIELDS = {
    "energy": f"kappa_user, kappa_edge, f_user_max_range_hz, f_edge_max_range_hz, cores_user, "
    f"cores_edge_range, flops_per_cycle_user, flops_per_cycle_edge, {_UPLINK}, {_SIZES}",
    "delay": f"f_user_max_range_hz, f_edge_max_range_hz, cores_user, cores_edge_range, "
    f"flops_per_cycle_user, flops_per_cycle_edge, {_UPLINK}, {_SIZES}",
    "stability": "lipschitz, samples_range",
    "device_energy": f"kappa_user, f_user_max_range_hz, cores_user, flops_per_cycle_user, "
    f"{_UPLINK}, {_SIZES}",
}

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
        num_users: N, mobile users, in [1, 100000].
        num_servers: M, edge servers, in [1, 10000].
        num_layers: Upsilon, transformer layers of the shared model (LLaMA-7B: 32), in [2,
            10000]. A user trains alpha_n in [1, Upsilon - 1] layers locally (alpha = Upsilon
            makes the stability bound infinite; docs/corrections.md).
        w_energy, w_delay, w_stability: weights of the three terms. Each is divided by the term's
            value at a reference point (:attr:`reference_point`) so that weights of 1 mean
            "equal importance" (docs/corrections.md: raw totals differ by 1e7). Each in [0, 1e6].
            Default w_stability = 0.2:
            with 1 (the paper's value, kept by ``preset="paper"``) the stability bound pins
            nearly every alpha to 1 (measured: 3% of users above 1.5 with D^U = 512), with 0.2
            about a quarter of the users train 4-24 layers locally.
        episode_rounds: rounds per episode (the env truncates after this many steps), in [1,
            1e7].
        action_mode: "full" (Box (N, 6): every decision, exactly what the reference policies
            output), "discrete" (MultiDiscrete: alpha and server per user, resources by the env's
            exact rule for the round's weighted cost), "discrete-priced" (the same space; the
            rule also prices each user's device energy with its energy-budget queue, as
            ``greedy-dpp`` does, so power and frequencies follow the budgets) or "box" (Box
            [-1, 1]^(6N), normalised decisions).
        mode: "surrogate" (cost model only) or "real" (each user's job runs on the split-LoRA
            engine of ``edgeft.training``).
        preset: "default" or "paper" (MEC Section 5 literally).
        upload_delay: add w_t s(d_n)/r_nm to Cost_u (docs/corrections.md correction; the
            paper omits it).
        batch_size: B of psi(d) (paper: 512), in [1, 100000].
        hidden_size: h of psi(d) (paper: 1024), in [1, 100000].
        tokens_min, tokens_max: d_n ~ U{tokens_min..tokens_max}, drawn anew each round; both in
            [1, 1e6], tokens_max >= tokens_min.
        bits_per_element: s(d) = B d h bits_per_element bits (docs/corrections.md: 16), in [1,
            64].
        area_m: users and servers lie in an area_m x area_m square; side in [1, 50000] m.
        min_distance_m: minimum user-server distance (path-loss model validity), in [0.1,
            area_m / 4] m.
        noise_dbm_per_hz: sigma^2 as a density (dBm/Hz), in [-200, -100] (thermal noise: -174);
            the rate multiplies it by b.
        p_max_range_w: p_n^max ~ U[low, high] W; low <= high, both in [1e-6, 1e3] W.
        f_user_max_range_hz: f_n^max ~ U[low, high] Hz; low <= high, both in [1e6, 1e11] Hz.
        f_edge_max_range_hz: f_m^max ~ U[low, high] Hz; low <= high, both in [1e6, 1e11] Hz.
        bandwidth_hz: b_m^max per server (Hz), in [1e3, 1e11].
        cores_user: C_n^U drawn uniformly from these values (integers in [1, 1e6]).
        flops_per_cycle_user: D_n^U. The paper's 1 makes a device ~500x slower per layer than an
            edge server and alpha trivial; the default 512 (an A15-class mobile GPU does about
            400 fp16 FLOP/cycle/core) makes the offloading decision non-trivial (at 256, alpha
            stays 1 for 99% of users under the normalised weights; docs/corrections.md). In
            [1e-3, 1e5] FLOP per cycle and core.
        cores_edge_range: C_m^E ~ U{low..high}; low <= high, integers in [1, 1e6].
        flops_per_cycle_edge: D_m^E drawn uniformly from these values (each in [1e-3, 1e5]).
        kappa_user, kappa_edge: kappa_1, kappa_2 in W/(cycle/s)^3 (unspecified;
            docs/corrections.md defaults), each in [1e-35, 1e-20].
        lipschitz: L of the stability bound 2 L^2 / (k (1 - alpha/Upsilon)), in [1e-6, 1e6].
        samples_range: k_n ~ U{low..high}, training samples of user n; low <= high, integers
            in [1, 1e9].
        mobility_step_m: RMS displacement of a user per round (Gauss-Markov mobility), in [0,
            area_m] m.
        mobility_memory: Gauss-Markov memory of the velocity in [0, 1).
        fading_correlation: AR(1) coefficient of the Rayleigh small-scale fading from round to
            round, in [0, 1] (1 = static fading).
        energy_budget_scale: each user's device-energy budget per round is this times the device
            energy at the reference point times U[0.75, 1.25]; the episode budget is
            episode_rounds times that. In [1e-3, 1e3].
        energy_penalty: reward weight of the energy-budget virtual queue (see the env's docs),
            in [0, 1e6].
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

    Jointly, each term of the :attr:`reference_point` (energy and device energy in J, delay in
    s, the stability bound) must lie in :data:`REFERENCE_RANGE`, [1e-30, 1e15]: the weights
    divide by it and the energy budgets scale with it.
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
        r = FIELD_RANGES
        for name in (
            "num_users",
            "num_servers",
            "num_layers",
            "w_energy",
            "w_delay",
            "w_stability",
        ):
            r[name].check(name, getattr(self, name))
        if self.w_energy + self.w_delay + self.w_stability <= 0:
            raise ValueError("w_energy + w_delay + w_stability must be > 0, got all zero")
        r["episode_rounds"].check("episode_rounds", self.episode_rounds)
        check_choice("action_mode", self.action_mode, ACTION_MODES)
        check_choice("mode", self.mode, MODES)
        check_choice("preset", self.preset, ("default", *PRESETS))
        if not isinstance(self.upload_delay, bool):
            raise ValueError(f"upload_delay must be a bool, got {self.upload_delay!r}")
        for name in ("batch_size", "hidden_size", "tokens_min"):
            r[name].check(name, getattr(self, name))
        r["tokens_max"].check("tokens_max", self.tokens_max, low=self.tokens_min)
        for name in ("bits_per_element", "area_m"):
            r[name].check(name, getattr(self, name))
        r["min_distance_m"].check("min_distance_m", self.min_distance_m, high=self.area_m / 4)
        r["noise_dbm_per_hz"].check("noise_dbm_per_hz", self.noise_dbm_per_hz)
        for name in PAIR_FIELDS:
            check_pair(name, getattr(self, name), r[name])
        for name in VALUES_FIELDS:
            check_values(name, getattr(self, name), r[name])
        for name in (
            "bandwidth_hz",
            "flops_per_cycle_user",
            "kappa_user",
            "kappa_edge",
            "lipschitz",
            "mobility_memory",
            "fading_correlation",
            "energy_budget_scale",
            "energy_penalty",
        ):
            r[name].check(name, getattr(self, name))
        r["mobility_step_m"].check("mobility_step_m", self.mobility_step_m, high=self.area_m)
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
        self._check_reference()

    def _check_reference(self) -> None:
        """Refuse a config whose reference point (:attr:`reference_point`) leaves
        :data:`REFERENCE_RANGE`: the weights divide by it and the energy budgets scale with it,
        so its extremes would carry the costs, budgets and queues out of the float32 range."""
        try:
            with np.errstate(all="ignore"):
                ref = self._reference
        except (ZeroDivisionError, OverflowError):
            ref = {name: math.inf for name in _REFERENCE_FIELDS}
        bound = REFERENCE_RANGE
        for name, fields in _REFERENCE_FIELDS.items():
            value = ref[name]
            if not bound.low <= value <= bound.high:
                raise ValueError(
                    f"the reference point's {name} (here {value:.3g}, "
                    f"{'J' if 'energy' in name else 's' if name == 'delay' else 'the bound'} "
                    f"per user) must lie in {bound.text()}: the weights divide by it and the "
                    "energy budgets scale with it; bring it into range with the fields it "
                    f"depends on: {fields}"
                )

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
