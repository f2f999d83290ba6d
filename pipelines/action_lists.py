"""Action lists for prison healthcare teams: receptions that still need something doing.

Built from `indicators.members` (the units behind every figure), so an action list
can never disagree with the indicator it serves. These are RESTRICTED outputs: they
name receptions (by reception_id and dates only, never an NHS number or free text)
and live beside the warehouse under `<out>/restricted/`, never in the public report.
"""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb

# indicator -> the action a reception that is not (yet) in its numerator needs
ACTIONS = {
    "P01a": "first reception health screen",
    "P07b": "offer NRT or a vape to a smoker",
    "P09a": "refer self-harm risk to mental health",
    "P12b": "HCV test",
    "P12c": "HBV test",
    "P12d": "HIV test",
}
RECENT_DAYS = 14  # how long after its window closes a missed reception stays on the list

ACTION_LIST_SQL = f"""
WITH as_of AS (
  SELECT max(reception_datetime) AS at FROM conformed.reception_screening
)
SELECT m.prison_code, m.indicator_id,
       CASE m.indicator_id {" ".join(f"WHEN '{k}' THEN '{v}'" for k, v in ACTIONS.items())} END AS action,
       m.unit_id AS reception_id,
       m.anchor_datetime AS reception_datetime,
       m.window_end,
       CASE WHEN m.window_end >= as_of.at THEN 'open' ELSE 'overdue' END AS status,
       m.reason,
       as_of.at AS data_as_of
FROM indicators.members m, as_of
WHERE m.indicator_id IN ({", ".join(f"'{k}'" for k in ACTIONS)})
  AND m.unit_type = 'reception' AND m.denominator > 0 AND m.numerator = 0
  AND m.window_end >= as_of.at - INTERVAL {RECENT_DAYS} DAY
ORDER BY m.prison_code, m.window_end, m.indicator_id, m.unit_id
"""

COLUMNS = ("prison_code", "indicator_id", "action", "reception_id", "reception_datetime", "window_end",
           "status", "reason", "data_as_of")


def action_rows(conn: duckdb.DuckDBPyConnection) -> list[tuple]:
    return conn.execute(ACTION_LIST_SQL).fetchall()


def write_action_lists(conn: duckdb.DuckDBPyConnection, folder: Path) -> dict[str, int]:
    """One CSV per prison under `folder` (replacing the previous set); rows per prison."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv"):
        old.unlink()
    by_prison: dict[str, list[tuple]] = {}
    for row in action_rows(conn):
        by_prison.setdefault(row[0], []).append(row)
    for prison, rows in by_prison.items():
        with open(folder / f"{prison}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            writer.writerows(rows)
    return {prison: len(rows) for prison, rows in by_prison.items()}
