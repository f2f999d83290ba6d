"""What writing the stored rows costs, at national scale: `python -m benchmarks.storage`.

Most of a backfill is DuckDB compressing rows as it writes them: the raw rows of each source
month, the conformed rows, the indicators' member rows, then the analysts' copy of the public
ones. This times writing the latest months of the two largest tables of the warehouse the last
`make bench` built (by default ~/.cache/prisonhealth/bench-work/full120) into a scratch file,
with a CHECKPOINT so the rows are compressed as a commit does, and reports the file's size:

- `raw.prescribing` as stored, and without `original_row` (the record as delivered, which the
  contract keeps so a quarantined row can be shown as it came);
- `indicators.members` as stored (one row per unit counted, for every indicator);
- both again uncompressed (`force_compression = 'uncompressed'`), which says how much of the
  time is compression.

Each case is written twice, in turns, so a drift of the machine falls on every case; the
shorter time of each is reported. The warehouse is only read.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb

from benchmarks.run import CACHE, log
from pipelines import indicators, settings

MONTHS = 12

RAW = "SELECT * FROM w.raw.prescribing WHERE source_month >= $first"
MEMBERS = "SELECT * FROM w.indicators.members WHERE month >= CAST($first || '-01' AS DATE)"
# case -> (query over the warehouse, attached as w, with $first for the first month; compressed?)
CASES: dict[str, tuple[str, bool]] = {
    "raw.prescribing, every column": (RAW, True),
    "raw.prescribing, without original_row": (RAW.replace("*", "* EXCLUDE (original_row)"), True),
    "indicators.members": (MEMBERS, True),
    "raw.prescribing, every column, uncompressed": (RAW, False),
    "indicators.members, uncompressed": (MEMBERS, False),
}


def write(database: Path, scratch: Path, query: str, first: str, compressed: bool) -> tuple[float, int, int]:
    """Seconds to write the query's rows to a new file and checkpoint it; the file's bytes; the rows."""
    target = scratch / "written.duckdb"
    with duckdb.connect(str(target), config=settings.duckdb_config()) as conn:
        if not compressed:
            conn.execute("SET force_compression = 'uncompressed'")
        conn.execute(f"ATTACH '{database}' AS w (READ_ONLY)")
        conn.execute("SET preserve_insertion_order = false")  # as the pipeline writes its large tables
        began = time.monotonic()
        conn.execute(f"CREATE TABLE written AS {query}", {"first": first})
        conn.execute("CHECKPOINT")
        seconds = time.monotonic() - began
        (rows,) = conn.execute("SELECT count(*) FROM written").fetchone()
    size = target.stat().st_size
    for leftover in scratch.iterdir():
        leftover.unlink()
    return seconds, size, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CACHE / "bench-work" / "full120",
                        help="a pipeline output directory (default: the benchmark's 120-month one)")
    parser.add_argument("--months", type=int, default=MONTHS, help=f"latest months written (default {MONTHS})")
    args = parser.parse_args(argv)
    database = args.out / "warehouse.duckdb"
    if not database.exists():
        parser.error(f"{database} does not exist: run `make bench` first")
    with duckdb.connect(str(database), read_only=True) as conn:
        reported = indicators.reported_months(conn)
    first = reported[-args.months:][0]
    log(f"writing the rows of {first} to {reported[-1]} ({min(args.months, len(reported))} months) "
        f"from {database}, each case twice in turns")
    best: dict[str, tuple[float, int, int]] = {}
    with tempfile.TemporaryDirectory(dir=args.out) as scratch:
        for turn in (1, 2):
            for case, (query, compressed) in CASES.items():
                seconds, size, rows = write(database, Path(scratch), query, first, compressed)
                log(f"    {case:<46} ({turn}) {seconds:6.2f} s {size / 2**20:8.1f} MiB {rows:>11,} rows")
                if case not in best or seconds < best[case][0]:
                    best[case] = (seconds, size, rows)
    log("fastest of each:")
    for case, (seconds, size, rows) in best.items():
        log(f"    {case:<46} {seconds:6.2f} s {size / 2**20:8.1f} MiB {rows:>11,} rows")
    log(f"wrote {len(CASES)} cases twice; {args.out} is unchanged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
