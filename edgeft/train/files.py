"""What a training run writes: the models with their normalisation and config files, the
checkpoints (written atomically, ``state.json`` last) and the run's metadata."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from edgeft.agents.lagrangian import base_algo
from edgeft.train.config import TrainConfig


def save_model(model: Any, vecnorm: Any, meta: dict[str, Any], out: Path, name: str) -> Path:
    """Write ``name.zip``, ``name.norm.json`` and ``name.config.json`` into ``out`` atomically."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.tmp.zip"
    model.save(str(tmp))
    if vecnorm is not None and vecnorm.norm_obs:
        rms = vecnorm.obs_rms
        write_json(out / f"{name}.norm.json", {
            "mean": rms.mean.tolist(), "var": rms.var.tolist(), "count": float(rms.count),
            "clip_obs": float(vecnorm.clip_obs), "epsilon": float(vecnorm.epsilon)})
    write_json(out / f"{name}.config.json", meta)
    os.replace(tmp, out / f"{name}.zip")
    return out / f"{name}.zip"


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


def write_checkpoint(ck: Path, t: int, model: Any, vecnorm: Any, extra: dict[str, Any]) -> None:
    """Write the checkpoint of step ``t`` into ``ck``; it replaces the previous one atomically.

    The model, the VecNormalize wrapper and, for off-policy algorithms, the replay buffer go to
    files named after ``t`` (each written to a temp name, then renamed); ``state.json``, written
    last and atomically, names them and is the commit point: a kill at any moment leaves either
    the previous checkpoint or this one whole, never a mix. Files of older checkpoints are
    removed afterwards.
    """
    ck.mkdir(parents=True, exist_ok=True)
    files = {"model": f"model-{t}.zip"}
    if vecnorm is not None:
        files["vecnormalize"] = f"vecnormalize-{t}.pkl"
    if getattr(model, "replay_buffer", None) is not None:
        files["replay_buffer"] = f"replay_buffer-{t}.pkl"
    _write_atomic(ck / files["model"], model.save)
    if vecnorm is not None:
        _write_atomic(ck / files["vecnormalize"], vecnorm.save)
    if "replay_buffer" in files:
        _write_atomic(ck / files["replay_buffer"], model.save_replay_buffer)
    write_json(ck / "state.json", {"timesteps": t, **extra, "files": files})
    keep = {"state.json", *files.values()}
    for p in ck.iterdir():
        if p.name not in keep and p.is_file():
            p.unlink()


def checkpoint_files(ck: Path, state: dict[str, Any]) -> dict[str, Path]:
    """The files of the checkpoint that ``state`` (its ``state.json``) describes.

    Checkpoints written before ``state.json`` named its files hold ``model.zip`` and
    ``vecnormalize.pkl`` (no replay buffer).
    """
    names = state.get("files")
    if names is None:
        names = {"model": "model.zip"}
        if (ck / "vecnormalize.pkl").is_file():
            names["vecnormalize"] = "vecnormalize.pkl"
    files = {k: ck / v for k, v in names.items()}
    missing = sorted(str(p) for p in files.values() if not p.is_file())
    if missing:
        raise FileNotFoundError(f"checkpoint {ck} lacks {missing}; delete {ck} to train from "
                                "scratch")
    return files


def run_meta(cfg: TrainConfig, config: Any, **extra: Any) -> dict[str, Any]:
    """The ``*.config.json`` content: train config, resolved env config, versions."""
    import gymnasium
    import stable_baselines3
    import torch

    import edgeft
    from edgeft.agents.loader import config_to_dict

    return {
        "env_id": cfg.env_id, "algo": base_algo(cfg.algo), "obs_transform": cfg.obs_transform,
        "env_config": config_to_dict(config), "train_config": dataclasses.asdict(cfg),
        "versions": {"edgeft": edgeft.__version__,
                     "stable_baselines3": stable_baselines3.__version__,
                     "gymnasium": gymnasium.__version__, "torch": torch.__version__,
                     "python": sys.version.split()[0]},
        **extra,
    }

