"""Pieces shared by the env families: config construction and validation helpers."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

C = TypeVar("C")


class UnknownFieldError(ValueError, TypeError):
    """A config was given a field it does not have. A ``ValueError`` like every bad config
    value, and a ``TypeError`` like an unexpected keyword argument (what tools that probe an
    env's constructor, such as TorchRL's ``GymEnv``, expect)."""


def build_config(
    cls: type[C],
    config: Any = None,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
    **overrides: Any,
) -> C:
    """Make a frozen config of type ``cls`` from a config object, a dict, a preset and keywords.

    Precedence: ``cls`` defaults < ``preset`` < ``config`` fields < keyword ``overrides``.
    ``preset`` may be given as a keyword or as a field of ``config``.

    Raises:
        ValueError: an unknown field name or preset (the message lists the valid ones), or any
            field value the config's own validation rejects.
    """
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    if config is not None:
        if isinstance(config, cls):
            values = dataclasses.asdict(config)  # type: ignore[call-overload]
            values = {k: getattr(config, k) for k in values}
        elif isinstance(config, Mapping):
            values = dict(config)
        else:
            raise ValueError(
                f"config must be a {cls.__name__} or a dict of its fields, "
                f"got {type(config).__name__}"
            )
    values.update(overrides)
    unknown = sorted(set(values) - fields)
    if unknown:
        # Python's own wording for the first name too: tools that probe a constructor with
        # optional keywords (TorchRL's GymEnv tries frameskip) match on it
        raise UnknownFieldError(
            f"unknown {cls.__name__} field(s) {unknown} (unexpected keyword argument "
            f"'{unknown[0]}'); valid fields: {sorted(fields)}"
        )
    preset = values.get("preset", "default")
    presets = presets or {}
    if preset not in presets and preset != "default":
        raise ValueError(
            f"preset must be one of {sorted(set(presets) | {'default'})}, got {preset!r}"
        )
    base = dict(presets.get(preset, {}))
    if isinstance(config, cls):
        # a full config object already carries its preset's values; only keywords override it
        base = {}
    base.update(values)
    return cls(**base)


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    hint: str = "",
) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` lies in the given range.

    The message names the field, the value, the accepted range and what to do; ``hint`` (e.g.
    the quantity and its unit) is added to it. NaN, infinities, booleans and non-numbers are
    refused, and with ``integer`` so is any number that is not a whole number.
    """
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v)  # before the integer test: int(nan) and int(inf) raise
        if ok and integer:
            ok = v == math.floor(v)
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v < high if high_open else v <= high
    if not ok:
        rng = range_text(low, high, low_open=low_open, high_open=high_open)
        kind = "an integer" if integer else "a finite number"
        about = f" ({hint})" if hint else ""
        raise ValueError(
            f"{name} must be {kind} in {rng}, got {value!r}{about}; set {name} to a value in {rng}"
        )


@dataclasses.dataclass(frozen=True)
class Bound:
    """The accepted range of one numeric config field, with what it measures and its unit.

    A config module keeps one ``FIELD_RANGES`` dict of these: the single source of its
    validation, of the ranges its docs give and of the tests that draw configs from them.

    Attributes:
        low, high: the endpoints, included unless ``low_open`` / ``high_open``.
        unit: what the number measures, with its unit (added to error messages).
        integer: only whole numbers are accepted.
        low_open, high_open: exclude the endpoint.
    """

    low: float
    high: float
    unit: str = ""
    integer: bool = False
    low_open: bool = False
    high_open: bool = False

    @property
    def log(self) -> bool:
        """Whether the range is a positive scale spanning at least two decades (samplers draw
        it log-uniformly)."""
        return self.low > 0 and self.high >= 100 * self.low

    def text(self) -> str:
        """The range as error messages write it, e.g. ``[1.5, 8]``."""
        return range_text(self.low, self.high, low_open=self.low_open, high_open=self.high_open)

    def check(
        self, name: str, value: Any, *, low: float | None = None, high: float | None = None
    ) -> None:
        """Raise ``ValueError`` naming ``name`` unless ``value`` lies in this range (see
        :func:`check_range`). ``low`` / ``high`` narrow it where a bound depends on another
        field (``tokens_max >= tokens_min``): the tighter endpoint applies."""
        lo, lo_open = self.low, self.low_open
        if low is not None and low > lo:
            lo, lo_open = low, False
        hi, hi_open = self.high, self.high_open
        if high is not None and high < hi:
            hi, hi_open = high, False
        check_range(
            name,
            value,
            lo,
            hi,
            low_open=lo_open,
            high_open=hi_open,
            integer=self.integer,
            hint=self.unit,
        )


def check_pair(name: str, value: Any, bound: Bound) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a ``(low, high)`` pair with both
    entries in ``bound`` and ``low <= high``."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(
            f"{name} must be a (low, high) pair with entries in {bound.text()} "
            f"({bound.unit}), got {value!r}"
        )
    bound.check(f"{name}[0]", value[0])
    bound.check(f"{name}[1]", value[1], low=float(value[0]))


def check_values(name: str, value: Any, bound: Bound) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a non-empty tuple whose every
    entry lies in ``bound``."""
    if not isinstance(value, (tuple, list)) or len(value) == 0:
        raise ValueError(
            f"{name} must be a non-empty tuple of numbers in {bound.text()} "
            f"({bound.unit}), got {value!r}"
        )
    for i, v in enumerate(value):
        bound.check(f"{name}[{i}]", v)


def range_text(
    low: float | None, high: float | None, *, low_open: bool = False, high_open: bool = False
) -> str:
    """An interval as error messages write it: ``[1, 8]``, ``(0, 100]``, ``[0, inf)``."""
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return (
        ("(" if low_open or low is None else "[")
        + f"{lo}, {hi}"
        + (")" if high_open or high is None else "]")
    )


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


#: how far (absolute) an action entry may lie outside its action space's bounds and still be taken,
#: clipped, as the element of the space it rounds to: round-off of a decision written as an
#: action (a share b / b_max of 1 + 2e-16). Anything further out is refused.
ACTION_TOLERANCE = 1e-9

#: dtype kinds an action may have: bool, integers, floats (not complex, object, strings, times)
_REAL_KINDS = frozenset("biuf")


def as_action_array(
    action: Any, shape: tuple[int, ...], what: str, *, reshape: bool = True
) -> np.ndarray:
    """Convert an action to a float64 array of ``shape``; malformed input raises ``ValueError``.

    Malformed: not an array of real numbers (complex, object, string or time dtypes included,
    even where numpy could cast them), NaN or inf entries, or another shape. With ``reshape``
    (default) an array with the right number of entries but another shape is reshaped; without
    it only the exact shape is accepted (a (K, 1) action for a (K,) space is an error, not
    silently flattened).
    """
    if type(action) is np.ndarray and action.dtype == np.float64 and action.shape == shape:
        # one reduction on the hot path: a NaN or inf entry makes the sum non-finite
        if not math.isfinite(action.sum()) and not np.isfinite(action).all():
            bad = np.flatnonzero(~np.isfinite(action.ravel())).tolist()[:10]
            raise ValueError(
                f"action must be {what} with finite entries; got NaN or inf at indices {bad}"
            )
        return action
    try:
        raw = action if isinstance(action, np.ndarray) else np.asarray(action)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"action must be {what}; could not convert {type(action).__name__}: {err}"
        ) from err
    if raw.dtype.kind not in _REAL_KINDS:
        raise ValueError(
            f"action must be {what}, of real numbers (bool, int or float); could not convert "
            f"{type(action).__name__} of dtype {raw.dtype}"
        )
    arr = np.asarray(raw, dtype=np.float64)
    if arr.shape != shape:
        if reshape and arr.size == int(np.prod(shape)):
            arr = arr.reshape(shape)
        else:
            raise ValueError(f"action must be {what} of shape {shape}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(
            f"action must be {what} with finite entries; got NaN or inf at "
            f"indices {np.flatnonzero(~np.isfinite(arr.ravel())).tolist()[:10]}"
        )
    return arr


def check_action_bounds(arr: np.ndarray, low: Any, high: Any, what: str, names: Any = None) -> None:
    """Raise ``ValueError`` unless every entry of the action ``arr`` lies in [``low``, ``high``]
    (scalars or arrays broadcasting against ``arr``) up to :data:`ACTION_TOLERANCE`.

    The message says how many entries lie outside, the first of them (its flat index, or its
    name from ``names(flat_index)``), its value and its bounds.
    """
    outside = (arr < np.subtract(low, ACTION_TOLERANCE)) | (arr > np.add(high, ACTION_TOLERANCE))
    if not outside.any():
        return
    flat = np.flatnonzero(outside.ravel())
    first = int(flat[0])
    lo = float(np.broadcast_to(low, arr.shape).ravel()[first])
    hi = float(np.broadcast_to(high, arr.shape).ravel()[first])
    where = names(first) if names is not None else f"entry {first}"
    raise ValueError(
        f"action must be {what}; {flat.size} entr{'y' if flat.size == 1 else 'ies'} outside "
        f"the action space (flat indices {flat[:10].tolist()}), the first: {where} = "
        f"{float(arr.ravel()[first])!r}, outside [{lo:g}, {hi:g}]; clip the action to the "
        "space's bounds"
    )


def config_in_force(env: Any) -> Any:
    """The config an env actually runs with: its user config with the values it measures or
    derives (real mode: bits per round, layer count, D-bar in force) filled in.

    Policies, the leaderboard and agents read env parameters through this one function, never
    from ``env.config`` directly, so a policy built for a real-mode env uses the budget the env
    enforces. ``env`` may be wrapped (``gym.make`` output) or a plain env; an env without
    derived values returns its ``config``.
    """
    base = getattr(env, "unwrapped", env)
    derived = getattr(base, "config_in_force", None)
    return derived if derived is not None else base.config


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (nested dataclasses become dicts, numpy values
    plain numbers, paths strings)."""
    import json
    from pathlib import Path

    def default(obj: Any) -> Any:
        if isinstance(obj, (np.integer, np.floating, np.bool_)):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.asdict(obj)
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(f"cannot write {type(obj).__name__} to JSON")

    return json.loads(json.dumps(dataclasses.asdict(config), default=default))
