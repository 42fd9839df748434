"""Checkpoint files of the FedLoRA env, without pickle.

A checkpoint (format :data:`FILE_FORMAT`) is one zip file holding

* ``checkpoint.json``: the format, the env's config (as JSON), the typed state's and the channel
  process's scalars, the channel's kind, the generator's state;
* ``arrays.npz``: the typed state's and the channel's arrays (read with ``allow_pickle=False``);
* ``learner.pt`` (real mode): the learner's state, tensors and plain values only, read with
  ``torch.load(weights_only=True)``.

Nothing in it can run code when it is read. Checkpoints of earlier releases are pickle files:
reading one runs whatever its author put in it, so they are refused unless the caller opts in
(``trust_pickle=True``, or ``EDGEFT_TRUST_PICKLE=1``), and then converted as before.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.envs.common import config_to_dict
from edgeft.envs.fedlora.generator import CorrelatedChannel, FadingBlocks
from edgeft.envs.fedlora.trace_channel import TraceChannel
from edgeft.envs.fedlora.types import State

FILE_FORMAT = 3
#: the env variable that lets earlier (pickled) checkpoints load
TRUST_ENV = "EDGEFT_TRUST_PICKLE"
_CHANNELS: dict[str, type] = {
    "blocks": FadingBlocks,
    "correlated": CorrelatedChannel,
    "trace": TraceChannel,
}


def _split(obj: Any, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The dataclass's scalar fields (JSON) and its arrays (into ``arrays``, prefixed)."""
    scalars: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name == "config":
            continue
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}.{f.name}"] = value
        elif isinstance(value, (np.integer, np.floating, np.bool_)):
            scalars[f.name] = value.item()
        else:
            scalars[f.name] = value
    return scalars


def _join(cls: type, scalars: dict[str, Any], prefix: str, arrays: Any, **extra: Any) -> Any:
    values = dict(scalars)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}"
        if key in arrays:
            values[f.name] = np.array(arrays[key])
    return cls(**values, **extra)


def write(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write an env's ``state_dict()`` to ``path`` (atomically: a temp file, then renamed)."""
    arrays: dict[str, np.ndarray] = {}
    fading = data["fading"]
    kind = next(k for k, cls in _CHANNELS.items() if isinstance(fading, cls))
    meta = {
        "format": FILE_FORMAT,
        "state_format": data["format"],
        "config": config_to_dict(data["config"]),
        "state": _split(data["state"], "state", arrays),
        "fading": {"kind": kind, **_split(fading, "fading", arrays)},
        "rng": data["rng"],
        "learner": data["learner"] is not None,
    }
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)  # numbers only, as read() reads them
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("checkpoint.json", json.dumps(meta))
        zf.writestr("arrays.npz", buf.getvalue())
        if data["learner"] is not None:
            import torch

            lbuf = io.BytesIO()
            torch.save(data["learner"], lbuf)
            zf.writestr("learner.pt", lbuf.getvalue())
    os.replace(tmp, path)


def read(path: str | os.PathLike, config: Any, *, trust_pickle: bool = False) -> dict[str, Any]:
    """The ``state_dict()`` a checkpoint file holds, for an env of ``config``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an earlier (pickled) checkpoint without the opt-in, a damaged or unknown
            file, or one of another format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not zipfile.is_zipfile(path):
        return _read_pickle(path, trust_pickle)
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("checkpoint.json"))
            arrays = np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False)
            learner = _read_learner(zf) if meta.get("learner") else None
    except (KeyError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable edgeft checkpoint ({err})") from err
    if meta.get("format") != FILE_FORMAT:
        raise ValueError(
            f"checkpoint format {meta.get('format')!r} is not supported by this "
            f"version of edgeft (it reads format {FILE_FORMAT}); load it with the "
            "edgeft version that wrote it"
        )
    saved = type(config)(
        **{
            k: v
            for k, v in meta["config"].items()
            if k in {f.name for f in dataclasses.fields(config)}
        }
    )
    fading_meta = dict(meta["fading"])
    cls = _CHANNELS[fading_meta.pop("kind")]
    extra = {"config": saved} if "config" in {f.name for f in dataclasses.fields(cls)} else {}
    return {
        "format": meta["state_format"],
        "config": saved,
        "state": _join(State, meta["state"], "state", arrays),
        "fading": _join(cls, fading_meta, "fading", arrays, **extra),
        "rng": meta["rng"],
        "learner": learner,
    }


def _read_learner(zf: zipfile.ZipFile) -> Any:
    import torch

    return torch.load(io.BytesIO(zf.read("learner.pt")), weights_only=True)


def _read_pickle(path: Path, trust_pickle: bool) -> dict[str, Any]:
    if not (trust_pickle or os.environ.get(TRUST_ENV) == "1"):
        raise ValueError(
            f"{path} is a checkpoint of an earlier edgeft release, a pickle file: reading it "
            "runs any code its author put in it. Load it only if you trust its source, with "
            f"load_checkpoint(path, trust_pickle=True) or {TRUST_ENV}=1, then save it again to "
            "get the current format"
        )
    with open(path, "rb") as fh:
        return pickle.load(fh)  # noqa: S301  (opted in above)
