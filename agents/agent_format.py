"""The safe agent format: a trained stable-baselines3 policy as data, with no pickle anywhere.

An agent is two files side by side::

    NAME.agent.json     what the agent is, as JSON (the entry point; ``ALGO:NAME.agent.json``)
    NAME.safetensors    its policy weights (safetensors: tensors only, nothing executable)

``NAME.agent.json`` (``format: "edgeft-agent"``, ``format_version: 1``) holds:

==================== ====================================================================
key                  meaning
==================== ====================================================================
algo                 SB3 algorithm: ppo, a2c, sac, td3 or dqn
env_id, env_config   the env the agent was trained in (``config_in_force``; ``action_mode``
                     inside ``env_config``)
obs_transform        observation transform (``edgeft.agents.transforms.TRANSFORMS``)
normalization        VecNormalize observation statistics ``{mean, var, count, clip_obs,
                     epsilon}`` applied after the transform, or null
policy               ``{"class": NAME, "kwargs": {...}}``: NAME is ``MlpPolicy`` (the
                     algorithm's own) or a name of ``edgeft.agents.policies.POLICIES``; the
                     constructor arguments are JSON, classes among them (activation,
                     optimiser, features extractor) written as ``{"$class": "torch.nn.ReLU"}``
                     and taken only from :func:`allowed_classes`
observation_space,   the policy's spaces (the features it sees, the env's action space)
action_space
weights              ``{"file": "NAME.safetensors", "sha256": ...}``: a plain file name beside
                     the JSON (no folder part), and the hash of its bytes
others               informational only (train_config, versions, timesteps, validation ...)
==================== ====================================================================

Loading reads the JSON, checks every field, looks the policy class and the classes among its
arguments up in fixed tables (nothing is imported by a name read from a file), builds the policy
with ``policy_class(observation_space, action_space, lr_schedule, **kwargs)`` and loads the
weights into it with ``load_state_dict(strict=True)``.

SB3's own ``.zip`` files store most of the model as pickles (cloudpickle): loading one runs any
code its author put in it. :func:`trusted` is the one opt-in switch for such files
(``trust_code=True`` or ``EDGEFT_TRUST_AGENT_CODE=1``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

AGENT_FORMAT = "edgeft-agent"
AGENT_FORMAT_VERSION = 1
AGENT_SUFFIX = ".agent.json"
WEIGHTS_SUFFIX = ".safetensors"
#: the environment variable that opts in to loading files that can run code (pickles)
TRUST_ENV = "EDGEFT_TRUST_AGENT_CODE"
#: SB3's algorithm names this format knows
ALGOS = ("ppo", "a2c", "sac", "td3", "dqn")


class UntrustedCodeError(ValueError):
    """A file would run code when loaded (a pickle), and the user did not opt in."""


def trusted(trust_code: bool = False) -> bool:
    """Whether loading files that can run code is allowed: ``trust_code`` or
    ``EDGEFT_TRUST_AGENT_CODE=1`` in the environment."""
    return bool(trust_code) or os.environ.get(TRUST_ENV, "").strip() == "1"


def untrusted_zip_message(path: Path | str, name: str) -> str:
    """The one-line refusal of a legacy SB3 zip (``name``: how the user named it)."""
    return (
        f"{name}: {Path(path).name} is a stable-baselines3 zip whose 'data' entries are "
        "pickles, and loading it runs any code its author put in it; load it only if you "
        "trust its author, with --trust-agent-code (edgeft leaderboard / compare / export), "
        f"{TRUST_ENV}=1 or make_policy(..., trust_code=True), or convert it once to the safe "
        "format with `edgeft export` (docs/submitting-an-agent.md)"
    )


# ---------------------------------------------------------------------------- file names
def plain_name(name: Any, what: str) -> str:
    """``name`` if it is a plain file name (no folder part, not ``.``/``..``, not absolute).

    Raises:
        ValueError: anything else, naming ``what`` (the field that held it).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a file name, got {name!r}")
    if (
        name in (".", "..")
        or "/" in name
        or "\\" in name
        or os.sep in name
        or (os.altsep and os.altsep in name)
        or "\x00" in name
    ):
        raise ValueError(
            f"{what} {name!r} is not a plain file name: files are read only from "
            "the folder that names them (no folder part, no '..')"
        )
    return name


def file_inside(folder: Path, name: Any, what: str) -> Path:
    """``folder / name`` for a plain ``name`` whose real path (symlinks followed) is inside
    ``folder``'s real path.

    Raises:
        ValueError: a name with a folder part or ``..``, or a symlink that leads out of
            ``folder``.
    """
    plain_name(name, what)
    path = folder / name
    real, root = path.resolve(), folder.resolve()
    if real.parent != root and root not in real.parents:
        raise ValueError(
            f"{what} {name!r} in {folder} is a link to {real}, outside {folder}; "
            "files are read only from inside it"
        )
    return path


def sha256_of(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a hidden temp name beside ``path``, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def agent_stem(path: str | os.PathLike) -> Path:
    """``NAME`` of ``NAME``, ``NAME.agent.json`` or ``NAME.safetensors``."""
    p = Path(path)
    for suffix in (AGENT_SUFFIX, WEIGHTS_SUFFIX):
        if p.name.endswith(suffix) and len(p.name) > len(suffix):
            return p.with_name(p.name[: -len(suffix)])
    return p


# ---------------------------------------------------------------------------- JSON values
def _float_to_json(x: float) -> Any:
    return x if math.isfinite(x) else {"$float": repr(x)}


def _float_from_json(v: Any, where: str) -> float:
    if isinstance(v, dict) and set(v) == {"$float"} and v["$float"] in ("inf", "-inf", "nan"):
        return float(v["$float"])
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise ValueError(f"{where}: expected a number, got {v!r}")


def allowed_classes() -> dict[str, type]:
    """The classes a policy's constructor arguments may name, by the name the JSON uses:
    torch activations and optimisers, SB3's ``RMSpropTFLike`` and ``FlattenExtractor``."""
    import torch
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
    from stable_baselines3.common.torch_layers import FlattenExtractor

    out: dict[str, type] = {}
    for n in (
        "ReLU",
        "Tanh",
        "ELU",
        "LeakyReLU",
        "GELU",
        "SiLU",
        "Sigmoid",
        "Softplus",
        "SELU",
        "Mish",
        "Identity",
    ):
        out[f"torch.nn.{n}"] = getattr(torch.nn, n)
    for n in ("Adam", "AdamW", "RMSprop", "SGD"):
        out[f"torch.optim.{n}"] = getattr(torch.optim, n)
    out["stable_baselines3.RMSpropTFLike"] = RMSpropTFLike
    out["stable_baselines3.FlattenExtractor"] = FlattenExtractor
    return out


def encode_value(x: Any, where: str, classes: dict[type, str] | None = None) -> Any:
    """A policy constructor argument as JSON: numbers, strings, lists, string-keyed dicts,
    tuples as ``{"$tuple": [...]}``, non-finite floats as ``{"$float": "inf"}`` and classes of
    :func:`allowed_classes` as ``{"$class": NAME}``.

    Raises:
        ValueError: anything else (another class, an object, a function), naming ``where``.
    """
    if classes is None:
        classes = {cls: name for name, cls in allowed_classes().items()}
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return _float_to_json(float(x))
    if isinstance(x, type):
        if x not in classes:
            raise ValueError(
                f"{where} is the class {x.__module__}.{x.__qualname__}, which the "
                f"safe agent format cannot name; allowed: {sorted(classes.values())}"
            )
        return {"$class": classes[x]}
    if isinstance(x, tuple):
        return {"$tuple": [encode_value(v, f"{where}[{i}]", classes) for i, v in enumerate(x)]}
    if isinstance(x, list):
        return [encode_value(v, f"{where}[{i}]", classes) for i, v in enumerate(x)]
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if not isinstance(k, str) or k.startswith("$"):
                raise ValueError(
                    f"{where} has the key {k!r}; keys must be strings not starting with '$'"
                )
            out[k] = encode_value(v, f"{where}.{k}", classes)
        return out
    raise ValueError(
        f"{where} is a {type(x).__name__} ({x!r}), which the safe agent format "
        "cannot store (numbers, strings, lists, dicts and allowed classes only)"
    )


def decode_value(v: Any, where: str, classes: dict[str, type] | None = None) -> Any:
    """The inverse of :func:`encode_value`; a ``$class`` outside :func:`allowed_classes`, an
    unknown ``$`` marker or a key starting with ``__`` is refused.

    Raises:
        ValueError: naming ``where`` and what is allowed.
    """
    if classes is None:
        classes = allowed_classes()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list):
        return [decode_value(x, f"{where}[{i}]", classes) for i, x in enumerate(v)]
    if isinstance(v, dict):
        markers = [k for k in v if isinstance(k, str) and k.startswith("$")]
        if markers:
            if len(v) != 1:
                raise ValueError(f"{where}: a marker {markers} must be the only key")
            ((key, val),) = v.items()
            if key == "$class":
                if val not in classes:
                    raise ValueError(
                        f"{where} names the class {val!r}, which is not on the "
                        f"allow-list of the safe agent format: {sorted(classes)}"
                    )
                return classes[val]
            if key == "$tuple" and isinstance(val, list):
                return tuple(decode_value(x, f"{where}[{i}]", classes) for i, x in enumerate(val))
            if key == "$float":
                return _float_from_json(v, where)
            raise ValueError(f"{where}: unknown marker {key!r} (known: $class, $tuple, $float)")
        out = {}
        for k, x in v.items():
            if k.startswith("__"):
                raise ValueError(f"{where} has the key {k!r}; names starting with '__' are refused")
            out[k] = decode_value(x, f"{where}.{k}", classes)
        return out
    raise ValueError(f"{where}: unexpected JSON value {v!r}")


# ---------------------------------------------------------------------------- spaces
def _bounds_to_json(a: np.ndarray) -> Any:
    flat = [_float_to_json(float(x)) for x in np.asarray(a, dtype=np.float64).ravel()]
    if flat and all(x == flat[0] for x in flat):
        return flat[0]  # a uniform bound as one value
    return flat


def _bounds_from_json(v: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    if isinstance(v, list):
        vals = np.array([_float_from_json(x, where) for x in v], dtype=np.float64)
        if vals.size != int(np.prod(shape)):
            raise ValueError(f"{where}: {vals.size} values for shape {shape}")
        return vals.reshape(shape)
    return np.full(shape, _float_from_json(v, where))


_DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")


def space_to_json(space: Any) -> dict[str, Any]:
    """A Box, Discrete, MultiDiscrete or MultiBinary space as JSON.

    Raises:
        ValueError: another kind of space.
    """
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": _bounds_to_json(space.low),
            "high": _bounds_to_json(space.high),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "nvec": np.asarray(space.nvec).tolist(),
            "start": np.asarray(space.start).tolist(),
            "dtype": str(space.dtype),
        }
    if isinstance(space, spaces.MultiBinary):
        n = space.n
        return {
            "type": "MultiBinary",
            "n": list(n) if isinstance(n, (tuple, list, np.ndarray)) else int(n),
        }
    raise ValueError(
        f"the safe agent format stores Box, Discrete, MultiDiscrete and MultiBinary "
        f"spaces, not {space}"
    )


def space_from_json(d: Any, where: str) -> Any:
    """The space :func:`space_to_json` wrote.

    Raises:
        ValueError: a malformed description, naming ``where``.
    """
    from gymnasium import spaces

    if not isinstance(d, dict) or "type" not in d:
        raise ValueError(f"{where} must be a space description with a 'type', got {d!r}")
    kind = d["type"]
    try:
        if kind == "Box":
            shape = tuple(int(x) for x in d["shape"])
            if d["dtype"] not in _DTYPES:
                raise ValueError(f"dtype {d['dtype']!r} not one of {list(_DTYPES)}")
            return spaces.Box(
                _bounds_from_json(d["low"], shape, f"{where}.low"),
                _bounds_from_json(d["high"], shape, f"{where}.high"),
                shape=shape,
                dtype=np.dtype(d["dtype"]),
            )
        if kind == "Discrete":
            return spaces.Discrete(int(d["n"]), start=int(d.get("start", 0)))
        if kind == "MultiDiscrete":
            if d.get("dtype", "int64") not in _DTYPES:
                raise ValueError(f"dtype {d['dtype']!r} not one of {list(_DTYPES)}")
            return spaces.MultiDiscrete(
                np.asarray(d["nvec"], dtype=np.int64),
                dtype=np.dtype(d.get("dtype", "int64")),
                start=np.asarray(d.get("start", 0), dtype=np.int64),
            )
        if kind == "MultiBinary":
            n = d["n"]
            return spaces.MultiBinary([int(x) for x in n] if isinstance(n, list) else int(n))
    except (KeyError, TypeError) as err:
        raise ValueError(f"{where}: malformed {kind} description {d!r} ({err!r})") from err
    raise ValueError(
        f"{where}: unknown space type {kind!r} (Box, Discrete, MultiDiscrete, MultiBinary)"
    )


# ---------------------------------------------------------------------------- policy classes
def algo_class(algo: str) -> Any:
    """The SB3 algorithm class for ``algo`` (one of :data:`ALGOS`)."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}; known: {list(ALGOS)}")
    import stable_baselines3 as sb3

    return getattr(sb3, algo.upper())


def algo_of(model: Any) -> str:
    """The :data:`ALGOS` name of an SB3 model (an instance of PPO, A2C, SAC, TD3, DQN or a
    subclass).

    Raises:
        ValueError: another kind of object.
    """
    for algo in ALGOS:
        if isinstance(model, algo_class(algo)):
            return algo
    raise ValueError(
        f"expected a stable-baselines3 model ({', '.join(a.upper() for a in ALGOS)}),"
        f" got {type(model).__name__}"
    )


def policy_classes(algo: str) -> dict[str, type]:
    """The allow-list of policy classes for ``algo``: ``MlpPolicy`` (the algorithm's) and the
    names of ``edgeft.agents.policies.POLICIES`` that have a class for it."""
    from edgeft.agents.policies import POLICIES, policy_for

    out = {"MlpPolicy": algo_class(algo).policy_aliases["MlpPolicy"]}
    for name in POLICIES:
        try:
            out[name] = policy_for(name, algo)
        except ValueError:
            pass
    return out


def describe_policy(model: Any, algo: str) -> dict[str, Any]:
    """``{"class": NAME, "kwargs": {...}}`` of ``model.policy``: its constructor arguments (the
    policy's own, with the model's ``policy_kwargs`` over them) as JSON.

    Raises:
        ValueError: a policy class or an argument the safe format cannot name.
    """
    classes = policy_classes(algo)
    cls = type(model.policy)
    names = [n for n, c in classes.items() if c is cls]
    if not names:
        raise ValueError(
            f"the policy class {cls.__module__}.{cls.__qualname__} is not one the "
            f"safe agent format can rebuild for {algo}; allowed: {sorted(classes)} "
            "(train with policy='MlpPolicy')"
        )
    params = dict(model.policy._get_constructor_parameters())
    params.update(getattr(model, "policy_kwargs", None) or {})
    for k in ("observation_space", "action_space", "lr_schedule", "features_extractor"):
        params.pop(k, None)
    return {"class": names[0], "kwargs": encode_value(params, "policy.kwargs")}


def _no_learning(_progress: float) -> float:
    return 0.0


def build_policy(algo: str, desc: Any, observation_space: Any, action_space: Any) -> Any:
    """The policy ``desc`` (from :func:`describe_policy`) describes, freshly initialised.

    Raises:
        ValueError: a class off the allow-list, or arguments the class refuses.
    """
    if (
        not isinstance(desc, dict)
        or not isinstance(desc.get("class"), str)
        or not isinstance(desc.get("kwargs", {}), dict)
    ):
        raise ValueError(f"policy must be {{'class': NAME, 'kwargs': {{...}}}}, got {desc!r}")
    classes = policy_classes(algo)
    if desc["class"] not in classes:
        raise ValueError(
            f"policy class {desc['class']!r} is not on the allow-list for {algo}: {sorted(classes)}"
        )
    kwargs = decode_value(desc.get("kwargs", {}), "policy.kwargs")
    try:
        return classes[desc["class"]](observation_space, action_space, _no_learning, **kwargs)
    except Exception as err:  # any failure of the allow-listed constructor: bad arguments
        raise ValueError(
            f"policy {desc['class']} refuses the arguments in the agent file: "
            f"{type(err).__name__}: {err}"
        ) from err


# ---------------------------------------------------------------------------- agent files
def normalization_of(vecnorm: Any) -> dict[str, Any] | None:
    """The observation statistics of a VecNormalize (None without one or without ``norm_obs``)
    as the agent file stores them."""
    if vecnorm is None or not getattr(vecnorm, "norm_obs", False):
        return None
    rms = vecnorm.obs_rms
    if isinstance(rms, dict):
        raise ValueError(
            "VecNormalize of a Dict observation space: the safe agent format "
            "stores statistics of a flat observation only"
        )
    return {
        "mean": np.asarray(rms.mean, dtype=np.float64).tolist(),
        "var": np.asarray(rms.var, dtype=np.float64).tolist(),
        "count": float(rms.count),
        "clip_obs": float(vecnorm.clip_obs),
        "epsilon": float(vecnorm.epsilon),
    }


def check_normalization(norm: Any, size: int, where: str) -> dict[str, Any] | None:
    """``norm`` checked: None, or ``{mean, var, clip_obs, epsilon[, count]}`` with ``size``
    finite means and non-negative variances.

    Raises:
        ValueError: naming the field.
    """
    if norm is None:
        return None
    if not isinstance(norm, dict):
        raise ValueError(f"{where} must be an object or null, got {type(norm).__name__}")
    for k in ("mean", "var", "clip_obs", "epsilon"):
        if k not in norm:
            raise ValueError(f"{where} lacks {k!r} (needs mean, var, clip_obs, epsilon)")
    mean = np.asarray(norm["mean"], dtype=np.float64)
    var = np.asarray(norm["var"], dtype=np.float64)
    if mean.shape != (size,) or var.shape != (size,):
        raise ValueError(
            f"{where}: mean and var must hold {size} values (the observation the "
            f"policy sees), got {mean.shape} and {var.shape}"
        )
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var)) and np.all(var >= 0)):
        raise ValueError(f"{where}: mean and var must be finite, var >= 0")
    for k in ("clip_obs", "epsilon"):
        if not isinstance(norm[k], (int, float)) or isinstance(norm[k], bool) or not (norm[k] > 0):
            raise ValueError(f"{where}.{k} must be a positive number, got {norm[k]!r}")
    return norm


def check_normalization_present(doc: dict[str, Any], where: str) -> None:
    """Refuse a description without normalisation statistics whose training config says the
    agent learned on normalised observations (``train_config.normalize_obs``).

    Raises:
        ValueError: naming ``where``.
    """
    train = doc.get("train_config")
    if doc.get("normalization") is None and isinstance(train, dict) and train.get("normalize_obs"):
        raise ValueError(
            f"{where}: the agent was trained with observation normalisation "
            "(train_config.normalize_obs) but holds no normalization statistics; "
            "without them it plays a different policy"
        )


def write_agent(
    path: str | os.PathLike, model: Any, meta: dict[str, Any], normalization: dict[str, Any] | None
) -> Path:
    """Write ``model``'s policy as ``NAME.safetensors`` + ``NAME.agent.json``; returns the JSON.

    Args:
        path: ``NAME`` (or ``NAME.agent.json`` / ``NAME.safetensors``).
        model: the SB3 model.
        meta: at least ``env_id``, ``env_config`` (with ``action_mode``) and ``obs_transform``;
            other keys are kept as information.
        normalization: the observation statistics (:func:`normalization_of`) or None.

    The weights are written first, the JSON (which holds their hash) last, each atomically: a
    kill between the two leaves a JSON whose hash does not match, which loading reports.

    Raises:
        ValueError: a policy or space the format cannot describe, or missing meta fields.
    """
    from safetensors.torch import save as save_tensors

    stem = agent_stem(path)
    algo = algo_of(model)
    for k in ("env_id", "env_config", "obs_transform"):
        if k not in meta:
            raise ValueError(f"agent meta lacks {k!r}")
    check_normalization(
        normalization, int(np.prod(model.observation_space.shape or (0,))), "normalization"
    )
    policy = describe_policy(model, algo)
    tensors = {
        k: v.detach().to("cpu").contiguous().clone() for k, v in model.policy.state_dict().items()
    }
    blob = save_tensors(tensors, metadata={"format": AGENT_FORMAT})
    weights = stem.with_name(stem.name + WEIGHTS_SUFFIX)
    doc = {
        "format": AGENT_FORMAT,
        "format_version": AGENT_FORMAT_VERSION,
        "algo": algo,
        "env_id": meta["env_id"],
        "obs_transform": meta["obs_transform"],
        "normalization": normalization,
        "policy": policy,
        "observation_space": space_to_json(model.observation_space),
        "action_space": space_to_json(model.action_space),
        "weights": {"file": weights.name, "sha256": sha256_of(blob)},
        "env_config": meta["env_config"],
    }
    for k, v in meta.items():
        if k not in doc and k not in ("format", "format_version", "weights"):
            doc[k] = v
    check_normalization_present(doc, str(stem))
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(weights, blob)
    json_path = stem.with_name(stem.name + AGENT_SUFFIX)
    write_atomic(json_path, (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode())
    return json_path


def read_agent(path: str | os.PathLike) -> dict[str, Any]:
    """The checked content of ``NAME.agent.json`` (nothing is built or imported).

    Raises:
        ValueError: not an agent file, a newer format version, or a missing or malformed field
            (the message names it).
    """
    from edgeft.agents.transforms import TRANSFORMS

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable agent file: {err}") from err
    if not isinstance(doc, dict) or doc.get("format") != AGENT_FORMAT:
        raise ValueError(f"{path} is not an edgeft agent file (format must be {AGENT_FORMAT!r})")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path}: format_version must be a positive integer, got {version!r}")
    if version > AGENT_FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {version}, newer than this edgeft reads "
            f"({AGENT_FORMAT_VERSION}); upgrade edgeft"
        )
    where = path.name
    if doc.get("algo") not in ALGOS:
        raise ValueError(f"{where}: algo must be one of {list(ALGOS)}, got {doc.get('algo')!r}")
    if not isinstance(doc.get("env_id"), str):
        raise ValueError(f"{where}: env_id must be an env id string, got {doc.get('env_id')!r}")
    env_config = doc.get("env_config")
    if not isinstance(env_config, dict) or not isinstance(env_config.get("action_mode"), str):
        raise ValueError(
            f"{where}: env_config must be an object with the action_mode the agent acts in"
        )
    if doc.get("obs_transform") not in TRANSFORMS:
        raise ValueError(
            f"{where}: obs_transform must be one of {sorted(TRANSFORMS)}, got "
            f"{doc.get('obs_transform')!r}"
        )
    doc["observation_space"] = space_from_json(
        doc.get("observation_space"), f"{where}: observation_space"
    )
    doc["action_space"] = space_from_json(doc.get("action_space"), f"{where}: action_space")
    size = int(np.prod(doc["observation_space"].shape or (0,)))
    check_normalization(doc.get("normalization"), size, f"{where}: normalization")
    check_normalization_present(doc, where)
    weights = doc.get("weights")
    if not isinstance(weights, dict) or not isinstance(weights.get("sha256"), str):
        raise ValueError(f"{where}: weights must be {{'file': NAME.safetensors, 'sha256': HEX}}")
    plain_name(weights.get("file"), f"{where}: weights.file")
    if not isinstance(doc.get("policy"), dict):
        raise ValueError(f"{where}: policy must be {{'class': NAME, 'kwargs': {{...}}}}")
    return doc


def load_weights(path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """The tensors of the agent ``path`` (its JSON, read by :func:`read_agent`), hash-checked.

    Raises:
        FileNotFoundError: the weights file is missing.
        ValueError: a weights file outside the agent's folder, or one whose hash differs.
    """
    from safetensors.torch import load as load_tensors

    wpath = file_inside(path.parent, doc["weights"]["file"], f"{path.name}: weights.file")
    if not wpath.is_file():
        raise FileNotFoundError(
            f"agent {path} names the weights file {wpath.name}, which is not beside it"
        )
    blob = wpath.read_bytes()
    if sha256_of(blob) != doc["weights"]["sha256"]:
        raise ValueError(
            f"{wpath} does not match {path.name} (its SHA-256 differs from the "
            "one recorded): a copy of another agent's weights, or an interrupted "
            "save"
        )
    return load_tensors(blob)


class LoadedAgent:
    """An agent file's policy behind the part of SB3's model interface that acting needs:
    ``policy``, ``observation_space``, ``action_space`` and ``predict`` (the policy's). For
    DQN, ``predict(..., deterministic=False)`` is the greedy action (SB3's model adds its
    epsilon-greedy exploration on top; the leaderboard plays deterministically)."""

    def __init__(self, policy: Any, algo: str) -> None:
        self.policy = policy
        self.algo = algo
        self.observation_space = policy.observation_space
        self.action_space = policy.action_space

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[Any, Any]:
        """SB3's ``predict`` (one observation or a batch of the features the policy sees)."""
        return self.policy.predict(
            observation, state=state, episode_start=episode_start, deterministic=deterministic
        )


def load_agent(path: str | os.PathLike, doc: dict[str, Any] | None = None) -> LoadedAgent:
    """:func:`load_agent_policy` behind :class:`LoadedAgent`."""
    doc = read_agent(path) if doc is None else doc
    return LoadedAgent(load_agent_policy(path, doc), doc["algo"])


def load_agent_policy(path: str | os.PathLike, doc: dict[str, Any] | None = None) -> Any:
    """The SB3 policy of the agent file ``path``, built and loaded, in evaluation mode on the
    CPU (``doc``: its :func:`read_agent` content, read here when None).

    Raises:
        ValueError: what :func:`read_agent`, :func:`build_policy` and :func:`load_weights`
            raise, or weights that do not fit the policy.
    """
    path = Path(path)
    if doc is None:
        doc = read_agent(path)
    policy = build_policy(doc["algo"], doc["policy"], doc["observation_space"], doc["action_space"])
    tensors = load_weights(path, doc)
    try:
        policy.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"{path}: the weights do not fit the policy it describes: {str(err).splitlines()[0]}"
        ) from err
    policy.set_training_mode(False)
    return policy


# ---------------------------------------------------------------------------- legacy SB3 zips
#: keys of a legacy zip's ``data`` JSON that tell the algorithm apart (first match wins)
_ALGO_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("td3", ("policy_delay", "target_policy_noise")),
    ("sac", ("target_entropy",)),
    ("dqn", ("exploration_fraction",)),
    ("ppo", ("clip_range", "n_epochs")),
    ("a2c", ("gae_lambda", "n_steps")),
)


def legacy_zip_algo(path: Path) -> str | None:
    """The algorithm of an SB3 ``.zip`` read from the plain-JSON keys of its ``data`` entry
    (nothing is unpickled); None when they do not tell.

    Raises:
        ValueError: not a zip with a ``data`` entry.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            data = json.loads(zf.read("data"))
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a stable-baselines3 model zip ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a stable-baselines3 model zip (its data is not a dict)")
    for algo, keys in _ALGO_KEYS:
        if all(k in data for k in keys):
            return algo
    return None


def trained_with_obs_normalisation(model: Any) -> bool:
    """Whether ``model`` shows it learned on VecNormalize-d observations: one attached with
    ``norm_obs``, or a last observation that differs from the original one SB3 records beside
    it when training behind VecNormalize."""
    vn = model.get_vec_normalize_env() if hasattr(model, "get_vec_normalize_env") else None
    if vn is not None and getattr(vn, "norm_obs", False):
        return True
    orig, last = getattr(model, "_last_original_obs", None), getattr(model, "_last_obs", None)
    if orig is None or last is None or isinstance(last, dict):
        return False
    return not np.array_equal(np.asarray(orig), np.asarray(last))
