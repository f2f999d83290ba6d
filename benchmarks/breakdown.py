"""Where the publication of a monthly refresh spends its time, part by part, at national scale.

`python -m benchmarks.breakdown` reads the warehouse the last `make bench` built (by default
~/.cache/prisonhealth/bench-work/full120) and times, one after the other:

- the indicator months a monthly refresh recomputes (the latest three), each computed twice in
  turn, in transactions that are rolled back: as the pipeline does, not keeping the insertion
  order of the member rows (`warehouse.insertion_order_not_kept`), and keeping it;
- the indicator values step's parts for the periods holding the latest three months (what a
  monthly refresh rebuilds): values with their statistics and funnel limits; then the SPC
  step's: the monthly series it reads and the charts; in a transaction that is rolled back;
- the report's parts: reading the publication, the pages and exports, the workbook (written in
  this process here; a refresh writes it in a second one), then the same workbook written by
  gptables' own worksheet class instead of `pipelines.workbook_writer`'s;
- the analysts' database update on a copy of `analyst.duckdb` (deleted afterwards): the
  latest three months' member rows, every other table, and the commit;
- as a backfill's report does, the counts by reason of every month's member rows, written all
  at once and a month at a time (`drilldown._insert_reason_counts`), twice in turns, in
  transactions that are rolled back.

In a refresh some overlap: the workbook is written by a second process beside the report's
pages, the Great Expectations suites by another beside the indicator months, and the analysts'
file, when there is no spare to update, is copied ahead in a thread, so they compete for two
cores and the page cache (`benchmarks/results.md` has the steps' times). Here each runs alone,
which says what each costs, not what a refresh waits for. Nothing the pipeline publishes is changed.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import duckdb
import gptables

from benchmarks.run import CACHE, log
from pipelines import (
    analyst_database,
    benchmarking,
    changes,
    contract,
    drilldown,
    indicators,
    publication,
    report,
    settings,
    spreadsheet,
    warehouse,
    workbook_writer,
)

RECOMPUTED = 3  # a monthly refresh recomputes the new month and the two provisional months before it


def _timed(times: dict[str, float], part: str, work: Callable[[], object]) -> object:
    began = time.monotonic()
    result = work()
    _record(times, part, time.monotonic() - began)
    return result


def _record(times: dict[str, float], part: str, seconds: float) -> None:
    times[part] = seconds
    log(f"    {part:<52} {seconds:6.1f} s")


def indicator_parts(conn: duckdb.DuckDBPyConnection, months: list[str], times: dict[str, float]) -> None:
    """Each month both ways in turn, so a drift of the machine falls on both."""
    ways = {"as the pipeline does": warehouse.insertion_order_not_kept,
            "keeping insertion order": lambda _conn: contextlib.nullcontext()}
    spent = dict.fromkeys(ways, 0.0)
    for month in months:
        for way, ordering in ways.items():
            conn.execute("BEGIN")
            began = time.monotonic()
            with mock.patch.object(warehouse, "insertion_order_not_kept", ordering):
                indicators.compute_month(conn, month)
            spent[way] += time.monotonic() - began
            conn.execute("ROLLBACK")
    for way, seconds in spent.items():
        _record(times, f"indicators: {len(months)} months, {way}", seconds)


def values_parts(conn: duckdb.DuckDBPyConnection, months: list[str], times: dict[str, float]) -> None:
    from assets.publication import BY_CODE

    only = publication._periods_of(set(months))
    conn.execute("BEGIN")
    try:
        _timed(times, "values: indicator values with statistics", lambda: indicators.build_indicator_values(
            conn, only=only, fill_statistics=lambda frame: benchmarking.add_statistics(
                frame, BY_CODE, indicators.gap_components(conn, only))))
        _timed(times, "values: funnel limits", lambda: benchmarking.funnel_limits(
            indicators.indicator_values_frame(conn, only), BY_CODE))
        series = _timed(times, "values: monthly series read for SPC", lambda: indicators.monthly_series_frame(conn))
        _timed(times, "values: SPC charts of every series", lambda: benchmarking.spc_charts(series, BY_CODE))
    finally:
        conn.execute("ROLLBACK")


def report_parts(conn: duckdb.DuckDBPyConnection, scratch: Path, times: dict[str, float]) -> None:
    pub = _timed(times, "report: publication read", lambda: report.load_publication(conn))
    _timed(times, "report: pages and exports", lambda: report.build_report(
        conn, scratch, publication=pub, with_spreadsheet=False))
    _timed(times, "report: workbook (in this process)", lambda: spreadsheet.build_spreadsheet(
        conn, scratch / "workbook.xlsx"))
    with mock.patch.object(workbook_writer, "produce_workbook", gptables.produce_workbook):
        _timed(times, "report: the same workbook, gptables' own writer", lambda: spreadsheet.build_spreadsheet(
            conn, scratch / "workbook-gptables.xlsx"))


def analyst_parts(conn: duckdb.DuckDBPyConnection, analyst: Path, months: list[str], scratch: Path,
                  times: dict[str, float]) -> None:
    copy = scratch / "analyst-copy.duckdb"
    _timed(times, f"analysts' database: copy of {analyst.stat().st_size / 1e9:.1f} GB",
           lambda: shutil.copyfile(analyst, copy))
    sources = {t.name: {months[-1]} for t in contract.SOURCES}
    pending = changes.Pending(upto=0, everything=False, months={
        changes.INDICATORS: set(months), changes.INDICATOR_VALUES: set(months), **sources})
    catalog = conn.execute("SELECT current_database()").fetchone()[0]
    conn.execute(f"ATTACH '{copy}' AS analyst_copy")
    try:
        tables = list(analyst_database._shape(conn, catalog))
        conn.execute("BEGIN")
        _timed(times, f"analysts' database: member rows of {len(months)} months",
               lambda: analyst_database._update_table(conn, catalog, "indicators.members", pending))
        _timed(times, "analysts' database: every other table", lambda: [
            analyst_database._update_table(conn, catalog, name, pending)
            for name in tables if name != "indicators.members"])
        _timed(times, "analysts' database: commit", lambda: conn.execute("COMMIT"))
    finally:
        conn.execute("DETACH analyst_copy")
        copy.unlink(missing_ok=True)


def backfill_parts(conn: duckdb.DuckDBPyConnection, times: dict[str, float]) -> None:
    ways = {"all at once": lambda: conn.execute(
                f"INSERT INTO pipeline.reason_counts {drilldown.REASON_COUNTS_SQL.format(scope='true')}"),
            "a month at a time": lambda: drilldown._insert_reason_counts(conn, "true")}
    conn.execute(drilldown.CACHE_DDL)
    for turn in (1, 2):  # in turns, so a drift of the machine or a warmer cache falls on both
        for way, work in ways.items():
            conn.execute("BEGIN")
            conn.execute("DELETE FROM pipeline.reason_counts")
            _timed(times, f"counts by reason of every month, {way} ({turn})", work)
            conn.execute("ROLLBACK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CACHE / "bench-work" / "full120",
                        help="a pipeline output directory (default: the benchmark's 120-month one)")
    args = parser.parse_args(argv)
    database = args.out / "warehouse.duckdb"
    if not database.exists():
        parser.error(f"{database} does not exist: run `make bench` first")
    times: dict[str, float] = {}
    with duckdb.connect(str(database), config=settings.duckdb_config()) as conn, \
            tempfile.TemporaryDirectory(dir=args.out) as scratch:
        months = indicators.reported_months(conn)[-RECOMPUTED:]
        log(f"publication parts on {database} ({len(indicators.reported_months(conn))} months), "
            f"recomputing {', '.join(months)}")
        indicator_parts(conn, months, times)
        values_parts(conn, months, times)
        report_parts(conn, Path(scratch), times)
        if (args.out / "analyst.duckdb").exists():
            analyst_parts(conn, args.out / "analyst.duckdb", months, Path(scratch), times)
        backfill_parts(conn, times)
    log(f"timed {len(times)} parts in {sum(times.values()):.1f} s, each alone")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
