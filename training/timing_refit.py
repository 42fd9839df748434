"""The timing protocol's refit: surrogate forms fitted on its fit runs, judged on what they were
not fitted on.

:mod:`edgeft.training.timing_protocol` fixes the split (its docstring): a new surrogate version
is fitted on the v3 fit runs (const-2, const-5, const-K at seeds 0-4) plus ``flat-10``,
``front-4`` and ``back-4`` at seeds 100-109, and judged by the calibration criteria (Spearman >=
0.9; every difference from the reference within 25% or inside the real paired 95% interval) on
``front-2``, ``back-2`` and the four policy masks at seeds 100-109 (differences from
``flat-10``) and on the v3 held-out schedules at seeds 0-4 (differences from ``const-K``).

The candidate forms, fixed here (:data:`FORMS`), each fitted by
:func:`edgeft.training.surrogate_fit.fit`:

* ``v3``: surrogate v3's constants refitted on the larger fit set;
* ``v4-drift``: v3 plus forgetting below s*(N) (``drift_rate``);
* ``v4-drift-power``: plus the settle level's power in N (``settle_power``);
* ``v4-drift-power-cap``: plus s*(N) capped at the pretrained gap (``settle_cap``).

Every fit also has one nuisance constant: the loss level of the seeds 100-109 runs after round 0
(other seeds, other data shards; the criteria are paired differences within a seed set). The form
judged on a setting is chosen on the fit runs alone (the least RMS of the seed-mean fit curves);
the others' tables are reported beside it. A form is shipped only if it meets every criterion on
both held-out sets; none is shipped otherwise, and surrogate v3 stays the default.

Round 2 (``--round 2``; fixed on 2026-12-08, before its runs): on a setting where round 1's
chosen form fails (``dir-h1``), the fit runs also hold ``const-15`` (15 devices drawn uniformly
each round) and ``const-K`` at seeds 100-109 (:data:`EXTRA_FIT`; ``--run-extra`` makes them, into
the timing cache). Why: round 1's only count above 10 is const-K at seeds 0-4, so the nuisance
level of seeds 100-109 and the worth of devices between 10 and 20 are fitted from the same
difference. The forms, the selection rule, the held-out runs and the criteria stay those of
round 1; the report is ``refit-2.json``.

Fresh-seed check of a shipped v4 calibration (fixed on 2026-12-08, before its runs): the nine
timing schedules on ``iid-h1`` at seeds 110-119 (:data:`FRESH_SEEDS`, used by no fit), made by
``python -m edgeft.training.timing_protocol --settings iid-h1 --seeds 110-119``; ``iid-v4`` and
v3 are judged there by the timing protocol's criteria (``--fresh``), every schedule counting as
held out. Why: on seeds 100-109 the i.i.d. real intervals are so wide that one held-out timing
row could fail.

``python -m edgeft.training.timing_refit`` fits and prints every form per setting, writes
``envs/fedlora/calibration/timing/refit.json`` (about 10 CPU-minutes for both settings) and, for
each setting whose chosen form meets the criteria, the calibration
``envs/fedlora/calibration/<iid|dirichlet>-v4.json`` (``surrogate="iid-v4"``). Round 2::

    OMP_NUM_THREADS=1 python -m edgeft.training.timing_refit --run-extra --settings dir-h1
    python -m edgeft.training.timing_refit --round 2 --settings dir-h1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from edgeft.training import protocol, surrogate_fit, timing_protocol

#: form -> (freed v4 terms, settle_cap)
FORMS: dict[str, tuple[tuple[str, ...], bool]] = {
    "v3": ((), False),
    "v4-drift": (("drift_rate",), False),
    "v4-drift-power": (("drift_rate", "settle_power"), False),
    "v4-drift-power-cap": (("drift_rate", "settle_power"), True),
}
REPORT = timing_protocol.TIMING_DIR / "refit.json"
#: round 2's added fit runs, per setting, at the timing seeds
EXTRA_FIT: dict[str, tuple[str, ...]] = {"dir-h1": ("const-15", "const-K")}
ROUNDS = (1, 2)
#: the fresh-seed check's seeds (iid-h1): no fit has seen them
FRESH_SEEDS = tuple(range(110, 120))


def report_path(round_: int) -> Path:
    """The report of refit round ``round_``."""
    return REPORT if round_ == 1 else REPORT.with_name(f"refit-{round_}.json")


def extra_masks(name: str, num_devices: int, rounds: int, seed: int) -> np.ndarray:
    """(rounds, K) masks of a round-2 fit schedule: ``const-K`` (everyone) or ``const-N`` (N
    devices drawn uniformly each round, as the calibration protocol's const-2 and const-5)."""
    masks = np.zeros((rounds, num_devices), dtype=bool)
    if name == "const-K":
        masks[:] = True
        return masks
    n = int(name.split("-")[1])
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    for t in range(rounds):
        masks[t, rng.choice(num_devices, size=min(n, num_devices), replace=False)] = True
    return masks


def run_extra(setting: str, seeds: list[int], cache_dir: Path) -> None:
    """Round 2's fit runs of ``setting`` (real training), appended to its timing cache; runs
    already there are skipped (a killed batch resumes)."""
    import datetime as dt

    import torch
    from edgeft.training.learner import SplitLoRALearner

    torch.set_num_threads(1)
    path = timing_protocol.cache_path(cache_dir, setting)
    rows = protocol.read_cache(path)
    todo = [
        (name, seed)
        for seed in seeds
        for name in EXTRA_FIT.get(setting, ())
        if protocol.run_key(setting, name, seed) not in rows
    ]
    print(f"{setting}: {len(todo)} round-2 fit runs to make", flush=True)
    if not todo:
        return
    learner = SplitLoRALearner(protocol.SETTINGS[setting][0], protocol.NUM_DEVICES)
    _, rounds, _ = protocol.SETTINGS[setting]
    commit = timing_protocol._commit()
    for i, (name, seed) in enumerate(todo, start=1):
        masks = extra_masks(name, protocol.NUM_DEVICES, rounds, seed)
        row = protocol.run_one(learner, setting, name, seed, masks=masks)
        row["commit"] = commit
        row["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        protocol.append_row(path, row)
        print(
            f"[{i}/{len(todo)}] {setting} {name} seed {seed}: final "
            f"{protocol.final_of(row):.4f} ({row['wall_s']:.0f} s)",
            flush=True,
        )


def load(setting: str) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """(the calibration protocol's runs, the timing protocol's runs with round 2's) of
    ``setting``, by schedule."""
    names = tuple(dict.fromkeys((*protocol.FIT_SCHEDULES, *protocol.HELDOUT_SCHEDULES)))
    calibration = surrogate_fit.load_runs(
        protocol.DEFAULT_CACHE, setting, names, protocol.CALIBRATION_SEEDS
    )
    timing = surrogate_fit.load_runs(
        timing_protocol.cache_path(timing_protocol.TIMING_DIR, setting),
        setting,
        (*timing_protocol.TIMING_SCHEDULES, *EXTRA_FIT.get(setting, ())),
        timing_protocol.TIMING_SEEDS,
    )
    return calibration, timing


def refit_setting(
    setting: str, forms: tuple[str, ...] = tuple(FORMS), round_: int = 1
) -> dict[str, Any]:
    """Fit every form on ``setting``'s fit runs of refit round ``round_``; both held-out tables
    per form; the chosen form."""
    calibration, timing = load(setting)
    extra = EXTRA_FIT.get(setting, ()) if round_ == 2 else ()
    missing = [
        f"{s} seed {seed}"
        for s in (*timing_protocol.TIMING_SCHEDULES, *extra)
        for seed in timing_protocol.TIMING_SEEDS
        if seed not in {r["seed"] for r in timing.get(s, [])}
    ]
    fit_runs = {
        **{s: calibration[s] for s in protocol.FIT_SCHEDULES},
        **{s: timing[s] for s in timing_protocol.REFIT_FIT},
    }
    for s in extra:  # const-K at seeds 100-109 beside const-K at seeds 0-4
        fit_runs[f"{s} (seeds 100-109)"] = timing[s]
    training, rounds, _ = protocol.SETTINGS[setting]
    out: dict[str, Any] = {
        "round": round_,
        "fit_schedules": sorted(fit_runs),
        "missing_runs": missing,
        "forms": {},
    }
    for form in forms:
        terms, cap = FORMS[form]
        t0 = time.process_time()
        params, rms = surrogate_fit.fit(
            fit_runs,
            f"edgeft.training.timing_refit {form}: {training['model']} on {training['task']} "
            f"({surrogate_fit.OUTPUTS[setting]} shards), K={protocol.NUM_DEVICES}, {rounds} "
            f"rounds, timing protocol setting {setting}",
            v4_terms=terms,
            settle_cap=cap,
            offset_from_seed=min(timing_protocol.TIMING_SEEDS),
        )
        held_timing = surrogate_fit.fidelity(
            params, timing, timing_protocol.REFERENCE, timing_protocol.REFIT_HELDOUT
        )
        held_calibration = surrogate_fit.fidelity(
            params, calibration, "const-K", protocol.HELDOUT_SCHEDULES
        )
        out["forms"][form] = {
            "params": dataclasses.asdict(params),
            "fit_rms": rms,
            "fit_cpu_s": time.process_time() - t0,
            "timing_heldout": held_timing,
            "calibration_heldout": held_calibration,
            "met": bool(held_timing["met"] and held_calibration["met"] and not missing),
        }
    chosen = min(out["forms"], key=lambda f: out["forms"][f]["fit_rms"])
    out["chosen"] = chosen
    out["met"] = out["forms"][chosen]["met"]
    return out


def write_calibration(setting: str, res: dict[str, Any], out_dir: Path) -> Path | None:
    """The chosen form's constants as ``<partition>-v4.json`` in ``out_dir`` when it meets every
    criterion (with its tables and the protocol's split); None otherwise."""
    from edgeft.envs.fedlora.surrogate import SurrogateParams

    if not res["met"]:
        return None
    form = res["forms"][res["chosen"]]
    training, rounds, _ = protocol.SETTINGS[setting]
    out = Path(out_dir) / f"{surrogate_fit.OUTPUTS[setting]}-v4.json"
    SurrogateParams(**form["params"]).to_json(
        out,
        model_version=4,
        form=res["chosen"],
        setting=setting,
        partition=surrogate_fit.OUTPUTS[setting],
        training=training,
        rounds=rounds,
        num_devices=protocol.NUM_DEVICES,
        fit_runs={
            "calibration": {"schedules": list(protocol.FIT_SCHEDULES), "seeds": [0, 4]},
            "timing": {"schedules": list(timing_protocol.REFIT_FIT), "seeds": [100, 109]},
        },
        fit_rms=form["fit_rms"],
        timing_heldout=form["timing_heldout"],
        calibration_heldout=form["calibration_heldout"],
        made_by="python -m edgeft.training.timing_refit",
    )
    return out


def fresh_check(seeds: tuple[int, ...] = FRESH_SEEDS) -> dict[str, Any]:
    """The timing protocol's table on ``iid-h1`` at ``seeds`` for surrogate v3 (``"iid"``) and
    ``"iid-v4"``: {surrogate name: the table of :func:`timing_protocol.evaluate`}."""
    from edgeft.envs.fedlora.surrogate import SurrogateParams

    rows = timing_protocol.read_runs()
    out = {}
    for name in ("iid", "iid-v4"):
        table = timing_protocol.evaluate(
            rows, {"iid-h1": SurrogateParams.resolve(name)}, seeds=list(seeds)
        )
        out[name] = table.get("iid-h1")
    return out


def print_report(setting: str, res: dict[str, Any]) -> None:
    for form, r in res["forms"].items():
        p = r["params"]
        mark = " (chosen: least fit RMS)" if form == res["chosen"] else ""
        print(
            f"\n== {setting} {form}{mark}: fit RMS {r['fit_rms']:.4f}; floor "
            f"{p['loss_floor']:.4f} rate {p['rate']:.4g} gap_ratio {p['gap_ratio']:.3f} "
            f"stationary {p['stationary']:.4f} head_fraction {p['head_fraction']:.3f} "
            f"head_rate {p['head_rate']:.3f} onset {p['onset']:.3f} drift_rate "
            f"{p['drift_rate']:.3f} settle_power {p['settle_power']:.3f} cap {p['settle_cap']}"
        )
        surrogate_fit.print_table(f"{setting} timing held-out", r["timing_heldout"])
        surrogate_fit.print_table(f"{setting} calibration held-out", r["calibration_heldout"])
        print(f"  every criterion met on both: {r['met']}")
    if res["missing_runs"]:
        print(f"{setting}: {len(res['missing_runs'])} protocol runs missing (not met until run)")
    print(f"{setting}: chosen {res['chosen']}, criteria met: {res['met']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="forms: " + ", ".join(FORMS),
    )
    p.add_argument(
        "--settings",
        default=",".join(timing_protocol.TIMING_SETTINGS),
        help="comma-separated, from " + ", ".join(timing_protocol.TIMING_SETTINGS),
    )
    p.add_argument("--forms", default=",".join(FORMS), help="comma-separated subset of the forms")
    p.add_argument("--round", type=int, choices=ROUNDS, default=1, help="refit round (default 1)")
    p.add_argument(
        "--run-extra",
        action="store_true",
        help="make round 2's fit runs (real training, one torch thread) instead of fitting",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="the fresh-seed check: v3 and iid-v4 on iid-h1 at seeds 110-119 (or --seeds)",
    )
    p.add_argument(
        "--seeds", default=None, help="--run-extra's (default 100-109) or --fresh's seeds"
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=timing_protocol.TIMING_DIR,
        help="--run-extra: the folder of the timing caches",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="the JSON report (default: refit[-2].json)"
    )
    p.add_argument(
        "--calibration-dir",
        type=Path,
        default=None,
        help="where a form that meets the criteria is written as <partition>-v4.json "
        "(default: the shipped calibrations' folder)",
    )
    args = p.parse_args(argv)
    settings = [s for s in args.settings.split(",") if s]
    forms = tuple(f for f in args.forms.split(",") if f)
    for s in settings:
        if s not in timing_protocol.TIMING_SETTINGS:
            p.error(f"unknown setting {s!r}; one of {', '.join(timing_protocol.TIMING_SETTINGS)}")
    for f in forms:
        if f not in FORMS:
            p.error(f"unknown form {f!r}; one of {', '.join(FORMS)}")
    if args.fresh:
        seeds_f = tuple(protocol.parse_seeds(args.seeds)) if args.seeds else FRESH_SEEDS
        for name, table in fresh_check(seeds_f).items():
            if table is None:
                print(f"{name}: no iid-h1 runs at seeds {seeds_f[0]}-{seeds_f[-1]} yet")
                continue
            print(f"\n== surrogate {name!r}")
            timing_protocol.print_table({"iid-h1": table})
        return 0
    if args.run_extra:
        seeds = (
            protocol.parse_seeds(args.seeds) if args.seeds else list(timing_protocol.TIMING_SEEDS)
        )
        for setting in settings:
            run_extra(setting, seeds, args.cache)
        return 0
    from edgeft.envs.fedlora.surrogate import CALIBRATION_DIR

    out_dir = args.calibration_dir or CALIBRATION_DIR
    out = args.out or report_path(args.round)
    report = {}
    for setting in settings:
        report[setting] = refit_setting(setting, forms, args.round)
        print_report(setting, report[setting])
        written = write_calibration(setting, report[setting], out_dir)
        if written is not None:
            print(f"{setting}: wrote {written}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
