"""Load a trained stable-baselines3 model as an edgeft policy (``make_policy("ppo:PATH")``).

A model saved by ``edgeft train`` is three files side by side::

    NAME.zip           the SB3 model
    NAME.norm.json     VecNormalize observation statistics (mean, var, clip, epsilon)
    NAME.config.json   the full training config: env id, env config, action mode, obs transform,
                       algorithm, hyperparameters, seeds, versions

``PATH`` is the ``.zip`` (the extension may be left out) or the name of a shipped model in
``edgeft/agents/models`` (``ppo:fedlora-default`` -> ``models/ppo-fedlora-default.zip``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.envs.family import family_of

ALGOS = ("ppo", "a2c", "sac", "td3", "dqn")
MODELS_DIR = Path(__file__).resolve().parent / "models"

_MODEL_CACHE: dict[tuple[str, str], Any] = {}


def algo_class(algo: str) -> Any:
    """The SB3 algorithm class for ``algo`` (one of :data:`ALGOS`)."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}; known: {list(ALGOS)}")
    import stable_baselines3 as sb3

    return getattr(sb3, algo.upper())


def shipped_models() -> list[str]:
    """Names of the models shipped in ``edgeft/agents/models`` (as ``algo:name``)."""
    out = []
    for p in sorted(MODELS_DIR.glob("*.zip")):
        algo, _, name = p.stem.partition("-")
        if algo in ALGOS and name:
            out.append(f"{algo}:{name}")
    return out


def resolve_model_path(algo: str, path: str) -> Path:
    """The ``.zip`` file that ``algo:path`` names.

    Raises:
        FileNotFoundError: neither a file nor a shipped model (the message lists the shipped ones).
    """
    p = Path(path).expanduser()
    for cand in (p, p.with_name(p.name + ".zip")):
        if cand.is_file():
            return cand.resolve()
    shipped = MODELS_DIR / f"{algo}-{path}.zip"
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(
        f"no model file {path!r} (nor {path}.zip) and no shipped model {algo}:{path}; shipped: "
        f"{shipped_models() or 'none'}; train one with `edgeft train --algo {algo} ...`")


def sidecar(model_path: Path, kind: str) -> Path:
    """``NAME.zip`` -> ``NAME.<kind>.json``."""
    return model_path.with_name(model_path.name[: -len(".zip")] + f".{kind}.json")


def load_meta(algo: str, path: str) -> dict[str, Any]:
    """The saved training config of ``algo:path`` (its ``NAME.config.json``)."""
    zp = resolve_model_path(algo, path)
    cp = sidecar(zp, "config")
    if not cp.is_file():
        raise FileNotFoundError(f"model {zp} has no config file {cp.name} beside it; models saved "
                                "by `edgeft train` have one")
    with open(cp) as fh:
        return json.load(fh)


def saved_action_mode(name: str) -> str | None:
    """For ``"algo:path"``: the action mode the model was trained with (None for other names)."""
    algo, sep, path = name.partition(":")
    if not sep or algo not in ALGOS:
        return None
    return load_meta(algo, path)["env_config"]["action_mode"]


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of an env config (nested dataclasses become dicts)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def config_mismatch(saved: dict[str, Any], config: Any) -> list[str]:
    """Fields in which ``config`` differs from the saved env config (reward-only fields ignored).

    ``action_mode`` is compared too: a model acts in the action space it was trained on.
    """
    from edgeft.envs.common import build_config

    saved_cfg = build_config(type(config), dict(saved))
    # fields that shape only the training signal: a model may act in an env that differs from
    # its training env in these (EnvFamily.reward_only_fields)
    skip = set(family_of(config).reward_only_fields)
    diffs = []
    for f in dataclasses.fields(config):
        if f.name in skip:
            continue
        a, b = getattr(saved_cfg, f.name), getattr(config, f.name)
        if a != b:
            diffs.append(f"{f.name}: model {a!r}, env {b!r}")
    return diffs


class SB3Policy:
    """A trained SB3 model behind edgeft's policy protocol.

    ``predict`` applies the training observation transform and the saved VecNormalize statistics,
    then the model; it accepts one observation or a batch, like SB3.
    """

    def __init__(self, model: Any, meta: dict[str, Any], norm: dict[str, Any] | None, config: Any,
                 path: Path) -> None:
        from edgeft.agents.transforms import get_transform

        self.model = model
        self.meta = meta
        self.config = config
        self.path = path
        self.action_mode = meta["env_config"]["action_mode"]
        self.transform = get_transform(meta.get("obs_transform", "none"), config)
        self.norm = norm
        if norm is not None:
            self._mean = np.asarray(norm["mean"], dtype=np.float64)
            self._std = np.sqrt(np.asarray(norm["var"], dtype=np.float64) + float(norm["epsilon"]))
            self._clip = float(norm["clip_obs"])

    def features(self, observation: np.ndarray) -> np.ndarray:
        """What the network sees: transformed and normalised observation(s), float32."""
        x = self.transform(np.asarray(observation, dtype=np.float64))
        if self.norm is not None:
            x = np.clip((x - self._mean) / self._std, -self._clip, self._clip)
        return x.astype(np.float32)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """SB3's ``predict`` on the raw env observation(s)."""
        action, state = self.model.predict(self.features(observation), state=state,
                                           episode_start=episode_start, deterministic=deterministic)
        return action, state


def load_policy(algo: str, path: str, env: Any = None, config: Any = None, *,
                action_mode: str | None = None, seed: int | None = None, check_config: bool = True,
                **options: Any) -> SB3Policy:
    """Load ``algo:path`` for the env (or config) it will act in.

    Args:
        algo: SB3 algorithm name.
        path: the ``.zip`` path or a shipped model name.
        env, config: the env the policy acts in (its config in force,
            ``edgeft.envs.common.config_in_force``, is read), or that config; checked against
            the model's saved env config unless ``check_config=False``.
        action_mode: must equal the model's (models act in the action space they were trained on).
        seed: accepted for interface uniformity; a model acts deterministically when asked to.

    Raises:
        ValueError: the env does not match the model's training env (the message names the
            fields and how to build a matching env), or unknown options.
    """
    if options:
        raise ValueError(f"unknown option(s) {sorted(options)} for an SB3 policy")
    zp = resolve_model_path(algo, path)
    meta = load_meta(algo, str(zp))
    if meta.get("algo", algo) != algo:
        raise ValueError(f"{zp} was trained with {meta['algo']}, not {algo}; use "
                         f"{meta['algo']}:{path}")
    if env is None and config is None:
        raise ValueError(f"make_policy('{algo}:{path}') needs the env (or its config) it will "
                         "act in")
    if config is None:
        from edgeft.envs.common import config_in_force

        config = config_in_force(env)
    env_id = getattr(getattr(getattr(env, "unwrapped", None), "spec", None), "id", None) or (
        getattr(getattr(env, "spec", None), "id", None))
    if env_id is not None and env_id != meta["env_id"]:
        raise ValueError(f"model {zp.name} was trained on {meta['env_id']}, not {env_id}")
    if check_config:
        diffs = config_mismatch(meta["env_config"], config)
        if diffs:
            raise ValueError(
                f"model {zp.name} was trained on a different env config: {'; '.join(diffs)}. "
                f"Build the env with the model's config (edgeft.agents.load_meta('{algo}', "
                f"'{path}')['env_config']), or pass check_config=False to force it")
    if action_mode is not None and action_mode != meta["env_config"]["action_mode"]:
        raise ValueError(f"model {zp.name} acts in "
                         f"action_mode={meta['env_config']['action_mode']!r}, not {action_mode!r}; "
                         "build the env with that action mode")
    key = (algo, str(zp))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = algo_class(algo).load(str(zp), device="cpu")
    norm = None
    np_ = sidecar(zp, "norm")
    if np_.is_file():
        with open(np_) as fh:
            norm = json.load(fh)
    return SB3Policy(_MODEL_CACHE[key], meta, norm, config, zp)
