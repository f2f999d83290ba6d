"""The published report site: structure, disclosure control, offline use, accessibility, browser rendering.

The site is built once per test process from the synthetic warehouse of `report_fixtures`
(twelve fictional prisons, 24 months, suppressed cells, a poison row in the unpublished table).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import plotly.graph_objects as go
import pytest
from report_fixtures import POISON_CODE, POISON_NAME, POISON_ORIGINAL_ROW, make_warehouse, published_site

from pipelines import report

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SMALL = set(range(1, 8))


@pytest.fixture(scope="module")
def site():
    return published_site()


def pages(root: Path) -> list[Path]:
    return sorted(root.rglob("*.html"))


# --- a small HTML reader (stdlib only) --------------------------------------------------------


class Page(HTMLParser):
    """Collects what the tests look at: tags with attributes, table cells, scripts, headings."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.headings: list[tuple[int, str]] = []
        self.scripts: dict[str, str] = {}  # id -> JSON text
        self.rows: list[dict] = []  # <tr data-level=...>: {"attrs", "cells": {data-col: text}}
        self._row: dict | None = None
        self._cell: tuple[str, list[str]] | None = None
        self._script: tuple[str, list[str]] | None = None
        self._heading: tuple[int, list[str]] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "tr":
            self._row = {"attrs": a, "cells": {}, "texts": []}
            self.rows.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = (a.get("data-col", ""), [])
        elif tag == "script" and a.get("type") == "application/json":
            self._script = (a.get("id", ""), [])
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = (int(tag[1]), [])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            text = " ".join("".join(self._cell[1]).split())
            self._row["texts"].append(text)
            if self._cell[0]:
                self._row["cells"][self._cell[0]] = text
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "script" and self._script is not None:
            self.scripts[self._script[0]] = "".join(self._script[1])
            self._script = None
        elif self._heading is not None and tag == f"h{self._heading[0]}":
            self.headings.append((self._heading[0], " ".join("".join(self._heading[1]).split())))
            self._heading = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1].append(data)
        if self._script is not None:
            self._script[1].append(data)
        if self._heading is not None:
            self._heading[1].append(data)

    def find(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def with_class(self, cls: str, tag: str | None = None) -> list[dict]:
        return [a for t, a in self.tags if (tag is None or t == tag) and cls in a.get("class", "").split()]


_PARSED: dict[Path, Page] = {}


def parse(path: Path) -> Page:
    path = path.resolve()
    if path not in _PARSED:
        _PARSED[path] = Page(path.read_text(encoding="utf-8"))
    return _PARSED[path]


def as_number(text: str) -> float | None:
    text = text.replace(",", "").replace("\u2212", "-").strip()
    try:
        return float(text)
    except ValueError:
        return None


# --- the site ---------------------------------------------------------------------------------


def test_build_report_writes_every_page(site):
    summary, root = site.summary, site.root
    conn = site.conn
    prisons = conn.execute("SELECT count(DISTINCT area_code) FROM published.indicator_values "
                           "WHERE level = 'prison'").fetchone()[0]
    regions = conn.execute("SELECT count(DISTINCT area_code) FROM published.indicator_values "
                           "WHERE level = 'region'").fetchone()[0]
    assert summary.root == root
    assert summary.pages == 1 + 28 + 1 + prisons + regions + 3  # overview, indicators, picker, areas, 3 more
    assert len(pages(root)) == summary.pages
    for name in ("index.html", "areas.html", "methodology.html", "data-quality.html", "downloads.html"):
        assert (root / name).is_file()
    assert len(list((root / "indicators").glob("*.html"))) == 28
    assert (root / "indicators" / "P01a.html").is_file()
    assert summary.bytes == sum(p.stat().st_size for p in summary.paths)
    assert all(p.exists() for p in summary.paths)
    meta = summary.metadata()
    assert meta["pages"] == summary.pages and meta["bytes"] == summary.bytes


def test_plotly_is_shipped_once_and_the_site_stays_small(site):
    root = site.root
    bundles = [p for p in root.rglob("*.js") if "plotly" in p.name]
    assert [p.relative_to(root).as_posix() for p in bundles] == ["assets/plotly.min.js"]
    import plotly

    shipped = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    assert bundles[0].read_bytes() == shipped.read_bytes()
    pages_and_assets = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and "data" not in p.parts
                           and p.suffix != ".xlsx")
    assert pages_and_assets < 10_000_000, pages_and_assets
    largest = max(p.stat().st_size for p in pages(root))
    assert largest < 400_000, largest  # charts inline as JSON, no library copy per page


def test_overview_has_the_twelve_headline_tiles(site):
    page = parse(site.root / "index.html")
    tiles = page.with_class("tile", "li")
    assert len(tiles) == 12
    headline = [r[0] for r in site.conn.execute(
        "SELECT code FROM indicators.catalogue WHERE headline ORDER BY priority, code").fetchall()]
    assert [t["id"] for t in tiles] == [f"tile-{c}" for c in headline]
    text = (site.root / "index.html").read_text()
    assert text.count('class="sparkline"') == 12
    assert text.count("95% CI") >= 12
    assert "Latest month (SPC)" in text and "Prisons compared with England" in text
    sparklines = page.with_class("sparkline", "svg")
    assert all(s.get("role") == "img" and s.get("aria-label", "").startswith("Trend in England") for s in sparklines)


def test_indicator_pages_have_charts_tables_definition_and_download(site):
    root = site.root
    for path in sorted((root / "indicators").glob("*.html")):
        code = path.stem
        page = parse(path)
        text = path.read_text()
        assert page.headings[0][0] == 1 and page.headings[0][1].startswith(code)
        charts = page.with_class("js-plotly", "div")
        assert charts, f"{code}: no chart"
        for chart in charts:
            payload = json.loads(page.scripts[chart["data-figure"]])
            assert payload["config"] == {"displaylogo": False, "responsive": True}
            go.Figure(data=payload["data"], layout=payload["layout"])  # valid Plotly figure
        assert 'id="definition"' in text
        href = f"../data/indicators/{code}.csv"
        assert page.find("a", href=href), code
        assert (root / "data" / "indicators" / f"{code}.csv").is_file()
    p01a = parse(root / "indicators" / "P01a.html")
    assert {c["id"] for c in p01a.with_class("js-plotly")} == {"spc-P01a", "funnel-P01a"}
    assert len([r for r in p01a.rows if r["attrs"].get("data-level") == "prison"]) == 12
    p04a = parse(root / "indicators" / "P04a.html")
    assert {c["id"] for c in p04a.with_class("js-plotly")} == {"spc-P04a"}  # England only: no funnel


def test_sortable_headers_are_buttons(site):
    for path in pages(site.root):
        text = path.read_text()
        for table in re.findall(r'<table class="sortable".*?</thead>', text, flags=re.S):
            headers = re.findall(r"<th\b[^>]*>.*?</th>", table, flags=re.S)
            assert headers
            for th in headers:
                assert 'aria-sort="none"' in th and '<button type="button" class="sort-button"' in th, path


def test_funnel_points_come_from_published_rows(site):
    conn = site.conn
    page = parse(site.root / "indicators" / "P01a.html")
    payload = json.loads(page.scripts["funnel-P01a-data"])
    plotted = {row[0]: row for trace in payload["data"] if trace.get("meta", {}).get("level") == "prison"
               for row in trace["customdata"]}
    published = {r[0]: r[1:] for r in conn.execute("""
        SELECT area_code, numerator, denominator FROM published.indicator_values
        WHERE indicator_id = 'P01a' AND level = 'prison' AND period_type = 'quarter' AND NOT suppressed
          AND period_start = (SELECT max(period_start) FROM published.indicator_values
                              WHERE indicator_id = 'P01a' AND period_type = 'quarter')""").fetchall()}
    assert set(plotted) == set(published)
    for code, row in plotted.items():
        assert (row[2], row[3]) == published[code]


# --- disclosure control -------------------------------------------------------------------------


def test_no_unpublished_figure_or_original_row_reaches_the_site(site):
    for path in site.root.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".csv", ".json", ".js", ".css"):
            text = path.read_text(encoding="utf-8", errors="replace")
            assert POISON_NAME not in text, path
            assert POISON_ORIGINAL_ROW not in text, path
            assert "987654.3" not in text and "987,654.3" not in text, path
            if path.suffix != ".js":
                assert re.search(rf"\b{POISON_CODE}\b", text) is None, path


def _numerators_in_html(root: Path) -> tuple[list[tuple], int]:
    """(level, area, numerator) of every figure shown below England, and the number of [c] cells."""
    shown, suppressed = [], 0
    for path in pages(root):
        page = parse(path)
        for row in page.rows:
            level = row["attrs"].get("data-level")
            if not level or level == "england":
                continue
            text = row["cells"].get("numerator")
            if text is None:
                continue
            if text == "[c]":
                suppressed += 1
                assert row["cells"].get("value") == "[c]", (path, row)
                continue
            number = as_number(text)
            if number is not None:
                shown.append((path.name, level, row["attrs"].get("data-area"), number))
        for key, blob in page.scripts.items():
            payload = json.loads(blob)
            if "data" not in payload:  # not a chart (the counts behind the figure are checked on their own)
                continue
            for trace in payload["data"]:
                if trace.get("meta", {}).get("level") not in (None, "england"):
                    for custom in trace.get("customdata", []):
                        shown.append((f"{path.name}#{key}", trace["meta"]["level"], custom[0], custom[2]))
    return shown, suppressed


def test_no_numerator_of_1_to_7_below_england_in_the_pages(site):
    shown, suppressed = _numerators_in_html(site.root)
    assert len(shown) > 500 and suppressed > 50  # the scan saw real figures and [c] cells
    small = [s for s in shown if s[3] in SMALL]
    assert small == []
    assert any(s[3] == 0 for s in shown)  # zero is shown


def test_no_numerator_of_1_to_7_below_england_in_the_csv_files(site):
    files = sorted((site.root / "data").rglob("*.csv"))
    value_files = [f for f in files if f.name not in ("catalogue.csv", "data_quality.csv")]
    assert len(value_files) == 29
    checked = suppressed = 0
    for path in value_files:
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["level"] == "england":
                    continue
                if row["suppressed"] == "true":
                    suppressed += 1
                    for column in report.FIGURE_COLUMNS:
                        assert row[column] == "[c]", (path, row)
                    continue
                checked += 1
                if row["numerator"]:
                    assert int(row["numerator"]) not in SMALL, (path, row)
    assert checked > 1000 and suppressed > 100


def test_parquet_holds_every_published_row_with_suppressed_figures_null(site):
    path = site.root / "data" / "indicator_values.parquet"
    conn = duckdb.connect()
    total, bad, small = conn.execute(f"""
        SELECT count(*),
               count(*) FILTER (WHERE suppressed AND (numerator IS NOT NULL OR value IS NOT NULL)),
               count(*) FILTER (WHERE level <> 'england' AND numerator BETWEEN 1 AND 7)
        FROM read_parquet('{path}')""").fetchone()
    assert total == site.conn.execute("SELECT count(*) FROM published.indicator_values").fetchone()[0]
    assert bad == 0 and small == 0


def test_suppressed_prison_shows_c_on_its_indicator_page(site):
    code, area = site.conn.execute("""
        SELECT indicator_id, area_code FROM published.indicator_values p
        WHERE suppressed AND level = 'prison' AND period_type = 'quarter'
          AND period_start = (SELECT max(period_start) FROM published.indicator_values q
                              WHERE q.indicator_id = p.indicator_id AND q.period_type = 'quarter')
        ORDER BY 1, 2 LIMIT 1""").fetchone()
    page = parse(site.root / "indicators" / f"{code}.html")
    row = next(r for r in page.rows if r["attrs"].get("data-area") == area and r["attrs"].get("data-level") == "prison")
    assert row["cells"]["numerator"] == row["cells"]["denominator"] == row["cells"]["value"] == "[c]"


# --- behind the figure: counts by reason -------------------------------------------------------

MEMBER_INDICATORS = ("P01a", "P02b", "P05a", "P11d", "P12b")


def behind_data(path: Path) -> dict:
    page = parse(path)
    return json.loads(page.scripts[f"behind-{path.stem}-data"])


def behind_counts(data: dict) -> list[float]:
    """Every count by reason (and population) in an indicator page's embedded data; None for [c]."""
    out = []
    for prison in data["cells"]:
        for entry in prison:
            if not isinstance(entry, dict):
                continue
            for count in entry["c"]:
                out += count if isinstance(count, list) else [count]
            if "p" in entry:
                out.append(entry["p"])
    return out


def test_behind_the_figure_section_on_indicator_pages(site):
    root = site.root
    for code in MEMBER_INDICATORS:
        path = root / "indicators" / f"{code}.html"
        page = parse(path)
        text = path.read_text()
        assert (2, "Behind the figure") in page.headings, code
        assert page.find("section", aria_labelledby="behind"), code
        assert page.find("a", href="#behind"), code  # in the page contents
        form = page.with_class("js-behind", "form")[0]
        assert "hidden" in form  # shown by the script; without it the static table remains
        for name in ("prison", "month"):
            select = page.find("select", id=f"behind-{code}-{name}")
            assert select and page.find("label", **{"for": f"behind-{code}-{name}"}), (code, name)
        live = page.find("p", id=f"behind-{code}-sentence")[0]
        assert live["role"] == "status" and live["aria-live"] == "polite" and live["aria-atomic"] == "true"
        data = behind_data(path)
        prisons = [p for p, _ in data["prisons"]]
        assert len(prisons) == 12 and POISON_CODE not in prisons
        assert len(data["months"]) == 24 and all(len(row) == 24 for row in data["cells"])
        assert len(page.find("option")) == 12 + 24
        table = [r for r in page.rows if "data-behind" in r["attrs"]]
        assert len(table) == 12 and text.count('class="data-table behind-table" open') == 1
        # the static table is the latest month, and says what the script would say
        for row in table:
            i = prisons.index(row["attrs"]["data-behind"])
            expected = report.behind_text(data["cells"][i][-1], data["reasons"], data["kind"], data["population"])
            assert row["texts"][1] == expected
        # the sentence shown before any choice: the first prison, the latest month
        first = report.behind_text(data["cells"][0][-1], data["reasons"], data["kind"], data["population"])
        assert f'{data["prisons"][0][1]}, {data["months"][-1][1]}: {first}' in text
    p12b = behind_data(root / "indicators" / "P12b.html")
    assert p12b["reasons"] == ["tested within 72h", "not tested within 72h", "not eligible"]
    assert re.search(r"\d+ tested within 72h; \d+ not tested within 72h; \[c\] not eligible\. Published figure: "
                     r"numerator \d+, denominator \d+, value [\d.]+%\.",
                     (root / "indicators" / "P12b.html").read_text())
    p05a = behind_data(root / "indicators" / "P05a.html")
    assert p05a["population"] == "average population" and "Average population: " in report.behind_text(
        next(e for row in p05a["cells"] for e in row if isinstance(e, dict)), p05a["reasons"], p05a["kind"],
        p05a["population"])
    assert behind_data(root / "indicators" / "P02b.html")["kind"] == "rows"
    for code in ("P01b", "P04a"):  # no member rows in the fixture (P04a is derived): no section
        assert not parse(root / "indicators" / f"{code}.html").find("section", aria_labelledby="behind")


def test_behind_the_figure_shows_no_count_of_1_to_7(site):
    shown = suppressed = 0
    for code in MEMBER_INDICATORS:
        path = site.root / "indicators" / f"{code}.html"
        data = behind_data(path)
        counts = behind_counts(data)
        assert [c for c in counts if c is not None and c in SMALL] == [], code
        shown += sum(c is not None for c in counts)
        suppressed += sum(c is None for c in counts)
        labels = sorted([*data["reasons"], data["population"] or ""], key=len, reverse=True)
        for row in parse(path).rows:
            if "data-behind" not in row["attrs"]:
                continue
            text = row["texts"][1].split(" Published figure:")[0]
            for label in labels:  # reason labels may hold digits ("within 72h", "/ 12")
                if label:
                    text = text.replace(label, "")
            numbers = [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]
            assert not [n for n in numbers if n in SMALL], (code, row["texts"])
    assert shown > 1000 and suppressed > 100


def test_behind_the_figure_is_empty_where_the_figure_is_suppressed(site):
    conn = site.conn
    for code in MEMBER_INDICATORS:
        data = behind_data(site.root / "indicators" / f"{code}.html")
        months = [m for m, _ in data["months"]]
        rows = conn.execute("""
            SELECT area_code, CAST(period_start AS VARCHAR), suppressed FROM published.indicator_values
            WHERE indicator_id = ? AND level = 'prison' AND period_type = 'month'""", [code]).fetchall()
        assert rows
        for area, month, suppressed in rows:
            entry = data["cells"][[p for p, _ in data["prisons"]].index(area)][months.index(month)]
            if suppressed:
                assert entry == "s", (code, area, month)
            else:
                assert isinstance(entry, dict), (code, area, month)
    p11d = behind_data(site.root / "indicators" / "P11d.html")
    assert sum(e == "s" for row in p11d["cells"] for e in row) > 50  # rare events: mostly suppressed
    assert report.behind_text("s", [], "units", None) == "the figure is suppressed [c], so no breakdown is shown."


def test_behind_the_figure_never_lets_a_suppressed_count_be_worked_out(site):
    """P01a: numerator = 'screened within 24h'; denominator = it + 'screened after 24h' + 'not screened'.
    With the published numerator and denominator, a single [c] among the last two would be their difference."""
    data = behind_data(site.root / "indicators" / "P01a.html")
    assert data["reasons"] == ["screened within 24h", "not screened", "screened after 24h"]
    seen = 0
    for row in data["cells"]:
        for entry in row:
            if not isinstance(entry, dict):
                continue
            numerator, denominator, _ = entry["f"]
            assert entry["c"][0] == numerator  # the numerator reason is the published numerator
            rest = entry["c"][1:]
            hidden = [c for c in rest if c is None]
            if hidden:
                seen += 1
                assert len(hidden) == 2, entry  # never exactly one unknown in the denominator
            else:
                assert numerator + sum(rest) == denominator
    assert seen > 5


# --- offline and links ------------------------------------------------------------------------


def test_pages_work_offline_with_local_links_only(site):
    root = site.root
    for path in pages(root):
        page = parse(path)
        for tag, attrs in page.tags:
            for attr in ("src", "href"):
                url = attrs.get(attr)
                if url is None:
                    continue
                if tag in ("script", "link", "img", "iframe", "source"):
                    assert not re.match(r"^(https?:)?//", url), f"{path.name}: remote {tag} {url}"
                if re.match(r"^(https?:|mailto:|//)", url):
                    pytest.fail(f"{path.name}: external link {url}")
                target = url.split("#")[0]
                if target:
                    assert (path.parent / target).resolve().exists(), f"{path.name}: broken link {url}"
                if "#" in url and url.split("#")[1]:
                    anchor = url.split("#")[1]
                    linked = parse(path.parent / target) if target else page
                    assert any(a.get("id") == anchor for _, a in linked.tags), f"{path.name}: missing #{anchor}"


# --- accessibility ----------------------------------------------------------------------------


def test_pages_have_language_headings_skip_link_and_landmarks(site):
    for path in pages(site.root):
        text = path.read_text()
        page = parse(path)
        assert page.find("html")[0].get("lang") == "en-GB", path
        assert page.find("a", href="#main", **{"class": "skip-link"}), path
        assert page.find("main", id="main"), path
        levels = [h for h, _ in page.headings]
        assert levels.count(1) == 1 and levels[0] == 1, path
        for before, after in zip(levels, levels[1:], strict=False):
            assert after <= before + 1, f"{path.name}: heading level jumps from {before} to {after}"
        assert page.find("nav", aria_label="Main"), path
        assert "<title>" in text
        assert text.count("<table") == text.count("<caption"), f"{path.name}: a table has no caption"


def test_charts_have_text_alternatives_and_data_tables(site):
    for path in pages(site.root):
        page = parse(path)
        ids = {a.get("id") for _, a in page.tags}
        for chart in page.with_class("js-plotly", "div"):
            assert chart["role"] == "img" and chart["aria-label"], path
            assert chart["aria-describedby"] in ids, path
            summary = next(a for _, a in page.tags if a.get("id") == chart["aria-describedby"])
            assert summary is not None
        text = path.read_text()
        n_charts = len(page.with_class("js-plotly", "div"))
        if n_charts:
            # every chart has a data table in <details>, or (funnel) points at the sortable table of prisons
            assert text.count('<details class="data-table">') + text.count('href="#prisons-table"') >= n_charts


def test_comparisons_are_not_shown_by_colour_alone(site):
    text = (site.root / "indicators" / "P01a.html").read_text()
    for word in ("Better", "Similar", "Worse"):
        assert re.search(rf'class="badge badge-{word.lower()}"[^>]*>\s*<svg[^>]*aria-hidden="true"', text)
        assert f"</svg>{word}</span>" in text
    payload = json.loads(parse(site.root / "indicators" / "P01a.html").scripts["funnel-P01a-data"])
    symbols = {t["name"].split(" (")[0]: t["marker"]["symbol"] for t in payload["data"]
               if t.get("meta", {}).get("level") == "prison"}
    assert len(set(symbols.values())) == len(symbols)  # a distinct shape for each comparison


def test_data_quality_page_shows_counts_only(site):
    text = (site.root / "data-quality.html").read_text()
    total = site.conn.execute("SELECT sum(rows_quarantined) FROM quality.summary").fetchone()[0]
    assert f"{total:,}" in text
    assert "No valid prison code" in text
    assert POISON_ORIGINAL_ROW not in text
    assert "Invalid NHS number" in text


def test_prison_and_region_pages_compare_every_indicator_with_england(site):
    page = parse(site.root / "prisons" / "XAA.html")
    rows = [r for r in page.rows if r["attrs"].get("data-level") == "prison"]
    indicators = {r["attrs"]["data-indicator"] for r in rows}
    assert len(indicators) == 27  # all but P04a (England only)
    assert parse(site.root / "regions" / "London.html").rows
    picker = (site.root / "areas.html").read_text()
    assert 'href="prisons/XAA.html"' in picker and 'value="regions/London.html"' in picker


# --- functions for the Dagster UI ----------------------------------------------------------------


def test_headline_table_markdown(site):
    text = report.headline_table_markdown(site.conn)
    lines = text.strip().splitlines()
    assert lines[0].startswith("| Indicator |") and len(lines) == 2 + 12
    assert "P01a First reception screen within 24 hours" in text
    assert re.search(r"\d+ better, \d+ similar, \d+ worse", text)
    assert POISON_NAME not in text


def test_indicator_chart_png_returns_none_when_export_fails(site, monkeypatch):
    import plotly.io as pio

    def broken(*args, **kwargs):
        raise RuntimeError("no browser")

    monkeypatch.setattr(pio, "to_image", broken)
    assert report.indicator_chart_png(site.conn, "P01a") is None
    assert report.indicator_chart_png(site.conn, "P99z") is None


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_indicator_chart_png_with_kaleido(site):
    png = report.indicator_chart_png(site.conn, "P01a")
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "P01a-england-trend.png").write_bytes(png)


def test_report_needs_only_the_published_table_and_tolerates_missing_companions(tmp_path):
    conn = make_warehouse()
    for table in ("indicators.indicator_values", "indicators.spc", "indicators.funnel_limits", "quality.summary",
                  "quality.quarantine", "conformed.prisons", "indicators.members"):
        conn.execute(f"DROP TABLE {table}")
    summary = report.build_report(conn, tmp_path, with_spreadsheet=False)
    assert summary.pages > 40
    page = parse(tmp_path / "report" / "indicators" / "P01a.html")
    assert page.with_class("js-plotly")  # the England series from the published monthly rows
    assert not page.find("section", aria_labelledby="behind")  # no membership table: no counts by reason
    assert 'href="#behind"' not in (tmp_path / "report" / "indicators" / "P01a.html").read_text()
    assert "No data-quality summary" in (tmp_path / "report" / "data-quality.html").read_text()


def test_report_refuses_a_warehouse_without_published_values(tmp_path):
    with pytest.raises(LookupError, match="published.indicator_values"):
        report.build_report(duckdb.connect(), tmp_path)


# --- in a real browser ------------------------------------------------------------------------


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    return sync_playwright


@pytest.fixture(scope="module")
def chromium_context():
    """One headless Chromium (the system /usr/bin/chromium, driven by playwright) for the browser tests;
    None when the playwright package is missing (the render test then uses Chromium's command line)."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    sync_playwright = _playwright()
    if sync_playwright is None:
        yield None
        return
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS[1:],
            viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_pages_render_in_headless_chromium_without_console_errors(site, chromium_context):
    ARTIFACTS.mkdir(exist_ok=True)
    overview = (site.root / "index.html").as_uri()
    indicator = (site.root / "indicators" / "P01a.html").as_uri()
    if chromium_context is None:
        _render_with_chromium_cli(overview, indicator)
        return
    page = chromium_context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    try:
        page.goto(overview, wait_until="load")
        assert page.locator("li.tile").count() == 12
        assert page.locator("li.tile svg.sparkline").count() == 12
        page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)
        page.goto(indicator, wait_until="load")
        page.wait_for_selector("#spc-P01a .main-svg", timeout=15000)
        page.wait_for_selector("#funnel-P01a .main-svg", timeout=15000)
        assert page.locator(".main-svg").count() >= 2
        assert page.locator("#funnel-P01a .scatterlayer .point").count() >= 10
        page.screenshot(path=str(ARTIFACTS / "indicator-P01a.png"), full_page=True)
        assert errors == []
    finally:
        page.close()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_behind_the_figure_picker_by_keyboard(site, chromium_context):
    if chromium_context is None:
        pytest.skip("keyboard checks need the playwright package (pip install playwright)")
    path = site.root / "indicators" / "P12b.html"
    data = behind_data(path)
    page = chromium_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    def expected(p: int, m: int) -> str:
        entry = data["cells"][p][m]
        return (f"{data['prisons'][p][1]}, {data['months'][m][1]}: "
                f"{report.behind_text(entry, data['reasons'], data['kind'], data['population'])}")

    try:
        page.goto(path.as_uri(), wait_until="load")
        form = page.locator("form.js-behind")
        assert form.is_visible()
        assert page.locator("details.behind-table").get_attribute("open") is None  # the picker replaces it
        live = page.locator("#behind-P12b-sentence")
        assert live.text_content() == expected(0, -1)
        prison = page.locator("#behind-P12b-prison")
        prison.focus()
        page.keyboard.press("ArrowDown")  # the second prison
        assert live.text_content() == expected(1, -1)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "behind-P12b-month"
        page.keyboard.press("ArrowDown")  # one month earlier
        assert live.text_content() == expected(1, len(data["months"]) - 2)
        small = next(i for i, row in enumerate(data["cells"]) if "s" in row)  # a suppressed figure
        month = data["cells"][small].index("s")
        prison.select_option(data["prisons"][small][0])
        page.locator("#behind-P12b-month").select_option(data["months"][month][0])
        assert live.text_content() == expected(small, month)
        assert "suppressed [c]" in live.text_content()
        page.screenshot(path=str(ARTIFACTS / "indicator-P12b-behind.png"), full_page=False)
        assert errors == []
    finally:
        page.close()


def _render_with_chromium_cli(overview: str, indicator: str) -> None:
    """Without the playwright package: the same checks through Chromium's command line."""
    with tempfile.TemporaryDirectory() as profile:
        flags = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                 "--virtual-time-budget=10000", "--window-size=1280,2400"]
        messages = []
        for url, name in ((overview, "overview"), (indicator, "indicator-P01a")):
            run = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
            dom = run.stdout
            messages += [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
            if name == "overview":
                assert dom.count('<li class="tile"') == 12
            else:
                assert 'class="main-svg"' in dom
            subprocess.run([*flags, f"--screenshot={ARTIFACTS / (name + '.png')}", url], capture_output=True,
                           timeout=120)
        assert messages == []


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_keyboard_skip_link_and_sorting(site, chromium_context):
    if chromium_context is None:
        pytest.skip("keyboard checks need the playwright package (pip install playwright)")
    page = chromium_context.new_page()
    try:
        page.goto((site.root / "indicators" / "P01a.html").as_uri(), wait_until="load")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip-link"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        header = page.locator("#prisons-table thead th", has_text="Value")
        header.locator("button").focus()
        page.keyboard.press("Enter")
        assert header.get_attribute("aria-sort") == "ascending"
        values = page.eval_on_selector_all(
            "#prisons-table tbody td[data-col=value]", "cells => cells.map(c => c.dataset.sort)")
        numbers = [float(v) for v in values if v]
        assert numbers == sorted(numbers) and values[len(numbers):] == [""] * (len(values) - len(numbers))
        page.keyboard.press("Enter")
        assert header.get_attribute("aria-sort") == "descending"
        assert "sorted by Value" in page.locator("section[aria-labelledby=prisons] .sort-status").text_content()
    finally:
        page.close()


def test_behind_the_figure_embeds_only_the_latest_months(site, monkeypatch):
    """Each page embeds the latest BEHIND_MONTHS months of counts by reason (so pages and refreshes do
    not grow with the years kept), and only those months are read from the cache."""
    pub = report.load_publication(site.conn)
    months = sorted({r["period_start"] for r in pub.rows_for("P12b", period_type="month", level="prison")})
    full = report._behind_context(pub, pub.by_code["P12b"], report.load_behind(site.conn, pub))
    assert len(months) > 2 and [m["value"] for m in full["months"]] == [m.isoformat() for m in months]
    monkeypatch.setattr(report, "BEHIND_MONTHS", 2)
    behind = report.load_behind(site.conn, pub)
    assert {m for cells in behind.rows.values() for _, m in cells} <= set(months[-2:])
    windowed = report._behind_context(pub, pub.by_code["P12b"], behind)
    assert [m["value"] for m in windowed["months"]] == [m.isoformat() for m in months[-2:]]
    data, all_data = json.loads(str(windowed["payload"])), json.loads(str(full["payload"]))
    assert data["prisons"] == all_data["prisons"]
    assert [row[-2:] for row in all_data["cells"]] == data["cells"]  # the same cells for the months kept
    assert windowed["table"] == full["table"]


def test_the_pages_read_below_england_only_the_recent_periods_and_show_what_every_row_would(site, monkeypatch,
                                                                                            tmp_path):
    monkeypatch.setattr(report, "BEHIND_MONTHS", 2)  # the pages then read the latest twelve months
    pub = report.load_publication(site.conn)
    every = report.published_rows(site.conn)
    latest = max(r["period_start"] for r in every if r["period_type"] == "month")
    assert {r["period_start"] for r in pub.rows if r["level"] != "england"} == {
        r["period_start"] for r in every if r["level"] != "england"
        and r["period_start"] > latest.replace(year=latest.year - 1)}
    assert [r for r in pub.rows if r["level"] == "england"] == [r for r in every if r["level"] == "england"]
    assert len(pub.rows) < len(every)
    whole = report.Publication(pub.catalogue, every, pub.prisons, pub.spc, pub.funnel, pub.quality)
    for name, publication in (("recent", pub), ("every", whole)):
        report.build_report(site.conn, tmp_path / name, with_spreadsheet=False, publication=publication)
    recent, everything = tmp_path / "recent" / "report", tmp_path / "every" / "report"
    pages = sorted(p.relative_to(everything) for p in everything.rglob("*.html"))
    assert pages and pages == sorted(p.relative_to(recent) for p in recent.rglob("*.html"))
    for page in pages:
        assert (recent / page).read_text() == (everything / page).read_text(), page
