"""Cached channel traces: gains of standard channel models (3GPP TR 38.901 via sionna),
generated once offline and shipped as small files, so that envs replay them with numpy alone.

A trace file ``<channel>.npz`` holds ``gain_db``, float32 of shape (traces, rounds, devices):
each device's channel gain |h_k|^2 of each round in dB, in the env's units; its JSON sidecar
``<channel>.json`` records how it was made. The FedLoRA env replays them
(``channel="3gpp-umi"``: ``edgeft.envs.fedlora.trace_channel``); the files live in
``edgeft/envs/fedlora/channels/`` and ``python -m edgeft.envs.fedlora.make_3gpp_trace`` (the
optional extra ``edgeft[3gpp]``) writes them.

This module reads and checks the files only (numpy and json); it is imported by the FedLoRA
config to validate K and T against a trace, so it imports nothing of the env families.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

#: folder of the shipped trace files (``<channel>.npz`` + ``<channel>.json``)
TRACE_DIR = Path(__file__).resolve().parent / "fedlora" / "channels"

#: channels replayed from a trace file (``FedLoRAConfig.channel``)
TRACE_CHANNELS = ("3gpp-umi",)

#: how to make a missing trace file
GENERATE_HINT = (
    "install the optional extra (`pip install 'edgeft[3gpp]'`: sionna-no-rt, "
    "h5py) and run `python -m edgeft.envs.fedlora.make_3gpp_trace`, which writes "
    "the file and its JSON sidecar"
)


@dataclass(frozen=True)
class Trace:
    """A loaded trace file.

    Attributes:
        name: the channel's name (``"3gpp-umi"``).
        gain_db: gains in dB, float64 (exactly the file's float32 values), shape
            (traces, rounds, devices); read-only.
        meta: the JSON sidecar (generator settings, versions), ``{}`` if there is none.
        path: the ``.npz`` file.
    """

    name: str
    gain_db: np.ndarray
    meta: dict[str, Any]
    path: Path

    @property
    def num_traces(self) -> int:
        """Traces in the file."""
        return int(self.gain_db.shape[0])

    @property
    def rounds(self) -> int:
        """R, rounds per trace."""
        return int(self.gain_db.shape[1])

    @property
    def num_devices(self) -> int:
        """Devices per trace (the most an env of this channel can have)."""
        return int(self.gain_db.shape[2])


def trace_path(name: str) -> Path:
    """The ``.npz`` file of channel ``name``."""
    return TRACE_DIR / f"{name}.npz"


@lru_cache(maxsize=8)
def load_trace(name: str) -> Trace:
    """Load (once per process) the trace file of channel ``name``.

    Raises:
        FileNotFoundError: the file is missing (the message says how to generate it).
        ValueError: the file has no float ``gain_db`` of three dimensions, or non-finite gains.
    """
    path = trace_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"channel={name!r} replays the trace file {path}, which is "
            f"missing; to generate it, {GENERATE_HINT}; or use "
            "channel='rayleigh'"
        )
    with np.load(path) as data:
        if "gain_db" not in data:
            raise ValueError(f"trace file {path} has no 'gain_db' array (has {list(data)})")
        gain_db = np.asarray(data["gain_db"])
    if gain_db.ndim != 3 or not np.issubdtype(gain_db.dtype, np.floating) or 0 in gain_db.shape:
        raise ValueError(
            f"trace file {path}: gain_db must be a non-empty float array of shape "
            f"(traces, rounds, devices), got {gain_db.dtype} {gain_db.shape}"
        )
    if not np.isfinite(gain_db).all():
        raise ValueError(f"trace file {path}: gain_db has non-finite values")
    gain_db = gain_db.astype(np.float64)
    gain_db.flags.writeable = False
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    return Trace(name, gain_db, meta, path)


def check_fits(name: str, num_devices: int, episode_rounds: int) -> None:
    """Raise ``ValueError`` unless K = ``num_devices`` and T = ``episode_rounds`` fit the trace
    of channel ``name`` (K <= its devices, T <= its rounds); ``FileNotFoundError`` if it is
    missing."""
    tr = load_trace(name)
    if num_devices > tr.num_devices:
        raise ValueError(
            f"num_devices={num_devices} is more than the {tr.num_devices} devices "
            f"of the channel={name!r} traces ({tr.path.name}); use at most "
            f"{tr.num_devices}, or generate a trace with more devices "
            "(make_3gpp_trace --devices)"
        )
    if episode_rounds > tr.rounds:
        raise ValueError(
            f"episode_rounds={episode_rounds} is more than the {tr.rounds} rounds "
            f"of the channel={name!r} traces ({tr.path.name}); use at most "
            f"{tr.rounds}, or generate longer traces (make_3gpp_trace --rounds)"
        )
