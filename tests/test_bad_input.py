"""The bad-input corpus: one file per fault, exact reasons, lines and counts for each."""

from __future__ import annotations

import pytest

from tests.warehouse_fixtures import CORPUS, Landing

FILES = CORPUS / "files"
M = "2024-01"

# file, source, {line: reason} quarantined, lines conformed
ROW_FAULTS = [
    ("too_few_fields", "reception_screening", {3: "malformed_row"}, [2, 4]),
    ("too_many_fields", "reception_screening", {3: "malformed_row"}, [2, 4]),
    ("open_quote", "reception_screening", {3: "malformed_row"}, [2, 4, 5]),
    ("non_utf8_bytes", "reception_screening", {3: "malformed_row"}, [2, 4]),
    ("missing_required_value", "reception_screening",
     {2: "missing_required_value", 3: "missing_required_value", 4: "missing_required_value"}, []),
    ("invalid_value", "reception_screening",
     {2: "invalid_value", 3: "invalid_value", 4: "invalid_value", 5: "invalid_value"}, [6]),
    ("invalid_nhs_number", "reception_screening",
     {2: "invalid_nhs_number", 3: "invalid_nhs_number", 5: "invalid_nhs_number"}, [4]),
    ("unknown_prison", "reception_screening", {2: "unknown_prison", 3: "unknown_prison"}, [4]),
    ("outside_file_month", "reception_screening", {2: "outside_file_month", 3: "outside_file_month"}, [4, 5]),
    ("sequence_error", "reception_screening",
     {2: "sequence_error", 3: "sequence_error", 4: "sequence_error"}, [5]),
    ("duplicate_id", "reception_screening", {3: "duplicate_id", 5: "duplicate_id"}, [2, 4]),
    # Each row breaks several rules: the first in contract order wins.
    ("precedence", "reception_screening",
     {2: "missing_required_value", 3: "invalid_value", 4: "invalid_nhs_number", 5: "unknown_prison",
      6: "outside_file_month", 7: "sequence_error", 8: "duplicate_id", 9: "missing_required_value"}, []),
    ("quoted_field_spanning_lines", "prescribing", {}, [2, 3, 5]),
    ("long_field", "prescribing", {}, [2]),
    ("bbv_rules", "bbv_testing",
     {2: "invalid_value", 3: "invalid_value", 4: "invalid_value", 5: "sequence_error", 7: "invalid_value"}, [6]),
    ("smoking_rules", "smoking",
     {2: "missing_required_value", 3: "missing_required_value", 4: "invalid_value", 5: "invalid_value"}, [6, 7]),
    ("header_only", "reception_screening", {}, []),
    ("bom_and_extra_column", "reception_screening", {}, [2]),
]


@pytest.mark.parametrize(("name", "source", "quarantined", "conformed"), ROW_FAULTS, ids=[f[0] for f in ROW_FAULTS])
def test_row_faults_are_quarantined_with_their_reason_and_line(tmp_path, name, source, quarantined, conformed):
    landing = Landing(tmp_path)
    landing.deliver(source, M, FILES / f"{name}.csv")
    loaded, checked = landing.load(source, M)
    assert loaded.status == "loaded"
    assert dict(landing.quarantine(source, M)) == quarantined
    assert landing.conformed_lines(source, M) == conformed
    counts = landing.file_load(source, M)
    assert counts["read"] == len(quarantined) + len(conformed)
    assert counts["read"] == counts["loaded"] + counts["quarantined"]
    assert (counts["loaded"], counts["quarantined"]) == (len(conformed), len(quarantined))


@pytest.mark.parametrize(("name", "message"), [
    ("empty", "empty"),
    ("bom_only", "empty"),
    ("random_bytes", "unreadable"),
    ("utf16", "unreadable"),
    ("missing_required_column", "required column(s) missing from the header: age"),
])
def test_file_level_faults_reject_the_file_and_nothing_else(tmp_path, name, message):
    landing = Landing(tmp_path)
    landing.deliver("reception_screening", M, FILES / f"{name}.csv")
    landing.deliver("reception_screening", "2024-02", FILES / "header_only.csv")
    loaded, _ = landing.load("reception_screening", M)
    assert loaded.status == "rejected"
    assert loaded.message.startswith(message)
    assert "Traceback" not in loaded.message
    assert landing.file_load("reception_screening", M) == {
        "status": "rejected", "read": 0, "loaded": 0, "quarantined": 0, "message": loaded.message}
    other, _ = landing.load("reception_screening", "2024-02")
    assert other.status == "loaded"


def test_quarantine_details_name_column_and_value_without_nhs_digits(tmp_path):
    landing = Landing(tmp_path)
    landing.deliver("reception_screening", M, FILES / "invalid_nhs_number.csv")
    landing.load("reception_screening", M)
    details = landing.conn.execute(
        "SELECT line, detail, original_row FROM quality.quarantine ORDER BY line").fetchall()
    assert details[0][1].startswith("nhs_number (HMAC ") and details[0][1].endswith("failed Modulus 11 check digit")
    assert details[1][1].endswith("not 10 digits after removing spaces")
    for _, detail, original in details:
        assert "9434765918" not in detail and "9434765918" not in original
    assert details[0][2] == "R1,##########,XAA,2024-01-05T10:00,new,M,30,,,"
    landing.deliver("reception_screening", "2024-02", "reception_id,nhs_number,prison_code,reception_datetime,"
                    "reception_type,sex,age\nR9,9434765919,XAA,2024-02-05T10:00,new,M,30 years\n")
    landing.load("reception_screening", "2024-02")
    assert landing.conn.execute("SELECT detail FROM quality.quarantine WHERE month = '2024-02'").fetchone()[0] == \
        "age: '30 years' is not a whole number"


@pytest.mark.parametrize("order", [("2024-01", "2024-02"), ("2024-02", "2024-01")])
def test_duplicate_ids_across_months_keep_the_earliest_whatever_the_load_order(tmp_path, order):
    landing = Landing(tmp_path)
    header = "reception_id,nhs_number,prison_code,reception_datetime,reception_type,sex,age\n"
    landing.deliver("reception_screening", "2024-01", header + "R1,9434765919,XAA,2024-01-05T10:00,new,M,30\n")
    landing.deliver("reception_screening", "2024-02", header + "R2,4010232137,XAA,2024-02-05T10:00,new,M,30\n"
                    "R1,9990000018,XAA,2024-02-06T10:00,new,F,41\n")
    for month in order:
        landing.load("reception_screening", month)
    assert landing.conformed_lines("reception_screening", "2024-01") == [2]
    assert landing.conformed_lines("reception_screening", "2024-02") == [2]
    assert landing.quarantine("reception_screening", "2024-02") == [(3, "duplicate_id")]
    detail = landing.conn.execute("SELECT detail FROM quality.quarantine WHERE month = '2024-02'").fetchone()[0]
    assert detail == "reception_id 'R1' already used by reception_screening/2024-01.csv line 2"
    for month in ("2024-01", "2024-02"):
        counts = landing.file_load("reception_screening", month)
        assert counts["read"] == counts["loaded"] + counts["quarantined"]


def test_revised_file_replaces_exactly_its_partition_and_unchanged_file_is_not_reloaded(tmp_path):
    landing = Landing(tmp_path)
    header = "reception_id,nhs_number,prison_code,reception_datetime,reception_type,sex,age\n"
    landing.deliver("reception_screening", "2024-01", header + "R1,9434765919,XAA,2024-01-05T10:00,new,M,30\n")
    landing.deliver("reception_screening", "2024-02", header + "R2,4010232137,XAA,2024-02-05T10:00,new,M,30\n")
    landing.load("reception_screening", "2024-01")
    landing.load("reception_screening", "2024-02")
    again, _ = landing.load("reception_screening", "2024-01")
    assert again.status == "unchanged"
    assert landing.conformed_lines("reception_screening", "2024-01") == [2]
    landing.deliver("reception_screening", "2024-01", header + "R3,9990000018,XAA,2024-01-07T10:00,new,F,41\n"
                    "R4,1234567881,XAA,2024-01-08T10:00,new,F,41\n")
    revised, _ = landing.load("reception_screening", "2024-01")
    assert revised.status == "loaded"
    ids = landing.conn.execute("SELECT source_month, reception_id FROM conformed.reception_screening "
                               "ORDER BY 1, 2").fetchall()
    assert ids == [("2024-01", "R3"), ("2024-01", "R4"), ("2024-02", "R2")]


def test_reference_faults_are_quarantined_and_their_prisons_become_unknown(tmp_path):
    landing = Landing(tmp_path)
    assert landing.quarantine("prisons") == [(4, "invalid_value")]
    assert landing.quarantine("population") == [(5, "invalid_value")]
    prisons = [r[0] for r in landing.conn.execute("SELECT prison_code FROM conformed.prisons ORDER BY 1").fetchall()]
    assert prisons == ["XAA", "XAB"]


def test_events_link_to_the_latest_reception_at_the_same_prison(tmp_path):
    landing = Landing(tmp_path)
    header = "reception_id,nhs_number,prison_code,reception_datetime,reception_type,sex,age\n"
    landing.deliver("reception_screening", "2024-01", header
                    + "R1,9434765919,XAA,2024-01-05T10:00,new,M,30\n"
                    + "R2,9434765919,XAB,2024-01-10T10:00,transfer,M,30\n"
                    + "R3,9434765919,XAA,2024-01-20T10:00,transfer,M,30\n"
                    + "R4,9434765919,XAA,2024-01-20T10:00,transfer,M,30\n")
    tb = "tb_event_id,nhs_number,prison_code,event_datetime,event_type,result\n"
    landing.deliver("tb_screening", "2024-01", tb
                    + "T0,9434765919,XAA,2024-01-05T09:59:59,symptom_screen,negative\n"  # before any reception
                    + "T1,9434765919,XAA,2024-01-05T10:00,symptom_screen,negative\n"  # at the reception
                    + "T2,9434765919,XAA,2024-01-12T10:00,symptom_screen,negative\n"  # transferred away: still R1
                    + "T3,9434765919,XAB,2024-01-12T10:00,symptom_screen,negative\n"  # at the other prison
                    + "T4,9434765919,XAA,2024-01-20T10:00,symptom_screen,negative\n"  # tie: greatest reception_id
                    + "T5,4010232137,XAA,2024-01-21T10:00,symptom_screen,negative\n")  # another person
    landing.deliver("tb_screening", "2024-02", tb + "T6,9434765919,XAA,2024-02-03T10:00,symptom_screen,negative\n")
    # January's events arrive before the receptions they link to: their links are set when the
    # receptions land. February's arrive after them: they are linked as they land.
    landing.load("tb_screening", "2024-01")
    landing.load("reception_screening", "2024-01")
    landing.load("tb_screening", "2024-02")
    links = dict(landing.conn.execute("SELECT tb_event_id, reception_id FROM conformed.tb_screening").fetchall())
    assert links == {"T0": None, "T1": "R1", "T2": "R1", "T3": "R2", "T4": "R4", "T5": None, "T6": "R4"}


def test_a_file_read_ahead_is_loaded_from_that_reading_unless_it_changed_or_was_loaded_unchanged(
        tmp_path, monkeypatch):
    from pipelines import ingest
    from pipelines import landing as landing_files

    reads: list[str] = []
    read_file = landing_files.read_file
    monkeypatch.setattr(landing_files, "read_file", lambda path, *a, **k: reads.append(path.stem) or read_file(
        path, *a, **k))
    landing = Landing(tmp_path)
    header = "reception_id,nhs_number,prison_code,reception_datetime,reception_type,sex,age\n"
    for month, row in (("2024-01", "R1,9434765919,XAA,2024-01-05T10:00,new,M,30\n"),
                       ("2024-02", "R2,4010232137,XAA,2024-02-05T10:00,new,M,30\n"),
                       ("2024-03", "R3,9990000018,XAA,2024-03-07T10:00,new,F,41\n")):
        landing.deliver("reception_screening", month, header + row)
    landing.load("reception_screening", "2024-01")
    reads.clear()

    for month in ("2024-01", "2024-02", "2024-03"):
        ingest.read_ahead(landing.conn, landing.root, month, landing.pseudonymiser)
    ingest._READER.submit(lambda: None).result()  # the readings ahead are done
    assert reads == ["2024-02", "2024-03"]  # 2024-01 was loaded before, unchanged: it is not read
    landing.deliver("reception_screening", "2024-03", header + "R4,1234567881,XAA,2024-03-08T10:00,new,F,41\n")
    assert landing.load("reception_screening", "2024-02")[0].status == "loaded"
    assert landing.load("reception_screening", "2024-03")[0].status == "loaded"

    assert reads == ["2024-02", "2024-03", "2024-03"]  # 2024-02 from its reading ahead; 2024-03 changed since
    ids = landing.conn.execute("SELECT reception_id FROM conformed.reception_screening ORDER BY 1").fetchall()
    assert ids == [("R1",), ("R2",), ("R4",)]
    assert not ingest._AHEAD
