"""Load a trained stable-baselines3 agent as an edgeft policy (``make_policy("ppo:PATH")``).

An agent is saved in the safe agent format (``edgeft.agents.agent_format``), two files side by
side that hold data only::

    NAME.agent.json     algorithm, policy class and its arguments, spaces, observation transform,
                        normalisation statistics, env id and config, training information
    NAME.safetensors    the policy weights

``edgeft train`` writes them, ``edgeft export`` / :func:`save_for_leaderboard` turn a model
trained with plain stable-baselines3 into them. ``PATH`` in ``ALGO:PATH`` is ``NAME``,
``NAME.agent.json`` or ``NAME.safetensors``, or the name of a shipped agent in
``edgeft/agents/models`` (``ppo:fedlora-default`` -> ``models/ppo-fedlora-default.agent.json``).

A ``PATH`` ending in ``.zip`` names the safe agent ``NAME.agent.json`` when there is one, else a
legacy SB3 zip (with edgeft's ``NAME.config.json`` and ``NAME.norm.json`` beside it). SB3 zips
store the model as pickles, and loading one runs any code its author put in it, so a legacy zip
is refused unless the caller opts in: ``trust_code=True`` here or in ``make_policy``,
``--trust-agent-code`` on ``edgeft leaderboard`` / ``edgeft compare``, or
``EDGEFT_TRUST_AGENT_CODE=1``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.agents.agent_format import (
    AGENT_SUFFIX,
    ALGOS,
    WEIGHTS_SUFFIX,
    UntrustedCodeError,
    agent_stem,
    algo_class,
    trusted,
    untrusted_zip_message,
)
from edgeft.envs.family import family_of

MODELS_DIR = Path(__file__).resolve().parent / "models"

_MODEL_CACHE: dict[tuple[Any, ...], Any] = {}

__all__ = [
    "ALGOS",
    "MODELS_DIR",
    "SB3Policy",
    "UntrustedCodeError",
    "algo_class",
    "config_mismatch",
    "config_to_dict",
    "load_meta",
    "load_policy",
    "resolve_model_path",
    "save_for_leaderboard",
    "saved_action_mode",
    "shipped_models",
]


def shipped_models() -> list[str]:
    """Names of the agents shipped in ``edgeft/agents/models`` (as ``algo:name``)."""
    out = []
    for p in sorted(MODELS_DIR.glob(f"*{AGENT_SUFFIX}")):
        algo, _, name = p.name[: -len(AGENT_SUFFIX)].partition("-")
        if algo in ALGOS and name:
            out.append(f"{algo}:{name}")
    return out


def _candidates(p: Path) -> list[Path]:
    """The files ``p`` may name, the safe agent first."""
    name = p.name
    if name.endswith(AGENT_SUFFIX):
        return [p]
    if name.endswith(WEIGHTS_SUFFIX):
        stem = agent_stem(p)
        return [stem.with_name(stem.name + AGENT_SUFFIX)]
    if name.endswith(".zip"):
        base = p.with_name(name[: -len(".zip")])
        return [base.with_name(base.name + AGENT_SUFFIX), p]
    return [p.with_name(name + AGENT_SUFFIX), p.with_name(name + ".zip")]


def resolve_model_path(algo: str, path: str) -> Path:
    """The agent file that ``algo:path`` names: a ``NAME.agent.json`` or a legacy ``.zip``.

    Raises:
        FileNotFoundError: neither a file nor a shipped agent (the message lists the shipped
            ones).
    """
    p = Path(path).expanduser()
    for cand in _candidates(p):
        if cand.is_file():
            return cand.resolve()
    shipped = MODELS_DIR / f"{algo}-{path}{AGENT_SUFFIX}"
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(
        f"no agent {path!r} (looked for {', '.join(str(c) for c in _candidates(p))}) and no "
        f"shipped agent {algo}:{path}; shipped: {shipped_models() or 'none'}; train one with "
        f"`edgeft train --algo {algo} ...`, or convert an SB3 model with `edgeft export`"
    )


def is_legacy(path: Path) -> bool:
    """Whether ``path`` (from :func:`resolve_model_path`) is a legacy SB3 zip."""
    return not path.name.endswith(AGENT_SUFFIX)


def sidecar(model_path: Path, kind: str) -> Path:
    """Legacy ``NAME.zip`` -> ``NAME.<kind>.json``."""
    return model_path.with_name(model_path.name[: -len(".zip")] + f".{kind}.json")


def _check_legacy_meta(meta: Any, where: str) -> dict[str, Any]:
    """A legacy ``NAME.config.json`` checked for what loading needs."""
    from edgeft.agents.transforms import TRANSFORMS

    hint = "; `edgeft export` writes a complete description (docs/submitting-an-agent.md)"
    if not isinstance(meta, dict):
        raise ValueError(f"{where} must hold a JSON object{hint}")
    if not isinstance(meta.get("env_id"), str):
        raise ValueError(
            f"{where}: env_id (the env id the model was trained on, e.g. "
            f"'edgeft/FedLoRAScheduling-v0') is missing or not a string{hint}"
        )
    env_config = meta.get("env_config")
    if not isinstance(env_config, dict) or not isinstance(env_config.get("action_mode"), str):
        raise ValueError(
            f"{where}: env_config.action_mode (the action mode the model acts in) is missing{hint}"
        )
    transform = meta.setdefault("obs_transform", "none")
    if transform not in TRANSFORMS:
        raise ValueError(
            f"{where}: obs_transform must be one of {sorted(TRANSFORMS)} ('none' "
            f"for raw observations), got {transform!r}{hint}"
        )
    if "algo" in meta and meta["algo"] not in ALGOS:
        raise ValueError(f"{where}: algo must be one of {list(ALGOS)}, got {meta['algo']!r}")
    return meta


def _legacy_meta(zp: Path) -> dict[str, Any]:
    cp = sidecar(zp, "config")
    if not cp.is_file():
        raise FileNotFoundError(
            f"model {zp} has no edgeft description {cp.name} beside it (a model saved by plain "
            "stable-baselines3): convert it with `edgeft export ALGO:PATH --env ENV_ID --set "
            "action_mode=MODE --trust-agent-code --out NAME` (docs/submitting-an-agent.md)"
        )
    with open(cp) as fh:
        return _check_legacy_meta(json.load(fh), cp.name)


def load_meta(algo: str, path: str, *, trust_code: bool = False) -> dict[str, Any]:
    """The description of ``algo:path``: its agent file's content (legacy zips: their
    ``NAME.config.json``, read only with ``trust_code``; see the module docstring).

    Raises:
        UntrustedCodeError: a legacy zip without the opt-in.
        FileNotFoundError, ValueError: no such agent, or a malformed description.
    """
    from edgeft.agents.agent_format import read_agent

    p = resolve_model_path(algo, path)
    if is_legacy(p):
        if not trusted(trust_code):
            raise UntrustedCodeError(untrusted_zip_message(p, f"{algo}:{path}"))
        return _legacy_meta(p)
    return read_agent(p)


def saved_action_mode(name: str, *, trust_code: bool = False) -> str | None:
    """For ``"algo:path"``: the action mode the model was trained with (None for other names)."""
    algo, sep, path = name.partition(":")
    if not sep or algo not in ALGOS:
        return None
    return load_meta(algo, path, trust_code=trust_code)["env_config"]["action_mode"]


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
    then the model; it accepts one observation or a batch, like SB3. ``model`` has SB3's
    ``predict`` and ``policy``: an ``agent_format.LoadedAgent`` (agent files) or an SB3 model
    (legacy zips, training-time validation).
    """

    def __init__(
        self, model: Any, meta: dict[str, Any], norm: dict[str, Any] | None, config: Any, path: Path
    ) -> None:
        from edgeft.agents.transforms import get_transform

        self.model = model
        self.meta = meta
        self.config = config
        self.path = path
        self.action_mode = meta["env_config"]["action_mode"]
        self.transform = get_transform(meta.get("obs_transform", "none"), config)
        self.norm = norm
        #: the fields in which the env differs from the model's training env (empty: in
        #: distribution; set by :func:`load_policy`)
        self.out_of_distribution: list[str] = []
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

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """SB3's ``predict`` on the raw env observation(s)."""
        action, state = self.model.predict(
            self.features(observation),
            state=state,
            episode_start=episode_start,
            deterministic=deterministic,
        )
        return action, state


def _env_id(env: Any) -> str | None:
    return getattr(getattr(getattr(env, "unwrapped", None), "spec", None), "id", None) or (
        getattr(getattr(env, "spec", None), "id", None)
    )


def _load_legacy(
    algo: str, path: str, zp: Path, meta: dict[str, Any]
) -> tuple[Any, dict[str, Any] | None]:
    """The SB3 model of a legacy zip (the caller opted in) and its normalisation statistics."""
    from edgeft.agents.agent_format import (
        check_normalization,
        legacy_zip_algo,
        trained_with_obs_normalisation,
    )

    inside = legacy_zip_algo(zp)
    if inside is not None and inside != algo:
        raise ValueError(
            f"{zp.name} holds a {inside.upper()} model, not {algo.upper()}; load "
            f"it as {inside}:{path}"
        )
    norm = None
    np_ = sidecar(zp, "norm")
    if np_.is_file():
        with open(np_) as fh:
            norm = json.load(fh)
    train = meta.get("train_config")
    missing = (
        f"{zp.name} was trained with observation normalisation but its statistics file "
        f"{np_.name} is not beside it; without them it plays a different policy: put "
        "the file back (or export the model with its VecNormalize)"
    )
    if norm is None and isinstance(train, dict) and train.get("normalize_obs"):
        raise ValueError(missing)
    key = ("legacy", algo, str(zp), zp.stat().st_mtime_ns, zp.stat().st_size)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = algo_class(algo).load(str(zp), device="cpu")
    model = _MODEL_CACHE[key]
    if norm is None and trained_with_obs_normalisation(model):
        raise ValueError(missing)
    check_normalization(norm, int(np.prod(model.observation_space.shape or (0,))), np_.name)
    return model, norm


def load_policy(
    algo: str,
    path: str,
    env: Any = None,
    config: Any = None,
    *,
    action_mode: str | None = None,
    seed: int | None = None,
    check_config: bool | str = "mark",
    trust_code: bool = False,
    **options: Any,
) -> SB3Policy:
    """Load ``algo:path`` for the env (or config) it will act in.

    Args:
        algo: SB3 algorithm name; must be the agent's.
        path: the agent (``NAME``, ``NAME.agent.json``, ``NAME.safetensors``), a legacy ``.zip``,
            or a shipped agent's name.
        env, config: the env the policy acts in (its config in force,
            ``edgeft.envs.common.config_in_force``, is read), or that config, compared with the
            model's saved env config (reward-only fields aside).
        check_config: ``"mark"`` (default): an env that differs from the training env is played
            out of distribution, the differing fields in the policy's ``out_of_distribution``
            (the leaderboard marks such rows); ``True``: refuse it; ``False``: do not compare.
            An env the model cannot act in at all (another observation or action shape) is
            refused either way.
        action_mode: must equal the model's (models act in the action space they were trained on).
        seed: accepted for interface uniformity; a model acts deterministically when asked to.
        trust_code: allow loading a legacy SB3 zip, whose pickles run code when loaded (also
            ``EDGEFT_TRUST_AGENT_CODE=1``); safe agent files never need it.

    Raises:
        UntrustedCodeError: a legacy zip without ``trust_code`` (a ``ValueError``).
        ValueError: the env does not match the model's training env (the message names the
            fields and how to build a matching env), an algorithm other than the file's, a model
            missing the normalisation statistics it was trained with, a malformed agent file,
            or unknown options.
    """
    from edgeft.agents.agent_format import load_agent

    if options:
        raise ValueError(f"unknown option(s) {sorted(options)} for an SB3 policy")
    if algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}; known: {list(ALGOS)}")
    zp = resolve_model_path(algo, path)
    meta = load_meta(algo, path, trust_code=trust_code)
    if meta.get("algo", algo) != algo:
        raise ValueError(
            f"{zp.name} was trained with {meta['algo']}, not {algo}; use {meta['algo']}:{path}"
        )
    if env is None and config is None:
        raise ValueError(
            f"make_policy('{algo}:{path}') needs the env (or its config) it will act in"
        )
    if config is None:
        from edgeft.envs.common import config_in_force

        config = config_in_force(env)
    env_id = _env_id(env)
    if env_id is not None and env_id != meta["env_id"]:
        raise ValueError(f"model {zp.name} was trained on {meta['env_id']}, not {env_id}")
    diffs: list[str] = []
    if check_config:
        diffs = in_distribution(meta, config_mismatch(meta["env_config"], config), config)
        if any(d.startswith("action_mode:") for d in diffs):  # another action space altogether
            raise ValueError(
                f"model {zp.name} acts in action_mode={meta['env_config']['action_mode']!r}, "
                f"this env in {config.action_mode!r}: build the env with that action mode"
            )
        if diffs and check_config is True:
            raise ValueError(
                f"model {zp.name} was trained on a different env config: {'; '.join(diffs)}. "
                f"Build the env with the model's config (edgeft.agents.load_meta('{algo}', "
                f"'{path}')['env_config']), or pass check_config='mark' to play it out of "
                "distribution"
            )
    if action_mode is not None and action_mode != meta["env_config"]["action_mode"]:
        raise ValueError(
            f"model {zp.name} acts in "
            f"action_mode={meta['env_config']['action_mode']!r}, not {action_mode!r}; "
            "build the env with that action mode"
        )
    if is_legacy(zp):
        model, norm = _load_legacy(algo, path, zp, meta)
        return _checked(SB3Policy(model, meta, norm, config, zp), diffs)
    space = getattr(env, "action_space", None)
    if space is not None and space != meta["action_space"]:
        resized = resized_meta(meta, config, space)
        if resized is None:
            why = f" (the env differs in {'; '.join(diffs)})" if diffs else ""
            raise ValueError(
                f"model {zp.name} acts in {meta['action_space']}, the env in "
                f"{space}{why}: this model cannot play that env; build the env with "
                "the model's config"
            )
        meta = resized
    key = ("safe", algo, str(zp), meta["weights"]["sha256"], repr(meta["action_space"]))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_agent(zp, meta)
    return _checked(SB3Policy(_MODEL_CACHE[key], meta, meta["normalization"], config, zp), diffs)


def in_distribution(meta: dict[str, Any], diffs: list[str], config: Any) -> list[str]:
    """``diffs`` (``config_mismatch``'s "field: model a, env b" lines) less the fields an agent
    trained on an instance distribution (``train_config.scenarios``,
    ``edgeft.envs.fedlora.scenarios``) saw: those whose env value the distribution draws."""
    train = meta.get("train_config")
    name = train.get("scenarios") if isinstance(train, dict) else None
    if not name:
        return diffs
    from edgeft.envs.fedlora.scenarios import DISTRIBUTIONS

    dist = DISTRIBUTIONS.get(str(name))
    if dist is None:
        return diffs
    out = []
    for d in diffs:
        field = d.split(":", 1)[0]
        if field == "surrogate":  # the calibration of the env's data partition, if drawn
            default = type(config)(data=config.data).surrogate
            if config.surrogate == default and dist.covers("data", config.data):
                continue
        elif dist.covers(field, getattr(config, field, None)):
            continue
        out.append(d)
    return out


def resized_meta(meta: dict[str, Any], config: Any, action_space: Any) -> dict[str, Any] | None:
    """The description of a ``fedlora-shared`` agent (on ``fedlora-devices`` features) for an
    env of another number of devices K', None for any other agent.

    The network shares its weights over devices, so only its spaces change: the observation
    space becomes the K' device blocks and the global features, the action space the env's.
    The observation statistics, kept per position (device block k, feature j), are pooled over
    the K training positions (devices are exchangeable: the mean of the K means, the mean of
    the K variances plus the variance of the means) and repeated for the K' devices; the
    global features keep theirs. At the training K nothing changes.
    """
    from edgeft.agents.transforms import FEDLORA_DEVICE_FEATURES, transformed_size
    from gymnasium import spaces

    if meta["policy"].get("class") != "fedlora-shared":
        return None
    if meta.get("obs_transform") != "fedlora-devices" or not hasattr(config, "num_devices"):
        return None
    k_old, k_new = int(meta["env_config"]["num_devices"]), int(config.num_devices)
    size = transformed_size("fedlora-devices", config, config.obs_size)
    doc = dict(meta)
    doc["observation_space"] = spaces.Box(-np.inf, np.inf, (size,), np.float64)
    doc["action_space"] = action_space
    norm = meta.get("normalization")
    if norm is not None and k_new != k_old:
        doc["normalization"] = pooled_normalization(
            norm, k_old, k_new, len(FEDLORA_DEVICE_FEATURES)
        )
    return doc


def pooled_normalization(
    norm: dict[str, Any], k_old: int, k_new: int, per_device: int
) -> dict[str, Any]:
    """Observation statistics of K device blocks of ``per_device`` features (then the global
    features) pooled per feature over the blocks and repeated for ``k_new`` blocks (see
    :func:`resized_meta`)."""
    mean = np.asarray(norm["mean"], dtype=np.float64)
    var = np.asarray(norm["var"], dtype=np.float64)
    cut = k_old * per_device
    if mean.size < cut:
        raise ValueError(
            f"the agent's observation statistics have {mean.size} entries, fewer than its "
            f"{k_old} devices x {per_device} features"
        )
    m = mean[:cut].reshape(k_old, per_device)
    v = var[:cut].reshape(k_old, per_device)
    pooled_mean = m.mean(axis=0)
    pooled_var = v.mean(axis=0) + m.var(axis=0)
    out = dict(norm)
    out["mean"] = np.concatenate([np.tile(pooled_mean, k_new), mean[cut:]]).tolist()
    out["var"] = np.concatenate([np.tile(pooled_var, k_new), var[cut:]]).tolist()
    return out


def _checked(policy: SB3Policy, diffs: list[str]) -> SB3Policy:
    """``policy`` marked out of distribution by ``diffs``, after checking it can act in its env:
    the observation its transform makes must have the model's input size.

    Raises:
        ValueError: the model cannot take this env's observations (another shape).
    """
    size = int(np.prod(policy.model.observation_space.shape or (1,)))
    probe = np.zeros(policy.config.obs_size) if hasattr(policy.config, "obs_size") else None
    if probe is not None:
        got = int(np.asarray(policy.transform(probe)).size)
        if got != size:
            raise ValueError(
                f"model {policy.path.name} takes observations of {size} entries, and this env's "
                f"(through its obs_transform {policy.meta.get('obs_transform', 'none')!r}) have "
                f"{got}: it cannot play this env (another number of devices or users?); a "
                "size-independent policy (fedlora-shared, mec-shared) can"
            )
    policy.out_of_distribution = list(diffs)
    return policy


def save_for_leaderboard(
    model: Any,
    env: Any,
    path: str | os.PathLike,
    *,
    obs_transform: str = "none",
    vecnormalize: Any = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Save an SB3 model trained on an edgeft env in the safe agent format, ready for
    ``edgeft leaderboard --policies ALGO:PATH``.

    Args:
        model: a PPO, A2C, SAC, TD3 or DQN model with SB3's ``MlpPolicy`` (or a policy of
            ``edgeft.agents.policies.POLICIES``).
        env: the edgeft env the model acts in (``gym.make(...)``, in the action mode it was
            trained in); its id, config in force (``config_in_force``) and action mode are
            recorded.
        path: ``NAME`` (or ``NAME.agent.json``): writes ``NAME.agent.json`` and
            ``NAME.safetensors``.
        obs_transform: the observation transform the model was trained on
            (``edgeft.agents.transforms``; ``"none"``: the env's observations as they are).
        vecnormalize: the ``VecNormalize`` the model was trained behind (its observation
            statistics are saved), or those statistics as a dict ``{mean, var, clip_obs,
            epsilon}``; None: the one attached to ``model``, if any.
        meta: more information to record (e.g. ``train_config``), kept as it is; it cannot
            change the description taken from the model and the env.

    Returns:
        the path of ``NAME.agent.json``.

    Raises:
        ValueError: spaces that do not fit the env, a model that learned on normalised
            observations without their statistics, or a policy the format cannot rebuild.
    """
    import gymnasium
    import stable_baselines3
    from edgeft.agents.agent_format import (
        algo_of,
        normalization_of,
        trained_with_obs_normalisation,
        write_agent,
    )
    from edgeft.agents.transforms import transformed_size
    from edgeft.envs.common import config_in_force

    algo = algo_of(model)
    config = config_in_force(env)
    env_id = _env_id(env)
    if env_id is None:
        raise ValueError("env has no registered id; make it with gym.make('edgeft/...')")
    obs_size = int(np.prod(env.observation_space.shape or (0,)))
    size = transformed_size(obs_transform, config, obs_size)
    want = int(np.prod(model.observation_space.shape or (0,)))
    if size != want:
        raise ValueError(
            f"the model sees observations of {want} values, but "
            f"obs_transform={obs_transform!r} makes {size} from this env's "
            f"{obs_size}; build the env the model was trained in (its size, e.g. "
            "num_devices / num_users) and pass the obs_transform it was trained on"
        )
    if model.action_space != env.action_space:
        raise ValueError(
            f"the model acts in {model.action_space}, the env in {env.action_space} "
            f"(action_mode={config.action_mode!r}); build the env in the action "
            "mode the model was trained in: gym.make(ENV_ID, action_mode=...)"
        )
    if vecnormalize is None:
        norm = normalization_of(model.get_vec_normalize_env())
    elif isinstance(vecnormalize, dict):
        norm = {
            k: vecnormalize[k]
            for k in ("mean", "var", "count", "clip_obs", "epsilon")
            if k in vecnormalize
        }
        norm["mean"] = np.asarray(norm.get("mean"), dtype=np.float64).tolist()
        norm["var"] = np.asarray(norm.get("var"), dtype=np.float64).tolist()
    else:
        norm = normalization_of(vecnormalize)
    if norm is None and trained_with_obs_normalisation(model):
        raise ValueError(
            "the model learned on VecNormalize-d observations and their statistics "
            "are not given; pass vecnormalize= the VecNormalize it was trained "
            "behind (or its statistics): without them it plays a different policy"
        )
    doc = {
        "env_id": env_id,
        "algo": algo,
        "obs_transform": obs_transform,
        "env_config": config_to_dict(config),
        "timesteps": int(model.num_timesteps),
        "exported": {
            "by": "edgeft.agents.save_for_leaderboard",
            "versions": {
                "stable_baselines3": stable_baselines3.__version__,
                "gymnasium": gymnasium.__version__,
            },
        },
    }
    doc.update(
        {
            k: v
            for k, v in (meta or {}).items()
            if k not in ("env_id", "algo", "obs_transform", "env_config")
        }
    )
    return write_agent(path, model, doc, norm)
