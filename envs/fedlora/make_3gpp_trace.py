"""Generate the cached channel trace of ``channel="3gpp-umi"`` with sionna's 3GPP TR 38.901 UMi
model (the optional extra ``edgeft[3gpp]``; the env only reads the file it writes).

    pip install 'edgeft[3gpp]' -c constraints.txt      # sionna-no-rt (torch based), h5py
    python -m edgeft.envs.fedlora.make_3gpp_trace        # writes envs/fedlora/channels/3gpp-umi.*

What a trace is (defaults in brackets; every setting is a flag, and the JSON sidecar records
them all with the sionna, torch and numpy versions):

- Geometry: one base station (the FedLoRA server) at the origin, 10 m high, a single
  vertically polarised TR 38.901 sector element (8 dBi) facing the cell; K [20] single-antenna
  (omni) devices 1.5 m high, outdoors, dropped uniformly in the FT paper's disc (centre
  300 m, radius 50 m), which is inside the UMi model's range (10 m < d_2D < 5 km; a UMi cell's
  inter-site distance is 200 m, so these are cell-edge to beyond-cell-edge links, mostly NLoS).
- Mobility: each device walks with the Gauss-Markov model of the env's correlated channels
  (``edgeft.envs.channels``: RMS speed [1.5 m/s], memory [0.8], rounds of [2 s] = D-bar,
  reflected at the disc's edge), R [128] rounds.
- Channel: sionna's UMi (TR 38.901 v19.2 tables, 3.5 GHz, uplink) on one topology snapshot
  that holds every device's position in every round, as one *track* per device
  (``spatial_consistency_track_ids``), with spatial consistency on: path loss follows the
  distance, and shadowing (always correlated over distance in sionna), the LoS/NLoS state and
  the cluster parameters are spatially consistent along a track, so a device's channel
  evolves over rounds as it walks (~3 m per round) instead of being redrawn. (sionna 2.2 does
  not implement TR 38.901's stateful mobility procedure 7.6.3.2; a snapshot of the whole track
  gives the same spatial consistency of the random variables, the Doppler within a round is not
  used.) The cluster model gives the path coefficients and delays of each round; the round's
  wideband power gain is the mean of |H(f)|^2 = |sum_p a_p exp(-j 2 pi f tau_p)|^2 over
  [64] frequencies across the env's [10 MHz] band. It includes path loss, shadowing, the
  antenna patterns and the small-scale fading of the clusters.
- Units (the env's): gains in dB of received power per W of ``tx_power_w``, to be divided by the
  env's ``noise_psd``. ``--reference ft-median`` [default] shifts all gains by one constant so
  that their median equals the median gain of the FedLoRA default channel (FT V.A: path loss
  (d/10 m)^-3.5 in the same disc, Rayleigh fading, drawn with the env's own functions): the
  operating point of the env's defaults is kept (an agent trained on them sees gains in its
  range, at the same SNR), and what changes is the channel's statistics (LoS/NLoS mix, 7-8 dB
  shadowing, frequency-diverse fading, persistence over rounds). ``--reference physical``
  keeps the physical link budget instead: a 23 dBm device, thermal noise -174 dBm/Hz and a
  5 dB base-station noise figure, expressed over the env's default ``noise_psd`` of 1e-11 W/Hz
  (the sidecar records both offsets; the physical budget is ~20 dB above the env's default
  operating point, under which nearly every device fits the delay budget).

Each trace i is a function of ``seed + i`` alone (numpy for positions and walks, sionna's
``config.seed`` for the channel), so a trace can be regenerated on its own (the tests do).
The file is ``gain_db``, float32 (traces, rounds, devices), compressed (~0.6 MB at 64 x 128 x
20).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.envs.channel_traces import trace_path
from edgeft.envs.channels import gauss_markov_start, gauss_markov_velocity, reflect_in_disc
from edgeft.envs.fedlora.formulas import sample_positions

#: the env's default noise density (W/Hz), the reference of the physical link budget
ENV_NOISE_PSD = 1e-11


@dataclass(frozen=True)
class TraceSettings:
    """Settings of a trace file (each is a ``--flag`` of the script; ``_`` -> ``-``).

    Attributes:
        traces: number of traces (independent drops).
        rounds: R, rounds per trace.
        devices: K, devices per trace.
        seed: trace i is generated from seed + i.
        scenario: TR 38.901 scenario (only "umi").
        carrier_frequency_hz: carrier frequency (Hz).
        bandwidth_hz: band over which the power gain is averaged (the env's B).
        frequencies: frequencies across the band at which |H(f)|^2 is averaged.
        cell_center_m, cell_radius_m: devices start uniform in this disc (the FT geometry);
            the base station is at the origin.
        bs_height_m, ut_height_m: antenna heights (TR 38.901 UMi: 10 m, 1.5 m).
        indoor_fraction: probability that a device is indoors (O2I loss, "low" model); TR
            38.901's UMi calibration uses 0.8, the FT paper's devices are outdoors (0).
        speed_mps: RMS walking speed (Gauss-Markov, zero mean velocity).
        mobility_memory: Gauss-Markov memory of the velocity from one round to the next.
        round_duration_s: length of one round (s).
        spatial_consistency: sionna's spatially consistent LoS state and small-scale random
            variables along each track (shadowing is spatially correlated either way).
        reference: "ft-median" (median gain = the FedLoRA default channel's) or "physical"
            (23 dBm device, -174 dBm/Hz + noise figure, over the env's noise_psd of 1e-11).
        ue_power_dbm: device transmit power of the physical link budget (dBm).
        noise_figure_db: base-station noise figure of the physical link budget (dB).
    """

    traces: int = 64
    rounds: int = 128
    devices: int = 20
    seed: int = 38_901_000
    scenario: str = "umi"
    carrier_frequency_hz: float = 3.5e9
    bandwidth_hz: float = 10e6
    frequencies: int = 64
    cell_center_m: float = 300.0
    cell_radius_m: float = 50.0
    bs_height_m: float = 10.0
    ut_height_m: float = 1.5
    indoor_fraction: float = 0.0
    speed_mps: float = 1.5
    mobility_memory: float = 0.8
    round_duration_s: float = 2.0
    spatial_consistency: bool = True
    reference: str = "ft-median"
    ue_power_dbm: float = 23.0
    noise_figure_db: float = 5.0

    def __post_init__(self) -> None:
        if self.scenario != "umi":
            raise ValueError(f"scenario must be 'umi' (the one wired here), got {self.scenario!r}")
        if self.reference not in ("ft-median", "physical"):
            raise ValueError(f"reference must be 'ft-median' or 'physical', got {self.reference!r}")
        if min(self.traces, self.rounds, self.devices, self.frequencies) < 1:
            raise ValueError("traces, rounds, devices and frequencies must be >= 1")
        if self.cell_center_m - self.cell_radius_m < 10.0:
            raise ValueError(
                "devices must stay >= 10 m from the base station (the UMi model's "
                "range): cell_center_m - cell_radius_m >= 10"
            )
        if self.speed_mps * self.round_duration_s > self.cell_radius_m:
            raise ValueError("speed_mps x round_duration_s must be at most cell_radius_m")
        if not 0.0 <= self.indoor_fraction <= 1.0:
            raise ValueError("indoor_fraction must be in [0, 1]")

    @property
    def physical_offset_db(self) -> float:
        """dB added to |h|^2 by the physical link budget, over the env's noise density:
        P_ue (dBW) - N0 (dBW/Hz) + 10 log10(1e-11 W/Hz)."""
        n0_dbw = -174.0 + self.noise_figure_db - 30.0
        return (self.ue_power_dbm - 30.0) - n0_dbw + 10.0 * np.log10(ENV_NOISE_PSD)


def walks(settings: TraceSettings, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Device positions and velocities of every round, (R, K, 2) each (m, m/s): uniform start
    in the disc, then the Gauss-Markov walk of the env's correlated channels (stationary start
    velocity, velocity step, move by velocity x round duration, reflect at the disc's edge)."""
    s = settings
    center = (s.cell_center_m, 0.0)
    sigma = s.speed_mps / np.sqrt(2.0)
    pos = sample_positions(rng, s.devices, center, s.cell_radius_m)
    vel = gauss_markov_start(rng, pos.shape, sigma)
    all_pos, all_vel = [pos], [vel]
    for _ in range(s.rounds - 1):
        vel = gauss_markov_velocity(rng, vel, s.mobility_memory, sigma)
        pos, vel = reflect_in_disc(pos + vel * s.round_duration_s, vel, center, s.cell_radius_m)
        all_pos.append(pos)
        all_vel.append(vel)
    return np.stack(all_pos), np.stack(all_vel)


def simulate_trace(settings: TraceSettings, index: int) -> dict[str, np.ndarray]:
    """One trace from seed ``settings.seed + index`` with sionna's UMi model.

    Returns:
        ``gain_db``: the wideband power gain |h|^2 in dB (path loss, shadowing, antenna
        patterns, cluster fading; no transmit power), and, for checks, ``pathloss_db``,
        ``shadowing_db``, ``los`` (bool), ``distance_2d_m``, ``indoor`` (bool), each (R, K).
    """
    import torch
    from sionna.phy import config as sionna_config
    from sionna.phy.channel.tr38901 import PanelArray, UMi

    s = settings
    seed = s.seed + index
    rng = np.random.default_rng(seed)
    pos, vel = walks(s, rng)
    indoor = rng.random(s.devices) < s.indoor_fraction
    sionna_config.seed = seed
    r, k = s.rounds, s.devices
    n = r * k  # UT i = round i // K of device i % K
    fc = s.carrier_frequency_hz
    ut_array = PanelArray(
        num_rows_per_panel=1,
        num_cols_per_panel=1,
        polarization="single",
        polarization_type="V",
        antenna_pattern="omni",
        carrier_frequency=fc,
        device="cpu",
    )
    bs_array = PanelArray(
        num_rows_per_panel=1,
        num_cols_per_panel=1,
        polarization="single",
        polarization_type="V",
        antenna_pattern="38.901",
        carrier_frequency=fc,
        device="cpu",
    )
    model = UMi(
        carrier_frequency=fc,
        o2i_model="low",
        ut_array=ut_array,
        bs_array=bs_array,
        direction="uplink",
        spec_version="19.2",
        device="cpu",
        enable_spatial_consistency=s.spatial_consistency,
    )
    f32 = torch.float32
    ut_loc = torch.zeros(1, n, 3, dtype=f32)
    ut_loc[0, :, :2] = torch.as_tensor(pos.reshape(n, 2), dtype=f32)
    ut_loc[0, :, 2] = s.ut_height_m
    ut_vel = torch.zeros(1, n, 3, dtype=f32)
    ut_vel[0, :, :2] = torch.as_tensor(vel.reshape(n, 2), dtype=f32)
    bs_loc = torch.tensor([[[0.0, 0.0, s.bs_height_m]]], dtype=f32)
    tracks = torch.as_tensor(np.tile(np.arange(k), r)[None], dtype=torch.int64)
    in_state = torch.as_tensor(np.tile(indoor, r)[None])
    extra: dict[str, Any] = (
        {"spatial_consistency_track_ids": tracks} if s.spatial_consistency else {}
    )
    model.set_topology(
        ut_loc,
        bs_loc,
        torch.zeros(1, n, 3, dtype=f32),
        torch.zeros(1, 1, 3, dtype=f32),
        ut_vel,
        in_state,
        **extra,
    )
    a, tau = model(num_time_samples=1, sampling_frequency=1.0 / s.round_duration_s)
    # uplink: a [1, rx = BS, rx ant, tx = UT, tx ant, paths, time]; tau [1, BS, UT, paths]
    a_np = a[0, 0, 0, :, 0, :, 0].numpy().astype(np.complex128)  # (UT, paths)
    tau_np = tau[0, 0].numpy().astype(np.float64)  # (UT, paths)
    f = (np.arange(s.frequencies) - (s.frequencies - 1) / 2.0) * (s.bandwidth_hz / s.frequencies)
    h = (a_np[:, :, None] * np.exp(-2j * np.pi * tau_np[:, :, None] * f)).sum(axis=1)
    gain = np.mean(np.abs(h) ** 2, axis=-1)
    lsp = model._lsp  # the sampled large-scale parameters (for the sidecar's checks)
    out = {
        "gain_db": 10.0 * np.log10(gain).reshape(r, k),
        "pathloss_db": lsp.pathloss[0, 0].numpy().astype(np.float64).reshape(r, k),
        "shadowing_db": 10.0 * np.log10(lsp.sf[0, 0].numpy().astype(np.float64)).reshape(r, k),
        "los": model._scenario.los[0, 0].numpy().astype(bool).reshape(r, k),
        "distance_2d_m": model._scenario.distance_2d[0, 0].numpy().astype(np.float64).reshape(r, k),
        "indoor": np.broadcast_to(indoor, (r, k)).copy(),
    }
    return out


def ft_median_db(samples: int = 1_000_000, seed: int = 0) -> float:
    """Median gain in dB of the FedLoRA default channel (FT V.A geometry, path loss and Rayleigh
    fading, 1 W), drawn with the env's own functions."""
    from edgeft.envs.fedlora.config import FedLoRAConfig
    from edgeft.envs.fedlora.formulas import rayleigh_fading_db
    from edgeft.envs.fedlora.generator import draw_cell

    rng = np.random.default_rng(seed)
    cfg = FedLoRAConfig()
    db = draw_cell(rng, cfg, (samples // cfg.num_devices,)) + rayleigh_fading_db(
        rng, (samples // cfg.num_devices, cfg.num_devices)
    )
    return float(np.median(db))


def _lag1(x: np.ndarray) -> float:
    """Round-to-round correlation of x (traces, R, K) around each device's mean."""
    c = x - x.mean(axis=1, keepdims=True)
    return float(np.corrcoef(c[:, 1:].ravel(), c[:, :-1].ravel())[0, 1])


def make_traces(
    settings: TraceSettings, progress: bool = True
) -> tuple[np.ndarray, dict[str, Any]]:
    """All traces in the env's units (float32, (traces, R, K)) and the sidecar's content."""
    import sionna
    import torch

    parts = []
    for i in range(settings.traces):
        parts.append(simulate_trace(settings, i))
        if progress:
            print(f"trace {i + 1}/{settings.traces}", file=sys.stderr, flush=True)
    raw = np.stack([p["gain_db"] for p in parts])
    pl = np.stack([p["pathloss_db"] for p in parts])
    sf = np.stack([p["shadowing_db"] for p in parts])
    los = np.stack([p["los"] for p in parts])
    reference = ft_median_db()
    median_offset = reference - float(np.median(raw))
    physical = settings.physical_offset_db
    offset = median_offset if settings.reference == "ft-median" else physical
    gains = (raw + offset).astype(np.float32)
    pct = [1, 10, 50, 90, 99]
    small = raw + pl - sf  # what the clusters and antennas add to the large-scale gain
    meta = {
        "channel": "3gpp-umi",
        "made_by": "python -m edgeft.envs.fedlora.make_3gpp_trace " + " ".join(sys.argv[1:]),
        "description": (
            "Channel gains |h_k|^2 in dB per (trace, round, device) from sionna's 3GPP TR "
            "38.901 UMi model (uplink, one BS at the origin, devices walking in the FT disc, "
            "one spatially consistent track per device), wideband power averaged over the "
            "band, shifted by offset_db into the env's units: received W per W of tx_power_w, "
            "over the env's noise_psd."
        ),
        "shape": {
            "traces": settings.traces,
            "rounds": settings.rounds,
            "devices": settings.devices,
        },
        "settings": dataclasses.asdict(settings),
        "antennas": {
            "bs": "1 element, TR 38.901 pattern (8 dBi), V-pol, facing +x, no tilt",
            "ut": "1 element, omni, V-pol",
        },
        "model": {
            "class": "sionna.phy.channel.tr38901.UMi",
            "spec_version": "19.2",
            "direction": "uplink",
            "o2i_model": "low",
            "time": "one topology snapshot of all rounds (a track per device); "
            "one time sample per round",
        },
        "units": {
            "offset_db": offset,
            "reference": settings.reference,
            "ft_median_offset_db": median_offset,
            "ft_default_median_gain_db": reference,
            "physical_offset_db": physical,
            "physical_minus_file_db": physical - offset,
            "note": (
                "gain_db = |h|^2 (dB) + offset_db. To replay the physical link budget "
                "(ue_power_dbm over -174 dBm/Hz + noise_figure_db) with the env's default "
                "noise_psd, set tx_power_w = 10^(physical_minus_file_db / 10)."
            ),
        },
        "statistics": {
            "percentiles": pct,
            "raw_gain_db": np.percentile(raw, pct).round(2).tolist(),
            "file_gain_db": np.percentile(gains, pct).round(2).tolist(),
            "pathloss_db": np.percentile(pl, pct).round(2).tolist(),
            "shadowing_db_std": round(float(sf.std()), 3),
            "small_scale_db_mean_std": [
                round(float(small.mean()), 3),
                round(float(small.std()), 3),
            ],
            "los_fraction": round(float(los.mean()), 4),
            "lag1_correlation_gain_db": round(_lag1(raw), 4),
            "lag1_correlation_small_scale_db": round(_lag1(small), 4),
        },
        "versions": {
            "sionna": sionna.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
        "gain_db_sha256": hashlib.sha256(gains.tobytes()).hexdigest(),
    }
    return gains, meta


def write_trace(gains: np.ndarray, meta: dict[str, Any], out: Path) -> None:
    """Write ``out`` (``.npz``, compressed ``gain_db``) and its ``.json`` sidecar."""
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, gain_db=np.asarray(gains, dtype=np.float32))
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        description=doc.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    helps = _attribute_help(TraceSettings.__doc__ or "")
    for f in dataclasses.fields(TraceSettings):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if isinstance(default, bool):
            p.add_argument(
                flag,
                default=default,
                action=argparse.BooleanOptionalAction,
                help=helps.get(f.name, ""),
            )
        else:
            p.add_argument(
                flag,
                type=type(default),
                default=default,
                help=f"{helps.get(f.name, '')} (default {default})",
            )
    p.add_argument(
        "--out",
        type=Path,
        default=trace_path("3gpp-umi"),
        help="the .npz to write (the .json sidecar goes beside it)",
    )
    args = vars(p.parse_args(argv))
    out = args.pop("out")
    settings = TraceSettings(**args)
    gains, meta = make_traces(settings)
    write_trace(gains, meta, out)
    size = out.stat().st_size
    print(
        f"wrote {out} ({size / 1e6:.2f} MB, gain_db {gains.shape} float32) and "
        f"{out.with_suffix('.json').name}"
    )
    print(json.dumps(meta["statistics"], indent=1))
    return 0


def _attribute_help(doc: str) -> dict[str, str]:
    """Field name -> its line(s) from a Google-style ``Attributes:`` section."""
    out: dict[str, str] = {}
    names: list[str] = []
    for line in doc.split("Attributes:")[-1].splitlines():
        text = line.strip()
        if not text:
            continue
        head, sep, rest = text.partition(": ")
        if sep and all(part.strip().isidentifier() for part in head.split(",")):
            names = [part.strip() for part in head.split(",")]
            for name in names:
                out[name] = rest
        else:
            for name in names:
                out[name] += " " + text
    return out


if __name__ == "__main__":
    raise SystemExit(main())
