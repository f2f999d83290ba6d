"""Indicator assets: one asset per catalogue indicator, computed together per month.

Month M reads source months M-1 to M+2 (P03b looks back 28 days, the 72-hour and
28-day windows and P07c's 25-42 day follow-up run forward), declared with a
TimeWindowPartitionMapping so Dagster knows which source months feed which
indicator month. A month whose own extracts failed their blocking checks is not
computed. `indicator_values` then aggregates every month to every level and period.
"""

import dagster as dg

from pipelines import catalogue, changes, contract, indicators, periods
from pipelines.partitions import MONTHS
from pipelines.resources import PrisonHealthSettings, Warehouse, transaction

CATALOGUE = catalogue.load_catalogue()
SOURCE_WINDOW = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=2, allow_nonexistent_upstream_partitions=True)


def indicator_key(code: str) -> dg.AssetKey:
    return dg.AssetKey(["indicators", code])


def _spec(indicator: catalogue.Indicator) -> dg.AssetSpec:
    deps = [dg.AssetDep(dg.AssetKey(["conformed", t.name]), partition_mapping=SOURCE_WINDOW)
            for t in contract.SOURCES]
    deps += [dg.AssetKey(["conformed", t.name]) for t in contract.REFERENCES]
    return dg.AssetSpec(
        indicator_key(indicator.code),
        deps=deps,
        group_name="indicators",
        kinds={"duckdb", "sql"},
        description=f"{indicator.name}. {indicator.definition}",
        metadata={"priority": indicator.priority, "headline": indicator.headline, "unit": indicator.unit,
                  "polarity": indicator.polarity},
        tags={"headline": "true"} if indicator.headline else {},
    )


def blocking_problems(conn, month: str, threshold: float) -> list[str]:
    """Why month M's own extracts must not feed indicators: rejected, or over the quarantine limit."""
    rows = conn.execute("""
        SELECT source, status, rows_read, rows_quarantined FROM quality.file_loads
        WHERE month = ? ORDER BY source""", [month]).fetchall()
    problems = []
    for source, status, read, quarantined in rows:
        if status == "rejected":
            problems.append(f"{source}/{month} was rejected")
        elif read and quarantined / read > threshold:
            problems.append(f"{source}/{month} has {quarantined / read:.1%} of rows quarantined")
    return problems


def england_series_markdown(conn, codes: list[str], months: int = 12) -> dict[str, str]:
    """The latest months of each indicator for England, summed from the prison-months (one
    query for every indicator: a month's run shows them all)."""
    rows = conn.execute("""
        SELECT indicator_id, strftime(month, '%Y-%m') AS m, sum(numerator), sum(denominator), bool_or(provisional)
        FROM indicators.prison_month WHERE list_contains(?, indicator_id) GROUP BY indicator_id, m
        QUALIFY row_number() OVER (PARTITION BY indicator_id ORDER BY m DESC) <= ?
        ORDER BY indicator_id, m""", [codes, months]).fetchall()
    return _tables_by_code(codes, "| month | numerator | denominator | provisional |\n|---|---:|---:|---|",
                           ((code, f"| {m} | {n:,} | {d:,.0f} | {'yes' if p else ''} |") for code, m, n, d, p in rows),
                           "No months computed yet.")


def reason_breakdown_markdown(conn, codes: list[str], month: str) -> dict[str, str]:
    """Why England's units for the month are, or are not, in each indicator's numerator (from the
    member rows)."""
    rows = conn.execute("""
        SELECT indicator_id, reason, unit_type, count(*), sum(numerator), sum(denominator)
        FROM indicators.members WHERE month = ? AND list_contains(?, indicator_id) AND unit_type <> 'population'
        GROUP BY ALL ORDER BY indicator_id, sum(numerator) DESC, count(*) DESC, reason, unit_type""",
        [periods.parse_month(month), codes]).fetchall()
    return _tables_by_code(
        codes, "| reason | units | counted in numerator | counted in denominator |\n|---|---:|---:|---:|",
        ((code, f"| {reason} ({unit}) | {n:,} | {num:,} | {den:,.0f} |") for code, reason, unit, n, num, den in rows),
        "No member rows (derived indicator, or no units this month).")


def _tables_by_code(codes: list[str], header: str, lines, empty: str) -> dict[str, str]:
    """A markdown table per indicator code from (code, row) lines in order; `empty` for a code with none."""
    rows: dict[str, list[str]] = {code: [] for code in codes}
    for code, line in lines:
        rows[code].append(line)
    return {code: "\n".join([header, *found]) if found else empty for code, found in rows.items()}


@dg.multi_asset(
    specs=[_spec(i) for i in CATALOGUE],
    partitions_def=MONTHS,
    name="indicator_month",
    can_subset=False,
    description="Every indicator's member rows and prison numerators and denominators for one month.",
)
def indicator_month(context: dg.AssetExecutionContext, settings: PrisonHealthSettings, warehouse: Warehouse):
    month = context.partition_key
    with warehouse.get_connection() as conn:
        problems = blocking_problems(conn, month, settings.threshold)
        if problems:
            with transaction(conn):
                date = periods.parse_month(month)
                conn.execute("DELETE FROM indicators.members WHERE month = ?", [date])
                conn.execute("DELETE FROM indicators.prison_month WHERE month = ?", [date])
                changes.record(conn, changes.INDICATORS, [month])  # the publication withdraws the month's figures
            raise dg.Failure(f"Indicators for {month} not computed: " + "; ".join(problems),
                             allow_retries=False)
        with transaction(conn):
            counts = indicators.compute_month(conn, month, CATALOGUE)
        codes = [indicator.code for indicator in CATALOGUE]
        series, reasons = england_series_markdown(conn, codes), reason_breakdown_markdown(conn, codes, month)
        for code in codes:
            yield dg.MaterializeResult(
                asset_key=indicator_key(code),
                metadata={
                    "member rows": counts["members_by_indicator"].get(code, 0),
                    "provisional": counts["provisional"],
                    "England series": dg.MetadataValue.md(series[code]),
                    "England this month, by reason": dg.MetadataValue.md(reasons[code]),
                },
            )


INDICATOR_ASSETS = [indicator_month]
