"""The fast (vectorised) CSV path of landing.read_file gives exactly what the exact record reader gives."""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import contract, landing
from pipelines.pseudonymise import Pseudonymiser

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus" / "files"
SAMPLE = ROOT / "data" / "sample"
# The source each corpus file is delivered as (tests/test_bad_input.py); the rest are reception_screening.
CORPUS_SOURCES = {"quoted_field_spanning_lines": "prescribing", "long_field": "prescribing",
                  "bbv_rules": "bbv_testing", "smoking_rules": "smoking"}
PSEUDONYMISER = Pseudonymiser(b"prisonhealth-test-key")

RECEPTION = contract.source("reception_screening")
HEADER = "reception_id,nhs_number,prison_code,reception_datetime,reception_type,sex,age\n"


def _outcome(path: Path, table: contract.Table, exact: bool):
    try:
        read = landing.read_file(path, table, PSEUDONYMISER, exact=exact)
    except landing.FileRejected as rejection:
        return ("rejected", str(rejection))
    columns = {name: (str(values.dtype), values.to_list()) for name, values in read.columns.items()}
    return (read.sha256, read.rows_split, read.rows_read, columns, read.malformed, read.notes, read.extra_columns,
            read.message)


def _assert_same(path: Path, table: contract.Table):
    exact = _outcome(path, table, exact=True)
    fast = _outcome(path, table, exact=False)
    assert fast == exact


def _read_bytes(data: bytes, table: contract.Table = RECEPTION):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "2024-01.csv"
        path.write_bytes(data)
        _assert_same(path, table)
        return _outcome(path, table, exact=False)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.csv")), ids=lambda p: p.stem)
def test_corpus_files_read_the_same(path):
    _assert_same(path, contract.source(CORPUS_SOURCES.get(path.stem, "reception_screening")))


SAMPLE_FILES = sorted(SAMPLE.glob("*/*.csv"))


@pytest.mark.skipif(not SAMPLE_FILES, reason="no demo sample")
@pytest.mark.parametrize("path", SAMPLE_FILES[::3] + sorted(SAMPLE.glob("reference/*.csv")),
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_sample_files_read_the_same(path):
    name = path.stem if path.parent.name == "reference" else path.parent.name
    _assert_same(path, contract.source(name))


ROW = "R{i},9434765919,XAA,2024-01-05T10:00,new,M,30"
TRICKY_LINES = [
    'R1,"943 476 5919",XAA,2024-01-05T10:00,new,M,30',            # quoted NHS number with spaces
    'R2,9434765919,"XAA","2024-01-05T10:00",new,"M","30"',        # several quoted fields
    'R3,9434765919,XAA,2024-01-05T10:00,"new, again",M,30',        # a comma inside quotes
    'R4,9434765919,XAA,2024-01-05T10:00,"new ""x""",M,30',        # doubled quotes: read by the csv module
    'R5,9434765919,XA"A,2024-01-05T10:00,new,M,30',               # quote inside an unquoted field
    'R6,9434765919,"XA"A,2024-01-05T10:00,new,M,30',              # text after a closing quote: bad quoting
    'R7,9434765919,XAA,2024-01-05T10:00,new,M,"30',               # quote left open at the end of a line
    'R8,9434765919,X"AA,"2024-01-05T10:00,new,M,30',              # even quotes, yet one is left open
    '',                                                            # blank lines of several kinds
    '   \t',
    '""',
    '" "',
    '\x1f\x85\u3000',                                              # white space only to Python
    'R9,\u3000943 476 5919\x1c,XAA,2024-01-05T10:00,new,M,\x1f30\x85',
    'R10,94347659190,XAA,2024-01-05T10:00,new,M,30',               # eleven digits
    'R11,943476591,XAA,2024-01-05T10:00,new,M,30',                 # nine digits
    'R12,9434765918,XAA,2024-01-05T10:00,new,M,30',                # bad check digit
    'R13,\u0669\u0664\u0663\u0664\u0667\u0666\u0665\u0669\u0661\u0669,XAA,2024-01-05T10:00,new,M,30',
    'R14,,XAA,2024-01-05T10:00,new,M,30',                          # no NHS number
    'R12345678901,9434765919,X 123 456 7890,2024-01-05T10:00,new,M,30',  # runs in other columns
    'R15,9434765919,XAA,2024-01-05T10:00,new,M,1234567890\t1',
    'R16,9434765919,#1234567890#,2024-01-05T10:00,new,M,30',
    'R17,9 4 3 4 7 6 5 9 1 9,XAA,2024-01-05T10:00,new,M,30',
    'R18,9434765919,XAA,2024-01-05T10:00,new,M',                  # too few
    'R19,9434765919,XAA,2024-01-05T10:00,new,M,30,',              # too many
    'R20,9434765919,XAA,2024-01-05T10:00,new,M,30\x00',           # NUL
    'R21,9434765919,"a\x00,b",2024-01-05T10:00,new,M,30',
    'R22,9434765919,XAA,2024-01-05\x0bT10:00,new,M,30',            # str.splitlines would break here
    'R23,9434765919,XAA,2024-01-05\u2028T10:00,new,M,30',
    'R24,9434765919,XAA,2024-01-05\x1cT10:00,new,M,30',
]


def test_tricky_lines_read_the_same():
    # A NUL in the first 4 KiB rejects the file as binary: start with plain rows.
    body = "".join(ROW.format(i=i) + "\n" for i in range(100))
    body += "".join(f"{ROW.format(i=100 + k)}\n{line}\n" for k, line in enumerate(TRICKY_LINES))
    read = _read_bytes((HEADER + body).encode())
    assert len(read) > 2, read
    assert [m.line for m in read[4]] == [113, 115, 117, 149, 151]  # R6, R7 and R8 quoting; R18, R19 widths
    assert read[5] == ["5 blank line(s) skipped"]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_line_endings_read_the_same(ending):
    lines = [HEADER.strip()] + [ROW.format(i=i) for i in range(5)] + ['R9,9434765919,"XAA', 'B",x,y,z,w,v']
    _read_bytes(ending.join(lines).encode())
    _read_bytes((ending.join(lines) + ending).encode())


def test_records_spanning_lines_read_the_same():
    body = (ROW.format(i=1) + "\n"
            'R2,9434765919,XAA,2024-01-05T10:00,"new\nline",M,30\n'    # lines 3-4: a good record over two lines
            + ROW.format(i=3) + "\n"
            'R4,9434765919,XAA,2024-01-05T10:00,"new\n"",M,30\n'       # 6: open; 7 then reads alone: too few
            + ROW.format(i=5) + "\n"
            '"\n"\n'                                                       # 9-10: a blank record over two lines
            + ROW.format(i=7) + "\n"
            'R8,9434765919,XAA,"2024\n01\n05",new,M,"30\n'              # 12: open to the end; 13 too few; 14 open
            + ROW.format(i=9) + "\n")
    read = _read_bytes((HEADER + body).encode())
    assert [(m.line, m.detail[:6]) for m in read[4]] == [(6, "a quot"), (7, "too fe"), (12, "a quot"),
                                                         (13, "too fe"), (14, "a quot")]
    assert read[3]["source_line"][1] == [2, 3, 5, 8, 11, 15]
    assert read[5] == ["1 blank line(s) skipped"]


def test_undecodable_bytes_read_the_same():
    data = (HEADER + ROW.format(i=1) + "\n").encode()
    data += b"R2,9434765919,X\xff\xfeA,2024-01-05T10:00,new,M,30\n" + ROW.format(i=3).encode() + b"\n"
    data += b'R4,9434765919,"X\xffA",2024-01-05T10:00,new,M,30\nR5,94347\xff65919,"XAA\n,",M\n\n'
    data += b'R6,9434765919,XAA,2024-01-05T10:00,"new\n\xff",M,30\n' + ROW.format(i=7).encode() + b"\n"
    read = _read_bytes(data)
    assert any("not UTF-8" in m.detail for m in read[4])


def test_columns_missing_duplicated_or_extra_read_the_same():
    header = "reception_id,nhs_number,prison_code,reception_datetime,notes,reception_type,prison_code,sex,age,\n"
    body = "R1, 9434765919 ,XAA,2024-01-05T10:00,note 1234567890,new,XBB,M,30,\n"
    read = _read_bytes((header + body + body.replace("R1", "R2")).encode())
    assert read[6] == ["notes", "(unnamed)"]
    assert read[5] == ["column prison_code appears twice: the first is used"]


def test_header_only_and_a_single_column_read_the_same():
    _read_bytes(HEADER.encode())
    _read_bytes(HEADER.strip().encode())
    prisons = contract.source("prisons")
    _read_bytes(b"prison_code\nXAA\n\n  \n\"XB,B\"\n", prisons)


def test_fields_over_the_csv_limit_read_the_same():
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(40)
        body = ROW.format(i=1) + "\n" + "R2,9434765919,XAA,2024-01-05T10:00," + "x" * 50 + ",M,30\n"
        read = _read_bytes((HEADER + body).encode())
        assert [m.detail for m in read[4]] == ["bad quoting (field larger than field limit (40))"]
    finally:
        csv.field_size_limit(limit)


NUMBERS = ["9434765919", "4010232137", "943 476 5919", "12345678901", "1234567890 12"]
BASE = (HEADER + "".join(f"R{i},{NUMBERS[i % len(NUMBERS)]},XAA,2024-01-{i % 28 + 1:02d}T10:00,new,M,{20 + i}\n"
                         for i in range(14))).encode()
PIECES = [b",", b'"', b'"x,y"', b"\n", b"\r\n", b"\r", b"\xff", b"\x00", b"  ", b"\t", b"9434765919", b"#",
          b"12345 67890", b"\x0b", "\u2028".encode(), "\x85".encode(), b"\x1f", b"\xef\xbb\xbf"]
edits = st.lists(
    st.tuples(st.integers(0, len(BASE)), st.integers(0, 12), st.sampled_from(PIECES) | st.binary(max_size=6)),
    max_size=10,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits)
def test_mangled_files_read_the_same(operations):
    data = BASE
    for position, cut, insert in operations:
        position = min(position, len(data))
        data = data[:position] + insert + data[position + cut:]
    _read_bytes(data)


def test_python_whitespace_is_what_str_strip_removes():
    assert landing.PYTHON_WHITESPACE == "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())


def test_polars_trim_is_python_strip_but_information_separators():
    # The fast path trims with Polars' own white space unless the file holds \x1c-\x1f.
    characters = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    trimmed = pl.Series([f"{c}x{c}" for c in characters]).str.strip_chars().to_list()
    assert [c for c, t in zip(characters, trimmed, strict=True) if t == "x"] == [
        c for c in characters if c.isspace() and c not in "\x1c\x1d\x1e\x1f"]
