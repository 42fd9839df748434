"""``edgeft/FedLoRAScheduling-v0``: device scheduling and bandwidth allocation for federated
split-LoRA fine-tuning over a wireless uplink (FT paper)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import gymnasium as gym
import numpy as np
from edgeft.envs.common import build_config
from edgeft.envs.engines import real_engine
from edgeft.envs.fedlora import checkpoint, dynamics
from edgeft.envs.fedlora.actions import action_space
from edgeft.envs.fedlora.config import PRESETS, FedLoRAConfig
from edgeft.envs.fedlora.generator import (
    CorrelatedChannel,
    FadingBlocks,
    initial_state,
    start_channel,
)
from edgeft.envs.fedlora.observation import (
    BITS_UNIT,
    FedLoRAObservation,
    decode_observation,
    encode_observation,
    observation_space,
)
from edgeft.envs.fedlora.trace_channel import TraceChannel
from edgeft.envs.fedlora.types import STATE_FORMAT, State


class FedLoRASchedulingEnv(gym.Env):
    """Federated split-LoRA fine-tuning over a wireless uplink, one round per step.

    ## Description
    K devices fine-tune a foundation model with a server by split federated LoRA (FT paper): each
    round the scheduled devices send embeddings up, receive features, and send feature gradients
    up; the server averages the LoRA gradient over them (FT eqs. 2-4). The uplink is FDMA over B Hz
    with block Rayleigh fading, i.i.d. from round to round by default (FT II.B) or, with
    ``fading_correlation`` / ``mobility_speed_mps``, AR(1)-correlated over rounds and with
    devices moving in the cell (Gauss-Markov), so the round's delay is set by the slowest
    scheduled device (eq. 7). Scheduling more devices speeds learning up (FT Theorem 1) but costs
    delay; the long-term average delay must stay within D-bar (eq. 8), tracked by the virtual
    queue of eq. 18.

    ## Action space (``action_mode``)
    | mode         | space                 | meaning                                               |
    |--------------|-----------------------|-------------------------------------------------------|
    | "bandwidth"  | Box(0, 1, (K,), f64)  | bandwidth share per device; 0 = not scheduled         |
    | "count"      | Discrete(K + 1)       | schedule the n strongest devices, min-max-delay split |
    | "subset"     | MultiBinary(K)        | schedule these devices, min-max-delay split           |
    | "score"      | Box(-1, 1, (K,))      | scheduled iff score > 0, min-max-delay split (SAC/TD3)|
    | "allowance"  | Box(-1, 1, (1,))      | allowance 0-4 D-bar: the longest prefix that fits it  |

    "bandwidth" expresses every reference policy's decision exactly. Projection (reported as
    ``info["action_projected"]``): shares in [0, 1] are divided by their sum if it exceeds 1
    (leftover bandwidth stays unused); round-off beyond the bounds (up to
    ``edgeft.envs.common.ACTION_TOLERANCE``) is clipped. Everything else that is not an element
    of the action space raises ``ValueError`` naming the allowed values: a wrong shape (a (K, 1)
    array for K devices included), NaN/inf, a complex, object or string array, a share outside
    [0, 1] or a score outside [-1, 1], a count that is not an integer in [0, K] (``step(99)``,
    ``step(-1)``), a subset entry other than 0 or 1 (0.5, -1, 2). ``count`` mode accepts a scalar
    or a one-element array.

    ## Observation space
    Box(-inf, inf, (3K + 3,), float64): channel gains in dB, bits per device (Mbit), rounds since
    each device was last scheduled (/T), the delay queue q = D-hat / D-bar, the round (/T) and the
    current loss. Lossless: ``env.unwrapped.decode_observation(obs)`` (or
    ``edgeft.envs.fedlora.observation.decode_observation(obs, config)``) returns the exact state
    the env computes with; ``observation.observation_layout(config)`` names each block's slice.
    With correlated channels the observation carries this round's gains (the CSI a server
    measures); the fading's phase, the devices' positions and velocities stay hidden state (as
    the surrogate's per-device heads), so past gains help to predict the next ones.

    ## Reward (``reward``)
    - "progress-budget" (default): ``progress_scale * (loss_before - loss_after) / (L0 - L*) -
      delay_penalty * (max(0, S_t) - max(0, S_{t-1}))``, ``S_t`` the running sum of
      ``D/D-bar - 1``: the penalties of an episode add up to ``delay_penalty * max(0, S_T)``, so
      rounds under the budget pay for rounds over it (the time-average budget).
    - "progress": the same progress minus ``delay_penalty * max(0, D/D-bar - 1)`` every round
      (a per-round budget).
    - "drift-plus-penalty": N - zeta [q x + (x - 1)^2 / 2], x = D / D-bar (corrected Lemma 2).
    - "drift-plus-penalty-paper": N - zeta q x (the paper's P1).

    The constrained-RL cost is ``info["cost"] = D / D-bar``; the constraint is mean cost <= 1.

    ## Starting state
    Device positions uniform in the cell disc (fixed for the episode unless
    ``mobility_speed_mps > 0``), fresh fading (with correlated channels: fading and velocities
    from their stationary laws), q = 0, the surrogate's initial loss (real mode: a freshly
    initialised LoRA model and task heads).

    ## Episode end
    No termination; truncation after ``episode_rounds`` steps.

    ## Info
    ``channel_gain`` (|h_k|^2 used this round, K), ``scheduled`` (bool, K), ``bandwidth`` (Hz, K),
    ``device_delay`` (s, K; 0 off schedule), ``delay`` (s), ``delay_budget`` (s), ``delay_ratio``,
    ``delay_queue`` (q after the round), ``cost``, ``delay_excess``, ``num_scheduled``,
    ``bits`` (K), ``loss``, ``accuracy``, ``action_projected``. In real mode ``loss`` (also the
    observation's loss and the progress reward's) is the latest global test loss of FT eq. (1),
    the quantity the calibrated surrogate models, measured at reset and on evaluation rounds;
    real mode adds ``train_loss`` (mean minibatch loss of the scheduled devices, NaN if none),
    ``device_loss`` and, on evaluation rounds (every ``training.eval_every`` rounds and the
    last), ``test_loss`` and ``test_accuracy``; its ``accuracy`` is the latest test accuracy (the
    first is measured at reset).

    ## Arguments
    ``gym.make("edgeft/FedLoRAScheduling-v0", config=FedLoRAConfig(...) or dict, **overrides)``;
    see :class:`~edgeft.envs.fedlora.config.FedLoRAConfig` for every field. ``preset="paper"``
    gives FT Section V.A. ``env.config`` stays the config as given; in real mode the message
    size and, unless ``delay_budget`` is set, D-bar follow the model, and the env's
    ``config_in_force`` (read it as ``edgeft.envs.common.config_in_force(env)``) holds them.

    ## State and checkpoints
    The env steps a typed :class:`~edgeft.envs.fedlora.types.State` with the one pure step
    ``dynamics.step`` that the vector env also uses (``env.unwrapped.state`` is a copy).
    ``save_checkpoint`` / ``load_checkpoint`` store that State, the pre-drawn fading, the RNG and
    the learner, with a format version (:data:`~edgeft.envs.fedlora.types.STATE_FORMAT`);
    checkpoints of the first release (format 0) are converted on load, unknown formats are refused
    naming the version.

    ## Version history
    - v0: initial release. Before release, the default surrogate constants became the shipped
      calibration (``edgeft calibrate``; that file is kept as
      ``calibration/v2-synthetic.json``) instead of built-in values, and the surrogate gained
      the ``head_share`` and ``onset`` constants.
      Then out-of-space ``count`` and ``subset`` actions raise instead of being clipped /
      thresholded, and ``training`` without ``mode="real"`` raises; valid actions give the same
      results as before.
    - Surrogate v3 (state format 2): the default surrogate is the v3 calibration of ``data``
      (``envs/fedlora/calibration/iid.json`` or ``dirichlet.json``: a shared encoder gap with FT
      Theorem 1's stationary term and per-device heads, fitted to real MiniLM runs on the tweets
      task), and the default episode is 100 rounds (the calibrated horizon; it was 200). The
      version-2 constants stay reachable as ``surrogate="v2-synthetic"``; checkpoints of
      formats 0 and 1 load and continue with them.
    - Correlated channels (opt-in, id unchanged): ``fading_correlation`` (AR(1) Rayleigh
      fading), ``mobility_speed_mps``, ``mobility_memory``, ``round_duration_s`` (Gauss-Markov
      mobility in the cell), with the MEC env's implementation (``edgeft.envs.channels``). Their
      defaults (0, 0) keep every episode bit for bit as before (the same i.i.d. blocks and
      draws); a checkpoint of a correlated episode holds the channel's Markov state.
    - 3GPP channels (opt-in, id unchanged): ``channel="3gpp-umi"`` replays the shipped sionna
      TR 38.901 UMi trace (``edgeft.envs.fedlora.trace_channel``); the default ``"rayleigh"``
      keeps every episode bit for bit; a checkpoint holds the trace position.
    - Surrogate v4 (opt-in, id unchanged): ``surrogate="iid-v4"`` (or constants with
      ``drift_rate``, ``settle_power``, ``settle_cap``) adds forgetting in rounds with few
      devices; the default stays the v3 calibration of ``data``, every episode bit for bit.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        config: FedLoRAConfig | dict | None = None,
        *,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        self.config = build_config(FedLoRAConfig, config, PRESETS, **overrides)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or "
                f"None, got {render_mode!r}"
            )
        self.render_mode = render_mode
        self._viewer: Any = None
        self._last_info: dict[str, Any] = {}
        cfg = self.config
        self.action_space = action_space(cfg)
        self.observation_space = observation_space(cfg)
        self._params = cfg.surrogate
        self._learner = None
        self._in_force = cfg
        learn: dynamics.Learn = dynamics.SurrogateLearning(cfg)
        if cfg.mode == "real":
            self._learner = real_engine("fedlora", cfg)
            learn = self._real_round
            if cfg.delay_budget is None:
                # D-bar follows the real message size: per-bit budget x expected bits per device
                # and round (derived, read-only: config_in_force; the user's config is kept)
                nominal = self._learner.nominal_bits()
                self._in_force = dataclasses.replace(
                    cfg, delay_budget=cfg.delay_budget_per_bit * nominal, bits_per_round=nominal
                )
        self._budget = self._in_force.budget_s
        self._step_params = dynamics.Params(
            cfg, self._budget, self._params.initial_loss - self._params.loss_floor, learn
        )
        self._state: State | None = None
        self._fading: FadingBlocks | CorrelatedChannel | TraceChannel | None = None
        self._obs_buf = np.empty(cfg.obs_size)

    # ------------------------------------------------------------------ derived, read-only
    @property
    def config_in_force(self) -> FedLoRAConfig:
        """The config the env runs with: ``config`` with what real mode measures filled in
        (``bits_per_round``: the learner's expected bits per device and round; ``delay_budget``:
        D-bar = per-bit budget x those bits, unless the user set it). Surrogate mode: ``config``.
        Read it through ``edgeft.envs.common.config_in_force(env)``."""
        return self._in_force

    @property
    def budget(self) -> float:
        """D-bar (s/round) in force (``config_in_force.budget_s``)."""
        return self._budget

    @property
    def state(self) -> State:
        """The typed state of the current round (a copy)."""
        if self._state is None:
            raise RuntimeError("call reset() before reading the state")
        return self._state.copy()

    def decode_observation(self, obs: np.ndarray) -> FedLoRAObservation:
        """Typed decoding of an observation (or a batch) of this env."""
        return decode_observation(obs, self.config)

    # ------------------------------------------------------------------ helpers
    def _draw_round(self) -> None:
        """Next round's fading (and, in real mode, message sizes) into the state."""
        s, fading, rng = self._state, self._fading, self._np_random
        assert s is not None and fading is not None and rng is not None  # set by reset()
        s.gain_db, s.gain, s.snr = fading.next(rng)
        if self._learner is not None:
            s.set_bits(np.asarray(self._learner.draw_round(), dtype=np.float64) / BITS_UNIT)

    def _obs(self) -> np.ndarray:
        s = self._state
        assert s is not None
        return encode_observation(
            s.gain_db,
            s.bits_mbit,
            s.age,
            s.queue,
            s.t,
            s.loss,
            self.config.episode_rounds,
            out=self._obs_buf,
        ).copy()

    def _real_round(
        self, n: Any, scheduled: np.ndarray, state: State, rng: np.random.Generator
    ) -> tuple[float, float, dict[str, Any]]:
        """Real mode's learning step: one training round; the loss is the latest global test
        loss (evaluated every ``eval_every`` rounds and at the end)."""
        learner = self._learner
        assert learner is not None
        out = learner.run_round(scheduled)
        extra: dict[str, Any] = {
            "train_loss": float(out["loss"]),
            "device_loss": np.asarray(out["device_loss"], dtype=np.float64),
        }
        loss, accuracy = state.loss, state.accuracy
        t_next = state.t + 1
        if t_next % learner.config.eval_every == 0 or t_next >= self.config.episode_rounds:
            ev = learner.evaluate()
            loss, accuracy = float(ev["test_loss"]), float(ev["test_accuracy"])
            extra["test_loss"], extra["test_accuracy"] = loss, accuracy
        return loss, accuracy, extra

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        cfg = self.config
        self._fading = start_channel(self.np_random, cfg)
        self._state = initial_state(cfg)
        if self._learner is not None:
            self._learner.reset(int(self.np_random.integers(2**31 - 1)))
            ev = self._learner.evaluate()
            self._state.accuracy = float(ev["test_accuracy"])
            self._state.loss = float(ev["test_loss"])  # real mode: global test loss (eq. 1)
        self._draw_round()
        self._last_info = {}
        return self._obs(), dynamics.reset_info(self._step_params, self._state)

    def step(self, action):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        params = self._step_params
        decision = dynamics.decide(params, action, self._state)
        self._state, reward, info = dynamics.step(params, self._state, decision, self._np_random)
        self._last_info = info
        truncated = self._state.t >= self.config.episode_rounds
        self._draw_round()
        return self._obs(), float(reward), False, truncated, info

    def render(self) -> np.ndarray | None:
        """``render_mode="rgb_array"``: a picture of the round just played (H x W x 3 uint8:
        the devices on the cell, who is scheduled and their bandwidth shares, the delay against
        the budget, the queue and the loss; ``edgeft.envs.fedlora.viewer``)."""
        if self.render_mode != "rgb_array" or self._state is None:
            return None
        from edgeft.envs.fedlora.viewer import Viewer, device_positions

        if self._viewer is None:
            self._viewer = Viewer(self._in_force)
        return self._viewer.render(
            self._state, self._last_info, positions=device_positions(self.config, self._fading)
        )

    def close(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
        super().close()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this episode exactly: the typed state and the channel
        process (format :data:`~edgeft.envs.fedlora.types.STATE_FORMAT`): the fading drawn ahead
        (i.i.d. blocks) or, with ``correlated_channel``, the Markov state (positions,
        velocities, fading h); the RNG; the learner."""
        if self._state is None or self._fading is None:
            raise RuntimeError("call reset() before state_dict()")
        return {
            "format": STATE_FORMAT,
            "config": self.config,
            "state": self._state.copy(),
            "fading": self._fading.copy(),
            "rng": self.np_random.bit_generator.state,
            "learner": None if self._learner is None else self._learner.state_dict(),
        }

    def load_state_dict(self, data: dict[str, Any]) -> np.ndarray:
        """Restore :meth:`state_dict` output (or a checkpoint of the first release, format 0);
        returns the current observation.

        Raises:
            ValueError: an unknown format version, or a checkpoint of an env with another config.
        """
        fmt = data.get("format", 0)
        if fmt not in (0, 1, STATE_FORMAT):
            raise ValueError(
                f"checkpoint format {fmt!r} is not supported by this version of edgeft (it reads "
                f"formats 0 to {STATE_FORMAT}); load it with the edgeft version that wrote it"
            )
        if fmt == 0:
            state, fading, saved = _from_format0(data, self.config)
            # the first release wrote real mode's measured values into the config it saved
            mine = self._in_force
        else:
            if fmt == 1:  # written before the per-device heads: zero head gaps (version-2 model)
                _add_heads(data["state"], data["config"].num_devices)
            state, fading, saved, mine = (
                data["state"].copy(),
                data["fading"],
                data["config"],
                self.config,
            )
        if _normalised(saved) != mine:
            raise ValueError(
                "checkpoint was written by an env with a different config; build the "
                "env with the checkpoint's config (data['config'])"
            )
        if self._state is None:
            self.reset()
        self._state, self._fading = state, fading.copy()
        self.np_random.bit_generator.state = data["rng"]
        if self._learner is not None:
            self._learner.load_state_dict(data["learner"])
        return self._obs()

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (an existing file is replaced only
        once the new one is complete), without pickle (``edgeft.envs.fedlora.checkpoint``:
        JSON, npz arrays and, in real mode, the learner's tensors)."""
        checkpoint.write(path, self.state_dict())

    def load_checkpoint(self, path: str | os.PathLike, *, trust_pickle: bool = False) -> np.ndarray:
        """Restore a checkpoint written by :meth:`save_checkpoint`; returns the observation.

        Reading it runs no code. A checkpoint of an earlier release is a pickle file and is
        refused unless ``trust_pickle=True`` (or ``EDGEFT_TRUST_PICKLE=1``): only for files
        from a source you trust.
        """
        return self.load_state_dict(checkpoint.read(path, self.config, trust_pickle=trust_pickle))


def _normalised(config: FedLoRAConfig) -> FedLoRAConfig:
    """A config from a checkpoint, rebuilt through validation (a first-release checkpoint holds
    ``training`` as the dict the user passed)."""
    return FedLoRAConfig(
        **{f.name: getattr(config, f.name) for f in dataclasses.fields(FedLoRAConfig)}
    )


def _add_heads(state: State, num_devices: int) -> None:
    """Fill the fields a State unpickled from format 1 lacks (unset slots): zero head gaps and no
    shared gap (the surrogates of those releases had no per-device part, so their loss continues
    unchanged) and, for the running delay excess, the queue (>= it; not recorded then)."""
    defaults = {
        "heads": lambda: np.zeros(np.shape(state.age)[:-1] + (num_devices,)),
        "shared": lambda: float("nan"),
        "excess_sum": lambda: state.queue,
    }
    for name, default in defaults.items():
        if getattr(state, name, None) is None:
            setattr(state, name, default())


def _from_format0(
    data: dict[str, Any], config: FedLoRAConfig
) -> tuple[State, FadingBlocks, FedLoRAConfig]:
    """(state, fading, config) of a format-0 checkpoint (the first release's dict of state and
    caches)."""
    s = data["state"]
    state = State(
        gain_db=s["gain_db"],
        gain=s["gain"],
        snr=s["snr"],
        bits_mbit=s["bits_mbit"],
        bits=s["bits"],
        bits_ln2=s["bits_ln2"],
        age=s["age"],
        queue=s["queue"],
        t=s["t"],
        loss=s["loss"],
        accuracy=s.get("accuracy", float("nan")),
        heads=np.zeros(np.shape(s["age"])),
        shared=float("nan"),
        excess_sum=s["queue"],
    ).copy()
    db = s["block_db"]
    fading = FadingBlocks(
        mean_db=s["mean_db"].copy(),
        noise_psd=config.noise_psd,
        fade=db - s["mean_db"],
        db=db.copy(),
        gain=s["block_gain"].copy(),
        snr=s.get("block_snr", s["block_gain"] / config.noise_psd).copy(),
        pos=s["block_pos"],
    )
    return state, fading, data["config"]
