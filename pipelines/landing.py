"""Reading landing files into records, with the contract's file- and record-level rules.

Why hand-written parts, and not DuckDB's or Polars' CSV readers alone: the contract
numbers records by the physical line they start on (a quoted field may span lines),
keeps every record that cannot be split (open quotes, wrong field counts, bytes that
are not UTF-8) for the quarantine with its line, and must recover after a bad record
instead of failing or silently skipping. No library reader exposes line numbers for
good rows, recovers after an open quote by setting aside only that one line, or
reports the record text of a bad row, so line splitting and record recovery are done
here.

Two paths give identical results (tests/test_landing_fast_path.py holds them equal):

- The exact path (`read_file(..., exact=True)`; also Parquet): Python's `csv` module on
  lines decoded with `surrogateescape` (undecodable bytes survive as surrogates, which
  marks exactly the records that hold them), one record at a time.
- The fast path (the default). A record always starts at the start of a line, so each
  line is first judged on its own. A line without a `"`, or whose quoted fields hold no
  `"` (a drug name with a comma), is exactly one record that splits at its unquoted
  commas: those lines (nearly all) are counted, split and trimmed with vectorised
  Polars expressions. Lines with other quoting, undecodable bytes or a field longer
  than the csv module's limit are parsed by the `csv` module one line at a time; a line
  that leaves a quote open at its end goes to the exact record reader from that line,
  which says how many lines the record takes, so everything after it reads as on the
  exact path. Per-value work is vectorised too: digit runs are looked for (and hashed
  in Python) only in lines that hold a run other than the NHS number, person keys and
  NHS number problems are computed once per distinct number, and the original rows are
  masked by one regex replacement checked to keep every row's length (rows it would
  not mask exactly go to mask_nhs_numbers).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import polars as pl

from pipelines import contract
from pipelines.pseudonymise import DIGIT_RUN_PATTERN, Pseudonymiser, mask_nhs_numbers, nhs_number_problem

MONTH_FILE = re.compile(r"^(\d{4}-(0[1-9]|1[0-2]))\.(csv|parquet)$")
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+$")
_SURROGATE = re.compile("[\udc80-\udcff]")
_UTF8_BOM = b"\xef\xbb\xbf"
# Besides \r and \n, str.splitlines() breaks lines at these (as UTF-8); the contract does not.
_OTHER_LINE_BREAKS = (b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", "\x85".encode(), "\u2028".encode(),
                      "\u2029".encode())
# Exactly the characters for which str.isspace() is true, i.e. what str.strip() removes.
PYTHON_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
                     "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_TEN_HASHES = "#" * 10
# A line whose quoted fields hold no quote (most often there is one, around a drug name with a comma):
# the csv module splits these as if the quotes were not there and the commas inside them were not
# delimiters. Any other line with a quote is read by the csv module.
_SIMPLE_QUOTES = r'^(?:"[^"]*"|[^",]*)(?:,(?:"[^"]*"|[^",]*))*$'
_INNER_COMMA = "\x00"
# DIGIT_RUN_PATTERN for ASCII text, where Unicode \d matches only 0-9: the regex engine runs it faster.
_ASCII_DIGIT_RUN = r"\d(?:[ \t]*\d){9,}"


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
    columns: dict[str, pl.Series] = field(default_factory=dict)
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


def read_file(path: Path, table: contract.Table, pseudonymiser: Pseudonymiser, exact: bool = False) -> FileRead:
    """Split a landing file into records. Raises FileRejected for file-level faults.

    `exact=True` reads every record with the record-at-a-time reader; the default fast
    path gives the same result (tests/test_landing_fast_path.py holds them equal).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise FileRejected(f"unreadable: {error.strerror or error}") from None
    result = FileRead(table.name, path, hashlib.sha256(data).hexdigest())
    if path.suffix == ".parquet":
        header, records = _parquet_records(path)
        _map_columns(header, table, result)
        _collect(records, header, table, pseudonymiser, result)
        return result
    lines, header, header_lines, undecodable, ascii_, separators = _csv_lines(data, exact)
    _map_columns(header, table, result)
    if exact:
        _collect(_split_records(lines, header_lines, len(header), result), header, table, pseudonymiser, result)
    else:
        _FastReader(lines, header_lines, header, (undecodable, ascii_, separators), table, pseudonymiser, result).run()
    return result


def _csv_lines(data: bytes, exact: bool):
    """File-level checks and the physical lines.

    Returns (lines, header, lines the header uses, any undecodable bytes, all ASCII, any of \x1c-\x1f).
    """
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
    if not data.strip():
        raise FileRejected("empty: the file has no bytes other than white space or a BOM")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise FileRejected("unreadable: not UTF-8 text (looks like UTF-16 or binary data)")
    try:
        text = data.decode("utf-8")
        undecodable = False
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="surrogateescape")
        undecodable = True
    ascii_ = data.isascii()
    if exact or any(mark in data for mark in _OTHER_LINE_BREAKS[:5 if ascii_ else None]):
        lines = _LINES.findall(text)
    else:
        # The same lines as _LINES (ends at \r\n, \n or \r; no empty last line), much faster.
        lines = text.splitlines(keepends=True)
    del text
    header_fields, header_lines = _first_record(lines, 0)
    if header_fields is None or (undecodable and _SURROGATE.search("".join(lines[:header_lines]))):
        raise FileRejected("unreadable: the header row cannot be decoded as UTF-8 CSV")
    header = [h.strip() for h in header_fields]
    separators = any(code in data for code in (b"\x1c", b"\x1d", b"\x1e", b"\x1f"))
    return lines, header, header_lines, undecodable, ascii_, separators


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


def _output_names(table: contract.Table) -> list[str]:
    """FileRead.columns in order: the table's columns (the NHS number as its key and problem), line, text."""
    names = [c.name for c in table.columns if c.name != "nhs_number"]
    if any(c.type == "nhs_number" for c in table.columns):
        names += ["person_key", "nhs_number_problem"]
    return names + ["source_line", "original_row"]


def _series(name: str, values) -> pl.Series:
    return pl.Series(name, values, dtype=pl.Int64 if name == "source_line" else pl.String)


def _collect(records, header, table: contract.Table, pseudonymiser: Pseudonymiser, result: FileRead):
    """The record-at-a-time column builder (exact path and Parquet)."""
    positions = {}
    for index, name in enumerate(header):
        positions.setdefault(name, index)
    names = [c.name for c in table.columns]
    out: dict[str, list] = {n: [] for n in _output_names(table)}
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
    result.columns = {name: _series(name, values) for name, values in out.items()}


# ---------------------------------------------------------------------------------------------
# The fast path


class _Open:
    """A line that, read on its own, ends inside a quoted field."""


_OPEN = _Open()


def _lines_alone(lines: list[str]) -> list:
    """Each line parsed as a record on its own: its fields, a csv error message (str), or _OPEN.

    One csv reader runs over all the lines at C speed; a record that takes more than
    one line (or an error at the end of data) marks its first line _OPEN, and
    reading restarts on the line after it.
    """
    out: list = [None] * len(lines)
    position = 0
    while position < len(lines):
        reader = csv.reader(islice(lines, position, None), strict=True)
        consumed = 0
        while True:
            at = position + consumed
            try:
                fields = next(reader)
            except StopIteration:
                position = len(lines)
                break
            except csv.Error as error:
                message = str(error)
                alone = reader.line_num - consumed == 1 and "unexpected end of data" not in message
                out[at] = message if alone else _OPEN
                position = at + 1
                break
            if reader.line_num - consumed != 1:
                out[at] = _OPEN
                position = at + 1
                break
            out[at] = fields
            consumed += 1
    return out


def _is_blank(fields: list[str]) -> bool:
    return not fields or (len(fields) == 1 and not fields[0].strip())


def _width_detail(count: int, width: int) -> str:
    problem = "too few" if count < width else "too many"
    return f"{problem} fields: {count} where the header has {width}"


def _cells(raw: pl.Series) -> tuple[pl.Series, set[int] | None]:
    """Each line with its fields' quotes taken off and the commas inside them as NUL, as Python's csv
    module would split it; null where the quoting is not that simple (those lines are read by Python).

    Also returns the fields that may hold such a NUL (None: any field).
    """
    quoted = raw.str.contains('"', literal=True)
    if not quoted.any():
        return raw, set()
    rows = quoted.arg_true()
    lines = raw.gather(rows)
    if raw.str.contains(_INNER_COMMA, literal=True).any():
        return raw.clone().scatter(rows, None), set()
    before, inside, after = (pl.col("parts").struct.field(f"field_{k}") for k in range(3))
    simple = ((pl.col("quotes") == 2) & ((before == "") | before.str.ends_with(","))
              & ((after == "") | after.str.starts_with(",")))
    two = pl.concat_str(before, inside.str.replace_all(",", _INNER_COMMA, literal=True), after)
    # The quoted field's position, where it holds a comma.
    position = pl.when(simple & inside.str.contains(",", literal=True)).then(before.str.count_matches(","))
    frame = pl.DataFrame({"parts": lines.str.splitn('"', 3), "quotes": lines.str.count_matches('"', literal=True)})
    frame = frame.select(pl.when(simple).then(two).alias("cells"), position.alias("position"))
    cells = frame["cells"]
    inner: set[int] | None = set(frame["position"].drop_nulls().unique().to_list())
    other = cells.is_null().arg_true()
    where = other.filter(lines.gather(other).str.contains(_SIMPLE_QUOTES))
    if len(where):
        odd = pl.int_range(pl.len()) % 2 == 1
        parts = lines.gather(where).str.split('"')
        unquoted = parts.list.eval(pl.when(odd).then(pl.element().str.replace_all(",", _INNER_COMMA, literal=True))
                                   .otherwise(pl.element())).list.join("")
        cells = cells.scatter(where, unquoted)
        inner = None
    return raw.clone().scatter(rows, cells), inner


class _FastReader:
    """Vectorised reading of the lines after the header; the same result as `_split_records` + `_collect`."""

    def __init__(self, lines, header_lines, header, text_facts, table, pseudonymiser, result):
        self.lines = lines
        self.start = header_lines  # index of the first body line in `lines`
        self.width = len(header)
        # Whether the text has undecodable bytes, is all ASCII, holds \x1c-\x1f (white space to
        # Python, not to Polars).
        self.undecodable, self.ascii, self.separators = text_facts
        self.table = table
        self.pseudonymiser = pseudonymiser
        self.result = result
        self.positions: dict[str, int] = {}
        for index, name in enumerate(header):
            self.positions.setdefault(name, index)
        self.wanted = sorted({self.positions[c.name] for c in table.columns if c.name in self.positions})
        self.blank = 0
        self.inner: set[int] | None = set()  # fields where _cells put NUL for a comma
        self.bad: list[tuple[int, str, str]] = []  # (line index, detail, unmasked text)
        self.python_good: list[tuple[int, list[str], str]] = []  # (line index, fields, text)

    def run(self) -> None:
        lines, start = self.lines, self.start
        n = len(lines) - start
        body = lines[start:] if start else lines
        undecodable_lines: list[int] = []
        feed = body
        if self.undecodable:
            # Polars holds only valid UTF-8: an empty line stands in for a line with undecodable
            # bytes, which is then read by Python like the lines with odd quoting.
            undecodable_lines = [i for i, line in enumerate(body) if _SURROGATE.search(line)]
            feed = list(body)
            for i in undecodable_lines:
                feed[i] = ""
        raw = pl.Series("raw", feed, dtype=pl.String).str.strip_chars_end("\r\n")
        del feed
        cells, self.inner = _cells(raw)
        if undecodable_lines:
            cells = cells.clone().scatter(undecodable_lines, None)
        limit = csv.field_size_limit()
        if n and raw.str.len_bytes().max() >= limit:
            # The csv module refuses a field longer than its limit: let it read such lines.
            cells = pl.select(pl.when(raw.str.len_bytes() < limit).then(cells)).to_series()
        special = cells.is_null()
        special_rows = special.arg_true().to_list()
        consumed = self._python_lines(body, special_rows, set(undecodable_lines))
        frame = pl.DataFrame({"i": pl.int_range(0, n, dtype=pl.Int64, eager=True), "raw": raw, "cells": cells})
        del raw, cells
        if special_rows:
            keep = ~special
            if consumed:
                keep = keep.scatter(consumed, False)
            frame = frame.filter(keep)
        goods = self._split_plain(frame)
        if self.python_good:
            goods = self._with_python_goods(goods)
        self._finish(goods)

    # -- lines read by Python -----------------------------------------------------------------

    def _python_lines(self, body, special_rows, undecodable_lines) -> list[int]:
        """Read the lines with a quote (or undecodable bytes); return the lines that records from them took."""
        if not special_rows:
            return []
        alone = _lines_alone([body[i] for i in special_rows])
        outcome = dict(zip(special_rows, alone, strict=True))
        consumed: list[int] = []
        taken_until = 0
        for i in special_rows:
            if outcome[i] is not _OPEN or i < taken_until:
                continue
            taken_until = self._exact_record(body, i)
            consumed.extend(range(i + 1, taken_until))
        gone = set(consumed)
        for i, fields in outcome.items():
            if i in gone or fields is _OPEN:
                continue
            if isinstance(fields, str):
                self.bad.append((i, _quote_detail(fields), body[i]))
            elif _is_blank(fields):
                self.blank += 1
            elif i in undecodable_lines:
                self.bad.append((i, "bytes that are not UTF-8 in the record", body[i]))
            elif len(fields) != self.width:
                self.bad.append((i, _width_detail(len(fields), self.width), body[i]))
            else:
                self.python_good.append((i, fields, body[i]))
        return consumed

    def _exact_record(self, body, i) -> int:
        """Read the record starting on line i as `_split_records` does; return the line after it."""
        reader = csv.reader(islice(body, i, None), strict=True)
        try:
            fields = next(reader)
        except csv.Error as error:
            self.bad.append((i, _quote_detail(str(error)), body[i]))
            return i + 1
        used = reader.line_num
        if _is_blank(fields):
            self.blank += 1
            return i + used
        text = "".join(body[i:i + used])
        if len(fields) != self.width and used > 1:
            self.bad.append((i, "a quote left open", body[i]))
            return i + 1
        if _SURROGATE.search(text):
            self.bad.append((i, "bytes that are not UTF-8 in the record", text))
        elif len(fields) != self.width:
            self.bad.append((i, _width_detail(len(fields), self.width), text))
        else:
            self.python_good.append((i, fields, text))
        return i + used

    # -- lines without a quote: vectorised --------------------------------------------------

    def _split_plain(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Count and split the lines read without Python; returns the good ones as (i, text, f<index>...)."""
        width = self.width
        frame = frame.with_columns(n=pl.col("cells").str.count_matches(",", literal=True) + 1)
        single = frame.filter(pl.col("n") == 1)
        if len(single):
            blank = single.filter(pl.col("cells").str.strip_chars(PYTHON_WHITESPACE) == "")["i"]
            if len(blank):
                self.blank += len(blank)
                frame = frame.filter(~pl.col("i").is_in(blank.implode()))
        wrong = frame.filter(pl.col("n") != width)
        for i, count_, text in wrong.select("i", "n", "raw").iter_rows():
            self.bad.append((i, _width_detail(count_, width), text))
        if len(wrong):
            frame = frame.filter(pl.col("n") == width)
        if width == 1:
            fields = {0: pl.col("cells")}
        else:
            split = pl.col("cells").str.split_exact(",", width - 1)
            fields = {k: split.struct.field(f"field_{k}") for k in self.wanted}
        # Put back the commas that were inside quotes (in few fields: drug names, say).
        fields = {k: f.str.replace_all(_INNER_COMMA, ",", literal=True)
                  if self.inner is None or k in self.inner else f for k, f in fields.items()}
        return frame.select("i", pl.col("raw").alias("text"), *(f.alias(f"f{k}") for k, f in fields.items()))

    def _with_python_goods(self, goods: pl.DataFrame) -> pl.DataFrame:
        rows = self.python_good
        extra = {"i": pl.Series([r[0] for r in rows], dtype=pl.Int64),
                 "text": pl.Series([r[2].rstrip("\r\n") for r in rows], dtype=pl.String)}
        for k in self.wanted:
            extra[f"f{k}"] = pl.Series([r[1][k] for r in rows], dtype=pl.String)
        return pl.concat([goods, pl.DataFrame(extra)], how="vertical").sort("i")

    # -- values -------------------------------------------------------------------------------

    def _finish(self, goods: pl.DataFrame) -> None:
        result, table, pseudonymiser = self.result, self.table, self.pseudonymiser
        rows = len(goods)
        # Polars' own trim removes what str.strip() does but \x1c-\x1f, and runs faster.
        spaces = PYTHON_WHITESPACE if self.separators else None
        stripped = [pl.col(f"f{k}").str.strip_chars(spaces) for k in self.wanted]
        goods = goods.with_columns(stripped)
        goods = goods.with_columns(pl.when(pl.col(f"f{k}") != "").then(pl.col(f"f{k}")).alias(f"f{k}")
                                   for k in self.wanted)
        masked, runs = _masked(goods["text"], self.ascii)
        columns: dict[str, pl.Series] = {}
        clean = runs == 0
        nhs = self.positions.get("nhs_number")
        if "nhs_number" in table.column_names:
            values = goods[f"f{nhs}"] if nhs is not None else pl.Series([None] * rows, dtype=pl.String)
            columns["person_key"], columns["nhs_number_problem"], one_run = _nhs_keys(values, pseudonymiser)
            # A line's only run of digits is its NHS number: no other value needs hashing.
            clean = clean | ((runs == 1) & one_run)
        suspects = (~clean.fill_null(False)).arg_true()
        for column in table.columns:
            if column.name != "nhs_number":
                index = self.positions.get(column.name)
                values = goods[f"f{index}"] if index is not None else pl.Series([None] * rows, dtype=pl.String)
                columns[column.name] = _hash_digit_runs(values, suspects, pseudonymiser)
        columns["source_line"] = goods["i"] + (self.start + 1)
        columns["original_row"] = masked
        result.columns = {name: columns[name].rename(name) for name in _output_names(table)}
        if self.blank:
            result.notes.append(f"{self.blank} blank line(s) skipped")
        self.bad.sort(key=lambda bad: bad[0])
        result.malformed = [MalformedRecord(i + self.start + 1, detail, mask_nhs_numbers(text.rstrip("\r\n")))
                            for i, detail, text in self.bad]


def _hash_digit_runs(values: pl.Series, rows: pl.Series, pseudonymiser: Pseudonymiser) -> pl.Series:
    """pseudonymiser.digit_runs on the values that hold a run of ten or more digits (only `rows` can)."""
    if not len(rows):
        return values
    some = values.gather(rows)
    runs = some.str.contains(DIGIT_RUN_PATTERN)
    if not runs.any():
        return values
    found = some.filter(runs).unique().to_list()
    return values.clone().scatter(rows, some.replace(found, [pseudonymiser.digit_runs(v) for v in found]))


def _nhs_keys(values: pl.Series, pseudonymiser: Pseudonymiser) -> tuple[pl.Series, pl.Series, pl.Series]:
    """person_key, nhs_number_problem and whether the value is ten digits (with spaces): one run of digits.

    Computed once per distinct value.
    """
    distinct = values.drop_nulls().unique()
    keys = pl.Series(pseudonymiser.person_keys(distinct.to_list()), dtype=pl.String)
    problems, ten_digits = _nhs_problems(distinct)
    lookup = pl.DataFrame({"v": distinct, "key": keys, "problem": problems, "ten": ten_digits})
    joined = pl.DataFrame({"v": values}).join(lookup, on="v", how="left", maintain_order="left")
    problem = joined["problem"]
    if values.null_count():
        problem = pl.select(pl.when(values.is_null()).then(pl.lit("empty")).otherwise(problem)).to_series()
    return joined["key"], problem, joined["ten"].fill_null(False)


def _nhs_problems(values: pl.Series) -> tuple[pl.Series, pl.Series]:
    """nhs_number_problem of non-null values, and which are ten ASCII digits once spaces are removed.

    Modulus 11 is vectorised for ten ASCII digits; other values go to nhs_number_problem.
    """
    compact = values.str.replace_all(" ", "", literal=True)
    ascii_ = compact.str.contains(r"^[0-9]{10}$")
    number = pl.col("number")
    digit = [number // 10 ** (9 - k) % 10 for k in range(10)]
    check = 11 - pl.sum_horizontal([digit[k] * (10 - k) for k in range(9)]) % 11
    check = pl.when(check == 11).then(0).otherwise(check)
    valid = (check != 10) & (check == digit[9])
    problem = pl.when(~pl.col("ascii") | valid).then(None).otherwise(pl.lit("failed Modulus 11 check digit"))
    frame = pl.DataFrame({"number": compact.str.to_integer(strict=False), "ascii": ascii_})
    problems = frame.select(problem.cast(pl.String).alias("problem")).to_series()
    if not ascii_.all():
        rows = (~ascii_).arg_true()
        problems = problems.scatter(rows, [nhs_number_problem(v) for v in values.gather(rows).to_list()])
    return problems, ascii_


def _masked(texts: pl.Series, ascii_: bool) -> tuple[pl.Series, pl.Series]:
    """mask_nhs_numbers of every text, and how many runs of digits it masked (null: not counted).

    Replacing each run by ten `#` is exact where every run is ten characters long (the text
    keeps its length: a run is never shorter); other texts are masked in Python.
    """
    masked = texts.str.replace_all(_ASCII_DIGIT_RUN if ascii_ else DIGIT_RUN_PATTERN, _TEN_HASHES)
    same = masked.str.len_bytes() == texts.str.len_bytes()
    added = masked.str.count_matches("#", literal=True) - texts.str.count_matches("#", literal=True)
    runs = pl.select(pl.when(same).then(added // 10)).to_series()
    if not same.all():
        rows = (~same).arg_true()
        masked = masked.scatter(rows, [mask_nhs_numbers(t) for t in texts.gather(rows).to_list()])
    return masked, runs
