"""From prison-months to indicator values: periods, levels, zeros, provisional flags.

The expected figures are worked out by hand from the rows each test inserts.
Prisons: AAA public/London/reception, BBB PFI/South East/training, CCC contracted/London/yoi.
"""

from __future__ import annotations

from datetime import date

import pytest
from indicator_fixtures import Warehouse

from pipelines import catalogue, indicators

GABAPENTIN = "0408010G0AAAAAA"
OPIOID = "040702040AAAAAA"


def make() -> Warehouse:
    w = Warehouse()
    w.prison("AAA", operator="public", region="London", function="reception", has_xray=True)
    w.prison("BBB", operator="pfi", region="South East", function="training", has_xray=False)
    w.prison("CCC", operator="contracted", region="London", function="yoi", has_xray=True)
    return w


def receptions(w: Warehouse, prison: str, month: str, screened: int, total: int) -> None:
    """`total` receptions at `prison` on the 2nd of `month`, the first `screened` of them
    screened within the hour (P01a numerator)."""
    for n in range(total):
        w.reception(f"{prison}-{month}-{n}", f"{prison}{month}{n}", prison, f"{month}-02 09:00",
                    first_screen_datetime=f"{month}-02 10:00" if n < screened else None)


def figures(row: dict) -> tuple:
    return row["numerator"], row["denominator"], row["value"]


def is_null(x) -> bool:
    return x is None or x != x  # None or NaN (pandas shows a null double as NaN)


# ---------------------------------------------------------------------------------------
# Summing, never averaging


def test_quarter_and_region_come_from_summed_parts_not_averaged_values():
    w = make()
    w.receive("2024-04", "2024-05", "2024-06")
    receptions(w, "AAA", "2024-04", screened=1, total=1)  # 100%
    receptions(w, "AAA", "2024-05", screened=1, total=4)  # 25%
    receptions(w, "AAA", "2024-06", screened=2, total=5)  # 40%
    receptions(w, "CCC", "2024-04", screened=0, total=3)  # 0%
    w.compute("2024-04", "2024-05", "2024-06")
    w.build()
    months = [w.value("P01a", "month", f"2024-0{m}-01", "prison", "AAA")["value"] for m in (4, 5, 6)]
    assert months == [pytest.approx(100.0), pytest.approx(25.0), pytest.approx(40.0)]
    quarter = w.value("P01a", "quarter", "2024-04-01", "prison", "AAA")
    assert figures(quarter) == (4, 10.0, pytest.approx(40.0))  # 4 of 10, not (100 + 25 + 40) / 3 = 55
    assert quarter["value"] != pytest.approx(sum(months) / 3)
    year = w.value("P01a", "financial_year", "2024-04-01", "prison", "AAA")
    assert figures(year) == (4, 10.0, pytest.approx(40.0))
    london = w.value("P01a", "month", "2024-04-01", "region", "London")  # AAA 1/1 + CCC 0/3
    assert figures(london) == (1, 4.0, pytest.approx(25.0))  # not (100 + 0) / 2 = 50
    england = w.value("P01a", "month", "2024-04-01", "england", "ENG")
    assert figures(england) == (1, 4.0, pytest.approx(25.0))
    assert figures(w.value("P01a", "month", "2024-04-01", "operator", "contracted")) == (0, 3.0, 0.0)
    assert w.value("P01a", "month", "2024-04-01", "function", "yoi")["area_name"] == "Young offender institution"
    assert w.value("P01a", "month", "2024-04-01", "operator", "pfi")["area_name"] == "PFI"
    assert w.value("P01a", "month", "2024-04-01", "prison", "AAA")["area_name"] == "HMP AAA"


def test_distinct_persons_over_a_quarter_count_each_person_once_per_prison():
    w = make()
    w.receive("2024-04", "2024-05", "2024-06")
    for month, pop in (("2024-04", 100), ("2024-06", 300)):  # no population row for May
        w.population("AAA", month, pop)
    for month in ("2024-04", "2024-05", "2024-06"):
        w.population("BBB", month, 50)
    w.item("a1", "p1", "AAA", "2024-04-03 10:00", GABAPENTIN)
    w.item("a2", "p2", "AAA", "2024-05-03 10:00", GABAPENTIN)  # May has no population: left out
    w.item("a3", "p1", "AAA", "2024-06-03 10:00", GABAPENTIN)  # p1 again: once in the quarter
    w.item("a4", "p3", "AAA", "2024-06-03 10:00", GABAPENTIN)
    w.item("b1", "p1", "BBB", "2024-05-10 10:00", GABAPENTIN)  # p1 at BBB too: counts at BBB
    w.compute("2024-04", "2024-05", "2024-06")
    w.build()
    may = w.value("P08a", "month", "2024-05-01", "prison", "AAA")
    assert may["numerator"] == 1 and is_null(may["denominator"]) and is_null(may["value"])
    aaa = w.value("P08a", "quarter", "2024-04-01", "prison", "AAA")
    assert figures(aaa) == (2, 200.0, pytest.approx(10.0))  # {p1, p3} per mean(100, 300)
    bbb = w.value("P08a", "quarter", "2024-04-01", "prison", "BBB")
    assert figures(bbb) == (1, 50.0, pytest.approx(20.0))
    england = w.value("P08a", "quarter", "2024-04-01", "england", "ENG")
    assert figures(england) == (3, 250.0, pytest.approx(12.0))  # 2 + 1 persons, 200 + 50 population
    may_england = w.value("P08a", "month", "2024-05-01", "england", "ENG")
    assert figures(may_england) == (1, 50.0, pytest.approx(20.0))  # AAA's May left out


# ---------------------------------------------------------------------------------------
# Members and prison-months agree


def rich_warehouse() -> Warehouse:
    """A bit of everything over two months, so that every computed indicator has members."""
    w = make()
    w.receive("2024-04", "2024-05")
    for prison in ("AAA", "BBB"):
        for month in ("2024-04", "2024-05"):
            w.population(prison, month, 400)
    w.summary("smoking", "2024-04", "AAA", read=9, loaded=8)
    w.summary("smoking", "2024-04", None, read=1, loaded=0)
    for n, (prison, at) in enumerate([("AAA", "2024-04-03 09:00"), ("BBB", "2024-04-20 09:00"),
                                      ("AAA", "2024-05-02 09:00"), ("CCC", "2024-04-29 22:00")]):
        p = f"p{n}"
        w.item(f"prev{n}", p, "CCC" if prison != "CCC" else "AAA", "2024-03-25 10:00", OPIOID)
        w.reception(f"r{n}", p, prison, at, type="transfer",
                    first_screen_datetime=at, second_screen_datetime=at.replace(":00", ":30", 1),
                    meds_reconciliation_datetime=at, substance_misuse_need=n % 2 == 0,
                    substance_treatment_start_datetime=at, self_harm_risk=True,
                    mental_health_referral_datetime=at, social_care_need=True,
                    social_care_referral_datetime=at)
        w.item(f"gab{n}", p, prison, at, GABAPENTIN, in_possession=True)
        w.item(f"opi{n}", p, prison, at, OPIOID)
        w.smoking(f"st{n}", p, prison, at, "status_recorded", smoking_status="current")
        w.smoking(f"nrt{n}", p, prison, at, "nrt_offered")
        w.smoking(f"qd{n}", p, prison, at, "quit_date_set")
        w.tb(f"ss{n}", p, prison, at, "symptom_screen", result="positive", referral_datetime=at)
        w.tb(f"xr{n}", p, prison, at, "chest_xray")
        w.tb(f"dx{n}", p, prison, at, "diagnosis", result="positive")
        for virus in ("HCV", "HBV", "HIV"):
            w.bbv(f"{virus}{n}", p, prison, virus, at, "accepted", sample_datetime=at, result="positive",
                  hcv_rna_result="positive" if virus == "HCV" else None, referral_datetime=at)
    w.smoking("q4w", "p0", "AAA", "2024-05-01 09:00", "quit_4wk", outcome="quit_self_reported")
    w.compute("2024-04", "2024-05")
    return w


def test_members_sum_to_prison_month_for_every_indicator_prison_and_month():
    w = rich_warehouse()
    computed = {i.code for i in indicators.computed_indicators()}
    with_members = {c for (c,) in w.conn.execute("SELECT DISTINCT indicator_id FROM indicators.members").fetchall()}
    assert with_members == computed
    mismatches = w.conn.execute("""
        WITH sums AS (
          SELECT indicator_id, month, prison_code, sum(numerator) AS n, sum(denominator) AS d
          FROM indicators.members GROUP BY ALL)
        SELECT * FROM sums FULL JOIN indicators.prison_month AS pm
          ON pm.indicator_id = sums.indicator_id AND pm.month = sums.month
         AND pm.prison_code IS NOT DISTINCT FROM sums.prison_code
        WHERE pm.numerator IS DISTINCT FROM sums.n OR pm.denominator IS DISTINCT FROM sums.d
    """).fetchall()
    assert mismatches == []
    # Numerators are subsets of denominators for every indicator counting units.
    unit_based = [i.code for i in catalogue.load_catalogue() if i.denominator_kind == "units"]
    assert w.conn.execute("""
        SELECT m.indicator_id, m.unit_id FROM indicators.members AS m
        WHERE list_contains(?, m.indicator_id) AND m.unit_type <> 'rows'
          AND (m.numerator > m.denominator OR m.denominator NOT IN (0, 1))
    """, [unit_based]).fetchall() == []
    # Month values equal the prison-months they come from.
    w.build()
    assert w.conn.execute("""
        SELECT v.indicator_id FROM indicators.indicator_values AS v
        JOIN indicators.prison_month AS pm
          ON pm.indicator_id = v.indicator_id AND pm.month = v.period_start AND pm.prison_code = v.area_code
        WHERE v.period_type = 'month' AND v.level = 'prison'
          AND (v.numerator <> pm.numerator OR (pm.denominator > 0 AND v.denominator <> pm.denominator))
    """).fetchall() == []


def test_compute_month_replaces_the_month_it_computes_and_nothing_else():
    w = rich_warehouse()
    before = w.conn.execute("SELECT count(*) FROM indicators.members WHERE month = DATE '2024-05-01'").fetchall()
    w.reception("late", "pz", "AAA", "2024-04-15 09:00")
    w.compute("2024-04")
    assert w.prison_month("P01a", "2024-04")["AAA"] == (1, 2.0)
    assert w.conn.execute(
        "SELECT count(*) FROM indicators.members WHERE month = DATE '2024-05-01'").fetchall() == before
    assert w.conn.execute("""
        SELECT count(*) FROM (SELECT indicator_id, month, prison_code FROM indicators.prison_month
        GROUP BY ALL HAVING count(*) > 1)""").fetchall() == [(0,)]


# ---------------------------------------------------------------------------------------
# Rows for everything, zeros and nulls


def test_every_indicator_period_and_area_has_a_row_with_zeros_and_nulls():
    w = make()
    w.receive("2024-04")
    w.population("AAA", "2024-04", 100)
    receptions(w, "AAA", "2024-04", screened=0, total=2)  # none screened: value 0
    w.compute("2024-04")
    n = w.build()
    # 27 computed indicators x 3 periods x (3 prisons + 2 regions + 3 operators + 3 functions + England),
    # plus P04a at England for the 3 periods.
    assert n == 27 * 3 * 12 + 3
    assert figures(w.value("P01a", "month", "2024-04-01", "prison", "AAA")) == (0, 2.0, 0.0)
    bbb = w.value("P01a", "month", "2024-04-01", "prison", "BBB")  # no receptions at all
    assert bbb["numerator"] == 0 and bbb["denominator"] == 0.0 and is_null(bbb["value"])
    assert figures(w.value("P05a", "month", "2024-04-01", "prison", "AAA")) == (0, 100.0, 0.0)
    no_population = w.value("P05a", "month", "2024-04-01", "prison", "BBB")
    assert no_population["numerator"] == 0 and is_null(no_population["denominator"])
    assert is_null(no_population["value"])
    row = w.value("P01a", "month", "2024-04-01", "prison", "AAA")
    assert row["priority"] == 1
    assert all(is_null(row[c]) for c in ("lower_ci_95", "upper_ci_95", "lower_ci_99_8", "upper_ci_99_8",
                                          "comparison"))
    levels = w.conn.execute(
        "SELECT DISTINCT level FROM indicators.indicator_values ORDER BY level").fetchall()
    assert [lv for (lv,) in levels] == sorted(indicators.LEVELS)


def test_periods_in_the_output_follow_financial_quarters_and_years():
    w = make()
    w.receive("2023-12", "2024-01", "2024-03", "2024-04", sources=["reception_screening"])
    w.compute("2023-12", "2024-01", "2024-03", "2024-04")
    w.build()
    rows = w.conn.execute("""
        SELECT DISTINCT period_type, period_start, period_end FROM indicators.indicator_values
        ORDER BY period_type, period_start""").fetchall()
    assert rows == [
        ("financial_year", date(2023, 4, 1), date(2024, 3, 31)),  # Dec, Jan and Mar
        ("financial_year", date(2024, 4, 1), date(2025, 3, 31)),  # Apr
        ("month", date(2023, 12, 1), date(2023, 12, 31)),
        ("month", date(2024, 1, 1), date(2024, 1, 31)),
        ("month", date(2024, 3, 1), date(2024, 3, 31)),
        ("month", date(2024, 4, 1), date(2024, 4, 30)),
        ("quarter", date(2023, 10, 1), date(2023, 12, 31)),  # Q3: Dec
        ("quarter", date(2024, 1, 1), date(2024, 3, 31)),  # Q4: Jan and Mar
        ("quarter", date(2024, 4, 1), date(2024, 6, 30)),  # Q1: Apr
    ]


def test_march_receptions_go_to_q4_and_the_old_year_april_to_q1_and_the_new():
    w = make()
    w.receive("2024-03", "2024-04", sources=["reception_screening"])
    w.reception("mar", "p1", "AAA", "2024-03-31 23:59:59", first_screen_datetime="2024-04-01 00:30")
    w.reception("apr", "p2", "AAA", "2024-04-01 00:00:00")
    w.compute("2024-03", "2024-04")
    w.build()
    assert figures(w.value("P01a", "quarter", "2024-01-01", "prison", "AAA")) == (1, 1.0, 100.0)
    assert figures(w.value("P01a", "financial_year", "2023-04-01", "prison", "AAA")) == (1, 1.0, 100.0)
    assert figures(w.value("P01a", "quarter", "2024-04-01", "prison", "AAA")) == (0, 1.0, 0.0)
    assert figures(w.value("P01a", "financial_year", "2024-04-01", "prison", "AAA")) == (0, 1.0, 0.0)


# ---------------------------------------------------------------------------------------
# Provisional


def test_provisional_months_quarters_and_years():
    w = make()
    w.receive("2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06")
    w.receive("2024-07", sources=["reception_screening"])
    for month in ("2024-04", "2024-05"):
        receptions(w, "AAA", month, screened=1, total=1)
    results = {r["month"]: r["provisional"] for r in w.compute("2024-04", "2024-05")}
    assert results == {"2024-04": False, "2024-05": True}  # May needs all of July
    assert w.conn.execute(
        "SELECT DISTINCT month, provisional FROM indicators.prison_month ORDER BY month").fetchall() == [
        (date(2024, 4, 1), False), (date(2024, 5, 1), True)]
    w.build()
    flags = dict(((t, str(s)), p) for t, s, p in w.conn.execute(
        "SELECT DISTINCT period_type, period_start, provisional FROM indicators.indicator_values").fetchall())
    assert flags == {
        ("month", "2024-01-01"): False,
        ("month", "2024-02-01"): False,
        ("month", "2024-03-01"): False,
        ("month", "2024-04-01"): False,  # needs May and June: all in
        ("month", "2024-05-01"): True,
        ("month", "2024-06-01"): True,
        ("month", "2024-07-01"): True,
        ("quarter", "2024-01-01"): False,  # Jan-Mar complete and final
        ("quarter", "2024-04-01"): True,  # holds provisional May and June
        ("quarter", "2024-07-01"): True,  # incomplete
        ("financial_year", "2023-04-01"): True,  # April-December 2023 never received
        ("financial_year", "2024-04-01"): True,
    }


def test_a_rejected_file_does_not_count_as_received():
    w = make()
    w.receive("2024-01", "2024-02")
    w.receive("2024-03", sources=["reception_screening", "bbv_testing", "smoking", "prescribing"])
    w.file_load("tb_screening", "2024-03", status="rejected")
    assert indicators.is_provisional(w.conn, "2024-01") is True
    w.file_load("tb_screening", "2024-03", status="unchanged")
    assert indicators.is_provisional(w.conn, "2024-01") is False
    assert indicators.is_provisional(w.conn, "2024-02") is True


# ---------------------------------------------------------------------------------------
# Hooks for the statistics step


def test_fill_statistics_hook_replaces_the_table_with_its_result():
    w = make()
    w.receive("2024-04")
    receptions(w, "AAA", "2024-04", screened=1, total=2)
    w.compute("2024-04")
    seen = {}

    def fill(frame):
        seen["columns"] = list(frame.columns)
        frame = frame.copy()
        frame["lower_ci_95"] = frame["value"] - 1
        frame["comparison"] = "similar"
        return frame

    n = w.build(fill_statistics=fill)
    assert seen["columns"] == list(indicators.VALUE_COLUMNS)
    assert n == 27 * 3 * 12 + 3
    row = w.value("P01a", "month", "2024-04-01", "prison", "AAA")
    assert (row["value"], row["lower_ci_95"], row["comparison"]) == (50.0, 49.0, "similar")


def test_catalogue_table_is_written_with_the_values():
    w = make()
    w.receive("2024-04")
    w.compute("2024-04")
    w.build()
    rows = w.conn.execute("SELECT count(*), count(*) FILTER (WHERE headline) FROM indicators.catalogue").fetchall()
    assert rows == [(28, 12)]
    assert len(catalogue.catalogue_rows()) == 28


def test_compute_month_writes_the_same_rows_without_keeping_insertion_order_and_restores_the_setting():
    from contextlib import nullcontext
    from unittest import mock

    from pipelines import warehouse

    w = rich_warehouse()

    def month_rows() -> list[tuple]:
        return w.conn.execute(
            "SELECT * FROM indicators.members WHERE month = DATE '2024-04-01' ORDER BY ALL").fetchall()

    def order_kept() -> bool:
        return w.conn.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]

    w.compute("2024-04")
    relaxed = month_rows()
    assert relaxed and order_kept()  # DuckDB's default is back for every other query
    w.conn.execute("SET preserve_insertion_order = false")
    w.compute("2024-04")
    assert not order_kept()  # a connection that had it off keeps it off
    w.conn.execute("SET preserve_insertion_order = true")
    with mock.patch.object(warehouse, "insertion_order_not_kept", lambda _conn: nullcontext()):
        w.compute("2024-04")
    assert month_rows() == relaxed
