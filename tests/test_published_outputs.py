"""What the indicators, statistics, publication and drill-down promise, on the refreshed demo sample."""

from __future__ import annotations

import csv
import filecmp

import duckdb
import pytest

from pipelines import action_lists, catalogue, settings


@pytest.fixture(scope="module")
def analyst(refreshed_sample):
    with duckdb.connect(str(refreshed_sample.analyst), read_only=True) as conn:
        yield conn


def test_committed_sample_is_the_generators_default_output(refreshed_sample):
    committed = settings.PROJECT_ROOT / "data" / "sample"
    files = sorted(p.relative_to(committed) for p in committed.rglob("*.csv"))
    assert files == sorted(p.relative_to(refreshed_sample.landing) for p in refreshed_sample.landing.rglob("*.csv"))
    match, mismatch, errors = filecmp.cmpfiles(committed, refreshed_sample.landing, [str(f) for f in files],
                                               shallow=False)
    assert not mismatch and not errors


def test_every_indicator_and_level_is_filled(analyst):
    rows = dict(analyst.execute("SELECT indicator_id, count(DISTINCT level) FROM indicators.indicator_values "
                                "GROUP BY 1").fetchall())
    assert len(rows) == 28 and len(catalogue.load_catalogue()) == 28
    assert rows.pop("P04a") == 1
    assert set(rows.values()) == {5}
    periods = analyst.execute("SELECT period_type, count(DISTINCT period_start) FROM indicators.indicator_values "
                              "GROUP BY 1 ORDER BY 1").fetchall()
    assert periods == [("financial_year", 2), ("month", 24), ("quarter", 8)]


def test_every_headline_indicator_has_a_value_wherever_its_denominator_is_not_zero(analyst):
    missing = analyst.execute("""
        SELECT v.indicator_id, v.area_code, v.period_start FROM indicators.indicator_values v
        JOIN indicators.catalogue c ON c.code = v.indicator_id AND c.headline
        WHERE v.level = 'prison' AND v.period_type = 'month' AND v.denominator > 0 AND v.value IS NULL""").fetchall()
    assert missing == []
    filled = analyst.execute("""
        SELECT count(*) FROM indicators.indicator_values v JOIN indicators.catalogue c ON c.code = v.indicator_id
        WHERE c.headline AND v.level = 'prison' AND v.period_type = 'month' AND v.value IS NOT NULL""").fetchone()[0]
    assert filled > 11 * 12 * 20


def test_members_sum_to_every_prison_month_numerator_and_denominator(analyst):
    differences = analyst.execute("""
        WITH sums AS (
          SELECT indicator_id, month, prison_code, sum(numerator) AS n, sum(denominator) AS d
          FROM indicators.members WHERE prison_code IS NOT NULL GROUP BY ALL)
        SELECT v.indicator_id, v.area_code, v.period_start, v.numerator, s.n, v.denominator, s.d
        FROM indicators.indicator_values v
        LEFT JOIN sums s ON s.indicator_id = v.indicator_id AND s.month = v.period_start
                        AND s.prison_code = v.area_code
        WHERE v.level = 'prison' AND v.period_type = 'month' AND v.indicator_id <> 'P04a'
          AND (coalesce(s.n, 0) <> v.numerator OR abs(coalesce(s.d, 0) - coalesce(v.denominator, 0)) > 1e-6)
    """).fetchall()
    checked = analyst.execute("SELECT count(DISTINCT indicator_id) FROM indicators.members").fetchone()[0]
    assert checked == 27
    assert differences == []


def test_intervals_and_comparisons_are_filled(analyst):
    gaps = analyst.execute("""
        SELECT count(*) FROM indicators.indicator_values
        WHERE value IS NOT NULL AND (lower_ci_95 IS NULL OR upper_ci_95 IS NULL OR lower_ci_95 > value
                                     OR upper_ci_95 < value OR lower_ci_99_8 > lower_ci_95)""").fetchone()[0]
    assert gaps == 0
    comparisons = dict(analyst.execute("SELECT level = 'england', count(DISTINCT comparison) "
                                       "FROM indicators.indicator_values GROUP BY 1").fetchall())
    assert comparisons[True] == 1 and comparisons[False] >= 5


def test_published_table_shows_no_numerator_from_1_to_7_below_england(analyst):
    small = analyst.execute("SELECT count(*) FROM published.indicator_values "
                            "WHERE level <> 'england' AND numerator BETWEEN 1 AND 7").fetchone()[0]
    suppressed = analyst.execute("SELECT count(*) FROM published.indicator_values WHERE suppressed").fetchone()[0]
    assert small == 0 and suppressed > 0


def test_every_table_and_column_of_the_analysts_database_has_a_comment(analyst):
    tables = analyst.execute("SELECT schema_name, table_name, comment FROM duckdb_tables()").fetchall()
    assert {s for s, _, _ in tables} == {"conformed", "indicators", "published", "quality"}
    assert [t for _, t, comment in tables if not comment or comment == t] == []
    columns = analyst.execute("""SELECT c.table_name, c.column_name, c.comment FROM duckdb_columns() c
                                 JOIN duckdb_tables() t USING (schema_name, table_name)""").fetchall()
    assert [(t, c) for t, c, comment in columns if not comment or comment == c.replace("_", " ")] == []
    assert not {"raw"} & {s for (s,) in analyst.execute("SELECT DISTINCT schema_name FROM duckdb_tables()").fetchall()}


def test_action_lists_name_receptions_that_still_need_action(refreshed_sample, analyst):
    folder = refreshed_sample.out / "restricted" / "action-lists"
    files = sorted(folder.glob("*.csv"))
    assert files, "no action lists written"
    listed = 0
    for path in files:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert list(rows[0]) == list(action_lists.COLUMNS)
        assert {r["prison_code"] for r in rows} == {path.stem}
        listed += len(rows)
        for row in rows[:20]:
            numerator = analyst.execute(
                "SELECT numerator FROM indicators.members WHERE indicator_id = ? AND unit_id = ?",
                [row["indicator_id"], row["reception_id"]]).fetchone()[0]
            assert numerator == 0
    assert listed == analyst.execute("SELECT count(*) FROM indicators.action_list").fetchone()[0]
    report = refreshed_sample.out / "report"
    if report.exists():
        assert not any("restricted" in str(p) or "action" in p.name for p in report.rglob("*"))
