"""Reproduce the papers' figures as PNG files (surrogate mode by default).

Each figure is one leaderboard-style run (per-episode rows in OUT/<figure>/episodes.jsonl, so an
interrupted figure resumes with --resume) followed by a plot OUT/<figure>.png:

    ft-fig3   loss and accuracy vs round: corrected and literal Lyapunov, All-in, GS, AABA
              (FT Section V.A, preset paper)
    ft-fig5   final loss and accuracy vs delay budget (1, 2, 5, 10, 50 us/bit)
    ft-fig6   decision time of the Lyapunov policies vs delay budget (same runs as ft-fig5)
    mec-fig2  collaborative (fp-cccp) vs edge-only (alpha = 1) vs local-only (alpha = Upsilon-1)
    mec-fig3  energy / delay / stability vs their weights 1..10 (fp-cccp, ao, alpha-only,
              resource-only)
    mec-fig4  CCCP association: iterations to converge per start vs number of servers
    mec-fig5  energy and delay vs number of users (fp-cccp, greedy, random)

Examples:

    edgeft figures                         # all of them, quick sizes
    edgeft figures --only ft-fig3 --rounds 5000 --seeds 3
    edgeft figures --only ft-fig3 --mode real --set training='{"model": "...", ...}'
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgeft.suites import FEDLORA, MEC, Scenario, Suite

FIGURES = ("ft-fig3", "ft-fig5", "ft-fig6", "mec-fig2", "mec-fig3", "mec-fig4", "mec-fig5")
FT_POLICIES = ["lyapunov", "lyapunov-paper", "all-in", "gs", "aaba"]
BUDGETS_US = (1.0, 2.0, 5.0, 10.0, 50.0)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _run(suite: Suite, policies: list[str], out: Path,
         args: argparse.Namespace) -> tuple[dict, list]:
    from edgeft import leaderboard as lb

    summary = lb.run_leaderboard(suite, policies, out, resume=out.exists(), workers=args.workers,
                                 progress=not args.no_progress, plots=False,
                                 backend="serial" if args.workers == 1 else "local")
    return summary, lb.read_rows(out / lb.EPISODES_FILE)


def _ft_base(args: argparse.Namespace) -> dict[str, Any]:
    cfg: dict[str, Any] = {"preset": "paper", "episode_rounds": args.rounds}
    if args.mode == "real":
        cfg["mode"] = "real"
    cfg.update(args.overrides)
    return cfg


def ft_fig3(args: argparse.Namespace, out: Path) -> Path:
    """FT Fig. 3: training loss and test accuracy vs round."""
    suite = Suite("ft-fig3", 1, "fedlora", "FT Fig. 3",
                  (Scenario("paper", FEDLORA, _ft_base(args)),), num_seeds=args.seeds)
    _, rows = _run(suite, FT_POLICIES, out / "ft-fig3", args)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for pol in FT_POLICIES:
        rs = [r for r in rows if r["policy"] == pol]
        for ax, k in zip(axes, ("loss", "accuracy")):
            y = np.mean([r["curves"][k] for r in rs], axis=0)
            x = rs[0]["curves"].get("round", np.arange(1, len(y) + 1))
            ax.plot(x, y, label=pol)
    for ax, k in zip(axes, ("training loss", "test accuracy")):
        ax.set_xlabel("communication round")
        ax.set_ylabel(k)
    axes[0].legend()
    fig.suptitle(f"FT Fig. 3 ({args.mode}, {args.seeds} seed(s))")
    return _save(fig, out / "ft-fig3.png")


def _budget_runs(args: argparse.Namespace, out: Path) -> dict:
    scen = tuple(Scenario(f"budget-{b:g}us", FEDLORA,
                          {**_ft_base(args), "delay_budget_per_bit": b * 1e-6}, sweep_value=b)
                 for b in BUDGETS_US)
    suite = Suite("ft-fig5", 1, "fedlora", "FT Fig. 5/6", scen, num_seeds=args.seeds,
                  sweep=("delay_budget_per_bit", "us/bit"))
    summary, _ = _run(suite, ["lyapunov", "lyapunov-paper", "gs", "aaba"], out / "ft-fig5", args)
    return summary


def _sweep_plot(summary: dict, metrics: list[tuple[str, str, str]], xlabel: str, title: str,
                path: Path, logx: bool = True, logy: tuple[str, ...] = ()) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    for ax, (part, m, label) in zip(axes[0], metrics):
        for pol in summary["policies"]:
            es = [e for e in summary["results"] if e["policy"] == pol]
            x = [e["sweep_value"] for e in es]
            ax.errorbar(x, [e[part][m]["mean"] for e in es],
                        yerr=[[e[part][m]["mean"] - e[part][m]["ci_low"] for e in es],
                              [e[part][m]["ci_high"] - e[part][m]["mean"] for e in es]],
                        marker="o", capsize=3, label=pol)
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
    return _sweep_plot(s, [("metrics", "final_loss", "final training loss"),
                           ("metrics", "final_accuracy", "final test accuracy"),
                           ("metrics", "avg_scheduled", "avg scheduled devices")],
                       "delay budget (us/bit)", "FT Fig. 5", out / "ft-fig5.png")


def ft_fig6(args: argparse.Namespace, out: Path) -> Path:
    """FT Fig. 6: decision time vs the delay budget (measured on this machine)."""
    s = _budget_runs(args, out)
    s = {**s, "policies": ["lyapunov", "lyapunov-paper"]}
    return _sweep_plot(s, [("timing", "decide_ms", "decision time per round (ms)")],
                       "delay budget (us/bit)", "FT Fig. 6", out / "ft-fig6.png",
                       logy=("decide_ms",))


def _mec_base(args: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    return {"num_users": args.users, "num_servers": args.servers, "episode_rounds": 1,
            **args.overrides, **kw}


def mec_fig3(args: argparse.Namespace, out: Path) -> Path:
    """MEC Fig. 3: energy, delay and stability vs their weights (others at 1)."""
    pols = ["fp-cccp", "ao", "alpha-only", "resource-only"]
    weights = (1.0, 4.0, 7.0, 10.0)
    panels = []
    for w_field, metric, label in (("w_energy", "energy", "energy (J)"),
                                   ("w_delay", "delay", "delay (s)"),
                                   ("w_stability", "stability", "stability bound")):
        scen = tuple(Scenario(f"{w_field}-{w:g}", MEC,
                              _mec_base(args, **({w_field: w, "w_stability": 1.0}
                                                 if w_field != "w_stability" else {w_field: w})),
                              sweep_value=w) for w in weights)
        suite = Suite(f"mec-fig3-{w_field}", 1, "mec", "MEC Fig. 3", scen, num_seeds=args.seeds)
        s, _ = _run(suite, pols, out / f"mec-fig3-{w_field}", args)
        panels.append((s, metric, label, w_field))
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, (s, metric, label, w_field) in zip(axes, panels):
        for pol in pols:
            es = [e for e in s["results"] if e["policy"] == pol]
            ax.plot([e["sweep_value"] for e in es], [e["metrics"][metric]["mean"] for e in es],
                    marker="o", label=pol)
        ax.set_xlabel(f"{w_field} (others 1)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle("MEC Fig. 3")
    return _save(fig, out / "mec-fig3.png")


def mec_fig5(args: argparse.Namespace, out: Path) -> Path:
    """MEC Fig. 5: energy and delay vs the number of users."""
    users = (10, 20, 30, 40, 50)
    scen = tuple(Scenario(f"n{n}", MEC, _mec_base(args, num_users=n), sweep_value=n) for n in users)
    suite = Suite("mec-fig5", 1, "mec", "MEC Fig. 5", scen, num_seeds=args.seeds)
    s, _ = _run(suite, ["fp-cccp", "greedy", "random"], out / "mec-fig5", args)
    return _sweep_plot(s, [("metrics", "energy", "total energy (J)"),
                           ("metrics", "delay", "mean delay (s)")],
                       "number of users", "MEC Fig. 5", out / "mec-fig5.png", logx=False,
                       logy=("energy", "delay"))


def mec_fig2(args: argparse.Namespace, out: Path) -> Path:
    """MEC Fig. 2: collaborative vs edge-only (alpha = 1) vs local-only (alpha = Upsilon - 1)."""
    import gymnasium as gym

    import edgeft
    from edgeft.baselines.mec import solver as S
    from edgeft.baselines.mec.policies import GreedyPolicy

    class FixedAlpha(GreedyPolicy):
        def __init__(self, config: Any, alpha: int, **kw: Any) -> None:
            super().__init__(config, **kw)
            self.alpha = alpha

        def decide(self, inst: Any) -> Any:
            server = S.greedy_association(inst)
            fix_alpha = np.full(inst.num_users, float(self.alpha))
            return self._fp_ao(inst, server, fix_alpha=fix_alpha).decision

    env = gym.make(MEC, **_mec_base(args))
    cfg = env.unwrapped.config
    makers = {
        "collaborative (fp-cccp)": lambda s: edgeft.make_policy("fp-cccp", env, seed=s),
        "edge-only (alpha=1)": lambda s: FixedAlpha(cfg, 1, seed=s),
        f"local-only (alpha={cfg.max_alpha})": lambda s: FixedAlpha(cfg, cfg.max_alpha, seed=s),
    }
    from edgeft.episodes import play_episode
    from edgeft.suites import TEST_SEED_BASE

    res: dict[str, dict[str, float]] = {}
    for name, make in makers.items():
        ms = [play_episode(env, make(TEST_SEED_BASE + i), TEST_SEED_BASE + i)["metrics"]
              for i in range(args.seeds)]
        res[name] = {k: float(np.mean([m[k] for m in ms]))
                     for k in ("energy", "delay", "stability")}
        print(f"mec-fig2 {name}: {res[name]}")
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (k, label) in zip(axes, (("energy", "energy (J)"), ("delay", "mean delay (s)"),
                                     ("stability", "stability bound"))):
        ax.bar(range(len(res)), [r[k] for r in res.values()], color=["C0", "C1", "C2"])
        ax.set_xticks(range(len(res)), list(res), rotation=15, fontsize=8)
        ax.set_ylabel(label)
    fig.suptitle(f"MEC Fig. 2 (N={cfg.num_users}, M={cfg.num_servers})")
    return _save(fig, out / "mec-fig2.png")


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
    return _save(fig, out / "mec-fig4.png")


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _plt().close(fig)
    return path


RUNNERS = {"ft-fig3": ft_fig3, "ft-fig5": ft_fig5, "ft-fig6": ft_fig6, "mec-fig2": mec_fig2,
           "mec-fig3": mec_fig3, "mec-fig4": mec_fig4, "mec-fig5": mec_fig5}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of {', '.join(FIGURES)}")
    parser.add_argument("--out", default="figures", help="output folder (default: %(default)s)")
    parser.add_argument("--mode", default="surrogate", choices=["surrogate", "real"],
                        help="FedLoRA learning model (real needs the training extra and data)")
    parser.add_argument("--rounds", type=int, default=1000,
                        help="FT rounds per episode (paper: 5000)")
    parser.add_argument("--seeds", type=int, default=2, help="test seeds per point (default 2)")
    parser.add_argument("--users", type=int, default=20, help="MEC users (paper: 50; fig. 4: 100)")
    parser.add_argument("--servers", type=int, default=4, help="MEC servers (paper: 10)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="env config override for every run, repeatable")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from edgeft.compare import parse_overrides

    args.overrides = parse_overrides(args.overrides)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(FIGURES)
    bad = [n for n in names if n not in RUNNERS]
    if bad:
        print(f"edgeft figures: error: unknown figure(s) {bad}; known: {list(FIGURES)}",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    for n in names:
        path = RUNNERS[n](args, out)
        print(f"wrote {path}")
    return 0
