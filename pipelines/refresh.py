"""A refresh: the same Dagster jobs the UI runs, executed in-process for a range of months.

Order matters and is fixed here: the reference tables, then every source month
(ascending, so the earliest row keeps a duplicated id), then the indicator
months (each reads its neighbours), then the publication assets once.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb

from pipelines import children, ingest, operations, pseudonymise, resources, settings

QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# The modules of the second processes a publishing refresh hands work to (pipelines.children).
AUDIT_CHILD, WORKBOOK_CHILD = "pipelines.expectations", "pipelines.spreadsheet"
SOURCES_CHECKPOINT_THRESHOLD = "1GB"

log = logging.getLogger("prisonhealth.refresh")


class RefreshError(ValueError):
    """A refresh that cannot start as asked (its message is for the analyst; no traceback)."""


@dataclass
class RefreshReport:
    months: list[str]
    seconds: float = 0.0
    runs_failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.runs_failed:
            return 1
        if self.rejected or self.blocked:
            return 2
        return 0


def months_in_range(available: list[str], spec: str | None) -> list[str]:
    """Months to run: all available, or those inside `YYYY-MM:YYYY-MM` (either end may be open)."""
    if not spec:
        return available
    start, _, end = spec.partition(":")
    end = end or (start if ":" not in spec else "")
    return [m for m in available if (not start or m >= start) and (not end or m <= end)]


def _instance() -> dg.DagsterInstance:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    Path(home).mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.get()


def step_seconds(result) -> dict[str, float]:
    """Seconds per step of a finished run (Dagster's own step durations)."""
    return {event.step_key: event.event_specific_data.duration_ms / 1000 for event in result.all_events
            if event.event_type_value == "STEP_SUCCESS" and event.event_specific_data is not None}


def _record_run(result, name: str, report: RefreshReport) -> None:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            text = error.to_string() if error else event.message
            if "DagsterAssetCheckFailedError" in text:
                report.blocked.append(f"{name}: {event.step_key}")
                log.warning("%s: blocking check failed in %s", name, event.step_key)
            else:
                report.runs_failed.append(f"{name}: {event.step_key}")
                log.error("%s: step %s failed\n%s", name, event.step_key, text)


def run_refresh(landing: Path, out: Path, months_spec: str | None = None,
                progress: Callable[[str], None] = print) -> RefreshReport:
    """Run the pipeline for the chosen months; never raises for bad input."""
    # The partitions are defined from the landing directory when the definitions are first
    # imported, so the environment must name it before that import.
    os.environ["PRISONHEALTH_LANDING"] = str(landing)
    os.environ["PRISONHEALTH_OUT"] = str(out)
    started = time.monotonic()
    available = settings.months_in_landing(landing)
    months = months_in_range(available, months_spec)
    if not months:
        found = f"it has {available[0]} to {available[-1]}" if available else "it has no month files"
        raise RefreshError(f"no month of {months_spec or 'any'} in the landing directory {landing} ({found})")
    if len(months) == 1:  # a monthly refresh: the children import while this process does (see children)
        children.warm(AUDIT_CHILD, WORKBOOK_CHILD)
    from pipelines.definitions import build_definitions
    from pipelines.partitions import MONTHS

    report = RefreshReport(months)
    outside = [m for m in months if m not in set(MONTHS.get_partition_keys())]
    if outside:
        raise RefreshError(f"months {outside[0]}..{outside[-1]} are outside this process's partitions (from "
                         f"{MONTHS.get_first_partition_key()}); set PRISONHEALTH_FIRST_MONTH or run in a new process")
    defs = build_definitions()
    instance = _instance()
    refresh_id = _start_history(out, months)

    def run(job_name: str, label: str, **kwargs) -> None:
        began = time.monotonic()
        tags = operations.refresh_tags(refresh_id, "cli", operations.JOB_STEPS.get(job_name), out)
        try:
            result = defs.resolve_job_def(job_name).execute_in_process(
                instance=instance, raise_on_error=False, run_config=QUIET_RUN_CONFIG, tags=tags, **kwargs)
            _record_run(result, label, report)
            steps = step_seconds(result)
            log.info("%s steps: %s", label, ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()))
        except Exception:  # noqa: BLE001 - recorded in the log file, reported by exit code
            report.runs_failed.append(label)
            log.error("%s raised\n%s", label, traceback.format_exc())
            steps = {}
        progress(f"{label:<28} {time.monotonic() - began:6.1f} s")
        if job_name == "publication_job" and steps:  # the long one: say where its time went
            progress("  " + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()))

    jobs = downstream_jobs(defs, available, months)
    publishing = any(job_name == "publication_job" for job_name, *_ in jobs)
    run("reference_job", "reference tables")
    with _checkpointed_once(out):
        for i, month in enumerate(months, start=1):
            if publishing and i == len(months):  # GX imports beside the last month's loading; its suites start next
                children.warm(AUDIT_CHILD)
            if i < len(months):  # the next month's files are read while this month's are loaded
                _read_ahead(out, landing, months[i])
            run("ingest_job", f"[{i}/{len(months)}] sources {month}", partition_key=month)
    ingest.drop_reads_ahead()
    if publishing:
        _audit_ahead(out, refresh_id)
    for job_name, label, partitioned in jobs:
        for i, key in enumerate(partitioned, start=1):
            if publishing and i == len(partitioned):  # the workbook's child imports beside the last month
                children.warm(WORKBOOK_CHILD)
            run(job_name, f"[{i}/{len(partitioned)}] {label} {key}", partition_key=key)
        if not partitioned:
            run(job_name, label)
    _finish_history(out, instance, refresh_id)
    resources.release()
    report.seconds = time.monotonic() - started
    _summarise(out / "warehouse.duckdb", months, report)
    return report


def _warehouse(out: Path) -> resources.Warehouse:
    """The warehouse the refresh's runs write, for the work the refresh does between them."""
    return resources.Warehouse(database=str(out / "warehouse.duckdb"))


# ---- run history (pipelines.operations): one quality.runs row per refresh; never fails a refresh


def _start_history(out: Path, months: list[str]) -> str:
    """Tag this refresh's runs with one id, record it as running, and clear leftovers of a killed one."""
    refresh_id = operations.new_refresh_id("cli")
    try:
        operations.remove_stale_publish_files(out / "analyst.duckdb")
        with _warehouse(out).get_connection() as conn, resources.transaction(conn):
            operations.record_refresh_start(conn, refresh_id, months,
                                            operations.published_refreshes(out / "analyst.duckdb"))
    except Exception:  # noqa: BLE001 - history is a by-product: the refresh goes on without it
        log.warning("could not record the start of refresh %s\n%s", refresh_id, traceback.format_exc())
    return refresh_id


def _finish_history(out: Path, instance: dg.DagsterInstance, refresh_id: str) -> None:
    try:
        with _warehouse(out).get_connection() as conn, resources.transaction(conn):
            operations.sync_run_history(conn, instance, out, current_refresh=refresh_id, refreshes=[refresh_id])
    except Exception:  # noqa: BLE001
        log.warning("could not record the end of refresh %s\n%s", refresh_id, traceback.format_exc())


@contextmanager
def _checkpointed_once(out: Path):
    """Let the source months' write-ahead log grow to SOURCES_CHECKPOINT_THRESHOLD, then
    checkpoint once.

    At DuckDB's default (16 MiB) most of a national month's commits checkpoint the warehouse,
    at a cost that grows with the years kept. Only the source months: left in the log, the
    indicators' and the publication's large writes cost more in the closing checkpoint than the
    checkpoints they saved (docs/decisions.md, Checkpoints).
    """
    with _warehouse(out).get_connection() as conn:
        conn.execute(f"SET checkpoint_threshold = '{SOURCES_CHECKPOINT_THRESHOLD}'")
    try:
        yield
    finally:
        with _warehouse(out).get_connection() as conn:
            conn.execute("RESET checkpoint_threshold")
            conn.execute("CHECKPOINT")


def _read_ahead(out: Path, landing: Path, month: str) -> None:
    try:
        with _warehouse(out).get_connection() as conn:
            ingest.read_ahead(conn, landing, month, pseudonymise.Pseudonymiser())
    except Exception:  # noqa: BLE001 - a head start only: each file is read when loaded otherwise
        log.warning("could not start reading %s ahead\n%s", month, traceback.format_exc())


def _audit_ahead(out: Path, refresh_id: str) -> None:
    """Start the publication's Great Expectations suites now that the sources are loaded, so they
    run beside the indicator months (pipelines.expectations). If this fails, the audit step runs
    them itself."""
    from pipelines import expectations

    try:
        with _warehouse(out).get_connection() as conn:
            expectations.audit_ahead(conn, refresh_id)
    except Exception:  # noqa: BLE001 - a head start only
        log.warning("could not start the Great Expectations suites ahead\n%s", traceback.format_exc())


def indicator_months(available: list[str], months: list[str]) -> list[str]:
    """The months to (re)compute: those refreshed and the two before them, whose windows
    reach into the refreshed months and which may stop being provisional."""
    if not months:
        return []
    before = [m for m in available if m < months[0]][-2:]
    return before + months


def downstream_jobs(defs: dg.Definitions, available: list[str], months: list[str]):
    """The jobs after ingest that this code location has, in order, with their partitions."""
    names = {job.name for job in defs.resolve_all_job_defs()}
    jobs = []
    if "indicators_job" in names:
        jobs.append(("indicators_job", "indicators", indicator_months(available, months)))
    if "publication_job" in names:
        jobs.append(("publication_job", "publication", []))
    return jobs


def _summarise(warehouse_path: Path, months: list[str], report: RefreshReport) -> None:
    if not warehouse_path.exists():
        return
    with duckdb.connect(str(warehouse_path), read_only=True) as conn:
        rows = conn.execute("""
            SELECT status, count(*), sum(rows_read), sum(rows_loaded), sum(rows_quarantined)
            FROM quality.file_loads WHERE month IS NULL OR list_contains(?, month) GROUP BY status
        """, [months]).fetchall()
        report.files = {status: n for status, n, *_ in rows}
        report.rows = {
            "read": sum(r[2] or 0 for r in rows),
            "loaded": sum(r[3] or 0 for r in rows),
            "quarantined": sum(r[4] or 0 for r in rows),
        }
        report.rejected = conn.execute("""
            SELECT file, message FROM quality.file_loads
            WHERE status = 'rejected' AND (month IS NULL OR list_contains(?, month)) ORDER BY file
        """, [months]).fetchall()
