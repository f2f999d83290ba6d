"""Hand-built warehouses for the indicator tests.

`Warehouse()` is an in-memory DuckDB with every table created by `warehouse.create_all`
and the default drug groups. Tests add prisons, populations and events row by row (rows
go straight into the conformed tables, as ingest would leave them: `source_month` is the
month of the primary datetime, `source_file` / `source_line` are invented per file), then
`compute(...)` links events to receptions (the pipeline's linkage step) and runs the engine.
Every expected figure in the tests is worked out by hand from these rows.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import duckdb

from pipelines import contract, indicators, periods, validation, warehouse

EVENT_SOURCES = [t.name for t in contract.SOURCES]


class Warehouse:
    def __init__(self) -> None:
        self.conn = duckdb.connect()
        warehouse.create_all(self.conn)
        self.conn.executemany(
            'INSERT INTO conformed.drug_groups (bnf_prefix, "group", source_file, source_line) VALUES (?, ?, ?, ?)',
            [(p, g, "drug_groups.csv", n + 2) for n, (p, g) in enumerate(contract.DEFAULT_DRUG_GROUPS)],
        )
        self._lines: dict[str, int] = defaultdict(lambda: 1)

    # --- reference data ---------------------------------------------------------------

    def prison(self, code: str, *, operator: str = "public", region: str = "London",
               function: str = "reception", has_xray: bool = True, name: str | None = None) -> None:
        self.conn.execute(
            """INSERT INTO conformed.prisons (prison_code, prison_name, region, "function", operator, has_xray,
               source_file, source_line) VALUES (?, ?, ?, ?, ?, ?, 'prisons.csv', 2)""",
            [code, name or f"HMP {code}", region, function, operator, has_xray],
        )

    def population(self, prison: str, month: str, average: int) -> None:
        self.conn.execute(
            """INSERT INTO conformed.population (prison_code, month, average_population, source_file, source_line)
               VALUES (?, ?, ?, 'population.csv', 2)""",
            [prison, month, average],
        )

    # --- event rows -------------------------------------------------------------------

    def _insert(self, source: str, primary: str, values: dict[str, Any]) -> None:
        month = str(values[primary])[:7]
        file = f"{source}/{month}.csv"
        self._lines[file] += 1
        values = {**values, "source_month": month, "source_file": file, "source_line": self._lines[file]}
        columns = ", ".join(f'"{c}"' for c in values)
        placeholders = ", ".join("?" for _ in values)
        self.conn.execute(f"INSERT INTO conformed.{source} ({columns}) VALUES ({placeholders})", list(values.values()))

    def reception(self, reception_id: str, person: str, prison: str, at: str, *, type: str = "new",
                  **columns: Any) -> None:
        self._insert("reception_screening", "reception_datetime", {
            "reception_id": reception_id, "person_key": person, "prison_code": prison,
            "reception_datetime": at, "reception_type": type, "sex": "M", "age": 30, **columns,
        })

    def bbv(self, event_id: str, person: str, prison: str, virus: str, offered: str, outcome: str,
            **columns: Any) -> None:
        self._insert("bbv_testing", "offer_datetime", {
            "bbv_event_id": event_id, "person_key": person, "prison_code": prison, "virus": virus,
            "offer_datetime": offered, "offer_outcome": outcome, **columns,
        })

    def tb(self, event_id: str, person: str, prison: str, at: str, event_type: str, **columns: Any) -> None:
        self._insert("tb_screening", "event_datetime", {
            "tb_event_id": event_id, "person_key": person, "prison_code": prison, "event_datetime": at,
            "event_type": event_type, **columns,
        })

    def smoking(self, event_id: str, person: str, prison: str, at: str, event_type: str, **columns: Any) -> None:
        self._insert("smoking", "event_datetime", {
            "smoking_event_id": event_id, "person_key": person, "prison_code": prison, "event_datetime": at,
            "event_type": event_type, **columns,
        })

    def item(self, item_id: str, person: str, prison: str, at: str, bnf_code: str, *,
             in_possession: bool = False, **columns: Any) -> None:
        self._insert("prescribing", "issue_datetime", {
            "item_id": item_id, "person_key": person, "prison_code": prison, "issue_datetime": at,
            "bnf_code": bnf_code, "quantity": 28.0, "days_supply": 28, "in_possession": in_possession,
            **columns,
        })

    # --- quality tables ---------------------------------------------------------------

    def file_load(self, source: str, month: str, status: str = "loaded") -> None:
        self.conn.execute(
            """INSERT INTO quality.file_loads (source, month, file, sha256, status, rows_read, rows_loaded,
               rows_quarantined, message, loaded_at) VALUES (?, ?, ?, 'x', ?, 0, 0, 0, NULL, now())""",
            [source, month, f"{source}/{month}.csv", status],
        )

    def receive(self, *months: str, sources: list[str] | None = None) -> None:
        """Record the extracts of these months as loaded (all five sources by default)."""
        for month in months:
            for source in sources or EVENT_SOURCES:
                self.file_load(source, month)

    def summary(self, source: str, month: str, prison: str | None, read: int, loaded: int) -> None:
        reasons = ", ".join(contract.REASONS)
        zeros = ", ".join("0" for _ in contract.REASONS)
        self.conn.execute(
            f"""INSERT INTO quality.summary (source, month, prison_code, rows_read, rows_loaded, rows_quarantined,
                {reasons}) VALUES (?, ?, ?, ?, ?, ?, {zeros})""",
            [source, month, prison, read, loaded, read - loaded],
        )

    # --- running the engine -----------------------------------------------------------

    def link(self) -> None:
        """Link events to receptions with the pipeline's own linkage step (the contract's
        rule: same person and prison, latest reception at or before the event)."""
        for table in contract.SOURCES:
            if table.links_to_reception:
                validation.link_events(self.conn, table, "0000-01")

    def compute(self, *months: str) -> list[dict]:
        self.link()
        return [indicators.compute_month(self.conn, m) for m in months]

    def build(self, **kwargs: Any) -> int:
        return indicators.build_indicator_values(self.conn, **kwargs)

    # --- reading results --------------------------------------------------------------

    def prison_month(self, indicator: str, month: str) -> dict[str | None, tuple[int, float]]:
        rows = self.conn.execute(
            """SELECT prison_code, numerator, denominator FROM indicators.prison_month
               WHERE indicator_id = ? AND month = ?""",
            [indicator, periods.parse_month(month)],
        ).fetchall()
        return {p: (n, d) for p, n, d in rows}

    def members(self, indicator: str, month: str) -> dict[str, dict[str, Any]]:
        """Member rows keyed by unit_id (person rows of distinct-person indicators by
        'prison:person_key:component', as a person may count at two prisons)."""
        frame = self.conn.execute(
            "SELECT * FROM indicators.members WHERE indicator_id = ? AND month = ?",
            [indicator, periods.parse_month(month)],
        ).df()
        out = {}
        for row in frame.to_dict("records"):
            key = row["unit_id"]
            if row["component"] is not None:
                key = f"{row['prison_code']}:{key}:{row['component']}"
            assert key not in out, f"unit {key} repeated in {indicator} {month}"
            out[key] = row
        return out

    def value(self, indicator: str, period_type: str, period_start: str, level: str,
              area_code: str) -> dict[str, Any]:
        rows = self.conn.execute(
            """SELECT * FROM indicators.indicator_values WHERE indicator_id = ? AND period_type = ?
               AND period_start = ? AND level = ? AND area_code = ?""",
            [indicator, period_type, period_start, level, area_code],
        ).df().to_dict("records")
        assert len(rows) == 1, f"{len(rows)} rows for {indicator} {period_type} {period_start} {level} {area_code}"
        return rows[0]
