"""The indicator engine: catalogue SQL -> member rows -> prison-months -> indicator values.

Pure functions over a DuckDB connection; they neither open nor commit transactions (the
caller wraps each call in one) and hold no Dagster code.

1. `compute_month(conn, "2024-04")` runs every catalogue query for anchor month M and
   replaces M's rows of `indicators.members` (one row per counted unit, with its reason
   and lineage) and of `indicators.prison_month` (their sums per indicator and prison, so
   the two agree by construction).
2. `build_indicator_values(conn)` rebuilds `indicators.indicator_values` for every month
   with a reception extract and the financial quarters and years holding them, at prison,
   region, operator, function and England level, from summed numerators and denominators.
   Confidence intervals and the England comparison are left null: the statistics step
   fills them, either through the `fill_statistics` hook or by updating the table
   afterwards (P04a's interval needs the two groups' figures: `indicators.gap_components`).

The engine names no indicator: everything indicator-specific is in the catalogue files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import duckdb

from pipelines import catalogue, changes, contract, periods, warehouse
from pipelines.catalogue import Indicator

EVENT_SOURCES: tuple[str, ...] = tuple(t.name for t in contract.SOURCES)
LOADED_STATUSES: tuple[str, ...] = ("loaded", "unchanged")
LEVELS: tuple[str, ...] = ("prison", "region", "operator", "function", "england")
ENGLAND_CODE, ENGLAND_NAME = "ENG", "England"
# Months after M whose extracts must all be in before month M is final (besides M itself).
LOOK_FORWARD_MONTHS = 2

OPERATOR_NAMES = {"public": "Public sector", "contracted": "Contracted", "pfi": "PFI"}
FUNCTION_NAMES = {
    "reception": "Reception",
    "training": "Training",
    "open": "Open",
    "yoi": "Young offender institution",
    "female": "Female",
    "high_security": "High security",
}

VALUE_COLUMNS: tuple[str, ...] = (
    "indicator_id",
    "priority",
    "period_type",
    "period_start",
    "period_end",
    "level",
    "area_code",
    "area_name",
    "numerator",
    "denominator",
    "value",
    "lower_ci_95",
    "upper_ci_95",
    "lower_ci_99_8",
    "upper_ci_99_8",
    "comparison",
    "provisional",
)

StatisticsFill = Callable[[Any], Any]


# ---------------------------------------------------------------------------------------
# Provisional months


def loaded_source_months(conn: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(source, month) of every event extract received: a file with status loaded or unchanged."""
    placeholders = ", ".join("?" for _ in LOADED_STATUSES)
    rows = conn.execute(
        f"SELECT DISTINCT source, month FROM quality.file_loads WHERE status IN ({placeholders})",
        list(LOADED_STATUSES),
    ).fetchall()
    return {(s, m) for s, m in rows}


def _month_is_provisional(month: str, loaded: set[tuple[str, str]]) -> bool:
    needed = [periods.shift_month(month, k) for k in range(LOOK_FORWARD_MONTHS + 1)]
    return any((source, m) not in loaded for source in EVENT_SOURCES for m in needed)


def is_provisional(conn: duckdb.DuckDBPyConnection, month: str) -> bool:
    """Month M stays provisional until all five event extracts are in for M, M+1 and M+2.

    Indicator month M reads windows running into M+1 and M+2, so its figures can still
    change until those months arrive. (M itself is required too: a month missing one of
    its own extracts is not final either.)
    """
    return _month_is_provisional(month, loaded_source_months(conn))


# ---------------------------------------------------------------------------------------
# Member rows and prison-months


def computed_indicators(indicators: Iterable[Indicator] | None = None) -> list[Indicator]:
    """Indicators computed from member rows (every one except the derived ones)."""
    return [i for i in (indicators or catalogue.load_catalogue()) if i.derived is None]


def member_insert_sql(indicator: Indicator) -> str:
    """INSERT of one indicator's member rows for the month in $month_start."""
    columns = catalogue.MEMBER_COLUMNS + ((catalogue.COMPONENT_COLUMN,) if indicator.components else ())
    selected = ", ".join(f"m.{c}" for c in columns)
    return (
        f"INSERT INTO indicators.members (indicator_id, month, {', '.join(columns)})\n"
        f"SELECT '{indicator.code}', CAST($month_start AS DATE), {selected}\n"
        f"FROM (\n{indicator.sql}\n) AS m"
    )


def member_query_parameters(indicator: Indicator, month: str, extra: Iterable[str] = ()) -> dict[str, Any]:
    """The named parameters an indicator's SQL uses, for anchor month `month`."""
    values = periods.query_parameters(month)
    return {k: values[k] for k in {*indicator.parameters, *extra}}


def compute_month(
    conn: duckdb.DuckDBPyConnection, month: str, indicators: Iterable[Indicator] | None = None
) -> dict[str, Any]:
    """Replace anchor month M's member rows and prison-months, for every computed indicator
    (or the ones given).

    Reads the conformed tables for source months M-1 to M+2 only. Returns counts for
    logging: member rows per indicator, prison-month rows and the provisional flag.
    """
    month_date = periods.parse_month(month)
    computed = computed_indicators(indicators)
    codes = [i.code for i in computed]
    for table in ("indicators.members", "indicators.prison_month"):
        conn.execute(f"DELETE FROM {table} WHERE month = ? AND list_contains(?, indicator_id)", [month_date, codes])
    with warehouse.insertion_order_not_kept(conn):
        for indicator in computed:
            conn.execute(
                member_insert_sql(indicator), member_query_parameters(indicator, month, extra=("month_start",))
            )
    provisional = is_provisional(conn, month)
    changes.record(conn, changes.INDICATORS, [month])
    conn.execute(
        """
        INSERT INTO indicators.prison_month
        SELECT indicator_id, month, prison_code, sum(numerator), sum(denominator), ?
        FROM indicators.members
        WHERE month = ? AND list_contains(?, indicator_id)
        GROUP BY indicator_id, month, prison_code
        """,
        [provisional, month_date, codes],
    )
    by_indicator = dict(
        conn.execute(
            "SELECT indicator_id, count(*) FROM indicators.members WHERE month = ? GROUP BY 1 ORDER BY 1",
            [month_date],
        ).fetchall()
    )
    (prison_months,) = conn.execute(
        "SELECT count(*) FROM indicators.prison_month WHERE month = ?", [month_date]
    ).fetchall()[0]
    return {
        "month": month,
        "provisional": provisional,
        "members": sum(by_indicator.values()),
        "members_by_indicator": by_indicator,
        "prison_month_rows": prison_months,
    }


# ---------------------------------------------------------------------------------------
# Indicator values


def reported_months(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Months with a reception_screening extract received: the months that are reported."""
    return sorted(m for s, m in loaded_source_months(conn) if s == "reception_screening")


def period_table(months: list[str], loaded: set[tuple[str, str]]) -> tuple[list[tuple], list[tuple]]:
    """(period_type, start, end, month) for each reported month and the periods holding it,
    and (period_type, start, end, provisional) per period.

    A period is provisional while any of its months is not reported yet or is provisional.
    """
    month_rows = periods.period_months(months)
    reported = set(months)
    flags = {}
    for period_type, start, end, _ in month_rows:
        if (period_type, start) not in flags:
            provisional = any(
                m not in reported or _month_is_provisional(m, loaded)
                for m in periods.months_in_period(period_type, start)
            )
            flags[(period_type, start)] = (period_type, start, end, provisional)
    return [(t, s, e, periods.parse_month(m)) for t, s, e, m in month_rows], list(flags.values())


Period = tuple[str, Any]  # (period_type, period_start as a date)


def periods_holding(months: Iterable[str]) -> set[Period]:
    """Every period (the month itself, its financial quarter and year) holding one of `months`."""
    return {(t, s) for t, s, _, _ in periods.period_months(list(months))}


def _create_working_tables(conn: duckdb.DuckDBPyConnection, indicators: list[Indicator],
                           only: set[Period] | None = None) -> None:
    loaded = loaded_source_months(conn)
    month_rows, period_flags = period_table(reported_months(conn), loaded)
    if only is not None:
        month_rows = [r for r in month_rows if (r[0], r[1]) in only]
        period_flags = [f for f in period_flags if (f[0], f[1]) in only]
    conn.execute(
        """CREATE OR REPLACE TEMP TABLE _iv_catalogue (
             indicator_id VARCHAR, priority INTEGER, multiplier DOUBLE, denominator_kind VARCHAR,
             aggregation VARCHAR, components VARCHAR[], n_components INTEGER, derived BOOLEAN)"""
    )
    conn.executemany(
        "INSERT INTO _iv_catalogue VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (i.code, i.priority, i.multiplier, i.denominator_kind, i.aggregation, list(i.components),
             len(i.components), i.derived is not None)
            for i in indicators
        ],
    )
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _iv_periods (period_type VARCHAR, period_start DATE, period_end DATE, month DATE)"
    )
    conn.execute(
        """CREATE OR REPLACE TEMP TABLE _iv_period_flags (
             period_type VARCHAR, period_start DATE, period_end DATE, provisional BOOLEAN)"""
    )
    if month_rows:
        conn.executemany("INSERT INTO _iv_periods VALUES (?, ?, ?, ?)", month_rows)
        conn.executemany("INSERT INTO _iv_period_flags VALUES (?, ?, ?, ?)", period_flags)
    conn.execute("CREATE OR REPLACE TEMP TABLE _iv_names (level VARCHAR, code VARCHAR, name VARCHAR)")
    conn.executemany(
        "INSERT INTO _iv_names VALUES (?, ?, ?)",
        [("operator", k, v) for k, v in OPERATOR_NAMES.items()]
        + [("function", k, v) for k, v in FUNCTION_NAMES.items()],
    )
    # Every area (prison, region, operator, function) and the prisons in it; England is added later.
    conn.execute(
        """
        CREATE OR REPLACE TEMP TABLE _iv_areas AS
        WITH memberships AS (
          SELECT 'prison' AS level, prison_code AS area_code, prison_name AS area_name, prison_code
          FROM conformed.prisons
          UNION ALL SELECT 'region', region, region, prison_code FROM conformed.prisons
          UNION ALL SELECT 'operator', operator, operator, prison_code FROM conformed.prisons
          UNION ALL SELECT 'function', "function", "function", prison_code FROM conformed.prisons
        )
        SELECT m.level, m.area_code, coalesce(n.name, m.area_name) AS area_name, m.prison_code
        FROM memberships AS m
        LEFT JOIN _iv_names AS n ON n.level = m.level AND n.code = m.area_code
        """
    )


# Prison-level numerator and denominator of every computed indicator per period.
# A prison-month "enters" the period's rate unless the indicator is population-based and
# the prison-month has no population (denominator 0: no population member row).
_PRISON_PERIODS_SQL = """
CREATE OR REPLACE TEMP TABLE _iv_prison AS
WITH prison_months AS (
  SELECT
    pm.indicator_id, p.period_type, p.period_start, pm.month, pm.prison_code,
    pm.numerator, pm.denominator,
    (c.denominator_kind = 'units' OR pm.denominator > 0) AS enters
  FROM indicators.prison_month AS pm
  JOIN _iv_catalogue AS c ON c.indicator_id = pm.indicator_id AND NOT c.derived
  JOIN _iv_periods AS p ON p.month = pm.month
),
summed AS (
  SELECT
    indicator_id, period_type, period_start, prison_code,
    bool_or(enters) AS has_rate,
    sum(numerator) FILTER (WHERE enters) AS numerator_rated,
    sum(numerator) AS numerator_all,
    sum(denominator) FILTER (WHERE enters) AS denominator_sum,
    avg(denominator) FILTER (WHERE enters) AS denominator_mean
  FROM prison_months
  GROUP BY indicator_id, period_type, period_start, prison_code
),
person_months AS (  -- distinct-persons member rows, flagged when their prison-month has a population
  SELECT m.indicator_id, m.month, m.prison_code, m.person_key, m.component, c.n_components,
         pm.denominator > 0 AS rated
  FROM indicators.members AS m
  JOIN _iv_catalogue AS c ON c.indicator_id = m.indicator_id
  JOIN indicators.prison_month AS pm
    ON pm.indicator_id = m.indicator_id AND pm.month = m.month AND pm.prison_code = m.prison_code
  WHERE m.unit_type = 'person' AND c.aggregation = 'distinct_persons' AND list_contains(c.components, m.component)
    AND m.month IN (SELECT month FROM _iv_periods)
),
person_periods AS (  -- does the person cover every component at the prison in the period?
  SELECT
    pm.indicator_id, p.period_type, p.period_start, pm.prison_code, pm.person_key,
    coalesce(len(list_distinct(list(pm.component) FILTER (WHERE pm.rated))) = any_value(pm.n_components), false)
      AS counted_rated,
    len(list_distinct(list(pm.component))) = any_value(pm.n_components) AS counted_all
  FROM person_months AS pm
  JOIN _iv_periods AS p ON p.month = pm.month
  GROUP BY pm.indicator_id, p.period_type, p.period_start, pm.prison_code, pm.person_key
),
persons AS (
  SELECT
    indicator_id, period_type, period_start, prison_code,
    count(*) FILTER (WHERE counted_rated) AS numerator_rated,
    count(*) FILTER (WHERE counted_all) AS numerator_all
  FROM person_periods
  GROUP BY indicator_id, period_type, period_start, prison_code
)
SELECT
  s.indicator_id, s.period_type, s.period_start, s.prison_code,
  CASE
    WHEN c.aggregation = 'distinct_persons' AND s.has_rate THEN coalesce(d.numerator_rated, 0)
    WHEN c.aggregation = 'distinct_persons' THEN coalesce(d.numerator_all, 0)
    WHEN s.has_rate THEN s.numerator_rated
    ELSE s.numerator_all
  END AS numerator,
  CASE
    WHEN NOT s.has_rate THEN NULL
    WHEN c.denominator_kind = 'mean_population' THEN s.denominator_mean
    ELSE s.denominator_sum
  END AS denominator
FROM summed AS s
JOIN _iv_catalogue AS c ON c.indicator_id = s.indicator_id
LEFT JOIN persons AS d
  ON d.indicator_id = s.indicator_id AND d.period_type = s.period_type
 AND d.period_start = s.period_start AND d.prison_code = s.prison_code
"""

# Every computed indicator x period x area, from the prison-level figures. Above prison
# level only prisons with a denominator (a population, for rates) are added up; England
# also takes rows without a valid prison (P02b's quarantined rows).
_VALUES_SQL = """
INSERT INTO indicators.indicator_values
WITH area_list AS (
  SELECT DISTINCT level, area_code, area_name FROM _iv_areas
  UNION ALL
  SELECT 'england', $england_code, $england_name
),
grid AS (
  SELECT
    c.indicator_id, c.priority, c.multiplier, c.denominator_kind,
    f.period_type, f.period_start, f.period_end, f.provisional,
    a.level, a.area_code, a.area_name
  FROM _iv_catalogue AS c
  CROSS JOIN _iv_period_flags AS f
  CROSS JOIN area_list AS a
  WHERE NOT c.derived
),
by_area AS (
  SELECT
    v.indicator_id, v.period_type, v.period_start, a.level, a.area_code,
    CASE WHEN a.level = 'prison' THEN sum(v.numerator)
         ELSE sum(v.numerator) FILTER (WHERE v.denominator IS NOT NULL) END AS numerator,
    sum(v.denominator) AS denominator
  FROM _iv_prison AS v
  JOIN _iv_areas AS a ON a.prison_code = v.prison_code
  GROUP BY v.indicator_id, v.period_type, v.period_start, a.level, a.area_code
  UNION ALL
  SELECT
    indicator_id, period_type, period_start, 'england', $england_code,
    sum(numerator) FILTER (WHERE denominator IS NOT NULL),
    sum(denominator)
  FROM _iv_prison
  GROUP BY indicator_id, period_type, period_start
),
figures AS (
  SELECT
    g.*,
    coalesce(b.numerator, 0) AS numerator,
    coalesce(b.denominator, CASE WHEN g.denominator_kind = 'units' THEN 0 END) AS denominator
  FROM grid AS g
  LEFT JOIN by_area AS b
    ON b.indicator_id = g.indicator_id AND b.period_type = g.period_type
   AND b.period_start = g.period_start AND b.level = g.level AND b.area_code = g.area_code
)
SELECT
  indicator_id, priority, period_type, period_start, period_end, level, area_code, area_name,
  numerator, denominator,
  CASE WHEN denominator > 0 THEN numerator / denominator * multiplier END AS value,
  NULL, NULL, NULL, NULL, NULL,
  provisional
FROM figures
"""

# A derived gap (P04a): the base indicator summed over the prisons in each of two groups.
_GAP_SQL = """
INSERT INTO indicators.gap_components
WITH groups AS (
  SELECT v.period_type, v.period_start, p.{attribute} AS grp,
         sum(v.numerator) AS numerator, sum(v.denominator) AS denominator
  FROM _iv_prison AS v
  JOIN conformed.prisons AS p ON p.prison_code = v.prison_code
  WHERE v.indicator_id = $base AND v.denominator IS NOT NULL AND p.{attribute} IN ($group_a, $group_b)
  GROUP BY v.period_type, v.period_start, p.{attribute}
)
SELECT
  $code, f.period_type, f.period_start, f.period_end, $base, $attribute,
  $group_a, coalesce(a.numerator, 0), coalesce(a.denominator, 0),
  $group_b, coalesce(b.numerator, 0), coalesce(b.denominator, 0)
FROM _iv_period_flags AS f
LEFT JOIN groups AS a ON a.period_type = f.period_type AND a.period_start = f.period_start AND a.grp = $group_a
LEFT JOIN groups AS b ON b.period_type = f.period_type AND b.period_start = f.period_start AND b.grp = $group_b
"""

_GAP_VALUES_SQL = """
INSERT INTO indicators.indicator_values
SELECT
  g.indicator_id, c.priority, g.period_type, g.period_start, g.period_end,
  'england', $england_code, $england_name,
  NULL, NULL,
  CASE WHEN g.denominator_a > 0 AND g.denominator_b > 0
       THEN (g.numerator_a / g.denominator_a - g.numerator_b / g.denominator_b) * c.multiplier END,
  NULL, NULL, NULL, NULL, NULL,
  f.provisional
FROM indicators.gap_components AS g
JOIN _iv_catalogue AS c ON c.indicator_id = g.indicator_id
JOIN _iv_period_flags AS f ON f.period_type = g.period_type AND f.period_start = g.period_start
"""


def build_indicator_values(
    conn: duckdb.DuckDBPyConnection,
    fill_statistics: StatisticsFill | None = None,
    indicators: Iterable[Indicator] | None = None,
    only: set[Period] | None = None,
) -> int:
    """Rebuild `indicators.indicator_values` (and `indicators.gap_components`) from the
    prison-months and member rows; returns the number of value rows rebuilt.

    `only` limits the rebuild to those periods (a monthly refresh: the periods holding the
    months recomputed, see `periods_holding`); every other period's rows are left as they are,
    which is exact because no figure of one period reads another period's rows.

    Rows: every indicator x period (each reported month, its financial quarter and year)
    x area (every prison, region, operator and function of conformed.prisons, and
    England); P04a-like derived gaps at England only. Zero numerators give value 0, zero
    denominators no value. The CI and comparison columns are left null unless
    `fill_statistics` is given: it receives the whole table as a pandas DataFrame and
    returns it (pandas or polars) with those columns filled, and its result replaces the
    table. `indicators.gap_components` holds each gap's two groups per period, for the
    Newcombe interval.
    """
    indicators = list(indicators or catalogue.load_catalogue())
    catalogue.write_catalogue(conn)
    _create_working_tables(conn, indicators, only)
    england = {"england_code": ENGLAND_CODE, "england_name": ENGLAND_NAME}
    conn.execute(_PRISON_PERIODS_SQL)
    scope = period_scope(conn, only)
    conn.execute(f"DELETE FROM indicators.indicator_values WHERE {scope}")
    conn.execute(f"DELETE FROM indicators.gap_components WHERE {scope}")
    conn.execute(_VALUES_SQL, england)
    for indicator in indicators:
        if gap := indicator.derived:
            conn.execute(
                _GAP_SQL.format(attribute=gap.attribute),
                {
                    "code": indicator.code,
                    "base": gap.base,
                    "attribute": gap.attribute,
                    "group_a": gap.group_a,
                    "group_b": gap.group_b,
                },
            )
    conn.execute(_GAP_VALUES_SQL, england)
    for table in ("_iv_prison", "_iv_areas", "_iv_names", "_iv_periods", "_iv_period_flags", "_iv_catalogue"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    if fill_statistics is not None:
        _replace_values(conn, fill_statistics(indicator_values_frame(conn, only)), only)
    (count,) = conn.execute(f"SELECT count(*) FROM indicators.indicator_values WHERE {scope}").fetchall()[0]
    conn.execute("DROP TABLE IF EXISTS _iv_scope")
    return count


def period_scope(conn: duckdb.DuckDBPyConnection, only: set[Period] | None) -> str:
    """A condition on period_type and period_start choosing `only` (everything when None)."""
    if only is None:
        return "true"
    conn.execute("CREATE OR REPLACE TEMP TABLE _iv_scope (period_type VARCHAR, period_start DATE)")
    if only:
        conn.executemany("INSERT INTO _iv_scope VALUES (?, ?)", sorted(only))
    return "(period_type, period_start) IN (SELECT (period_type, period_start) FROM _iv_scope)"


def indicator_values_frame(conn: duckdb.DuckDBPyConnection, only: set[Period] | None = None):
    """`indicators.indicator_values` (of the periods `only`, when given) as a pandas DataFrame,
    in a stable order."""
    scope = period_scope(conn, only)
    return conn.execute(
        f"SELECT {', '.join(VALUE_COLUMNS)} FROM indicators.indicator_values WHERE {scope} "
        "ORDER BY indicator_id, period_type, period_start, level, area_code"
    ).df()


def monthly_series_frame(conn: duckdb.DuckDBPyConnection):
    """England's and every prison's monthly rows of `indicators.indicator_values` (what SPC reads)."""
    return conn.execute(
        f"SELECT {', '.join(VALUE_COLUMNS)} FROM indicators.indicator_values "
        "WHERE period_type = 'month' AND level IN ('england', 'prison') "
        "ORDER BY indicator_id, level, area_code, period_start"
    ).df()


def _replace_values(conn: duckdb.DuckDBPyConnection, frame: Any, only: set[Period] | None = None) -> None:
    conn.register("_iv_filled", frame)
    try:
        columns = ", ".join(VALUE_COLUMNS)
        conn.execute(f"DELETE FROM indicators.indicator_values WHERE {period_scope(conn, only)}")
        conn.execute(f"INSERT INTO indicators.indicator_values ({columns}) SELECT {columns} FROM _iv_filled")
    finally:
        conn.unregister("_iv_filled")


def gap_components(conn: duckdb.DuckDBPyConnection, only: set[Period] | None = None):
    """Each derived gap's two groups per period (numerator and denominator of each), as
    a pandas DataFrame: what the Newcombe interval of P04a needs."""
    return conn.execute(
        f"SELECT * FROM indicators.gap_components WHERE {period_scope(conn, only)} "
        "ORDER BY indicator_id, period_type, period_start"
    ).df()

