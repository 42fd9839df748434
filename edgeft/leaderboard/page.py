"""The leaderboard's web page: ``index.html`` beside ``summary.md``, one self-contained file.

The page needs no network and no other file when it is viewed: its CSS and JavaScript are inline
and the PNG plots are embedded as base64 ``data:`` URIs (the file can be mailed or moved on its
own; a Content-Security-Policy forbids every other source). It shows the suite's name, version
and description; per scenario a sortable table of the policies (click a header to sort, again to
reverse): score, headline with its interval, the constraint mark, the paired difference from
the reference policy, and the family's other metric columns behind a toggle; the bound row
marked; the plots; and a legend of the columns. Every text comes from the summary and the
family record (:func:`edgeft.envs.family.get_family`), none is written per family.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeft.envs.family import get_family
from edgeft.episodes import TIMING
from edgeft.leaderboard.store import write_atomic
from edgeft.leaderboard.summary import ranked

PAGE_FILE = "index.html"

_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)

_CSS = """
:root { color-scheme: light; --line: #d0d4da; --muted: #5b6470; --bound: #eef3fb; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1c2128; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 .4rem; }
.version { color: var(--muted); font-weight: normal; }
.meta, .note { color: var(--muted); }
.scroll { overflow-x: auto; }
table.board { border-collapse: collapse; margin: .4rem 0 .8rem; }
table.board th, table.board td { padding: .3rem .6rem; border-bottom: 1px solid var(--line);
       white-space: nowrap; }
table.board td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.board th { text-align: left; vertical-align: bottom; }
table.board th button { font: inherit; font-weight: 600; background: none; border: 0;
       padding: 0; cursor: pointer; color: inherit; text-align: inherit; }
table.board th button:focus-visible { outline: 2px solid #3a6fd8; }
table.board th[aria-sort="ascending"] button::after { content: " \\25B2"; }
table.board th[aria-sort="descending"] button::after { content: " \\25BC"; }
table.board tr.bound td { background: var(--bound); font-style: italic; }
.ci { color: var(--muted); font-size: .85em; }
.breaks { color: #b42318; font-weight: 600; }
.tag { font-size: .8em; color: var(--muted); border: 1px solid var(--line); border-radius: 3px;
       padding: 0 .3em; margin-left: .3em; font-style: normal; }
body:not(.show-more) .more { display: none; }
#toggle-more { margin: .3rem 0; }
dl.legend { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dl.legend dt { font-weight: 600; }
dl.legend dd { margin: 0; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .9em; }
"""

# Sorting: a header's first click sorts best first (its data-better, or A-Z for text), a second
# click reverses; cells without a value stay last either way; ties keep the table's first order.
_JS = """
(function () {
  "use strict";
  function sortTable(table, col, th) {
    var first = th.dataset.better === "high" ? "descending" : "ascending";
    var now = th.getAttribute("aria-sort");
    var dir = now === first ? (first === "ascending" ? "descending" : "ascending") : first;
    var sign = dir === "ascending" ? 1 : -1;
    var text = th.dataset.type === "text";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
      var xm = x === undefined || x === "", ym = y === undefined || y === "";
      if (xm || ym) {
        if (xm && ym) { return a.dataset.rank - b.dataset.rank; }
        return xm ? 1 : -1;
      }
      var c = text ? x.localeCompare(y) : Number(x) - Number(y);
      return c !== 0 ? sign * c : a.dataset.rank - b.dataset.rank;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", dir);
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.board"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      var button = th.querySelector("button");
      if (button) {
        button.addEventListener("click", function () { sortTable(table, col, th); });
      }
    });
  });
  var toggle = document.getElementById("toggle-more");
  if (toggle) {
    toggle.addEventListener("click", function () {
      var shown = document.body.classList.toggle("show-more");
      toggle.setAttribute("aria-pressed", shown ? "true" : "false");
      toggle.textContent = shown ? toggle.dataset.hide : toggle.dataset.show;
    });
  }
})();
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: float, digits: str = ".4g") -> str:
    return format(x, digits) if math.isfinite(x) else str(x)


def _value(x: float) -> str:
    """A data-value attribute: the number, or empty (sorted last) when it is not finite."""
    return repr(float(x)) if math.isfinite(x) else ""


def _stat_cell(d: dict[str, float] | None, digits: str = ".4g", cls: str = "") -> str:
    """mean ± half-width, with the interval in the tooltip (and data-value = mean)."""
    klass = f"num {cls}".strip()
    if d is None:
        return f'<td class="{klass}" data-value="">-</td>'
    half = (d["ci_high"] - d["ci_low"]) / 2
    text = _num(d["mean"], digits)
    if half > 0:
        text += f' <span class="ci">± {half:.2g}</span>'
    tip = f"95% interval [{_num(d['ci_low'])}, {_num(d['ci_high'])}]"
    if "episodes" in d:
        tip += f" over {d['episodes']} seed(s)"
    return f'<td class="{klass}" data-value="{_value(d["mean"])}" title="{_e(tip)}">{text}</td>'


def _interval_cell(d: dict[str, float] | None, digits: str = ".4g") -> str:
    """mean [low, high]: the headline and the paired difference show their interval."""
    if d is None:
        return '<td class="num" data-value="">-</td>'
    ci = f'<span class="ci">[{_num(d["ci_low"], digits)}, {_num(d["ci_high"], digits)}]</span>'
    return (
        f'<td class="num" data-value="{_value(d["mean"])}" '
        f'title="mean and bootstrap 95% interval">{_num(d["mean"], digits)} {ci}</td>'
    )


def _header(title: str, kind: str, better: str | None, tip: str, more: bool = False) -> str:
    attrs = f' data-type="{kind}"'
    if better is not None:
        attrs += f' data-better="{better}"'
    cls = ' class="more"' if more else ""
    return (
        f'<th scope="col"{cls}{attrs} title="{_e(tip)}">'
        f'<button type="button">{_e(title)}</button></th>'
    )


def _columns(summary: dict[str, Any]) -> tuple[list[tuple[str, str, str]], bool]:
    """The metric columns (key, part, title) and whether they start hidden (scored tables)."""
    family = get_family(summary["family"])
    cols = [(m, "metrics", d.title) for m, d in family.metrics.items()]
    cols += [(m, "timing", t) for m, (t, _) in TIMING.items()]
    return cols, summary.get("headline") is not None


def _table(summary: dict[str, Any], entries: list[dict[str, Any]]) -> str:
    family = get_family(summary["family"])
    head = summary.get("headline")
    cols, hidden = _columns(summary)
    ths = [_header("policy", "text", None, "policy name (click to sort A-Z)")]
    if head is not None:
        ths += _headline_headers(head)
    for m, part, title in cols:
        lower = family.metrics[m].lower_is_better if part == "metrics" else TIMING[m][1]
        ths.append(
            _header(
                title,
                "num",
                "low" if lower else "high",
                f"{'lower' if lower else 'higher'} is better",
                more=hidden,
            )
        )
    rows = []
    for rank, e in enumerate(entries):
        bound = bool(e.get("bound"))
        cells = [_name_cell(e)]
        if head is not None:
            cells += _headline_cells(head, e)
        for m, part, _ in cols:
            cells.append(_stat_cell(e[part].get(m), cls="more" if hidden else ""))
        cls = ' class="bound"' if bound else ""
        rows.append(
            f'<tr{cls} data-rank="{rank}" data-policy="{_e(e["policy"])}">'
            + "".join(cells)
            + "</tr>"
        )
    return (
        '<div class="scroll"><table class="board">\n<thead><tr>'
        + "".join(ths)
        + "</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table></div>"
    )


def _headline_headers(head: dict[str, Any]) -> list[str]:
    """The header cells of the headline's columns: score, headline, % from bound, constraint and
    the paired difference from the reference."""
    better = "high" if head["higher_is_better"] else "low"
    ths = []
    if head["bound"]:
        ths.append(
            _header(
                "score",
                "num",
                "high",
                f"0 = {head['anchor']}, 100 = {head['bound']} (the hindsight bound)",
            )
        )
    ths.append(
        _header(
            head["title"],
            "num",
            better,
            f"{'higher' if head['higher_is_better'] else 'lower'} is better",
        )
    )
    if head["bound"]:
        ths.append(
            _header(
                "% from bound",
                "num",
                "low",
                "how far the headline is from the hindsight bound, in % of the bound",
            )
        )
    return [
        *ths,
        _header("constraint", "num", "low", head["constraint"]),
        _header(
            f"vs {head['reference']} (paired)",
            "num",
            better,
            f"mean per-seed difference of {head['title']} from {head['reference']}",
        ),
    ]


def _name_cell(e: dict[str, Any]) -> str:
    """The row's policy cell, tagged "bound" or "OOD" (naming the fields that differ)."""
    name = _e(e["policy"])
    if e.get("bound"):
        name += '<span class="tag">bound</span>'
    if e.get("out_of_distribution"):
        fields = ", ".join(e["out_of_distribution"])
        name += (
            f'<span class="tag" title="out of distribution: this env differs from the '
            f"agent's training env in {_e(fields)}\">OOD</span>"
        )
    return f'<th scope="row" data-value="{_e(e["policy"])}">{name}</th>'


def _headline_cells(head: dict[str, Any], e: dict[str, Any]) -> list[str]:
    """The row's cells under :func:`_headline_headers`."""
    cells = []
    if head["bound"]:
        cells.append(_stat_cell(e.get("score"), ".1f"))
    cells.append(_interval_cell(e.get("headline")))
    if head["bound"]:
        cells.append(_stat_cell(e.get("above_bound"), ".2f"))
    n_break = e.get("breaks_constraint")
    if e.get("bound") or n_break is None:
        cells.append('<td class="num" data-value="">-</td>')
    elif n_break:
        cells.append(
            f'<td class="num breaks" data-value="{n_break}" '
            f'title="breaks the constraint in {n_break} of {e["episodes"]} '
            f'episode(s)">✗ {n_break}/{e["episodes"]}</td>'
        )
    else:
        cells.append(
            '<td class="num" data-value="0" title="meets the constraint in every episode">✓</td>'
        )
    cells.append(_interval_cell(e.get("vs_reference"), "+.3g"))
    return cells


def _headline_legend(head: dict[str, Any]) -> list[tuple[str, str]]:
    """The legend's entries for a scored suite's headline columns (without the score and the
    bound's entries where the headline has no hindsight bound)."""
    items = [
        (
            "score",
            f"0 = <code>{_e(head['anchor'])}</code> (the family's anchor policy), "
            f"100 = <code>{_e(head['bound'])}</code> (the episode's hindsight bound: "
            f"the best any policy could do knowing the future), per test seed, on "
            f"{_e(head['title'])}; mean ± half-width of its interval",
        ),
        (
            _e(head["title"]),
            f"the headline ({'higher' if head['higher_is_better'] else 'lower'}"
            " is better): mean [interval] over the test seeds",
        ),
        (
            "% from bound",
            "how far the headline is from the hindsight bound, in % of the "
            "bound, per seed (the bound is a certified limit, not a schedule: "
            "it may not be reachable)",
        ),
        (
            "constraint",
            f"{_e(head['constraint'])}; ✗ n/m = broken in n of the policy's m "
            "episodes, ✓ = met in every one",
        ),
        (
            f"vs {_e(head['reference'])} (paired)",
            f"mean per-seed difference of {_e(head['title'])} from "
            f"<code>{_e(head['reference'])}</code> on the same seeds [interval]",
        ),
        (
            "bound row",
            f"<code>{_e(head['bound'])}</code> (shaded, marked "
            '<span class="tag">bound</span>) is not a policy: it scores 100 '
            "by definition and is not ranked",
        ),
    ]
    if not head["bound"]:  # a headline without a hindsight bound: no score
        items = [(k, v) for k, v in items if k not in ("score", "% from bound", "bound row")]
    return items


def _legend(summary: dict[str, Any]) -> str:
    family = get_family(summary["family"])
    head = summary.get("headline")
    cols, hidden = _columns(summary)
    items: list[tuple[str, str]] = []
    if head is not None:
        items += _headline_legend(head)
    for m, part, title in cols:
        lower = family.metrics[m].lower_is_better if part == "metrics" else TIMING[m][1]
        what = (
            "decision time per round, measured (varies from run to run)"
            if part == "timing"
            else "per-episode metric"
        )
        items.append(
            (
                _e(title),
                f"{what}; {'lower' if lower else 'higher'} is better; mean ± "
                "half-width" + (" (shown with the toggle)" if hidden else ""),
            )
        )
    items.append(
        (
            "intervals",
            "bootstrap 95% intervals of the mean over the test seeds (hover a cell for its bounds)",
        )
    )
    return '<dl class="legend">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = f"plots/{path.name}" if path.parent.name == "plots" else path.name
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(path.stem)} plot">'
        f"<figcaption>{_e(name)}</figcaption></figure>"
    )


def page_html(summary: dict[str, Any], plots: Sequence[Path] = ()) -> str:
    """The page of a summary (:func:`edgeft.leaderboard.summarize`) and its PNG plots."""
    head = summary.get("headline")
    entries = ranked(summary) if head is not None else summary["results"]
    scenarios = list(dict.fromkeys(e["scenario"] for e in entries))
    title = f"{summary['suite']} v{summary['version']}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{_e(title)} leaderboard</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<h1>{_e(summary["suite"])} <span class="version">v{_e(summary["version"])}</span></h1>',
        f'<p class="description">{_e(summary["description"])}</p>',
        f'<p class="meta">{summary["episodes"]}/{summary["expected_episodes"]} episodes; suite '
        f"fingerprint <code>{_e(summary['fingerprint'])}</code>; {_e(summary['family'])} family"
        "</p>",
    ]
    _, hidden = _columns(summary)
    if hidden:
        parts.append(
            '<button type="button" id="toggle-more" aria-pressed="false" '
            'data-show="Show all metric columns" data-hide="Hide the other metric '
            'columns">Show all metric columns</button>'
        )
    parts.append(
        '<p class="note">Click a column header to sort (best first), again to reverse.</p>'
    )
    for sc in scenarios:
        if len(scenarios) > 1:
            parts.append(f"<h2>{_e(sc)}</h2>")
        parts.append(_table(summary, [e for e in entries if e["scenario"] == sc]))
    parts += ["<h2>Legend</h2>", _legend(summary)]
    if plots:
        parts.append("<h2>Plots</h2>")
        parts += [_figure(Path(p)) for p in plots]
    parts += [f"<script>{_JS}</script>", "</body></html>", ""]
    return "\n".join(parts)


def write_page(out: Path, summary: dict[str, Any], plots: Sequence[Path] = ()) -> Path:
    """Write ``out/index.html`` (rewritten on every run); returns its path."""
    path = Path(out) / PAGE_FILE
    write_atomic(path, page_html(summary, plots))
    return path
