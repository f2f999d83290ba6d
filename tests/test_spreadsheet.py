"""The accessible spreadsheet (gptables): sheets, headers, shorthand and disclosure control."""

from __future__ import annotations

import openpyxl
import pytest
from report_fixtures import POISON_CODE, POISON_NAME, published_site

from pipelines import spreadsheet

TABLE_HEADERS = list(spreadsheet.COLUMNS)
SMALL = set(range(1, 8))


@pytest.fixture(scope="module")
def site():
    return published_site()


@pytest.fixture(scope="module")
def workbook(site):
    return openpyxl.load_workbook(site.spreadsheet)


def table_rows(ws) -> tuple[list[str], list[dict]]:
    """The sheet's one table: (headers without note markers and units, rows as dicts)."""
    ref = next(iter(ws.tables.values())).ref
    cells = [[c.value for c in row] for row in ws[ref]]
    headers = [str(h).split("\n")[0] for h in cells[0]]
    return headers, [dict(zip(headers, row, strict=True)) for row in cells[1:]]


def test_sheets_cover_contents_notes_then_one_table_per_sheet(site, workbook):
    sql = "SELECT code FROM indicators.catalogue ORDER BY priority, code"
    codes = [r[0] for r in site.conn.execute(sql).fetchall()]
    assert workbook.sheetnames == ["Cover", "Contents", "Notes", "Indicators", *codes]
    assert all(len(name) <= 31 for name in workbook.sheetnames)
    for name in workbook.sheetnames[1:]:
        assert len(workbook[name].tables) == 1, name  # one marked-up table per sheet
    assert not workbook["Cover"].tables
    assert site.spreadsheet.name == "prison-health-indicators.xlsx"
    assert site.spreadsheet.parent == site.root


def test_cover_explains_the_shorthand(workbook):
    text = "\n".join(str(c.value) for row in workbook["Cover"].iter_rows() for c in row if c.value)
    assert text.startswith("Prison health indicators")
    for code in ("[c]", "[x]", "[z]"):
        assert code in text
    assert "synthetic" in text.lower()


def test_contents_lists_every_table_sheet(workbook):
    headers, rows = table_rows(workbook["Contents"])
    assert headers == ["Sheet name", "Table description"]
    assert [r["Sheet name"] for r in rows] == workbook.sheetnames[3:]
    assert rows[1]["Table description"].startswith("P01a First reception screen within 24 hours")


def test_notes_explain_suppression(workbook):
    headers, rows = table_rows(workbook["Notes"])
    assert headers[:2] == ["Note number", "Note text"]
    texts = [r["Note text"] for r in rows]
    assert any("[c]" in t and "1 and 7" in t for t in texts)
    assert any("[x]" in t and "[z]" in t for t in texts)


def test_indicator_sheets_have_the_expected_headers_and_units(workbook):
    for name in workbook.sheetnames[4:]:
        ws = workbook[name]
        ref = next(iter(ws.tables.values())).ref
        raw = [c.value for c in ws[ref][0]]
        assert [str(h).split("\n")[0] for h in raw] == TABLE_HEADERS, name
        assert "[note 1]" in raw[TABLE_HEADERS.index("Numerator")]  # the suppression note
    value_header = [c.value for c in workbook["P01a"][next(iter(workbook["P01a"].tables.values())).ref][0]][9]
    assert "(%)" in value_header
    assert workbook["P01a"]["A1"].value.startswith("P01a First reception screen within 24 hours")


def test_suppressed_figures_show_c_and_match_the_published_table(site, workbook):
    conn = site.conn
    expected = dict(conn.execute("""
        SELECT indicator_id, count(*) FILTER (WHERE suppressed) FROM published.indicator_values
        WHERE period_type <> 'month' OR level = 'england' GROUP BY 1""").fetchall())
    total = 0
    for name in workbook.sheetnames[4:]:
        _, rows = table_rows(workbook[name])
        suppressed = [r for r in rows if r["Numerator"] == "[c]"]
        assert len(suppressed) == expected[name], name
        for r in suppressed:
            assert r["Geography level"] != "England"
            for column in ("Denominator", "Value", "Lower 95% CI", "Upper 95% CI", "Lower 99.8% CI",
                           "Upper 99.8% CI", "Compared with England"):
                assert r[column] == "[c]", (name, r)
        total += len(suppressed)
    assert total > 50


def test_no_numerator_of_1_to_7_below_england(workbook):
    checked = 0
    for name in workbook.sheetnames[4:]:
        _, rows = table_rows(workbook[name])
        for r in rows:
            if r["Geography level"] == "England" or r["Numerator"] in ("[c]", "[z]", "[x]"):
                continue
            assert isinstance(r["Numerator"], int | float), (name, r)
            assert r["Numerator"] not in SMALL, (name, r)
            checked += 1
    assert checked > 2000


def test_no_empty_cells_and_shorthand_for_missing_figures(workbook):
    for name in workbook.sheetnames[3:]:
        _, rows = table_rows(workbook[name])
        for r in rows:
            assert all(v is not None and v != "" for v in r.values()), (name, r)
    _, p04a = table_rows(workbook["P04a"])
    assert {r["Numerator"] for r in p04a} == {"[z]"} and {r["Geography level"] for r in p04a} == {"England"}
    _, p11b = table_rows(workbook["P11b"])  # prisons without an X-ray: no one in the denominator
    no_xray = [r for r in p11b if r["Area code"] == "XAB"]
    assert no_xray and all(r["Value"] == "[z]" and r["Numerator"] == 0 for r in no_xray)


def test_figures_are_numbers_and_months_are_england_only(workbook):
    _, rows = table_rows(workbook["P01a"])
    england_quarter = next(r for r in rows if r["Period type"] == "Quarter" and r["Geography level"] == "England")
    assert isinstance(england_quarter["Value"], float) and isinstance(england_quarter["Numerator"], int)
    assert {r["Geography level"] for r in rows if r["Period type"] == "Month"} == {"England"}
    assert {r["Period type"] for r in rows} == {"Month", "Quarter", "Financial year"}


def test_nothing_unpublished_in_the_spreadsheet(workbook):
    for ws in workbook.worksheets:
        for row in ws.iter_rows(values_only=True):
            for value in row:
                if isinstance(value, str):
                    assert POISON_NAME not in value and value != POISON_CODE
                elif isinstance(value, int | float):
                    assert abs(value - 987654.321) > 1


def test_build_spreadsheet_returns_the_path(site, tmp_path):
    from pipelines import report

    pub = report.load_publication(site.conn)
    # a small publication keeps this test fast: the catalogue of two indicators
    pub.catalogue = [c for c in pub.catalogue if c["code"] in ("P01a", "P04a")]
    path = spreadsheet.build_spreadsheet(site.conn, tmp_path / "out" / "x.xlsx", publication=pub)
    assert path == tmp_path / "out" / "x.xlsx" and path.is_file()
    assert openpyxl.load_workbook(path).sheetnames == ["Cover", "Contents", "Notes", "Indicators", "P01a", "P04a"]


def test_areas_below_england_cover_the_latest_two_financial_years_and_england_its_whole_series():
    import datetime as dt

    def row(period_type, start, level):
        return {"period_type": period_type, "period_start": dt.date.fromisoformat(start), "level": level}

    years = ["2021-04-01", "2022-04-01", "2023-04-01"]
    rows = [row("financial_year", y, level) for y in years for level in ("england", "prison")]
    rows += [row("quarter", q, level) for q in ("2022-01-01", "2022-04-01", "2024-01-01")
             for level in ("england", "region")]
    rows += [row("month", "2021-05-01", "england"), row("month", "2024-03-01", "prison")]
    kept = {(r["period_type"], r["period_start"].isoformat(), r["level"]) for r in spreadsheet.spreadsheet_rows(rows)}
    assert kept == {
        *{("financial_year", y, "england") for y in years},
        ("financial_year", "2022-04-01", "prison"), ("financial_year", "2023-04-01", "prison"),
        *{("quarter", q, "england") for q in ("2022-01-01", "2022-04-01", "2024-01-01")},
        ("quarter", "2022-04-01", "region"), ("quarter", "2024-01-01", "region"),
        ("month", "2021-05-01", "england"),
    }


def _cells(path) -> dict[str, list[tuple]]:
    book = openpyxl.load_workbook(path)
    return {name: list(book[name].iter_rows(values_only=True)) for name in book.sheetnames}


def test_the_spreadsheet_written_by_a_second_process_equals_the_one_written_in_process(site, tmp_path):
    from pipelines import report

    pub = report.load_publication(site.conn)
    pub.catalogue = [c for c in pub.catalogue if c["code"] in ("P01a", "P04a")]
    running = spreadsheet.start_spreadsheet(pub, tmp_path / "second.xlsx")
    inline = spreadsheet.build_spreadsheet(site.conn, tmp_path / "inline.xlsx", publication=pub)
    assert running.result() == tmp_path / "second.xlsx"
    assert _cells(tmp_path / "second.xlsx") == _cells(inline)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inline.xlsx", "second.xlsx"]  # no inputs left


def test_the_faster_writer_writes_the_file_gptables_writes(site, tmp_path, monkeypatch):
    import zipfile

    import gptables

    from pipelines import report, workbook_writer

    inputs = spreadsheet._workbook_inputs(report.load_publication(site.conn))
    ours = zipfile.ZipFile(spreadsheet.write_workbook(tmp_path / "ours.xlsx", *inputs))
    monkeypatch.setattr(workbook_writer, "produce_workbook", lambda **arguments: gptables.produce_workbook(**arguments))
    theirs = zipfile.ZipFile(spreadsheet.write_workbook(tmp_path / "theirs.xlsx", *inputs))
    parts = [name for name in theirs.namelist() if name != "docProps/core.xml"]  # it holds the time written
    assert ours.namelist() == theirs.namelist()
    assert len([name for name in parts if name.startswith("xl/worksheets/sheet")]) == len(inputs[0]) + 4
    for name in parts:
        assert ours.read(name) == theirs.read(name), name


def test_a_spreadsheet_process_that_fails_raises_its_error(tmp_path):
    from types import SimpleNamespace

    broken = SimpleNamespace(catalogue=[{"code": "P01a"}], by_indicator={}, months=[])  # no priority, name...
    running = spreadsheet.start_spreadsheet(broken, tmp_path / "x.xlsx")
    with pytest.raises(RuntimeError, match="(?s)x.xlsx failed.*KeyError"):
        running.result()
    assert list(tmp_path.iterdir()) == []  # no workbook, no inputs, no half-written temporary file


def test_a_workbook_left_half_written_by_a_killed_run_is_removed_by_the_next(site, tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".book.xlsx.{int(dead.stdout)}.tmp"
    stale.write_bytes(b"PK half a workbook")
    assert spreadsheet.start_spreadsheet(spreadsheet.workbook_publication(site.conn), tmp_path / "book.xlsx").result()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.xlsx"]


def test_a_workbook_written_ahead_is_taken_up_by_its_own_run_only(site, tmp_path):
    """The published step starts the workbook; the report step of the same run waits for it, and one
    left by another run (its figures may be out of date) is stopped and removed."""
    path = tmp_path / "report" / "book.xlsx"
    spreadsheet.write_ahead(site.conn, path, "run-1")
    assert spreadsheet.taken_ahead(path, "run-2") is None
    assert sorted(p.name for p in path.parent.iterdir()) == []  # stopped: nothing of it is left

    spreadsheet.write_ahead(site.conn, path, "run-3")
    running = spreadsheet.taken_ahead(path, "run-3")
    assert spreadsheet.taken_ahead(path, "run-3") is None  # taken once
    assert running.result() == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["book.xlsx"]
    assert _cells(path) == _cells(spreadsheet.build_spreadsheet(site.conn, tmp_path / "inline.xlsx"))


def test_the_rows_chosen_in_the_database_are_the_workbook_rows(site, monkeypatch):
    """The report starts the workbook from rows chosen in SQL, before it reads the whole publication."""
    from pipelines import report

    monkeypatch.setattr(spreadsheet, "AREA_YEARS", 1)  # so that the fixture has a year left out
    pub = report.load_publication(site.conn)
    full = report.Publication(pub.catalogue, report.published_rows(site.conn), {}, {}, {}, [])
    chosen = spreadsheet.workbook_publication(site.conn)
    assert len(chosen.rows) < len(full.rows)
    assert spreadsheet._workbook_inputs(chosen) == spreadsheet._workbook_inputs(full)
    kept = {r["period_start"] for r in chosen.rows if r["level"] != "england"}
    assert kept and len({r["period_start"] for r in full.rows if r["level"] != "england"}) > len(kept)



def test_indicator_sheets_get_the_column_widths_gptables_would_measure(site, tmp_path, monkeypatch):
    """The widths are measured once per distinct value (spreadsheet.column_widths), not by gptables
    cell by cell: the workbook must come out as if gptables had measured them."""
    import gptables

    inputs = spreadsheet._workbook_inputs(spreadsheet.workbook_publication(site.conn))
    ours = spreadsheet.write_workbook(tmp_path / "ours.xlsx", *inputs)
    produce = gptables.produce_workbook
    monkeypatch.setattr(gptables, "produce_workbook", lambda **k: produce(**{**k, "auto_width": True}))
    theirs = spreadsheet.write_workbook(tmp_path / "theirs.xlsx", *inputs)

    def widths(path):
        book = openpyxl.load_workbook(path)
        return {name: {c: d.width for c, d in book[name].column_dimensions.items()} for name in book.sheetnames}

    assert widths(ours) == widths(theirs)
    assert len(widths(ours)["P01a"]) >= 10  # set, not left at Excel's default
