"""The warehouse layout: every schema and table the pipeline owns, created idempotently.

The tables are defined here once so that ingest, validation, indicators and the
analysts' database agree on names and columns, and so that their comments (which
become `COMMENT ON` in the analysts' database) live next to their definitions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from pipelines import changes, contract

SCHEMAS = ("raw", "conformed", "quality", "indicators", "published")

LINEAGE = """
  source_month VARCHAR,
  source_file VARCHAR,
  source_line INTEGER"""

QUALITY_TABLES = {
    "quality.file_loads": """
CREATE TABLE IF NOT EXISTS quality.file_loads (
  source VARCHAR,
  month VARCHAR,
  file VARCHAR,
  sha256 VARCHAR,
  status VARCHAR,
  rows_read BIGINT,
  rows_loaded BIGINT,
  rows_quarantined BIGINT,
  message VARCHAR,
  loaded_at TIMESTAMP
)""",
    "quality.quarantine": """
CREATE TABLE IF NOT EXISTS quality.quarantine (
  source VARCHAR,
  month VARCHAR,
  file VARCHAR,
  line INTEGER,
  prison_code VARCHAR,
  reason VARCHAR,
  detail VARCHAR,
  original_row VARCHAR
)""",
    "quality.expectation_results": """
CREATE TABLE IF NOT EXISTS quality.expectation_results (
  source VARCHAR,
  month VARCHAR,
  expectation VARCHAR,
  "column" VARCHAR,
  reason VARCHAR,
  rule VARCHAR,
  rows_failing BIGINT
)""",
    "quality.summary": f"""
CREATE TABLE IF NOT EXISTS quality.summary (
  source VARCHAR,
  month VARCHAR,
  prison_code VARCHAR,
  rows_read BIGINT,
  rows_loaded BIGINT,
  rows_quarantined BIGINT,
  {", ".join(f"{r} BIGINT" for r in contract.REASONS)}
)""",
}

INDICATOR_TABLES = {
    "indicators.catalogue": """
CREATE TABLE IF NOT EXISTS indicators.catalogue (
  code VARCHAR,
  priority INTEGER,
  priority_name VARCHAR,
  headline BOOLEAN,
  name VARCHAR,
  definition VARCHAR,
  numerator VARCHAR,
  denominator VARCHAR,
  unit VARCHAR,
  multiplier INTEGER,
  polarity VARCHAR,
  target DOUBLE,
  method VARCHAR,
  denominator_kind VARCHAR,
  aggregation VARCHAR,
  anchor VARCHAR,
  derived VARCHAR,
  sql VARCHAR
)""",
    "indicators.members": """
CREATE TABLE IF NOT EXISTS indicators.members (
  indicator_id VARCHAR,
  month DATE,
  prison_code VARCHAR,
  unit_type VARCHAR,
  unit_id VARCHAR,
  person_key VARCHAR,
  numerator BIGINT,
  denominator DOUBLE,
  reason VARCHAR,
  anchor_datetime TIMESTAMP,
  event_datetime TIMESTAMP,
  window_end TIMESTAMP,
  source_file VARCHAR,
  source_line INTEGER,
  component VARCHAR
)""",
    "indicators.gap_components": """
CREATE TABLE IF NOT EXISTS indicators.gap_components (
  indicator_id VARCHAR,
  period_type VARCHAR,
  period_start DATE,
  period_end DATE,
  base_indicator_id VARCHAR,
  group_attribute VARCHAR,
  group_a VARCHAR,
  numerator_a BIGINT,
  denominator_a DOUBLE,
  group_b VARCHAR,
  numerator_b BIGINT,
  denominator_b DOUBLE
)""",
    "indicators.prison_month": """
CREATE TABLE IF NOT EXISTS indicators.prison_month (
  indicator_id VARCHAR,
  month DATE,
  prison_code VARCHAR,
  numerator BIGINT,
  denominator DOUBLE,
  provisional BOOLEAN
)""",
    "indicators.indicator_values": """
CREATE TABLE IF NOT EXISTS indicators.indicator_values (
  indicator_id VARCHAR,
  priority INTEGER,
  period_type VARCHAR,
  period_start DATE,
  period_end DATE,
  level VARCHAR,
  area_code VARCHAR,
  area_name VARCHAR,
  numerator BIGINT,
  denominator DOUBLE,
  value DOUBLE,
  lower_ci_95 DOUBLE,
  upper_ci_95 DOUBLE,
  lower_ci_99_8 DOUBLE,
  upper_ci_99_8 DOUBLE,
  comparison VARCHAR,
  provisional BOOLEAN
)""",
}


PUBLICATION_TABLES = {
    "indicators.funnel_limits": """
CREATE TABLE IF NOT EXISTS indicators.funnel_limits (
  indicator_id VARCHAR,
  period_type VARCHAR,
  period_start DATE,
  period_end DATE,
  denominator DOUBLE,
  england_value DOUBLE,
  lower_95 DOUBLE,
  upper_95 DOUBLE,
  lower_99_8 DOUBLE,
  upper_99_8 DOUBLE
)""",
    "indicators.spc": """
CREATE TABLE IF NOT EXISTS indicators.spc (
  indicator_id VARCHAR,
  level VARCHAR,
  area_code VARCHAR,
  month DATE,
  value DOUBLE,
  mean DOUBLE,
  lower_process_limit DOUBLE,
  upper_process_limit DOUBLE,
  special_cause BOOLEAN,
  variation VARCHAR,
  rules VARCHAR,
  target DOUBLE,
  assurance VARCHAR
)""",
    "published.indicator_values": """
CREATE TABLE IF NOT EXISTS published.indicator_values AS
SELECT *, false AS suppressed FROM indicators.indicator_values WHERE false""",
}


def raw_ddl(table: contract.Table) -> str:
    """Raw tables hold each record as delivered: text values, the NHS number already
    replaced by its HMAC (`person_key`) plus what was wrong with it, and the masked text."""
    cols = []
    for c in table.columns:
        if c.type == "nhs_number":
            cols += ["person_key VARCHAR", "nhs_number_problem VARCHAR"]
        else:
            cols.append(f'"{c.name}" VARCHAR')
    lineage = LINEAGE if table.is_event else "\n  source_file VARCHAR,\n  source_line INTEGER"
    return (
        f"CREATE TABLE IF NOT EXISTS raw.{table.name} (\n  "
        + ",\n  ".join(cols)
        + ","
        + lineage
        + ",\n  original_row VARCHAR\n)"
    )


MALFORMED_DDL = """
CREATE TABLE IF NOT EXISTS raw.malformed_records (
  source VARCHAR,
  month VARCHAR,
  file VARCHAR,
  line INTEGER,
  detail VARCHAR,
  original_row VARCHAR
)"""


def create_all(conn: duckdb.DuckDBPyConnection) -> None:
    for schema in SCHEMAS:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for table in contract.TABLES.values():
        conn.execute(raw_ddl(table))
        conn.execute(contract.conformed_ddl(table))
    conn.execute(MALFORMED_DDL)
    for ddl in (*QUALITY_TABLES.values(), *INDICATOR_TABLES.values(), *PUBLICATION_TABLES.values()):
        conn.execute(ddl)
    changes.create(conn)
    from pipelines.operations import create_runs_table  # lazy: operations imports the resources

    create_runs_table(conn)


def table_exists(conn: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    """Whether `schema.table` exists in the connection's own database. The catalog views list
    every attached database, and the analysts' database is attached beside the warehouse while
    it is updated, so the look-up names the current one."""
    schema, name = qualified.split(".")
    return bool(conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_schema = ? AND table_name = ?", [schema, name]).fetchone()[0])


@contextmanager
def insertion_order_not_kept(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Let DuckDB write a parallel INSERT's rows in whatever order its threads produce them.

    By default DuckDB keeps a query's row order in the table it inserts into, which makes the
    threads of a large INSERT hand their row groups over in order. An indicator month's member
    rows have no order of their own: every reader groups them or says how to sort them, and a
    national month writes hundreds of thousands. The same holds for the month-partitioned tables
    the analysts' database copies month by month (`analyst_database.PARTITIONED`). `python -m
    benchmarks.breakdown` times a refresh's indicator months both ways. The connection's own
    setting is put back afterwards, so no other query's order changes."""
    (kept,) = conn.execute("SELECT current_setting('preserve_insertion_order')").fetchone()
    conn.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        conn.execute(f"SET preserve_insertion_order = {'true' if kept else 'false'}")
