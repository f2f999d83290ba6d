"""Operations: the monthly schedule, the landing sensor and the run history analysts read.

Everything the Dagster daemon launches goes through one job, `refresh_job` (every
asset), with one asset subset and at most one partition per run, submitted in
refresh order: the reference tables, each source month ascending, each indicator
month, then the publication assets once. The instance runs one run at a time in
submission order (dagster.yaml: `concurrency: runs: max_concurrent_runs: 1`), so
the runs of one request never overlap and DuckDB only ever has one writer.

The decisions are pure functions (which months a scheduled date loads, which files
changed, which runs a change needs) so they can be tested without a daemon; the
Dagster objects at the bottom only wire them to the instance.

Run history: every Dagster run of one logical refresh carries the tag
`prisonhealth/refresh_id` (CLI refreshes, schedule ticks and sensor ticks set it;
a UI backfill is grouped by its backfill id, a single launch by its run id).
`quality.runs` holds one row per refresh, rebuilt from the instance's run records
by the `quality/runs` asset just before the analysts' database is copied, and by
`prisonhealth refresh` when it starts and ends.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg

from pipelines import contract, landing, periods, settings
from pipelines.resources import PrisonHealthSettings, Warehouse, transaction

REFRESH_ID_TAG = "prisonhealth/refresh_id"
TRIGGER_TAG = "prisonhealth/trigger"
STEP_TAG = "prisonhealth/step"
OUT_TAG = "prisonhealth/out"
"""The output directory (warehouse) a run wrote to; the history of one warehouse ignores other directories' runs."""

SCHEDULE_CRON = "0 6 5 * *"
SCHEDULE_TIMEZONE = "Europe/London"
PROVISIONAL_MONTHS = 2
"""Indicator month M reads source months M-1 to M+2: it stays provisional until M+2 is loaded,
so each new month re-runs the two before it."""

SENSOR_INTERVAL_SECONDS = 60
SETTLE_SECONDS = 60
"""A landing file modified less than this long ago may still be being written: wait a tick."""

STEP_GROUPS: dict[str, tuple[str, ...]] = {
    "reference": ("reference",),
    "sources": ("sources", "validation"),
    "indicators": ("indicators",),
    "publication": ("validation_audit", "publication"),
}
"""The asset groups each step of a refresh materializes (the same as the four CLI jobs)."""

JOB_STEPS = {"reference_job": "reference", "ingest_job": "sources", "indicators_job": "indicators",
             "publication_job": "publication"}

REFRESH_JOB = dg.define_asset_job(
    "refresh_job",
    selection=dg.AssetSelection.all(),
    description="Every asset of the pipeline. The monthly schedule and the landing sensor launch it once "
    "per step (reference tables, one source month, one indicator month, publication) with that step's "
    "assets, in refresh order; runs queue one at a time.",
)


# ---------------------------------------------------------------- months and plans


def newest_complete_month(when: date | datetime) -> str:
    """The calendar month before the one `when` falls in."""
    return periods.shift_month(f"{when.year:04d}-{when.month:02d}", -1)


def months_for_schedule(scheduled_date: date | datetime) -> list[str]:
    """The months a scheduled refresh loads, ascending: the newest complete month and the
    provisional months before it (2025-01-05 -> 2024-10, 2024-11, 2024-12)."""
    newest = newest_complete_month(scheduled_date)
    return [periods.shift_month(newest, -n) for n in range(PROVISIONAL_MONTHS, -1, -1)]


def indicator_window() -> tuple[int, int]:
    """(start, end) offsets of the source months an indicator month reads, from the asset's mapping."""
    from assets.indicators import SOURCE_WINDOW

    return SOURCE_WINDOW.start_offset, SOURCE_WINDOW.end_offset


def affected_indicator_months(source_months: Iterable[str], available: Iterable[str]) -> list[str]:
    """Indicator months whose source window contains any of `source_months`, among those available.

    Month M reads M-1..M+2, so source month S feeds indicator months S-2..S+1.
    """
    start, end = indicator_window()
    available = set(available)
    affected = {periods.shift_month(s, -n) for s in source_months for n in range(start, end + 1)}
    return sorted(affected & available)


@dataclass(frozen=True)
class PlannedRun:
    """One Dagster run of a refresh: a step and, for monthly steps, its month."""

    step: str
    partition: str | None = None


def refresh_plan(available: Sequence[str], source_months: Iterable[str], reference: bool = True) -> list[PlannedRun]:
    """The runs that reload `source_months` and everything they feed, in a safe order.

    Over a range at the end of the data this is what `prisonhealth refresh --months A:B`
    runs: reference tables, sources A..B, indicators A-2..B, publication.
    """
    months = sorted(set(source_months) & set(available))
    plan = [PlannedRun("reference")] if reference else []
    plan += [PlannedRun("sources", m) for m in months]
    plan += [PlannedRun("indicators", m) for m in affected_indicator_months(months, available)]
    if plan:
        plan.append(PlannedRun("publication"))
    return plan


def new_refresh_id(trigger: str, when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    return f"{trigger}-{when.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def refresh_tags(refresh_id: str, trigger: str, step: str | None = None, out: Path | None = None) -> dict[str, str]:
    tags = {REFRESH_ID_TAG: refresh_id, TRIGGER_TAG: trigger, OUT_TAG: str(Path(out or settings.out_dir()).resolve())}
    if step:
        tags[STEP_TAG] = step
    return tags


def step_asset_keys(asset_graph) -> dict[str, list[dg.AssetKey]]:
    return {step: sorted(dg.AssetSelection.groups(*groups).resolve(asset_graph), key=lambda k: k.path)
            for step, groups in STEP_GROUPS.items()}


def run_requests(plan: Sequence[PlannedRun], refresh_id: str, trigger: str, asset_graph) -> list[dg.RunRequest]:
    """One RunRequest of `refresh_job` per planned run, in plan order (the queue keeps it)."""
    keys = step_asset_keys(asset_graph)
    return [
        dg.RunRequest(
            run_key=f"{refresh_id}/{i:03d}-{run.step}-{run.partition or 'all'}",
            partition_key=run.partition,
            asset_selection=keys[run.step],
            tags=refresh_tags(refresh_id, trigger, run.step),
        )
        for i, run in enumerate(plan)
    ]


# ---------------------------------------------------------------- the landing directory


def landing_files(landing_dir: Path) -> dict[str, Path]:
    """Every file the pipeline would read, by path relative to the landing directory."""
    landing_dir = Path(landing_dir)
    found: dict[str, Path] = {}
    for table in contract.SOURCES:
        for path in landing.month_files(landing_dir, table.name).values():
            found[f"{path.parent.name}/{path.name}"] = path
    for table in contract.REFERENCES:
        path = landing.reference_file(landing_dir, table.name)
        if path is not None:
            found[f"reference/{path.name}"] = path
    return found


@dataclass
class LandingState:
    """Content hashes of the landing files (the sensor's cursor), with the size and mtime
    each hash was taken at so unchanged files are not read again."""

    hashes: dict[str, str] = field(default_factory=dict)
    stats: dict[str, tuple[int, int]] = field(default_factory=dict)

    def to_cursor(self) -> str:
        return json.dumps({"files": self.hashes, "stats": {k: list(v) for k, v in self.stats.items()}},
                          sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_cursor(cls, cursor: str | None) -> LandingState:
        if not cursor:
            return cls()
        data = json.loads(cursor)
        if "files" not in data:  # a bare {path: sha256} map
            return cls(dict(data))
        return cls(dict(data["files"]), {k: (int(v[0]), int(v[1])) for k, v in data.get("stats", {}).items()})


def scan_landing(landing_dir: Path, previous: LandingState | None = None, now: float | None = None,
                 settle_seconds: float = SETTLE_SECONDS) -> tuple[LandingState, list[str]]:
    """Hash the landing files; returns the new state and the files left for a later tick.

    A file modified in the last `settle_seconds` keeps its previous entry (it may be
    half-written). A file whose size and mtime are unchanged keeps its previous hash.
    """
    previous = previous or LandingState()
    now = datetime.now(UTC).timestamp() if now is None else now
    state, unsettled = LandingState(), []
    for relative, path in sorted(landing_files(landing_dir).items()):
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        stat = (info.st_size, info.st_mtime_ns)
        if now - info.st_mtime < settle_seconds:
            unsettled.append(relative)
            if relative in previous.hashes:
                state.hashes[relative] = previous.hashes[relative]
                if relative in previous.stats:
                    state.stats[relative] = previous.stats[relative]
            continue
        if previous.stats.get(relative) == stat and relative in previous.hashes:
            state.hashes[relative] = previous.hashes[relative]
        else:
            state.hashes[relative] = landing.sha256_of(path)
        state.stats[relative] = stat
    return state, unsettled


def landing_cursor(landing_dir: Path | None = None) -> str:
    """The sensor's cursor for the landing directory as it is now: set it (`dagster sensor cursor
    landing_files --set ...`) before switching the sensor on over a warehouse already loaded."""
    return scan_landing(landing_dir or settings.landing_dir(), settle_seconds=0)[0].to_cursor()


def changed_files(previous: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """Files that are new or whose content changed (deleted files change nothing loaded)."""
    return sorted(path for path, sha in current.items() if previous.get(path) != sha)


def plan_for_changes(changed: Iterable[str], available: Sequence[str]) -> list[PlannedRun]:
    """The runs a set of new or changed landing files needs.

    A reference file feeds every month, so it reloads the reference tables and every
    month. A source file for month S reloads S and recomputes the indicator months
    S-2..S+1 that read it.
    """
    changed = list(changed)
    if any(path.startswith("reference/") for path in changed):
        return refresh_plan(available, available, reference=True)
    months = set()
    for path in changed:
        match = landing.MONTH_FILE.match(Path(path).name)
        if match:
            months.add(match.group(1))
    return refresh_plan(available, months, reference=False)


# ---------------------------------------------------------------- crash safety


_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.tmp(\.wal)?$")


def process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_publish_files(target: Path) -> list[Path]:
    """Delete `.<target>.<pid>.tmp` (and its `.wal`) left by a publication whose process died.

    The analysts' database is built under such a name and `os.replace`d into place;
    a process killed before the replace leaves it behind. Files of live processes stay.
    """
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    for path in target.parent.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and match["target"] == target.name and not process_alive(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# ---------------------------------------------------------------- run history


RUNS_DDL = """
CREATE TABLE IF NOT EXISTS quality.runs (
  run_id VARCHAR,
  trigger VARCHAR,
  partitions VARCHAR[],
  source_months VARCHAR[],
  started_at TIMESTAMPTZ,
  ended_at TIMESTAMPTZ,
  status VARCHAR,
  files_loaded BIGINT,
  files_rejected BIGINT,
  dagster_runs INTEGER,
  problems VARCHAR
)"""

RUN_COLUMNS = ("run_id", "trigger", "partitions", "source_months", "started_at", "ended_at", "status",
               "files_loaded", "files_rejected", "dagster_runs", "problems")

RUNS_TABLE_COMMENT = ("One row per refresh, whoever started it (prisonhealth refresh, the monthly schedule, "
                      "the landing sensor, a backfill or a launch in the Dagster UI): the months it ran, "
                      "when, whether it succeeded and how many files it loaded.")
RUNS_COLUMN_COMMENTS = {
    "run_id": "Refresh id: cli-/schedule-/sensor-<UTC time>, a Dagster backfill id, or a Dagster run id.",
    "trigger": "cli, schedule, sensor, backfill or ui.",
    "partitions": "Every monthly partition the refresh ran (source and indicator months), YYYY-MM.",
    "source_months": "Months whose landing files were (re)loaded, YYYY-MM.",
    "started_at": "When the first run of the refresh started.",
    "ended_at": "When its last run ended; for the refresh that published this copy, when the copy was made. "
                "NULL while running.",
    "status": "running, success, blocked (a file rejected or a blocking data-quality check failed), failed "
              "or interrupted (the process was stopped before it finished).",
    "files_loaded": "Landing files read and loaded (unchanged files are not counted).",
    "files_rejected": "Landing files rejected whole.",
    "dagster_runs": "Dagster runs the refresh consisted of.",
    "problems": "The steps that failed or were blocked, '; '-separated.",
}
"""Comments for the analysts' database (pipelines.analyst_database can merge these)."""

FINAL_STATUSES = ("success", "blocked", "failed", "interrupted")
_UNFINISHED = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.MANAGED,
               dg.DagsterRunStatus.SUSPENDED}
_PARTITION_TAG = "dagster/partition"
_RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def create_runs_table(conn) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS quality")
    conn.execute(RUNS_DDL)


def refresh_group(run: dg.DagsterRun) -> str:
    """The refresh a Dagster run belongs to."""
    return run.tags.get(REFRESH_ID_TAG) or run.tags.get("dagster/backfill") or run.run_id


def trigger_of(run: dg.DagsterRun) -> str:
    tags = run.tags
    if TRIGGER_TAG in tags:
        return tags[TRIGGER_TAG]
    if "dagster/backfill" in tags:
        return "backfill"
    if "dagster/schedule_name" in tags:
        return "schedule"
    if "dagster/sensor_name" in tags:
        return "sensor"
    return "ui"


def step_of(run: dg.DagsterRun) -> str:
    if STEP_TAG in run.tags:
        return run.tags[STEP_TAG]
    if run.job_name in JOB_STEPS:
        return JOB_STEPS[run.job_name]
    keys = run.asset_selection or set()
    if any(key.path[0] == "raw" for key in keys) or (not keys and _PARTITION_TAG in run.tags):
        return "sources"
    return "assets"


def _partitions(run: dg.DagsterRun) -> list[str]:
    if _PARTITION_TAG in run.tags:
        return [run.tags[_PARTITION_TAG]]
    start, end = (run.tags.get(t) for t in _RANGE_TAGS)
    if start and end:
        months, month = [], start
        while month <= end:
            months.append(month)
            month = periods.shift_month(month, 1)
        return months
    return []


@dataclass
class RunFacts:
    """What the history needs from one Dagster run."""

    run: dg.DagsterRun
    start: float | None
    end: float | None
    files_loaded: int = 0
    files_rejected: int = 0
    failures: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


def _run_facts(instance: dg.DagsterInstance, record) -> RunFacts:
    run = record.dagster_run
    facts = RunFacts(run, record.start_time, record.end_time)
    events = instance.get_records_for_run(
        run.run_id, of_type={dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.STEP_FAILURE})
    for event_record in events.records:
        event = event_record.event_log_entry.dagster_event
        if event is None:
            continue
        where = f"{run.tags.get(STEP_TAG) or run.job_name} {run.tags.get(_PARTITION_TAG, '')}".strip()
        if event.event_type_value == "ASSET_MATERIALIZATION":
            materialization = event.event_specific_data.materialization
            status = materialization.metadata.get("status")
            if status is not None and "file" in materialization.metadata:
                facts.files_loaded += status.value == "loaded"
                facts.files_rejected += status.value == "rejected"
        else:
            error = event.event_specific_data.error
            text = error.to_string() if error else (event.message or "")
            # the same rule as the CLI's exit code: a failed blocking check is "blocked" (2), anything else failed (1)
            (facts.blocked if "DagsterAssetCheckFailedError" in text else facts.failures).append(
                f"{where}: {event.step_key}")
    return facts


def _timestamp(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


def history_row(group: str, facts: Sequence[RunFacts], current_run_id: str | None = None,
                current_refresh: str | None = None) -> dict:
    """One quality.runs row from the runs of one refresh.

    `current_run_id` is the run doing the recording (still in progress, taken as
    succeeding so far); a CLI refresh with unfinished runs that is not
    `current_refresh` was killed (one CLI refresh at a time holds the warehouse).
    """
    runs = sorted(facts, key=lambda f: (f.start if f.start is not None else float("inf"), f.run.run_id))
    now = datetime.now(UTC).timestamp()
    unfinished = [f for f in runs if f.run.status in _UNFINISHED and f.run.run_id != current_run_id]
    failures = [p for f in runs for p in f.failures]
    blocked = [p for f in runs for p in f.blocked]
    failures += [f"{f.run.job_name} {', '.join(_partitions(f.run))}: {f.run.status.value.lower()}".strip()
                 for f in runs if f.run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
                 and not f.failures and not f.blocked]
    rejected = sum(f.files_rejected for f in runs)
    trigger = trigger_of(runs[0].run)
    if unfinished:
        status = "interrupted" if trigger == "cli" and group != current_refresh else "running"
    elif failures:
        status = "failed"
    elif blocked or rejected:
        status = "blocked"
    else:
        status = "success"
    starts = [f.start for f in runs if f.start is not None]
    ends = [now if f.run.run_id == current_run_id else f.end for f in runs]
    ended = None if unfinished or any(e is None for e in ends) else max(ends, default=None)
    partitions = sorted({p for f in runs for p in _partitions(f.run)})
    source_months = sorted({p for f in runs if step_of(f.run) == "sources" for p in _partitions(f.run)})
    return {
        "run_id": group,
        "trigger": trigger,
        "partitions": partitions,
        "source_months": source_months,
        "started_at": _timestamp(min(starts)) if starts else None,
        "ended_at": _timestamp(ended),
        "status": status,
        "files_loaded": sum(f.files_loaded for f in runs),
        "files_rejected": rejected,
        "dagster_runs": len(runs),
        "problems": "; ".join(blocked + failures) or None,
    }


def _group_records(instance: dg.DagsterInstance, group: str) -> list:
    for tag in (REFRESH_ID_TAG, "dagster/backfill"):
        records = instance.get_run_records(filters=dg.RunsFilter(tags={tag: group}))
        if records:
            return list(records)
    return list(instance.get_run_records(filters=dg.RunsFilter(run_ids=[group])))


def upsert_rows(conn, rows: Sequence[dict]) -> None:
    """Replace the rows of these refreshes (the caller owns the transaction)."""
    create_runs_table(conn)
    for row in rows:
        conn.execute("DELETE FROM quality.runs WHERE run_id = ?", [row["run_id"]])
        conn.execute(f"INSERT INTO quality.runs ({', '.join(RUN_COLUMNS)}) VALUES "
                     f"({', '.join('?' for _ in RUN_COLUMNS)})", [row[c] for c in RUN_COLUMNS])


def sync_run_history(conn, instance: dg.DagsterInstance, out: Path, current_run_id: str | None = None,
                     current_refresh: str | None = None, refreshes: Sequence[str] | None = None,
                     recent: int = 500) -> list[dict]:
    """Bring quality.runs of the warehouse in `out` up to date from the instance's run records.

    Looks at the `recent` latest runs (or only the given refresh ids) and rewrites the
    row of every refresh among them that is not already recorded as finished with the
    same number of runs. Runs tagged with another output directory are someone else's.
    `current_run_id`/`current_refresh` name the run and refresh doing the recording.
    Returns the rows written.
    """
    create_runs_table(conn)
    out = str(Path(out).resolve())
    if current_run_id and current_refresh is None:
        current = instance.get_run_by_id(current_run_id)
        current_refresh = refresh_group(current) if current else None
    seen: dict[str, list] = {}
    if refreshes is None:
        for record in instance.get_run_records(limit=recent):
            if record.dagster_run.tags.get(OUT_TAG, out) == out:
                seen.setdefault(refresh_group(record.dagster_run), []).append(record)
        refreshes = list(seen)
    known = {run_id: (status, n) for run_id, status, n in conn.execute(
        "SELECT run_id, status, dagster_runs FROM quality.runs").fetchall()}
    rows = []
    for group in refreshes:
        status, n = known.get(group, (None, None))
        recent_records = seen.get(group, [])
        if (recent_records and status in FINAL_STATUSES and n == len(recent_records) and group != current_refresh
                and all(r.dagster_run.status not in _UNFINISHED for r in recent_records)):
            continue
        records = [r for r in _group_records(instance, group) if r.dagster_run.tags.get(OUT_TAG, out) == out]
        if records:
            rows.append(history_row(group, [_run_facts(instance, r) for r in records], current_run_id,
                                    current_refresh))
    upsert_rows(conn, rows)
    return rows


def published_refreshes(analyst_database: Path) -> set[str] | None:
    """The refreshes recorded in the analysts' database (empty if there is none; None if unreadable)."""
    import duckdb

    if not Path(analyst_database).exists():
        return set()
    try:
        with duckdb.connect(str(analyst_database), read_only=True) as conn:
            return {run_id for (run_id,) in conn.execute("SELECT run_id FROM quality.runs").fetchall()}
    except duckdb.Error:
        return None


def record_refresh_start(conn, refresh_id: str, months: Sequence[str], published: set[str] | None = None) -> None:
    """A CLI refresh begins: mark CLI refreshes that were stopped as interrupted, add this one.

    Called while this process holds the warehouse, so no other CLI refresh is running:
    one still 'running' was killed, and so was the latest one if it was recorded as
    done (just before the analysts' copy) but is missing from the `published` refreshes.
    """
    create_runs_table(conn)
    conn.execute("UPDATE quality.runs SET status = 'interrupted' WHERE status = 'running' AND trigger = 'cli'")
    latest = conn.execute("SELECT run_id, status FROM quality.runs WHERE trigger = 'cli' "
                          "ORDER BY started_at DESC LIMIT 1").fetchall()
    if published is not None and latest and latest[0][1] in ("success", "blocked") and latest[0][0] not in published:
        conn.execute("UPDATE quality.runs SET status = 'interrupted', problems = 'stopped while publishing' "
                     "WHERE run_id = ?", [latest[0][0]])
    upsert_rows(conn, [{
        "run_id": refresh_id, "trigger": "cli", "partitions": list(months), "source_months": list(months),
        "started_at": datetime.now(UTC), "ended_at": None, "status": "running", "files_loaded": 0,
        "files_rejected": 0, "dagster_runs": 0, "problems": None,
    }])


# ---------------------------------------------------------------- Dagster objects


def _available_months() -> list[str]:
    return settings.months_in_landing(settings.landing_dir())


@dg.schedule(
    name="monthly_refresh",
    cron_schedule=SCHEDULE_CRON,
    execution_timezone=SCHEDULE_TIMEZONE,
    job=REFRESH_JOB,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="On the 5th of each month at 06:00 (London): load the newest complete month, re-run the two "
    "provisional months before it and republish, as `prisonhealth refresh --months <M-2>:<M>` would.",
)
def monthly_refresh(context: dg.ScheduleEvaluationContext):
    months = months_for_schedule(context.scheduled_execution_time)
    available = _available_months()
    if months[-1] not in available:
        return dg.SkipReason(f"{months[-1]} has not been delivered to {settings.landing_dir()} yet; "
                             "the landing sensor will load it when it arrives.")
    refresh_id = f"schedule-{context.scheduled_execution_time:%Y-%m-%d}"
    plan = refresh_plan(available, months)
    return run_requests(plan, refresh_id, "schedule", context.repository_def.asset_graph)


@dg.sensor(
    name="landing_files",
    job=REFRESH_JOB,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Watches the landing directory: a new or changed month file reloads that month and "
    "recomputes the indicator months that read it; a changed reference file reloads everything. "
    "Cursor: the SHA-256 of every landing file.",
)
def landing_files_sensor(context: dg.SensorEvaluationContext):
    previous = LandingState.from_cursor(context.cursor)
    landing_dir = settings.landing_dir()
    state, unsettled = scan_landing(landing_dir, previous)
    changed = changed_files(previous.hashes, state.hashes)
    cursor = state.to_cursor()
    if not changed:
        waiting = f" ({len(unsettled)} file(s) still being written)" if unsettled else ""
        return dg.SensorResult(skip_reason=f"No new or changed landing files{waiting}.", cursor=cursor)
    plan = plan_for_changes(changed, _available_months())
    refresh_id = new_refresh_id("sensor")
    context.log.info(f"{len(changed)} new or changed file(s): {', '.join(changed[:20])}")
    return dg.SensorResult(run_requests=run_requests(plan, refresh_id, "sensor", context.repository_def.asset_graph),
                           cursor=cursor)


def _run_history_asset() -> dg.AssetsDefinition:
    @dg.asset(
        key=["quality", "runs"],
        group_name="publication",
        kinds={"duckdb"},
        # the same upstream as the analysts' database, and a higher priority, so it runs just before the copy
        deps=[dg.AssetKey(["published", "indicator_values"]), dg.AssetKey(["quality", "expectation_results"])],
        op_tags={"dagster/priority": "1"},
        description="Run history: one row per refresh (CLI, schedule, sensor, backfill or UI launch) with its "
        "months, start and end, status and files loaded, from the Dagster instance's run records.",
    )
    def run_history(context, settings: PrisonHealthSettings,
                    warehouse: Warehouse) -> dg.MaterializeResult:
        removed = remove_stale_publish_files(settings.out_path / "analyst.duckdb")
        with warehouse.get_connection() as conn, transaction(conn):
            rows = sync_run_history(conn, context.instance, settings.out_path, current_run_id=context.run_id)
            total = conn.execute("SELECT count(*) FROM quality.runs").fetchone()[0]
        return dg.MaterializeResult(metadata={
            "dagster/row_count": total,
            "refreshes updated": ", ".join(r["run_id"] for r in rows) or "none",
            "stale temporary files removed": len(removed),
        })

    return run_history


def operations_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[_run_history_asset()],
        jobs=[REFRESH_JOB],
        schedules=[monthly_refresh],
        sensors=[landing_files_sensor],
    )

