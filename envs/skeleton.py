"""The skeleton every env family implements: one contract for its dynamics, in its
``dynamics`` module, shared by its single env and its vector env.

A family's ``dynamics`` module provides

* ``Params``: what a step needs besides the state and the decision, fixed for an env's life
  (in the spirit of gymnax's ``EnvParams``): at least the config the env runs with;
* ``decide(params, action, state) -> decision``: the action of the env's action mode,
  validated, projected and mapped to the round's decision in physical units (with the
  projection report); malformed actions raise ``ValueError`` before anything changes;
* ``step(params, state, decision, rng) -> (state, reward, info)``: one round. The info dict is
  built there and nowhere else.

The rule on purity: **a step consumes its state.** It may advance the state it is given in
place (the FedLoRA step does: a copy per step would cost more than the rest of the single env's
bookkeeping) or return a new one (the MEC step does); either way it returns the state after
the round, and callers use that and never the one they passed. Apart from its state argument a
step changes nothing, and all its randomness comes from ``rng`` (the env's generator, or for a
batch an object drawing each copy's numbers from that copy's own generator).

The shells (``env.py``, ``vector.py``) own the generators, the episode's end and the
observation encoding (``observation.py``); both call ``decide`` then ``step``. Both envs offer
``decode_observation(obs)`` (the typed state an observation encodes) and ``config_in_force``.
``tests/structure/test_skeleton_contract.py`` checks each family against this contract.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Params(Protocol):
    """What a step needs besides the state and the decision."""

    config: Any


@runtime_checkable
class Dynamics(Protocol):
    """A family's ``dynamics`` module, as the shells use it."""

    Params: type

    def decide(self, params: Any, action: Any, state: Any) -> Any:
        """The round's decision for ``action`` in ``state`` (validated, projected)."""

    def step(
        self, params: Any, state: Any, decision: Any, rng: Any
    ) -> tuple[Any, Any, dict[str, Any]]:
        """One round: ``(state after it, reward, info)``; consumes ``state``."""


#: the positional parameters of the contract's two functions, in order
DECIDE_ARGS = ("params", "action", "state")
STEP_ARGS = ("params", "state", "decision", "rng")
