"""Reading landing files into records, with the contract's file- and record-level rules.

Why not DuckDB's or Polars' CSV readers: the contract numbers records by the
physical line they start on (a quoted field may span lines), keeps every record
that cannot be split (open quotes, wrong field counts, bytes that are not UTF-8)
for the quarantine with its line, and must recover after a bad record instead of
failing or silently skipping. Neither reader exposes line numbers for good rows
nor recovers after an open quote, so the splitting is done here with Python's
`csv` module on lines decoded with `surrogateescape` (undecodable bytes survive
as surrogates, which marks exactly the records that hold them).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import contract
from pipelines.pseudonymise import Pseudonymiser, mask_nhs_numbers, nhs_number_problem

MONTH_FILE = re.compile(r"^(\d{4}-(0[1-9]|1[0-2]))\.(csv|parquet)$")
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+$")
_SURROGATE = re.compile("[\udc80-\udcff]")
_UTF8_BOM = b"\xef\xbb\xbf"


class FileRejected(Exception):
    """A file-level fault: the whole file is set aside with this one-line reason."""


@dataclass
class MalformedRecord:
    line: int
    detail: str
    original_row: str


@dataclass
class FileRead:
    """Everything taken from one landing file."""

    table: str
    path: Path
    sha256: str
    columns: dict[str, list] = field(default_factory=dict)
    malformed: list[MalformedRecord] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rows_split(self) -> int:
        return len(self.columns.get("source_line", []))

    @property
    def rows_read(self) -> int:
        return self.rows_split + len(self.malformed)

    @property
    def message(self) -> str:
        parts = list(self.notes)
        if self.extra_columns:
            parts.insert(0, "extra columns ignored: " + ", ".join(self.extra_columns))
        return mask_nhs_numbers("; ".join(parts))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def month_files(landing: Path, table: str) -> dict[str, Path]:
    """Monthly files of a source by partition key; CSV wins over Parquet for one month."""
    found: dict[str, Path] = {}
    folder = Path(landing) / table
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir(), key=lambda p: (p.suffix != ".parquet", p.name)):
        match = MONTH_FILE.match(path.name)
        if match and path.is_file():
            found[match.group(1)] = path
    return found


def reference_file(landing: Path, table: str) -> Path | None:
    for suffix in (".csv", ".parquet"):
        path = Path(landing) / "reference" / f"{table}{suffix}"
        if path.is_file():
            return path
    return None


def read_file(path: Path, table: contract.Table, pseudonymiser: Pseudonymiser) -> FileRead:
    """Split a landing file into records. Raises FileRejected for file-level faults."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise FileRejected(f"unreadable: {error.strerror or error}") from None
    result = FileRead(table.name, path, hashlib.sha256(data).hexdigest())
    if path.suffix == ".parquet":
        header, records = _parquet_records(path)
    else:
        header, records = _csv_records(data, result)
    _map_columns(header, table, result)
    _collect(records, header, table, pseudonymiser, result)
    return result


def _csv_records(data: bytes, result: FileRead):
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
    if not data.strip():
        raise FileRejected("empty: the file has no bytes other than white space or a BOM")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise FileRejected("unreadable: not UTF-8 text (looks like UTF-16 or binary data)")
    text = data.decode("utf-8", errors="surrogateescape")
    lines = _LINES.findall(text)
    header_fields, header_lines = _first_record(lines, 0)
    if header_fields is None or _SURROGATE.search("".join(lines[:header_lines])):
        raise FileRejected("unreadable: the header row cannot be decoded as UTF-8 CSV")
    header = [h.strip() for h in header_fields]
    return header, _split_records(lines, header_lines, len(header), result)


def _first_record(lines: list[str], start: int):
    """Parse one record starting at physical line `start`: (fields or None, lines used)."""
    reader = csv.reader(iter(lines[start:]), strict=True)
    try:
        fields = next(reader)
    except StopIteration:
        return None, 0
    except csv.Error:
        return None, max(reader.line_num, 1)
    return fields, reader.line_num


def _split_records(lines: list[str], start: int, width: int, result: FileRead):
    """Yield (line, fields | None, detail, text) for every record after the header.

    A record that fails to parse, or that spans lines and has the wrong number of
    fields, is taken as a quote left open: only its first line is set aside and
    reading resumes on the next line, so one stray quote costs one record.
    """
    position = start
    blank = 0
    total = len(lines)
    while position < total:
        reader = csv.reader(iter(lines[position:]), strict=True)
        consumed = 0
        while True:
            record_start = position + consumed
            try:
                fields = next(reader)
            except StopIteration:
                position = total
                break
            except csv.Error as error:
                yield record_start + 1, None, _quote_detail(str(error)), lines[record_start]
                position = record_start + 1
                break
            used = reader.line_num - consumed
            consumed = reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                blank += 1
                continue
            text = "".join(lines[record_start:record_start + used])
            if len(fields) != width and used > 1:
                yield record_start + 1, None, "a quote left open", lines[record_start]
                position = record_start + 1
                break
            if _SURROGATE.search(text):
                yield record_start + 1, None, "bytes that are not UTF-8 in the record", text
            elif len(fields) != width:
                problem = "too few" if len(fields) < width else "too many"
                yield record_start + 1, None, f"{problem} fields: {len(fields)} where the header has {width}", text
            else:
                yield record_start + 1, fields, None, text
    if blank:
        result.notes.append(f"{blank} blank line(s) skipped")


def _quote_detail(message: str) -> str:
    if "unexpected end of data" in message:
        return "a quote left open"
    return f"bad quoting ({message})"


def _parquet_records(path: Path):
    import polars as pl

    try:
        frame = pl.read_parquet(path)
    except Exception as error:  # noqa: BLE001 - any decoding failure means the file is unreadable
        raise FileRejected(f"unreadable: not a readable Parquet file ({type(error).__name__})") from None
    casts = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if dtype == pl.Datetime or isinstance(dtype, pl.Datetime):
            casts.append(column.dt.strftime("%Y-%m-%dT%H:%M:%S").alias(name))
        elif dtype == pl.Date:
            casts.append(column.dt.strftime("%Y-%m-%d").alias(name))
        else:
            casts.append(column.cast(pl.String).alias(name))
    frame = frame.select(casts)
    header = list(frame.columns)

    def records():
        # Parquet has no lines; row n is reported as line n + 1, as if a header were line 1.
        for index, row in enumerate(frame.iter_rows(), start=2):
            text = ",".join("" if v is None else v for v in row)
            yield index, ["" if v is None else v for v in row], None, text

    return header, records()


def _map_columns(header: list[str], table: contract.Table, result: FileRead) -> None:
    known = set(table.column_names)
    seen: set[str] = set()
    for name in header:
        if name not in known:
            result.extra_columns.append(name or "(unnamed)")
        elif name in seen:
            result.notes.append(f"column {name} appears twice: the first is used")
        seen.add(name)
    missing = [name for name in table.required_columns if name not in seen]
    if missing:
        raise FileRejected("required column(s) missing from the header: " + ", ".join(missing))


def _collect(records, header, table: contract.Table, pseudonymiser: Pseudonymiser, result: FileRead):
    positions = {}
    for index, name in enumerate(header):
        positions.setdefault(name, index)
    names = [c.name for c in table.columns]
    out: dict[str, list] = {n: [] for n in names if n != "nhs_number"}
    has_nhs = any(c.type == "nhs_number" for c in table.columns)
    if has_nhs:
        out["person_key"] = []
        out["nhs_number_problem"] = []
    out["source_line"] = []
    out["original_row"] = []
    getters = [(n, positions.get(n)) for n in names]
    for line, fields, detail, text in records:
        masked = mask_nhs_numbers(text.rstrip("\r\n"))
        if fields is None:
            result.malformed.append(MalformedRecord(line, detail, masked))
            continue
        for name, index in getters:
            value = fields[index].strip() if index is not None else ""
            value = value or None
            if value is not None and name != "nhs_number" and len(value) >= 10:
                value = pseudonymiser.digit_runs(value)
            if name == "nhs_number":
                out["person_key"].append(pseudonymiser.person_key(value) if value else None)
                out["nhs_number_problem"].append(nhs_number_problem(value))
            else:
                out[name].append(value)
        out["source_line"].append(line)
        out["original_row"].append(masked)
    result.columns = out
