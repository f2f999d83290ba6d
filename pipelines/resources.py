"""Dagster resources: the settings every asset reads and the one warehouse it writes."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from pipelines import settings, warehouse


class PrisonHealthSettings(dg.ConfigurableResource):
    """Landing and output directories and the blocking threshold, defaulted from the environment."""

    landing: str = ""
    out: str = ""
    quarantine_threshold: float = -1.0

    @property
    def landing_path(self) -> Path:
        return Path(self.landing) if self.landing else settings.landing_dir()

    @property
    def out_path(self) -> Path:
        return Path(self.out) if self.out else settings.out_dir()

    @property
    def threshold(self) -> float:
        return self.quarantine_threshold if self.quarantine_threshold >= 0 else settings.quarantine_threshold()

    @property
    def warehouse_path(self) -> Path:
        return self.out_path / "warehouse.duckdb"


_OPEN: dict[str, duckdb.DuckDBPyConnection] = {}


class Warehouse(DuckDBResource):
    """The pipeline's DuckDB warehouse, held open for the life of the process.

    Every step of an in-process run gets its own cursor on one database instance, so
    the file is opened, its tables ensured and its write-ahead log checkpointed once
    per process instead of once per step. `release()` closes it (the refresh does so
    before reading its summary, and tests before reading the file from outside).
    """

    @contextmanager
    def get_connection(self):
        path = Path(self.database).resolve()
        key = str(path)
        if key not in _OPEN:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = duckdb.connect(key, config=settings.duckdb_config())
            warehouse.create_all(conn)
            _OPEN[key] = conn
        cursor = _OPEN[key].cursor()
        try:
            yield cursor
        finally:
            cursor.close()


def release(database: Path | None = None) -> None:
    """Close the held warehouse connection(s), checkpointing them."""
    for key in [k for k in _OPEN if database is None or k == str(Path(database).resolve())]:
        _OPEN.pop(key).close()


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection):
    """All-or-nothing: a partition is either fully replaced or left as it was."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def build(landing: Path | None = None, out: Path | None = None) -> dict:
    config = PrisonHealthSettings(landing=str(landing or ""), out=str(out or ""))
    return {"settings": config, "warehouse": Warehouse(database=str(config.warehouse_path))}
