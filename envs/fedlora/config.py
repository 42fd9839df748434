"""Configuration of ``edgeft/FedLoRAScheduling-v0``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from edgeft.envs.common import check_choice, check_range, validated_training
from edgeft.envs.fedlora.surrogate import SurrogateParams

ACTION_MODES = ("bandwidth", "count", "subset")
REWARDS = ("progress", "drift-plus-penalty", "drift-plus-penalty-paper")
MODES = ("surrogate", "real")
DATA_PARTITIONS = ("iid", "dirichlet")

#: Named scenarios. "paper" is FT Section V.A literally, including its delay budget of 0.05 ms
#: per bit, under which every scheme schedules nearly every device (docs/corrections.md).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "num_devices": 20,
        "bandwidth_hz": 10e6,
        "noise_psd": 1e-11,
        "tx_power_w": 1.0,
        "delay_budget_per_bit": 0.05e-3,
        "episode_rounds": 5000,
        "cell_center_m": 300.0,
        "cell_radius_m": 50.0,
        "path_loss_exponent": 3.5,
        "reference_distance_m": 10.0,
    },
}


@dataclass(frozen=True)
class FedLoRAConfig:
    """Parameters of the federated split-LoRA scheduling env (FT Section II, V.A).

    Attributes:
        num_devices: K, devices in the cell.
        bandwidth_hz: B, total uplink bandwidth shared by FDMA (Hz).
        noise_psd: sigma^2, noise power spectral density (W/Hz); the paper's 1e-11.
        tx_power_w: device transmit power (W), folded into |h|^2.
        bits_per_round: mu, bits each scheduled device exchanges per round (embeddings up,
            features down, feature gradients up). Surrogate mode; real mode measures it.
        delay_budget: D-bar in seconds per round; ``None`` =
            ``delay_budget_per_bit * bits_per_round``.
        delay_budget_per_bit: budget per bit (s/bit) used when ``delay_budget`` is None. The
            default 2 us/bit makes scheduling non-trivial; the paper's 50 us/bit does not.
        episode_rounds: T, rounds per episode (the env truncates after T steps).
        action_mode: "bandwidth" (Box(K) shares), "count" (Discrete(K+1): n strongest devices,
            min-max-delay split) or "subset" (MultiBinary(K), min-max-delay split).
        reward: "progress" (surrogate/real loss progress minus ``delay_penalty`` x budget
            excess), "drift-plus-penalty" (the corrected per-round Lyapunov objective
            N - zeta [q x + (x - 1)^2 / 2]) or "drift-plus-penalty-paper" (P1: N - zeta q x).
        zeta: the Lyapunov trade-off weight zeta (constant; the paper's "descending" schedule is
            unspecified).
        delay_penalty: weight of max(0, D/D-bar - 1) in the "progress" reward.
        progress_scale: the "progress" reward is this times the loss drop over the initial gap.
        cell_center_m, cell_radius_m: devices uniform in this disc; the server is at (0, 0).
        path_loss_exponent, reference_distance_m: large-scale fading (d/d0)^-exponent.
        mode: "surrogate" (learning-curve model) or "real" (a real split-LoRA round per step).
        surrogate: surrogate constants: "default" (the shipped v3 calibration of ``data``),
            "built-in", a JSON path, a dict or ``SurrogateParams``.
        data: how the training data is split across devices: "iid" (uniform shards) or
            "dirichlet" (label shares per device ~ Dirichlet(0.5), FT Section V's non-i.i.d.
            case). Surrogate mode: picks the shipped calibration fitted on that kind of shard
            (``calibration/iid.json``, ``calibration/dirichlet.json``); real mode: must agree
            with ``training.partition``.
        training: real-mode settings (``edgeft.training.TrainingConfig`` or a dict of its fields,
            validated here: an unknown field raises). Only with ``mode="real"``: given in
            surrogate mode it raises ``ValueError`` instead of being silently ignored.
        preset: "default" or "paper" (FT Section V.A values).
    """

    family: ClassVar[str] = "fedlora"
    ACTION_MODES: ClassVar[tuple[str, ...]] = ACTION_MODES

    num_devices: int = 20
    bandwidth_hz: float = 10e6
    noise_psd: float = 1e-11
    tx_power_w: float = 1.0
    bits_per_round: float = 1e6
    delay_budget: float | None = None
    delay_budget_per_bit: float = 2e-6
    episode_rounds: int = 100
    action_mode: str = "bandwidth"
    reward: str = "progress"
    zeta: float = 1.0
    delay_penalty: float = 1.0
    progress_scale: float = 100.0
    cell_center_m: float = 300.0
    cell_radius_m: float = 50.0
    path_loss_exponent: float = 3.5
    reference_distance_m: float = 10.0
    mode: str = "surrogate"
    surrogate: Any = "default"
    data: str = "iid"
    training: Any = None
    preset: str = "default"

    def __post_init__(self) -> None:
        check_range("num_devices", self.num_devices, 1, 100_000, integer=True)
        check_range("bandwidth_hz", self.bandwidth_hz, 0.0, low_open=True)
        check_range("noise_psd", self.noise_psd, 0.0, low_open=True)
        check_range("tx_power_w", self.tx_power_w, 0.0, low_open=True)
        check_range("bits_per_round", self.bits_per_round, 0.0, low_open=True)
        if self.delay_budget is not None:
            check_range("delay_budget", self.delay_budget, 0.0, low_open=True)
        check_range("delay_budget_per_bit", self.delay_budget_per_bit, 0.0, low_open=True)
        check_range("episode_rounds", self.episode_rounds, 1, 10_000_000, integer=True)
        check_choice("action_mode", self.action_mode, ACTION_MODES)
        check_choice("reward", self.reward, REWARDS)
        check_range("zeta", self.zeta, 0.0)
        check_range("delay_penalty", self.delay_penalty, 0.0)
        check_range("progress_scale", self.progress_scale, 0.0, low_open=True)
        check_range("cell_center_m", self.cell_center_m, 0.0)
        check_range("cell_radius_m", self.cell_radius_m, 0.0, low_open=True)
        check_range("path_loss_exponent", self.path_loss_exponent, 0.0, low_open=True)
        check_range("reference_distance_m", self.reference_distance_m, 0.0, low_open=True)
        if self.cell_center_m - self.cell_radius_m < 1.0:
            raise ValueError(
                "cell_center_m - cell_radius_m must be >= 1 m (devices must not reach the server "
                f"at (0, 0)); got center {self.cell_center_m} and radius {self.cell_radius_m}"
            )
        check_choice("mode", self.mode, MODES)
        check_choice("preset", self.preset, ("default", *PRESETS))
        object.__setattr__(self, "training", validated_training(self.training, self.mode))
        object.__setattr__(self, "num_devices", int(self.num_devices))
        object.__setattr__(self, "episode_rounds", int(self.episode_rounds))
        check_choice("data", self.data, DATA_PARTITIONS)
        object.__setattr__(self, "surrogate", SurrogateParams.resolve(self.surrogate, self.data))
        if self.mode == "real" and self.training.partition != self.data:
            raise ValueError(
                f"data={self.data!r} but training.partition={self.training.partition!r}: they name "
                "the same split of the data; set both to the same value (real mode trains on "
                "training.partition)")

    @property
    def budget_s(self) -> float:
        """D-bar in seconds per round (surrogate mode; real mode rescales by the measured bits)."""
        if self.delay_budget is not None:
            return float(self.delay_budget)
        return float(self.delay_budget_per_bit * self.bits_per_round)

    @property
    def obs_size(self) -> int:
        """Length of the observation vector: 3 K + 3."""
        return 3 * self.num_devices + 3
