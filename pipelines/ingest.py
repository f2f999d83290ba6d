"""Landing a file in the warehouse: raw rows as delivered, malformed records aside, one file_loads row.

Each load is delete-then-insert for its (source, month) so a revised extract
replaces exactly its partition, and an unchanged file (same sha256 as the one
loaded) is not read again.

A refresh of several months reads each month's files ahead (`read_ahead`), in a thread, while
the month before is loaded: reading a file is mostly Polars, which releases the GIL, and
loading one is mostly DuckDB, which keeps about one core busy, so a backfill's second core
has work.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines import contract, landing
from pipelines.pseudonymise import Pseudonymiser


@dataclass
class FileOutcome:
    source: str
    month: str | None
    file: str | None
    status: str  # loaded | unchanged | rejected | missing
    rows_read: int = 0
    message: str = ""

    def line(self) -> str:
        where = f"{self.source}/{self.month}" if self.month else self.source
        return f"{where}: {self.status}" + (f" ({self.message})" if self.message else "")


def _month_filter(column: str, month: str | None) -> tuple[str, list]:
    return (f"{column} = ?", [month]) if month else (f"{column} IS NULL", [])


def file_for(landing_dir: Path, table: contract.Table, month: str | None) -> Path | None:
    if month is None:
        return landing.reference_file(landing_dir, table.name)
    return landing.month_files(landing_dir, table.name).get(month)


def previous_load(conn, table: contract.Table, month: str | None):
    where, params = _month_filter("month", month)
    return conn.execute(
        f"SELECT sha256, status FROM quality.file_loads WHERE source = ? AND {where}", [table.name, *params]
    ).fetchone()


def ingest(conn: duckdb.DuckDBPyConnection, landing_dir: Path, table: contract.Table, month: str | None,
           pseudonymiser: Pseudonymiser, force: bool = False) -> FileOutcome:
    """Load one landing file (a source month, or a reference table when month is None).

    The caller owns the transaction. Returns what happened; never raises for bad input.
    """
    path = file_for(Path(landing_dir), table, month)
    if path is None:
        return FileOutcome(table.name, month, None, "missing", message="no file delivered")
    relative = f"{path.parent.name}/{path.name}"
    sha = landing.sha256_of(path)
    before = previous_load(conn, table, month)
    if before and before[0] == sha and before[1] != "rejected" and not force:
        where, params = _month_filter("month", month)
        conn.execute(f"UPDATE quality.file_loads SET status = 'unchanged' WHERE source = ? AND {where}",
                     [table.name, *params])
        return FileOutcome(table.name, month, relative, "unchanged")
    _clear(conn, table, month)
    try:
        read = _read(path, table, pseudonymiser, sha)
    except landing.FileRejected as rejection:
        _record(conn, table, month, relative, sha, "rejected", 0, str(rejection))
        return FileOutcome(table.name, month, relative, "rejected", message=str(rejection))
    _insert_raw(conn, table, month, relative, read)
    _record(conn, table, month, relative, sha, "loaded", read.rows_read, read.message)
    return FileOutcome(table.name, month, relative, "loaded", read.rows_read, read.message)


# landing file -> (the key its person keys are made with, its reading in the read-ahead thread)
_AHEAD: dict[Path, tuple[bytes, Future]] = {}
_READER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")


def read_ahead(conn: duckdb.DuckDBPyConnection, landing_dir: Path, month: str,
               pseudonymiser: Pseudonymiser) -> None:
    """Start reading the month's source files that `ingest` will load (not those loaded
    unchanged before) in the read-ahead thread; `ingest` takes each reading up."""
    for table in contract.SOURCES:
        path = file_for(Path(landing_dir), table, month)
        if path is None or path in _AHEAD:
            continue
        before = previous_load(conn, table, month)
        if before and before[1] != "rejected" and before[0] == landing.sha256_of(path):
            continue
        _AHEAD[path] = (pseudonymiser.key, _READER.submit(landing.read_file, path, table, pseudonymiser))


def drop_reads_ahead() -> None:
    """Forget the readings no `ingest` took up (a refresh that stopped early), freeing their rows."""
    for _, reading in _AHEAD.values():
        reading.cancel()
    _AHEAD.clear()


def _read(path: Path, table: contract.Table, pseudonymiser: Pseudonymiser, sha: str) -> landing.FileRead:
    """The file's reading ahead when there is one of this content and key, else a reading now
    (which also raises FileRejected for a file the reading ahead rejected)."""
    key, reading = _AHEAD.pop(path, (None, None))
    if reading is not None and key == pseudonymiser.key:
        try:
            read = reading.result()
        except Exception:  # noqa: BLE001 - read again below, where the error is reported as always
            read = None
        if read is not None and read.sha256 == sha:
            return read
    return landing.read_file(path, table, pseudonymiser)


def _clear(conn, table: contract.Table, month: str | None) -> None:
    """Forget everything previously loaded from this source month."""
    if table.is_event:
        conn.execute(f"DELETE FROM raw.{table.name} WHERE source_month = ?", [month])
        conn.execute(f"DELETE FROM conformed.{table.name} WHERE source_month = ?", [month])
    else:
        conn.execute(f"DELETE FROM raw.{table.name}")
        conn.execute(f"DELETE FROM conformed.{table.name}")
    where, params = _month_filter("month", month)
    conn.execute(f"DELETE FROM raw.malformed_records WHERE source = ? AND {where}", [table.name, *params])
    conn.execute(f"DELETE FROM quality.quarantine WHERE source = ? AND {where}", [table.name, *params])
    conn.execute(f"DELETE FROM quality.summary WHERE source = ? AND {where}", [table.name, *params])


def _record(conn, table, month, relative, sha, status, rows_read, message) -> None:
    where, params = _month_filter("month", month)
    conn.execute(f"DELETE FROM quality.file_loads WHERE source = ? AND {where}", [table.name, *params])
    conn.execute(
        "INSERT INTO quality.file_loads VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?, ?)",
        [table.name, month, relative, sha, status, rows_read, message, datetime.now().replace(microsecond=0)],
    )


def _insert_raw(conn, table: contract.Table, month: str | None, relative: str, read: landing.FileRead) -> None:
    n = read.rows_split
    columns = dict(read.columns)  # Polars series (lists are accepted too)
    if table.is_event:
        columns["source_month"] = [month] * n
    columns["source_file"] = [relative] * n

    def arrow_column(name, values):
        kind = pa.int32() if name == "source_line" else pa.string()
        if isinstance(values, list):
            return pa.array(values, type=kind)
        values = values.to_arrow()  # strings stay large_string: DuckDB reads them as VARCHAR
        return values.cast(kind) if name == "source_line" else values

    arrow = pa.table({k: arrow_column(k, v) for k, v in columns.items()})
    names = ", ".join(f'"{c}"' for c in arrow.column_names)
    _insert_arrow(conn, f"INSERT INTO raw.{table.name} ({names}) SELECT {names} FROM incoming", arrow)
    if read.malformed:  # one statement: executemany runs one INSERT per record, about 1.5 ms each
        malformed = pa.table({
            "line": pa.array([m.line for m in read.malformed], pa.int32()),
            "detail": [m.detail for m in read.malformed],
            "original_row": [m.original_row for m in read.malformed],
        })
        _insert_arrow(conn, "INSERT INTO raw.malformed_records SELECT ?, ?, ?, line, detail, original_row "
                            "FROM incoming", malformed, [table.name, month, relative])


def _insert_arrow(conn, sql: str, rows: pa.Table, parameters: list | None = None) -> None:
    """Run `sql`, which reads `rows` as the view `incoming`."""
    conn.register("incoming", rows)
    try:
        conn.execute(sql, parameters)
    finally:
        conn.unregister("incoming")
