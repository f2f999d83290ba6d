"""Property: however a file is mangled, nothing crashes, nothing is lost, no NHS number is stored."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.warehouse_fixtures import Landing

NHS_NUMBERS = ["9434765919", "4010232137", "9990000018", "1234567881", "4505577104", "9876543210"]
HEADER = ("reception_id,nhs_number,prison_code,reception_datetime,reception_type,sex,age,"
          "first_screen_datetime,self_harm_risk\n")


def _row(i: int) -> str:
    number = NHS_NUMBERS[i % len(NHS_NUMBERS)]
    written = f"{number[:3]} {number[3:6]} {number[6:]}" if i % 2 else number
    return f"R{i},{written},XAA,2024-01-{i % 28 + 1:02d}T10:00,new,M,{20 + i},,{'true' if i % 3 else ''}\n"


BASE = (HEADER + "".join(_row(i) for i in range(12))).encode()
PIECES = [b",", b'"', b"\n", b"\r\n", b"\xff", b"\x00", b"  ", b"9434765919", b"XZZ", b"2024-02-30T10:00",
          b"\xef\xbb\xbf"]

edits = st.lists(
    st.tuples(st.integers(0, len(BASE)), st.integers(0, 12), st.sampled_from(PIECES) | st.binary(max_size=6)),
    max_size=8,
)


def _mangle(data: bytes, operations) -> bytes:
    for position, cut, insert in operations:
        position = min(position, len(data))
        data = data[:position] + insert + data[position + cut:]
    return data


def _text_values(conn) -> list[str]:
    values = []
    columns = conn.execute("""SELECT table_schema, table_name, column_name FROM information_schema.columns
                              WHERE data_type = 'VARCHAR'""").fetchall()
    for schema, table, column in columns:
        values += [r[0] for r in conn.execute(f'SELECT "{column}" FROM {schema}.{table} WHERE "{column}" IS NOT NULL')
                   .fetchall()]
    return values


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits)
def test_mangled_files_never_crash_lose_rows_or_leak_nhs_numbers(operations):
    data = _mangle(BASE, operations)
    with tempfile.TemporaryDirectory() as folder:
        landing = Landing(Path(folder))
        landing.deliver("reception_screening", "2024-01", data)
        loaded, checked = landing.load("reception_screening", "2024-01")
        counts = landing.file_load("reception_screening", "2024-01")
        if loaded.status == "rejected":
            assert counts["read"] == counts["loaded"] == counts["quarantined"] == 0
        else:
            assert counts["read"] == counts["loaded"] + counts["quarantined"]
            quarantined = landing.conn.execute(
                "SELECT count(*) FROM quality.quarantine WHERE month = '2024-01'").fetchone()[0]
            conformed = landing.conn.execute("SELECT count(*) FROM conformed.reception_screening").fetchone()[0]
            assert conformed + quarantined == counts["read"]
        stored = "\n".join(_text_values(landing.conn))
        for number in NHS_NUMBERS:
            assert number not in stored
            assert f"{number[:3]} {number[3:6]} {number[6:]}" not in stored
