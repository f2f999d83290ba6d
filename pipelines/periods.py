"""Reporting periods: calendar months, financial quarters and financial years.

The financial year runs from April to March, so April-June is Q1 and January-March is
Q4 of the year that started the previous April. A month is written `YYYY-MM` (the
partition key of the monthly extracts); periods are identified by their first day and
end on their last day (inclusive), as in `indicators.indicator_values`.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

PERIOD_TYPES = ("month", "quarter", "financial_year")
PERIOD_MONTHS = {"month": 1, "quarter": 3, "financial_year": 12}
FINANCIAL_YEAR_START_MONTH = 4  # April

_MONTH_RE = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")


def parse_month(month: str) -> date:
    """'2024-04' -> date(2024, 4, 1)."""
    m = _MONTH_RE.match(month)
    if not m:
        raise ValueError(f"not a month (YYYY-MM): {month!r}")
    return date(int(m.group(1)), int(m.group(2)), 1)


def month_key(d: date) -> str:
    """date(2024, 4, 17) -> '2024-04'."""
    return f"{d.year:04d}-{d.month:02d}"


def month_start(d: date) -> date:
    return date(d.year, d.month, 1)


def add_months(d: date, n: int) -> date:
    """First day of the month n months after d's month (n may be negative)."""
    index = d.year * 12 + (d.month - 1) + n
    return date(index // 12, index % 12 + 1, 1)


def shift_month(month: str, n: int) -> str:
    """'2024-01', -1 -> '2023-12'."""
    return month_key(add_months(parse_month(month), n))


def financial_year_start(d: date) -> date:
    """1 April of the financial year holding d."""
    year = d.year if d.month >= FINANCIAL_YEAR_START_MONTH else d.year - 1
    return date(year, FINANCIAL_YEAR_START_MONTH, 1)


def financial_quarter_start(d: date) -> date:
    """First day of the financial quarter holding d (1 Apr, 1 Jul, 1 Oct or 1 Jan)."""
    offset = (d.month - FINANCIAL_YEAR_START_MONTH) % 12  # months since April
    return add_months(date(d.year, d.month, 1), -(offset % 3))


def financial_quarter_number(d: date) -> int:
    """1 for April-June ... 4 for January-March."""
    return (d.month - FINANCIAL_YEAR_START_MONTH) % 12 // 3 + 1


def financial_year_label(d: date) -> str:
    """'2024/25' for any date from 1 April 2024 to 31 March 2025."""
    start = financial_year_start(d).year
    return f"{start}/{(start + 1) % 100:02d}"


def period_start(period_type: str, d: date) -> date:
    """First day of the period of the given type that holds d."""
    if period_type == "month":
        return month_start(d)
    if period_type == "quarter":
        return financial_quarter_start(d)
    if period_type == "financial_year":
        return financial_year_start(d)
    raise ValueError(f"unknown period type {period_type!r}; expected one of {PERIOD_TYPES}")


def period_end(period_type: str, start: date) -> date:
    """Last day (inclusive) of the period starting on `start`."""
    return add_months(start, PERIOD_MONTHS[period_type]) - timedelta(days=1)


def months_in_period(period_type: str, start: date) -> list[str]:
    """The months ('YYYY-MM') making up the period that starts on `start`."""
    first = period_start(period_type, start)
    return [month_key(add_months(first, i)) for i in range(PERIOD_MONTHS[period_type])]


def period_label(period_type: str, start: date) -> str:
    """Human label: 'April 2024', '2024/25 Q1', '2024/25'."""
    if period_type == "month":
        return start.strftime("%B %Y")
    if period_type == "quarter":
        return f"{financial_year_label(start)} Q{financial_quarter_number(start)}"
    return financial_year_label(start)


def period_months(months: list[str] | set[str]) -> list[tuple[str, date, date, str]]:
    """Map every month to each period holding it.

    Returns (period_type, period_start, period_end, month) for each month and period type,
    sorted; a small table the aggregation joins to (a few rows per month, not per event).
    """
    rows = []
    for month in sorted(set(months)):
        d = parse_month(month)
        for period_type in PERIOD_TYPES:
            start = period_start(period_type, d)
            rows.append((period_type, start, period_end(period_type, start), month))
    return rows


def query_parameters(month: str) -> dict[str, object]:
    """Named parameters of the indicator SQL for anchor month M.

    month_start / month_end: first instant of M and of M+1 (TIMESTAMP, naive clock);
    month: 'YYYY-MM'; first_source_month / last_source_month: M-1 and M+2, the source
    months an indicator of month M may read (look-back and look-forward windows).
    """
    start = parse_month(month)
    return {
        "month": month,
        "month_start": datetime.combine(start, datetime.min.time()),
        "month_end": datetime.combine(add_months(start, 1), datetime.min.time()),
        "first_source_month": month_key(add_months(start, -1)),
        "last_source_month": month_key(add_months(start, 2)),
    }
