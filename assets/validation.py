"""Validation assets: `conformed.<source>` per month, the quarantine, and the blocking checks.

Each month's raw rows are judged by the contract's rules (pipelines.validation),
valid rows are typed and linked to their reception, the rest are quarantined,
and the Great Expectations suite of the source reports the month. The check
`<source>_rows_are_valid` blocks the month's indicators when its file was
rejected or too many rows were set aside.
"""


import dagster as dg

from pipelines import changes, contract, expectations, operations, validation
from pipelines.partitions import MONTHS
from pipelines.resources import PrisonHealthSettings, Warehouse, transaction


def check_name(table: contract.Table) -> str:
    return f"{table.name}_rows_are_valid"


def verdict(status: str | None, outcome: validation.MonthOutcome | None, threshold: float):
    """(passed, severity, description) of a month's check: the blocking policy in one place."""
    if status == "rejected":
        return False, dg.AssetCheckSeverity.ERROR, "the file was rejected"
    if status is None or outcome is None:
        return True, dg.AssetCheckSeverity.WARN, "no file delivered for this month yet"
    share = outcome.quarantined_share
    if share > threshold:
        return False, dg.AssetCheckSeverity.ERROR, f"{share:.1%} of rows quarantined (limit {threshold:.0%})"
    if outcome.rows_quarantined:
        return False, dg.AssetCheckSeverity.WARN, f"{share:.2%} of rows quarantined (limit {threshold:.0%})"
    return True, dg.AssetCheckSeverity.WARN, "every row conformed"


def conformed_source_asset(table: contract.Table) -> dg.AssetsDefinition:
    key = dg.AssetKey(["conformed", table.name])
    # No dependency on the receptions' month: whichever of the two runs last sets the links (a
    # receptions month that failed its blocking check must not stop its events loading). In a
    # job with both, the receptions go first, after every file is loaded, so events are linked
    # once, as they land, instead of being updated again after the receptions.
    deps = [dg.AssetKey(["raw", table.name]), dg.AssetKey(["conformed", "prisons"])]
    priority = "0" if table.name == "reception_screening" else "-1"

    @dg.asset(
        key=key,
        partitions_def=MONTHS,
        group_name="validation",
        kinds={"duckdb", "great_expectations"},
        deps=deps,
        op_tags={"dagster/priority": priority},
        check_specs=[dg.AssetCheckSpec(check_name(table), asset=key, blocking=True,
                                       description="Rows of the month's file conform to the data contract; "
                                       "blocks the month when the file was rejected or too many rows are "
                                       "quarantined.")],
        description=f"{table.description} Typed, valid rows only, keyed by person_key"
        + (", linked to their reception." if table.links_to_reception else "."),
    )
    def conformed_source(context: dg.AssetExecutionContext, settings: PrisonHealthSettings, warehouse: Warehouse):
        month = context.partition_key
        with warehouse.get_connection() as conn:
            load = conn.execute("SELECT status, file FROM quality.file_loads WHERE source = ? AND month = ?",
                                [table.name, month]).fetchone()
            status = load[0] if load else None
            outcome, later = None, []
            if status not in (None, "rejected"):
                with transaction(conn):
                    outcome, later = validation.validate_partition(conn, table, month)
        passed, severity, description = verdict(status, outcome, settings.threshold)
        counts = outcome.by_reason if outcome else {}
        yield dg.MaterializeResult(metadata={
            "dagster/row_count": outcome.rows_loaded if outcome else 0,
            "rows read": outcome.rows_read if outcome else 0,
            "rows quarantined": outcome.rows_quarantined if outcome else 0,
            "file status": status or "missing",
            "later months revalidated": ", ".join(later) or "none",
        })
        yield dg.AssetCheckResult(
            check_name=check_name(table),
            passed=passed,
            severity=severity,
            description=description,
            metadata={
                "rows quarantined by reason": {r: counts.get(r, 0) for r in contract.REASONS},
                "failing rules": dg.MetadataValue.md(
                    expectations.failing_rules_markdown(outcome.failures if outcome else None)),
            },
        )

    return conformed_source


CONFORMED_ASSETS = [conformed_source_asset(t) for t in contract.SOURCES]
AUDIT_CHECK = "expectation_suites_agree_with_quarantine"


@dg.asset(
    key=["quality", "expectation_results"],
    group_name="validation_audit",
    kinds={"great_expectations", "duckdb"},
    deps=[a.key for a in CONFORMED_ASSETS] + [dg.AssetKey(["conformed", t.name]) for t in contract.REFERENCES],
    # Last among the steps ready with it: after the publication's first steps, while its suites run in
    # a second process (expectations.audit_ahead, started by the refresh or the publication's first step).
    op_tags={"dagster/priority": "-1"},
    check_specs=[dg.AssetCheckSpec(AUDIT_CHECK, asset=["quality", "expectation_results"],
                                   description="Great Expectations flags exactly the rows the SQL rules "
                                   "quarantined, each with the same first reason.")],
    description="Every source's Great Expectations suite (expectations/<source>.json) run over the rows "
    "validation set aside in the months changed since the last audit (all months the first time): failing "
    "rows per expectation and month.",
)
def expectation_results(context: dg.AssetExecutionContext, warehouse: Warehouse):
    problems, audited = [], []
    with warehouse.get_connection() as conn:
        # Only the months changed since the last audit: earlier ones were audited when they changed.
        pending = changes.pending(conn, expectations.CONSUMER)
        for done in expectations.audit_changes(conn, pending, operations.refresh_group(context.run)):
            with transaction(conn):
                expectations.store_results(conn, done.table, done.results, done.months)
            problems += done.disagreements
            audited.append(expectations.scope_label(done.table, done.months))
        with transaction(conn):
            changes.advance(conn, expectations.CONSUMER, pending.upto)
        failing = conn.execute("""
            SELECT source, expectation, "column", reason, sum(rows_failing) FROM quality.expectation_results
            GROUP BY ALL ORDER BY ALL""").fetchall()
    summary = "\n".join(["| source | expectation | column | reason | rows failing |", "|---|---|---|---|---:|",
                         *(f"| {s} | {e} | {c} | {r} | {n:,} |" for s, e, c, r, n in failing)]
                        ) if failing else "Every expectation met."
    yield dg.MaterializeResult(metadata={"failing expectations": dg.MetadataValue.md(summary),
                                         "rows failing (summed over expectations)": sum(r[4] for r in failing),
                                         "audited in this run": ", ".join(audited) or "nothing changed"})
    yield dg.AssetCheckResult(check_name=AUDIT_CHECK, passed=not problems,
                              description=f"{len(problems)} disagreement(s)" if problems else "GX and SQL agree",
                              metadata={"disagreements": dg.MetadataValue.md(
                                  "\n".join(f"- {p}" for p in problems[:50]) or "none")})
