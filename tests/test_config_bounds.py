"""Every numeric config field of both env families is bounded: a value outside its range raises
``ValueError`` naming the field and the range, and every accepted config keeps observations and
rewards finite in float32 from the first step on. The ranges come from the config modules'
``FIELD_RANGES`` (the single source of the validation), never re-typed here."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs.common import Bound
from edgeft.envs.fedlora import config as fedlora_config
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.mec import config as mec_config
from edgeft.envs.mec.config import MECConfig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FEDLORA = "edgeft/FedLoRAScheduling-v0"
MEC = "edgeft/MECOffloading-v0"
FL_RANGES = fedlora_config.FIELD_RANGES
MEC_RANGES = mec_config.FIELD_RANGES


def _config(cls, **fields):
    return cls(**fields)


# ----------------------------------------------------------------------- named refusals
MEASURED = [
    (FedLoRAConfig, "delay_budget_per_bit", 5e-324),
    (FedLoRAConfig, "delay_budget", 1e-300),
    (FedLoRAConfig, "path_loss_exponent", 100.0),
    (FedLoRAConfig, "tx_power_w", 1e308),
    (MECConfig, "energy_budget_scale", 5e-324),
    (MECConfig, "p_max_range_w", (1e300, 1e300)),
    (MECConfig, "kappa_user", 1e300),
    (MECConfig, "kappa_edge", 1e300),
    (MECConfig, "area_m", 1e300),
    (MECConfig, "area_m", 1e9),
]


def _ranges(cls):
    return FL_RANGES if cls is FedLoRAConfig else MEC_RANGES


@pytest.mark.parametrize("cls,field,value", MEASURED)
def test_values_outside_the_range_name_the_field_and_its_range(cls, field, value):
    with pytest.raises(ValueError) as err:
        _config(cls, **{field: value})
    msg = str(err.value)
    assert field in msg and _ranges(cls)[field].text() in msg
    assert f"set {field}" in msg  # what to do


#: fields whose range one end of depends on another field (the message gives the narrowed range)
DEPENDENT = {"tokens_max", "min_distance_m", "mobility_step_m"}


def _all_fields():
    for cls in (FedLoRAConfig, MECConfig):
        for field, bound in _ranges(cls).items():
            yield cls, field, bound


def _as_field(cls, field, x):
    """A scalar ``x`` in the form ``field`` takes (a pair or a tuple for the tuple fields)."""
    if cls is MECConfig and field in mec_config.PAIR_FIELDS:
        return (x, x)
    if cls is MECConfig and field in mec_config.VALUES_FIELDS:
        return (x,)
    return x


@pytest.mark.parametrize(
    "cls,field,bound", list(_all_fields()), ids=[f for _, f, _ in _all_fields()]
)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "just beyond"])
def test_every_field_refuses_non_finite_and_out_of_range_values_by_name(cls, field, bound, bad):
    if bad == "just beyond":
        bad = bound.high * 2 + 1 if bound.high > 0 else bound.high + 1
    with pytest.raises(ValueError) as err:
        _config(cls, **{field: _as_field(cls, field, bad)})
    msg = str(err.value)
    assert field in msg
    if field in DEPENDENT:  # the range narrowed by the other field, e.g. [tokens_min, 1e+06]
        assert f"must be {'an integer' if bound.integer else 'a finite number'} in [" in msg
    else:
        assert bound.text() in msg


def test_every_numeric_field_has_a_range():
    import dataclasses

    for cls, skip in (
        (FedLoRAConfig, {"delay_budget"}),
        (MECConfig, set()),
    ):
        numeric = {
            f.name
            for f in dataclasses.fields(cls)
            if f.type in ("int", "float", "float | None")
            or f.type.startswith("tuple[int")
            or f.type.startswith("tuple[float")
        }
        assert numeric - skip <= set(_ranges(cls)), numeric - set(_ranges(cls))
    assert "delay_budget" in FL_RANGES


def test_defaults_presets_and_endpoints_are_accepted():
    for cls in (FedLoRAConfig, MECConfig):
        for field, bound in _ranges(cls).items():
            for x in (bound.low, bound.high):
                if (bound.low_open and x == bound.low) or (bound.high_open and x == bound.high):
                    continue
                if isinstance(x, float) and bound.integer:
                    x = int(x)
                try:
                    _config(cls, **{field: _as_field(cls, field, x)})
                except ValueError as err:  # a joint limit: it must name the field
                    assert field in str(err), (field, x, err)


def test_joint_limits_name_their_fields():
    with pytest.raises(ValueError, match=r"delay_budget_per_bit x bits_per_round.*\[1e-06"):
        FedLoRAConfig(delay_budget_per_bit=1e-12, bits_per_round=1.0)
    with pytest.raises(ValueError, match="far edge of the cell.*path_loss_exponent"):
        FedLoRAConfig(path_loss_exponent=8.0, tx_power_w=1e-6)
    with pytest.raises(ValueError, match=r"SNR of .* less than 1e-06.*tx_power_w"):
        FedLoRAConfig(tx_power_w=1e-6, noise_psd=1e-6, bits_per_round=1.0, delay_budget=1e6)
    with pytest.raises(ValueError, match="reference point's energy.*kappa_user"):
        MECConfig(kappa_user=1e-20, f_user_max_range_hz=(1e11, 1e11), hidden_size=100_000)
    with pytest.raises(ValueError, match=r"surrogate\.initial_loss"):
        FedLoRAConfig(surrogate={"initial_loss": 1e300, "loss_floor": 0.1})


# ----------------------------------------------------------------------- property-based
#: fields drawn with a small cap, to keep each example fast (K, N, M and T scale the work)
MAX_FIELDS = 4
SMALL = {"num_devices": 6, "num_users": 4, "num_servers": 4, "episode_rounds": 6}


def _draw(bound: Bound, cap: float | None = None):
    """Values of ``bound``'s range: log-uniform for positive scales, the endpoints included."""
    lo, hi = bound.low, bound.high if cap is None else min(bound.high, cap)
    if bound.integer:
        lo_i, hi_i = int(lo), int(hi)
        if bound.log:
            inner = st.floats(math.log10(lo_i), math.log10(hi_i)).map(
                lambda e: min(max(round(10.0**e), lo_i), hi_i)
            )
        else:
            inner = st.integers(lo_i, hi_i)
        return st.one_of(st.sampled_from([lo_i, hi_i]), inner)
    ends = [
        x for x, open_ in ((lo, bound.low_open), (hi, bound.high_open and cap is None)) if not open_
    ]
    if bound.log:
        inner = st.floats(math.log10(lo), math.log10(hi)).map(lambda e: min(max(10.0**e, lo), hi))
    else:
        inner = st.floats(lo, hi, exclude_min=bound.low_open, exclude_max=bound.high_open)
    return st.one_of(st.sampled_from(ends), inner) if ends else inner


def _field_strategy(cls, field):
    bound = _ranges(cls)[field]
    value = _draw(bound, SMALL.get(field))
    if cls is MECConfig and field in mec_config.PAIR_FIELDS:
        return st.tuples(value, value).map(lambda p: tuple(sorted(p)))
    if cls is MECConfig and field in mec_config.VALUES_FIELDS:
        return st.lists(value, min_size=1, max_size=3).map(tuple)
    return value


def _configs(cls, extra):
    names = sorted(_ranges(cls))
    return st.lists(st.sampled_from(names), min_size=1, max_size=MAX_FIELDS, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries(
            {n: _field_strategy(cls, n) for n in chosen},
            optional={k: v for k, v in extra.items() if k not in chosen},
        )
    )


def _finite32(x) -> bool:
    with np.errstate(over="ignore"):
        return bool(np.isfinite(np.asarray(x, dtype=np.float64).astype(np.float32)).all())


def _play(env_id, fields, seed, steps=3):
    """The observations and rewards of a few random steps in ``gym.make(env_id, **fields)``;
    None where the config is refused, with an error that names one of its fields."""
    try:
        env = gym.make(env_id, disable_env_checker=True, **fields)
    except ValueError as err:
        assert any(name in str(err) for name in fields), (fields, err)
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs, _ = env.reset(seed=seed)
        values = [obs]
        env.action_space.seed(seed)
        for _ in range(steps):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            values += [obs, reward]
            if terminated or truncated:
                break
    return values


FL_EXTRA = {
    "action_mode": st.sampled_from(fedlora_config.ACTION_MODES),
    "reward": st.sampled_from(fedlora_config.REWARDS),
    "num_devices": _field_strategy(FedLoRAConfig, "num_devices"),
}
MEC_EXTRA = {
    "action_mode": st.sampled_from(mec_config.ACTION_MODES),
    "num_users": _field_strategy(MECConfig, "num_users"),
    "num_servers": _field_strategy(MECConfig, "num_servers"),
}
PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(fields=_configs(FedLoRAConfig, FL_EXTRA), seed=st.integers(0, 2**31 - 1))
def test_fedlora_accepted_configs_stay_finite_in_float32(fields, seed):
    """Finite float32 observations and rewards, or a refusal naming a field (in _play)."""
    fields.setdefault("num_devices", 4)
    fields.setdefault("episode_rounds", SMALL["episode_rounds"])
    values = _play(FEDLORA, fields, seed)
    assert values is None or all(_finite32(v) for v in values), (fields, values)


@PROPERTY
@given(fields=_configs(MECConfig, MEC_EXTRA), seed=st.integers(0, 2**31 - 1))
def test_mec_accepted_configs_stay_finite_in_float32(fields, seed):
    """Finite float32 observations and rewards, or a refusal naming a field (in _play)."""
    fields.setdefault("num_users", 3)
    fields.setdefault("num_servers", 2)
    fields.setdefault("episode_rounds", SMALL["episode_rounds"])
    values = _play(MEC, fields, seed)
    assert values is None or all(_finite32(v) for v in values), (fields, values)
