"""The Great Expectations suites and the SQL quarantine rules agree row for row."""

import pytest

from pipelines import contract, expectations, validation
from tests.test_bad_input import FILES, M, ROW_FAULTS
from tests.warehouse_fixtures import Landing


@pytest.mark.parametrize(("name", "source"), [(f[0], f[1]) for f in ROW_FAULTS], ids=[f[0] for f in ROW_FAULTS])
def test_suite_flags_exactly_the_quarantined_rows_with_their_reason(tmp_path, name, source):
    landing = Landing(tmp_path)
    landing.deliver(source, M, FILES / f"{name}.csv")
    landing.load(source, M)
    table = contract.source(source)
    judged = validation.validate(landing.conn, table, M, keep_judged="all").judged
    prisons = [r[0] for r in landing.conn.execute("SELECT prison_code FROM conformed.prisons").fetchall()]
    results = expectations.run_suite(table, judged, M, prisons)
    assert not [r for r in results if r["error"]], "an expectation raised"
    flagged: dict[int, set[str]] = {}
    for result in results:
        for line in result["lines"]:
            flagged.setdefault(line, set()).add(result["reason"])
    quarantined = {line: reason for line, reason in landing.quarantine(source, M) if reason != "malformed_row"}
    assert set(flagged) == set(quarantined)
    for line, reason in quarantined.items():
        assert reason in flagged[line]
        assert min(flagged[line], key=contract.REASONS.index) == reason
