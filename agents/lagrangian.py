"""Lagrangian constrained RL on stable-baselines3: ``edgeft train --algo ppo-lag``.

The constrained problem (a CMDP): maximise the expected return of the reward r subject to the
time-average constraint cost meeting a limit d,

    max_pi  E[ sum_t r_t ]    s.t.   J_c(pi) = E[ (1/T) sum_t c_t ] <= d,

is solved through its Lagrangian: the agent maximises the return of ``r_t - lambda c~_t`` while
the multiplier lambda >= 0 follows the measured mean episode cost (dual ascent, or PID
Lagrangian: Stooke, Achiam & Abbeel 2020, "Responsive safety in RL by PID Lagrangian methods").

Everything lives in ``edgeft.agents.vec.VecLagrangian``, an SB3 ``VecEnvWrapper``: it subtracts
``lambda c~_t`` from the reward, records the true mean cost of every finished episode, and updates
lambda whenever ``update_episodes`` episodes have finished (from finished episodes, never from a
rollout's partial ones). An on-policy SB3 algorithm trains on it unchanged (``ppo-lag``,
``a2c-lag``). An off-policy one would keep rewards priced with old multipliers in its replay
buffer for as long as they stay there, so ``sac-lag``, ``td3-lag`` and ``dqn-lag`` use the wrapper
with ``relabel=True``: the reward passes unpriced, each step's priced cost travels in its info,
and ``edgeft.agents.vec.LagrangianReplayBuffer`` stores it beside the reward and returns
``r - lambda c~`` with the multiplier of the moment it samples a batch (what the Lagrangian
with the current lambda says every stored transition is worth).

The cost (:func:`constraint_cost`) is ``info["cost"]``, the safe-RL convention (safety-gymnasium,
FSRL, OmniSafe): FedLoRA, the round's delay over the budget D/D-bar; MEC, the mean over users of
the device energy in per-round budgets. The limit per step is :func:`cost_limit`, the suites'
``cost_limit`` (1 in both families: the time-average delay, or energy, within budget; a
per-episode-sum limit is T times it).

Bounded cost for learning, true cost for the multiplier:

- The learning signal uses ``c~ = min(c, cost_cap)`` (default cap 4): D/D-bar reaches ~1e5 in
  deep-fade rounds, which would swamp VecNormalize's reward scale and the value function. Above
  the cap every round looks equally bad to the agent; at the multipliers that meet the budget
  (lambda ~ 6 devices per unit of D/D-bar on ``fedlora-default``) scheduling into a round with
  D/D-bar > 4 already costs more than any utility it buys, so the cap does not move the optimum.
- The multiplier uses the true mean cost of each finished episode, i.e. the constraint itself,
  with the error ``J_c - d`` clipped above at ``max_error`` (default 1 x d): an early policy that
  schedules every device has J_c ~ 1e3, and the unclipped step would throw lambda far past its
  equilibrium. Clipping the step changes how fast lambda climbs, not where it settles (J_c = d).

PID update per batch of finished episodes (``kp = kd = 0``: plain dual ascent, lambda += ki e;
the defaults, ki = 0.02 and kp = 0.3, are a PI controller: on ``fedlora-default`` plain dual
ascent with ki = 0.05 overshoots to lambda 0.7 and back to 0.18 before settling near 0.31)::

    e = min(J_c - d, max_error x d)
    I = max(0, I + ki e)
    lambda = clip(kp e + I + kd max(0, J_c - J_c_prev), 0, lambda_max)

lambda is in reward units per unit of cost: with the FedLoRA reward N/K it settles near 0.31 on
``fedlora-default``, i.e. ~6 devices per unit of D/D-bar (the hindsight bound's multiplier).

Per-episode constraint (``lagrangian.constraint = "episode"``). The constraint above holds on
average over episodes: one price lambda for all of them, so an episode whose devices sit far
from the server (dearer rounds) ends over its budget and a cheap one under. The leaderboard
judges every episode (a policy is marked when one episode's time-average exceeds the budget by
more than 1%), which is the constraint ``(1/T) sum_t c_t <= d`` per episode. Its expected-value
form is the mean overshoot

    J_e(pi) = E[ max(0, (1/T) sum_t c_t - d) ] <= eps      (eps = ``excess_limit``, 0.002)

whose per-step cost is the growth of the running overshoot: with ``S_t = sum_{s<=t} (c~_s - d)``
the agent is charged ``e_t = max(0, S_t) - max(0, S_{t-1})`` (these add up to max(0, S_T) over
an episode, ``c~`` bounded as above). ``e_t`` is 0 while the episode is within its budget so
far, whatever the round costs, and charges every unit past it: the agent learns to spend the
budget an episode has left, which it reads from the observed average-delay queue (FedLoRA's
``queue``, at least max(0, S_t)), as ``lyapunov`` does. The multiplier is updated from the true
batch mean of ``max(0, mean_t c_t - d)`` against ``eps``, the error clipped above at
``max_error x eps``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.envs.family import BUDGET_TOLERANCE, family_of, get_family

#: the Lagrangian variants offered by ``edgeft train`` and the SB3 algorithm under each
LAGRANGIAN_ALGOS = {
    "ppo-lag": "ppo",
    "a2c-lag": "a2c",
    "sac-lag": "sac",
    "td3-lag": "td3",
    "dqn-lag": "dqn",
}
#: the off-policy ones: their replay buffer keeps each step's reward and priced cost apart and
#: prices the cost with the current multiplier when it samples (``vec.LagrangianReplayBuffer``)
OFF_POLICY_LAGRANGIAN = frozenset({"sac-lag", "td3-lag", "dqn-lag"})
#: the ``lagrangian`` settings of a TrainConfig, with their defaults
LAGRANGIAN_DEFAULTS: dict[str, Any] = {
    "cost_limit": None,  # per-step limit d (None: cost_limit(config))
    "cost_cap": 4.0,  # learning signal min(c, cost_cap)
    "lambda_init": 0.0,  # multiplier at the start
    "ki": 0.02,  # integral gain (the dual-ascent step size)
    "kp": 0.3,  # proportional gain (PID Lagrangian; 0 = plain dual ascent)
    "kd": 0.0,  # derivative gain on a rising cost
    "max_error": 1.0,  # the error J_c - d is clipped above at max_error x d
    "lambda_max": 1000.0,  # upper clip of lambda
    "update_episodes": None,  # finished episodes per update (None: one per env copy)
    "constraint": "mean",  # "mean": E[mean cost] <= d; "episode": E[max(0, mean cost - d)] <= eps
    "excess_limit": 0.002,  # eps of the "episode" constraint (mean overshoot per episode)
}
#: the constraint forms of ``lagrangian.constraint`` (see the module doc)
CONSTRAINTS = ("mean", "episode")


def base_algo(algo: str) -> str:
    """The SB3 algorithm a (possibly Lagrangian) algorithm name trains: ``ppo-lag`` -> ``ppo``."""
    return LAGRANGIAN_ALGOS.get(algo, algo)


def cost_limit(config: Any) -> float:
    """The per-step constraint-cost limit of an env (its config in force): the config's own
    ``cost_limit`` if it has one, else the family record's (``EnvFamily.cost_limit``, the limit
    every suite of the family states).

    Raises:
        ValueError: not a config of a registered family.
    """
    own = getattr(config, "cost_limit", None)
    if own is not None:
        return float(own)
    try:
        return float(family_of(config).cost_limit)
    except TypeError as err:
        raise ValueError(
            f"no constraint-cost limit defined for {type(config).__name__}; set "
            "lagrangian.cost_limit in the training config"
        ) from err


def constraint_cost(infos: list[dict[str, Any]], family: str) -> np.ndarray:
    """The constraint cost ``info["cost"]`` of each env copy of one vector step, shape (n,).

    The one place agents read the cost. FedLoRA: D/D-bar of the round. MEC: the mean over users
    of the device energy in per-round budgets (the safe-RL convention: the weighted objective
    under ``info["objective"]``). An info without one of the family's ``cost_info_keys`` is
    refused (a MEC env without ``"objective"`` would carry its weighted objective as
    ``"cost"``, and constraining the objective is meaningless).

    Raises:
        ValueError: an info without the family's cost keys.
    """
    missing = [k for k in get_family(family).cost_info_keys if infos and k not in infos[0]]
    if missing:
        raise ValueError(
            f"the env's info has no {missing}: the {family} family's constraint "
            "cost needs them, and an info['cost'] without them is not the "
            "constraint cost (a MEC env of the old convention put its weighted "
            "objective there)"
        )
    return np.array([float(i["cost"]) for i in infos], dtype=np.float64)


def lagrangian_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """:data:`LAGRANGIAN_DEFAULTS` updated with ``settings``, validated.

    Raises:
        ValueError: unknown key or a value out of range, naming it.
    """
    unknown = sorted(set(settings) - set(LAGRANGIAN_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown lagrangian setting(s) {unknown}; known: {sorted(LAGRANGIAN_DEFAULTS)}"
        )
    s = {**LAGRANGIAN_DEFAULTS, **settings}
    for k in ("cost_cap", "max_error", "lambda_max"):
        if not float(s[k]) > 0:
            raise ValueError(f"lagrangian.{k} must be > 0, got {s[k]}")
    for k in ("lambda_init", "ki", "kp", "kd"):
        if float(s[k]) < 0:
            raise ValueError(f"lagrangian.{k} must be >= 0, got {s[k]}")
    if s["cost_limit"] is not None and not float(s["cost_limit"]) > 0:
        raise ValueError(f"lagrangian.cost_limit must be > 0, got {s['cost_limit']}")
    if s["constraint"] not in CONSTRAINTS:
        raise ValueError(
            f"lagrangian.constraint must be one of {list(CONSTRAINTS)}, got {s['constraint']!r}"
        )
    if not float(s["excess_limit"]) > 0:
        raise ValueError(f"lagrangian.excess_limit must be > 0, got {s['excess_limit']}")
    if s["update_episodes"] is not None and int(s["update_episodes"]) < 1:
        raise ValueError(f"lagrangian.update_episodes must be >= 1, got {s['update_episodes']}")
    return s


@dataclass
class PIDMultiplier:
    """The Lagrange multiplier lambda >= 0, updated from measured mean episode costs.

    Attributes:
        limit: per-step cost limit d.
        ki, kp, kd: integral, proportional and derivative gains (kp = kd = 0: dual ascent).
        max_error: clip of the error J_c - d from above, in units of d.
        lambda_max: upper clip of lambda.
        integral: the integral term I (= lambda under plain dual ascent).
        value: the current lambda.
        last_cost: J_c of the previous update (derivative term), None before the first.
        updates: number of updates so far.
    """

    limit: float
    ki: float = 0.02
    kp: float = 0.3
    kd: float = 0.0
    max_error: float = 1.0
    lambda_max: float = 1000.0
    integral: float = 0.0
    value: float = 0.0
    last_cost: float | None = None
    updates: int = 0

    def update(self, mean_cost: float) -> float:
        """One PID step from the mean per-step cost ``mean_cost`` of a batch of episodes."""
        err = min(float(mean_cost) - self.limit, self.max_error * self.limit)
        self.integral = max(0.0, self.integral + self.ki * err)
        rise = 0.0 if self.last_cost is None else max(0.0, float(mean_cost) - self.last_cost)
        self.last_cost = float(mean_cost)
        self.value = float(
            np.clip(self.kp * err + self.integral + self.kd * rise, 0.0, self.lambda_max)
        )
        self.updates += 1
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state (saved with the checkpoint and the model's config)."""
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict[str, Any], limit: float) -> PIDMultiplier:
        """A multiplier at ``lambda_init`` from :func:`lagrangian_settings`."""
        init = float(settings["lambda_init"])
        return cls(
            limit=float(limit),
            ki=float(settings["ki"]),
            kp=float(settings["kp"]),
            kd=float(settings["kd"]),
            max_error=float(settings["max_error"]),
            lambda_max=float(settings["lambda_max"]),
            integral=init,
            value=init,
        )


#: columns of the training-curve log (``curves.csv``), one row per batch of finished episodes
CURVE_COLUMNS = (
    "timesteps",
    "episodes",
    "utility",
    "devices",
    "cost",
    "cost_bounded",
    "cost_max",
    "cost_limit",
    "lambda",
    "excess",
    "excess_max",
)


def truncate_log(path: Path, timesteps: int) -> None:
    """Drop the rows after ``timesteps`` from a curves CSV (a resumed run rewrites them)."""
    if not path.is_file():
        return
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(float(r["timesteps"])) <= timesteps]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CURVE_COLUMNS)
        w.writeheader()
        w.writerows(rows)


def read_curves(out: str | Path) -> dict[str, np.ndarray]:
    """A run folder's ``curves.csv`` as columns of floats (empty dict if there is none)."""
    path = Path(out) / "curves.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    # logs written before the excess columns existed read them as NaN
    return (
        {k: np.array([float(r.get(k) or "nan") for r in rows]) for k in CURVE_COLUMNS}
        if rows
        else {}
    )


def read_validation(out: str | Path) -> list[dict[str, Any]]:
    """A run folder's ``eval.jsonl`` rows."""
    path = Path(out) / "eval.jsonl"
    if not path.is_file():
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def plot_curves(runs: dict[str, str | Path], path: str | Path, smooth: int = 10) -> Path:
    """Training curves of one or more runs as a PNG: devices per round (training episodes,
    smoothed, and validation's devices per round as markers; envs without devices: the training
    reward per step), mean cost against the limit, lambda (runs with a multiplier) and the mean
    overshoot per episode (what ``constraint=episode`` bounds).

    Args:
        runs: label -> run folder (``edgeft train --out``).
        path: the PNG to write.
        smooth: moving-average window (rows) of the training curves.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    limit = None
    for label, folder in runs.items():
        c = read_curves(folder)
        if not c:
            continue
        t = c["timesteps"] / 1e6
        w = max(1, min(smooth, len(t)))
        k = np.ones(w) / w

        def sm(x: np.ndarray, k: np.ndarray = k) -> np.ndarray:
            return np.convolve(x, k, mode="valid")

        ts = t[w - 1 :]
        devices = bool(np.all(np.isfinite(c["devices"])))  # FedLoRA; else the mean reward
        first = c["devices"] if devices else c["utility"]
        (line,) = axes[0].plot(ts, sm(first), lw=1, label=f"{label} (training)")
        val = [r for r in read_validation(folder) if "avg_scheduled" in r.get("agent", {})]
        if val and devices:
            axes[0].plot(
                [r["timesteps"] / 1e6 for r in val],
                [r["agent"]["avg_scheduled"] for r in val],
                "o",
                ms=3,
                color=line.get_color(),
                label=f"{label} (validation)",
            )
        axes[1].plot(ts, sm(c["cost"]), lw=1, color=line.get_color(), label=label)
        if np.any(c["lambda"] != 0):  # runs without a multiplier log lambda = 0
            axes[2].plot(t, c["lambda"], lw=1, color=line.get_color(), label=label)
        if np.all(np.isfinite(c["excess"])):  # logs before the column existed: NaN
            axes[3].plot(ts, sm(c["excess"]), lw=1, color=line.get_color(), label=label)
        limit = float(c["cost_limit"][-1])
    if limit is not None:
        axes[1].axhline(limit, color="k", ls="--", lw=0.8, label="limit")
    axes[0].set(
        xlabel="env steps (M)",
        ylabel="devices / round (else reward / step)",
        title="devices scheduled (training reward)",
    )
    axes[1].set(
        xlabel="env steps (M)",
        ylabel="mean cost per step (FedLoRA: D/D-bar)",
        title="constraint cost vs limit",
    )
    axes[1].set_ylim(0, 2 * (limit or 1.0))
    axes[2].set(xlabel="env steps (M)", ylabel="lambda (reward units)", title="multiplier")

    axes[3].axhline(BUDGET_TOLERANCE, color="k", ls=":", lw=0.8, label="leaderboard tolerance (1%)")
    axes[3].set(
        xlabel="env steps (M)",
        ylabel="mean of max(0, episode's mean cost - limit)",
        title="overshoot per episode",
    )
    axes[3].set_yscale("symlog", linthresh=1e-3)
    axes[3].set_ylim(bottom=0.0)
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a run without a multiplier plots no lambda
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
