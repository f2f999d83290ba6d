"""Months, financial quarters (April-June = Q1) and financial years (April-March)."""

from datetime import date, datetime

import pytest

from pipelines import periods


@pytest.mark.parametrize(
    ("day", "quarter_start", "quarter_end", "quarter_label"),
    [
        (date(2024, 3, 31), date(2024, 1, 1), date(2024, 3, 31), "2023/24 Q4"),
        (date(2024, 4, 1), date(2024, 4, 1), date(2024, 6, 30), "2024/25 Q1"),
        (date(2024, 6, 30), date(2024, 4, 1), date(2024, 6, 30), "2024/25 Q1"),
        (date(2024, 7, 1), date(2024, 7, 1), date(2024, 9, 30), "2024/25 Q2"),
        (date(2023, 12, 31), date(2023, 10, 1), date(2023, 12, 31), "2023/24 Q3"),
        (date(2024, 1, 1), date(2024, 1, 1), date(2024, 3, 31), "2023/24 Q4"),
    ],
)
def test_financial_quarters(day, quarter_start, quarter_end, quarter_label):
    start = periods.period_start("quarter", day)
    assert start == quarter_start
    assert periods.period_end("quarter", start) == quarter_end
    assert periods.period_label("quarter", start) == quarter_label


@pytest.mark.parametrize(
    ("day", "year_start", "year_end", "label"),
    [
        (date(2024, 3, 31), date(2023, 4, 1), date(2024, 3, 31), "2023/24"),
        (date(2024, 4, 1), date(2024, 4, 1), date(2025, 3, 31), "2024/25"),
        (date(2023, 12, 31), date(2023, 4, 1), date(2024, 3, 31), "2023/24"),
        (date(2024, 1, 1), date(2023, 4, 1), date(2024, 3, 31), "2023/24"),
        (date(1999, 6, 15), date(1999, 4, 1), date(2000, 3, 31), "1999/00"),
    ],
)
def test_financial_years(day, year_start, year_end, label):
    start = periods.period_start("financial_year", day)
    assert start == year_start
    assert periods.period_end("financial_year", start) == year_end
    assert periods.financial_year_label(day) == label


def test_december_and_january_share_a_year_but_not_a_quarter():
    dec, jan = date(2023, 12, 1), date(2024, 1, 1)
    assert periods.financial_year_start(dec) == periods.financial_year_start(jan) == date(2023, 4, 1)
    assert periods.financial_quarter_start(dec) == date(2023, 10, 1)
    assert periods.financial_quarter_start(jan) == date(2024, 1, 1)
    assert periods.financial_quarter_number(dec) == 3
    assert periods.financial_quarter_number(jan) == 4


def test_march_and_april_are_in_different_quarters_and_years():
    mar, apr = date(2024, 3, 1), date(2024, 4, 1)
    assert periods.financial_quarter_start(mar) != periods.financial_quarter_start(apr)
    assert periods.financial_year_start(mar) == date(2023, 4, 1)
    assert periods.financial_year_start(apr) == date(2024, 4, 1)


def test_month_ends_including_leap_february():
    assert periods.period_end("month", date(2024, 2, 1)) == date(2024, 2, 29)
    assert periods.period_end("month", date(2023, 2, 1)) == date(2023, 2, 28)
    assert periods.period_end("month", date(2023, 12, 1)) == date(2023, 12, 31)
    assert periods.period_label("month", date(2024, 4, 1)) == "April 2024"


def test_months_in_periods():
    assert periods.months_in_period("quarter", date(2024, 1, 1)) == ["2024-01", "2024-02", "2024-03"]
    year = periods.months_in_period("financial_year", date(2023, 4, 1))
    assert year[0] == "2023-04" and year[-1] == "2024-03" and len(year) == 12
    assert periods.months_in_period("month", date(2024, 5, 1)) == ["2024-05"]


def test_month_arithmetic_across_year_ends():
    assert periods.shift_month("2024-01", -1) == "2023-12"
    assert periods.shift_month("2023-12", 1) == "2024-01"
    assert periods.shift_month("2023-11", 2) == "2024-01"
    assert periods.shift_month("2024-03", -15) == "2022-12"
    assert periods.parse_month("2024-04") == date(2024, 4, 1)
    assert periods.month_key(date(2024, 4, 17)) == "2024-04"


@pytest.mark.parametrize("bad", ["2024-13", "2024-4", "24-04", "2024-00", "April"])
def test_bad_months_are_refused(bad):
    with pytest.raises(ValueError):
        periods.parse_month(bad)


def test_query_parameters_span_the_previous_and_two_following_months():
    p = periods.query_parameters("2024-01")
    assert p == {
        "month": "2024-01",
        "month_start": datetime(2024, 1, 1),
        "month_end": datetime(2024, 2, 1),
        "first_source_month": "2023-12",
        "last_source_month": "2024-03",
    }
    p = periods.query_parameters("2023-12")
    assert (p["month_end"], p["first_source_month"], p["last_source_month"]) == (
        datetime(2024, 1, 1), "2023-11", "2024-02")


def test_period_months_maps_each_month_to_its_three_periods():
    rows = periods.period_months(["2024-03", "2024-04"])
    assert rows == [
        ("month", date(2024, 3, 1), date(2024, 3, 31), "2024-03"),
        ("quarter", date(2024, 1, 1), date(2024, 3, 31), "2024-03"),
        ("financial_year", date(2023, 4, 1), date(2024, 3, 31), "2024-03"),
        ("month", date(2024, 4, 1), date(2024, 4, 30), "2024-04"),
        ("quarter", date(2024, 4, 1), date(2024, 6, 30), "2024-04"),
        ("financial_year", date(2024, 4, 1), date(2025, 3, 31), "2024-04"),
    ]
