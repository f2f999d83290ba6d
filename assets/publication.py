"""Publication assets: indicator values with their statistics, the disclosure-controlled table,
the analysts' database and the report. Unpartitioned: each takes what changed since it last ran
(pipelines.changes), or everything the first time."""

import logging
import time

import dagster as dg

from assets.indicators import CATALOGUE, indicator_key
from pipelines import (
    action_lists,
    analyst_database,
    drilldown,
    expectations,
    operations,
    publication,
    report,
    spreadsheet,
)
from pipelines.resources import PrisonHealthSettings, Warehouse, transaction

BY_CODE = {i.code: i for i in CATALOGUE}
log = logging.getLogger("prisonhealth.publication")
ANALYST_DATABASE = dg.AssetKey(["analyst_database"])
REPORT = dg.AssetKey(["report"])
AUDIT = dg.AssetKey(["quality", "expectation_results"])


def comparison_counts_markdown(conn) -> str:
    """Headline indicators: prisons better / similar / worse than England in the latest quarter."""
    rows = conn.execute("""
        WITH latest AS (SELECT max(period_start) AS start FROM indicators.indicator_values
                        WHERE period_type = 'quarter')
        SELECT v.indicator_id, c.name, strftime(v.period_start, '%Y-%m'),
               count(*) FILTER (WHERE comparison IN ('better', 'higher')),
               count(*) FILTER (WHERE comparison = 'similar'),
               count(*) FILTER (WHERE comparison IN ('worse', 'lower')),
               count(*) FILTER (WHERE comparison = 'not_compared')
        FROM indicators.indicator_values v JOIN indicators.catalogue c ON c.code = v.indicator_id, latest
        WHERE v.period_type = 'quarter' AND v.period_start = latest.start AND v.level = 'prison' AND c.headline
        GROUP BY ALL ORDER BY 1""").fetchall()
    lines = ["| indicator | name | quarter from | better (higher) | similar | worse (lower) | not compared |",
             "|---|---|---|---:|---:|---:|---:|"]
    lines += [f"| {code} | {name} | {start} | {b} | {s} | {w} | {n} |" for code, name, start, b, s, w, n in rows]
    return "\n".join(lines)


@dg.asset(
    key=["indicators", "indicator_values"],
    deps=[indicator_key(i.code) for i in CATALOGUE],
    group_name="publication",
    kinds={"duckdb"},
    description="Every indicator by month, financial quarter and year, at prison, region, operator, function "
    "and England level, with 95% and 99.8% intervals and the comparison with England; plus funnel limits "
    "(indicators.funnel_limits).",
)
def indicator_values(context: dg.AssetExecutionContext, settings: PrisonHealthSettings,
                     warehouse: Warehouse) -> dg.MaterializeResult:
    selected = context.job_def.asset_layer.selected_asset_keys
    with warehouse.get_connection() as conn:
        if AUDIT in selected:  # its suites run in a second process (unless the refresh started them earlier)
            expectations.audit_ahead(conn, operations.refresh_group(context.run))
        if ANALYST_DATABASE in selected:  # its copy, when it needs one, runs beside this step
            analyst_database.copy_ahead(conn, settings.out_path / "analyst.duckdb")
        with transaction(conn):
            counts = publication.update_indicator_values(conn, BY_CODE)
            table = comparison_counts_markdown(conn)
    return dg.MaterializeResult(metadata={
        **counts, "prisons compared with England, latest quarter": dg.MetadataValue.md(table)})


@dg.asset(
    key=["published", "indicator_values"],
    deps=[indicator_values.key],
    group_name="publication",
    kinds={"duckdb"},
    description="The indicator values after disclosure control: below England, numerators 1 to 7 are "
    "suppressed, with secondary suppression so no suppressed figure can be recovered from its parent.",
)
def published_indicator_values(context: dg.AssetExecutionContext, settings: PrisonHealthSettings,
                               warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        with transaction(conn):
            counts = publication.update_published_values(conn)
        if REPORT in context.job_def.asset_layer.selected_asset_keys:  # the report step takes it up
            spreadsheet.write_ahead(conn, _workbook_path(settings), context.run_id)
    return dg.MaterializeResult(metadata=counts)


@dg.asset(
    key=["indicators", "spc"],
    deps=[indicator_values.key],
    group_name="publication",
    kinds={"duckdb"},
    # After the published values, whose step starts the workbook, the slowest output: SPC needs
    # only the indicator values, and the report and the analysts' database wait for it.
    op_tags={"dagster/priority": "-1"},
    description="Statistical process control (XmR charts, NHS Making Data Count rules) of the final monthly "
    "series of England and each prison, for every indicator, with assurance against the target.",
)
def spc(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn, transaction(conn):
        counts = publication.update_spc(conn, BY_CODE)
    return dg.MaterializeResult(metadata=counts)


@dg.asset(
    key=ANALYST_DATABASE,
    deps=[published_indicator_values.key, AUDIT, dg.AssetKey(["quality", "runs"]), spc.key],
    group_name="publication",
    kinds={"duckdb"},
    description="analyst.duckdb: the conformed, indicators, published and quality schemas with a comment on "
    "every table and column, replaced atomically so open readers are never disturbed (the file replaced last "
    "time, kept as .analyst.duckdb.spare, or else a copy of the last one, with the changed months replaced); and "
    "the RESTRICTED action lists (one CSV per prison) under <out>/restricted/action-lists/.",
)
def analyst_db(context: dg.AssetExecutionContext, settings: PrisonHealthSettings,
               warehouse: Warehouse) -> dg.MaterializeResult:
    target = settings.out_path / "analyst.duckdb"
    actions_folder = settings.out_path / "restricted" / "action-lists"
    began = time.monotonic()
    with warehouse.get_connection() as conn:
        how = analyst_database.publish_changes(conn, target)
        actions = action_lists.write_action_lists(conn, actions_folder)
    log.info("analysts' database and action lists published in %.1f s", time.monotonic() - began)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(target.resolve())),
        "published": how,
        "size (MB)": round(target.stat().st_size / 1e6, 1),
        "action lists (restricted)": dg.MetadataValue.path(str(actions_folder.resolve())),
        "receptions needing action": sum(actions.values()),
    })


@dg.asset(
    key=REPORT,
    deps=[published_indicator_values.key, AUDIT, spc.key],
    group_name="publication",
    kinds={"html", "plotly"},
    description="The published report under <out>/report/: overview of the twelve headline indicators, a page "
    "per indicator (SPC chart, funnel plot, sortable table, definition, CSV), prison and region views, "
    "methodology and data quality; the accessible spreadsheet; CSV and Parquet. Published figures only.",
)
def published_report(context: dg.AssetExecutionContext, settings: PrisonHealthSettings,
                     warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        # The spreadsheet, the slowest part, is written by a second process: since the published
        # table was written when this run published it, otherwise from before anything else here.
        workbook = (spreadsheet.taken_ahead(_workbook_path(settings), context.run_id)
                    or spreadsheet.start_spreadsheet(spreadsheet.workbook_publication(conn), _workbook_path(settings)))
        with transaction(conn):
            breakdowns = drilldown.update_breakdowns(conn)  # the changed months' counts by reason
        began = time.monotonic()
        publication = report.load_publication(conn)  # read once: the national tables are large
        summary = report.build_report(conn, settings.out_path, publication=publication, workbook=workbook)
        log.info("report built in %.1f s", time.monotonic() - began)
        headline = report.headline_table_markdown(conn, publication)
    return dg.MaterializeResult(metadata={
        **summary.metadata(),
        "counts by reason recomputed for": breakdowns,
        "report": dg.MetadataValue.path(str(summary.index.resolve())),
        "headline indicators": dg.MetadataValue.md(headline),
    })


def _workbook_path(settings: PrisonHealthSettings):
    return settings.out_path / report.SITE_DIR / report.SPREADSHEET_NAME


PUBLICATION_ASSETS = [indicator_values, published_indicator_values, spc, analyst_db, published_report]
