"""Ingest assets: each monthly landing file into `raw.<source>`, and the reference tables.

Thin Dagster wiring around pipelines.ingest and pipelines.validation; the
partition key is the month in the file name.
"""


import dagster as dg

from pipelines import contract, ingest, pseudonymise, validation
from pipelines.partitions import MONTHS
from pipelines.resources import PrisonHealthSettings, Warehouse, transaction


def _load_metadata(outcome: ingest.FileOutcome) -> dict:
    return {
        "status": outcome.status,
        "file": outcome.file or "(none)",
        "dagster/row_count": outcome.rows_read,
        "message": outcome.message or "",
    }


def raw_source_asset(table: contract.Table) -> dg.AssetsDefinition:
    @dg.asset(
        key=["raw", table.name],
        partitions_def=MONTHS,
        group_name="sources",
        kinds={"duckdb"},
        op_tags={"dagster/priority": "1"},  # files first: see assets.validation.conformed_source_asset
        description=f"{table.description} As delivered: text values, NHS number replaced by its HMAC, "
        "file and line of every record. Malformed records go to raw.malformed_records.",
    )
    def raw_source(context: dg.AssetExecutionContext, settings: PrisonHealthSettings,
                   warehouse: Warehouse) -> dg.MaterializeResult:
        if pseudonymise.warn_if_development_key():
            context.log.warning(f"{pseudonymise.KEY_VARIABLE} is not set: using the DEVELOPMENT key.")
        with warehouse.get_connection() as conn, transaction(conn):
            outcome = ingest.ingest(conn, settings.landing_path, table, context.partition_key,
                                    pseudonymise.Pseudonymiser())
        if outcome.status == "rejected":
            context.log.error(f"{outcome.file} rejected: {outcome.message}")
        return dg.MaterializeResult(metadata=_load_metadata(outcome))

    return raw_source


def reference_asset(table: contract.Table, deps: list) -> dg.AssetsDefinition:
    """A reference table: loaded and validated in one step (it is small and unpartitioned)."""

    @dg.asset(
        key=["conformed", table.name],
        group_name="reference",
        kinds={"duckdb"},
        deps=deps,
        description=table.description,
    )
    def reference(context: dg.AssetExecutionContext, settings: PrisonHealthSettings,
                  warehouse: Warehouse) -> dg.MaterializeResult:
        with warehouse.get_connection() as conn, transaction(conn):
            outcome = ingest.ingest(conn, settings.landing_path, table, None, pseudonymise.Pseudonymiser())
            if outcome.status == "missing" and table.name == "drug_groups":
                conn.execute("DELETE FROM conformed.drug_groups")
                conn.executemany("INSERT INTO conformed.drug_groups VALUES (?, ?, NULL, NULL)",
                                 list(contract.DEFAULT_DRUG_GROUPS))
                rows = len(contract.DEFAULT_DRUG_GROUPS)
                quarantined = {}
            elif outcome.status == "missing":
                raise dg.Failure(f"reference/{table.name}.csv is missing from {settings.landing_path}")
            else:
                checked = validation.validate(conn, table, None)
                rows, quarantined = checked.rows_loaded, checked.by_reason
        if outcome.status == "rejected":
            raise dg.Failure(f"reference/{table.name} rejected: {outcome.message}")
        return dg.MaterializeResult(metadata={
            **_load_metadata(outcome),
            "dagster/row_count": rows,
            "quarantined by reason": quarantined or {},
            "source": "shipped defaults" if outcome.status == "missing" else outcome.file,
        })

    return reference


RAW_ASSETS = [raw_source_asset(t) for t in contract.SOURCES]
PRISONS = reference_asset(contract.PRISONS, [])
POPULATION = reference_asset(contract.POPULATION, [PRISONS])
DRUG_GROUPS = reference_asset(contract.DRUG_GROUPS, [])
REFERENCE_ASSETS = [PRISONS, POPULATION, DRUG_GROUPS]
