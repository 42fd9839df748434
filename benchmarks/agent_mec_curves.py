"""MEC training curves from scratch: validation headline and the gap to the validation
reference (greedy) against env steps, and the training reward per step.

    python benchmarks/agent_mec_curves.py OUT.png LABEL=RUN_FOLDER [LABEL=RUN_FOLDER ...]

RUN_FOLDER is an ``edgeft train --out`` folder of the MEC env (its ``eval.jsonl`` and
``curves.csv``); ``agents/curves/mec-default-ppo-shared.png`` was drawn with
``mec-shared=runs/mec-shared MlpPolicy=runs/mec-mlp``.
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from edgeft.agents.lagrangian import read_curves, read_validation  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) < 2 or any("=" not in a for a in argv[1:]):
        print(__doc__, file=sys.stderr)
        return 2
    out, runs = argv[0], dict(a.split("=", 1) for a in argv[1:])
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    ref = None
    for label, folder in runs.items():
        val = read_validation(folder)
        if not val:
            print(f"{folder}: no eval.jsonl (train with --eval-episodes > 0)", file=sys.stderr)
            return 1
        t = np.array([r["timesteps"] for r in val]) / 1e3
        (line,) = axes[0].plot(
            t,
            [r["agent"]["headline"] for r in val],
            "o-",
            ms=3,
            lw=1,
            label=f"{label} (validation)",
        )
        ref = val[0]["reference"]
        axes[1].plot(
            t,
            [100 * (r["agent"]["cost"] / ref["cost"] - 1) for r in val],
            "o-",
            ms=3,
            lw=1,
            color=line.get_color(),
            label=f"{label}: weighted cost",
        )
        axes[1].plot(
            t,
            [100 * (r["agent"]["headline"] / ref["headline"] - 1) for r in val],
            "s--",
            ms=3,
            lw=1,
            color=line.get_color(),
            label=f"{label}: headline",
        )
        c = read_curves(folder)
        if c:
            w = max(1, min(10, len(c["utility"])))
            k = np.ones(w) / w
            axes[2].plot(
                c["timesteps"][w - 1 :] / 1e3,
                np.convolve(c["utility"], k, "valid"),
                lw=1,
                color=line.get_color(),
                label=f"{label} (training episodes)",
            )
        print(
            f"{label}: last validation at {int(t[-1])}k steps, "
            f"{val[-1].get('wall_s', float('nan')) / 60:.1f} min"
        )
    assert ref is not None
    axes[0].axhline(
        ref["headline"], color="k", ls="--", lw=0.8, label=f"reference {ref['headline']:.1f}"
    )
    axes[0].axhline(1.1 * ref["headline"], color="k", ls=":", lw=0.8, label="reference + 10%")
    axes[1].axhline(0, color="k", ls="--", lw=0.8, label=f"reference (cost {ref['cost']:.3f})")
    axes[1].axhline(10, color="k", ls=":", lw=0.8, label="reference + 10%")
    axes[0].set(
        xlabel="env steps (k)",
        ylabel="cost/round + 100 x overshoot",
        yscale="log",
        title="validation headline (lower is better)",
    )
    axes[1].set(
        xlabel="env steps (k)",
        ylabel="% above the reference",
        title="validation: gap to the reference (same seeds)",
    )
    axes[1].set_yscale("symlog", linthresh=1)
    axes[2].set(
        xlabel="env steps (k)",
        ylabel="training reward per step",
        title="training reward (smoothed)",
    )
    axes[2].set_yscale("symlog")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
