"""Publication of the indicator values: only the periods that changed since the last one.

A monthly refresh recomputes three indicator months; every other period's values,
intervals, funnels and disclosure decisions are what they were, because no figure of one
period reads another period's rows. So each step here is a consumer of `pipeline.changes`
(pipelines.changes) and rebuilds the periods holding the months changed since its cursor:

- `update_indicator_values` takes the months the indicator engine recomputed and rebuilds
  `indicators.indicator_values` (with intervals and the England comparison), the funnel
  limits and gap components of those periods. It logs the months it published for
- `update_published_values`, which applies disclosure control to the same periods, and
- `update_spc`, which recomputes SPC whole (a new month moves every series' limits) from the
  monthly rows alone. It is a step of its own, after the published values, because the
  workbook, the slowest part of the publication, starts from those and waits for nothing else.

The first run (no cursor), and any change to a reference table (areas and populations
feed every period), rebuild every period.
"""

from __future__ import annotations

import duckdb

from pipelines import benchmarking, changes, indicators
from pipelines.catalogue import Indicator

VALUES_CONSUMER, PUBLISHED_CONSUMER, SPC_CONSUMER = "indicator_values", "published_values", "spc"


def _replace(conn: duckdb.DuckDBPyConnection, table: str, frame, scope: str = "true") -> None:
    conn.register("replacement_rows", frame)
    try:
        columns = ", ".join(f'"{c}"' for c in frame.columns)
        conn.execute(f"DELETE FROM {table} WHERE {scope}")
        conn.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM replacement_rows")
    finally:
        conn.unregister("replacement_rows")


def _periods_of(months: set[str] | None) -> set | None:
    """The periods holding `months`; None (rebuild every period) when every month must be."""
    return None if months is None else indicators.periods_holding(months)


def update_indicator_values(conn: duckdb.DuckDBPyConnection, catalogue: dict[str, Indicator]) -> dict:
    """Rebuild the changed periods' values, funnels and gaps; returns counts for the UI.
    The caller owns the transaction (the cursor moves in it)."""
    pending = changes.pending(conn, VALUES_CONSUMER)
    months = pending.months_or_all(changes.INDICATORS)
    only = _periods_of(months)
    rows = indicators.build_indicator_values(
        conn, only=only, fill_statistics=lambda frame: benchmarking.add_statistics(
            frame, catalogue, indicators.gap_components(conn, only)))
    if only is None or only:
        funnels = benchmarking.funnel_limits(indicators.indicator_values_frame(conn, only), catalogue)
        _replace(conn, "indicators.funnel_limits", funnels, indicators.period_scope(conn, only))
    changes.record(conn, changes.INDICATOR_VALUES, [None] if months is None else sorted(months))
    changes.advance(conn, VALUES_CONSUMER, pending.upto)
    values, funnels = conn.execute(
        "SELECT (SELECT count(*) FROM indicators.indicator_values), (SELECT count(*) FROM indicators.funnel_limits)"
    ).fetchone()
    return {"dagster/row_count": values, "rows rebuilt": rows, "periods rebuilt": _periods_text(only),
            "funnel limit rows": funnels}


def update_spc(conn: duckdb.DuckDBPyConnection, catalogue: dict[str, Indicator]) -> dict:
    """Recompute every SPC chart when any indicator value changed since the last time; returns
    counts. The caller owns the transaction."""
    pending = changes.pending(conn, SPC_CONSUMER)
    months = pending.months_or_all(changes.INDICATOR_VALUES)
    if months is None or months:
        _replace(conn, "indicators.spc", benchmarking.spc_charts(indicators.monthly_series_frame(conn), catalogue))
    changes.advance(conn, SPC_CONSUMER, pending.upto)
    (points,) = conn.execute("SELECT count(*) FROM indicators.spc").fetchone()
    return {"dagster/row_count": points, "recomputed": months is None or bool(months)}


def update_published_values(conn: duckdb.DuckDBPyConnection) -> dict:
    """Disclosure control of the periods `update_indicator_values` changed; returns counts."""
    pending = changes.pending(conn, PUBLISHED_CONSUMER)
    only = _periods_of(pending.months_or_all(changes.INDICATOR_VALUES))
    values = indicators.indicator_values_frame(conn, only)
    prisons = conn.execute("SELECT prison_code, region, operator, function FROM conformed.prisons").df()
    _replace(conn, "published.indicator_values", benchmarking.published_values(values, prisons),
             indicators.period_scope(conn, only))
    changes.advance(conn, PUBLISHED_CONSUMER, pending.upto)
    rows, suppressed = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE suppressed) FROM published.indicator_values").fetchone()
    return {"dagster/row_count": rows, "suppressed rows": suppressed, "periods rebuilt": _periods_text(only)}


def _periods_text(only: set | None) -> str:
    return "all" if only is None else ", ".join(f"{t} {s:%Y-%m}" for t, s in sorted(only)) or "none"
