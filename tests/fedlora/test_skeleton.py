"""The FedLoRA family's modules, each concept in one place: the observation layout against the
encoder, decision <-> action both ways, the one info dict, and an import graph without cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from edgeft.envs.fedlora import dynamics
from edgeft.envs.fedlora.actions import action_to_decision, decision_to_action
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.fedlora.observation import (
    decode_observation,
    encode_observation,
    observation_layout,
)

import edgeft  # noqa: F401  (registers the ids)

ENV_ID = "edgeft/FedLoRAScheduling-v0"
FAMILY = Path(__file__).resolve().parents[2] / "envs" / "fedlora"


def test_layout_slices_partition_the_observation_in_the_encoders_order():
    cfg = FedLoRAConfig(num_devices=5, episode_rounds=40)
    lay = observation_layout(cfg)
    assert lay.names == ("gain_db", "bits", "age", "queue", "round", "loss")
    covered = []
    for name, shape in lay:
        sl = getattr(lay, name)
        assert sl.stop - sl.start == (int(np.prod(shape)) if shape else 1)
        covered += range(sl.start, sl.stop)
    assert covered == list(range(lay.size)) and lay.size == cfg.obs_size
    rng = np.random.default_rng(0)
    lead = (2, 3)
    gain_db = rng.normal(-60, 5, lead + (5,))
    bits = rng.uniform(0.5, 2.0, lead + (5,))
    age = rng.integers(0, 40, lead + (5,))
    queue = rng.uniform(0, 3, lead)
    rnd = rng.integers(0, 40, lead)
    loss = rng.uniform(0.2, 1.0, lead)
    obs = encode_observation(gain_db, bits, age, queue, rnd, loss, 40)
    sec = lay.sections(obs)
    assert list(sec) == list(lay.names)
    np.testing.assert_array_equal(sec["gain_db"], gain_db)
    np.testing.assert_array_equal(sec["bits"], bits)
    np.testing.assert_array_equal(sec["age"], age / 40)
    np.testing.assert_array_equal(sec["queue"], queue)
    np.testing.assert_array_equal(sec["round"], rnd / 40)
    np.testing.assert_array_equal(sec["loss"], loss)
    dec = decode_observation(obs, cfg)  # batched decode = per-observation decode
    for i, j in np.ndindex(*lead):
        one = decode_observation(obs[i, j], cfg)
        # decode then encode is the identity (bits: the env keeps them in Mbit, as observed)
        np.testing.assert_array_equal(
            encode_observation(
                one.gain_db, sec["bits"][i, j], one.age, one.queue, one.round, one.loss, 40
            ),
            obs[i, j],
        )
        np.testing.assert_array_equal(one.bits, sec["bits"][i, j] * 1e6)
        for field in ("gain", "bits", "age", "queue", "round", "loss"):
            np.testing.assert_array_equal(getattr(dec, field)[i, j], getattr(one, field))
    with pytest.raises(ValueError, match="3K\\+3 = 18"):
        lay.sections(obs[..., :-1])


def test_observation_space_matches_the_layout():
    env = gym.make(ENV_ID, num_devices=4)
    lay = observation_layout(env.unwrapped.config)
    box = env.observation_space
    assert np.all(box.low[lay.gain_db] == -np.inf) and np.all(box.high[lay.age] == 1.0)
    assert box.high[lay.round.start] == 1.0 and box.low[lay.loss.start] == 0.0


@pytest.mark.parametrize("mode", ["bandwidth", "count", "subset", "score"])
def test_decision_to_action_inverts_action_to_decision(mode):
    """action -> decision -> action -> decision gives the same decision, for single and batched
    decisions, in every mode (count: the channel-ordered prefixes the env's count mode makes;
    score: also nobody and everybody scheduled); every action lies in the space."""
    v = gym.make_vec(
        ENV_ID, num_envs=6, vectorization_mode="vector_entry_point", action_mode=mode, num_devices=7
    )
    v.reset(seed=1)
    v.action_space.seed(2)
    cfg = v.unwrapped.config
    for _ in range(20):
        state = v.unwrapped.state
        a = v.action_space.sample()
        if mode == "bandwidth":
            a[a < 0.3] = 0.0
        if mode == "score":
            a[0] = -0.5  # nobody scheduled
            a[1] = 0.5  # everybody
        sched, band, _ = action_to_decision(a, state, cfg, batch=6)
        back = decision_to_action(sched, band, cfg)
        assert all(
            v.single_action_space.contains(np.asarray(b).astype(v.single_action_space.dtype))
            for b in back
        )
        sched2, band2, projected = action_to_decision(back, state, cfg, batch=6)
        np.testing.assert_array_equal(sched2, sched)
        np.testing.assert_allclose(band2, band, rtol=1e-14)
        for i in range(6):  # one decision at a time: the same action
            one = decision_to_action(sched[i], band[i], cfg)
            np.testing.assert_array_equal(one, back[i])
            s1, b1, _ = action_to_decision(one, state.index(i), cfg)
            np.testing.assert_array_equal(s1, sched2[i])
            np.testing.assert_array_equal(b1, band2[i])
        if mode != "bandwidth":
            assert not projected.any()
            np.testing.assert_array_equal(band2, band)
        v.step(a)
    with pytest.raises(ValueError, match="action_mode must be one of"):
        decision_to_action(sched, band, cfg, "shares")


def test_single_and_vector_env_report_the_same_info_keys_from_reset_on():
    v = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", num_devices=3)
    s = gym.make(ENV_ID, num_devices=3)
    _, info_v = v.reset(seed=0)
    _, info_s = s.reset(seed=0)
    # the reset reports a step's keys (Minari records episodes with them), the batch alike
    assert tuple(info_s) == dynamics.INFO_KEYS
    assert {k for k in info_v if not k.startswith("_")} == set(dynamics.INFO_KEYS)
    assert info_v["delay_budget"].tolist() == [info_s["delay_budget"]] * 2
    assert info_s["num_scheduled"] == 0 and not info_s["budget_guarded"]
    _, _, _, _, info_s = s.step(np.full(3, 0.3))
    _, _, _, _, info_v = v.step(np.full((2, 3), 0.3))
    assert tuple(info_s) == dynamics.INFO_KEYS
    assert {k for k in info_v if not k.startswith("_")} == set(dynamics.INFO_KEYS)


def _family_imports(path: Path) -> set[str]:
    """Modules of edgeft.envs.fedlora that ``path`` imports anywhere (function level too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "edgeft.envs.fedlora":
                out.update(a.name for a in node.names)
            elif node.module.startswith("edgeft.envs.fedlora."):
                out.add(node.module.rsplit(".", 1)[1])
        elif isinstance(node, ast.Import):
            out.update(
                a.name.rsplit(".", 1)[1]
                for a in node.names
                if a.name.startswith("edgeft.envs.fedlora.")
            )
    return out


def test_family_modules_import_no_cycle_and_config_is_a_leaf():
    graph = {p.stem: _family_imports(p) - {p.stem} for p in FAMILY.glob("*.py")}
    assert graph["dynamics"] >= {"actions", "reward", "types"}  # the graph is read
    assert graph["config"] <= {"surrogate"}  # nothing back from formulas, types, observation
    assert graph["surrogate"] == set() and graph["formulas"] == set()
    done: set[str] = set()

    def visit(mod: str, stack: tuple[str, ...]) -> None:
        assert mod not in stack, f"import cycle: {' -> '.join(stack + (mod,))}"
        if mod in done:
            return
        for dep in sorted(graph.get(mod, ())):
            visit(dep, stack + (mod,))
        done.add(mod)

    for mod in sorted(graph):
        visit(mod, ())
