"""Behind the figure: counts by reason for each indicator, prison and month, disclosure-controlled.

Every prison-month figure is the sum of its rows in `indicators.members` (one row per unit
counted, with a short `reason` label). This module turns those rows into counts by reason
("61 tested within 72h; 12 not tested within 72h; 3 not eligible") and decides which of
those counts the public report may show.

* :func:`reason_counts` (analysts' figures, unprotected): for every indicator x month x
  prison x reason, the units (distinct `unit_id`), the sum of `numerator` and the sum of
  `denominator`. The sums over a prison-month's reasons equal the members' numerator and
  denominator (and so `indicators.prison_month`). Two kinds of row are not "reasons":

  - ``unit_type = 'population'`` rows (P05a, P08a, P08b, P11d) carry the population
    denominator of a rate; they are kept as one row (its ``denominator`` is the
    population) and shown as a figure line, never as a count of units;
  - ``unit_type = 'rows'`` members (P02b: one per source extract, numerator = rows loaded,
    denominator = rows read) are grouped by ``unit_id`` (the source) rather than by their
    reason, whose label just spells the two numbers out ("105 of 106 rows loaded").

* :func:`publishable_reason_counts` (public): the same rows after disclosure control.

Disclosure control of a breakdown
---------------------------------
The thresholds are those of :class:`pipelines.disclosure.DisclosurePolicy`
(``min_numerator`` to ``max_numerator``, 1 to 7), so the policy is configured once.

1. **No figure, no breakdown.** A prison-month is explained only when its figure is
   published and not suppressed in ``published.indicator_values`` (level ``prison``,
   ``period_type = 'month'``). A suppressed figure could otherwise be rebuilt by adding up
   its reasons. Those prison-months are dropped from the result, so not even the names of
   their reasons reach the report.
2. **Primary suppression.** Every count shown (units of a reason; for ``rows``, the rows
   loaded and the rows read of a source; the population line) that lies in 1 to 7 is
   suppressed (``[c]``). Zero is shown (a reason with no units is simply not listed).
3. **Secondary suppression.** The published figure gives two totals: the numerator is the
   sum of the counts of the reasons that are in the numerator, the denominator the sum of
   those in the denominator (which reasons are in which is public: it is what the labels
   say; it is read from the data as "the reason contributes to the numerator / denominator
   somewhere"). Together with the counts shown, those totals form a small linear system.
   A suppressed count is *recoverable* when the system determines it exactly (e.g. the
   only suppressed reason of the denominator: denominator minus the others). While any
   suppressed count is recoverable, one more count is suppressed: the smallest positive
   count (a zero only when no positive one is left) in a relation holding a recoverable
   one, preferring one that makes every suppressed count safe. If no count is left to
   choose, the whole breakdown of that prison-month is suppressed (``suppression =
   'breakdown'``; a safety net: a count whose relations hold only counts the figure fixes
   is itself fixed by the figure). Recoverability is checked
   exactly (the unit vector of the count lies in the row space of the system), so a count
   protected only by relations it is not in is not suppressed needlessly, e.g. a lone
   "not eligible" count outside both numerator and denominator stays the only ``[c]``.
   A reason that is only partly in the numerator (or denominator) makes that relation
   hold a hidden part, so the relation tells nothing exact and is not used. The relations
   hold every reason the indicator has anywhere, so a reason with no units in a
   prison-month (which is simply not listed, i.e. shown as zero) is a cell too, and is
   suppressed (listed as ``[c]``) when it is the only complement left: with 160 screened
   within 24h out of 166 and no one "not screened", "[c] screened after 24h" alone would be
   166 - 160; "[c] not screened; [c] screened after 24h" is not.
4. **What the figure alone reveals.** Some counts are fixed by the published figure
   itself, whatever the breakdown shows: when an indicator has just two reasons in the
   denominator, one of them in the numerator (P12b: tested / not tested within 72h), the
   other is ``denominator - numerator``. Such a count in 1 to 7 is
   still shown as ``[c]`` but cannot be protected here (the published figure's policy
   suppresses numerators only); it is flagged ``recoverable_from_figure`` and never used
   as a complement. Nothing beyond exact recovery is attempted (bounds, e.g. "at most 7",
   are not protected), as in :mod:`pipelines.disclosure`.

No count is combined across prisons or months in the report, so each prison-month is
protected on its own.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from pipelines import changes, warehouse
from pipelines.disclosure import DisclosurePolicy

__all__ = [
    "KEY_COLUMNS",
    "breakdowns",
    "cached_breakdowns",
    "update_breakdowns",
    "determined",
    "members_available",
    "publishable_reason_counts",
    "published_prison_months",
    "reason_counts",
]

KEY_COLUMNS = ("indicator_id", "month", "prison_code")
COUNT_COLUMNS = ("indicator_id", "month", "prison_code", "unit_type", "reason", "units", "numerator", "denominator",
                 "member_rows")
PUBLISHABLE_COLUMNS = (*COUNT_COLUMNS[:5], "role", "units", "numerator", "denominator", "suppressed", "suppression",
                       "recoverable_from_figure")
ROLE_ORDER = {"numerator": 0, "denominator": 1, "excluded": 2, "rows": 3, "population": 4}

REASON_COUNTS_SQL = """
SELECT indicator_id,
       CAST(month AS DATE) AS month,
       prison_code,
       unit_type,
       CASE WHEN unit_type = 'rows' THEN coalesce(unit_id, reason, 'rows')
            ELSE coalesce(reason, 'reason not recorded') END AS reason,
       CASE WHEN count(unit_id) = count(*) THEN count(DISTINCT unit_id) ELSE count(*) END AS units,
       coalesce(sum(numerator), 0) AS numerator,
       coalesce(sum(denominator), 0) AS denominator,
       count(*) AS member_rows
FROM indicators.members
WHERE {scope}
GROUP BY ALL
ORDER BY indicator_id, month, prison_code NULLS LAST, unit_type, reason
"""


def members_available(conn: duckdb.DuckDBPyConnection) -> bool:
    """True when the warehouse has an `indicators.members` table (older ones do not)."""
    return warehouse.table_exists(conn, "indicators.members")


def reason_counts(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Counts by reason for every indicator x month x prison (the analysts' figures, unprotected).

    Columns: indicator_id, month (datetime.date), prison_code, unit_type, reason, units (distinct
    units; one for a population row), numerator and denominator (the sums of the members'
    columns), member_rows. An empty frame with these columns when the table is missing.
    """
    if not members_available(conn):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COUNT_COLUMNS})
    return _typed_counts(conn.execute(REASON_COUNTS_SQL.format(scope="true")).df())


def _typed_counts(frame: pd.DataFrame) -> pd.DataFrame:
    frame["month"] = pd.to_datetime(frame["month"]).dt.date
    for c in ("units", "member_rows"):
        frame[c] = frame[c].astype("int64")
    frame["numerator"] = frame["numerator"].astype("int64")
    frame["denominator"] = frame["denominator"].astype(float)
    return frame[list(COUNT_COLUMNS)]


def published_prison_months(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The published monthly prison figures: indicator_id, month, prison_code, suppressed, numerator,
    denominator, value."""
    frame = conn.execute("""
        SELECT indicator_id, CAST(period_start AS DATE) AS month, area_code AS prison_code,
               coalesce(suppressed, false) AS suppressed,
               CASE WHEN suppressed THEN NULL ELSE numerator END AS numerator,
               CASE WHEN suppressed THEN NULL ELSE denominator END AS denominator,
               CASE WHEN suppressed THEN NULL ELSE value END AS value
        FROM published.indicator_values
        WHERE level = 'prison' AND period_type = 'month'
        ORDER BY 1, 2, 3""").df()
    frame["month"] = pd.to_datetime(frame["month"]).dt.date
    frame["suppressed"] = frame["suppressed"].astype(bool)
    return frame


# ---------------------------------------------------------------------------------------------
# The linear system of one prison-month


def determined(relations: list[list[int]], suppressed: set[int] | list[int]) -> set[int]:
    """Suppressed cells whose value the relations (sum of cells = a published total) pin down.

    ``relations`` are lists of cell numbers whose sum is known; unsuppressed cells are known.
    A suppressed cell is determined iff its unit vector lies in the row space of the relations
    restricted to the suppressed cells.
    """
    return set(_determined(tuple(tuple(rel) for rel in relations), frozenset(suppressed)))


@functools.lru_cache(maxsize=65536)
def _determined(relations: tuple[tuple[int, ...], ...], suppressed: frozenset[int]) -> frozenset[int]:
    """`determined`, remembered: the prison-months of a backfill, tens of thousands, share a few
    hundred systems (cells numbered in the same order, the same relations), and each new one
    costs a singular value decomposition."""
    unknowns = sorted(suppressed)
    if not unknowns or not relations:
        return frozenset()
    col = {cell: j for j, cell in enumerate(unknowns)}
    rows = []
    for rel in relations:
        row = np.zeros(len(unknowns))
        for cell in rel:
            if cell in col:
                row[col[cell]] = 1.0
        if row.any():
            rows.append(row)
    if not rows:
        return frozenset()
    matrix = np.vstack(rows)
    u, s, _ = np.linalg.svd(matrix.T, full_matrices=False)
    rank = int(np.sum(s > 1e-9 * max(1.0, s[0])))
    projected = np.sum(u[:, :rank] ** 2, axis=1)
    return frozenset(cell for cell, p in zip(unknowns, projected, strict=True) if p > 1 - 1e-9)


@dataclass
class _Group:
    """One prison-month's cells (reasons or sources) and the relations over them."""

    values: list[float]  # the size of each cell (units; rows read for a source)
    small: list[bool]  # primary: a count shown for the cell is in the suppression range
    relations: list[list[int]] = field(default_factory=list)


def _protect(group: _Group) -> tuple[set[int], set[int], set[int], bool]:
    """(primary, secondary, unavoidable, whole breakdown suppressed) for one prison-month."""
    cells = range(len(group.values))
    primary = {i for i in cells if group.small[i]}
    suppressed = set(primary)
    if not suppressed:
        return primary, set(), set(), False
    unavoidable = determined(group.relations, set(cells))  # fixed by the published figure alone
    while True:
        exposed = determined(group.relations, suppressed) - unavoidable
        if not exposed:
            return primary, suppressed - primary, unavoidable, False
        related = {c for rel in group.relations if exposed & set(rel) for c in rel}
        candidates = [i for i in related if i not in suppressed and i not in unavoidable]
        positive = [i for i in candidates if group.values[i] > 0]
        # a zero (a reason with no units, otherwise simply not listed) only when no positive count is left
        candidates = sorted(positive or candidates, key=lambda i: (group.values[i], i))
        if not candidates:
            return primary, suppressed - primary, unavoidable, True
        choice = None
        for i in candidates:  # smallest that makes every suppressed count safe
            if not (determined(group.relations, suppressed | {i}) - unavoidable):
                choice = i
                break
        if choice is None:  # otherwise the smallest that leaves fewer exposed
            choice = min(candidates, key=lambda i: (
                len(determined(group.relations, suppressed | {i}) - unavoidable), group.values[i], i))
        suppressed.add(choice)


# ---------------------------------------------------------------------------------------------
# Disclosure control of the counts


def reason_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per indicator, unit type and reason over every row of ``frame``: the sums of
    numerator and denominator, and ``first_seen``, the first month and prison (as
    'YYYY-MM-DD' + prison code) where the reason has a prison (null when it never has one).
    :data:`REASON_SUMMARY_SQL` gives the same from the cache without reading every month."""
    keys = ["indicator_id", "unit_type", "reason"]
    sums = frame.groupby(keys, dropna=False, sort=False)[["numerator", "denominator"]].sum().reset_index()
    seen = frame[frame["prison_code"].notna()]
    first = (pd.to_datetime(seen["month"]).dt.strftime("%Y-%m-%d") + seen["prison_code"]).groupby(
        [seen[k] for k in keys], dropna=False).min().rename("first_seen").reset_index()
    return sums.merge(first, on=keys, how="left")


REASON_SUMMARY_SQL = """
SELECT indicator_id, unit_type, reason, sum(numerator) AS numerator, sum(denominator) AS denominator,
       min(strftime(month, '%Y-%m-%d') || prison_code) AS first_seen
FROM pipeline.reason_counts GROUP BY ALL"""


def _roles(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` (:func:`reason_summary`) with each reason's ``role`` ('numerator', 'denominator'
    (only), 'excluded', 'rows' or 'population') and whether it is in the numerator / denominator
    relation, read structurally from its sums over all prisons and months (what its label says)."""
    in_num, in_den = summary["numerator"] > 0, summary["denominator"] > 0
    role = np.where(in_num, "numerator", np.where(in_den, "denominator", "excluded"))
    rows, population = summary["unit_type"] == "rows", summary["unit_type"] == "population"
    return summary.assign(  # a source adds to both sums, zero or not; a population to neither
        role=np.where(population, "population", np.where(rows, "rows", role)),
        _in_num=(in_num | rows) & ~population, _in_den=(in_den | rows) & ~population)


def _in_range(value: float, policy: DisclosurePolicy) -> bool:
    return bool(policy.enabled and value is not None and policy.min_numerator <= value <= policy.max_numerator)


def _group_system(rows: list[dict], policy: DisclosurePolicy) -> tuple[_Group, list[int]]:
    """The cells (every row but the population line) and relations of one prison-month.

    The numerator relation holds the cells of the reasons in the numerator, the denominator
    relation those in the denominator; a relation is dropped when one of its reasons is only
    partly in it (its sum then holds a part that is shown nowhere)."""
    cells = [i for i, r in enumerate(rows) if r["role"] != "population"]
    values, small = [], []
    in_num: list[int] = []
    in_den: list[int] = []
    num_exact = den_exact = True
    for k, i in enumerate(cells):
        r = rows[i]
        if r["role"] == "rows":  # a source: rows loaded of rows read, both shown
            values.append(float(r["denominator"]))
            small.append(_in_range(r["numerator"], policy) or _in_range(r["denominator"], policy))
        else:
            units = float(r["units"])
            values.append(units)
            small.append(_in_range(units, policy))
            num_exact &= (not r["_in_num"]) or float(r["numerator"]) == units
            den_exact &= (not r["_in_den"]) or float(r["denominator"]) == units
        if r["_in_num"]:
            in_num.append(k)
        if r["_in_den"]:
            in_den.append(k)
    relations = []
    if in_num and num_exact:
        relations.append(in_num)
    if in_den and den_exact:
        relations.append(in_den)
    return _Group(values, small, relations), cells


def _publish_group(rows: list[dict], policy: DisclosurePolicy) -> list[dict]:
    """One prison-month's rows with the counts that may be shown (see the module docstring)."""
    group, cells = _group_system(rows, policy)
    primary, secondary, unavoidable, whole = _protect(group)
    out = []
    cell_of = {i: k for k, i in enumerate(cells)}
    for i, r in enumerate(rows):
        role = r["role"]
        row = {c: r[c] for c in COUNT_COLUMNS[:5]}
        row["role"] = role
        units, numerator, denominator = r["units"], r["numerator"], r["denominator"]
        if role == "population":
            units, numerator = None, None
            suppression = "breakdown" if whole else ("primary" if _in_range(denominator, policy) else None)
            recoverable = False
        else:
            if role == "rows":  # a source: its rows loaded and read are the counts (one unit each)
                units = None
            else:  # a counted unit: its numerator and denominator follow from its role
                numerator = denominator = None
            k = cell_of[i]
            suppression = ("breakdown" if whole else "primary" if k in primary else
                           "secondary" if k in secondary else None)
            recoverable = suppression is not None and k in unavoidable
        if suppression is not None:
            units = numerator = denominator = None
        row.update(units=units, numerator=numerator, denominator=denominator, suppressed=suppression is not None,
                   suppression=suppression, recoverable_from_figure=recoverable)
        out.append(row)
    return out


def _records(frame: pd.DataFrame) -> list[dict]:
    """`frame.to_dict("records")`, the same values, from whole columns: pandas boxes each value of
    an Arrow-backed column one at a time, most of the time of a backfill's counts by reason."""
    names = list(frame.columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*(frame[c].tolist() for c in names), strict=True)]


def publishable_reason_counts(frame: pd.DataFrame, policy: DisclosurePolicy = DisclosurePolicy(), *,
                              published: pd.DataFrame | None = None, months: set | None = None,
                              summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """Disclosure-controlled counts by reason (see the module docstring for the rule).

    ``frame`` is :func:`reason_counts`' result. ``published`` holds the published monthly prison
    figures (:func:`published_prison_months`: indicator_id, month, prison_code, suppressed); a
    prison-month is kept only when its figure is there and not suppressed. Without it, the
    figure is taken as published unless the members' numerator is in the suppression range
    (primary suppression only: pass ``published`` to honour complementary suppression too).

    Returns the kept rows (in display order: reasons in the numerator, then those only in the
    denominator, then the rest, each alphabetically; sources; the population line) with:

    * ``role``: numerator / denominator / excluded (a unit not in the denominator) / rows /
      population;
    * ``units``, ``numerator``, ``denominator``: nullable; null when suppressed. For counted
      units only ``units`` is kept (their numerator and denominator are implied by the role);
      a ``rows`` source keeps only numerator and denominator (rows loaded, rows read), a
      population row only its denominator;
    * ``suppressed`` (bool), ``suppression`` (None, 'primary', 'secondary' or 'breakdown'),
      ``recoverable_from_figure`` (the published figure alone fixes the count).

    With ``months`` (dates), only those months' prison-months are protected and returned; the
    roles of the reasons and the list of an indicator's reasons still come from every month:
    from ``summary`` (:func:`reason_summary` of every month) when given, so that ``frame`` need
    hold only those months, else from ``frame``. A month's result is the same as in a run over
    every month.
    """
    data = frame[frame["prison_code"].notna()].copy()
    if data.empty:
        return _empty_publishable()
    data["month"] = pd.to_datetime(data["month"]).dt.date
    keys = ["indicator_id", "unit_type", "reason"]
    roles = _roles(reason_summary(frame) if summary is None else summary)
    roles["_order"] = roles["role"].map(ROLE_ORDER)
    data = data.merge(roles[[*keys, "role", "_in_num", "_in_den", "_order"]], on=keys, how="left")
    data = data.sort_values(["indicator_id", "month", "prison_code", "_order", "reason"], kind="stable")

    if published is not None:
        pub = published.copy()
        pub["month"] = pd.to_datetime(pub["month"]).dt.date
        status = {(r.indicator_id, r.month, r.prison_code): bool(r.suppressed) for r in pub.itertuples(index=False)}
    else:
        totals = data[data["role"] != "population"].groupby(list(KEY_COLUMNS))["numerator"].sum()
        status = {key: _in_range(float(n), policy) for key, n in totals.items()}

    vocabulary: dict[str, dict[tuple, dict]] = {}  # indicator -> (unit_type, reason) -> a zero row
    reasons = roles[roles["first_seen"].notna() & (roles["role"] != "population")]
    for r in reasons.sort_values(["indicator_id", "first_seen", "_order", "reason"], kind="stable").to_dict(
            "records"):  # in the order of each reason's first row in display order
        vocabulary.setdefault(r["indicator_id"], {})[(r["unit_type"], r["reason"])] = {
            **{c: r[c] for c in (*keys, "role", "_in_num", "_in_den", "_order")},
            "units": 0, "numerator": 0, "denominator": 0.0}
    if months is not None:
        data = data[data["month"].isin(set(months))]
    groups: dict[tuple, list[dict]] = {}
    for r in _records(data):
        groups.setdefault((r["indicator_id"], r["month"], r["prison_code"]), []).append(r)
    out: list[dict] = []
    for key, rows in groups.items():
        if status.get(key, True):  # figure suppressed, or no published figure: no breakdown
            continue
        present = {(r["unit_type"], r["reason"]) for r in rows}
        zeros = [{**z, "month": key[1], "prison_code": key[2]}
                 for k, z in vocabulary.get(key[0], {}).items() if k not in present]
        if zeros:  # the indicator's other reasons, with no units here: shown as absent, or [c] as complements
            rows = sorted([*rows, *zeros], key=lambda r: (r["_order"], r["reason"]))
        out += [r for r in _publish_group(rows, policy)
                if r["suppressed"] or (r["unit_type"], r["reason"]) in present]
    if not out:
        return _empty_publishable()
    result = pd.DataFrame(out, columns=PUBLISHABLE_COLUMNS)
    result["units"] = result["units"].astype("Int64")
    for c in ("numerator", "denominator"):
        result[c] = result[c].astype("Float64")
    result["suppressed"] = result["suppressed"].astype(bool)
    result["suppression"] = pd.Series([v if isinstance(v, str) else None for v in result["suppression"]],
                                      index=result.index, dtype=object)
    result["recoverable_from_figure"] = result["recoverable_from_figure"].astype(bool)
    return result


def _empty_publishable() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in PUBLISHABLE_COLUMNS})


def breakdowns(conn: duckdb.DuckDBPyConnection, policy: DisclosurePolicy = DisclosurePolicy()) -> pd.DataFrame:
    """Publishable counts by reason straight from the warehouse (empty without `indicators.members`)."""
    frame = reason_counts(conn)
    if frame.empty:
        return publishable_reason_counts(frame, policy)
    return publishable_reason_counts(frame, policy, published=published_prison_months(conn))


# ---------------------------------------------------------------------------------------------
# The report's cache: a monthly refresh protects only the months it changed

CONSUMER = "report_breakdowns"
CACHE_DDL = """
CREATE TABLE IF NOT EXISTS pipeline.reason_counts (
  indicator_id VARCHAR, month DATE, prison_code VARCHAR, unit_type VARCHAR, reason VARCHAR,
  units BIGINT, numerator BIGINT, denominator DOUBLE, member_rows BIGINT);
CREATE TABLE IF NOT EXISTS pipeline.breakdowns (
  indicator_id VARCHAR, month DATE, prison_code VARCHAR, unit_type VARCHAR, reason VARCHAR, role VARCHAR,
  units BIGINT, numerator DOUBLE, denominator DOUBLE, suppressed BOOLEAN, suppression VARCHAR,
  recoverable_from_figure BOOLEAN);
"""
_DISPLAY_ORDER = ("indicator_id, month, prison_code, "
                  + "CASE role " + " ".join(f"WHEN '{r}' THEN {i}" for r, i in ROLE_ORDER.items()) + " END, reason")


def update_breakdowns(conn: duckdb.DuckDBPyConnection, policy: DisclosurePolicy = DisclosurePolicy()) -> str:
    """Bring `pipeline.breakdowns` (the publishable counts, as :func:`breakdowns` gives them) up to
    date: recompute only the months whose members or published figures changed since the last
    update (all of them the first time, or when a reference table changed). The caller owns the
    transaction. Returns what was done: "all", "none" or the months."""
    conn.execute(CACHE_DDL)
    pending = changes.pending(conn, CONSUMER)
    months = pending.months_or_all(changes.INDICATORS, changes.INDICATOR_VALUES)
    everything = months is None
    if everything or months:
        dates = None if everything else {pd.Timestamp(f"{m}-01").date() for m in months}
        conn.execute("CREATE OR REPLACE TEMP TABLE _bd_months (month DATE)")
        if dates:
            conn.executemany("INSERT INTO _bd_months VALUES (?)", [(d,) for d in sorted(dates)])
        scope = "true" if everything else "month IN (SELECT month FROM _bd_months)"
        conn.execute(f"DELETE FROM pipeline.reason_counts WHERE {scope}")
        counted = _insert_reason_counts(conn, scope) if members_available(conn) else []
        # Only the changed months are read; the reasons' roles come from a summary of every month.
        summary = conn.execute(REASON_SUMMARY_SQL).df()
        published = published_prison_months(conn)
        conn.execute(f"DELETE FROM pipeline.breakdowns WHERE {scope}")
        for batch in (counted[i:i + BREAKDOWN_BATCH_MONTHS] for i in range(0, len(counted), BREAKDOWN_BATCH_MONTHS)):
            _insert_breakdowns(conn, batch, policy, published, summary)
        conn.execute("DROP TABLE _bd_months")
    changes.advance(conn, CONSUMER, pending.upto)
    return "all" if everything else ", ".join(sorted(months)) or "none"


BREAKDOWN_BATCH_MONTHS = 12  # months protected together (`_insert_breakdowns`)


def _insert_reason_counts(conn: duckdb.DuckDBPyConnection, scope: str) -> list:
    """Count the members of the months in `scope` by reason, one month at a time; returns the
    months counted (those with member rows), in order.

    Over every month at once (a backfill), the distinct count of units groups tens of millions
    of rows in one hash table, which slows down more than in proportion (docs/decisions.md,
    Publication; `python -m benchmarks.breakdown` times both ways).
    """
    months = [m for (m,) in conn.execute(
        f"SELECT DISTINCT month FROM indicators.members WHERE {scope} ORDER BY 1").fetchall()]
    for month in months:
        conn.execute(f"INSERT INTO pipeline.reason_counts {REASON_COUNTS_SQL.format(scope='month = ?')}", [month])
    return months


def _insert_breakdowns(conn: duckdb.DuckDBPyConnection, months: list, policy: DisclosurePolicy,
                       published: pd.DataFrame, summary: pd.DataFrame) -> None:
    """Protect and store the counts of a batch of months.

    In batches, because protecting ten years at once held all their counts as Python objects
    beside DuckDB's cache, and took a backfill over its memory target (docs/decisions.md,
    Publication); a month's result does not depend on the other months it is protected with
    (`publishable_reason_counts`, with `summary`).
    """
    counts = _typed_counts(conn.execute(
        f"SELECT * FROM pipeline.reason_counts WHERE list_contains(?, month) ORDER BY {_COUNT_ORDER}",
        [months]).df())
    dates = set(months)
    shown = publishable_reason_counts(counts, policy, published=published[published["month"].isin(dates)],
                                      months=dates, summary=summary)
    if len(shown):
        conn.register("_bd_shown", shown)
        columns = ", ".join(PUBLISHABLE_COLUMNS)
        conn.execute(f"INSERT INTO pipeline.breakdowns ({columns}) SELECT {columns} FROM _bd_shown")
        conn.unregister("_bd_shown")


_COUNT_ORDER = "indicator_id, month, prison_code NULLS LAST, unit_type, reason"


def cached_breakdowns(conn: duckdb.DuckDBPyConnection,
                      since: dt.date | None = None) -> tuple[pd.DataFrame, set[str]] | None:
    """The cached publishable counts (of the months from `since`, a date, when given) and the
    indicators with member rows, when the cache is up to date (:func:`update_breakdowns` has
    taken every change); None otherwise."""
    present = all(warehouse.table_exists(conn, f"pipeline.{t}") for t in ("breakdowns", "reason_counts",
                                                                            "cursors", "changes"))
    if not present or not changes.pending(conn, CONSUMER).nothing:
        return None
    shown = conn.execute(f"SELECT * FROM pipeline.breakdowns WHERE month >= coalesce(?, month) "
                         f"ORDER BY {_DISPLAY_ORDER}", [since]).df()
    shown["month"] = pd.to_datetime(shown["month"]).dt.date
    codes = {c for (c,) in conn.execute("SELECT DISTINCT indicator_id FROM pipeline.reason_counts").fetchall()}
    return shown, codes
