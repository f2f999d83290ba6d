"""The Great Expectations suites and the SQL quarantine rules agree row for row."""

import pytest

from pipelines import contract, expectations, validation
from tests.test_bad_input import FILES, ROW_FAULTS, M
from tests.warehouse_fixtures import Landing

# The corpus files with rows that split into columns but break rules (malformed rows never reach GX).
RULE_FAULTS = [f for f in ROW_FAULTS if any(reason != "malformed_row" for reason in f[2].values())]


@pytest.mark.parametrize(("name", "source"), [(f[0], f[1]) for f in RULE_FAULTS], ids=[f[0] for f in RULE_FAULTS])
def test_suite_flags_exactly_the_quarantined_rows_with_their_reason(tmp_path, name, source):
    landing = Landing(tmp_path)
    landing.deliver(source, M, FILES / f"{name}.csv")
    landing.load(source, M)
    table = contract.source(source)
    judged = validation.validate(landing.conn, table, M, keep_judged="all").judged
    prisons = [r[0] for r in landing.conn.execute("SELECT prison_code FROM conformed.prisons").fetchall()]
    results = expectations.run_suite(table, judged, prisons)
    assert not [r for r in results if r["error"]], "an expectation raised"
    flagged: dict[int, set[str]] = {}
    for result in results:
        for _, line in result["rows"]:
            flagged.setdefault(line, set()).add(result["reason"])
    quarantined = {line: reason for line, reason in landing.quarantine(source, M) if reason != "malformed_row"}
    assert set(flagged) == set(quarantined)
    for line, reason in quarantined.items():
        assert reason in flagged[line]
        assert min(flagged[line], key=contract.REASONS.index) == reason


def test_audit_of_quarantined_rows_agrees_and_is_stored(tmp_path):
    landing = Landing(tmp_path)
    landing.deliver("reception_screening", M, FILES / "precedence.csv")
    landing.load("reception_screening", M)
    table = contract.source("reception_screening")
    results, problems = expectations.audit(landing.conn, table)
    assert problems == []
    expectations.store_results(landing.conn, table, results)
    stored = dict(landing.conn.execute(
        "SELECT reason, sum(rows_failing) FROM quality.expectation_results GROUP BY reason").fetchall())
    # Rows break several rules at once: every rule is counted, not only the first.
    assert stored["unknown_prison"] == 3 and stored["duplicate_id"] == 1 and stored["sequence_error"] == 2
