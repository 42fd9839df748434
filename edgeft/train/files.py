"""What a training run writes: the models in the safe agent format, the checkpoints (written
atomically, ``state.json`` last) and the run's metadata. Nothing here writes or reads a pickle.

A checkpoint folder (``OUT/checkpoints``) holds, for the step ``t`` it was taken at::

    state.json                 format version, step count, the algorithm's counters, the
                               Lagrangian and validation state, and the names of the files below
    model-T.agent.json         the policy in the safe agent format (``ALGO:`` loads it too)
    model-T.safetensors
    optimizer-T.pt             the optimisers' state and SB3's extra torch variables (SAC's
                               entropy coefficient), read with ``torch.load(weights_only=True)``
    vecnormalize-T.json        VecNormalize's running statistics and settings
    replay_buffer-T.npz        SAC / TD3 / DQN: the replay buffer's arrays (no pickled objects)

Resuming reads only files inside the run's own ``checkpoints`` folder: a name in ``state.json``
with a folder part or ``..``, or a link out of the folder, is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from edgeft.agents.agent_format import file_inside, normalization_of, trusted, write_agent
from edgeft.agents.lagrangian import base_algo
from edgeft.train.config import TrainConfig

CHECKPOINT_FORMAT = "edgeft-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
#: the files a checkpoint may name in its ``state.json`` (key -> what it holds)
CHECKPOINT_FILES = ("model", "weights", "optimizer", "vecnormalize", "replay_buffer")
#: the model attributes that change while it learns (restored on resume; those a model has)
COUNTERS = (
    "num_timesteps",
    "_n_updates",
    "_episode_num",
    "_current_progress_remaining",
    "_n_calls",
    "exploration_rate",
)


def model_files(out: Path, name: str) -> tuple[Path, Path]:
    """``(NAME.agent.json, NAME.safetensors)`` of the model ``name`` in ``out``."""
    return out / f"{name}.agent.json", out / f"{name}.safetensors"


def save_model(model: Any, vecnorm: Any, meta: dict[str, Any], out: Path, name: str) -> Path:
    """Write ``name.agent.json`` and ``name.safetensors`` into ``out`` (the safe agent format:
    the policy, its observation statistics and ``meta``); returns the ``.agent.json`` path."""
    out.mkdir(parents=True, exist_ok=True)
    return write_agent(out / name, model, meta, normalization_of(vecnorm))


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)


def _write_atomic(path: Path, write: Any) -> None:
    """``write(tmp)`` to a hidden temp name beside ``path``, then rename it to ``path``."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write(str(tmp))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- VecNormalize
def vecnormalize_state(vecnorm: Any) -> dict[str, Any]:
    """VecNormalize's running statistics and settings as JSON (floats exactly: JSON writes the
    shortest repr that reads back to the same double)."""

    def rms(r: Any) -> dict[str, Any]:
        if isinstance(r, dict):
            raise ValueError("VecNormalize of a Dict observation space is not supported")
        return {
            "mean": np.asarray(r.mean, dtype=np.float64).tolist(),
            "var": np.asarray(r.var, dtype=np.float64).tolist(),
            "count": float(r.count),
            "shape": list(np.shape(r.mean)),
        }

    return {
        "format": "edgeft-vecnormalize",
        "format_version": 1,
        "norm_obs": bool(vecnorm.norm_obs),
        "norm_reward": bool(vecnorm.norm_reward),
        "training": bool(vecnorm.training),
        "clip_obs": float(vecnorm.clip_obs),
        "clip_reward": float(vecnorm.clip_reward),
        "gamma": float(vecnorm.gamma),
        "epsilon": float(vecnorm.epsilon),
        "obs_rms": rms(vecnorm.obs_rms),
        "ret_rms": rms(vecnorm.ret_rms),
    }


def load_vecnormalize_state(vecnorm: Any, path: Path) -> None:
    """Set ``vecnorm``'s statistics and settings from :func:`vecnormalize_state`'s file.

    Raises:
        ValueError: another file kind, or statistics of another shape.
    """
    try:
        state = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        state = None
    if not isinstance(state, dict) or state.get("format") != "edgeft-vecnormalize":
        raise ValueError(
            f"{path} is not a VecNormalize state file (JSON of format "
            "'edgeft-vecnormalize'); pickled statistics are not read"
        )
    if state.get("format_version") != 1:
        raise ValueError(f"{path}: unknown format_version {state.get('format_version')!r}")
    for name in ("obs_rms", "ret_rms"):
        target, saved = getattr(vecnorm, name), state[name]
        mean = np.asarray(saved["mean"], dtype=np.float64).reshape(saved["shape"])
        var = np.asarray(saved["var"], dtype=np.float64).reshape(saved["shape"])
        if mean.shape != np.shape(target.mean):
            raise ValueError(
                f"{path}: {name} has shape {mean.shape}, the run's {np.shape(target.mean)}"
            )
        target.mean, target.var, target.count = mean, var, float(saved["count"])
    for k in ("norm_obs", "norm_reward", "training"):
        setattr(vecnorm, k, bool(state[k]))
    for k in ("clip_obs", "clip_reward", "gamma", "epsilon"):
        setattr(vecnorm, k, float(state[k]))
    vecnorm.returns = np.zeros(vecnorm.num_envs)  # as VecNormalize.load leaves it


# ---------------------------------------------------------------------------- replay buffer
def save_replay_buffer(buffer: Any, path: str) -> None:
    """The replay buffer's arrays (and ``pos``, ``full``) as an ``.npz`` of plain arrays."""
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(1),
        "pos": np.array(buffer.pos),
        "full": np.array(bool(buffer.full)),
    }
    for name, value in vars(buffer).items():
        if isinstance(value, np.ndarray):
            arrays[f"array.{name}"] = value
        elif (
            isinstance(value, dict)
            and value
            and all(isinstance(v, np.ndarray) for v in value.values())
        ):
            for key, v in value.items():
                arrays[f"dict.{name}.{key}"] = v
    with open(path, "wb") as fh:
        # numpy's stub takes the keyword arrays for its allow_pickle flag
        np.savez(fh, **arrays)  # type: ignore[arg-type]


def load_replay_buffer(buffer: Any, path: Path) -> None:
    """Fill ``buffer`` (a freshly built one of the same run) from :func:`save_replay_buffer`'s
    file; ``np.load(allow_pickle=False)``: object arrays are refused.

    Raises:
        ValueError: arrays missing, extra, or of another shape or dtype than the run's buffer.
    """
    with np.load(path, allow_pickle=False) as z:
        saved = {k: z[k] for k in z.files}
    if int(saved.pop("format_version", -1)) != 1:
        raise ValueError(f"{path} is not a replay buffer file of format_version 1")
    pos, full = int(saved.pop("pos")), bool(saved.pop("full"))
    expected: dict[str, np.ndarray] = {}
    for name, value in vars(buffer).items():
        if isinstance(value, np.ndarray):
            expected[f"array.{name}"] = value
        elif (
            isinstance(value, dict)
            and value
            and all(isinstance(v, np.ndarray) for v in value.values())
        ):
            expected.update({f"dict.{name}.{k}": v for k, v in value.items()})
    if set(saved) != set(expected):
        raise ValueError(
            f"{path} holds arrays {sorted(saved)}, the run's replay buffer {sorted(expected)}"
        )
    for key, arr in saved.items():
        dest = expected[key]
        if arr.shape != dest.shape or arr.dtype != dest.dtype:
            raise ValueError(
                f"{path}: {key} is {arr.dtype}{arr.shape}, the run's buffer "
                f"{dest.dtype}{dest.shape}"
            )
        dest[...] = arr
    buffer.pos, buffer.full = pos, full


# ---------------------------------------------------------------------------- optimisers
def _attr(obj: Any, dotted: str) -> Any:
    """``obj.a.b`` for ``"a.b"`` (SB3's names of its torch objects, e.g. ``actor.optimizer``)."""
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def save_optimizers(model: Any, path: str) -> None:
    """The model's state dicts other than the policy's (optimisers) and its extra torch
    variables, for ``torch.load(weights_only=True)``."""
    import torch

    names, variables = model._get_torch_save_params()
    state = {
        "format": "edgeft-optimizer",
        "format_version": 1,
        "state_dicts": {n: _attr(model, n).state_dict() for n in names if n != "policy"},
        "variables": {n: _attr(model, n).detach().cpu() for n in variables},
    }
    torch.save(state, path)


def load_optimizers(model: Any, path: Path, policy_state: dict[str, Any]) -> None:
    """Load the policy's weights and :func:`save_optimizers`' file into ``model``.

    Raises:
        ValueError: another file kind, or state dicts that do not fit the model.
    """
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != "edgeft-optimizer":
        raise ValueError(f"{path} is not an optimizer state file")
    names, variables = model._get_torch_save_params()
    if set(state["state_dicts"]) != set(names) - {"policy"} or set(state["variables"]) != set(
        variables
    ):
        raise ValueError(
            f"{path} holds {sorted(state['state_dicts'])} and "
            f"{sorted(state['variables'])}; the model needs {sorted(names)} and "
            f"{sorted(variables)}"
        )
    model.set_parameters(
        {"policy": policy_state, **state["state_dicts"]}, exact_match=True, device="cpu"
    )
    for n, tensor in state["variables"].items():
        target = _attr(model, n)
        if tuple(target.shape) != tuple(tensor.shape):
            raise ValueError(
                f"{path}: {n} has shape {tuple(tensor.shape)}, the model's {tuple(target.shape)}"
            )
        target.data = tensor.data.to(target.dtype)


def _number(x: Any) -> int | float | None:
    """``x`` as a JSON number (None for anything else)."""
    if isinstance(x, (bool, np.bool_)):
        return None
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x)
    return None


def model_counters(model: Any) -> dict[str, Any]:
    """The model's learning counters (:data:`COUNTERS`) and episode-info buffers as JSON."""
    out: dict[str, Any] = {}
    for k in COUNTERS:
        v = getattr(model, k, None)
        if isinstance(v, (bool, int, float, np.integer, np.floating)):
            out[k] = v.item() if isinstance(v, np.generic) else v
    for k in ("ep_info_buffer", "ep_success_buffer"):
        buf = getattr(model, k, None)
        if buf is not None:
            rows: list[Any] = []
            for item in buf:
                if isinstance(item, dict):
                    rows.append(
                        {str(a): _number(b) for a, b in item.items() if _number(b) is not None}
                    )
                elif _number(item) is not None:
                    rows.append(_number(item))
            out[k] = {"maxlen": buf.maxlen, "items": rows}
    return out


def restore_counters(model: Any, counters: dict[str, Any]) -> None:
    """Set the counters :func:`model_counters` saved (only attributes the model has, with
    numbers of the model's own type)."""
    for k in COUNTERS:
        if k in counters and hasattr(model, k):
            cur, v = getattr(model, k), counters[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"checkpoint state: {k} must be a number, got {v!r}")
            setattr(model, k, int(v) if isinstance(cur, (int, np.integer)) else float(v))
    for k in ("ep_info_buffer", "ep_success_buffer"):
        saved = counters.get(k)
        if isinstance(saved, dict) and isinstance(saved.get("items"), list):
            setattr(model, k, deque(saved["items"], maxlen=saved.get("maxlen")))


# ---------------------------------------------------------------------------- checkpoints
def write_checkpoint(
    ck: Path, t: int, model: Any, vecnorm: Any, extra: dict[str, Any], meta: dict[str, Any]
) -> None:
    """Write the checkpoint of step ``t`` into ``ck``; it replaces the previous one atomically.

    The model (safe agent format, with the run's ``meta`` as its description), its optimisers, the
    VecNormalize statistics and, for off-policy algorithms, the replay buffer go to files named
    after ``t`` (each written to a temp name, then renamed); ``state.json``, written last and
    atomically, names them and is the commit point: a kill at any moment leaves either the
    previous checkpoint or this one whole, never a mix. Files of older checkpoints are removed
    afterwards.
    """
    from edgeft.agents.agent_format import algo_of

    ck.mkdir(parents=True, exist_ok=True)
    files = {
        "model": f"model-{t}.agent.json",
        "weights": f"model-{t}.safetensors",
        "optimizer": f"optimizer-{t}.pt",
    }
    if vecnorm is not None:
        files["vecnormalize"] = f"vecnormalize-{t}.json"
    if getattr(model, "replay_buffer", None) is not None:
        files["replay_buffer"] = f"replay_buffer-{t}.npz"
    write_agent(
        ck / f"model-{t}",
        model,
        {**meta, "algo": algo_of(model), "timesteps": t},
        normalization_of(vecnorm),
    )
    _write_atomic(ck / files["optimizer"], lambda p: save_optimizers(model, p))
    if vecnorm is not None:
        write_json(ck / files["vecnormalize"], vecnormalize_state(vecnorm))
    if "replay_buffer" in files:
        _write_atomic(
            ck / files["replay_buffer"], lambda p: save_replay_buffer(model.replay_buffer, p)
        )
    write_json(
        ck / "state.json",
        {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "timesteps": t,
            "algorithm": model_counters(model),
            **extra,
            "files": files,
        },
    )
    keep = {"state.json", *files.values()}
    for p in ck.iterdir():
        if p.name not in keep and p.is_file():
            p.unlink()


def checkpoint_dir(out: Path) -> Path:
    """``out/checkpoints``, refused when it is a link out of ``out``.

    Raises:
        ValueError: a link that leads out of the run folder.
    """
    return file_inside(out, "checkpoints", "checkpoint folder")


def read_checkpoint_state(out: Path) -> dict[str, Any] | None:
    """The ``state.json`` of ``out``'s checkpoint (None when there is none), read only from
    inside ``out``.

    Raises:
        ValueError: a checkpoint folder or ``state.json`` that links out of the run folder, or
            a ``state.json`` that is not a JSON object.
    """
    ck = checkpoint_dir(out)
    if not ck.is_dir():
        return None
    path = file_inside(ck, "state.json", "checkpoint state")
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    if not isinstance(state, dict) or not isinstance(state.get("timesteps"), int):
        raise ValueError(
            f"{path} is not a checkpoint state (no integer 'timesteps'); delete "
            f"{ck} to train from scratch"
        )
    return state


def checkpoint_files(ck: Path, state: dict[str, Any]) -> dict[str, Path]:
    """The files of the checkpoint that ``state`` (its ``state.json``) describes, each checked
    to be a plain file name inside ``ck``.

    Checkpoints of earlier versions (no ``format_version``: pickled model, VecNormalize and
    replay buffer) are read only with ``EDGEFT_TRUST_AGENT_CODE=1``.

    Raises:
        ValueError: a name with a folder part or ``..``, a link out of ``ck``, an unknown file
            kind, or a pickled checkpoint without the opt-in.
        FileNotFoundError: a named file is missing.
    """
    names = state.get("files")
    if state.get("format_version") is None:
        if not trusted():
            raise ValueError(
                f"{ck} is a checkpoint of an earlier edgeft, in pickle files (loading them runs "
                "any code in them); resume it with EDGEFT_TRUST_AGENT_CODE=1 if this run folder "
                f"is your own, or delete {ck} to train from scratch"
            )
        if names is None:
            names = {"model": "model.zip"}
            if (ck / "vecnormalize.pkl").is_file():
                names["vecnormalize"] = "vecnormalize.pkl"
    elif state.get("format") != CHECKPOINT_FORMAT or state["format_version"] > (
        CHECKPOINT_FORMAT_VERSION
    ):
        raise ValueError(
            f"{ck}/state.json: format {state.get('format')!r} version "
            f"{state.get('format_version')!r} is not one this edgeft reads "
            f"({CHECKPOINT_FORMAT!r} <= {CHECKPOINT_FORMAT_VERSION})"
        )
    if not isinstance(names, dict):
        raise ValueError(f"{ck}/state.json: 'files' must map file kinds to names")
    unknown = sorted(set(names) - set(CHECKPOINT_FILES))
    if unknown:
        raise ValueError(
            f"{ck}/state.json names unknown file kinds {unknown}; known: {list(CHECKPOINT_FILES)}"
        )
    files = {k: file_inside(ck, v, f"checkpoint file {k!r}") for k, v in names.items()}
    missing = sorted(str(p) for p in files.values() if not p.is_file())
    if missing:
        raise FileNotFoundError(
            f"checkpoint {ck} lacks {missing}; delete {ck} to train from scratch"
        )
    return files


def run_meta(cfg: TrainConfig, config: Any, **extra: Any) -> dict[str, Any]:
    """The description of the run's models: train config, resolved env config, versions."""
    import gymnasium
    import stable_baselines3
    import torch

    import edgeft
    from edgeft.agents.loader import config_to_dict

    return {
        "env_id": cfg.env_id,
        "algo": base_algo(cfg.algo),
        "obs_transform": cfg.obs_transform,
        "env_config": config_to_dict(config),
        "train_config": dataclasses.asdict(cfg),
        "versions": {
            "edgeft": edgeft.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "gymnasium": gymnasium.__version__,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
        },
        **extra,
    }
