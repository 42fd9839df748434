"""``edgeft.tune_references``: a grid point's options reach the policy, and only the policy."""

from __future__ import annotations

import pytest

from edgeft import tune_references


def test_options_reach_the_policy_with_each_training_seed(monkeypatch):
    played = []

    def fake_episode(env, policy, seed):
        played.append((policy.zeta0, policy.decay, seed))
        return {"metrics": {"final_loss": float(seed)}}

    monkeypatch.setattr(tune_references, "SEEDS", 3)
    monkeypatch.setattr(tune_references, "play_episode", fake_episode)
    mean = tune_references.mean_final_loss(
        "lyapunov-descending", {"zeta": 3.0, "decay": 0.5}, {"episode_rounds": 5}
    )
    assert played == [(3.0, 0.5, 0), (3.0, 0.5, 1), (3.0, 0.5, 2)]
    assert mean == 1.0


@pytest.mark.parametrize("name", sorted(tune_references.RESERVED_OPTIONS))
def test_an_option_named_like_a_make_policy_argument_is_refused(monkeypatch, name):
    # such an option would be taken by make_policy itself (trust_code: silently dropped;
    # config: the policy built for another config; seed, env: a TypeError), never the policy's
    monkeypatch.setattr(tune_references, "SEEDS", 1)
    with pytest.raises(ValueError, match=name):
        tune_references.mean_final_loss(
            "lyapunov-descending", {"zeta": 1.0, name: 1.0}, {"episode_rounds": 5}
        )
