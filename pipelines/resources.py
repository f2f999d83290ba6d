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


_CREATED: set[str] = set()


class Warehouse(DuckDBResource):
    """DuckDB's resource with the warehouse's tables guaranteed to exist (checked once per process)."""

    @contextmanager
    def get_connection(self):
        path = Path(self.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        with super().get_connection() as conn:
            key = f"{path.resolve()}:{path.stat().st_ino if path.exists() else 0}"
            if key not in _CREATED:
                warehouse.create_all(conn)
                _CREATED.add(key)
            yield conn


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
