"""Which month partitions changed since each downstream step last caught up.

A monthly refresh changes a few months; the publication steps (the Great Expectations
audit, the analysts' database) must not redo every month of history to take them in,
or a refresh would grow with the years kept. So writers log what they changed and each
consumer keeps a cursor:

- `record(conn, subject, months)` appends (subject, month) rows to `pipeline.changes`
  with an increasing sequence number, in the writer's transaction. A subject is a source
  or reference table name (its conformed rows, quarantine and summary changed) or
  `indicators` (members and prison-months). A reference table is recorded with month
  NULL: every month may be affected.
- `pending(conn, consumer)` is what changed after the consumer's cursor; with no cursor
  (a new warehouse, or one written by an earlier version) the consumer must rebuild
  everything.
- `advance(conn, consumer, upto)` moves the cursor, in the consumer's transaction, so
  a consumer that fails takes the same changes again next time.

The `pipeline` schema is bookkeeping: it is not copied to the analysts' database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb

from pipelines import contract

SCHEMA = "pipeline"
INDICATORS = "indicators"  # members and prison-months, logged by the indicator engine
INDICATOR_VALUES = "indicator_values"  # published figures, logged by pipelines.publication
REFERENCES = tuple(t.name for t in contract.REFERENCES)

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE SEQUENCE IF NOT EXISTS {SCHEMA}.change_sequence;
CREATE TABLE IF NOT EXISTS {SCHEMA}.changes (
  sequence BIGINT NOT NULL DEFAULT nextval('{SCHEMA}.change_sequence'),
  subject VARCHAR NOT NULL,
  month VARCHAR
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.cursors (
  consumer VARCHAR PRIMARY KEY,
  sequence BIGINT NOT NULL
);
"""


@dataclass
class Pending:
    """What changed for one consumer: months by subject (None = the whole subject), after its
    cursor `since` (None: it has none) and up to `upto`."""

    upto: int
    everything: bool
    months: dict[str, set[str | None]] = field(default_factory=dict)
    since: int | None = None

    def months_of(self, subject: str) -> set[str | None]:
        return self.months.get(subject, set())

    def months_or_all(self, *subjects: str) -> set[str] | None:
        """The months the subjects changed in, or None when every month must be rebuilt: the
        first time, when a subject changed everything, or when a reference table changed
        (areas and populations feed every month)."""
        months = set().union(*(self.months_of(s) for s in subjects))
        if self.everything or None in months or any(r in self.months for r in REFERENCES):
            return None
        return months

    @property
    def nothing(self) -> bool:
        return not self.everything and not self.months


def create(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(DDL)


def record(conn: duckdb.DuckDBPyConnection, subject: str, months: Iterable[str | None]) -> None:
    rows = [(subject, m) for m in dict.fromkeys(months)]
    if rows:
        conn.executemany(f"INSERT INTO {SCHEMA}.changes (subject, month) VALUES (?, ?)", rows)


def pending(conn: duckdb.DuckDBPyConnection, consumer: str) -> Pending:
    (upto,) = conn.execute(f"SELECT coalesce(max(sequence), 0) FROM {SCHEMA}.changes").fetchone()
    cursor = conn.execute(f"SELECT sequence FROM {SCHEMA}.cursors WHERE consumer = ?", [consumer]).fetchone()
    if cursor is None:
        return Pending(upto, everything=True)
    months: dict[str, set[str | None]] = {}
    for subject, month in conn.execute(
        f"SELECT DISTINCT subject, month FROM {SCHEMA}.changes WHERE sequence > ? AND sequence <= ?",
        [cursor[0], upto],
    ).fetchall():
        months.setdefault(subject, set()).add(month)
    return Pending(upto, everything=False, months=months, since=cursor[0])


def changed_since(conn: duckdb.DuckDBPyConnection, sequence: int, subjects: Iterable[str]) -> bool:
    """Whether any of the subjects changed after position `sequence` of the log."""
    subjects = list(subjects)
    (later,) = conn.execute(f"SELECT count(*) FROM {SCHEMA}.changes WHERE sequence > ? AND list_contains(?, subject)",
                            [sequence, subjects]).fetchone()
    return later > 0


def advance(conn: duckdb.DuckDBPyConnection, consumer: str, upto: int) -> None:
    """Move the cursor; a consumer keeping several must move the one furthest behind first, or the
    changes it still needs are deleted as taken in by everyone."""
    conn.execute(f"INSERT OR REPLACE INTO {SCHEMA}.cursors VALUES (?, ?)", [consumer, upto])
    # What every consumer has taken in is no longer needed.
    conn.execute(f"""
        DELETE FROM {SCHEMA}.changes
        WHERE sequence <= (SELECT min(sequence) FROM {SCHEMA}.cursors)
    """)


def forget(conn: duckdb.DuckDBPyConnection, consumer: str) -> None:
    """Drop a cursor: the consumer rebuilds everything next time, and holds back no deletion."""
    conn.execute(f"DELETE FROM {SCHEMA}.cursors WHERE consumer = ?", [consumer])
