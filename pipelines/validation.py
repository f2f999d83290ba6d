"""Row validation: every raw record ends in its conformed table or in the quarantine.

The checks are generated from the contract (pipelines.contract) as one SQL CASE
in precedence order, so the first reason that applies wins and a month of a
national extract is judged in one set-based pass inside DuckDB. The Great
Expectations suites (pipelines.expectations) are generated from the same
contract objects and run beside this as the auditable report of each month.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipelines import changes, contract
from pipelines.pseudonymise import DIGIT_RUN_PATTERN

DATETIME_FORMATS = "['%Y-%m-%d %H:%M:%S', '%Y-%m-%d %H:%M']"
_TRUE = ", ".join(f"'{v}'" for v in contract.BOOLEAN_TRUE)
_FALSE = ", ".join(f"'{v}'" for v in contract.BOOLEAN_FALSE)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name + '"'


def _shown(expr: str) -> str:
    """A value as it may appear in a detail: masked digit runs, at most 80 characters."""
    masked = f"regexp_replace({expr}, '{DIGIT_RUN_PATTERN}', '##########', 'g')"
    return f"(CASE WHEN length({expr}) > 80 THEN left({masked}, 77) || '...' ELSE {masked} END)"


def typed_expression(column: contract.Column, raw: str) -> str:
    """DuckDB expression giving the typed value of a raw text column, NULL when not of its type."""
    kind = column.type
    if kind == "datetime":
        return (f"CASE WHEN regexp_full_match({raw}, '{contract.DATETIME_PATTERN}') "
                f"THEN try_strptime(replace({raw}, 'T', ' '), {DATETIME_FORMATS}) END")
    if kind == "date":
        return (f"CASE WHEN regexp_full_match({raw}, '{contract.DATE_PATTERN}') "
                f"THEN CAST(try_strptime({raw}, '%Y-%m-%d') AS DATE) END")
    if kind == "bool":
        return f"CASE WHEN lower({raw}) IN ({_TRUE}) THEN true WHEN lower({raw}) IN ({_FALSE}) THEN false END"
    if kind == "integer":
        return f"CASE WHEN regexp_full_match({raw}, '{contract.INTEGER_PATTERN}') THEN TRY_CAST({raw} AS INTEGER) END"
    if kind == "number":
        return f"CASE WHEN regexp_full_match({raw}, '{contract.NUMBER_PATTERN}') THEN TRY_CAST({raw} AS DOUBLE) END"
    if kind == "month":
        return f"CASE WHEN regexp_full_match({raw}, '{contract.MONTH_PATTERN}') THEN {raw} END"
    return raw


_TYPE_WORDS = {
    "datetime": "a datetime (YYYY-MM-DDTHH:MM[:SS])",
    "date": "a date (YYYY-MM-DD)",
    "bool": "a boolean (true/false, y/n, yes/no, 1/0)",
    "integer": "a whole number",
    "number": "a plain decimal number",
    "month": "a month (YYYY-MM)",
}


@dataclass(frozen=True)
class Check:
    reason: str
    label: str  # the column or rule checked, as the quality reports name it
    condition: str  # SQL, true when the row fails
    detail: str  # SQL text expression


def _value_detail(name: str, raw: str, problem: str) -> str:
    return f"{_quote(name + ': ' + chr(39))} || {_shown(raw)} || {_quote(chr(39) + ' ' + problem)}"


def column_checks(column: contract.Column) -> list[Check]:
    """Checks on one column's own value, in reason order."""
    raw, typed, name = _ident("raw__" + column.name), _ident(column.conformed_name), column.name
    if column.type == "nhs_number":
        # The digits never reach SQL: ingest recorded only what was wrong with them.
        return [Check("missing_required_value", name, "nhs_number_problem = 'empty'", _quote(f"{name} is empty"))]
    checks: list[Check] = []
    if column.required:
        checks.append(Check("missing_required_value", name, f"{raw} IS NULL", _quote(f"{name} is empty")))
    if column.type in _TYPE_WORDS:
        checks.append(Check("invalid_value", f"{name} type", f"{raw} IS NOT NULL AND {typed} IS NULL",
                            _value_detail(name, raw, "is not " + _TYPE_WORDS[column.type])))
    if column.allowed:
        allowed = ", ".join(_quote(v) for v in column.allowed)
        checks.append(Check("invalid_value", f"{name} allowed values",
                            f"{raw} IS NOT NULL AND {raw} NOT IN ({allowed})",
                            _value_detail(name, raw, "is not one of " + ", ".join(column.allowed))))
    if column.pattern:
        checks.append(Check("invalid_value", f"{name} pattern",
                            f"{raw} IS NOT NULL AND NOT regexp_full_match({raw}, {_quote(column.pattern)})",
                            _value_detail(name, raw, "does not match " + column.pattern)))
    bounds = []
    if column.minimum is not None:
        bounds.append(f"{typed} {'<=' if column.exclusive_minimum else '<'} {column.minimum}")
    if column.maximum is not None:
        bounds.append(f"{typed} > {column.maximum}")
    if bounds:
        checks.append(Check("invalid_value", f"{name} range", f"{typed} IS NOT NULL AND ({' OR '.join(bounds)})",
                            f"{_quote(name + ': ')} || {_shown(raw)} || "
                            f"{_quote(' is out of range (' + column.rule_text() + ')')}"))
    return checks


def _timestamp(column: str) -> str:
    return f"strftime({column}, '%Y-%m-%d %H:%M:%S')"


def table_checks(table: contract.Table) -> list[Check]:
    """All checks of a table in precedence order (reasons in contract order, then columns)."""
    checks: list[Check] = []
    for column in table.columns:
        checks += column_checks(column)
    for rule in table.rules:
        if rule.reason in ("missing_required_value", "invalid_value"):
            checks.append(Check(rule.reason, rule.name, rule.violated,
                                _quote(rule.description.rstrip(".") + " (" + ", ".join(rule.columns) + ")")))
    if any(c.type == "nhs_number" for c in table.columns):
        checks.append(Check("invalid_nhs_number", "nhs_number check digit",
                            "nhs_number_problem IS NOT NULL AND nhs_number_problem <> 'empty'",
                            "'nhs_number (HMAC ' || person_key || '): ' || nhs_number_problem"))
    if table.is_event or table.name == "population":
        checks.append(Check("unknown_prison", "prison_code in reference",
                            "prison_code NOT IN (SELECT prison_code FROM conformed.prisons)",
                            _value_detail("prison_code", _ident("raw__prison_code"),
                                          "is not a prison in reference/prisons.csv (or its row was quarantined)")))
    if table.primary_datetime:
        primary = _ident(table.primary_datetime)
        checks.append(Check("outside_file_month", f"{table.primary_datetime} in file month",
                            "primary_month <> source_month",
                            f"{_quote(table.primary_datetime + ': ')} || {_timestamp(primary)} || "
                            "' is not in the file month ' || source_month"))
    for rule in table.rules:
        if rule.reason == "sequence_error":
            earlier, later = rule.columns
            checks.append(Check("sequence_error", rule.name, rule.violated,
                                f"{_quote(later + ' ')} || {_timestamp(later)} || "
                                f"{_quote(' is before ' + earlier + ' ')} || {_timestamp(earlier)}"))
    for key in duplicate_keys(table):
        shown_key = _shown(" || ".join(_ident("raw__" + k) for k in key))
        checks.append(Check("duplicate_id", " and ".join(key) + " unique", "first_file IS NOT NULL",
                            f"{_quote(' and '.join(key) + ' ' + chr(39))} || {shown_key} || "
                            f"{_quote(chr(39) + ' already used by ')} || first_file || ' line ' || first_line"))
    order = {reason: i for i, reason in enumerate(contract.REASONS)}
    return sorted(checks, key=lambda c: order[c.reason])


def duplicate_keys(table: contract.Table) -> list[tuple[str, ...]]:
    if table.id_column:
        return [(table.id_column,)]
    if table.name == "population":
        return [("prison_code", "month")]
    if table.name == "drug_groups":
        return [("bnf_prefix", "group")]
    return []


def _typed_select(table: contract.Table) -> str:
    parts = []
    for column in table.columns:
        if column.type == "nhs_number":
            parts += ["r.person_key", "r.nhs_number_problem"]
            continue
        raw = f"r.{_ident(column.name)}"
        parts.append(f"{raw} AS {_ident('raw__' + column.name)}")
        parts.append(f"{typed_expression(column, raw)} AS {_ident(column.name)}")
    if table.primary_datetime:
        primary = typed_expression(table.column(table.primary_datetime), f"r.{_ident(table.primary_datetime)}")
        parts.append(f"strftime({primary}, '%Y-%m') AS primary_month")
    return ", ".join(parts)


def judge_sql(table: contract.Table, rows: str | None = None) -> str:
    """SELECT over raw rows giving typed columns, `reason` and `detail`.

    `rows` is a SQL condition on the raw table (alias r) choosing the rows to judge,
    e.g. one file month; None judges the whole table (reference tables).
    """
    checks = table_checks(table)
    reason = " ".join(f"WHEN {c.condition} THEN {_quote(c.reason)}" for c in checks)
    detail = " ".join(f"WHEN {c.condition} THEN {c.detail}" for c in checks)
    where = f"WHERE {rows}" if rows else ""
    keys = duplicate_keys(table)
    first = "NULL AS first_file, NULL AS first_line"
    join = ""
    if keys:
        key_cols = ", ".join(_ident(k) for k in keys[0])
        order = "source_month, source_line" if table.is_event else "source_line"
        ranked = f"raw.{table.name}"  # a reference table: all its rows
        if rows:
            # Only the judged rows' ids matter (earlier rows anywhere in the table can own them), and of
            # those only the ids that occur more than once: only their rows are ranked, not every row
            # of the month (docs/decisions.md, Validation).
            ranked = f"""(
              WITH candidates AS MATERIALIZED (
                SELECT {key_cols}, {order}, source_file FROM raw.{table.name}
                WHERE ({key_cols}) IN (SELECT ({key_cols}) FROM raw.{table.name} r {where}))
              SELECT * FROM candidates
              WHERE ({key_cols}) IN (SELECT ({key_cols}) FROM candidates GROUP BY {key_cols} HAVING count(*) > 1))"""
        join = f"""
        LEFT JOIN (
          SELECT {key_cols}, source_file, source_line,
                 first_value(source_file) OVER w AS first_seen_file,
                 first_value(source_line) OVER w AS first_seen_line,
                 row_number() OVER w AS occurrence
          FROM {ranked}
          WINDOW w AS (PARTITION BY {key_cols} ORDER BY {order})
        ) d USING ({key_cols}, source_file, source_line)"""
        first = ("CASE WHEN d.occurrence > 1 THEN d.first_seen_file END AS first_file, "
                 "CASE WHEN d.occurrence > 1 THEN d.first_seen_line END AS first_line")
    lineage = "r.source_month, r.source_file, r.source_line" if table.is_event else "r.source_file, r.source_line"
    return f"""
    SELECT *, CASE {reason} END AS reason, CASE {detail} END AS detail FROM (
      SELECT {_typed_select(table)}, {lineage}, r.original_row, {first}
      FROM raw.{table.name} r {join}
      {where}
    )"""


def rule_failures(conn, table: contract.Table) -> list[tuple[str, str, int]]:
    """(reason, rule, rows failing) for every rule a judged row breaks, counted independently
    (a row can break several): the month's report in the terms of the expectation suite."""
    checks = table_checks(table)
    counts = conn.execute("SELECT " + ", ".join(f"count_if({c.condition})" for c in checks)
                          + " FROM judged WHERE reason IS NOT NULL").fetchone()
    return [(c.reason, c.label, n) for c, n in zip(checks, counts, strict=True) if n]


def month_rows(month: str) -> str:
    return f"r.source_month = {_quote(month)}"


@dataclass
class MonthOutcome:
    """What validation did to one file (a source month, or a reference table)."""

    source: str
    month: str | None
    rows_loaded: int
    rows_quarantined: int
    by_reason: dict[str, int]
    judged: object = None  # the month's judged rows as a pandas DataFrame, when asked for
    failures: list | None = None  # (reason, rule, rows failing) per rule broken

    @property
    def rows_read(self) -> int:
        return self.rows_loaded + self.rows_quarantined

    @property
    def quarantined_share(self) -> float:
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0


def _month_filter(column: str, month: str | None) -> str:
    return f"{column} = {_quote(month)}" if month else f"{column} IS NULL"


def validate(conn: duckdb.DuckDBPyConnection, table: contract.Table, month: str | None,
             keep_judged: str | None = None) -> MonthOutcome:
    """Rebuild the conformed rows, quarantine and summary of one source month (or reference table).

    keep_judged ("all" or "failing") returns those judged rows as a DataFrame (for
    Great Expectations). The caller owns the transaction: delete-then-insert is
    only idempotent inside one.
    """
    name = table.name
    before = None if table.is_event else _reference_fingerprint(conn, name)
    rows = month_rows(month) if month else None
    conn.execute(f"CREATE OR REPLACE TEMP TABLE judged AS {judge_sql(table, rows)}")
    columns = [n for n, _ in contract.conformed_columns(table)
               if not (table.links_to_reception and n == "reception_id")]
    column_list = ", ".join(_ident(c) for c in columns)
    if table.is_event:
        conn.execute(f"DELETE FROM conformed.{name} WHERE source_month = ?", [month])
    else:
        conn.execute(f"DELETE FROM conformed.{name}")
    valid = f"SELECT {column_list} FROM judged WHERE reason IS NULL"
    if table.links_to_reception:  # linked as they land to the receptions already loaded
        conn.execute(f"INSERT INTO conformed.{name} ({column_list}, reception_id) "
                     f"SELECT {column_list}, linked_reception_id FROM ({linked(table, valid)})")
    else:
        conn.execute(f"INSERT INTO conformed.{name} ({column_list}) {valid}")
    conn.execute(f"DELETE FROM quality.quarantine WHERE source = ? AND {_month_filter('month', month)}", [name])
    prison = "prison_code" if "prison_code" in table.column_names else "NULL"
    known_prison = (f"CASE WHEN {prison} IN (SELECT prison_code FROM conformed.prisons) THEN {prison} END"
                    if prison != "NULL" else "NULL")
    conn.execute(f"""
        INSERT INTO quality.quarantine
        SELECT ?, ?, source_file, source_line, {known_prison}, reason, detail, original_row
        FROM judged WHERE reason IS NOT NULL
        UNION ALL
        SELECT source, month, file, line, NULL, 'malformed_row', detail, original_row
        FROM raw.malformed_records WHERE source = ? AND {_month_filter('month', month)}
    """, [name, month, name])
    if table.is_event:
        _summarise(conn, name, month, known_prison)
    counts = dict(conn.execute(
        f"SELECT reason, count(*) FROM quality.quarantine WHERE source = ? AND {_month_filter('month', month)} "
        "GROUP BY reason", [name]).fetchall())
    loaded = conn.execute("SELECT count(*) FROM judged WHERE reason IS NULL").fetchone()[0]
    quarantined = sum(counts.values())
    conn.execute(f"""
        UPDATE quality.file_loads SET rows_loaded = ?, rows_quarantined = ?
        WHERE source = ? AND {_month_filter('month', month)} AND status <> 'rejected'
    """, [loaded, quarantined, name])
    judged = None
    if keep_judged:
        where = "WHERE reason IS NOT NULL" if keep_judged == "failing" else ""
        judged = conn.execute(f"SELECT * EXCLUDE (original_row) FROM judged {where}").df()
    failures = rule_failures(conn, table)
    conn.execute("DROP TABLE judged")
    # A reference table is validated on every refresh; only a real change may make the
    # publication rebuild every period (pipelines.changes).
    if table.is_event or _reference_fingerprint(conn, name) != before:
        changes.record(conn, name, [month])
    return MonthOutcome(name, month, loaded, quarantined, counts, judged, failures)


def _reference_fingerprint(conn, name: str) -> tuple:
    """Row count and summed row hashes of a reference table and its quarantined rows."""
    return conn.execute(f"""
        SELECT (SELECT (count(*), sum(hash(c))) FROM conformed.{name} AS c),
               (SELECT (count(*), sum(hash(q))) FROM quality.quarantine AS q WHERE source = ?)
    """, [name]).fetchone()


def _summarise(conn, name: str, month: str, known_prison: str) -> None:
    """quality.summary for one source month: rows read, loaded and quarantined by prison and reason."""
    reason_sums = ", ".join(f"count(*) FILTER (WHERE reason = '{r}') AS {r}" for r in contract.REASONS)
    conn.execute("DELETE FROM quality.summary WHERE source = ? AND month = ?", [name, month])
    conn.execute(f"""
        INSERT INTO quality.summary
        SELECT ?, ?, prison_code, count(*), count(*) FILTER (WHERE reason IS NULL),
               count(*) FILTER (WHERE reason IS NOT NULL), {reason_sums}
        FROM (
          SELECT {known_prison} AS prison_code, reason FROM judged
          UNION ALL
          SELECT NULL, 'malformed_row' FROM raw.malformed_records WHERE source = ? AND month = ?
        )
        GROUP BY prison_code
    """, [name, month, name, month])


def months_affected_by_duplicates(conn, table: contract.Table, month: str) -> list[str]:
    """Later months whose duplicate verdicts may change when `month` is (re)loaded.

    The earliest row keeps an id whatever order months arrive in, so loading an
    earlier month can make a later row a duplicate (its id is now in this month),
    and revising it can clear one (its verdict named this month's file).
    """
    if not table.id_column:
        return []
    key = _ident(table.id_column)
    rows = conn.execute(f"""
        SELECT DISTINCT source_month FROM raw.{table.name}
        WHERE source_month > ? AND {key} IN (SELECT {key} FROM raw.{table.name} WHERE source_month = ?)
        UNION
        SELECT DISTINCT month FROM quality.quarantine
        WHERE source = ? AND month > ? AND reason = 'duplicate_id'
          AND contains(detail, ' already used by ' || ? || '/' || ? || '.')
        ORDER BY 1
    """, [month, month, table.name, month, table.name, month]).fetchall()
    return [r[0] for r in rows]


def linked(table: contract.Table, events: str) -> str:
    """The rows of `events` (a query over rows of an event table) with the `linked_reception_id`
    the contract's linkage rule gives them.

    The latest reception of the same person at the same prison at or before the event's primary
    datetime (ties: greatest reception_id); a departure does not stop linkage. ASOF JOIN finds
    the latest reception in one pass. Only the receptions of the people and prisons in these
    events can link: filtering them first keeps the cost of a month's linkage from growing with
    the years of receptions kept.
    """
    when = _ident(table.primary_datetime)
    return f"""
      WITH ev AS ({events})
      SELECT ev.*, r.reception_id AS linked_reception_id
      FROM ev
      ASOF LEFT JOIN (
        SELECT person_key, prison_code, reception_datetime, max(reception_id) AS reception_id
        FROM conformed.reception_screening
        WHERE (person_key, prison_code) IN (SELECT (person_key, prison_code) FROM ev)
        GROUP BY ALL
      ) r
      ON ev.person_key = r.person_key AND ev.prison_code = r.prison_code AND ev.{when} >= r.reception_datetime"""


def link_events(conn, table: contract.Table, from_month: str) -> None:
    """Set `reception_id` on the event rows already loaded from `from_month` on (`linked`): the
    receptions that landed can change their links.

    In a refresh the events of a month are validated after its receptions, so there is usually
    nothing to link: the UPDATE is skipped then, as even one that changes nothing scans the whole
    table (docs/decisions.md, Validation).
    """
    id_col, when = _ident(table.id_column), _ident(table.primary_datetime)
    months = [m for (m,) in conn.execute(
        f"SELECT DISTINCT source_month FROM conformed.{table.name} WHERE source_month >= ? ORDER BY 1",
        [from_month]).fetchall()]
    if not months:
        return
    changes.record(conn, table.name, months)
    events = (f"SELECT {id_col}, person_key, prison_code, {when} FROM conformed.{table.name} "
              f"WHERE source_month >= {_quote(from_month)}")
    conn.execute(f"""
        UPDATE conformed.{table.name} AS e SET reception_id = l.linked_reception_id
        FROM ({linked(table, events)}) l
        WHERE e.{id_col} = l.{id_col} AND e.source_month >= {_quote(from_month)}
    """)


def validate_partition(conn, table: contract.Table, month: str) -> tuple[MonthOutcome, list[str]]:
    """Validate a source month and everything its arrival changes elsewhere.

    Later months whose duplicate verdicts depend on this month are judged again (their
    events linked again as they are), and a receptions month refreshes the links of the events
    already loaded from it on (new receptions can change the link of any later event). Returns
    the month's outcome and the later months revalidated.
    """
    outcome = validate(conn, table, month)
    later = months_affected_by_duplicates(conn, table, month)
    for other in later:
        validate(conn, table, other)
    if table.name == "reception_screening":
        for source in contract.SOURCES:
            if source.links_to_reception:
                link_events(conn, source, month)
    return outcome, later
