"""What a leaderboard run writes from its summary: the Markdown table, the CSV, the JSON and
the PNG plots."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeft.envs.family import EnvFamily, get_family
from edgeft.episodes import TIMING
from edgeft.leaderboard.store import write_atomic
from edgeft.leaderboard.summary import ranked
from edgeft.suites import Suite


def _fmt(x: float) -> str:
    return f"{x:.4g}" if np.isfinite(x) else str(x)


def _cell(d: dict[str, float] | None, digits: str = ".4g") -> str:
    if d is None:
        return "-"
    half = (d["ci_high"] - d["ci_low"]) / 2
    mean = format(d["mean"], digits) if np.isfinite(d["mean"]) else str(d["mean"])
    return mean + (f" ± {half:.2g}" if half > 0 else "")


def markdown_table(summary: dict[str, Any]) -> str:
    """The summary as Markdown: mean ± half-width of the bootstrap 95% interval; with a headline,
    sorted by score, with the headline, score and paired-difference columns first."""
    family = get_family(summary["family"])
    cols = [(m, d.title) for m, d in family.metrics.items()] + [
        (m, t) for m, (t, _) in TIMING.items()
    ]
    head = summary.get("headline")
    multi = len({e["scenario"] for e in summary["results"]}) > 1
    front = []
    if head is not None:
        front = (
            ["score", head["title"], "% from bound", f"vs {head['reference']} (paired)"]
            if head["bound"]
            else [head["title"], f"vs {head['reference']} (paired)"]
        )
    titles = front + [t for _, t in cols]
    header = "| " + ("scenario | " if multi else "") + "policy | " + " | ".join(titles) + " |"
    sep = "|" + ("---|" if multi else "") + "---|" + "|".join("---:" for _ in titles) + "|"
    lines = [
        f"**{summary['suite']}** v{summary['version']}: {summary['description']}; "
        f"{summary['episodes']}/{summary['expected_episodes']} episodes; mean ± half-width of "
        "the bootstrap 95% interval over test seeds",
        "",
        header,
        sep,
    ]
    entries = ranked(summary) if head is not None else summary["results"]
    lines += [_row(e, head, cols, multi) for e in entries]
    lines += _notes(summary, head)
    return "\n".join(lines) + "\n"


def _row(
    e: dict[str, Any], head: dict[str, Any] | None, cols: list[tuple[str, str]], multi: bool
) -> str:
    """One policy's row of :func:`markdown_table`."""
    cells = []
    name = e["policy"]
    if e.get("out_of_distribution"):
        name = f"{name} (OOD)"
    if head is not None:
        if e.get("bound"):
            name = f"{name} (bound)"
        elif e.get("breaks_constraint"):
            name = f"{name} ✗"
        if head["bound"]:
            cells += [
                _cell(e.get("score"), ".1f"),
                _cell(e.get("headline")),
                _cell(e.get("above_bound"), ".2f"),
            ]
        else:
            cells.append(_cell(e.get("headline")))
        cells.append(_cell(e.get("vs_reference"), "+.3g"))
    for m, _ in cols:
        d = e["timing"][m] if m in e["timing"] else e["metrics"][m]
        cells.append(_cell(d))
    scenario = f"{e['scenario']} | " if multi else ""
    return "| " + scenario + f"{name} | " + " | ".join(cells) + " |"


def _notes(summary: dict[str, Any], head: dict[str, Any] | None) -> list[str]:
    """The notes under :func:`markdown_table`: the score's meaning, the OOD rows."""
    lines: list[str] = []
    if head is not None and not head["bound"]:
        lines += [
            "",
            f"{head['title']}: lower is better; no hindsight bound (not scored); "
            f"constraint: {head['constraint']}; ✗ = breaks it in at least one episode; "
            f"paired: mean per-seed difference from `{head['reference']}`.",
        ]
    elif head is not None:
        lines += [
            "",
            f"score: 0 = `{head['anchor']}`, 100 = `{head['bound']}` (the episode's "
            f"hindsight bound), per test seed, on {head['title']}; below 0: worse than "
            f"`{head['anchor']}`; % from bound: how far {head['title']} is from the bound, "
            "in % of it (the bound may not be reachable: it is a certified limit, not a "
            f"schedule); constraint: {head['constraint']}; ✗ = breaks it in at least one "
            f"episode; paired: mean per-seed difference from `{head['reference']}`.",
        ]
    ood = [
        f"`{e['policy']}` ({', '.join(e['out_of_distribution'])})"
        for e in summary["results"]
        if e.get("out_of_distribution")
    ]
    if ood:
        lines += [
            "",
            "OOD = out of distribution: an agent played in an env unlike its training "
            "env, in the fields named: " + "; ".join(ood) + ".",
        ]
    return lines


def summary_csv(summary: dict[str, Any]) -> str:
    """One row per (scenario, policy): mean, ci_low, ci_high of every metric, then timing."""
    names = list(get_family(summary["family"]).metrics) + list(TIMING)
    header = ["suite", "version", "scenario", "policy", "episodes"]
    scored = summary.get("headline") is not None
    if scored:
        for m in ("score", "headline", "above_bound", "vs_reference"):
            header += [f"{m}_mean", f"{m}_ci_low", f"{m}_ci_high"]
        header += ["breaks_constraint", "bound"]
    for m in names:
        header += [f"{m}_mean", f"{m}_ci_low", f"{m}_ci_high"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for e in summary["results"]:
        row: list[Any] = [
            summary["suite"],
            summary["version"],
            e["scenario"],
            e["policy"],
            e["episodes"],
        ]
        if scored:
            for m in ("score", "headline", "above_bound", "vs_reference"):
                d = e.get(m)
                row += ["" if d is None else repr(d[k]) for k in ("mean", "ci_low", "ci_high")]
            row += [e.get("breaks_constraint", ""), int(bool(e.get("bound")))]
        for m in names:
            d = e["timing"][m] if m in TIMING else e["metrics"][m]
            row += [repr(d["mean"]), repr(d["ci_low"]), repr(d["ci_high"])]
        w.writerow(row)
    return buf.getvalue()


def write_summary(out: Path, suite: Suite, summary: dict[str, Any]) -> None:
    """summary.json, summary.csv and summary.md (derived from episodes.jsonl; rewritten)."""
    write_atomic(out / "summary.json", json.dumps(summary, indent=1, sort_keys=True) + "\n")
    write_atomic(out / "summary.csv", summary_csv(summary))
    write_atomic(out / "summary.md", markdown_table(summary))


def write_plots(
    out: Path, suite: Suite, summary: dict[str, Any], rows: list[dict[str, Any]]
) -> list[Path]:
    """PNG plots in ``out/plots``: the family's plot metrics and the decision time per policy
    (bars, or lines vs the suite's sweep), and the family's per-round curves per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    pdir = out / "plots"
    pdir.mkdir(exist_ok=True)
    family = get_family(suite.family)
    written = [_metrics_plot(pdir / "metrics.png", suite, summary, family)]
    if family.plot_curves:
        for sc in suite.scenarios:
            written.append(
                _curves_plot(
                    pdir / f"curves_{sc.name}.png",
                    suite,
                    sc.name,
                    summary["policies"],
                    rows,
                    family.plot_curves,
                )
            )
    return written


def _metric_axis(ax: Any, suite: Suite, summary: dict[str, Any], m: str, title: str) -> None:
    """One panel of the metrics plot: lines vs the sweep, or bars per policy."""
    part = "timing" if m in TIMING else "metrics"
    if suite.sweep is not None:
        for pol in summary["policies"]:
            es = [e for e in summary["results"] if e["policy"] == pol]
            if not es:
                continue
            x = [e["sweep_value"] for e in es]
            ax.plot(x, [e[part][m]["mean"] for e in es], marker="o", label=pol)
            ax.fill_between(
                x,
                [e[part][m]["ci_low"] for e in es],
                [e[part][m]["ci_high"] for e in es],
                alpha=0.15,
            )
        ax.set_xscale("log")
        ax.set_xlabel(suite.sweep[1])
    else:
        first = suite.scenarios[0].name
        es = [e for e in summary["results"] if e["scenario"] == first]
        means = np.array([e[part][m]["mean"] for e in es])
        err = np.array(
            [
                [
                    e[part][m]["mean"] - e[part][m]["ci_low"],
                    e[part][m]["ci_high"] - e[part][m]["mean"],
                ]
                for e in es
            ]
        ).T
        ax.bar(range(len(es)), means, yerr=err, capsize=3, color="C0")
        ax.set_xticks(
            range(len(es)), [e["policy"] for e in es], rotation=45, ha="right", fontsize=8
        )
    if m in ("decide_ms", "avg_delay_ratio", "cost", "energy", "delay"):
        ax.set_yscale("log")
    ax.set_title(title)


def _metrics_plot(path: Path, suite: Suite, summary: dict[str, Any], family: EnvFamily) -> Path:
    import matplotlib.pyplot as plt

    show = [*family.plot_metrics, "decide_ms"]
    fig, axes = plt.subplots(1, len(show), figsize=(4 * len(show), 3.6))
    for ax, m in zip(axes, show):
        title = TIMING[m][0] if m in TIMING else family.metrics[m].title
        _metric_axis(ax, suite, summary, m, title)
    if suite.sweep is not None:
        axes[0].legend(fontsize=7)
    fig.suptitle(f"{suite.name} v{suite.version}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _curves_plot(
    path: Path,
    suite: Suite,
    scenario: str,
    policies: list[str],
    rows: list[dict[str, Any]],
    curves: tuple[str, ...],
) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    axes = axes[0]
    for pol in policies:
        rs = [r for r in rows if r["scenario"] == scenario and r["policy"] == pol]
        if not rs:
            continue
        for ax, k in zip(axes, curves):
            y = np.mean([r["curves"][k] for r in rs], axis=0)
            x = rs[0]["curves"].get("round", list(range(1, len(y) + 1)))
            ax.plot(x, y, label=pol)
    for ax, k in zip(axes, curves):
        ax.set_xlabel("round")
        ax.set_ylabel(k)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{suite.name}: {scenario} (mean over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
