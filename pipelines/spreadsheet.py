"""The accessible spreadsheet of the published indicators (gptables, GSS good practice).

`build_spreadsheet(conn, path)` writes an .xlsx with a cover sheet, a table of contents, a notes
sheet, an "Indicators" sheet of definitions and one sheet per indicator (named by its code, so
always within Excel's 31-character limit), each holding one table: England's monthly, quarterly and
financial-year figures and every other area's quarters and years of the latest two financial
years (`spreadsheet_rows`; the rest is in the CSV and Parquet files). Only
`published.indicator_values` is read. Shorthand follows the Government Statistical Service
guidance on symbols in tables:

    [c]  confidential: suppressed by disclosure control (numerator 1 to 7, or a complementary cell)
    [x]  not available
    [z]  not applicable (no one in the denominator; P04a has no numerator or denominator)

Notes are referenced as [note N] in titles, subtitles and column headings, as gptables renders them.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import time
import warnings
from math import ceil
from pathlib import Path

import duckdb
import pandas as pd

from pipelines import children, report

COLUMNS = (
    "Period type", "Period", "Period start", "Period end", "Geography level", "Area code", "Area name",
    "Numerator", "Denominator", "Value", "Lower 95% CI", "Upper 95% CI", "Lower 99.8% CI", "Upper 99.8% CI",
    "Compared with England", "Status",
)
NOTES = {
    "suppression": ("Suppressed figures are shown as [c] (confidential). Below England level a figure whose "
                    "numerator is between 1 and 7 is suppressed, and so is one more figure in the same table "
                    "where the suppressed one could otherwise be worked out by subtraction from its region, "
                    "operator, prison function or England total. Zero is shown."),
    "shorthand": ("[x] means the figure is not available. [z] means it is not applicable: no one is in the "
                  "denominator, or (P04a) the indicator has no numerator or denominator."),
    "provisional": ("A month is provisional until the extracts of the two following months have arrived, as "
                    "events up to two months later can still count; a quarter or financial year holding a "
                    "provisional month, or not yet complete, is provisional. Provisional figures may change."),
    "intervals": ("Confidence intervals: Wilson score intervals (without continuity correction) for percentages; "
                  "exact Poisson intervals for rates with numerators under 10 and Byar's method otherwise; "
                  "Newcombe's hybrid score interval for the P04a gap."),
    "comparison": ("An area is better or worse than England (higher or lower for indicators where neither "
                   "direction is better) when its 95% confidence interval lies wholly above or below England's "
                   "value; otherwise it is similar. England and P04a are not compared."),
    "gap": ("P04a is P01b in PFI prisons minus P01b in public-sector prisons, in percentage points, for England "
            "only; contracted prisons are in neither group."),
}
COMPARISON_WORDS = {"better": "Better", "similar": "Similar", "worse": "Worse", "higher": "Higher",
                    "lower": "Lower", "not_compared": "Not compared"}
ROUND_VALUE = 2
log = logging.getLogger("prisonhealth.spreadsheet")
AREA_YEARS = 2  # financial years of figures below England in the workbook


def _shorthand_or(row: dict, column: str, digits: int | None) -> object:
    if row["suppressed"]:
        return "[c]"
    value = row.get(column)
    if value is None:
        if column in ("numerator", "denominator") and row["indicator_id"] == "P04a":
            return "[z]"
        if row.get("denominator") is not None and row["denominator"] == 0:
            return "[z]"
        return "[x]"
    if digits is None:
        return int(value) if float(value).is_integer() else round(float(value), 2)
    return round(float(value), digits)


def indicator_table(rows: list[dict]) -> pd.DataFrame:
    """One indicator's published rows in spreadsheet form (shorthand in place of missing figures)."""
    order = {"month": 0, "quarter": 1, "financial_year": 2}
    rows = sorted(rows, key=lambda r: (order.get(r["period_type"], 9), r["period_start"],
                                       report.LEVEL_ORDER.get(r["level"], 9), r["area_name"] or r["area_code"]))
    records = []
    for r in rows:
        records.append([
            report.PERIOD_LABELS.get(r["period_type"], r["period_type"]),
            report.period_label(r["period_type"], r["period_start"], short=True),
            r["period_start"].isoformat(),
            r["period_end"].isoformat() if r["period_end"] else "[x]",
            report.LEVEL_LABELS.get(r["level"], r["level"]),
            r["area_code"],
            r["area_name"] or r["area_code"],
            _shorthand_or(r, "numerator", None),
            _shorthand_or(r, "denominator", None),
            _shorthand_or(r, "value", ROUND_VALUE),
            _shorthand_or(r, "lower_ci_95", ROUND_VALUE),
            _shorthand_or(r, "upper_ci_95", ROUND_VALUE),
            _shorthand_or(r, "lower_ci_99_8", ROUND_VALUE),
            _shorthand_or(r, "upper_ci_99_8", ROUND_VALUE),
            "[c]" if r["suppressed"] else COMPARISON_WORDS.get(r["comparison"] or "not_compared", r["comparison"]),
            "Provisional" if r["provisional"] else "Final",
        ])
    return pd.DataFrame(records, columns=list(COLUMNS), dtype=object)


def spreadsheet_rows(rows: list[dict]) -> list[dict]:
    """England's whole series; every other area's quarters and financial years of the latest
    AREA_YEARS financial years.

    Every area's months, and earlier years, are in the CSV and Parquet files and the analysts'
    database: a sheet of every prison-month would be too long to read, and one of every quarter
    of ten years would make each monthly refresh write millions of cells (gptables writes them one
    by one in Python), so the workbook's size does not grow with the history kept.
    """
    years = sorted({r["period_start"] for r in rows if r["period_type"] == "financial_year"})[-AREA_YEARS:]
    return [r for r in rows if r["level"] == "england"
            or (r["period_type"] != "month" and bool(years) and r["period_start"] >= years[0])]


def workbook_publication(conn: duckdb.DuckDBPyConnection) -> report.Publication:
    """A Publication holding only the rows the workbook shows (and the catalogue), chosen in the
    database as `spreadsheet_rows` chooses them: the report starts the workbook, its slowest
    output, before it reads the whole publication."""
    rows = report.published_rows(conn, f"""v.level = 'england' OR (v.period_type <> 'month' AND v.period_start >= (
        SELECT min(period_start) FROM (
            SELECT DISTINCT period_start FROM published.indicator_values AS y
            WHERE y.indicator_id = v.indicator_id AND y.period_type = 'financial_year'
            ORDER BY period_start DESC LIMIT {AREA_YEARS})))""")
    return report.Publication(report.catalogue_of(conn, {r["indicator_id"] for r in rows}), rows, {}, {}, {}, [])


def definitions_table(catalogue: list[dict]) -> pd.DataFrame:
    records = []
    for c in catalogue:
        records.append([
            c["code"], c["priority"], c.get("priority_name") or "[x]", "Yes" if c.get("headline") else "No",
            c["name"], c.get("definition") or "[x]", c.get("numerator") or "[x]", c.get("denominator") or "[x]",
            report.unit_label(c.get("unit") or "") or "[x]",
            report.POLARITY_TEXT.get(c.get("polarity"), c.get("polarity") or "[x]"),
            c["target"] if c.get("target") is not None else "[z]",
            report.METHOD_TEXT.get(c.get("method") or "", c.get("method") or "[x]"),
        ])
    return pd.DataFrame(records, dtype=object, columns=[
        "Indicator code", "Priority", "Priority name", "Headline indicator", "Indicator name", "Definition",
        "Numerator", "Denominator", "Unit", "Polarity", "Target", "Confidence interval method"])


def _sheet_name(code: str) -> str:
    name = "".join(ch for ch in code if ch not in '[]:*?/\\')[:31]
    return name or "Table"


def build_spreadsheet(conn: duckdb.DuckDBPyConnection, path: Path, *, publication=None,
                      synthetic: bool = True) -> Path:
    """Write the accessible spreadsheet to `path` and return it.

    `publication` (a `report.Publication`) saves reading the warehouse again when the report has
    already done so; `synthetic` says on the cover that the figures are made-up sample data."""
    return write_workbook(path, *_workbook_inputs(publication or workbook_publication(conn)), synthetic)


class SpreadsheetProcess:
    """The spreadsheet being written by a second Python process (see start_spreadsheet).

    The child writes `.<name>.<pid>.tmp` beside the workbook and `result()` moves it into place,
    so a run that stops before it waits never leaves a workbook newer than the pages beside it."""

    def __init__(self, path: Path, inputs: tuple, synthetic: bool):
        from pipelines import operations  # not at the top: the child process has no use for Dagster

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        operations.remove_stale_publish_files(self.path)  # the temporary file of a killed run
        self._temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._inputs = self.path.with_name(f".{self.path.name}.{os.getpid()}.pickle")
        self._inputs.write_bytes(pickle.dumps((self._temporary, *inputs, synthetic)))
        self._process = children.start("pipelines.spreadsheet", str(self._inputs))

    def result(self) -> Path:
        """Wait for the workbook; its path, or RuntimeError with the child's error."""
        began = time.monotonic()
        failed = self._process.wait() != 0
        log.info("waited %.1f s for %s", time.monotonic() - began, self.path.name)
        self._inputs.unlink(missing_ok=True)  # the child removes it once read, unless it failed first
        if failed:
            self._temporary.unlink(missing_ok=True)
            raise RuntimeError(f"writing {self.path.name} failed:\n{self._process.errors()[-3000:]}")
        os.replace(self._temporary, self.path)
        return self.path

    def cancel(self) -> None:
        """Stop the child and remove what it wrote."""
        self._process.kill()
        self._inputs.unlink(missing_ok=True)
        self._temporary.unlink(missing_ok=True)


def start_spreadsheet(publication, path: Path, *, synthetic: bool = True) -> SpreadsheetProcess:
    """Write the spreadsheet in a second process while the caller renders the pages;
    `.result()` waits for it.

    gptables writes cell by cell in pure Python, a large part of the report's time nationally,
    while the other core stays idle. The child (pipelines.children) gets only the workbook's rows
    (a fraction of the publication, through a pickle file beside the workbook)."""
    return SpreadsheetProcess(path, _workbook_inputs(publication), synthetic)


# workbook path -> (the run that started it, the process writing it)
_AHEAD: dict[Path, tuple[str, SpreadsheetProcess]] = {}


def write_ahead(conn: duckdb.DuckDBPyConnection, path: Path, run_id: str) -> None:
    """Start the workbook as soon as `published.indicator_values` is final, for the report step
    of the same run (in this process: the jobs use the in-process executor) to take up.

    The workbook reads nothing else, and the steps between (the Great Expectations audit) are
    Python on one core, so the workbook's child process gets the other core for that time
    instead of competing with the report's pages and the analysts' database afterwards."""
    path = Path(path).resolve()
    _drop_ahead(path)
    _AHEAD[path] = (run_id, start_spreadsheet(workbook_publication(conn), path))


def taken_ahead(path: Path, run_id: str) -> SpreadsheetProcess | None:
    """The workbook `write_ahead` started for this path in this run, if any (one started by
    another run is stopped: its figures may be out of date)."""
    run, process = _AHEAD.pop(Path(path).resolve(), (None, None))
    if process is not None and run != run_id:
        process.cancel()
        return None
    return process


def _drop_ahead(path: Path) -> None:
    if path in _AHEAD:
        _AHEAD.pop(path)[1].cancel()


@atexit.register
def _drop_unused_workbooks() -> None:
    """A run that stopped before its report leaves its early workbook: stop it with the process."""
    for path in list(_AHEAD):
        _drop_ahead(path)


def _workbook_inputs(pub) -> tuple[list[dict], dict[str, list[dict]], str]:
    """What the workbook shows: the catalogue, each indicator's rows, the period covered."""
    rows = {c["code"]: spreadsheet_rows(pub.by_indicator.get(c["code"], [])) for c in pub.catalogue}
    return pub.catalogue, rows, report._latest_label(pub)


def write_workbook(path: Path, catalogue: list[dict], rows_by_indicator: dict[str, list[dict]], period: str,
                   synthetic: bool = True) -> Path:
    """The gptables workbook of `spreadsheet_rows` per indicator (see build_spreadsheet)."""
    import gptables as gpt

    from pipelines import workbook_writer

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    source = ("Source: prison healthcare extracts" + (" (synthetic sample data)" if synthetic else "")
              + ", prisonhealth pipeline")
    sheets: dict[str, gpt.GPTable] = {}
    sheets["Indicators"] = gpt.GPTable(
        table=definitions_table(catalogue),
        table_name="indicator_definitions",
        title="Indicator definitions: the twelve priorities of the National Partnership Agreement",
        subtitles=["One row per indicator. [z] in the target column means the indicator has no target."],
        instructions="This worksheet contains one table. Some cells may refer to notes, which can be found on the "
                     "notes worksheet.",
        source=source,
        index_columns={2: 0},
    )
    has_gap = False
    for cat in catalogue:
        rows = rows_by_indicator.get(cat["code"])
        if not rows:
            continue
        unit = cat.get("unit") or ""
        subtitles = [
            f"Unit: {unit}. {report.POLARITY_TEXT.get(cat.get('polarity'), '')}."
            + (f" Target: {cat['target']:g}." if cat.get("target") is not None else ""),
            "Suppressed figures are shown as [c], not available as [x] and not applicable as [z].",
            f"England's months, quarters and financial years; every other area's quarters and financial years of "
            f"the latest {AREA_YEARS} financial years (every area's months, and earlier years, are in the CSV and "
            "Parquet files published with this spreadsheet).",
            f"Priority {cat['priority']}: {cat.get('priority_name') or ''}. {cat.get('definition') or ''}".strip(),
        ]
        if cat["code"] == "P04a":
            subtitles[0] += " $$gap$$"
            has_gap = True
        sheets[_sheet_name(cat["code"])] = gpt.GPTable(
            table=indicator_table(rows),
            table_name=f"table_{cat['code']}",
            title=f"{cat['code']} {cat['name']}, England, regions, operators, functions and prisons"
                  + (f", {period}" if period else ""),
            subtitles=subtitles,
            instructions="This worksheet contains one table. Some cells refer to notes, which can be found on the "
                         "notes worksheet. Some cells contain shorthand: [c], [x] or [z].",
            source=source,
            units={9: unit} if unit else None,
            table_notes={7: "$$suppression$$", 9: "$$shorthand$$", 10: "$$intervals$$", 14: "$$comparison$$",
                         15: "$$provisional$$"},
            index_columns={2: 0},
        )
    notes = {k: v for k, v in NOTES.items() if k != "gap" or has_gap}
    notes_table = pd.DataFrame({"Note reference": list(notes), "Note text": list(notes.values())})
    cover = gpt.Cover(
        cover_label="Cover",
        title="Prison health indicators: the twelve priorities of the National Partnership Agreement for prison "
              "healthcare in England" + (f", {period}" if period else ""),
        intro=[
            "This spreadsheet holds the published figures of the 28 indicators of the twelve priorities of the "
            "National Partnership Agreement for prison healthcare in England: England by month, financial "
            "quarter and financial year, and NHS England regions, operators, prison functions and prisons by "
            f"financial quarter and financial year for the latest {AREA_YEARS} financial years. Monthly figures "
            "for every area, and earlier years, are in the CSV and Parquet files published alongside.",
            *(["These are synthetic sample data describing fictional prisons, produced to demonstrate the "
               "pipeline."] if synthetic else []),
        ],
        about=[
            [{"bold": True, "font_size": 14}, "What is in the spreadsheet"],
            "The Contents sheet lists the tables. The Notes sheet explains the notes referred to as [note N] in "
            "titles and column headings. The Indicators sheet defines each indicator. Each other sheet holds one "
            "indicator, named by its code.",
            [{"bold": True, "font_size": 14}, "Shorthand"],
            "[c] confidential: the figure is suppressed by disclosure control (a numerator of 1 to 7 below England, "
            "or a figure that would let one be worked out).",
            "[x] not available.",
            "[z] not applicable.",
            [{"bold": True, "font_size": 14}, "Provisional figures"],
            "Recent months are provisional and may change when later extracts arrive (see the Notes sheet).",
        ],
        contact=["Prison health intelligence team (fictional)", "Email: prison.health@example.org"],
    )
    # gptables' auto_width measures every cell one by one in Python (hundreds of thousands nationally);
    # the indicator sheets' widths are measured here instead, the same way, once per distinct value.
    measured = {name: False for name in sheets if name != "Indicators"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gptables warns about unreferenced notes and empty cells
        book = workbook_writer.produce_workbook(
            filename=path.as_posix(),
            sheets=sheets,
            cover=cover,
            notes_table=notes_table,
            contentsheet_label="Contents",
            contentsheet_options={"title": "Table of contents"},
            auto_width=measured,
        )
        for name in measured:
            worksheet = book.get_worksheet_by_name(name)
            for column, width in enumerate(column_widths(sheets[name].table)):
                worksheet.set_column_pixels(column, column, width)
        book.close()
    return path


def column_widths(table: pd.DataFrame) -> list[int]:
    """Column widths in pixels as gptables' auto_width sets them (gptheme: 12-point Arial, bold
    headings): xlsxwriter's autofit width of each cell's longest line, scaled for font size, bold
    and capital letters, the widest cell of each column, but each distinct value measured once."""
    from xlsxwriter.utility import cell_autofit_width

    def width(value: object, bold: bool) -> int:
        text = value if isinstance(value, str) else str(value) if isinstance(value, (int, float)) else (
            str(value) if value else "")
        line = max(text.split("\n"), key=len)
        capitals = sum(1 for c in line if c.isupper()) / len(line) if line else 0
        return ceil(cell_autofit_width(line) * (12 / 11) * (1.1 if bold else 1.0) * (1.0 + 0.15 * capitals))

    def distinct(values: list) -> set:  # by type too: 1 and 1.0 are written differently
        return {(type(v), v) for v in values}

    return [max([width(heading, True), *(width(v, False) for _, v in distinct(table[heading].tolist()))])
            for heading in table.columns]


def prepare() -> None:
    """What the second process of start_spreadsheet imports before it is handed its work."""
    from pipelines import workbook_writer  # noqa: F401 - and gptables with it


def main(arguments: list[str]) -> None:
    """The second process of start_spreadsheet (pipelines.children): the workbook of the inputs file."""
    inputs = Path(arguments[0])
    workbook = pickle.loads(inputs.read_bytes())
    inputs.unlink()  # nothing is left beside the workbook even if the report stops before waiting
    write_workbook(*workbook)
