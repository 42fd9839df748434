"""Instance distributions of the FedLoRA env: scenarios drawn at random, for agents that
generalise.

A :class:`ScenarioDistribution` draws the fields of an env config that make one scenario
differ from another: the delay budget, the cell geometry, the channel model (i.i.d. Rayleigh
blocks, AR(1)-correlated fading, or correlated fading with moving devices) and the data
partition (i.i.d. or Dirichlet shards, which pick the surrogate's calibration), and the number
of devices K where the distribution gives a range. A training run's env copies must share their
spaces (stable-baselines3 batches them): with K fixed, any action mode and observation
transform do, and the size-independent policy ``fedlora-shared`` then plays any K; with K drawn,
only spaces that do not depend on K do (the ``allowance`` action mode with the
``fedlora-allowance`` transform), and :class:`ScenarioEnv` refuses the others.

Train and test draws never coincide: draw i of split s comes from the generator seeded with
``(SPLITS[s], stream, i)``, so the two splits are independent streams, and a scenario a
test suite holds is never one an agent was trained on (the continuous fields coincide with
probability 0; tested). :class:`ScenarioEnv` plays a new training draw every episode.

:data:`DISTRIBUTIONS` holds the named ones: ``"fedlora-general"``, K = 20 with
D-bar in [1.5, 3] us/bit (log-uniform), the cell centre 250-350 m from the server with a
radius of 30-80 m, the three channel models and both partitions; ``"fedlora-sizes"``, the same
with K drawn from 14-60 (log-uniform), for agents that play any K. The held-out suites differ
in kind: K = 10 (``fedlora-k10``), K = 100 and D-bar = 1 us/bit (``fedlora-hard``), the 3GPP UMi
trace (``fedlora-3gpp``), FT's loose budget (``fedlora-paper``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "edgeft/FedLoRAScheduling-v0"
#: the generator streams of the two splits
SPLITS = {"train": 0, "test": 1}
#: the channel models a distribution draws from, as env config fields (``"correlated"`` and
#: ``"mobile"`` draw their correlation and speed)
CHANNEL_MODELS = ("iid", "correlated", "mobile")
#: the data partitions (the env's ``data`` field)
PARTITIONS = ("iid", "dirichlet")
#: the env config fields a draw may set (each draw sets those of its channel model)
DRAWN_FIELDS = (
    "num_devices",
    "delay_budget_per_bit",
    "cell_center_m",
    "cell_radius_m",
    "fading_correlation",
    "mobility_speed_mps",
    "round_duration_s",
    "data",
)


@dataclass(frozen=True)
class ScenarioDistribution:
    """A distribution over FedLoRA scenarios (env config fields; see the module docstring).

    Attributes:
        num_devices: K: an int (the same in every draw) or a range (low, high) of ints, drawn
            log-uniformly (rounded to the nearest integer) after the other fields.
        budget_us_per_bit: D-bar's range in us per bit, drawn log-uniformly.
        cell_center_m, cell_radius_m: ranges of the cell's distance from the server and of
            its radius, drawn uniformly.
        channels: the channel models drawn from (:data:`CHANNEL_MODELS`), uniformly:
            ``"iid"`` new Rayleigh fading every round; ``"correlated"`` AR(1) fading with
            rho in ``fading_correlation``; ``"mobile"`` AR(1) fading with rho = 0.9 and devices
            moving at a speed in ``speed_mps`` (Gauss-Markov, 2 s rounds), as ``fedlora-mobile``.
        fading_correlation, speed_mps: the ranges of those draws.
        data: the data partitions drawn from (:data:`PARTITIONS`), uniformly.
    """

    num_devices: int | tuple[int, int] = 20
    budget_us_per_bit: tuple[float, float] = (1.5, 3.0)
    cell_center_m: tuple[float, float] = (250.0, 350.0)
    cell_radius_m: tuple[float, float] = (30.0, 80.0)
    channels: tuple[str, ...] = CHANNEL_MODELS
    fading_correlation: tuple[float, float] = (0.5, 0.95)
    speed_mps: tuple[float, float] = (0.5, 3.0)
    data: tuple[str, ...] = PARTITIONS

    def __post_init__(self) -> None:
        k = self.num_devices
        lo_k, hi_k = (k, k) if isinstance(k, (int, np.integer)) else tuple(k)
        if not (int(lo_k) == lo_k and int(hi_k) == hi_k and 1 <= lo_k <= hi_k):
            raise ValueError(
                f"num_devices must be an int >= 1 or a range (low, high) of ints with "
                f"1 <= low <= high, got {k!r}"
            )
        for name in ("budget_us_per_bit", "cell_center_m", "cell_radius_m", "speed_mps"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be a range 0 < low <= high, got {(lo, hi)}")
        lo, hi = self.fading_correlation
        if not 0 <= lo <= hi < 1:
            raise ValueError(f"fading_correlation must lie in [0, 1), got {(lo, hi)}")
        for name, allowed in (("channels", CHANNEL_MODELS), ("data", PARTITIONS)):
            values = getattr(self, name)
            if not values or any(v not in allowed for v in values):
                raise ValueError(f"{name} must be a non-empty tuple of {allowed}, got {values}")

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One scenario: the env config fields it sets (a dict for ``gym.make``)."""
        lo, hi = np.log(self.budget_us_per_bit)
        config: dict[str, Any] = {
            "num_devices": self.num_devices if self.fixed_k else 0,
            "delay_budget_per_bit": float(np.exp(rng.uniform(lo, hi))) * 1e-6,
            "cell_center_m": float(rng.uniform(*self.cell_center_m)),
            "cell_radius_m": float(rng.uniform(*self.cell_radius_m)),
        }
        channel = self.channels[int(rng.integers(len(self.channels)))]
        if channel == "correlated":
            config["fading_correlation"] = float(rng.uniform(*self.fading_correlation))
        elif channel == "mobile":
            config.update(
                fading_correlation=0.9,
                mobility_speed_mps=float(rng.uniform(*self.speed_mps)),
                round_duration_s=2.0,
            )
        config["data"] = self.data[int(rng.integers(len(self.data)))]
        if not self.fixed_k:
            lo_k, hi_k = np.log(self.k_range)
            config["num_devices"] = int(np.rint(np.exp(rng.uniform(lo_k, hi_k))))
        return config

    @property
    def fixed_k(self) -> bool:
        """Whether every draw has the same K."""
        return isinstance(self.num_devices, (int, np.integer))

    @property
    def k_range(self) -> tuple[int, int]:
        """The smallest and largest K a draw can have."""
        k = self.num_devices
        if isinstance(k, (int, np.integer)):
            return int(k), int(k)
        return int(k[0]), int(k[1])

    def draw(self, split: str, index: int, stream: int = 0) -> dict[str, Any]:
        """Draw ``index`` of ``split`` (``"train"`` or ``"test"``) in ``stream``: the same
        scenario every time; the two splits never share a draw."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        return self.sample(np.random.default_rng([SPLITS[split], int(stream), int(index)]))

    def covers(self, name: str, value: Any) -> bool:
        """Whether the config field ``name`` at ``value`` lies in what this distribution draws
        (a trained agent is in distribution there); False for fields it does not draw."""
        ranges = {
            "delay_budget_per_bit": tuple(1e-6 * x for x in self.budget_us_per_bit),
            "cell_center_m": self.cell_center_m,
            "cell_radius_m": self.cell_radius_m,
        }
        if name in ranges:
            lo, hi = ranges[name]
            return lo * (1 - 1e-12) <= float(value) <= hi * (1 + 1e-12)
        channels = self.channels
        if name == "num_devices":
            return _inside(value, self.k_range)
        if name == "data":
            return value in self.data
        if name == "fading_correlation":
            return (
                ("iid" in channels and value == 0.0)
                or ("mobile" in channels and value == 0.9)
                or ("correlated" in channels and _inside(value, self.fading_correlation))
            )
        if name == "mobility_speed_mps":
            return value == 0.0 or ("mobile" in channels and _inside(value, self.speed_mps))
        if name == "round_duration_s":
            return value == 1.0 or ("mobile" in channels and value == 2.0)
        return False


def _inside(value: Any, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= float(value) <= bounds[1]


#: the named distributions (``edgeft train --scenarios NAME``)
DISTRIBUTIONS: dict[str, ScenarioDistribution] = {
    "fedlora-general": ScenarioDistribution(),
    "fedlora-sizes": ScenarioDistribution(num_devices=(14, 60)),
}


def get_distribution(name: str) -> ScenarioDistribution:
    """The named distribution; a ``ValueError`` naming the known ones otherwise."""
    if name not in DISTRIBUTIONS:
        raise ValueError(f"unknown scenario distribution {name!r}; known: {sorted(DISTRIBUTIONS)}")
    return DISTRIBUTIONS[name]


class ScenarioEnv(gym.Env):
    """The FedLoRA env on a new scenario every episode: each ``reset`` draws the next scenario
    of ``split`` in ``stream`` (draw 0, 1, 2, ...; ``reset(seed=s)`` restarts at draw 0 of the
    stream ``(stream, s)``) and plays it from a seed drawn with it.

    ``base`` holds the config fields every scenario shares (the action mode, the reward, the
    budget guard); the distribution's fields override them. ``transform``, optional: a
    function ``(obs batch, config) -> features batch`` applied with each episode's own config
    (an observation transform of ``edgeft.agents.transforms`` reads the budget and the
    calibration from it). ``reward``, optional: a builder ``config -> fn(obs_before batch,
    info) -> reward`` (a training reward of ``edgeft.agents.vec.REWARD_SHAPINGS``) that
    replaces the env's reward, built with each episode's config and fed the raw observation
    the round started from. ``info["scenario"]`` holds the draw's fields at reset.
    """

    def __init__(
        self,
        distribution: str | ScenarioDistribution = "fedlora-general",
        split: str = "train",
        stream: int = 0,
        base: dict[str, Any] | None = None,
        transform: Any = None,
        reward: Any = None,
    ) -> None:
        if isinstance(distribution, str):
            distribution = get_distribution(distribution)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        self.distribution = distribution
        self.split, self.stream = split, int(stream)
        self.base = dict(base or {})
        self.transform = transform
        self.reward = reward
        self._reward_fn: Any = None
        self._raw: np.ndarray | None = None
        self._stream: tuple[int, ...] = (self.stream,)
        self._draw = 0
        self.scenario: dict[str, Any] = {}
        self._config: Any = None  # the current scenario's config in force (set by _make)
        self.env = self._make(distribution.draw(split, 0, self.stream))
        self.action_space = self.env.action_space
        raw = self.env.observation_space
        if transform is None:
            self.observation_space = raw
        else:
            size = self._features(np.zeros(raw.shape, dtype=np.float64)).shape[0]
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float64)
        if not distribution.fixed_k:  # refuse spaces that depend on K now, not at some reset
            first = self.env, self.scenario, self._config
            for k in distribution.k_range:
                self.env = self._make({**first[1], "num_devices": k})
                self._check_spaces(self._features(np.zeros(self.env.observation_space.shape)))
                self.env.close()
            self.env, self.scenario, self._config = first

    def _make(self, scenario: dict[str, Any]) -> Any:
        from edgeft.envs.common import config_in_force

        self.scenario = scenario
        env = gym.make(ENV_ID, **{**self.base, **scenario})
        self._config = config_in_force(env)
        return env

    @property
    def raw_observation(self) -> np.ndarray | None:
        """The env's last observation before the transform (None before the first reset)."""
        return self._raw

    @property
    def config(self) -> Any:
        """The config in force of the current scenario's env."""
        return self._config

    def _features(self, obs: np.ndarray) -> np.ndarray:
        if self.transform is None:
            return obs
        return self.transform(np.asarray(obs, dtype=np.float64)[None], self.config)[0]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._stream, self._draw = (self.stream, int(seed)), 0
        rng = np.random.default_rng([SPLITS[self.split], *self._stream, self._draw])
        self._draw += 1
        self.env.close()
        self.env = self._make(self.distribution.sample(rng))
        obs, info = self.env.reset(seed=int(rng.integers(2**31)))
        if self.reward is not None:
            self._reward_fn = self.reward(self.config)
        self._raw = obs
        features = self._features(obs)
        self._check_spaces(features)
        return features, {**info, "scenario": dict(self.scenario)}

    def _check_spaces(self, features: np.ndarray) -> None:
        """Raise ``ValueError`` unless the current scenario's env has this env's action space
        and gives features of its observation shape (stable-baselines3 batches the copies)."""
        k = self.scenario["num_devices"]
        fix = (
            "a distribution that draws K needs an action mode whose space does not depend on K "
            "(action_mode='allowance') and an observation transform of fixed length "
            "(obs_transform='fedlora-allowance')"
        )
        if self.env.action_space != self.action_space:
            raise ValueError(
                f"scenario with K = {k} has the action space {self.env.action_space}, not "
                f"{self.action_space}: {fix}"
            )
        if features.shape != self.observation_space.shape:
            raise ValueError(
                f"scenario with K = {k} gives observations of shape {features.shape}, not "
                f"{self.observation_space.shape}: {fix}"
            )

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._reward_fn is not None:
            before = np.asarray(self._raw, dtype=np.float64)[None]
            reward = float(np.ravel(self._reward_fn(before, info))[0])
        self._raw = obs
        return self._features(obs), reward, terminated, truncated, info

    def close(self) -> None:
        self.env.close()
