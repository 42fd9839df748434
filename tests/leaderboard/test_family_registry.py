"""A third env family is one record: registered here in a few lines, it plays through the
leaderboard (episodes, score, hindsight bound, summary, table) with no change elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs.family import (
    EnvEntry,
    EnvFamily,
    Headline,
    HindsightPlan,
    Metric,
    register_family,
    unregister_family,
)
from gymnasium import spaces

from edgeft import leaderboard as lb
from edgeft.suites import Scenario, Suite

TOY_ID = "edgeft-test/Coin-v0"


@dataclass(frozen=True)
class CoinConfig:
    """Guess a coin each round; the observation carries a noisy hint of it."""

    family = "coin"
    episode_rounds: int = 6
    hint_noise: float = 0.5
    action_mode: str = "guess"
    preset: str = "default"
    mode: str = "surrogate"


class CoinEnv(gym.Env):
    def __init__(self, config: Any = None, **overrides: Any) -> None:
        from edgeft.envs.common import build_config

        self.config = build_config(CoinConfig, config, {}, **overrides)
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.action_space = spaces.Discrete(2)

    def _obs(self) -> np.ndarray:
        return np.array([self.t / self.config.episode_rounds, self.hint[self.t]])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        n = self.config.episode_rounds
        self.coins = self.np_random.integers(0, 2, n + 1)
        self.hint = self.coins + self.config.hint_noise * self.np_random.standard_normal(n + 1)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        hit = float(int(action) == self.coins[self.t])
        self.t += 1
        info = {"hit": hit, "cost": 1.0 - hit}
        return self._obs(), hit, False, self.t >= self.config.episode_rounds, info


class Hits:
    def __init__(self) -> None:
        self.hits = 0.0

    def before_step(self, env: Any) -> None:
        pass

    def after_step(self, info: Any) -> None:
        self.hits += info["hit"]

    def metrics(self, last_info: Any, total_reward: float, rounds: int) -> dict[str, float]:
        return {"hit_rate": self.hits / rounds, "return": total_reward}


class FollowHint:
    def __init__(self, config: Any, action_mode: str | None = None, seed: int | None = None):
        pass

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        return int(np.asarray(obs)[..., 1] > 0.5), state


class Coin:
    def __init__(self, config: Any, action_mode: str | None = None, seed: int | None = None):
        # a stream of its own: the env draws its coins from the same seed's default stream
        self.rng = np.random.default_rng([0 if seed is None else seed, 7])

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        return int(self.rng.integers(0, 2)), state


#: the family's reference policies (``EnvFamily.policies`` names this module)
REFERENCE_POLICIES = {"follow-hint": (FollowHint, 1.0), "coin": (Coin, 1.0)}


class Replay:
    def __init__(self, actions: np.ndarray, rounds: int) -> None:
        self.actions, self.rounds = actions, rounds

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        return int(self.actions[int(round(obs[0] * self.rounds))]), state


def hindsight(env_id: str, config: dict, seed: int) -> HindsightPlan:
    """Knowing the coins, every guess hits."""
    env = gym.make(env_id, **config)
    env.reset(seed=seed)
    coins = env.unwrapped.coins
    return HindsightPlan(
        bound=1.0,
        policy=Replay(coins, env.unwrapped.config.episode_rounds),
        action_mode="guess",
        gap=0.0,
    )


COIN = EnvFamily(
    name="coin",
    env_ids={TOY_ID: EnvEntry(f"{__name__}:CoinEnv")},
    config_class=CoinConfig,
    presets={},
    size_field="episode_rounds",
    metrics={"hit_rate": Metric("hit rate", False), "return": Metric("return", False)},
    curves={},
    recorder=Hits,
    headlines={
        "hits": Headline(
            "hits",
            "hits/round",
            True,
            "none",
            anchor="coin",
            reference="follow-hint",
            value=lambda m: m["hit_rate"],
            breaks_constraint=lambda m: False,
            hindsight=f"{__name__}:hindsight",
        )
    },
    default_headline="hits",
    policies=__name__,
    plot_metrics=("hit_rate",),
)


@pytest.fixture
def coin_family():
    register_family(COIN)
    yield COIN
    unregister_family("coin")
    gym.registry.pop(TOY_ID, None)


def test_a_toy_family_plays_through_the_leaderboard(coin_family, tmp_path):
    import edgeft

    suite = Suite(
        "coin-default",
        1,
        "coin",
        "guess the coin",
        (Scenario("noisy", TOY_ID, {"hint_noise": 0.8}),),
        num_seeds=4,
    )
    summary = lb.run_leaderboard(
        suite, ["follow-hint"], tmp_path / "coin", backend="serial", progress=False
    )
    assert set(edgeft.list_policies("coin")) >= {"follow-hint", "coin"}
    by = {e["policy"]: e for e in summary["results"]}
    assert set(by) == {"follow-hint", "coin", "hindsight"}  # the anchor and bound rows added
    assert by["hindsight"]["headline"]["mean"] == 1.0
    assert by["coin"]["score"]["mean"] == pytest.approx(0.0)
    assert 0.0 < by["follow-hint"]["score"]["mean"] < 100.0
    table = lb.markdown_table(summary)
    assert "hit rate" in table and "hits/round" in table
    assert (tmp_path / "coin" / "plots" / "metrics.png").is_file()
