"""Behaviour-cloning initialisation of an SB3 policy from a reference policy (DAgger).

``edgeft train --init bc:POLICY`` (``TrainConfig.init = "bc:POLICY"``) runs this before any RL:

1. roll out the training envs (the run's own env config and action mode, no observation
   transform; on an instance distribution, each copy's features for its own scenario, the
   teachers reading the raw observations) for ``episodes`` full episodes per env copy, with
   the teacher acting in the first iteration and the student (deterministic) in the later ones
   (DAgger; the teacher in a share ``student_beta`` of their steps), the teacher labelling
   every visited observation;
2. fit the run's VecNormalize observation statistics to the transformed observations seen so far
   (so the loader's saved-normalisation path applies unchanged);
3. maximise the log-likelihood of the teacher's actions under the SB3 policy's action
   distribution (cross-entropy for Discrete / count mode) on all data gathered so far.

The settings are ``TrainConfig.bc`` (defaults below, tuned values in ``hyperparams.json``).
``teacher_options`` go to ``edgeft.make_policy`` (e.g. ``{"zeta": 30}`` for ``lyapunov``: the
trade-off weight the teacher uses; it is a reward-only field of the env, so it does not have to
match the env the agent is evaluated in): either options for whichever teacher the run clones, or
a mapping from teacher names to their options (``{"lyapunov": {"zeta": 30}}``, the form of the
tuned defaults, so that options tuned for one teacher never reach another;
:func:`options_for`). One line per iteration goes to ``OUT/bc.jsonl`` (its agreements: the share
of actions equal to the teacher's; Box actions within :data:`BOX_AGREEMENT` of the range).

Besides the registered policies, :data:`TEACHERS` holds teachers that exist for cloning only:
``mec-greedy-fast`` acts like ``greedy`` in the MEC env's ``discrete`` mode at ~1% of its
decision time, so thousands of states can be labelled.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.baselines import reference_policy
from edgeft.envs.mec.config import DISCRETE_MODES, MECConfig

#: BC settings and their defaults (``TrainConfig.bc`` overrides them)
BC_DEFAULTS: dict[str, Any] = {
    "teacher_options": {},
    "iterations": 4,  # DAgger iterations (the first one rolls out the teacher)
    "episodes": 1,  # full episodes per env copy and iteration
    "epochs": 20,  # passes over the aggregated data per iteration
    "batch_size": 256,
    "learning_rate": 1e-3,
    "student_beta": 0.0,  # after the first iteration: probability that the teacher acts
    "permute_users": 0,  # MEC: user-permuted copies of every labelled state added to the fit
}


class MECGreedyFastTeacher:
    """``greedy``'s decision in the MEC env's ``discrete`` mode, without a convex solver.

    The association is ``greedy``'s (MEC 5.3, highest available rate); alpha is the integer
    minimiser of the round's cost under the discrete mode's exact resource rule
    (``actions.fast_resource_rule``), by block coordinate descent: resources for the current
    alpha, then each user's exact integer alpha for those resources (closed form, the better
    integer neighbour of ``solver.optimal_alpha``), until alpha repeats (``max_iter`` sweeps,
    default 8). Starting from alpha = 1. On training seeds its (alpha, server) costs the same
    as ``greedy``'s to ~1e-6 relative (alpha may differ by one layer where the cost is flat)
    in ~5 ms instead of ~0.5 s per decision.
    """

    name = "mec-greedy-fast"

    def __init__(self, config: Any, action_mode: str | None = None, max_iter: int = 8) -> None:
        if not isinstance(config, MECConfig) or (action_mode or config.action_mode) != "discrete":
            raise ValueError("mec-greedy-fast teaches the MEC env's discrete action mode only")
        self.config = config
        self.max_iter = int(max_iter)

    def decide(self, obs: np.ndarray) -> Any:
        """The decision (an ``edgeft.envs.mec.types.MECDecision``) for one observation: the
        final alpha and server, with the discrete mode's resources for them."""
        from edgeft.baselines.mec import solver as S
        from edgeft.baselines.mec.policies import best_integer_alpha
        from edgeft.envs.mec.observation import decode_observation
        from edgeft.envs.mec.resources import fast_resource_rule
        from edgeft.envs.mec.types import instance_from_state

        cfg = self.config
        w, ud = cfg.weights, cfg.upload_delay
        inst = instance_from_state(cfg, decode_observation(obs, cfg))
        server = S.greedy_association(inst)
        alpha = np.ones(inst.num_users)
        dec = fast_resource_rule(inst, alpha, server, w, ud)
        for _ in range(self.max_iter):
            new = best_integer_alpha(inst, w, dec, ud)
            if np.array_equal(new, alpha):
                break
            alpha = new
            dec = fast_resource_rule(inst, alpha, server, w, ud)
        return dec

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """SB3's ``predict``: the discrete-mode action(s) of :meth:`decide`'s decision(s)."""
        from edgeft.envs.mec.actions import decision_to_action

        obs = np.asarray(observation, dtype=np.float64)
        if obs.ndim == 2:
            return np.stack([self.predict(o)[0] for o in obs]), state
        return decision_to_action(self.decide(obs), self.config, "discrete"), state


#: teachers for cloning only (not registered policies): name -> class(config, action_mode, **opts)
TEACHERS: dict[str, Any] = {"mec-greedy-fast": MECGreedyFastTeacher}


def make_teacher(name: str, config: Any, **options: Any) -> Any:
    """The teacher ``name``: one of :data:`TEACHERS`, else the reference policy of that name of
    the config's family (``EnvFamily.policies``).

    Raises:
        ValueError: an unknown name (the message lists the teachers and reference policies).
    """
    if name in TEACHERS:
        return TEACHERS[name](config, action_mode=config.action_mode, **options)
    try:
        return reference_policy(name, config, action_mode=config.action_mode, **options)
    except ValueError as err:
        raise ValueError(
            f"unknown teacher {name!r}: neither one of {sorted(TEACHERS)} nor a "
            f"reference policy ({err})"
        ) from err


class ScenarioLabels:
    """Teacher labels and student features for a run on an instance distribution
    (``TrainConfig.scenarios``): every env copy plays its own scenario, so each copy gets a
    teacher and an observation transform built for its current scenario's config, rebuilt
    when a reset draws the next scenario (a teacher such as ``lyapunov-descending`` reads the
    budget, the cell and the data partition from its config).

    ``venv``'s copies (``ScenarioEnv``) may give raw observations (then :meth:`features`
    transforms them and the teachers read them) or features already (a distribution that draws
    K: the raw observations differ in length, so only the features batch; then
    :meth:`features` passes them through and the teachers read each copy's raw observation,
    ``ScenarioEnv.raw_observation``)."""

    def __init__(self, name: str, options: dict[str, Any], transform: str, venv: Any) -> None:
        self.name, self.options, self.transform_name = name, dict(options), transform
        self.venv = venv
        self.transformed = venv.get_attr("transform", indices=[0])[0] is not None
        self._scenarios: list[Any] = [None] * venv.num_envs
        self._teachers: list[Any] = [None] * venv.num_envs
        self._transforms: list[Any] = [None] * venv.num_envs

    def _refresh(self) -> None:
        from edgeft.agents.transforms import get_transform

        for i, scenario in enumerate(self.venv.get_attr("scenario")):
            if scenario is not self._scenarios[i]:
                config = self.venv.get_attr("config", indices=[i])[0]
                self._teachers[i] = make_teacher(self.name, config, **self.options)
                self._transforms[i] = get_transform(self.transform_name, config)
                self._scenarios[i] = scenario

    def features(self, obs: np.ndarray) -> np.ndarray:
        """Each copy's observation through the transform of its scenario (as given when the
        copies transform their observations themselves)."""
        if self.transformed:
            return np.asarray(obs, dtype=np.float64)
        self._refresh()
        return np.concatenate([t(obs[i : i + 1]) for i, t in enumerate(self._transforms)])

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
        """Each copy's teacher action for its observation (SB3's ``predict`` signature)."""
        self._refresh()
        if self.transformed:  # the features are in obs; the teachers read the raw observations
            raw = self.venv.get_attr("raw_observation")
            rows = [np.asarray(r, dtype=np.float64)[None] for r in raw]
        else:
            rows = [obs[i : i + 1] for i in range(len(self._teachers))]
        labels = [
            np.asarray(t.predict(rows[i], deterministic=True)[0])
            for i, t in enumerate(self._teachers)
        ]
        return np.concatenate(labels), None


#: MEC observation sections whose first axis is the user axis (the others: round, servers)
_MEC_USER_SECTIONS = (
    "user_pos",
    "user_vel",
    "fading_re",
    "fading_im",
    "tokens",
    "p_max",
    "f_user_max",
    "cores_user",
    "flops_user",
    "samples",
    "energy_budget",
    "energy_queue",
    "gain_db",
    "queue_in_budgets",
)
_MEC_OTHER_SECTIONS = (
    "round_index",
    "server_pos",
    "cores_edge",
    "flops_edge",
    "f_edge_max",
    "b_max",
)


def _check_permutable(config: Any) -> None:
    from edgeft.envs.mec.observation import observation_layout

    if not isinstance(config, MECConfig) or config.action_mode not in DISCRETE_MODES:
        raise ValueError(
            f"permute_users needs one of the MEC env's discrete action modes {DISCRETE_MODES}"
        )
    unknown = [
        name
        for name, _ in observation_layout(config)
        if name not in _MEC_USER_SECTIONS + _MEC_OTHER_SECTIONS
    ]
    if unknown:
        raise ValueError(f"permute_users does not know the observation section(s) {unknown}")


def permute_users(
    obs: np.ndarray, labels: np.ndarray, config: Any, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """MEC observations and discrete-mode labels with the users reordered (one random
    permutation per row): the same rounds with the users renamed, so the same decisions.

    Users are exchangeable in the MEC env (the cost is a sum over users; the association and
    resource rules treat them alike), so these are valid extra teacher labels. Every
    observation block whose first axis is the user axis is permuted (through the observation
    layout), and each label's alpha and server (through the discrete mode's action mapping).

    Raises:
        ValueError: not the MEC env's discrete mode.
    """
    from edgeft.envs.mec.actions import discrete_action, discrete_to_alpha_server
    from edgeft.envs.mec.observation import observation_layout

    _check_permutable(config)
    n, b = config.num_users, len(obs)
    perm = np.argsort(rng.random((b, n)), axis=1)
    layout = observation_layout(config)
    out = obs.copy()
    sections = layout.sections(out)  # views into out
    for name, block in layout.sections(obs).items():
        if name in _MEC_USER_SECTIONS:
            idx = perm.reshape(perm.shape + (1,) * (block.ndim - 2))
            sections[name][...] = np.take_along_axis(block, idx, axis=1)
    lab = np.empty_like(labels)
    for i, p in enumerate(perm):
        alpha, server = discrete_to_alpha_server(config, labels[i])
        lab[i] = discrete_action(alpha[p], server[p])
    return out, lab


def parse_init(init: str) -> str:
    """The teacher name of ``init = "bc:POLICY"``.

    Raises:
        ValueError: ``init`` is not of that form.
    """
    kind, sep, name = init.partition(":")
    if kind != "bc" or not sep or not name:
        raise ValueError(f"init must be 'bc:POLICY' (e.g. 'bc:lyapunov'), got {init!r}")
    return name


def options_for(teacher_options: dict[str, Any], teacher: str) -> dict[str, Any]:
    """The options of ``teacher`` in a ``teacher_options`` setting: the setting itself when it
    holds options, the entry for ``teacher`` ({} when it has none) when it maps teacher names
    (every key a teacher or reference policy name and every value a dict of options)."""
    from edgeft.baselines.fedlora import REFERENCE_POLICIES as FEDLORA
    from edgeft.baselines.mec import REFERENCE_POLICIES as MEC

    names = set(TEACHERS) | set(FEDLORA) | set(MEC)
    if teacher_options and all(
        k in names and isinstance(v, dict) for k, v in teacher_options.items()
    ):
        return dict(teacher_options.get(teacher, {}))
    return dict(teacher_options)


def bc_settings(bc: dict[str, Any]) -> dict[str, Any]:
    """``BC_DEFAULTS`` updated with ``bc``; unknown keys raise ``ValueError``."""
    unknown = sorted(set(bc) - set(BC_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown bc setting(s) {unknown}; valid: {sorted(BC_DEFAULTS)}")
    return {**BC_DEFAULTS, **bc}


def _features(feats: np.ndarray, vecnorm: Any) -> np.ndarray:
    if vecnorm is None or not vecnorm.norm_obs:
        return feats.astype(np.float32)
    rms = vecnorm.obs_rms
    x = (feats - rms.mean) / np.sqrt(rms.var + vecnorm.epsilon)
    return np.clip(x, -vecnorm.clip_obs, vecnorm.clip_obs).astype(np.float32)


def _student_actions(model: Any, x: np.ndarray) -> np.ndarray:
    """The student's deterministic actions; in a Box space clipped to its bounds, as SB3's
    ``predict`` clips them (a Gaussian policy's mean may lie outside)."""
    import torch
    from gymnasium import spaces

    with torch.no_grad():
        obs = torch.as_tensor(x, device=model.policy.device)
        act = model.policy.get_distribution(obs).get_actions(deterministic=True).cpu().numpy()
    space = model.policy.action_space
    if isinstance(space, spaces.Box) and not getattr(model.policy, "squash_output", False):
        act = np.clip(act, space.low, space.high)
    return act


#: Box actions: a student action counts as agreeing with the teacher's within this share of
#: the space's range (exact equality of floats would never hold)
BOX_AGREEMENT = 0.01


def _agrees(model: Any, student: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Entry-wise agreement of student and teacher actions: equality, or for a Box space a
    difference within :data:`BOX_AGREEMENT` of the space's range."""
    from gymnasium import spaces

    space = model.policy.action_space
    if isinstance(space, spaces.Box):
        tol = BOX_AGREEMENT * (space.high - space.low)
        return np.abs(np.asarray(student, dtype=np.float64) - label) <= tol
    return np.asarray(student == label)


def _fit(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
) -> float:
    """Maximise log pi(y | x) over the policy's parameters; returns the last epoch's mean NLL."""
    import torch
    from gymnasium import spaces

    policy = model.policy
    policy.set_training_mode(True)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    xt = torch.as_tensor(x, device=policy.device)
    yt = torch.as_tensor(y, device=policy.device)
    if isinstance(model.action_space, (spaces.MultiBinary, spaces.Box)):
        yt = yt.float()  # Bernoulli and Gaussian log-likelihoods take float actions
    last = float("nan")
    for _ in range(epochs):
        perm = rng.permutation(len(x))
        total = 0.0
        for i in range(0, len(x), batch_size):
            idx = torch.as_tensor(perm[i : i + batch_size], device=policy.device)
            nll = -policy.get_distribution(xt[idx]).log_prob(yt[idx]).mean()
            opt.zero_grad()
            nll.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            total += float(nll.detach()) * len(idx)
        last = total / len(x)
    policy.set_training_mode(False)
    return last


def behaviour_clone(
    model: Any, vecnorm: Any, cfg: Any, config: Any, out: Path, progress: bool = True
) -> dict[str, Any]:
    """Initialise ``model``'s policy (and ``vecnorm``'s observation statistics) by DAgger.

    Args:
        model: an SB3 on-policy model (PPO/A2C) built on the run's (normalised) vector env.
        vecnorm: the run's ``VecNormalize`` (or None).
        cfg: the run's ``TrainConfig`` (``init``, ``bc``, ``seed``, ``n_envs``, ``obs_transform``).
        config: the run's env config in force (``edgeft.envs.common.config_in_force``).
        out: the run folder (``bc.jsonl`` is written there).

    Returns:
        The last iteration's summary (samples, agreement with the teacher, NLL, teacher/student
        mean action).
    """
    import torch
    from edgeft.agents.transforms import get_transform
    from edgeft.agents.vec import make_vec_env

    if not hasattr(model.policy, "get_distribution"):
        raise ValueError(f"--init bc needs an actor-critic policy (ppo or a2c), not {cfg.algo}")
    teacher_name = parse_init(cfg.init)
    s = bc_settings(cfg.bc)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    raw_cfg = dataclasses.replace(cfg, obs_transform="none", reward_shaping={})
    if getattr(cfg, "scenarios", ""):  # the copies transform (K may differ between them)
        raw_cfg = dataclasses.replace(cfg, reward_shaping={})
    venv = make_vec_env(raw_cfg, config, cfg.seed + 7919)  # its own seeds, not the RL envs'
    if getattr(cfg, "scenarios", ""):  # a teacher and features per copy's scenario
        options = options_for(s["teacher_options"], teacher_name)
        per_copy = ScenarioLabels(teacher_name, options, cfg.obs_transform, venv)
        teacher: Any = per_copy
        transform: Any = per_copy.features
    else:
        teacher = make_teacher(
            teacher_name, config, **options_for(s["teacher_options"], teacher_name)
        )
        transform = get_transform(cfg.obs_transform, config)
    rounds = int(config.episode_rounds)
    feats_all: list[np.ndarray] = []
    labels_all: list[np.ndarray] = []
    obs_all: list[np.ndarray] = []
    copies = int(s["permute_users"])
    if copies:
        _check_permutable(config)
    summary: dict[str, Any] = {}
    obs = venv.reset()
    for it in range(int(s["iterations"])):
        t0 = time.time()
        beta = 1.0 if it == 0 else float(s["student_beta"])
        agree = []
        for _ in range(int(s["episodes"]) * rounds):
            assert isinstance(obs, np.ndarray)  # the envs' observations are Boxes
            feats = transform(obs)
            label, _ = teacher.predict(obs, deterministic=True)
            label = np.asarray(label)
            act = label
            if beta < 1.0:
                student = _student_actions(model, _features(feats, vecnorm))
                agree.append(_agrees(model, student.reshape(label.shape), label))
                use_teacher = rng.random(len(obs)) < beta
                act = np.where(
                    use_teacher.reshape((-1,) + (1,) * (label.ndim - 1)),
                    label,
                    student.reshape(label.shape),
                )
            feats_all.append(feats)
            labels_all.append(label)
            if copies:
                obs_all.append(np.asarray(obs, dtype=np.float64))
            obs, _, _, _ = venv.step(act)
        feats = np.concatenate(feats_all)
        labels = np.concatenate(labels_all)
        if copies:  # fresh permutations every iteration
            raw = np.concatenate(obs_all)
            extra = [permute_users(raw, labels, config, rng) for _ in range(copies)]
            feats = np.concatenate([feats] + [transform(o) for o, _ in extra])
            labels = np.concatenate([labels] + [lab for _, lab in extra])
        if vecnorm is not None and vecnorm.norm_obs:
            vecnorm.obs_rms.mean = feats.mean(axis=0)
            vecnorm.obs_rms.var = feats.var(axis=0)
            vecnorm.obs_rms.count = float(len(feats))
        x = _features(feats, vecnorm)
        nll = _fit(
            model, x, labels, int(s["epochs"]), int(s["batch_size"]), float(s["learning_rate"]), rng
        )
        hit = _agrees(model, _student_actions(model, x), labels).reshape(len(x), -1)
        fit_acc = float(np.mean(np.all(hit, axis=1)))
        summary = {
            "iteration": it,
            "samples": int(len(x)),
            "nll": nll,
            "train_agreement": fit_acc,
            "train_entry_agreement": float(np.mean(hit)),
            "rollout_agreement": float(np.mean(agree)) if agree else None,
            "teacher_mean_action": float(np.mean(labels_all[-1])),
            "wall_s": time.time() - t0,
        }
        with open(out / "bc.jsonl", "a") as fh:
            fh.write(json.dumps(summary) + "\n")
        if progress:
            ra = summary["rollout_agreement"]
            print(
                f"[bc:{teacher_name} {it + 1}/{s['iterations']}] {len(x)} samples, "
                f"nll {nll:.4f}, train agreement {fit_acc:.3f}"
                + (f", rollout agreement {ra:.3f}" if ra is not None else ""),
                flush=True,
            )
    venv.close()
    plot_bc({teacher_name: out}, out / "bc.png")
    return summary


def read_bc_log(folder: str | Path) -> list[dict[str, Any]]:
    """The per-iteration lines of ``FOLDER/bc.jsonl`` ([] when there is none)."""
    path = Path(folder) / "bc.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_bc(runs: dict[str, str | Path], path: str | Path) -> Path:
    """The cloning curves of one or more runs as a PNG: per DAgger iteration, the NLL of the
    teacher's actions under the student (on all data so far) and the student's agreement with
    the teacher, on that data and on the states it visited itself.

    Args:
        runs: label -> run folder (``edgeft train --init bc:... --out``).
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for label, folder in runs.items():
        log = read_bc_log(folder)
        if not log:
            continue
        it = [r["iteration"] + 1 for r in log]
        (line,) = axes[0].plot(it, [r["nll"] for r in log], "o-", ms=3, lw=1, label=label)
        color = line.get_color()
        axes[1].plot(
            it,
            [r["train_agreement"] for r in log],
            "o-",
            ms=3,
            lw=1,
            color=color,
            label=f"{label} (fit data)",
        )
        roll = [
            (i, r["rollout_agreement"])
            for i, r in zip(it, log)
            if r["rollout_agreement"] is not None
        ]
        if roll:
            axes[1].plot(
                *zip(*roll), "s--", ms=3, lw=1, color=color, label=f"{label} (its own states)"
            )
    axes[0].set(xlabel="DAgger iteration", ylabel="NLL of the teacher's actions")
    axes[1].set(xlabel="DAgger iteration", ylabel="agreement with the teacher", ylim=(0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
