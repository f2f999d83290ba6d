"""The monthly partitions: one per file month, from the first month in the landing directory.

The partition set ends at the last complete calendar month, or later when the
landing directory already holds later months (synthetic data can run ahead of
the calendar).
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from pipelines import settings


def _months_between(a: str, b: str) -> int:
    ay, am = map(int, a.split("-"))
    by, bm = map(int, b.split("-"))
    return (by - ay) * 12 + (bm - am)


def _end_offset(today: date | None = None) -> int:
    today = today or date.today()
    last_complete = f"{today.year - (today.month == 1):04d}-{(today.month - 2) % 12 + 1:02d}"
    found = settings.months_in_landing(settings.landing_dir())
    return max(0, _months_between(last_complete, found[-1])) if found else 0


MONTHS = dg.MonthlyPartitionsDefinition(
    start_date=settings.first_month(), fmt="%Y-%m", end_offset=_end_offset()
)
