"""Great Expectations suites generated from the contract, and their run on one month.

The suites in `expectations/<source>.json` are written by `prisonhealth docs` from
the contract objects and checked for staleness by a test, so they are reviewable
and versioned. Each expectation carries the contract reason code in its `meta`.
The suite runs on the month's judged frame (raw text as `raw__<column>`, typed
values under the conformed names) with GX 1.x directly: the `dagster-ge`
integration pins GX below 1.0, and GX has no DuckDB engine, so pandas it is.

GX is Python on one core, and importing it takes seconds, so the audit's suites run in a
second process started ahead (`audit_ahead`): the rows to audit are read then, and the audit
step takes up the results (`audit_changes`) unless an audited table changed since. A run that
publishes starts them when the publication begins; `prisonhealth refresh` starts them earlier,
once the source months are loaded, so they have the core the indicator months leave idle (the
indicator SQL mostly keeps one core busy). Both key them by the refresh, so the run's step
keeps the suites the refresh started rather than starting them again. The refresh starts that
process warm (pipelines.children): it has imported GX by the time the sources are loaded.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from pipelines import changes, children, contract

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
log = logging.getLogger("prisonhealth.expectations")
CONSUMER = "expectation_audit"  # the audit's cursor in pipeline.cursors
AUDITED = (*contract.SOURCES, *contract.REFERENCES)
SUITE_DIR = Path(__file__).resolve().parents[1] / "expectations"
_PATTERNS = {
    "datetime": contract.DATETIME_PATTERN,
    "date": contract.DATE_PATTERN,
    "integer": contract.INTEGER_PATTERN,
    "number": contract.NUMBER_PATTERN,
    "month": contract.MONTH_PATTERN,
}


def _expectation(kind: str, reason: str, rule: str, **kwargs) -> dict:
    return {"type": kind, "kwargs": kwargs, "meta": {"reason": reason, "rule": rule}}


def suite_definition(table: contract.Table) -> dict:
    """The suite as a JSON-able dict, in the form GX's ExpectationSuite accepts."""
    out: list[dict] = []
    for column in table.columns:
        raw = "raw__" + column.name
        if column.type == "nhs_number":
            out.append(_expectation("expect_column_values_to_be_in_set", "invalid_nhs_number",
                                    "nhs_number has 10 digits and a valid Modulus 11 check digit",
                                    column="nhs_number_problem", value_set=["empty"]))
            if column.required:
                out.append(_expectation("expect_column_values_to_not_be_in_set", "missing_required_value",
                                        "nhs_number is present", column="nhs_number_problem", value_set=["empty"]))
            continue
        if column.required:
            out.append(_expectation("expect_column_values_to_not_be_null", "missing_required_value",
                                    f"{column.name} is present", column=raw))
        if column.type in _PATTERNS:
            out.append(_expectation("expect_column_values_to_match_regex", "invalid_value",
                                    f"{column.name} is written as {column.type}", column=raw,
                                    regex=_PATTERNS[column.type]))
            out.append(_expectation("expect_column_values_to_not_be_null", "invalid_value",
                                    f"{column.name} is a valid {column.type}", column=column.name,
                                    row_condition=f"{raw}.notnull()", condition_parser="pandas"))
        if column.type == "bool":
            out.append(_expectation("expect_column_values_to_be_in_set", "invalid_value",
                                    f"{column.name} is a boolean", column=column.name, value_set=[True, False]))
            out.append(_expectation("expect_column_values_to_not_be_null", "invalid_value",
                                    f"{column.name} is a boolean", column=column.name,
                                    row_condition=f"{raw}.notnull()", condition_parser="pandas"))
        if column.allowed:
            out.append(_expectation("expect_column_values_to_be_in_set", "invalid_value",
                                    f"{column.name} is one of the allowed values", column=raw,
                                    value_set=list(column.allowed)))
        if column.pattern:
            out.append(_expectation("expect_column_values_to_match_regex", "invalid_value",
                                    f"{column.name} matches its pattern", column=raw, regex=column.pattern))
        if column.minimum is not None or column.maximum is not None:
            out.append(_expectation("expect_column_values_to_be_between", "invalid_value",
                                    f"{column.name} is in range ({column.rule_text()})", column=column.name,
                                    min_value=column.minimum, max_value=column.maximum,
                                    strict_min=column.exclusive_minimum))
    for rule in table.rules:
        if rule.expectation:
            column, kind, condition = rule.expectation
            out.append(_expectation(f"expect_column_values_to_{'be_null' if kind == 'null' else 'not_be_null'}",
                                    rule.reason, rule.description, column=column,
                                    row_condition=condition, condition_parser="pandas"))
    if table.is_event or table.name == "population":
        out.append(_expectation("expect_column_values_to_be_in_set", "unknown_prison",
                                "prison_code is a prison in the reference", column="prison_code",
                                value_set={"$PARAMETER": "prison_codes"}))
    if table.primary_datetime:
        out.append(_expectation("expect_column_pair_values_to_be_equal", "outside_file_month",
                                f"{table.primary_datetime} is inside the file month",
                                column_A="primary_month", column_B="source_month",
                                ignore_row_if="either_value_is_missing"))
    for rule in table.rules:
        if rule.reason == "sequence_error":
            earlier, later = rule.columns
            out.append(_expectation("expect_column_pair_values_a_to_be_greater_than_b", "sequence_error",
                                    rule.description, column_A=later, column_B=earlier, or_equal=True,
                                    ignore_row_if="either_value_is_missing"))
    if table.id_column or table.name in ("population", "drug_groups"):
        out.append(_expectation("expect_column_values_to_be_null", "duplicate_id",
                                "the id was not used by an earlier row (across all months)", column="first_file"))
    return {"name": table.name, "expectations": out, "meta": {"contract_version": contract.CONTRACT_VERSION}}


def suite_json(table: contract.Table) -> str:
    return json.dumps(suite_definition(table), indent=2) + "\n"


def load_suite(table: contract.Table) -> dict:
    """The committed suite if present (the reviewed version), else the generated one."""
    path = SUITE_DIR / f"{table.name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    return suite_definition(table)


def _quiet_gx():
    import great_expectations as gx

    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return gx


def run_suite(table: contract.Table, frame: pd.DataFrame, prison_codes: list[str]) -> list[dict]:
    """Validate judged rows (any months); one row per expectation with its failing rows.

    `rows` lists each failing row as (source_month, source_line); source_month is None
    for reference tables.
    """
    gx = _quiet_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("prisonhealth").add_dataframe_asset(name=table.name)
             .add_batch_definition_whole_dataframe("month").get_batch(batch_parameters={"dataframe": frame}))
    parameters = {"prison_codes": prison_codes}
    suite = gx.ExpectationSuite(**load_suite(table))
    index = ["source_month", "source_line"] if table.is_event else ["source_line"]
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": index}
    result = batch.validate(suite, expectation_parameters=parameters, result_format=result_format)
    rows = []
    for item in result.results:
        config = item.expectation_config
        failing = [(entry.get("source_month"), int(entry["source_line"]))
                   for entry in (item.result.get("unexpected_index_list") or [])]
        column = config.kwargs.get("column") or f"{config.kwargs.get('column_A')} >= {config.kwargs.get('column_B')}"
        rows.append({
            "expectation": config.type,
            "column": column,
            "reason": config.meta.get("reason"),
            "rule": config.meta.get("rule"),
            "success": bool(item.success),
            "unexpected_count": int(item.result.get("unexpected_count") or len(failing)),
            "rows": sorted(failing),
            "error": (item.exception_info or {}).get("exception_message") if not item.success else None,
        })
    return rows


def _month_list(months: Iterable[str]) -> str:
    return ", ".join("'" + m.replace("'", "''") + "'" for m in sorted(months))


def quarantined_rows_condition(table: contract.Table, months: Iterable[str] | None = None) -> str:
    """Raw rows (alias r) that validation set aside, other than malformed ones (they have no columns);
    of the given file months only, when `months` is given (event sources)."""
    position = "(r.source_month, r.source_line)" if table.is_event else "r.source_line"
    quarantined = "(month, line)" if table.is_event else "line"
    scope = ""
    if months is not None and table.is_event:
        listed = _month_list(months) or "NULL"
        scope = f"r.source_month IN ({listed}) AND "
    return (f"{scope}{position} IN (SELECT {quarantined} FROM quality.quarantine "
            f"WHERE source = '{table.name}' AND reason <> 'malformed_row')")


def audit(conn, table: contract.Table, months: Iterable[str] | None = None) -> tuple[list[dict], list[str]]:
    """Run the source's suite over the rows validation set aside (of `months` only, when
    given: a monthly refresh audits the months it changed), in one GX run.

    Returns the suite results and the disagreements with the quarantine: a row GX
    flags that was not quarantined, a quarantined row GX does not flag, or a row whose
    first failing reason differs. Valid rows meet every expectation by the same
    argument (tests/test_expectations.py runs whole files), so running the suite on
    the set-aside rows gives the same failing counts as on every row, at a fraction
    of GX's cost on a national month.
    """
    frame = judged_frame(conn, table, months)
    if frame.empty:
        return [], []
    results = run_suite(table, frame, prison_codes(conn))
    return results, disagreements(table, frame, results)


def judged_frame(conn, table: contract.Table, months: Iterable[str] | None = None) -> pd.DataFrame:
    """The rows validation set aside (of `months` only, when given), judged as the suite reads them."""
    from pipelines import validation

    judged = validation.judge_sql(table, quarantined_rows_condition(table, months))
    return conn.execute(f"SELECT * EXCLUDE (original_row) FROM ({judged})").df()


def prison_codes(conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT prison_code FROM conformed.prisons").fetchall()]


def disagreements(table: contract.Table, frame: pd.DataFrame, results: list[dict]) -> list[str]:
    """Rows where the suite's results and the quarantine (the frame's `reason`) disagree."""
    flagged: dict[tuple, set[str]] = {}
    for result in results:
        for row in result["rows"]:
            flagged.setdefault(row, set()).add(result["reason"])
    months = frame["source_month"] if table.is_event else [None] * len(frame)
    quarantined = {(m, int(line)): reason for m, line, reason in zip(months, frame["source_line"], frame["reason"],
                                                                    strict=True)}
    problems = [f"{table.name} {m or ''} line {line}: GX flags {sorted(flagged.get((m, line), []))}, "
                f"quarantine says {quarantined.get((m, line))}"
                for m, line in sorted(set(flagged) | set(quarantined), key=str)
                if not flagged.get((m, line)) or (m, line) not in quarantined
                or min(flagged[(m, line)], key=contract.REASONS.index) != quarantined[(m, line)]]
    return problems


def audit_scope(pending: changes.Pending) -> list[tuple[contract.Table, set[str] | None]]:
    """The tables to audit for what changed since the last audit, each with its months (None:
    all of them, the first time, for a reference table, or when a whole source changed)."""
    scope = []
    for table in AUDITED:
        months = None
        if not pending.everything:
            changed = pending.months_of(table.name)
            if not changed:
                continue
            months = None if None in changed or not table.is_event else changed
        scope.append((table, months))
    return scope


def scope_label(table: contract.Table, months: set[str] | None) -> str:
    return table.name if months is None else f"{table.name} {', '.join(sorted(months))}"


@dataclass
class Audited:
    table: contract.Table
    months: set[str] | None
    results: list[dict]
    disagreements: list[str]


def audit_changes(conn: duckdb.DuckDBPyConnection, pending: changes.Pending, key: str | None = None
                  ) -> list[Audited]:
    """Audit what changed since the last audit: with the suites started ahead under `key` when the
    audited tables have not changed since (the same rows), otherwise here and now."""
    ahead = _AHEAD.pop(key, None)
    if ahead is not None and not ahead.current(conn):
        ahead.cancel()
        ahead = None
    if ahead is None:
        return [Audited(table, months, *audit(conn, table, months)) for table, months in audit_scope(pending)]
    results = ahead.results()
    audited = []
    for table, months in ahead.scope:
        found = results.get(table.name, [])  # the child skips tables with no rows set aside
        audited.append(Audited(table, months, found, disagreements(table, ahead.frames[table.name], found)))
    return audited


class AuditProcess:
    """The suites of an audit run by a second Python process (pipelines.children), on the rows
    read when it started (`frames`); `results()` waits for them."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, pending: changes.Pending):
        self.upto = pending.upto
        self.scope = audit_scope(pending)
        self.frames = {table.name: judged_frame(conn, table, months) for table, months in self.scope}
        _remove_stale_folders()
        self._folder = Path(tempfile.mkdtemp(prefix=f"{_FOLDER}{os.getpid()}-"))  # private to this user
        inputs = self._folder / "inputs.pickle"
        inputs.write_bytes(pickle.dumps(({n: f for n, f in self.frames.items() if not f.empty}, prison_codes(conn))))
        self._process = children.start("pipelines.expectations", str(inputs), str(self._folder / "results.pickle"))

    def current(self, conn: duckdb.DuckDBPyConnection) -> bool:
        """No audited table changed since the rows were read."""
        return not changes.changed_since(conn, self.upto, (t.name for t in AUDITED))

    def results(self) -> dict[str, list[dict]]:
        """Each audited table's suite results; RuntimeError with the child's error if it failed."""
        began = time.monotonic()
        try:
            failed = self._process.wait() != 0
            log.info("waited %.1f s for the Great Expectations suites", time.monotonic() - began)
            if failed:
                raise RuntimeError(f"the Great Expectations suites failed:\n{self._process.errors()[-3000:]}")
            return pickle.loads((self._folder / "results.pickle").read_bytes())
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)

    def cancel(self) -> None:
        self._process.kill()
        shutil.rmtree(self._folder, ignore_errors=True)


_FOLDER = "prisonhealth-audit-"  # + the pid of the process that started the suites


def _remove_stale_folders() -> None:
    """The folders of suites whose process was killed (its exit handler never ran): they hold
    person keys and quarantined values, so the next audit removes them."""
    from pipelines.operations import process_alive  # not at the top: the child has no use for Dagster

    for folder in Path(tempfile.gettempdir()).glob(f"{_FOLDER}*-*"):
        pid = folder.name[len(_FOLDER):].partition("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


_AHEAD: dict[str, AuditProcess] = {}  # refresh (or run) id -> the suites started for its audit step


def audit_ahead(conn: duckdb.DuckDBPyConnection, key: str) -> None:
    """Start the suites of the audit step of refresh or run `key` in a second process (see the
    module docstring), unless those started for it earlier are still current."""
    if key in _AHEAD and _AHEAD[key].current(conn):
        return
    _stop_unused_audits()
    _AHEAD[key] = AuditProcess(conn, changes.pending(conn, CONSUMER))
    log.info("started the Great Expectations suites on %s",
             ", ".join(scope_label(t, m) for t, m in _AHEAD[key].scope) or "nothing changed")


@atexit.register
def _stop_unused_audits() -> None:
    """A run that stopped before its audit step leaves its suites running: stop them with the process."""
    for process in _AHEAD.values():
        process.cancel()
    _AHEAD.clear()


def store_results(conn, table: contract.Table, results: list[dict], months: Iterable[str] | None = None) -> None:
    """quality.expectation_results: failing rows per expectation and file month (replacing the
    given months' rows, or all the source's rows)."""
    scope = f" AND month IN ({_month_list(months) or 'NULL'})" if months is not None and table.is_event else ""
    conn.execute(f"DELETE FROM quality.expectation_results WHERE source = ?{scope}", [table.name])
    rows = []
    for result in results:
        by_month: dict = {}
        for month, _ in result["rows"]:
            by_month[month] = by_month.get(month, 0) + 1
        rows += [(table.name, month, result["expectation"], result["column"], result["reason"], result["rule"], n)
                 for month, n in sorted(by_month.items(), key=str)]
    if rows:
        conn.executemany("INSERT INTO quality.expectation_results VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def failing_rules_markdown(failures: list[tuple[str, str, int]] | None) -> str:
    """The rules a month's rows broke (each rule is one expectation of the suite, or two)."""
    if not failures:
        return "No row failed the contract's rules."
    lines = ["| rule | reason | rows failing |", "|---|---|---:|"]
    lines += [f"| {rule} | {reason} | {n:,} |" for reason, rule, n in failures]
    return "\n".join(lines)


def prepare() -> None:
    """What the second process of AuditProcess imports before it is handed its work: GX, for seconds."""
    _quiet_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: F401


def main(arguments: list[str]) -> None:
    """The second process of AuditProcess (pipelines.children): the suites on the inputs file's rows."""
    inputs, output = Path(arguments[0]), Path(arguments[1])
    frames, prisons = pickle.loads(inputs.read_bytes())
    inputs.unlink()  # the rows are in memory now
    output.write_bytes(pickle.dumps({name: run_suite(contract.TABLES[name], frame, prisons)
                                     for name, frame in frames.items()}))
