"""The analysts' database: a read-only copy of the warehouse's public schemas, replaced atomically.

Analysts keep `analyst.duckdb` open in DBeaver, the DuckDB CLI, Python or R while
the pipeline runs. DuckDB allows one writer or many readers per file, so the
pipeline never writes that file in place: it builds a new file beside it and
`os.replace`s it. Open connections keep reading the old file (its inode lives on
until they close it); new connections see the new one.

A monthly refresh changes a few months of a file that nationally is gigabytes, so it does
not rebuild it. The file it replaces is kept as `.analyst.duckdb.spare` (a second name,
a hard link, made before the replace), and the next publication brings that spare up to
date with the months changed in the last two publications and publishes it in turn: two
files take turns, and no refresh copies gigabytes. A spare a reader still has open (an
analyst's connection from before the last refresh) is locked by DuckDB, so the publication
starts from a copy of the published file instead, as it does where hard links are not
available. That copy reads and writes the disk while the steps before this one compute on
the CPU, so the publication starts it early (`copy_ahead`, in a background thread of the
same process: the jobs use the in-process executor) and `publish` takes it up.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path

import duckdb

from pipelines import action_lists, changes, contract, indicators, operations, warehouse
from pipelines.resources import transaction

PUBLIC_SCHEMAS = ("conformed", "indicators", "published", "quality")
log = logging.getLogger("prisonhealth.analyst_database")

TABLE_COMMENTS = {
    "quality.runs": operations.RUNS_TABLE_COMMENT,
    "quality.file_loads": "One row per landing file seen: its hash, status (loaded, rejected, unchanged) and "
                          "rows read = loaded + quarantined.",
    "quality.quarantine": "Every record set aside, with the contract's reason code and a readable detail; "
                          "NHS numbers appear only as their HMAC and digit runs are masked in original_row.",
    "quality.summary": "Rows read, loaded and quarantined by source, month and prison, with counts by reason.",
    "indicators.catalogue": "The definition of every indicator: metadata and the SQL that counts it.",
    "indicators.indicator_values": "Full indicator values (not disclosure controlled) per indicator, period, "
                                   "level and area, with 95% and 99.8% intervals and the comparison with England.",
    "indicators.prison_month": "Numerator and denominator per indicator, prison and month: the parts every "
                               "other level and period is summed from.",
    "indicators.gap_components": "The two groups behind a gap indicator (P04a: PFI and public prisons).",
    "indicators.funnel_limits": "95% and 99.8% funnel plot limits around England's value, by denominator.",
    "indicators.spc": "Statistical process control (XmR) of monthly series for England and each prison.",
    "published.indicator_values": "Indicator values after disclosure control, as published in the report.",
    "indicators.members": "The units behind every figure: one row per indicator, month, prison and unit "
                          "counted (reception, event, person, activity, population or row group), whether it is "
                          "in the numerator, the reason, the datetimes that decided it and the file and line of "
                          "the deciding record. Sums over it equal prison_month.",
    "quality.expectation_results": "Great Expectations results: rows failing each expectation of each "
                                   "source's suite, by file month (all rules a row breaks, not only its first).",
}

COLUMN_COMMENTS = {
    "source": "Landing source (reception_screening, bbv_testing, tb_screening, smoking, prescribing) or "
              "reference table.",
    "month": "Month, YYYY-MM (file month for quality tables; indicator month otherwise).",
    "source_month": "Month of the landing file the row came from (YYYY-MM).",
    "source_file": "Landing file the row came from, relative to the landing directory.",
    "source_line": "Physical line of the record in its file (header = line 1).",
    "file": "Landing file, relative to the landing directory.",
    "line": "Physical line of the record in its file (header = line 1).",
    "sha256": "SHA-256 of the file's bytes.",
    "status": "loaded, rejected or unchanged.",
    "rows_read": "Records read from the file (rows_loaded + rows_quarantined).",
    "rows_loaded": "Records that passed validation into the conformed table.",
    "rows_quarantined": "Records set aside in quality.quarantine.",
    "message": "Why the file was rejected, or which extra columns were ignored.",
    "loaded_at": "When the file was loaded.",
    "reason": "Quarantine reason code (the first that applies, in contract order).",
    "detail": "What was wrong, naming the column and value.",
    "original_row": "The record as delivered, with runs of ten or more digits masked.",
    "person_key": "HMAC-SHA256 of the NHS number (pseudonymised person identifier).",
    "reception_id": "The reception this event links to (same person and prison, latest at or before it).",
    "indicator_id": "Indicator code, e.g. P01a.",
    "priority": "National Partnership Agreement priority, 1 to 12.",
    "period_type": "month, quarter (financial, Apr-Jun = Q1) or financial_year (April to March).",
    "period_start": "First day of the period.",
    "period_end": "Last day of the period.",
    "level": "prison, region, operator, function or england.",
    "area_code": "Prison code, region name, operator, function, or ENG.",
    "area_name": "Name of the area.",
    "numerator": "Numerator (count).",
    "denominator": "Denominator (count, or population for rates).",
    "value": "Indicator value: percentage, rate per 1,000 / 100,000, or percentage points.",
    "lower_ci_95": "Lower 95% confidence limit.",
    "upper_ci_95": "Upper 95% confidence limit.",
    "lower_ci_99_8": "Lower 99.8% confidence limit.",
    "upper_ci_99_8": "Upper 99.8% confidence limit.",
    "comparison": "Compared with England: better/similar/worse (or higher/similar/lower when neutral), or "
                  "not_compared.",
    "provisional": "True while later source months that can change the figure are not all loaded.",
    "suppressed": "True when the value is withheld by disclosure control ([c]).",
    "prison_code": "Prison code (NULL in quality tables when the row named no valid prison).",
    "code": "Indicator code, e.g. P01a.",
    "priority_name": "Name of the National Partnership Agreement priority.",
    "headline": "True for the priority's headline indicator.",
    "name": "Indicator name.",
    "definition": "What the indicator measures.",
    "unit": "Unit of the value (%, per 1,000, per 1,000 per month, per 100,000, percentage points).",
    "multiplier": "Multiplier applied to numerator / denominator.",
    "polarity": "high (higher is better), low (lower is better) or neutral.",
    "target": "Target value, where the indicator has one (local and illustrative; set in the catalogue).",
    "method": "Interval method: wilson, byar (exact Poisson under 10 events) or newcombe.",
    "denominator_kind": "units, population_months, mean_population or person_years.",
    "aggregation": "How longer periods and higher levels combine: sum, or distinct_persons.",
    "anchor": "The datetime that places a unit in a month.",
    "derived": "For derived indicators, the rule (e.g. gap P01b operator pfi - public).",
    "sql": "The SQL that returns the indicator's member rows for a month.",
    "expectation": "Great Expectations expectation type.",
    "column": "Column (or column pair) the expectation checks.",
    "rule": "The contract rule behind the expectation.",
    "rows_failing": "Rows failing the expectation in that file month.",
    "england_value": "England's value: the centre line of the funnel.",
    "lower_95": "Lower 95% funnel limit at this denominator.",
    "upper_95": "Upper 95% funnel limit at this denominator.",
    "lower_99_8": "Lower 99.8% funnel limit at this denominator.",
    "upper_99_8": "Upper 99.8% funnel limit at this denominator.",
    "base_indicator_id": "The indicator whose groups the gap compares.",
    "group_attribute": "Prison attribute that defines the groups (e.g. operator).",
    "group_a": "First group (the gap is group_a minus group_b).",
    "group_b": "Second group.",
    "numerator_a": "Numerator of group a.",
    "denominator_a": "Denominator of group a.",
    "numerator_b": "Numerator of group b.",
    "denominator_b": "Denominator of group b.",
    "unit_type": "What was counted: reception, event, person, activity, population or rows.",
    "unit_id": "Identifier of the unit: reception_id, event id, person_key, or a population/row-group label.",
    "anchor_datetime": "The datetime that places the unit in its month (reception, event, quit date, sample).",
    "event_datetime": "The datetime of the event that decided the unit, if any.",
    "window_end": "End of the unit's window (anchor + window), if the indicator has one.",
    "component": "For distinct-person indicators, the drug group this row stands for.",
    "mean": "Process mean of the series.",
    "lower_process_limit": "Lower process limit: mean - 2.66 x mean moving range.",
    "upper_process_limit": "Upper process limit: mean + 2.66 x mean moving range.",
    "special_cause": "True when a special-cause rule flags the point.",
    "variation": "common_cause, special_cause_improvement, special_cause_concern or special_cause_neither.",
    "rules": "The special-cause rule that flagged the point (outside limits, trend, two in three, shift).",
    "assurance": "Whether the process will meet the target: consistent_pass, consistent_fail or inconsistent.",
    **{reason: f"Rows quarantined with reason {reason}." for reason in contract.REASONS},
}

VIEWS = {
    "indicators.latest_prison_values": """
        SELECT v.* FROM indicators.indicator_values v
        WHERE v.level = 'prison' AND v.period_type = 'month'
          AND v.period_start = (SELECT max(period_start) FROM indicators.indicator_values
                                WHERE period_type = 'month' AND indicator_id = v.indicator_id)""",
    "indicators.england_trend": """
        SELECT indicator_id, period_start AS month, numerator, denominator, value,
               lower_ci_95, upper_ci_95, provisional
        FROM indicators.indicator_values
        WHERE level = 'england' AND period_type = 'month'
        ORDER BY indicator_id, month""",
    "indicators.action_list": action_lists.ACTION_LIST_SQL,
    "quality.quarantine_by_reason": """
        SELECT source, month, prison_code, reason, count(*) AS rows
        FROM quality.quarantine GROUP BY ALL ORDER BY source, month, prison_code, reason""",
}

VIEW_COMMENTS = {
    "indicators.latest_prison_values": "Each indicator's latest month, per prison.",
    "indicators.england_trend": "England's monthly series of every indicator.",
    "quality.quarantine_by_reason": "Quarantined records counted by source, month, prison and reason.",
    "indicators.action_list": "RESTRICTED: receptions inside their window, or past it by up to "
                              f"{action_lists.RECENT_DAYS} days, that have not met P01a, P07b, P09a or P12b-d.",
}


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _column_comment(schema: str, table: str, column: str) -> str | None:
    if (schema, table) == ("quality", "runs"):
        return operations.RUNS_COLUMN_COMMENTS.get(column)
    if schema == "conformed" and table in contract.TABLES:
        for c in contract.TABLES[table].columns:
            if c.conformed_name == column:
                return c.description if c.type != "nhs_number" else COLUMN_COMMENTS["person_key"]
    return COLUMN_COMMENTS.get(column)


def _tables(conn, catalog: str) -> list[tuple[str, str]]:
    return [(s, t) for s, t in conn.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY 1, 2", [catalog]
    ).fetchall() if s in PUBLIC_SCHEMAS]


# Tables too large to copy whole every month, with the condition choosing one changed month's
# rows: (subject in pipeline.changes, condition on (subject, month)).
PARTITIONED: dict[str, tuple[str | None, str]] = {
    **{f"conformed.{t.name}": (t.name, "source_month = $month") for t in contract.SOURCES},
    "quality.quarantine": (None, "source = $subject AND month IS NOT DISTINCT FROM $month"),
    "indicators.members": (changes.INDICATORS, "month = CAST($month || '-01' AS DATE)"),
    "indicators.prison_month": (changes.INDICATORS, "month = CAST($month || '-01' AS DATE)"),
}
# Tables of figures by period, with the subject whose months say which periods changed: the
# periods holding those months (each month, its financial quarter and year), as
# pipelines.publication rebuilds them. Every other public table is small and is copied whole.
BY_PERIOD: dict[str, str] = {name: changes.INDICATOR_VALUES for name in (
    "indicators.indicator_values", "published.indicator_values", "indicators.funnel_limits",
    "indicators.gap_components")}
CONSUMER = "analyst_database"
SPARE_CONSUMER = "analyst_database_spare"  # the changes the spare file has not taken in
FULL = "every table in full"
IN_SPARE = "changed months only, in the file the last publication replaced"
IN_COPY = "changed months only, in a copy of the published file"


def publish_changes(conn: duckdb.DuckDBPyConnection, target: Path, extra_views: dict[str, str] | None = None) -> str:
    """Publish what changed since the last publication (everything the first time) and move the
    cursors: the published file's, and the spare's, which is the file just replaced."""
    pending = changes.pending(conn, CONSUMER)
    how = publish(conn, target, extra_views, pending=pending, spare_pending=changes.pending(conn, SPARE_CONSUMER))
    with transaction(conn):
        if _spare(Path(target)).exists():  # the spare's cursor first: it is the one behind
            changes.advance(conn, SPARE_CONSUMER, pending.since)
        else:
            changes.forget(conn, SPARE_CONSUMER)
        changes.advance(conn, CONSUMER, pending.upto)
    return how


def publish(conn: duckdb.DuckDBPyConnection, target: Path, extra_views: dict[str, str] | None = None,
            pending: changes.Pending | None = None, spare_pending: changes.Pending | None = None) -> str:
    """Publish the public schemas of the warehouse connection to `target`, atomically.

    With `pending` (what changed since the last publication), only the changed months of the
    large tables are replaced, so a monthly refresh does not rewrite years of history: in the
    spare file when there is a usable one (`spare_pending` is what it has not taken in), else in
    a copy of the published file. The result is checked against the warehouse (every table's
    row count and columns) and rebuilt in full if it differs. The file replaced is kept as the
    next spare when its position (`pending.since`) is known. Returns how: FULL, IN_SPARE or IN_COPY.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    copied = _copied_ahead(target)
    operations.remove_stale_publish_files(target)
    temporary = _temporary(target)
    incremental = pending is not None and not pending.everything and target.exists()
    if not (incremental and copied):
        temporary.unlink(missing_ok=True)
    how = FULL
    if incremental and not copied and _take_spare(target, temporary, spare_pending):
        if _update_spare(conn, temporary, spare_pending):
            how = IN_SPARE
        else:
            temporary.unlink()
    if incremental and how == FULL:
        if not copied:
            shutil.copyfile(target, temporary)
        if _update_copy(conn, temporary, pending):
            how = IN_COPY
        else:
            temporary.unlink()
    if how == FULL:
        _copy_all(conn, temporary)
    with duckdb.connect(str(temporary)) as copy:
        _describe(copy, {**VIEWS, **(extra_views or {})})
        copy.execute("CHECKPOINT")
    _spare(target).unlink(missing_ok=True)
    if pending is not None and pending.since is not None and target.exists():
        _keep_as_spare(target)
    os.replace(temporary, target)
    return how


def _spare(target: Path) -> Path:
    return target.with_name(f".{target.name}.spare")


def _keep_as_spare(target: Path) -> None:
    """Give the file about to be replaced a second name, so it outlives the replace as the spare."""
    try:
        os.link(target, _spare(target))
    except OSError as error:  # no hard links on this file system: every publication starts from a copy
        log.info("no spare kept of %s (%s): the next publication starts from a copy", target.name, error)


def _spare_usable(conn: duckdb.DuckDBPyConnection, target: Path) -> bool:
    """A spare the next publication can bring up to date: present, not the published file itself
    (a publication stopped between the link and the replace), its cursor known, and not open in a
    reader (DuckDB's lock refuses a writer then)."""
    spare = _spare(target)
    if not spare.exists() or spare.samefile(target) or changes.pending(conn, SPARE_CONSUMER).everything:
        return False
    try:
        duckdb.connect(str(spare)).close()
    except duckdb.Error:
        return False
    return True


def _take_spare(target: Path, temporary: Path, pending: changes.Pending | None) -> bool:
    """Move the spare to this process's working name (from which a stopped run's file is removed)."""
    spare = _spare(target)
    if pending is None or pending.everything or not spare.exists():
        return False
    if spare.samefile(target):
        spare.unlink()
        return False
    os.replace(spare, temporary)
    return True


def _update_spare(conn: duckdb.DuckDBPyConnection, spare: Path, pending: changes.Pending) -> bool:
    try:
        return _update_copy(conn, spare, pending)
    except duckdb.IOException as error:  # still open in a reader: its lock refuses this writer
        log.info("the spare of the analysts' database is in use (%s): starting from a copy", error)
        return False


def _temporary(target: Path) -> Path:
    """This process's working name for the next file (removed as stale once the process is gone)."""
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def _stamp(path: Path) -> tuple[int, int, int]:
    status = path.stat()
    return status.st_ino, status.st_size, status.st_mtime_ns


# target -> (copying thread, temporary file, the target's stamp when the copy began, errors)
_AHEAD: dict[Path, tuple[threading.Thread, Path, tuple[int, int, int], list[BaseException]]] = {}


def copy_ahead(conn: duckdb.DuckDBPyConnection, target: Path) -> bool:
    """Start copying the last published file to the temporary name in a background thread, when
    the next publication will start from it (something changed, not everything, and there is no
    usable spare). Returns
    whether a copy started; `publish` in this process waits for it and uses it."""
    target = Path(target).resolve()
    if (target in _AHEAD or not target.exists() or changes.pending(conn, CONSUMER).everything
            or _spare_usable(conn, target)):
        return False
    operations.remove_stale_publish_files(target)
    temporary = _temporary(target)
    temporary.unlink(missing_ok=True)
    errors: list[BaseException] = []
    began = time.monotonic()

    def copy() -> None:
        try:
            shutil.copyfile(target, temporary)
            log.info("copied %s ahead in %.1f s", target.name, time.monotonic() - began)
        except OSError as error:  # publish() then copies again, and reports what fails there
            errors.append(error)

    thread = threading.Thread(target=copy, name="analyst-database-copy", daemon=True)
    _AHEAD[target] = (thread, temporary, _stamp(target), errors)
    thread.start()
    return True


def _copied_ahead(target: Path) -> bool:
    """Wait for this process's early copy of `target`; True when it finished and the target has
    not been replaced since it began."""
    ahead = _AHEAD.pop(target.resolve(), None)
    if ahead is None:
        return False
    thread, temporary, stamp, errors = ahead
    began = time.monotonic()
    thread.join()
    log.info("waited %.1f s for the copy of %s", time.monotonic() - began, target.name)
    return not errors and temporary.exists() and target.exists() and _stamp(target) == stamp


@atexit.register
def _drop_unused_copies() -> None:
    """A run that failed before publishing leaves its early copy: remove it with the process
    (a copy still being written goes with the process too: its file is already unlinked)."""
    for _, temporary, _, _ in _AHEAD.values():
        temporary.unlink(missing_ok=True)


def _copy_all(conn: duckdb.DuckDBPyConnection, temporary: Path) -> None:
    catalog = conn.execute("SELECT current_database()").fetchone()[0]
    conn.execute(f"ATTACH {_sql_text(str(temporary))} AS analyst_copy")
    try:
        for schema in PUBLIC_SCHEMAS:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS analyst_copy.{schema}")
        for schema, table in _tables(conn, catalog):
            name = f'{schema}."{table}"'
            # the large tables, in no order of their own, are written without keeping one
            with warehouse.insertion_order_not_kept(conn) if f"{schema}.{table}" in PARTITIONED else nullcontext():
                conn.execute(f"CREATE TABLE analyst_copy.{name} AS SELECT * FROM {catalog}.{name}")
    finally:
        conn.execute("DETACH analyst_copy")


def _shape(conn: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, list[tuple[str, str]]]:
    return {f"{schema}.{table}": conn.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? "
        "AND table_name = ? ORDER BY column_index", [catalog, schema, table]).fetchall()
        for schema, table in _tables(conn, catalog)}


def _row_counts(conn: duckdb.DuckDBPyConnection, catalog: str, tables: Iterable[str]) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {catalog}.{t}").fetchone()[0] for t in tables}


def _update_copy(conn: duckdb.DuckDBPyConnection, copy_path: Path, pending: changes.Pending) -> bool:
    """Bring a copy of the last published file up to date; False when it cannot be (the caller
    then discards the copy)."""
    catalog = conn.execute("SELECT current_database()").fetchone()[0]
    conn.execute(f"ATTACH {_sql_text(str(copy_path))} AS analyst_copy")
    try:
        shape = _shape(conn, catalog)
        if _shape(conn, "analyst_copy") != shape:  # a table or column added, removed or retyped
            return False
        with transaction(conn):
            for name in shape:
                _update_table(conn, catalog, name, pending)
        return _row_counts(conn, "analyst_copy", shape) == _row_counts(conn, catalog, shape)
    finally:
        conn.execute("DETACH analyst_copy")


def _update_table(conn: duckdb.DuckDBPyConnection, catalog: str, name: str, pending: changes.Pending) -> None:
    months = pending.months_or_all(BY_PERIOD[name]) if name in BY_PERIOD else None
    if months is not None:
        scope = indicators.period_scope(conn, indicators.periods_holding(months))
        conn.execute(f"DELETE FROM analyst_copy.{name} WHERE {scope}")
        conn.execute(f"INSERT INTO analyst_copy.{name} SELECT * FROM {catalog}.{name} WHERE {scope}")
        return
    if name not in PARTITIONED:
        conn.execute(f"DELETE FROM analyst_copy.{name}")
        conn.execute(f"INSERT INTO analyst_copy.{name} SELECT * FROM {catalog}.{name}")
        return
    subject, condition = PARTITIONED[name]
    with warehouse.insertion_order_not_kept(conn):  # rows of the large tables, in no order of their own
        for changed, months in pending.months.items():
            if changed != subject and not (subject is None and changed in contract.TABLES):
                continue
            for month in sorted(months, key=str):
                parameters = {"month": month} | ({"subject": changed} if subject is None else {})
                conn.execute(f"DELETE FROM analyst_copy.{name} WHERE {condition}", parameters)
                conn.execute(f"INSERT INTO analyst_copy.{name} SELECT * FROM {catalog}.{name} WHERE {condition}",
                             parameters)


def _describe(copy: duckdb.DuckDBPyConnection, views: dict[str, str]) -> None:
    for name, sql in views.items():
        copy.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
        copy.execute(f"COMMENT ON VIEW {name} IS {_sql_text(VIEW_COMMENTS.get(name, 'A view for common questions.'))}")
    catalog = copy.execute("SELECT current_database()").fetchone()[0]
    for schema, table in _tables(copy, catalog):
        comment = TABLE_COMMENTS.get(f"{schema}.{table}")
        if comment is None and schema == "conformed" and table in contract.TABLES:
            comment = contract.TABLES[table].description + " Valid rows only."
        copy.execute(f'COMMENT ON TABLE {schema}."{table}" IS {_sql_text(comment or table)}')
        for (column,) in copy.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ?", [schema, table]
        ).fetchall():
            text = _column_comment(schema, table, column) or column.replace("_", " ")
            copy.execute(f'COMMENT ON COLUMN {schema}."{table}"."{column}" IS {_sql_text(text)}')
