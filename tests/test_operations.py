"""Operations: the monthly schedule, the landing sensor, backfills, one writer with many
readers, crash safety and the run history.

The refreshes here run `prisonhealth refresh` in separate processes: DuckDB shares one
database instance between the connections of a process, so readers, writers and the
checks that read the results must be separate processes to behave as they do for analysts.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from pipelines import contract, operations, refresh
from pipelines.definitions import defs

LONDON = ZoneInfo("Europe/London")
BIN = Path(sys.executable).parent
REFRESH_TIMEOUT = 600


# ---------------------------------------------------------------- the schedule


@pytest.mark.parametrize("scheduled, expected", [
    (date(2025, 1, 5), ["2024-10", "2024-11", "2024-12"]),   # January: the months cross the calendar year
    (date(2025, 4, 5), ["2025-01", "2025-02", "2025-03"]),   # April: loads March, the last of the financial year
    (date(2025, 5, 5), ["2025-02", "2025-03", "2025-04"]),   # May: April, the first of the new financial year
    (date(2025, 2, 5), ["2024-11", "2024-12", "2025-01"]),
    (datetime(2025, 1, 5, 6, 0, tzinfo=LONDON), ["2024-10", "2024-11", "2024-12"]),
])
def test_months_for_schedule_loads_the_newest_complete_month_and_the_two_provisional_before(scheduled, expected):
    assert operations.months_for_schedule(scheduled) == expected
    assert operations.newest_complete_month(scheduled) == expected[-1]


def test_schedule_runs_at_six_on_the_fifth_london_time_and_is_switchable():
    schedule = defs.resolve_schedule_def("monthly_refresh")
    assert schedule.cron_schedule == "0 6 5 * *"
    assert schedule.execution_timezone == "Europe/London"
    assert schedule.job_name == "refresh_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED  # switched on in the UI
    assert defs.resolve_sensor_def("landing_files").job_name == "refresh_job"


def _fake_landing(root: Path, months: list[str], age_seconds: float = 3600) -> Path:
    """Landing files with the right names: the schedule and sensor look at names and bytes only."""
    old = time.time() - age_seconds
    for table in contract.SOURCES:
        for month in months:
            path = root / table.name / f"{month}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{table.name} {month}\n")
            os.utime(path, (old, old))
    for name in ("prisons", "population"):
        path = root / "reference" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{name}\n")
        os.utime(path, (old, old))
    return root


def _steps(requests) -> list[tuple[str, str | None]]:
    return [(r.tags[operations.STEP_TAG], r.partition_key) for r in requests]


def _months(first: str, last: str) -> list[str]:
    out = [first]
    while out[-1] < last:
        out.append(_next(out[-1]))
    return out


def _next(month: str) -> str:
    year, mon = map(int, month.split("-"))
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def _evaluate_schedule(when: datetime):
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                            repository_def=defs.get_repository_def())
        return defs.resolve_schedule_def("monthly_refresh").evaluate_tick(context)


@pytest.mark.parametrize("when, landed, sources, indicators", [
    (datetime(2025, 1, 5, 6, tzinfo=LONDON), ("2024-07", "2024-12"), ["2024-10", "2024-11", "2024-12"],
     ("2024-08", "2024-12")),
    (datetime(2025, 4, 5, 6, tzinfo=LONDON), ("2024-10", "2025-03"), ["2025-01", "2025-02", "2025-03"],
     ("2024-11", "2025-03")),
])
def test_schedule_requests_the_refresh_of_those_months_in_a_safe_order(tmp_path, monkeypatch, when, landed,
                                                                         sources, indicators):
    available = _months(*landed)
    monkeypatch.setenv("PRISONHEALTH_LANDING", str(_fake_landing(tmp_path / "landing", available)))
    monkeypatch.setenv("PRISONHEALTH_OUT", str(tmp_path / "out"))
    result = _evaluate_schedule(when)
    requests = result.run_requests
    assert _steps(requests) == [
        ("reference", None),
        *[("sources", m) for m in sources],
        *[("indicators", m) for m in _months(*indicators)],
        ("publication", None),
    ]
    # the same runs as `prisonhealth refresh --months <M-2>:<M>`: indicators from two months before the range
    assert _months(*indicators) == refresh.indicator_months(available, sources)
    assert len({r.tags[operations.REFRESH_ID_TAG] for r in requests}) == 1
    assert len({r.run_key for r in requests}) == len(requests)
    keys = [{k.to_user_string() for k in r.asset_selection} for r in requests]
    assert {"conformed/prisons", "conformed/population"} <= keys[0]
    assert {"raw/reception_screening", "conformed/reception_screening"} <= keys[1]
    assert all(k.startswith("indicators/") for k in keys[len(sources) + 1])
    assert {"analyst_database", "quality/runs", "indicators/indicator_values"} <= keys[-1]


def test_schedule_waits_for_the_newest_month_to_be_delivered(tmp_path, monkeypatch):
    monkeypatch.setenv("PRISONHEALTH_LANDING", str(_fake_landing(tmp_path / "landing", _months("2024-09", "2024-11"))))
    result = _evaluate_schedule(datetime(2025, 1, 5, 6, tzinfo=LONDON))
    assert not result.run_requests
    assert "2024-12 has not been delivered" in result.skip_message


# ---------------------------------------------------------------- the landing sensor


def _tick(cursor: str | None):
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        return defs.resolve_sensor_def("landing_files").evaluate_tick(context)


@pytest.fixture
def watched_landing(tmp_path, monkeypatch) -> Path:
    landing = _fake_landing(tmp_path / "landing", _months("2024-07", "2024-12"))
    monkeypatch.setenv("PRISONHEALTH_LANDING", str(landing))
    monkeypatch.setenv("PRISONHEALTH_OUT", str(tmp_path / "out"))
    return landing


def _rewrite(path: Path, text: str, age_seconds: float = 3600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    old = time.time() - age_seconds
    os.utime(path, (old, old))


def test_sensor_first_tick_loads_everything_and_an_unchanged_landing_requests_nothing(watched_landing):
    first = _tick(None)
    months = _months("2024-07", "2024-12")
    assert _steps(first.run_requests) == [("reference", None), *[("sources", m) for m in months],
                                          *[("indicators", m) for m in months], ("publication", None)]
    cursor = json.loads(first.cursor)["files"]
    assert len(cursor) == 5 * 6 + 2 and all(len(sha) == 64 for sha in cursor.values())
    again = _tick(first.cursor)
    assert not again.run_requests
    assert "No new or changed" in again.skip_message
    assert operations.landing_cursor() == first.cursor  # what to set to start the sensor over a loaded warehouse


def test_sensor_requests_exactly_the_partitions_a_changed_or_new_file_affects(watched_landing):
    cursor = _tick(None).cursor
    _rewrite(watched_landing / "bbv_testing" / "2024-09.csv", "a revised extract\n")
    revised = _tick(cursor)
    # source month S feeds indicator months S-2..S+1 (month M reads M-1..M+2)
    assert _steps(revised.run_requests) == [("sources", "2024-09"), ("indicators", "2024-07"),
                                            ("indicators", "2024-08"), ("indicators", "2024-09"),
                                            ("indicators", "2024-10"), ("publication", None)]
    _rewrite(watched_landing / "smoking" / "2025-01.csv", "a new month\n")
    new_month = _tick(revised.cursor)
    assert _steps(new_month.run_requests) == [("sources", "2025-01"), ("indicators", "2024-11"),
                                              ("indicators", "2024-12"), ("indicators", "2025-01"),
                                              ("publication", None)]
    # the same bytes again (touched, not changed): nothing to do
    _rewrite(watched_landing / "smoking" / "2025-01.csv", "a new month\n", age_seconds=1800)
    assert not _tick(new_month.cursor).run_requests


def test_sensor_reloads_every_month_when_a_reference_file_changes(watched_landing):
    cursor = _tick(None).cursor
    _rewrite(watched_landing / "reference" / "prisons.csv", "a new prison list\n")
    steps = _steps(_tick(cursor).run_requests)
    months = _months("2024-07", "2024-12")
    assert steps == [("reference", None), *[("sources", m) for m in months], *[("indicators", m) for m in months],
                     ("publication", None)]


def test_sensor_waits_until_a_file_is_no_longer_being_written(watched_landing):
    cursor = _tick(None).cursor
    path = watched_landing / "tb_screening" / "2024-12.csv"
    _rewrite(path, "half a fi", age_seconds=0)
    waiting = _tick(cursor)
    assert not waiting.run_requests and "still being written" in waiting.skip_message
    _rewrite(path, "half a file, now complete\n")
    assert _steps(_tick(waiting.cursor).run_requests)[0] == ("sources", "2024-12")


def test_refresh_plan_over_a_range_at_the_end_of_the_data_is_the_cli_refresh():
    available = _months("2024-01", "2024-06")
    for first in available:
        months = refresh.months_in_range(available, f"{first}:")
        plan = operations.refresh_plan(available, months)
        assert [(p.step, p.partition) for p in plan] == [
            ("reference", None), *[("sources", m) for m in months],
            *[("indicators", m) for m in refresh.indicator_months(available, months)], ("publication", None)]


def test_a_month_range_with_no_landing_file_says_so_and_runs_nothing(clean_refresh, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(_refresh_command(clean_refresh.landing, out, "2031-01:2031-03"), capture_output=True,
                          text=True, env=_environment(clean_refresh.landing), timeout=REFRESH_TIMEOUT)
    assert done.returncode == 1
    assert "refresh not started: no month of 2031-01:2031-03 in the landing directory" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not (out / "warehouse.duckdb").exists()


def test_leftovers_of_a_killed_publication_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "analyst.duckdb"
    stale = [tmp_path / f".analyst.duckdb.{dead.pid}.tmp", tmp_path / f".analyst.duckdb.{dead.pid}.tmp.wal"]
    live = tmp_path / f".analyst.duckdb.{os.getpid()}.tmp"
    other = tmp_path / f".warehouse.duckdb.{dead.pid}.tmp"
    for path in (*stale, live, other):
        path.write_bytes(b"partial")
    assert sorted(operations.remove_stale_publish_files(target)) == sorted(stale)
    assert live.exists() and other.exists() and not any(p.exists() for p in stale)


# ---------------------------------------------------------------- run history


@dg.asset(key=["raw", "landed"])
def _landed() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"status": "loaded", "file": "landed/2024-01.csv"})


@dg.asset(key=["conformed", "checked"], check_specs=[dg.AssetCheckSpec("rows_are_valid", asset=["conformed", "checked"],
                                                                         blocking=True)])
def _checked():
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(check_name="rows_are_valid", passed=False)


@dg.asset(key=["broken"])
def _broken() -> None:
    raise ValueError("boom")


def test_history_has_one_row_per_refresh_whoever_started_it(tmp_path):
    import duckdb

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"

    def tags(refresh_id, trigger, target=out):
        return operations.refresh_tags(refresh_id, trigger, "sources", target)

    with dg.DagsterInstance.ephemeral() as instance:
        def run(asset, **kwargs):
            dg.materialize([asset], instance=instance, raise_on_error=False, **kwargs)

        run(_landed, tags=tags("schedule-2025-01-05", "schedule"))
        run(_landed, tags=tags("schedule-2025-01-05", "schedule"))
        run(_checked, tags=tags("sensor-1", "sensor"))
        run(_broken, tags=tags("sensor-2", "sensor"))
        run(_landed, tags=tags("cli-other", "cli", elsewhere))  # another warehouse's refresh
        run(_landed)  # launched by hand in the UI: its own refresh
        conn = duckdb.connect()
        written = operations.sync_run_history(conn, instance, out)
        again = operations.sync_run_history(conn, instance, out)
    rows = {r[0]: r[1:] for r in conn.execute(
        "SELECT run_id, trigger, status, files_loaded, dagster_runs, problems, ended_at IS NOT NULL "
        "FROM quality.runs").fetchall()}
    manual = next(run_id for run_id, row in rows.items() if row[0] == "ui")
    assert rows == {
        "schedule-2025-01-05": ("schedule", "success", 2, 2, None, True),
        "sensor-1": ("sensor", "blocked", 0, 1, "sources: conformed__checked", True),
        "sensor-2": ("sensor", "failed", 0, 1, "sources: broken", True),
        manual: ("ui", "success", 1, 1, None, True),
    }
    assert len(written) == 4 and again == []  # finished refreshes are not rewritten


def test_a_cli_refresh_that_was_stopped_is_recorded_as_interrupted():
    import duckdb

    conn = duckdb.connect()
    operations.record_refresh_start(conn, "cli-1", ["2024-01"], published=set())
    operations.record_refresh_start(conn, "cli-2", ["2024-01"], published=set())  # cli-1 never finished
    conn.execute("UPDATE quality.runs SET status = 'success' WHERE run_id = 'cli-2'")  # done, copy not replaced
    operations.record_refresh_start(conn, "cli-3", ["2024-01"], published={"cli-1"})
    conn.execute("UPDATE quality.runs SET status = 'success' WHERE run_id = 'cli-3'")  # done and published
    operations.record_refresh_start(conn, "cli-4", ["2024-01"], published={"cli-3"})
    assert conn.execute("SELECT run_id, status FROM quality.runs ORDER BY started_at").fetchall() == [
        ("cli-1", "interrupted"), ("cli-2", "interrupted"), ("cli-3", "success"), ("cli-4", "running")]


# ---------------------------------------------------------------- real refreshes in separate processes


READ_SCRIPT = """
import duckdb, json, sys
with duckdb.connect(sys.argv[1], read_only=True) as conn:
    print(json.dumps(conn.execute(sys.argv[2]).fetchall(), default=str))
"""

READER_SCRIPT = """
import duckdb, json, os, sys, time
database, stop, table = sys.argv[1:4]
conn = duckdb.connect(database, read_only=True)
query = (f"SELECT count(*), max(period_start)::VARCHAR, sum(numerator), "
         f"sum(hash(indicator_id, period_type, period_start, level, area_code, value) % 1000003) FROM {table}")
first = conn.execute(query).fetchall()[0]
print("ready", flush=True)
seen, reads = {tuple(first)}, 1
while not os.path.exists(stop):
    seen.add(tuple(conn.execute(query).fetchall()[0]))
    reads += 1
    time.sleep(0.05)
seen.add(tuple(conn.execute(query).fetchall()[0]))
print(json.dumps({"first": list(first), "seen": sorted(list(s) for s in seen), "reads": reads + 1}), flush=True)
"""

VALUES = "SELECT * FROM indicators.indicator_values ORDER BY ALL"
PRISON_MONTHS = "SELECT * FROM indicators.prison_month ORDER BY ALL"


def read(database: Path, sql: str) -> list:
    """Query a database from a separate process, as an analyst would."""
    done = subprocess.run([sys.executable, "-c", READ_SCRIPT, str(database), sql], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def assert_same_rows(actual: list, expected: list) -> None:
    """Row for row; doubles equal to 1e-9 relative (sums of doubles can differ in the last bit with row order)."""
    assert len(actual) == len(expected)
    for i, (got, want) in enumerate(zip(actual, expected, strict=True)):
        same = len(got) == len(want) and all(
            math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) if isinstance(a, float) and isinstance(b, float) else a == b
            for a, b in zip(got, want, strict=True))
        assert same, f"row {i} differs:\n  got  {got}\n  want {want}"


def _environment(landing: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "PRISONHEALTH_OUT")}
    env.update(PRISONHEALTH_LANDING=str(landing), PYTHONUNBUFFERED="1")
    return env


def _refresh_command(landing: Path, out: Path, months: str) -> list[str]:
    return [str(BIN / "prisonhealth"), "refresh", "--landing", str(landing), "--out", str(out), "--months", months]


def run_refresh_process(landing: Path, out: Path, months: str) -> subprocess.CompletedProcess:
    done = subprocess.run(_refresh_command(landing, out, months), capture_output=True, text=True,
                          env=_environment(landing), timeout=REFRESH_TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def refresh_until_killed(landing: Path, out: Path, months: str, kill_when) -> list[str]:
    """Run a refresh and SIGKILL it as soon as `kill_when(lines, out)` holds; returns its output."""
    process = subprocess.Popen(_refresh_command(landing, out, months), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=_environment(landing),
                               start_new_session=True)
    lines: list[str] = []
    incoming: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [incoming.put(line) for line in process.stdout], daemon=True).start()
    deadline = time.monotonic() + REFRESH_TIMEOUT
    try:
        while process.poll() is None and time.monotonic() < deadline:
            while not incoming.empty():
                lines.append(incoming.get())
            if kill_when(lines, out):
                os.killpg(process.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if process.poll() is None and time.monotonic() >= deadline:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, f"the refresh ended before the kill point:\n{''.join(lines)}"
    return lines


def _printed(text: str):
    return lambda lines, out: any(text in line for line in lines)


def _publishing(lines, out: Path) -> bool:
    return any(out.glob(".analyst.duckdb.*.tmp"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class CleanRefresh:
    landing: Path
    out: Path
    values: list
    prison_months: list


@pytest.fixture(scope="module")
def clean_refresh(tmp_path_factory) -> CleanRefresh:
    """Four months landed; a clean refresh of the first three, its results read from outside."""
    from pipelines import sample

    root = tmp_path_factory.mktemp("operations")
    landing, out = root / "landing", root / "clean"
    sample.generate(landing, "demo", seed=23, start="2024-01", months=4)
    run_refresh_process(landing, out, "2024-01:2024-03")
    values = read(out / "analyst.duckdb", VALUES)
    assert values and values == read(out / "warehouse.duckdb", VALUES)
    return CleanRefresh(landing, out, values, read(out / "warehouse.duckdb", PRISON_MONTHS))


@pytest.mark.slow
def test_readers_keep_their_data_during_a_refresh_and_new_connections_see_the_new_data(clean_refresh):
    out, analyst = clean_refresh.out, clean_refresh.out / "analyst.duckdb"
    stop = out / "readers.stop"
    readers = [subprocess.Popen([sys.executable, "-c", READER_SCRIPT, str(analyst), str(stop), table],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for table in ("indicators.indicator_values", "published.indicator_values")]
    try:
        for reader in readers:
            assert reader.stdout.readline().strip() == "ready", reader.stderr.read()
        read_by_them = analyst.stat().st_ino
        began = time.monotonic()
        done = run_refresh_process(clean_refresh.landing, out, "2024-04")  # two readers hold the file open
        took = time.monotonic() - began
    finally:
        stop.touch()
        outputs = [reader.communicate(timeout=120) for reader in readers]
    assert "Refreshed 1 month(s)" in done.stdout
    for reader, (stdout, stderr) in zip(readers, outputs, strict=True):
        assert reader.returncode == 0, stderr[-3000:]
        result = json.loads(stdout.strip().splitlines()[-1])
        assert result["seen"] == [result["first"]], "an open connection saw the data change under it"
        assert result["first"][1] == "2024-03-01"  # the old data: three months
        assert result["reads"] > 3, f"the reader was not reading during the {took:.0f} s refresh"
    # a new connection, in another process, reads the new file
    assert read(analyst, "SELECT max(period_start)::VARCHAR FROM indicators.indicator_values") == [["2024-04-01"]]
    runs = read(analyst, "SELECT trigger, status, source_months, files_loaded FROM quality.runs ORDER BY started_at")
    assert runs == [["cli", "success", ["2024-01", "2024-02", "2024-03"], 17],
                    ["cli", "success", ["2024-04"], 5]]
    assert not list(out.glob(".analyst.duckdb.*.tmp*"))
    assert (out / ".analyst.duckdb.spare").stat().st_ino == read_by_them  # kept, unchanged, for the next refresh


@pytest.mark.slow
def test_a_refresh_killed_at_any_point_leaves_usable_databases_and_the_next_equals_a_clean_run(clean_refresh,
                                                                                                tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # an earlier publication, which every killed refresh must leave intact
    analyst = out / "analyst.duckdb"
    analyst.write_bytes((clean_refresh.out / "analyst.duckdb").read_bytes())
    published = _sha256(analyst)
    old_rows = read(analyst, "SELECT count(*) FROM indicators.indicator_values")
    kill_points = [  # where, and the file loads committed by then (2 reference files, 5 sources a month)
        ("while landing the second month", _printed("[1/3] sources"), 2 + 5),
        ("while computing the second indicator month", _printed("[1/3] indicators"), 2 + 15),
        ("while copying the analysts' database", _publishing, 2 + 15),
    ]
    for where, kill_when, committed in kill_points:
        refresh_until_killed(clean_refresh.landing, out, "2024-01:2024-03", kill_when)
        # the warehouse opens (DuckDB replays the write-ahead log the killed writer left) with every commit
        loads = read(out / "warehouse.duckdb", "SELECT count(*) FROM quality.file_loads")
        assert loads[0][0] >= committed, f"killed {where}: committed loads are missing"
        assert _sha256(analyst) == published, f"killed {where}: the analysts' database changed"
        assert read(analyst, "SELECT count(*) FROM indicators.indicator_values") == old_rows, where
    assert list(out.glob(".analyst.duckdb.*.tmp")), "the kill during the copy left no temporary file"

    run_refresh_process(clean_refresh.landing, out, "2024-01:2024-03")
    assert_same_rows(read(out / "warehouse.duckdb", VALUES), clean_refresh.values)
    assert_same_rows(read(analyst, VALUES), clean_refresh.values)
    assert_same_rows(read(out / "warehouse.duckdb", PRISON_MONTHS), clean_refresh.prison_months)
    assert not list(out.glob(".analyst.duckdb.*")), "leftovers of the killed publication remain"
    pids = [a.name.split("-")[2] for a in Path(tempfile.gettempdir()).glob("prisonhealth-audit-*-*")]
    assert not [pid for pid in pids if pid.isdigit() and not operations.process_alive(int(pid))], (
        "the rows a killed refresh handed to its audit were left in the temporary directory")
    assert not (out / "warehouse.duckdb.wal").exists()
    history = read(out / "warehouse.duckdb", "SELECT status FROM quality.runs ORDER BY started_at")
    assert history == [["interrupted"]] * 3 + [["success"]]


@pytest.mark.slow
def test_a_backfill_in_any_partition_order_gives_the_refresh_result(clean_refresh, tmp_path, monkeypatch):
    """The runs a UI backfill or the sensor launches (refresh_job, one step and month per run), with the
    source months in descending order, give what `prisonhealth refresh` gave."""
    from pipelines import resources
    from pipelines.definitions import build_definitions

    out = tmp_path / "out"
    monkeypatch.setenv("PRISONHEALTH_LANDING", str(clean_refresh.landing))
    monkeypatch.setenv("PRISONHEALTH_OUT", str(out))
    months = ["2024-01", "2024-02", "2024-03"]
    plan = operations.refresh_plan(months, months)
    plan = [p for p in plan if p.step != "publication"]  # the publication is compared by the tests above
    order = {"reference": 0, "sources": 1, "indicators": 2}
    plan.sort(key=lambda p: (order[p.step], [-int(x) for x in (p.partition or "0-0").split("-")]))
    local_defs = build_definitions()
    requests = operations.run_requests(plan, "sensor-test", "sensor", local_defs.resolve_asset_graph())
    job = local_defs.resolve_job_def("refresh_job")
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            for request in requests:
                result = job.execute_in_process(instance=instance, partition_key=request.partition_key,
                                                asset_selection=request.asset_selection, tags=request.tags,
                                                run_config=refresh.QUIET_RUN_CONFIG, raise_on_error=False)
                assert result.success, request.run_key
            with resources.Warehouse(database=str(out / "warehouse.duckdb")).get_connection() as conn:
                rows = operations.sync_run_history(conn, instance, out)
    finally:
        resources.release(out / "warehouse.duckdb")
    assert [p.partition for p in plan if p.step == "sources"] == ["2024-03", "2024-02", "2024-01"]
    assert_same_rows(read(out / "warehouse.duckdb", PRISON_MONTHS), clean_refresh.prison_months)
    assert [(r["run_id"], r["trigger"], r["status"], r["source_months"], r["files_loaded"], r["dagster_runs"])
            for r in rows] == [("sensor-test", "sensor", "success", months, 17, 7)]


@pytest.mark.slow
def test_the_report_and_the_analysts_database_can_each_be_published_alone(clean_refresh, tmp_path, monkeypatch):
    """A run of either alone builds that one only."""
    import shutil

    from pipelines import resources
    from pipelines.definitions import build_definitions

    out = tmp_path / "out"
    out.mkdir()
    shutil.copyfile(clean_refresh.out / "warehouse.duckdb", out / "warehouse.duckdb")
    monkeypatch.setenv("PRISONHEALTH_LANDING", str(clean_refresh.landing))
    monkeypatch.setenv("PRISONHEALTH_OUT", str(out))
    job = build_definitions().resolve_job_def("refresh_job")
    built = {}
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            for key in ("analyst_database", "report"):
                result = job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey(key)],
                                                run_config=refresh.QUIET_RUN_CONFIG, raise_on_error=False)
                assert result.success, key
                built[key] = {e.asset_key.to_user_string() for e in result.all_events
                              if e.event_type_value == "ASSET_MATERIALIZATION"}
                if key == "analyst_database":
                    assert not (out / "report").exists()
    finally:
        resources.release(out / "warehouse.duckdb")
    assert built == {"analyst_database": {"analyst_database"}, "report": {"report"}}
    assert_same_rows(read(out / "analyst.duckdb", VALUES), read(out / "warehouse.duckdb", VALUES))
    assert (out / "report" / "index.html").is_file()


@pytest.mark.slow
def test_the_workbook_is_written_while_the_expectation_audit_runs(clean_refresh, tmp_path, monkeypatch):
    """The published step starts the workbook in a second process, before the audit (Python on one
    core) runs, and the report step takes that one up rather than writing another."""
    import shutil

    from pipelines import expectations, resources, spreadsheet
    from pipelines.definitions import build_definitions

    out = tmp_path / "out"
    out.mkdir()
    shutil.copyfile(clean_refresh.out / "warehouse.duckdb", out / "warehouse.duckdb")
    monkeypatch.setenv("PRISONHEALTH_LANDING", str(clean_refresh.landing))
    monkeypatch.setenv("PRISONHEALTH_OUT", str(out))
    started, audits = [], []
    original = spreadsheet.start_spreadsheet
    monkeypatch.setattr(spreadsheet, "start_spreadsheet",
                        lambda *a, **k: started.append(time.time()) or original(*a, **k))
    original_audit = expectations.AuditProcess
    monkeypatch.setattr(expectations, "AuditProcess",
                        lambda *a, **k: audits.append(time.time()) or original_audit(*a, **k))
    keys = [dg.AssetKey(k) for k in (["indicators", "indicator_values"], ["published", "indicator_values"],
                                     ["quality", "expectation_results"], ["indicators", "spc"], ["report"])]
    job = build_definitions().resolve_job_def("refresh_job")
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            result = job.execute_in_process(instance=instance, asset_selection=keys,
                                            run_config=refresh.QUIET_RUN_CONFIG, raise_on_error=False)
            assert result.success
            step_starts = {e.dagster_event.step_key: e.timestamp for e in instance.all_logs(result.run_id)
                           if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"}
    finally:
        resources.release(out / "warehouse.duckdb")
    assert len(started) == 1
    assert step_starts["published__indicator_values"] < started[0] < step_starts["quality__expectation_results"]
    assert started[0] < step_starts["indicators__spc"]  # SPC is computed while the workbook is written
    # the audit's suites were started in the publication's first step, and taken up by the audit
    assert len(audits) == 1
    assert step_starts["indicators__indicator_values"] < audits[0] < step_starts["published__indicator_values"]
    assert not expectations._AHEAD
    assert sorted(p.name for p in (out / "report").iterdir() if p.is_file() and p.suffix != ".html") == [
        "prison-health-indicators.xlsx"]


def test_a_refresh_starts_the_suites_once_its_sources_are_loaded(clean_refresh):
    """The clean refresh's log: the suites start between the last source month and the first indicator
    month, and the audit step takes them up rather than starting them again; the suites' and the
    workbook's processes were started warm."""
    log_file = min((clean_refresh.out / "logs").glob("refresh-*.log"))  # the fixture's: later tests refresh again
    lines = log_file.read_text().splitlines()

    def first(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    started = [i for i, line in enumerate(lines) if "started the Great Expectations suites" in line]
    assert len(started) == 1
    assert first("[3/3] sources 2024-03 steps") < started[0] < first("indicators 2024-01 steps")
    assert "reception_screening" in lines[started[0]] and "prescribing" in lines[started[0]]
    assert started[0] < first("for the Great Expectations suites") < first("publication steps")
    # both children were started a step ahead (pipelines.children) and had imported their modules
    handed = [line.partition("prisonhealth.children: ")[2] for line in lines if "prisonhealth.children" in line]
    assert handed == ["pipelines.expectations: work handed to a warm child",
                      "pipelines.spreadsheet: work handed to a warm child"]


def test_a_refresh_validates_each_months_receptions_after_its_files_and_before_its_events(clean_refresh):
    """The order the clean refresh's log gives each source month's steps in (that of their ends): the
    events are validated after the receptions they link to, so they are linked once, as they land."""
    log_file = min((clean_refresh.out / "logs").glob("refresh-*.log"))
    orders = [[step.split()[0] for step in line.partition(" steps: ")[2].split(", ")]
              for line in log_file.read_text().splitlines() if "] sources 2024-0" in line and " steps: " in line]
    events = [f"conformed__{t.name}" for t in contract.SOURCES if t.links_to_reception]
    assert len(orders) == 3
    for order in orders:
        assert sorted(order[:5]) == sorted(f"raw__{t.name}" for t in contract.SOURCES)
        assert order[5] == "conformed__reception_screening" and sorted(order[6:]) == sorted(events)


def test_the_audit_started_ahead_gives_the_audit_in_process_unless_its_tables_changed_since(clean_refresh, tmp_path,
                                                                                          caplog):
    import logging
    import shutil

    import duckdb

    from pipelines import changes, expectations

    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(clean_refresh.out / "warehouse.duckdb", warehouse)
    conn = duckdb.connect(str(warehouse))
    conn.execute("DELETE FROM pipeline.cursors WHERE consumer = ?", [expectations.CONSUMER])  # audit everything
    pending = changes.pending(conn, expectations.CONSUMER)
    leftovers = set(Path(tempfile.gettempdir()).glob("prisonhealth-audit-*"))

    def summary(audited: list) -> list:
        return [(a.table.name, a.months, [(r["expectation"], r["column"], r["unexpected_count"], r["rows"])
                                          for r in a.results], a.disagreements) for a in audited]

    in_process = summary(expectations.audit_changes(conn, pending))
    assert sum(r[2] for *_, results, _ in in_process for r in results) > 0  # the sample has rows set aside
    with caplog.at_level(logging.INFO, logger="prisonhealth.expectations"):
        expectations.audit_ahead(conn, "run-1")
        started = expectations._AHEAD["run-1"]
        expectations.audit_ahead(conn, "run-1")  # as the publication's first step does after the refresh
        assert expectations._AHEAD["run-1"] is started  # still current: kept, not started again
        assert summary(expectations.audit_changes(conn, pending, "run-1")) == in_process
    assert "waited" in caplog.text and "Great Expectations suites" in caplog.text  # taken up, not redone

    caplog.clear()
    expectations.audit_ahead(conn, "run-2")
    withdrawn = conn.execute("""
        SELECT month, line FROM quality.quarantine WHERE source = 'smoking' AND reason <> 'malformed_row'
        ORDER BY month, line LIMIT 1""").fetchone()
    conn.execute("DELETE FROM quality.quarantine WHERE source = 'smoking' AND month = ? AND line = ?", withdrawn)
    changes.record(conn, "smoking", [withdrawn[0]])  # a table audited changed after the suites started
    with caplog.at_level(logging.INFO, logger="prisonhealth.expectations"):
        redone = summary(expectations.audit_changes(conn, changes.pending(conn, expectations.CONSUMER), "run-2"))
    assert "Great Expectations suites" not in caplog.text  # redone here, on the rows as they are now

    def smoking_rows(audited: list) -> set:
        return {row for name, _, results, _ in audited if name == "smoking" for *_, rows in results for row in rows}

    assert withdrawn in smoking_rows(in_process) and withdrawn not in smoking_rows(redone)
    assert not expectations._AHEAD
    assert set(Path(tempfile.gettempdir()).glob("prisonhealth-audit-*")) == leftovers
    conn.close()


@pytest.mark.slow
def test_the_publication_breakdown_times_every_part_and_changes_nothing(clean_refresh, tmp_path, capsys):
    import shutil

    from benchmarks import breakdown

    out = tmp_path / "out"
    out.mkdir()
    for name in ("warehouse.duckdb", "analyst.duckdb"):
        shutil.copyfile(clean_refresh.out / name, out / name)
    before = {name: _sha256(out / name) for name in ("warehouse.duckdb", "analyst.duckdb")}
    assert breakdown.main(["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    reported = [m for (m,) in read(out / "warehouse.duckdb", """
        SELECT DISTINCT month FROM quality.file_loads
        WHERE source = 'reception_screening' AND status IN ('loaded', 'unchanged') ORDER BY 1""")]
    assert len(reported) >= 3 and f"recomputing {', '.join(reported[-3:])}" in printed
    for part in ("3 months, as the pipeline does", "3 months, keeping insertion order",
                 "SPC charts of every series", "pages and exports", "workbook", "gptables' own writer",
                 "member rows of 3 months", "commit", "every month, all at once (2)", "a month at a time (2)"):
        assert part in printed, part
    assert "timed 18 parts" in printed
    assert {name: _sha256(out / name) for name in before} == before
    assert sorted(p.name for p in out.iterdir()) == ["analyst.duckdb", "warehouse.duckdb"]


@pytest.mark.slow
def test_the_storage_benchmark_writes_each_case_twice_and_only_reads_the_warehouse(clean_refresh, tmp_path, capsys):
    import re
    import shutil

    from benchmarks import storage

    out = tmp_path / "out"
    out.mkdir()
    shutil.copyfile(clean_refresh.out / "warehouse.duckdb", out / "warehouse.duckdb")
    before = _sha256(out / "warehouse.duckdb")
    assert storage.main(["--out", str(out), "--months", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    figures = re.compile(r"\]\s+(.+?)\s+(\(\d\) )?\s*([\d.]+) s\s+([\d.]+) MiB\s+([\d,]+) rows$")
    written = [figures.search(line).groups() for line in printed if figures.search(line)]
    assert [turn for _, turn, *_ in written] == ["(1) "] * 5 + ["(2) "] * 5 + [None] * 5
    fastest = {case: (float(mib), int(rows.replace(",", ""))) for case, turn, _, mib, rows in written if not turn}
    assert list(fastest) == list(storage.CASES)
    months = [m for (m,) in read(out / "warehouse.duckdb", """
        SELECT DISTINCT month FROM quality.file_loads
        WHERE source = 'reception_screening' AND status IN ('loaded', 'unchanged') ORDER BY 1""")]
    first = months[-3]
    ((prescribing,),) = read(out / "warehouse.duckdb",
                             f"SELECT count(*) FROM raw.prescribing WHERE source_month >= '{first}'")
    ((members,),) = read(out / "warehouse.duckdb",
                         f"SELECT count(*) FROM indicators.members WHERE month >= DATE '{first}-01'")
    assert f"writing the rows of {first} to {months[-1]} (3 months)" in printed[0]
    assert prescribing > 0 and members > 0
    for case, (_, rows) in fastest.items():
        assert rows == (members if case.startswith("indicators.members") else prescribing), case
    assert fastest["raw.prescribing, every column, uncompressed"][0] > fastest["raw.prescribing, every column"][0]
    assert fastest["indicators.members, uncompressed"][0] > fastest["indicators.members"][0]
    assert _sha256(out / "warehouse.duckdb") == before
    assert sorted(p.name for p in out.iterdir()) == ["warehouse.duckdb"]


def test_the_benchmark_measures_the_memory_of_the_command_not_its_own():
    """Linux carries the forking process's high-water mark across exec into ru_maxrss; the
    benchmark's own process holds the warehouse, so a peak read that way would be its own."""
    from benchmarks import run

    held = bytearray(600 * 2**20)  # this process, large, as the benchmark is when it starts a refresh
    small = run.timed_command([sys.executable, "-c", "import time; time.sleep(0.5)"])
    large = run.timed_command([sys.executable, "-c", "import time; b = bytearray(300 * 2**20); time.sleep(0.5)"])
    measured = run.child("result = {'size': len(bytearray(200 * 2**20))}")
    assert len(held) and small["peak_rss_mib"] < 100
    assert 300 < large["peak_rss_mib"] < 400
    assert 200 < measured["peak_rss_mib"] < 300


def test_the_step_summary_sums_each_assets_steps_and_shows_whether_source_months_grow(tmp_path, capsys):
    from benchmarks import steps

    def line(second: int, label: str, parts: str) -> str:
        when = f"2026-11-27 10:{second // 60:02d}:{second % 60:02d},000"
        return f"{when} INFO prisonhealth.refresh: {label} steps: {parts}"

    lines = [line(0, "reference tables", "conformed__prisons 0.3 s"), "a line that is not a step line"]
    for i in range(1, 22):  # 21 source months, the later ones slower: 1.0 s of validation, 1.5 s from month 21
        lines.append(line(3 * i, f"[{i}/21] sources 2015-{i:02d}",
                          f"raw__prescribing 0.5 s, conformed__prescribing {1.5 if i > 20 else 1.0} s"))
    lines += [line(70, "[1/1] indicators 2016-09", "indicator_month 2.5 s"),
              line(100, "publication", "report 20.0 s, analyst_database 9.5 s")]
    log = tmp_path / "refresh.log"
    log.write_text("\n".join(lines))
    assert steps.main([str(log)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "sources: 21 run(s), 63.0 s wall, steps 32.0 s" in printed
    assert "indicators: 1 run(s), 7.0 s wall, steps 2.5 s" in printed
    assert "publication: 1 run(s), 30.0 s wall, steps 29.5 s" in printed
    by_block = [p.split() for p in printed if "conformed__prescribing" in p][-1]
    assert by_block == ["conformed__prescribing", "1.00", "1.50"]
    assert [p.split() for p in printed if p.strip().startswith("step")][-1] == ["step", "1-20", "21-21"]


def test_the_comparison_runs_each_commit_from_its_own_checkout(tmp_path, monkeypatch):
    from benchmarks import compare

    monkeypatch.setattr(compare, "CACHE", tmp_path)
    path = compare.worktree("HEAD")
    try:
        assert compare.worktree("HEAD") == path  # made once
        committed = subprocess.run(["git", "show", "HEAD:pipelines/refresh.py"], cwd=compare.ROOT, check=True,
                                   capture_output=True, text=True).stdout
        assert (path / "pipelines" / "refresh.py").read_text() == committed
        assert path.parent == tmp_path / "bench-work" / "compare"
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=compare.ROOT, check=True)


def _table_differences(conn, left: Path, right: Path) -> dict[str, int]:
    """Rows in one analysts' database and not the other (EXCEPT ALL both ways), per table; and any
    table only one of them has."""
    conn.execute(f"ATTACH '{left}' AS left_db (READ_ONLY)")
    conn.execute(f"ATTACH '{right}' AS right_db (READ_ONLY)")
    try:
        def tables(catalog):
            return {f"{s}.{t}" for s, t in conn.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ?", [catalog]).fetchall()}
        names = tables("left_db")
        differences = {name: -1 for name in names ^ tables("right_db")}
        for name in sorted(names & tables("right_db")):
            (n,) = conn.execute(f"""
                SELECT (SELECT count(*) FROM (SELECT * FROM left_db.{name} EXCEPT ALL SELECT * FROM right_db.{name}))
                     + (SELECT count(*) FROM (SELECT * FROM right_db.{name} EXCEPT ALL SELECT * FROM left_db.{name}))
            """).fetchone()
            if n:
                differences[name] = n
        return differences
    finally:
        conn.execute("DETACH left_db")
        conn.execute("DETACH right_db")


def _analyst_publication_setup(clean_refresh, tmp_path):
    """A copy of the refreshed warehouse, the analysts' database and a from-scratch one beside it,
    and a function publishing as the pipeline does (taking the pending changes, moving the cursor)."""
    import shutil

    import duckdb

    from pipelines import analyst_database

    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(clean_refresh.out / "warehouse.duckdb", warehouse)
    published, from_scratch = tmp_path / "analyst.duckdb", tmp_path / "from-scratch.duckdb"
    conn = duckdb.connect(str(warehouse))

    def publish_as_the_pipeline_does() -> str:
        return analyst_database.publish_changes(conn, published)

    return conn, published, from_scratch, publish_as_the_pipeline_does


def test_a_monthly_publication_replaces_only_the_changed_months_and_equals_a_full_one(clean_refresh, tmp_path):
    from pipelines import analyst_database, catalogue, changes, indicators, publication
    from pipelines.resources import transaction

    conn, published, from_scratch, publish_as_the_pipeline_does = _analyst_publication_setup(clean_refresh, tmp_path)

    assert publish_as_the_pipeline_does() == analyst_database.FULL  # nothing published here yet
    values_before = read(published, VALUES)
    with transaction(conn):  # a month revised: one row withdrawn, one corrected, the figures recomputed
        conn.execute("DELETE FROM conformed.smoking WHERE source_month = '2024-02' AND smoking_event_id = "
                     "(SELECT min(smoking_event_id) FROM conformed.smoking WHERE source_month = '2024-02')")
        conn.execute("UPDATE conformed.prescribing SET quantity = quantity + 1 WHERE source_month = '2024-02' AND "
                     "item_id = (SELECT min(item_id) FROM conformed.prescribing "
                     "WHERE source_month = '2024-02')")
        changes.record(conn, "smoking", ["2024-02"])
        changes.record(conn, "prescribing", ["2024-02"])
        indicators.compute_month(conn, "2024-02")
        publication.update_indicator_values(conn, {i.code: i for i in catalogue.load_catalogue()})
        publication.update_published_values(conn)
    assert changes.pending(conn, analyst_database.CONSUMER).months_of("smoking") == {"2024-02"}
    assert publish_as_the_pipeline_does() == analyst_database.IN_COPY
    assert changes.pending(conn, analyst_database.CONSUMER).nothing
    analyst_database.publish(conn, from_scratch)
    assert _table_differences(conn, published, from_scratch) == {}
    # the month, its quarter and its financial year changed, and only they: the periods replaced
    changed = {tuple(r) for r in read(published, VALUES)} ^ {tuple(r) for r in values_before}
    assert {(r[2], r[3]) for r in changed} == {("month", "2024-02-01"), ("quarter", "2024-01-01"),
                                              ("financial_year", "2023-04-01")}

    with transaction(conn):  # a change nobody recorded: the counts disagree, so it is published in full
        conn.execute("DELETE FROM conformed.bbv_testing WHERE bbv_event_id = (SELECT min(bbv_event_id) "
                     "FROM conformed.bbv_testing)")
    assert publish_as_the_pipeline_does() == analyst_database.FULL
    analyst_database.publish(conn, from_scratch)
    assert _table_differences(conn, published, from_scratch) == {}
    conn.close()


def test_the_copy_started_ahead_is_used_only_while_the_published_file_is_unchanged(clean_refresh, tmp_path):
    import os
    import shutil

    import duckdb

    from pipelines import analyst_database, changes
    from pipelines.resources import transaction

    conn, published, from_scratch, publish_as_the_pipeline_does = _analyst_publication_setup(clean_refresh, tmp_path)

    def revise_smoking() -> None:
        with transaction(conn):
            conn.execute("DELETE FROM conformed.smoking WHERE smoking_event_id = (SELECT min(smoking_event_id) "
                         "FROM conformed.smoking WHERE source_month = '2024-03')")
            changes.record(conn, "smoking", ["2024-03"])

    assert not analyst_database.copy_ahead(conn, published)  # nothing published yet: nothing to copy
    assert publish_as_the_pipeline_does() == analyst_database.FULL
    revise_smoking()
    assert analyst_database.copy_ahead(conn, published)
    temporary = published.with_name(f".{published.name}.{os.getpid()}.tmp")
    assert publish_as_the_pipeline_does() == analyst_database.IN_COPY
    assert not temporary.exists()
    analyst_database.publish(conn, from_scratch)
    assert _table_differences(conn, published, from_scratch) == {}

    revise_smoking()
    published.with_name(f".{published.name}.spare").unlink()  # as where hard links are not available
    assert analyst_database.copy_ahead(conn, published)
    assert not analyst_database.copy_ahead(conn, published)  # one copy at a time
    analyst_database._AHEAD[published.resolve()][0].join()
    with duckdb.connect(str(temporary)) as stale:  # a copy of an older file: a month it was not told of differs
        stale.execute("DELETE FROM conformed.bbv_testing WHERE source_month = '2024-01'")
    shutil.copyfile(published, tmp_path / "replacement")
    os.replace(tmp_path / "replacement", published)  # published again by someone else meanwhile
    # from a new copy: the stale one would fail its check
    assert publish_as_the_pipeline_does() == analyst_database.IN_COPY
    analyst_database.publish(conn, from_scratch)
    assert _table_differences(conn, published, from_scratch) == {}
    conn.close()


HOLD_OPEN_SCRIPT = """
import duckdb, sys
conn = duckdb.connect(sys.argv[1], read_only=True)
print(conn.execute("SELECT count(*) FROM conformed.smoking").fetchone()[0], flush=True)
sys.stdin.read()
print(conn.execute("SELECT count(*) FROM conformed.smoking").fetchone()[0], flush=True)
"""


def test_the_replaced_file_is_kept_and_published_next_unless_a_reader_still_has_it_open(clean_refresh, tmp_path):
    import os

    from pipelines import analyst_database, changes
    from pipelines.resources import transaction

    conn, published, from_scratch, publish_as_the_pipeline_does = _analyst_publication_setup(clean_refresh, tmp_path)
    spare = published.with_name(f".{published.name}.spare")

    def revise_smoking(month: str) -> None:
        with transaction(conn):
            conn.execute("DELETE FROM conformed.smoking WHERE smoking_event_id = (SELECT min(smoking_event_id) "
                         "FROM conformed.smoking WHERE source_month = ?)", [month])
            changes.record(conn, "smoking", [month])
            # the steps before the analysts' database take the change in (what all took in is deleted)
            conn.execute("UPDATE pipeline.cursors SET sequence = (SELECT max(sequence) FROM pipeline.changes) "
                         "WHERE consumer NOT IN (?, ?)", [analyst_database.CONSUMER, analyst_database.SPARE_CONSUMER])

    def equals_a_full_publication() -> bool:
        analyst_database.publish(conn, from_scratch)
        return _table_differences(conn, published, from_scratch) == {}

    assert publish_as_the_pipeline_does() == analyst_database.FULL
    assert not spare.exists()  # the first file: nothing replaced
    first = published.stat().st_ino
    revise_smoking("2024-01")
    assert publish_as_the_pipeline_does() == analyst_database.IN_COPY  # from a copy: there was no spare
    second = published.stat().st_ino
    assert spare.stat().st_ino == first
    revise_smoking("2024-02")
    assert not analyst_database.copy_ahead(conn, published)  # the spare will be used: nothing to copy
    assert publish_as_the_pipeline_does() == analyst_database.IN_SPARE
    assert published.stat().st_ino == first  # the spare, brought up to date with both months, published
    assert spare.stat().st_ino == second
    assert equals_a_full_publication()

    # analysts who opened the file before the last refresh still have it (now the spare) open
    readers = []

    def hold_spare_open() -> str:
        readers.append(subprocess.Popen([sys.executable, "-c", HOLD_OPEN_SCRIPT, str(spare)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        seen = readers[-1].stdout.readline().strip()
        assert seen, readers[-1].stderr.read()
        return seen

    try:
        seen_first = [hold_spare_open()]
        revise_smoking("2024-03")
        assert analyst_database.copy_ahead(conn, published)  # DuckDB's lock refuses a writer: copy instead
        assert publish_as_the_pipeline_does() == analyst_database.IN_COPY
        third = published.stat().st_ino
        assert third not in (first, second)
        assert spare.stat().st_ino == first
        assert equals_a_full_publication()
        seen_first.append(hold_spare_open())
        revise_smoking("2024-03")
        # the spare is refused: a copy, not one started early
        assert publish_as_the_pipeline_does() == analyst_database.IN_COPY
        assert published.stat().st_ino not in (first, second, third)
        assert spare.stat().st_ino == third
        assert equals_a_full_publication()
    finally:
        seen_last = [reader.communicate("", timeout=60) for reader in readers]
    for reader, before, (after, errors) in zip(readers, seen_first, seen_last, strict=True):
        assert reader.returncode == 0, errors[-3000:]
        assert after.strip() == before  # its file was not written to

    # a publication stopped between keeping the spare and the replace leaves the spare as the file itself
    spare.unlink()
    os.link(published, spare)
    revise_smoking("2024-01")
    assert analyst_database.copy_ahead(conn, published)
    assert publish_as_the_pipeline_does() == analyst_database.IN_COPY
    assert equals_a_full_publication()
    assert spare.stat().st_ino != published.stat().st_ino
    conn.close()


PUBLICATION_TABLES = ("indicators.indicator_values", "indicators.gap_components", "indicators.funnel_limits",
                      "indicators.spc", "published.indicator_values")


def test_publishing_only_the_changed_periods_gives_what_rebuilding_every_period_gives(clean_refresh, tmp_path):
    import shutil

    import duckdb

    from assets.publication import BY_CODE
    from pipelines import indicators, publication
    from pipelines.resources import transaction

    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(clean_refresh.out / "warehouse.duckdb", warehouse)
    conn = duckdb.connect(str(warehouse))

    def publish() -> tuple[dict, dict]:
        with transaction(conn):
            counts = publication.update_indicator_values(conn, BY_CODE), publication.update_published_values(conn)
            spc_counts.append(publication.update_spc(conn, BY_CODE))
            return counts

    def snapshot() -> dict[str, list]:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in PUBLICATION_TABLES}

    spc_counts: list[dict] = []
    publish()  # whatever the copied warehouse had pending
    before = snapshot()
    assert publish()[0]["periods rebuilt"] == "none" and not spc_counts[-1]["recomputed"]  # nothing changed
    assert snapshot() == before
    with transaction(conn):  # February's receptions at one prison withdrawn, its window months recomputed
        conn.execute("DELETE FROM conformed.reception_screening WHERE source_month = '2024-02' AND prison_code = "
                     "(SELECT min(prison_code) FROM conformed.reception_screening)")
        for month in ("2024-01", "2024-02"):
            indicators.compute_month(conn, month)
    values_counts, published_counts = publish()
    assert values_counts["periods rebuilt"] == published_counts["periods rebuilt"] == (
        "financial_year 2023-04, month 2024-01, month 2024-02, quarter 2024-01")
    assert spc_counts[-1]["recomputed"]
    incremental = snapshot()
    assert incremental["published.indicator_values"] != before["published.indicator_values"]

    conn.execute("DELETE FROM pipeline.cursors WHERE consumer IN (?, ?, ?)",
                 [publication.VALUES_CONSUMER, publication.PUBLISHED_CONSUMER, publication.SPC_CONSUMER])
    values_counts, _ = publish()
    assert values_counts["periods rebuilt"] == "all"
    rebuilt = snapshot()
    for table in PUBLICATION_TABLES:
        assert_same_rows(incremental[table], rebuilt[table])
    conn.close()


def test_an_indicator_month_shows_each_indicator_its_england_series_and_reasons(clean_refresh):
    """The metadata of an indicator month's run, read for every indicator at once, gives each
    indicator what a query of its own gives."""
    import duckdb

    from assets.indicators import england_series_markdown, reason_breakdown_markdown

    conn = duckdb.connect(str(clean_refresh.out / "warehouse.duckdb"), read_only=True)
    try:
        codes = [c for (c,) in conn.execute("SELECT DISTINCT indicator_id FROM indicators.members ORDER BY 1")
                 .fetchall()]
        series = england_series_markdown(conn, [*codes, "P04a"], months=2)
        reasons = reason_breakdown_markdown(conn, [*codes, "P04a"], "2024-02")
        expected_series = {code: [f"| {m} | {n:,} | {d:,.0f} | {'yes' if p else ''} |"
                                  for m, n, d, p in reversed(conn.execute("""
            SELECT strftime(month, '%Y-%m'), sum(numerator), sum(denominator), bool_or(provisional)
            FROM indicators.prison_month WHERE indicator_id = ? GROUP BY month ORDER BY month DESC LIMIT 2
            """, [code]).fetchall())] for code in codes}
        expected_reasons = {code: {f"| {r} ({u}) | {n:,} | {num:,} | {den:,.0f} |"
                                   for r, u, n, num, den in conn.execute("""
            SELECT reason, unit_type, count(*), sum(numerator), sum(denominator) FROM indicators.members
            WHERE indicator_id = ? AND month = '2024-02-01' AND unit_type <> 'population' GROUP BY ALL
            """, [code]).fetchall()} for code in codes}
    finally:
        conn.close()
    assert len(codes) > 20
    for code in codes:
        assert series[code].splitlines()[2:] == expected_series[code], code  # the latest two months, in order
        assert set(reasons[code].splitlines()[2:]) == expected_reasons[code], code
    assert series["P04a"] == "No months computed yet."  # derived: no prison-months
    assert reasons["P04a"].startswith("No member rows")


def test_a_month_blocked_on_recompute_is_withdrawn_by_the_next_publication(clean_refresh, tmp_path, monkeypatch):
    """A month whose indicators were computed and is then blocked (here: a quarantine limit of 0)
    loses its member rows, and the change is logged, so the incremental publication rebuilds its
    periods rather than keeping its old figures."""
    import shutil

    from pipelines import changes, publication, resources
    from pipelines.definitions import build_definitions

    out = tmp_path / "out"
    out.mkdir()
    shutil.copyfile(clean_refresh.out / "warehouse.duckdb", out / "warehouse.duckdb")
    monkeypatch.setenv("PRISONHEALTH_LANDING", str(clean_refresh.landing))
    monkeypatch.setenv("PRISONHEALTH_OUT", str(out))
    config = {**refresh.QUIET_RUN_CONFIG, "resources": {"settings": {"config": {"quarantine_threshold": 0.0}}}}
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            result = build_definitions().resolve_job_def("indicators_job").execute_in_process(
                instance=instance, partition_key="2024-02", run_config=config, raise_on_error=False)
        assert not result.success
        with resources.Warehouse(database=str(out / "warehouse.duckdb")).get_connection() as conn:
            members = conn.execute("SELECT count(*) FROM indicators.members WHERE month = '2024-02-01'").fetchone()
            pending = changes.pending(conn, publication.VALUES_CONSUMER)
    finally:
        resources.release(out / "warehouse.duckdb")
    assert members == (0,)
    assert pending.months_of(changes.INDICATORS) == {"2024-02"}


def test_the_cached_counts_by_reason_equal_a_computation_over_every_month(clean_refresh, tmp_path, monkeypatch):
    import shutil

    import duckdb

    from assets.publication import BY_CODE
    from pipelines import changes, drilldown, indicators, publication
    from pipelines.resources import transaction

    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(clean_refresh.out / "warehouse.duckdb", warehouse)
    conn = duckdb.connect(str(warehouse))

    def refresh_caches() -> str:
        with transaction(conn):
            publication.update_indicator_values(conn, BY_CODE)
            publication.update_published_values(conn)
            return drilldown.update_breakdowns(conn)

    refresh_caches()
    with transaction(conn):  # March's smoking events at one prison withdrawn, its window months recomputed
        conn.execute("DELETE FROM conformed.smoking WHERE source_month = '2024-03' AND prison_code = "
                     "(SELECT min(prison_code) FROM conformed.smoking)")
        for month in ("2024-02", "2024-03"):
            indicators.compute_month(conn, month)
    assert drilldown.cached_breakdowns(conn) is None  # out of date until updated

    def assert_cached_equal_everything() -> None:
        cached, codes = drilldown.cached_breakdowns(conn)
        everything = drilldown.breakdowns(conn)
        assert codes == set(drilldown.reason_counts(conn)["indicator_id"])
        assert len(cached) == len(everything) > 0
        columns = list(drilldown.PUBLISHABLE_COLUMNS)
        for got, want in zip(cached[columns].astype(object).itertuples(index=False),
                             everything[columns].astype(object).itertuples(index=False), strict=True):
            assert [None if pd_isna(v) else v for v in got] == [None if pd_isna(v) else v for v in want]

    assert refresh_caches() == "2024-02, 2024-03"
    assert_cached_equal_everything()
    # Every month again, as after a backfill, each month protected in a batch of its own
    monkeypatch.setattr(drilldown, "BREAKDOWN_BATCH_MONTHS", 1)
    with transaction(conn):
        changes.forget(conn, drilldown.CONSUMER)
    assert refresh_caches() == "all"
    assert_cached_equal_everything()
    conn.close()


def pd_isna(value) -> bool:
    import pandas as pd

    return value is None or (not isinstance(value, str | bool) and bool(pd.isna(value)))


def test_revalidating_an_unchanged_reference_table_records_no_change(clean_refresh, tmp_path):
    """Every refresh validates the reference tables again; only a real change may make the
    publication rebuild every period."""
    import shutil

    import duckdb

    from pipelines import contract, validation
    from pipelines.resources import transaction

    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(clean_refresh.out / "warehouse.duckdb", warehouse)
    conn = duckdb.connect(str(warehouse))
    prisons = contract.TABLES["prisons"]

    def recorded() -> int:
        return conn.execute("SELECT count(*) FROM pipeline.changes WHERE subject = 'prisons'").fetchone()[0]

    before = recorded()
    with transaction(conn):
        validation.validate(conn, prisons, None)
    assert recorded() == before
    with transaction(conn):
        conn.execute("UPDATE raw.prisons SET prison_name = prison_name || ' renamed' "
                     "WHERE prison_code = (SELECT min(prison_code) FROM raw.prisons)")
        validation.validate(conn, prisons, None)
    assert recorded() == before + 1
    conn.close()


def test_the_source_months_checkpoint_the_warehouse_once_at_their_end(tmp_path):
    """While a refresh loads its source months the write-ahead log is left to grow (1 GB), then
    the warehouse is checkpointed and DuckDB's default threshold is back for the rest."""
    from pipelines import resources

    wal = tmp_path / "warehouse.duckdb.wal"
    try:
        with refresh._warehouse(tmp_path).get_connection() as conn:
            default = conn.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0]
            conn.execute("CHECKPOINT")
            with refresh._checkpointed_once(tmp_path):
                assert conn.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0] == "953.6 MiB"
                conn.execute("CREATE TABLE pipeline.rows AS SELECT range AS i FROM range(300000)")
                assert wal.stat().st_size > 0  # committed, not checkpointed
            assert conn.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0] == default
            assert not wal.exists() or wal.stat().st_size == 0
            assert conn.execute("SELECT count(*) FROM pipeline.rows").fetchone()[0] == 300000
    finally:
        resources.release(tmp_path / "warehouse.duckdb")
