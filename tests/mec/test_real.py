"""``MECOffloading`` real mode: the layer split against the unsplit model, the env API, seeding,
measured bits against s(d), and learning on the synthetic task (tiny BERT models, float64)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

ENV_ID = "edgeft/MECOffloading-v0"
LAYERS = 4


@pytest.fixture(scope="module")
def tiny4(tmp_path_factory):
    """A 4-layer tiny BERT saved as a local model folder (so alpha has 3 non-trivial values)."""
    from edgeft.training.models import TINY_BERT
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny4")
    BertModel(BertConfig(**{**TINY_BERT, "num_hidden_layers": LAYERS})).save_pretrained(path)
    return str(path)


def _training(model, **kw):
    return {"model": model, "dtype": "float64", "lr": 0.1, "batch_size": 8, "eval_size": 400, **kw}


@pytest.fixture(scope="module")
def env(tiny4):
    import edgeft  # noqa: F401  (registers the ids)

    e = gym.make(
        ENV_ID,
        mode="real",
        num_users=4,
        num_servers=2,
        episode_rounds=5,
        tokens_min=4,
        tokens_max=20,
        training=_training(tiny4),
    )
    yield e
    e.close()


def _randomize_lora(split, seed=1, scale=0.3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in split.lora_parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def test_config_comes_from_the_real_model(env):
    from edgeft.envs.common import config_in_force

    cfg = config_in_force(env)
    assert cfg.num_layers == LAYERS and cfg.hidden_size == 32 and cfg.batch_size == 8
    assert cfg.bits_per_element == 32.0
    assert cfg.tokens_min == 4 and cfg.tokens_max == 14  # synthetic-text: at most 14 tokens
    assert env.action_space.high[0, 0] == LAYERS - 1
    # the user's config is not rewritten: the measured values live in config_in_force only
    user = env.unwrapped.config
    assert (user.num_layers, user.hidden_size, user.batch_size) == (32, 1024, 512)
    assert (user.bits_per_element, user.tokens_min, user.tokens_max) == (16.0, 4, 20)
    assert env.unwrapped.config_in_force is cfg


def test_split_forward_and_backward_equal_the_unsplit_model(env):
    """For every cut alpha in 0..Upsilon: pooled output and full-model gradient to 1e-10."""
    eng = env.unwrapped._real
    env.reset(seed=0)
    _randomize_lora(eng.split)  # B != 0: the LoRA branch matters in every layer
    train = eng.data.train
    batch = eng.make_batch(train, np.arange(8), 11)
    assert (batch["attention_mask"].sum(1) < 11).any()  # padding present
    ref = eng.split.full_forward(batch)
    params = eng.parameters()
    loss = torch.nn.functional.cross_entropy(eng.logits(ref), batch["labels"])
    ref_grads = torch.autograd.grad(loss, params)
    for alpha in range(LAYERS + 1):
        out = eng.layer_split.forward(batch, alpha)
        assert out.dtype == torch.float64
        assert torch.max(torch.abs(out - ref)).item() <= 1e-10
        for p in params:
            p.grad = None
        value, _, elems, real = eng.user_gradient(batch, alpha)
        assert value == pytest.approx(loss.item(), abs=1e-12)
        assert elems == 8 * 11 * 32 and real == int(batch["attention_mask"].sum()) * 32
        for p, g in zip(params, ref_grads):
            assert torch.max(torch.abs(p.grad - g)).item() <= 1e-10
        if 0 < alpha < LAYERS:  # the cut really splits: gradient reaches both sides' LoRA
            first = eng.split.model.encoder.layer[0].attention.self.query.lora_B["default"]
            last = eng.split.model.encoder.layer[-1].attention.self.query.lora_B["default"]
            assert first.weight.grad.abs().sum() > 0 and last.weight.grad.abs().sum() > 0
    for p in params:
        p.grad = None


def test_check_env_real_mode(env):
    from gymnasium.utils.env_checker import check_env

    check_env(env.unwrapped, skip_render_check=True)


def _rollout(env, seed, steps=3):
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    traj, infos = [obs], []
    for _ in range(steps):
        action = env.action_space.sample()
        obs, r, _, _, info = env.step(action)
        traj += [obs, np.array([r])]
        infos.append(info)
    return traj, infos


def test_equal_seeds_equal_real_trajectories_and_measured_bits(env):
    a, ia = _rollout(env, 3)
    b, ib = _rollout(env, 3)
    c, ic = _rollout(env, 4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(ia, ib):
        np.testing.assert_array_equal(x["user_loss"], y["user_loss"])
        np.testing.assert_array_equal(x["bits"], y["bits"])
        assert x["loss"] == y["loss"]
    assert not np.array_equal(ia[0]["user_loss"], ic[0]["user_loss"])
    # the measured cut tensor is exactly s(d_n) = B d_n h bits of the cost model
    inst_obs = a[0]
    inst = env.unwrapped.instance_of(inst_obs)
    np.testing.assert_array_equal(ia[0]["bits"], inst.bits)
    assert np.all(ia[0]["bits_real_tokens"] <= ia[0]["bits"])
    assert np.all(ia[0]["bits_real_tokens"] > 0)
    assert ia[0]["user_loss"].shape == (4,)
    assert ia[0]["loss"] == pytest.approx(ia[0]["user_loss"].mean())
    assert len(set(np.round(ia[0]["alpha"]).tolist()) - {1.0, 2.0, 3.0}) == 0


def test_one_round_is_one_sgd_step_on_the_average_gradient(env):
    """run_round = theta - lr * mean_n grad f_n, each grad from the unsplit model (reference)."""
    eng = env.unwrapped._real
    obs, _ = env.reset(seed=5)
    _randomize_lora(eng.split)
    inst = env.unwrapped.instance_of(obs)
    from edgeft.envs.mec.resources import fast_resource_rule

    alpha = np.array([1.0, 2.0, 3.0, 1.0])
    dec = fast_resource_rule(
        inst, alpha, np.array([0, 1, 0, 1]), env.unwrapped.config_in_force.weights
    )
    params = eng.parameters()
    before = [p.detach().clone() for p in params]
    # reference: the same minibatches (same RNG state) through the unsplit model
    state = (eng.rng.bit_generator.state, eng.cursor.copy(), [p.copy() for p in eng.perm])
    grads = [torch.zeros_like(p) for p in params]
    losses = []
    for u in range(4):
        batch = eng.make_batch(eng.data.train, eng._next_indices(u), int(inst.tokens[u]))
        loss = torch.nn.functional.cross_entropy(
            eng.logits(eng.split.full_forward(batch)), batch["labels"]
        )
        losses.append(loss.item())
        for g, gi in zip(grads, torch.autograd.grad(loss, params)):
            g += gi / 4
    eng.rng.bit_generator.state, eng.cursor, eng.perm = state[0], state[1], state[2]
    info = eng.run_round(inst, dec)
    np.testing.assert_allclose(info["user_loss"], losses, rtol=0, atol=1e-12)
    lr = eng.training.lr
    for p, p0, g in zip(params, before, grads):
        assert torch.max(torch.abs(p.detach() - (p0 - lr * g))).item() <= 1e-12


def test_loss_falls_over_twenty_rounds(env):
    """20 rounds on the synthetic task: held-out loss and minibatch loss both fall."""
    from edgeft.envs.mec.actions import decision_to_fractions
    from edgeft.envs.mec.resources import fast_resource_rule

    eng = env.unwrapped._real
    obs, _ = env.reset(seed=1)
    start = eng.evaluate()
    weights = env.unwrapped.config_in_force.weights
    losses = []
    for _ in range(20):  # the unwrapped env keeps stepping past its episode length
        inst = env.unwrapped.instance_of(obs)
        dec = fast_resource_rule(
            inst, np.array([1.0, 2.0, 3.0, 2.0]), np.array([0, 1, 0, 1]), weights
        )
        obs, _, _, _, info = env.unwrapped.step(decision_to_fractions(inst, dec))
        losses.append(info["loss"])
    end = eng.evaluate()
    assert eng.round == 20
    assert end["test_loss"] < start["test_loss"] - 0.02, (start, end)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.01, losses
