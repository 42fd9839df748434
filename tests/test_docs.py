"""The documentation site: generated pages match their sources, the generator reads the configs'
real validation, the API reference sees the package as installed, and the docs speak of the
software.

``python tools/gen_docs.py`` regenerates what :func:`test_generated_docs_are_up_to_date` checks;
``mkdocs build --strict`` (run by ``.ci/run``) checks links, cross-references and images.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(
        f"_test_docs_{name}", ROOT / "tools" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gen_docs = _tool("gen_docs")

#: phrases that speak of how the software was made, not of the software; none may appear in the
#: documentation or the README
WORK_PHRASES = (
    "the issue",
    "session",
    "earlier shipped",
    "previously shipped",
    "this project's machine",
    "development machine",
    "scratch environment",
    "shared cores",
    "we decided",
)
CONFIGS = (
    "edgeft.envs.fedlora.config.FedLoRAConfig",
    "edgeft.envs.mec.config.MECConfig",
    "edgeft.envs.real_config.TrainingConfig",
)


def test_generated_docs_are_up_to_date():
    stale = gen_docs.outdated()
    assert not stale, (
        "generated documentation differs from its sources: "
        f"{stale}; run `python tools/gen_docs.py` and commit the result"
    )


@pytest.mark.parametrize("path", CONFIGS)
def test_config_table_has_a_row_per_field_with_its_default(path):
    cls = gen_docs.resolve_object(path)
    table = gen_docs.config_table(path)
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == [f.name for f in dataclasses.fields(cls)]
    for row, field in zip(rows, dataclasses.fields(cls)):
        if field.default is not dataclasses.MISSING:
            assert f"`{gen_docs.cell(gen_docs.fmt_value(field.default))}`" in row, row


def _outside(text: str) -> list[float]:
    """Values just outside a range written as ``number in [a, b)`` (numeric bounds only)."""
    m = re.search(r"in ([\[(])([-\d.,e]+|-inf), ([-\d.,e]+|inf)([\])])", text)
    if m is None:
        return []
    lo, hi = m.group(2).replace(",", ""), m.group(3).replace(",", "")
    values = []
    if lo != "-inf":
        values.append(
            float(lo) if m.group(1) == "(" else float(lo) - 1e-9 * max(1, abs(float(lo))) - 0.5
        )
    if hi != "inf":
        values.append(float(hi) if m.group(4) == ")" else float(hi) + 0.5 + 1e-9 * abs(float(hi)))
    return values


@pytest.mark.parametrize("path", CONFIGS)
def test_documented_ranges_are_what_the_config_refuses(path):
    """Every numeric bound and choice list the table shows is enforced: a value just outside it
    raises ValueError naming the field (an independent check of the generator's reading)."""
    cls = gen_docs.resolve_object(path)
    checks, _ = gen_docs.field_checks(cls)
    tried = 0
    for name, check in checks.items():
        bad_values: list[object] = []
        if check.text.startswith("one of"):
            bad_values.append("not-a-valid-choice")
        elif " in " in check.text and "`" not in check.text:
            bad_values += _outside(check.text)
        if check.text.startswith("integer in"):
            bad_values.append(2.5)
        for value in bad_values:
            with pytest.raises(ValueError, match=re.escape(name)):
                cls(**{name: value})
            tried += 1
    assert tried >= 10, f"only {tried} bounds checked for {path}: the generator reads too little"


def test_checks_are_read_from_post_init():
    from edgeft.envs.mec.config import MECConfig

    checks, cross = gen_docs.field_checks(MECConfig)
    assert checks["num_users"].text == "integer in [1, 100,000]"
    assert checks["tokens_max"].text == "integer in [max(1, `tokens_min`), 1,000,000]"
    assert checks["p_max_range_w"].text == (
        "(low, high) pair, each a number in [1e-6, 1000], low <= high"
    )
    assert checks["cores_user"].text == "non-empty tuple of integers in [1, 1,000,000]"
    assert checks["mobility_memory"].text == "number in [0, 1)"
    assert (
        checks["action_mode"].text == 'one of `"full"`, `"discrete"`, `"box"`, `"discrete-priced"`'
    )
    assert any("w_energy + w_delay + w_stability" in c for c in cross)
    from edgeft.envs.real_config import TrainingConfig

    checks, _ = gen_docs.field_checks(TrainingConfig)
    assert checks["eval_size"].optional and checks["eval_size"].text == "integer in [1, inf)"


def test_attribute_docs_split_joint_entries_and_units():
    from edgeft.envs.mec.config import MECConfig

    docs = gen_docs.attribute_docs(MECConfig)
    assert docs["kappa_user"] == docs["kappa_edge"] and "kappa_1" in docs["kappa_user"]
    assert gen_docs.unit_of("kappa_user", docs["kappa_user"]) == "W/(cycle/s)^3"
    assert gen_docs.unit_of("bandwidth_hz", "") == "Hz"
    assert gen_docs.unit_of("delay_budget", "D-bar in seconds per round") == "s"
    assert gen_docs.unit_of("num_users", docs["num_users"]) == ""


@pytest.mark.parametrize(
    "value, text",
    [
        (20, "20"),
        (100_000, "100,000"),
        (1e7, "1e7"),
        (2e-6, "2e-6"),
        (0.2, "0.2"),
        (1.0, "1"),
        ((1.0, 2.0), "(1, 2)"),
        ("iid", '"iid"'),
        (None, "None"),
    ],
)
def test_values_are_written_as_a_reader_writes_them(value, text):
    assert gen_docs.fmt_value(value) == text


def test_regions_are_rewritten_and_unknown_kinds_refused():
    page = "intro\n<!-- generated: regimes -->\nold text\n<!-- end generated -->\nafter\n"
    out = gen_docs.render_regions(page, "page.md")
    assert out.startswith("intro\n<!-- generated: regimes -->\n| `training=")
    assert out.endswith("<!-- end generated -->\nafter\n") and "old text" not in out
    assert gen_docs.render_regions(out, "page.md") == out
    with pytest.raises(ValueError, match="unknown generated region"):
        gen_docs.render_regions("<!-- generated: nope -->\n<!-- end generated -->\n", "p.md")
    with pytest.raises(ValueError, match="has no"):
        gen_docs.render_regions("<!-- generated: regimes -->\nno end\n", "p.md")


def test_seed_interval_is_the_student_t_interval():
    from scipy import stats

    values = [64.3, 71.1, 67.4]
    mean, half = gen_docs.seed_interval(values)
    low, high = stats.t.interval(
        0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values)
    )
    assert mean == pytest.approx(np.mean(values), abs=1e-12)
    assert half == pytest.approx((high - low) / 2, rel=1e-12)
    one_mean, one_half = gen_docs.seed_interval([5.0])
    assert one_mean == 5.0 and np.isnan(one_half)


def test_seed_tables_average_a_suites_scenarios_per_training_seed(tmp_path, monkeypatch):
    def entry(policy, scenario, score, ood=()):
        return {
            "policy": policy,
            "scenario": scenario,
            "score": {"mean": score, "ci_low": score - 1.0, "ci_high": score + 1.0},
            "out_of_distribution": list(ood),
        }

    results = tmp_path / "results"
    for suite, scenarios in (("one", ["a"]), ("two", ["a", "b"])):
        rows = [
            entry(f"ppo:s{seed}", sc, 10.0 * seed + i + (5.0 if suite == "two" else 0.0), ood)
            for seed in range(3)
            for i, sc in enumerate(scenarios)
            for ood in [("budget_guard",) if suite == "one" else ("budget_guard", "data")]
        ]
        rows.append(entry("gs", scenarios[0], 1.0))
        (results / "runs" / suite).mkdir(parents=True)
        summary = {"suite": suite, "results": rows}
        (results / "runs" / suite / "summary.json").write_text(json.dumps(summary))
    meta = {
        "seeds": {
            "results": "runs",
            "suites": ["one", "two", "absent"],
            "written_by": "a test",
            "references": ["gs"],
            "groups": [
                {"label": "ppo", "policies": ["ppo:s0", "ppo:s1", "ppo:s2"]},
                {"label": "unplayed", "policies": ["ppo:s0", "ppo:s9"]},
            ],
        }
    }
    (results / "measured.json").write_text(json.dumps(meta))
    monkeypatch.setattr(gen_docs, "RESULTS", results)
    table = gen_docs.seeds_table("seeds")
    rows = {
        line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")
    }
    # suite "two": the mean of scenarios a and b per training seed (5.5, 15.5, 25.5)
    half = gen_docs.seed_interval([5.5, 15.5, 25.5])[1]
    assert f"| 15.5 ± {half:.1f} (5.5 / 15.5 / 25.5) (OOD) |" in rows["ppo"]
    assert f"| 10.0 ± {half:.1f} (0.0 / 10.0 / 20.0) |" in rows["ppo"]
    assert rows["unplayed"].count("| - ") == 2
    assert "`absent`" not in table and "`gs` 1.0" in table


def test_real_table_pairs_the_seeds_both_runs_have(tmp_path, monkeypatch):
    from scipy import stats

    results = tmp_path / "results"
    spec = {"family": "fedlora", "headline": "real-final-loss"}
    losses = {  # policy -> final loss per seed; the real run misses seed 2 of aaba
        "real": {"lyapunov": [0.93, 0.90, 0.91], "gs": [0.95, 0.92, 0.93], "aaba": [0.96, 0.94]},
        "surr": {
            "lyapunov": [0.91, 0.90, 0.92],
            "gs": [0.92, 0.91, 0.93],
            "aaba": [0.93, 0.92, 0.9],
        },
    }
    for name, table in losses.items():
        (results / name).mkdir(parents=True)
        (results / name / "run.json").write_text(json.dumps({"spec": spec}))
        rows = [
            {"policy": p, "seed": 1000 + i, "metrics": {"final_loss": v, "avg_scheduled": 10.0 + i}}
            for p, values in table.items()
            for i, v in enumerate(values)
        ]
        (results / name / "episodes.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    meta = {
        "command": "real-cmd",
        "surrogate_command": "surr-cmd",
        "reference": "lyapunov",
        "policies": ["lyapunov", "gs", "aaba", "never-played"],
        "seeds": 3,
    }
    (results / "measured.json").write_text(json.dumps({"real": meta}))
    monkeypatch.setattr(gen_docs, "RESULTS", results)
    text = gen_docs.real_table("real", "surr")
    rows = {
        line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")
    }
    assert set(rows) == {"`lyapunov`", "`gs`", "`aaba`"}
    assert "2 of the 3 test seeds" in text and "--resume" in text
    # seeds 0 and 1 only: gs real mean 0.935, surrogate 0.915; paired +0.02 and +0.01
    assert (
        "| 0.9350 | 0.9150 | +0.0200 | 10.50 | 10.50 | +0.0200 (0/2 below) | +0.0100 (0/2 below) |"
        in rows["`gs`"]
    )
    rho = stats.spearmanr([0.915, 0.935, 0.95], [0.905, 0.915, 0.925]).statistic
    assert f"(Spearman {rho:.2f})" in text
    assert "real: `lyapunov` < `gs` < `aaba`" in text


def test_api_pages_cover_every_package_and_module():
    packages = gen_docs.api_packages()
    assert "edgeft.envs.fedlora" in packages and "edgeft.training" in packages
    page = gen_docs.api_page("edgeft.envs.fedlora")
    assert "::: edgeft.envs.fedlora.env" in page and "::: edgeft.envs.fedlora.config" in page
    modules = {
        p.stem for p in (ROOT / "envs" / "fedlora").glob("*.py") if not p.stem.startswith("_")
    }
    assert {m.rsplit(".", 1)[1] for m in gen_docs.package_modules("edgeft.envs.fedlora")} == modules


def test_the_api_reference_resolves_the_installed_layout(tmp_path):
    griffe = pytest.importorskip("griffe")
    hooks = _tool("mkdocs_hooks")
    tree = hooks.link_tree(tmp_path / "tree")
    pkg = griffe.load(
        "edgeft", search_paths=[str(tree)], try_relative_path=False, resolve_aliases=False
    )
    env = pkg["envs.fedlora.env.FedLoRASchedulingEnv"]
    assert "## Action space" in env.docstring.value
    assert pkg["training.protocol"].docstring is not None
    assert pkg["baselines.mec.hindsight"].filepath.name == "hindsight.py"


def test_roles_become_links_to_public_objects_and_code_otherwise(tmp_path):
    griffe = pytest.importorskip("griffe")
    roles = _tool("griffe_roles")
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "__init__.py").write_text(
        '"""See :class:`~toy.mod.Thing`, :func:`helper`, :func:`_hidden` and '
        ':class:`numpy.ndarray`."""\n'
        "from toy.mod import Thing as Thing\n"
    )
    (tmp_path / "toy" / "mod.py").write_text(
        '"""Uses :class:`Thing` and :data:`LIMIT`."""\n\n#: the limit\nLIMIT = 3\n\n\n'
        'class Thing:\n    """A thing."""\n\n\ndef helper():\n    """Help."""\n\n\n'
        'def _hidden():\n    """Hidden."""\n'
    )
    pkg = griffe.load(
        "toy",
        search_paths=[str(tmp_path)],
        try_relative_path=False,
        extensions=griffe.load_extensions(roles.SphinxRoles()),
    )
    assert pkg.docstring.value == (
        "See [`Thing`][toy.mod.Thing], `helper`, `_hidden` and `numpy.ndarray`."
    )
    assert pkg["mod"].docstring.value == (
        "Uses [`Thing`][toy.mod.Thing] and [`LIMIT`][toy.mod.LIMIT]."
    )
    assert pkg["mod.LIMIT"].docstring.value == "the limit"


def test_nav_drops_missing_optional_pages_and_lists_unlisted_ones(tmp_path):
    hooks = _tool("mkdocs_hooks")
    (tmp_path / "index.md").write_text("# x\n")
    (tmp_path / "new-page.md").write_text("# y\n")
    optional = next(iter(hooks.OPTIONAL_PAGES))
    nav = [{"Home": "index.md"}, {"Section": [{"Optional": optional}]}]
    assert hooks._complete_nav(nav, tmp_path) == [
        {"Home": "index.md"},
        {hooks.EXTRA_SECTION: ["new-page.md"]},
    ]
    (tmp_path / optional).write_text("# z\n")
    assert hooks._complete_nav(nav, tmp_path)[1] == {"Section": [{"Optional": optional}]}


def _prose_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("path", _prose_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_docs_speak_of_the_software_not_of_its_making(path):
    text = path.read_text(encoding="utf-8").lower()
    found = [p for p in WORK_PHRASES if re.search(r"\b" + re.escape(p), text)]
    lines = [n + 1 for n, line in enumerate(text.splitlines()) if any(p in line for p in found)]
    assert not found, (
        f"{path.relative_to(ROOT)} speaks of the work, not the software: {found} (lines {lines})"
    )
