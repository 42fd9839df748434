"""The leaderboard's web page (index.html), opened in a real headless Chromium through selenium:
no console errors, sortable tables that agree with the summary, the hidden metric columns'
toggle, every plot loaded, and a screenshot kept as a test artifact."""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from edgeft.envs.family import get_family

from edgeft import leaderboard as lb
from edgeft.leaderboard.page import PAGE_FILE, page_html
from edgeft.suites import FEDLORA, MEC, Scenario, Suite

TINY = Suite(
    "tiny-page",
    1,
    "fedlora",
    "test suite <with> & markup",
    (
        Scenario("k6", FEDLORA, {"num_devices": 6, "episode_rounds": 8}),
        Scenario(
            "k6-tight",
            FEDLORA,
            {"num_devices": 6, "episode_rounds": 8, "delay_budget_per_bit": 1e-6},
        ),
    ),
    num_seeds=3,
)
POLICIES = ["gs", "lyapunov", "aaba"]
INSTALL = (
    "apt-get install -y chromium chromium-driver && pip install selenium "
    "(or pip install -e '.[browser]')"
)
CHROME_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
]


def _find(*names: str) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("page") / "run"
    lb.run_leaderboard(TINY, POLICIES, out, backend="serial", progress=False)
    return out


@pytest.fixture(scope="module")
def driver():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip(f"selenium is not installed: {INSTALL}")
    chrome = _find("chromium", "chromium-browser", "google-chrome")
    chromedriver = _find("chromedriver")
    if chrome is None or chromedriver is None:
        pytest.skip(f"Chromium or chromedriver is missing: {INSTALL}")
    profile = tempfile.mkdtemp(prefix="edgeft-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in [*CHROME_ARGS, f"--user-data-dir={profile}"]:
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(chromedriver), options=opts)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _policies(table) -> list[str]:
    return [
        tr.get_attribute("data-policy") for tr in table.find_elements("css selector", "tbody tr")
    ]


def _header(table, title: str):
    for th in table.find_elements("css selector", "thead th"):
        if th.find_element("css selector", "button").text == title:
            return th
    raise AssertionError(f"no header {title!r}")


def _expected(entries: list[dict], key, descending: bool) -> list[str]:
    """The order a sort by ``key`` must give: missing values last, ties in table order."""
    have = [e for e in entries if key(e) is not None]
    missing = [e["policy"] for e in entries if key(e) is None]
    have = sorted(have, key=key, reverse=descending)  # stable either way: ties keep table order
    return [e["policy"] for e in have] + missing


def _mean(part: str):
    def key(e: dict) -> float | None:
        d = e.get(part)
        return d["mean"] if d is not None and math.isfinite(d["mean"]) else None

    return key


def test_page_in_headless_chromium(run_dir, driver, tmp_path):
    summary = json.loads((run_dir / "summary.json").read_text())
    head = summary["headline"]
    page = run_dir / PAGE_FILE
    assert page.is_file()
    driver.get(page.resolve().as_uri())
    assert driver.find_element("tag name", "h1").text == "tiny-page v1"
    assert "test suite <with> & markup" in driver.find_element("css selector", ".description").text

    tables = driver.find_elements("css selector", "table.board")
    scenarios = [sc.name for sc in TINY.scenarios]
    assert [h.text for h in driver.find_elements("css selector", "h2")][:2] == scenarios
    assert len(tables) == len(scenarios)
    ranked = lb.ranked(summary)
    for sc, table in zip(scenarios, tables):
        entries = [e for e in ranked if e["scenario"] == sc]
        # first the table's own order: the summary's ranking, the bound row first and marked
        assert _policies(table) == [e["policy"] for e in entries]
        first = table.find_element("css selector", "tbody tr")
        assert first.get_attribute("data-policy") == lb.HINDSIGHT
        assert "bound" in first.get_attribute("class") and "bound" in first.text
        # score: best first, again reverses (missing values stay last)
        th = _header(table, "score")
        th.find_element("css selector", "button").click()
        assert th.get_attribute("aria-sort") == "descending"
        assert _policies(table) == _expected(entries, _mean("score"), descending=True)
        th.find_element("css selector", "button").click()
        assert th.get_attribute("aria-sort") == "ascending"
        assert _policies(table) == _expected(entries, _mean("score"), descending=False)
        # the headline in its own direction, and the paired difference
        th = _header(table, head["title"])
        th.find_element("css selector", "button").click()
        assert _policies(table) == _expected(
            entries, _mean("headline"), descending=head["higher_is_better"]
        )
        th = _header(table, f"vs {head['reference']} (paired)")
        th.find_element("css selector", "button").click()
        assert _policies(table) == _expected(
            entries, _mean("vs_reference"), descending=head["higher_is_better"]
        )
        # text: A-Z
        _header(table, "policy").find_element("css selector", "button").click()
        assert _policies(table) == sorted(e["policy"] for e in entries)
        # the constraint mark: ✗ n/m exactly for the policies that break it
        for tr in table.find_elements("css selector", "tbody tr"):
            e = next(x for x in entries if x["policy"] == tr.get_attribute("data-policy"))
            cell = tr.find_elements("css selector", "td")[3].text  # after % from bound
            if e.get("breaks_constraint"):
                assert cell == f"✗ {e['breaks_constraint']}/{e['episodes']}"
            else:
                assert "✗" not in cell

    # the other metric columns: hidden, then shown by the toggle
    family = get_family(summary["family"])
    more = driver.find_elements("css selector", "th.more")
    assert [m.get_attribute("textContent") for m in more[: len(family.metrics)]] == [
        d.title for d in family.metrics.values()
    ]
    assert not any(m.is_displayed() for m in more)
    toggle = driver.find_element("id", "toggle-more")
    toggle.click()
    assert all(m.is_displayed() for m in more)
    assert toggle.get_attribute("aria-pressed") == "true"
    # a metric column sorts by its own direction (final loss: lower first)
    table = tables[0]
    th = _header(table, family.metrics["final_loss"].title)
    th.find_element("css selector", "button").click()
    entries = [e for e in ranked if e["scenario"] == scenarios[0]]
    assert _policies(table) == _expected(
        entries, lambda e: e["metrics"]["final_loss"]["mean"], descending=False
    )

    # the legend takes its texts from the summary and the family record
    legend = driver.find_element("css selector", "dl.legend").text
    for text in (
        head["constraint"],
        head["anchor"],
        head["bound"],
        head["reference"],
        *(d.title for d in family.metrics.values()),
    ):
        assert text in legend

    # every plot is embedded and loaded
    imgs = driver.find_elements("tag name", "img")
    plots = sorted((run_dir / "plots").glob("*.png"))
    assert len(imgs) == len(plots) == 1 + len(TINY.scenarios)
    for img in imgs:
        assert img.get_attribute("src").startswith("data:image/png;base64,")
        assert (
            driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
            > 0
        )

    driver.refresh()  # the screenshot shows the page as it opens
    assert _policies(driver.find_element("css selector", "table.board")) == [
        e["policy"] for e in ranked if e["scenario"] == scenarios[0]
    ]
    shot = tmp_path / "leaderboard-page.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot of the leaderboard page: {shot}")
    folder = os.environ.get("EDGEFT_TEST_ARTIFACTS")
    if folder:
        dest = Path(folder) / "leaderboard-page.png"  # e.g. results/test-artifacts
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, dest)
        print(f"copied to {dest}")

    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []


def test_page_needs_no_network_and_escapes_its_texts(run_dir):
    text = (run_dir / PAGE_FILE).read_text(encoding="utf-8")
    # nothing is fetched at view time: no URL but data: ones, and a policy that forbids others
    assert "default-src 'none'" in text
    srcs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text)
    assert srcs and all(s.startswith("data:") for s in srcs), srcs
    assert "http://" not in text and "https://" not in text
    assert "test suite &lt;with&gt; &amp; markup" in text and "<with>" not in text


def test_unscored_and_plotless_pages(tmp_path):
    suite = Suite(
        "tiny-page-mec",
        1,
        "mec",
        "x",
        (Scenario("n4", MEC, {"num_users": 4, "num_servers": 2, "episode_rounds": 1}),),
        num_seeds=2,
    )
    summary = lb.run_leaderboard(
        suite,
        ["greedy"],
        tmp_path / "m",
        backend="serial",
        progress=False,
        plots=False,
        score=False,
    )
    text = (tmp_path / "m" / PAGE_FILE).read_text(encoding="utf-8")
    assert page_html(summary) == text  # the same function, no hidden state
    assert "<img" not in text  # --no-plots: no plots section
    # --no-score: the headline's columns are there, without scores
    assert re.search(
        r'data-policy="greedy"><th[^>]*>greedy</th><td class="num" '
        r'data-value="">-</td>',
        text,
    )
    # a family without a headline: its metric columns are shown, nothing hidden
    del summary["headline"]
    text = page_html(summary)
    assert 'id="toggle-more"' not in text and 'class="more"' not in text
    for d in get_family("mec").metrics.values():
        assert f'<button type="button">{html.escape(d.title)}</button>' in text
    assert "score" not in re.sub(r"<style>.*?</style>|<script>.*?</script>", "", text, flags=re.S)
