"""``edgeft/MECOffloading-v0``: split LLM fine-tuning between mobile users and edge servers."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from edgeft.envs.common import build_config
from edgeft.envs.engines import real_engine
from edgeft.envs.mec import actions as A
from edgeft.envs.mec import dynamics as D
from edgeft.envs.mec import generator as G
from edgeft.envs.mec import observation as O
from edgeft.envs.mec.config import PRESETS, MECConfig
from edgeft.envs.mec.types import MECDecision, MECInstance, MECState, instance_from_state
from gymnasium import spaces


class MECOffloadingEnv(gym.Env):
    """Resource allocation for split LLM fine-tuning in mobile edge computing (MEC paper).

    ## Description
    N mobile users fine-tune the same Upsilon-layer transformer together with M edge servers
    (Liu & Zhao, *Resource Allocation for Stable LLM Training in Mobile Edge Computing*,
    MobiHoc 2024). Each round (one training iteration of every user), user n trains the first
    alpha_n layers on its device, uploads the cut-layer activations s(d_n) over an FDMA uplink to
    one edge server, which trains the remaining Upsilon - alpha_n layers. The agent decides, per
    user: alpha_n, the server, the transmit power, the bandwidth share of that server's band, the
    device GPU frequency and the share of the server's GPU frequency. The per-round cost is the
    paper's weighted objective (P2) with the corrections of docs/corrections.md: energy, delay
    (including the upload delay s/r the paper omits) and the stability bound
    2 L^2 / (k_n (1 - alpha_n / Upsilon)), each weight normalised by its value at a reference
    point.

    Unlike the paper's one-shot problem this is an MDP: users move (Gauss-Markov mobility),
    small-scale fading is AR(1)-correlated from round to round, token lengths d_n are drawn anew
    each round, and each user has a device-energy budget per round whose overshoot accumulates
    in a virtual queue Q_n(t+1) = max(0, Q_n(t) + e_n(t) - e_bar_n) that is part of the
    observation.

    ## Action space (``action_mode``)
    | mode | space | decision |
    |---|---|---|
    | ``"full"`` | Box (N, 6) float64 | per user [alpha, server, p/p_max, b share, f/f_max, |
    |            |                    | f_edge share]: every reference policy's decision exactly |
    | ``"discrete"`` | MultiDiscrete | [alpha - 1] * N + [server] * N; power, bandwidth and |
    |                |               | frequencies that minimise the round's cost for them |
    |                |               | (``resources.fast_resource_rule``, exact, O(N) numpy) |
    | ``"discrete-priced"`` | MultiDiscrete | the same; the rule also prices each user's device |
    |                       |               | energy with its energy-budget queue (greedy-dpp's |
    |                       |               | price), so power and frequencies follow the budgets |
    | ``"box"`` | Box [-1, 1]^(6N) float32 | the six decisions affinely scaled, bandwidth and GPU |
    |           |                          | shares normalised per server |

    Projection (documented in ``edgeft.envs.mec.actions``): within the space, alpha and server
    are rounded, fractions raised to the 1e-3 floor, and per-server shares that sum to more than
    1 scaled down proportionally. What the projection changed is in ``info["projection"]``
    (largest change per column) and ``info["action_projected"]`` (the key FedLoRA uses). Actions
    outside the space (wrong shape, NaN/inf, entries outside the bounds beyond round-off,
    non-integers in discrete mode, complex or object arrays) raise ``ValueError``.

    ## Observation space
    Box(-inf, inf, (obs_size,), float64): the Markov state written out (layout:
    ``observation.observation_layout``, the only place that knows the offsets): round index;
    user positions and velocities (m); server positions; real and imaginary fading (N, M);
    token lengths; per-user p_max (W), f_max (Hz), cores, FLOP/cycle/core, samples k_n, energy
    budget per round (J) and queue (J); per-server cores, FLOP/cycle/core, f_max (Hz), b_max
    (Hz); then two derived features: gains g_nm in dB and queues in units of the per-round
    budget. ``env.unwrapped.decode_observation(obs)`` returns
    the typed :class:`~edgeft.envs.mec.types.MECState`, and
    ``env.unwrapped.instance_of(obs)`` the round's :class:`~edgeft.envs.mec.types.MECInstance`:
    analytical policies act on the observation alone.

    ## Rewards
    ``reward = -(objective + energy_penalty * mean_n (Q_n(t+1) - Q_n(t)) / e_bar_n)``, where
    ``objective`` is the weighted objective of the round (``reward.weighted_cost``; one pure step
    ``dynamics.step`` serves this env and the vector env ``vector.MECVectorEnv``). The queue
    term telescopes: over an episode it adds ``-energy_penalty * mean_n Q_n(T) / e_bar_n``,
    the budget overshoot in per-round budgets.

    ## Starting state
    Servers and users uniform in an ``area_m`` square (users at least ``min_distance_m`` from
    every server), device and server parameters drawn per episode as in MEC Section 5 (with
    D^U = 512 FLOP/cycle/core by default), Rayleigh fading, empty queues.

    ## Episode end
    Never terminates; truncates after ``episode_rounds`` steps.

    ## Constraint cost (the safe-RL convention: safety-gymnasium, FSRL, OmniSafe)
    The constrained MDP: minimise the time-average ``objective`` subject to each user's
    time-average device energy staying within its budget, (1/T) sum_t e_n(t) <= e_bar_n.
    ``info["costs"]`` (N,) is each user's device energy in budgets this round, e_n(t) / e_bar_n
    (the per-user constraints: episode mean <= 1); ``info["cost"]`` is their mean over users,
    whose limit is 1 per step and T per episode (an episode with every user within budget has
    mean cost <= 1; the converse needs ``costs``). Deep fades make a round's ratio large (the
    device pays ~s(d) sigma^2 ln2 / g to upload its activations whatever it decides), so
    ``info["cost_bounded"] = mean_n min(e_n / e_bar_n, 4)`` (``dynamics.COST_CAP``) is offered
    as a bounded learning signal; ``cost`` and ``costs`` stay raw. ``budget_overshoot`` is the
    round's device energy above budget summed over users (J).

    ## Info
    ``alpha``, ``server``, ``power`` (W), ``bandwidth`` (Hz), ``freq_user`` (Hz), ``freq_edge``
    (Hz) as applied after projection; per-user ``energy`` (J, device + edge), ``device_energy``
    (J), ``delay`` (s), ``stability``; ``objective`` (the round's weighted objective);
    ``cost``, ``costs``, ``cost_bounded`` (above); ``energy_total``,
    ``delay_mean``, ``stability_mean``; ``energy_queue`` (J, after the update),
    ``queue_in_budgets``, ``budget_overshoot`` (sum of device energy above budget this round,
    J); ``violations`` (largest violation of (9a)-(9g), all 0 after projection);
    ``action_projected`` and ``projection``. Real mode adds what the real round measured:
    ``loss`` (mean over users), ``user_loss`` (N,), ``accuracy``, ``user_accuracy`` (N,)
    (minibatch cross-entropy and accuracy before the update), ``bits`` (N,) (bits of the cut
    activations each user actually sent, = s(d_n)), ``bits_real_tokens`` (N,) (their
    non-padding part) and ``train_round``.

    ## Real mode
    ``mode="real"`` runs every step as one round of real split LoRA fine-tuning
    (``edgeft.training.mec.MECRealEngine``): one shared pretrained BERT-family encoder with LoRA
    adapters and a shared head (``training=``, default the offline ``minilm`` on the synthetic
    text task); user n's minibatch, cut or padded to its d_n tokens, runs the embeddings and
    layers [0, alpha_n) on the device side and layers [alpha_n, Upsilon), pooler and head on
    the server side, with a real split backward; one SGD step per round on the LoRA (and head)
    gradient averaged over users. The cost model then describes that model: Upsilon, h, B and
    the bits per element come from the model and ``training`` (see ``MECConfig.training``),
    d_n is drawn from the token range clipped to the data's longest sequence. ``env.config``
    stays the config you passed; the values in force are the read-only
    ``env.unwrapped.config_in_force`` (read them with ``edgeft.envs.common.config_in_force``:
    policies built with ``edgeft.make_policy(name, env)`` do). The system dynamics and the
    cost are those of the surrogate mode; equal seeds give equal real trajectories.

    ## Arguments
    ``gym.make("edgeft/MECOffloading-v0", config=MECConfig(...) or dict, **field_overrides)``;
    see :class:`~edgeft.envs.mec.config.MECConfig` (``preset="paper"`` for MEC Section 5
    literally: D^U = 1 and no upload-delay term).

    ## Vector env
    ``gym.make_vec("edgeft/MECOffloading-v0", num_envs=8)`` gives ``vector.MECVectorEnv``:
    copies stepped as one numpy batch with the same pure step (copy i bit for bit this env),
    Gymnasium's next-step autoreset, copy i seeded like this env with ``seed + i`` (surrogate
    mode only).

    ## Version history
    * v0: initial version. Before release, the discrete mode's resource rule became exact
      (it was a closed-form heuristic ~1-2% above the optimum, still
      ``actions.heuristic_resource_rule``).
    * v0, suites v3: ``info["cost"]`` is the constraint cost (mean device energy in budgets;
      per-user values in ``info["costs"]``, bounded version ``info["cost_bounded"]``); the
      weighted objective moved to ``info["objective"]``. Dynamics, rewards and every other
      info key unchanged (the v2 suites' episodes are the same).
    * v0: ``action_mode="discrete-priced"``, a new version of the discrete mode whose resource
      rule prices device energy with the energy-budget queues (``actions.discrete_resources``);
      ``"discrete"`` unchanged.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        config: MECConfig | dict | None = None,
        *,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        self.config: MECConfig = build_config(MECConfig, config, PRESETS, **overrides)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, "
                f"got {render_mode!r}"
            )
        self.render_mode = render_mode
        self._real = real_engine("mec", self.config) if self.config.mode == "real" else None
        # Upsilon, h, B, bits and the token range of the real model (real mode); self.config
        # stays the user's config
        self._in_force: MECConfig = self._real.env_config if self._real is not None else self.config
        size = O.observation_size(self._in_force)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float64)
        self.action_space = A.action_space(self._in_force)
        self._state: MECState | None = None
        self._last_info: dict[str, Any] = {}
        self._viewer: Any = None

    @property
    def config_in_force(self) -> MECConfig:
        """The config the env runs with (read-only): ``config`` itself in surrogate mode; in
        real mode ``config`` with Upsilon, h, B, the bits per element and the token range of the
        real model and training config (``edgeft.training.mec.MECRealEngine.env_config``)."""
        return self._in_force

    # ------------------------------------------------------------------ typed views
    def decode_observation(self, obs: np.ndarray) -> MECState:
        """The typed state an observation encodes (exactly the numbers the env uses); a batch
        of observations (leading axes) gives a batched state."""
        return O.decode_observation(obs, self._in_force)

    def instance_of(self, obs: np.ndarray) -> MECInstance:
        """The round's cost-model instance from one observation."""
        return instance_from_state(
            self._in_force, O.decode_observation(np.ravel(obs), self._in_force)
        )

    @property
    def state(self) -> MECState:
        """The current Markov state (after ``reset``)."""
        if self._state is None:
            raise RuntimeError("call reset() before reading the state")
        return self._state

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = G.sample_initial_state(self._in_force, self.np_random)
        if self._real is not None:  # fresh LoRA, head, optimiser and data shards
            self._real.seed(seed if seed is not None else int(self.np_random.integers(2**31 - 1)))
        self._last_info = {}
        return (
            O.encode_observation(self._state, self._in_force),
            D.reset_info(D.Params(self._in_force), self._state),
        )

    def action_to_decision(
        self, action: Any, inst: MECInstance | None = None
    ) -> tuple[MECDecision, dict[str, float]]:
        """Validate, project and map an action of this env's mode to a decision (SI units)."""
        if inst is None:
            inst = instance_from_state(self._in_force, self.state)
        return A.action_to_decision(self._in_force, action, inst)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        cfg = self._in_force
        params = D.Params(cfg)
        decided = D.decide(params, action, self.state)
        nxt, reward, info = D.step(params, self.state, decided, self.np_random)
        if self._real is not None:
            info.update(self._real.run_round(decided.instance, decided.decision))
        self._state = nxt
        truncated = nxt.round_index >= cfg.episode_rounds
        self._last_info = info
        if self.render_mode == "ansi":
            info["render"] = self.render()
        return O.encode_observation(nxt, cfg), reward, False, bool(truncated), info

    def render(self) -> str | np.ndarray | None:
        """``"ansi"``: the last round's cost, mean delay, energy and the alpha histogram as
        text; ``"rgb_array"``: a picture of it (H x W x 3 uint8: users and servers in the area,
        the associations, each user's layers on the device, the energy queues;
        ``edgeft.envs.mec.viewer``)."""
        if self.render_mode == "rgb_array" and self._state is not None:
            from edgeft.envs.mec.viewer import Viewer

            if self._viewer is None:
                self._viewer = Viewer(self._in_force)
            return self._viewer.render(self._state, self._last_info)
        if self.render_mode != "ansi":
            return None
        if not self._last_info:
            return "MECOffloading: no round played yet"
        i = self._last_info
        hist = np.bincount(
            np.asarray(i["alpha"], dtype=np.int64), minlength=self._in_force.num_layers
        )[1:]
        return (
            f"round {i['round']}: cost {i['objective']:.4f}  delay {i['delay_mean']:.1f} s  "
            f"energy {i['energy_total']:.1f} J  alpha histogram {hist.tolist()}"
        )

    def close(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
        super().close()
