"""Counts by reason behind each prison-month figure (`pipelines.drilldown`) and their disclosure control."""

from __future__ import annotations

import datetime as dt
import itertools

import duckdb
import pandas as pd
import pytest
from report_fixtures import POISON_CODE, make_warehouse

from pipelines import drilldown
from pipelines.disclosure import DisclosurePolicy

MONTH = dt.date(2024, 4, 1)
SMALL = set(range(1, 8))


@pytest.fixture(scope="module")
def warehouse():
    return make_warehouse()


@pytest.fixture(scope="module")
def counts(warehouse):
    return drilldown.reason_counts(warehouse)


@pytest.fixture(scope="module")
def shown(warehouse, counts):
    return drilldown.publishable_reason_counts(counts, published=drilldown.published_prison_months(warehouse))


def members_connection(rows: list[tuple]) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse holding only `indicators.members` with the given
    (indicator_id, prison_code, unit_type, unit_id, numerator, denominator, reason, component) rows."""
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA indicators")
    conn.execute("""CREATE TABLE indicators.members (
        indicator_id VARCHAR, month DATE, prison_code VARCHAR, unit_type VARCHAR, unit_id VARCHAR,
        person_key VARCHAR, numerator BIGINT, denominator DOUBLE, reason VARCHAR, anchor_datetime TIMESTAMP,
        event_datetime TIMESTAMP, window_end TIMESTAMP, source_file VARCHAR, source_line INTEGER,
        component VARCHAR)""")
    for code, prison, unit_type, unit_id, num, den, reason, component in rows:
        conn.execute("INSERT INTO indicators.members VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, NULL, NULL, NULL, "
                     "'test.csv', 1, ?)", [code, MONTH, prison, unit_type, unit_id, num, den, reason, component])
    return conn


def reception_frame(spec: dict[str, tuple[int, int, int]], code: str = "P12b", prison: str = "XAA") -> pd.DataFrame:
    """A reason_counts-like frame for one prison-month: reason -> (units, in numerator, in denominator)."""
    return pd.DataFrame([
        {"indicator_id": code, "month": MONTH, "prison_code": prison, "unit_type": "reception", "reason": reason,
         "units": units, "numerator": num, "denominator": float(den), "member_rows": units}
        for reason, (units, num, den) in spec.items()])


def published_for(frame: pd.DataFrame, suppressed: bool = False) -> pd.DataFrame:
    keys = frame[list(drilldown.KEY_COLUMNS)].drop_duplicates()
    return keys.assign(suppressed=suppressed)


def by_reason(result: pd.DataFrame) -> dict[str, dict]:
    return {r["reason"]: r for r in result.to_dict("records")}


# --- an independent check of recoverability ---------------------------------------------------


def another_table_exists(values: list[int], relations: list[list[int]], suppressed: set[int], cell: int) -> bool:
    """True when another table of non-negative whole counts agrees with everything published (the
    relations' totals and the counts shown) but differs in `cell`: a move of +-1 between suppressed
    cells that keeps every relation's total. Brute force over {-1, 0, 1} for each suppressed cell."""
    hidden = sorted(suppressed)
    for move in itertools.product((-1, 0, 1), repeat=len(hidden)):
        step = dict(zip(hidden, move, strict=True))
        if step[cell] == 0:
            continue
        if any(values[i] + step[i] < 0 for i in hidden):
            continue
        if all(sum(step.get(i, 0) for i in rel) == 0 for rel in relations):
            return True
    return False


def relations_of(reasons: list[str], in_numerator: set[str], in_denominator: set[str]) -> list[list[int]]:
    """The totals the published figure gives: the numerator is the sum of the reasons in the numerator,
    the denominator of those in the denominator (reasons not listed are known zeros)."""
    rels = []
    for members in ([i for i, r in enumerate(reasons) if r in in_numerator],
                    [i for i, r in enumerate(reasons) if r in in_denominator]):
        if members:
            rels.append(members)
    return rels


# --- reason_counts -------------------------------------------------------------------------------


def test_reason_counts_sum_to_the_members_numerator_and_denominator(warehouse, counts):
    members = warehouse.execute("""
        SELECT indicator_id, month, prison_code, sum(numerator) AS numerator, sum(denominator) AS denominator,
               count(*) AS member_rows
        FROM indicators.members GROUP BY ALL""").df()
    members["month"] = pd.to_datetime(members["month"]).dt.date
    summed = counts.groupby(list(drilldown.KEY_COLUMNS), dropna=False)[
        ["numerator", "denominator", "member_rows"]].sum().reset_index()
    joined = summed.merge(members, on=list(drilldown.KEY_COLUMNS), suffixes=("", "_members"), how="outer")
    assert len(joined) == len(members) == len(summed) > 1000
    assert (joined["numerator"] == joined["numerator_members"]).all()
    assert ((joined["denominator"] - joined["denominator_members"]).abs() < 1e-6).all()
    assert (joined["member_rows"] == joined["member_rows_members"]).all()
    # and so they add up to the full prison-month figures the published ones come from
    full = warehouse.execute("""
        SELECT indicator_id, period_start AS month, area_code AS prison_code, numerator, denominator
        FROM indicators.indicator_values WHERE level = 'prison' AND period_type = 'month'""").df()
    full["month"] = pd.to_datetime(full["month"]).dt.date
    check = summed.merge(full, on=list(drilldown.KEY_COLUMNS), suffixes=("", "_figure"))
    assert len(check) == len(summed) - 1  # all but the poison prison's (it has no figure)
    assert (check["numerator"] == check["numerator_figure"]).all()
    assert ((check["denominator"] - check["denominator_figure"]).abs() < 1e-6).all()


def test_reason_counts_columns_units_population_and_rows():
    conn = members_connection([
        ("P12b", "XAA", "reception", "r1", 1, 1, "tested within 72h", None),
        ("P12b", "XAA", "reception", "r2", 1, 1, "tested within 72h", None),
        ("P12b", "XAA", "reception", "r3", 0, 1, "not tested within 72h", None),
        ("P12b", "XAA", "reception", "r4", 0, 0, "not eligible", None),
        # a person counted once per component: one unit
        ("P08b", "XAA", "person", "p1", 1, 0, "both groups this month", "gabapentinoid"),
        ("P08b", "XAA", "person", "p1", 0, 0, "both groups this month", "opioid_analgesic"),
        ("P08b", "XAA", "population", "XAA 2024-04", 0, 611, "average population", None),
        # one unit per source extract, grouped by the source rather than by its "n of m" label
        ("P02b", "XAA", "rows", "bbv_testing", 105, 106, "105 of 106 rows loaded", None),
        ("P02b", "XAA", "rows", "smoking", 40, 40, "40 of 40 rows loaded", None),
        ("P02b", None, "rows", "smoking", 0, 2, "0 of 2 rows loaded", None),
    ])
    frame = drilldown.reason_counts(conn)
    assert list(frame.columns) == list(drilldown.COUNT_COLUMNS)
    got = {(r["indicator_id"], r["prison_code"], r["reason"]): (r["units"], r["numerator"], r["denominator"])
           for r in frame.to_dict("records")}
    assert got[("P12b", "XAA", "tested within 72h")] == (2, 2, 2.0)
    assert got[("P12b", "XAA", "not tested within 72h")] == (1, 0, 1.0)
    assert got[("P12b", "XAA", "not eligible")] == (1, 0, 0.0)
    assert got[("P08b", "XAA", "both groups this month")] == (1, 1, 0.0)
    assert got[("P08b", "XAA", "average population")] == (1, 0, 611.0)
    assert got[("P02b", "XAA", "bbv_testing")] == (1, 105, 106.0)
    assert ("P02b", None, "smoking") in {(k[0], None if pd.isna(k[1]) else k[1], k[2]) for k in got}
    assert set(frame["month"]) == {MONTH}


def test_reason_counts_without_a_membership_table_is_empty():
    conn = duckdb.connect()
    assert drilldown.members_available(conn) is False
    frame = drilldown.reason_counts(conn)
    assert frame.empty and list(frame.columns) == list(drilldown.COUNT_COLUMNS)
    assert drilldown.breakdowns(conn).empty



def test_table_lookups_read_the_warehouse_only_while_another_database_is_attached():
    """The analysts' database is updated attached to the warehouse's DuckDB instance under another
    name: the report's look-ups of tables and columns must not see its tables."""
    from pipelines import report, warehouse

    conn = duckdb.connect()
    conn.execute("ATTACH ':memory:' AS analyst_copy")
    conn.execute("CREATE SCHEMA analyst_copy.indicators")
    conn.execute("CREATE TABLE analyst_copy.indicators.members (indicator_id VARCHAR, month DATE)")
    conn.execute("CREATE SCHEMA indicators")
    conn.execute("CREATE TABLE indicators.spc (indicator_id VARCHAR)")
    conn.execute("CREATE TABLE analyst_copy.indicators.spc (indicator_id VARCHAR, extra INTEGER)")
    assert drilldown.members_available(conn) is False
    assert warehouse.table_exists(conn, "indicators.members") is False
    assert report._columns(conn, "indicators.spc") == ["indicator_id"]
    for schema in ("pipeline", "analyst_copy.pipeline"):
        conn.execute(f"CREATE SCHEMA {schema}")
        for table in ("breakdowns", "reason_counts", "cursors"):
            conn.execute(f"CREATE TABLE {schema}.{table} (x INTEGER)")
    conn.execute("CREATE TABLE analyst_copy.pipeline.changes (x INTEGER)")
    assert drilldown.cached_breakdowns(conn) is None  # the warehouse has no change log: not up to date


# --- disclosure control ---------------------------------------------------------------------------


def test_a_single_suppressed_count_that_the_total_would_give_away_gets_a_complement():
    # 40 tested + 12 tested later + 5 not tested = 57 in the denominator; 3 not eligible are outside it.
    # 5 is suppressed; with the denominator (57) and 40 and 12 shown it would be 57 - 40 - 12 = 5.
    frame = reception_frame({"tested within 72h": (40, 40, 40), "tested later": (12, 0, 12),
                             "not tested": (5, 0, 5), "not eligible": (3, 0, 0)})
    result = by_reason(drilldown.publishable_reason_counts(frame, published=published_for(frame)))
    assert result["not tested"]["suppression"] == "primary"
    assert result["tested later"]["suppression"] == "secondary"  # the complement
    assert result["not eligible"]["suppression"] == "primary"  # in no total: nothing gives it away
    assert result["tested within 72h"]["units"] == 40 and not result["tested within 72h"]["suppressed"]
    for r in result.values():
        assert r["units"] is pd.NA or r["units"] not in SMALL
        assert not r["recoverable_from_figure"]
    # no suppressed count can be worked out: another table agrees with all that is shown
    values = [40, 12, 5, 3]
    relations = [[0], [0, 1, 2]]
    hidden = {1, 2, 3}
    for cell in hidden:
        assert another_table_exists(values, relations, hidden, cell)
    # without the complement the count would be recoverable
    assert not another_table_exists(values, relations, {2, 3}, 2)


def test_rate_numerator_with_one_small_reason_gets_a_complement():
    # P05a-like: activities in the numerator, the population as the denominator line
    frame = pd.DataFrame([
        {"indicator_id": "P05a", "month": MONTH, "prison_code": "XAA", "unit_type": unit_type, "reason": reason,
         "units": units, "numerator": num, "denominator": den, "member_rows": units}
        for unit_type, reason, units, num, den in [
            ("activity", "first screen", 120, 120, 0.0), ("activity", "HCV sample", 4, 4, 0.0),
            ("activity", "prescription item", 300, 300, 0.0), ("activity", "second screen", 90, 90, 0.0),
            ("population", "average population", 1, 0, 611.0)]])
    result = by_reason(drilldown.publishable_reason_counts(frame, published=published_for(frame)))
    assert result["HCV sample"]["suppression"] == "primary"
    assert result["second screen"]["suppression"] == "secondary"  # the smallest other count in the total
    assert result["first screen"]["units"] == 120 and result["prescription item"]["units"] == 300
    assert result["average population"]["role"] == "population"
    assert result["average population"]["denominator"] == 611 and not result["average population"]["suppressed"]


def test_a_count_the_figure_alone_gives_away_is_suppressed_and_flagged():
    # numerator 40, denominator 45: "not tested" is 45 - 40 whatever the breakdown shows
    frame = reception_frame({"tested within 72h": (40, 40, 40), "not tested": (5, 0, 5)})
    result = by_reason(drilldown.publishable_reason_counts(frame, published=published_for(frame)))
    assert result["not tested"]["suppressed"] and result["not tested"]["recoverable_from_figure"]
    assert result["tested within 72h"]["units"] == 40  # suppressing it would protect nothing


def test_no_breakdown_when_the_figure_is_suppressed_or_not_published():
    frame = pd.concat([
        reception_frame({"tested within 72h": (40, 40, 40), "not tested": (20, 0, 20)}, prison="XAA"),
        reception_frame({"tested within 72h": (30, 30, 30), "not tested": (20, 0, 20)}, prison="XAB"),
        reception_frame({"tested within 72h": (30, 30, 30), "not tested": (20, 0, 20)}, prison="XAC"),
    ], ignore_index=True)
    published = pd.DataFrame({"indicator_id": ["P12b", "P12b"], "month": [MONTH, MONTH],
                              "prison_code": ["XAA", "XAB"], "suppressed": [False, True]})
    result = drilldown.publishable_reason_counts(frame, published=published)
    assert set(result["prison_code"]) == {"XAA"}  # XAB suppressed (secondary, say), XAC not published


def test_without_published_figures_primary_suppression_of_the_figure_is_applied():
    frame = pd.concat([reception_frame({"tested within 72h": (5, 5, 5), "not tested": (20, 0, 20)}, prison="XAA"),
                       reception_frame({"tested within 72h": (9, 9, 9), "not tested": (20, 0, 20)}, prison="XAB")],
                      ignore_index=True)
    result = drilldown.publishable_reason_counts(frame)
    assert set(result["prison_code"]) == {"XAB"}


def test_policy_thresholds_are_those_of_the_disclosure_policy():
    frame = reception_frame({"tested within 72h": (40, 40, 40), "tested later": (9, 0, 9),
                             "not tested": (30, 0, 30), "not eligible": (10, 0, 0)})
    published = published_for(frame)
    default = by_reason(drilldown.publishable_reason_counts(frame, published=published))
    assert not any(r["suppressed"] for r in default.values())
    wider = by_reason(drilldown.publishable_reason_counts(frame, DisclosurePolicy(max_numerator=10),
                                                          published=published))
    assert wider["tested later"]["suppression"] == "primary" and wider["not eligible"]["suppression"] == "primary"
    assert wider["not tested"]["suppression"] == "secondary"
    off = drilldown.publishable_reason_counts(
        reception_frame({"tested within 72h": (40, 40, 40), "not tested": (3, 0, 3)}),
        DisclosurePolicy(enabled=False), published=published_for(reception_frame({"x": (1, 0, 0)})))
    assert not off["suppressed"].any() and set(off["units"]) == {40, 3}


def test_sources_of_rows_are_suppressed_as_pairs_with_a_complement():
    frame = pd.DataFrame([
        {"indicator_id": "P02b", "month": MONTH, "prison_code": "XAA", "unit_type": "rows", "reason": source,
         "units": 1, "numerator": n, "denominator": float(d), "member_rows": 1}
        for source, n, d in [("bbv_testing", 105, 106), ("smoking", 3, 4), ("tb_screening", 60, 60),
                             ("prescribing", 200, 201)]])
    result = by_reason(drilldown.publishable_reason_counts(frame, published=published_for(frame)))
    assert result["smoking"]["suppression"] == "primary"
    assert result["tb_screening"]["suppression"] == "secondary"  # the fewest rows read
    assert result["bbv_testing"]["numerator"] == 105 and result["bbv_testing"]["denominator"] == 106
    assert all(pd.isna(result[s]["numerator"]) and pd.isna(result[s]["denominator"])
               for s in ("smoking", "tb_screening"))


def test_complements_are_the_smallest_positive_counts_and_zeros_only_when_none_is_left():
    group = drilldown._Group(values=[5.0, 9.0, 0.0, 30.0], small=[True, False, False, False],
                             relations=[[0, 1, 2, 3]])
    assert drilldown._protect(group) == ({0}, {1}, set(), False)
    # numerator = cells 0 + 1, denominator = 0 + 1 + 2: cell 2 is fixed by the figure; only the zero is left
    group = drilldown._Group(values=[5.0, 0.0, 30.0], small=[True, False, False], relations=[[0, 1], [0, 1, 2]])
    assert drilldown._protect(group) == ({0}, {1}, {2}, False)


def test_a_reason_with_no_units_is_suppressed_when_it_is_the_only_complement():
    # the indicator has three reasons in its denominator; here nobody is "not screened", so
    # "[c] screened after 24h" alone would be 166 - 160
    frame = pd.concat([
        reception_frame({"screened within 24h": (160, 160, 160), "screened after 24h": (6, 0, 6)}, "P01a", "XAA"),
        reception_frame({"screened within 24h": (50, 50, 50), "screened after 24h": (20, 0, 20),
                         "not screened": (9, 0, 9)}, "P01a", "XAB"),
    ], ignore_index=True)
    result = drilldown.publishable_reason_counts(frame, published=published_for(frame))
    xaa = by_reason(result[result["prison_code"] == "XAA"])
    assert set(xaa) == {"screened within 24h", "screened after 24h", "not screened"}
    assert xaa["screened after 24h"]["suppression"] == "primary"
    assert xaa["not screened"]["suppression"] == "secondary" and pd.isna(xaa["not screened"]["units"])
    assert not xaa["screened after 24h"]["recoverable_from_figure"]
    xab = by_reason(result[result["prison_code"] == "XAB"])
    assert not any(r["suppressed"] for r in xab.values()) and xab["not screened"]["units"] == 9
    # a reason with no units and nothing to protect is not listed
    other = drilldown.publishable_reason_counts(frame[frame["prison_code"] == "XAB"],
                                                published=published_for(frame))
    assert len(other) == 3
    alone = drilldown.publishable_reason_counts(
        pd.concat([frame[frame["prison_code"] == "XAB"],
                   reception_frame({"screened within 24h": (160, 160, 160), "screened after 24h": (10, 0, 10)},
                                   "P01a", "XAC")], ignore_index=True), published=published_for(frame).assign(
            prison_code=["XAB", "XAC"]))
    assert set(alone.loc[alone["prison_code"] == "XAC", "reason"]) == {"screened within 24h", "screened after 24h"}


def test_determined_finds_counts_pinned_down_by_several_totals():
    # numerator = a + b, denominator = a + b + c: with a and c suppressed, c = denominator - numerator
    assert drilldown.determined([[0, 1], [0, 1, 2]], {0, 2}) == {0, 2}
    assert drilldown.determined([[0, 1], [0, 1, 2]], {0, 1}) == set()
    assert drilldown.determined([[0, 1, 2]], {0, 1}) == set()
    assert drilldown.determined([], {0}) == set()


# --- on the fixture warehouse ---------------------------------------------------------------------


def test_only_published_unsuppressed_prison_months_are_explained(warehouse, shown):
    published = drilldown.published_prison_months(warehouse)
    status = {(r.indicator_id, r.month, r.prison_code): r.suppressed for r in published.itertuples()}
    keys = set(zip(shown["indicator_id"], shown["month"], shown["prison_code"], strict=True))
    assert keys and all(status[k] is False for k in keys)
    assert POISON_CODE not in set(shown["prison_code"])
    codes = set(shown["indicator_id"])
    suppressed_figures = {k for k, s in status.items() if s and k[0] in codes}
    assert suppressed_figures and not (suppressed_figures & keys)


def test_no_count_of_1_to_7_is_publishable(shown):
    for column in ("units", "numerator", "denominator"):
        values = shown[column].dropna()
        assert not values.isin(SMALL).any(), column
    assert shown["suppressed"].sum() > 100
    assert (shown["suppression"] == "secondary").sum() > 10
    assert set(shown.loc[shown["suppressed"], "units"].isna()) == {True}


def test_no_suppressed_count_can_be_recovered_in_the_fixture(counts, shown):
    """For every breakdown shown, each suppressed count not already given away by the figure could
    take another value: an independent brute-force search for another table."""
    full = {(r["indicator_id"], r["month"], r["prison_code"], r["reason"]): r
            for r in counts.to_dict("records")}
    totals = counts.groupby(["indicator_id", "reason"])[["numerator", "denominator"]].sum()
    in_numerator = {k for k, v in totals["numerator"].items() if v > 0}
    in_denominator = {k for k, v in totals["denominator"].items() if v > 0}
    checked = zeros = 0
    for key, group in shown.groupby(list(drilldown.KEY_COLUMNS)):
        group = group[group["role"] != "population"].reset_index(drop=True)
        hidden = {i for i, s in enumerate(group["suppressed"]) if s}
        if not hidden:
            continue
        code = key[0]
        rows = [full.get((*key, reason), {"units": 0, "denominator": 0}) for reason in group["reason"]]
        zeros += sum(r["units"] == 0 for r in rows)
        rows_kind = group["role"].iloc[0] == "rows"
        values = [int(r["denominator"] if rows_kind else r["units"]) for r in rows]
        reasons = list(group["reason"])
        relations = ([list(range(len(rows)))] if rows_kind else
                     relations_of(reasons, {r for c, r in in_numerator if c == code},
                                  {r for c, r in in_denominator if c == code}))
        for cell in hidden:
            if group["recoverable_from_figure"].iloc[cell]:
                assert not another_table_exists(values, relations, set(range(len(rows))), cell)
                continue
            assert another_table_exists(values, relations, hidden, cell), (key, group.to_dict("records"))
            checked += 1
    assert checked > 50 and zeros > 0


def test_recovery_through_the_total_is_blocked_in_the_fixture(counts, shown):
    """P01a: 'screened after 24h' + 'not screened' = denominator - numerator; whenever one of them is
    small, both are suppressed."""
    p01a = shown[shown["indicator_id"] == "P01a"]
    singles = 0
    for _, group in p01a.groupby(list(drilldown.KEY_COLUMNS)):
        rest = group[group["role"] == "denominator"]
        if rest["suppressed"].any():
            singles += 1
            assert rest["suppressed"].sum() != 1 or len(rest) == 1
            if len(rest) == 1:  # the only other reason: fixed by the figure itself
                assert rest["recoverable_from_figure"].all()
    assert singles > 5


def test_one_month_with_the_summary_of_every_month_equals_the_run_over_every_month(warehouse, counts):
    """The refresh protects only its changed months, reading just those months' counts and a summary
    of every month (the reasons' roles and the indicator's list of reasons). A reason missing from
    a month must still come from the other months: here one is taken out of the first month."""
    months = sorted(set(counts["month"]))
    assert len(months) > 1
    taken = counts[(counts["month"] == months[0]) & (counts["unit_type"] == "reception")].iloc[0]
    frame = counts[~((counts["month"] == months[0]) & (counts["indicator_id"] == taken["indicator_id"])
                     & (counts["reason"] == taken["reason"]))].reset_index(drop=True)
    published = drilldown.published_prison_months(warehouse)
    everything = drilldown.publishable_reason_counts(frame, published=published)
    summary = drilldown.reason_summary(frame)
    for month in months:
        one = frame[frame["month"] == month].reset_index(drop=True)
        got = drilldown.publishable_reason_counts(one, published=published, months={month}, summary=summary)
        pd.testing.assert_frame_equal(got, everything[everything["month"] == month].reset_index(drop=True))
        without_summary = drilldown.publishable_reason_counts(one, published=published, months={month})
        if month == months[0]:  # alone, the month does not know the reason it lacks: no [c] complements of it
            assert len(without_summary) < len(got)


def test_the_reason_summary_in_sql_equals_the_one_in_pandas(warehouse, counts):
    warehouse.execute("CREATE SCHEMA IF NOT EXISTS pipeline")
    warehouse.register("_counts", counts)
    warehouse.execute("CREATE OR REPLACE TABLE pipeline.reason_counts AS SELECT * FROM _counts")
    keys = ["indicator_id", "unit_type", "reason"]
    sql = warehouse.execute(drilldown.REASON_SUMMARY_SQL).df().sort_values(keys, ignore_index=True)
    pandas = drilldown.reason_summary(counts).sort_values(keys, ignore_index=True)
    assert len(sql) == len(pandas) > 0
    assert sql["first_seen"].tolist() == pandas["first_seen"].tolist()
    assert (sql["numerator"] > 0).tolist() == (pandas["numerator"] > 0).tolist()
    assert (sql["denominator"] > 0).tolist() == (pandas["denominator"] > 0).tolist()
    warehouse.execute("DROP TABLE pipeline.reason_counts")
