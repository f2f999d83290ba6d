"""National-scale benchmarks: `make bench` (or `python -m benchmarks.run --help`).

Generates the national synthetic landing directory once (cached outside the repository,
by default in ~/.cache/prisonhealth), then measures, each over several runs with the
median reported:

- ingest throughput of one national month (read, pseudonymise, land raw) next to a bare
  DuckDB `read_csv` of the same files: the floor;
- validation time of one national month (all five sources);
- indicator computation over the full history next to a bare scan of the conformed
  tables: the floor;
- a monthly incremental refresh end to end (`prisonhealth refresh --months M:M` in a
  fresh process) with 12 and with the full history behind it;
- a full backfill end to end;
- peak resident memory of each (measured in a child process).

Each monthly measurement follows one monthly refresh that is recorded apart: the first
refresh after a backfill starts the analysts' database from a copy (no spare file yet), and
a steady month does not.

Writes benchmarks/results.md with the machine, versions and commands. `--skip-backfill`
reuses the last backfilled warehouse (and its backfill time, from ~/.cache/prisonhealth/
bench-work/results-partial.json): the way to measure a change to the publication without a
new hour-long backfill.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prisonhealth"
RESULTS = ROOT / "benchmarks" / "results.md"
PARTIAL = CACHE / "bench-work" / "results-partial.json"
PRISONHEALTH = [sys.executable, "-m", "pipelines.cli"]


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def child(code: str, *args: str) -> dict:
    """Run a measurement in a fresh Python process; returns its JSON result plus peak RSS (MiB)."""
    # VmHWM rather than ru_maxrss, which Linux carries over from this process across the exec
    script = ("import json, sys, time\n" + code
              + "\nhwm = [x for x in open('/proc/self/status') if x.startswith('VmHWM:')][0].split()[1]"
              "\nresult['peak_rss_mib'] = int(hwm) / 1024\nprint('RESULT' + json.dumps(result))")
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    line = [x for x in done.stdout.splitlines() if "RESULT" in x][-1]  # DuckDB's progress bar may precede it
    return json.loads(line[line.index("RESULT") + 6:])


def _tree_rss_kib(pid: int) -> tuple[int, int]:
    """Resident memory of a process and all its descendants now, and the largest high-water mark
    of any one of them (VmHWM), from Linux /proc, in KiB."""
    total, largest, stack = 0, 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = dict(line.split(":", 1) for line in Path(f"/proc/{current}/status").read_text().splitlines())
            total += int(status.get("VmRSS", "0 kB").split()[0])
            largest = max(largest, int(status.get("VmHWM", "0 kB").split()[0]))
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):  # the process ended meanwhile
            continue
    return total, largest


class TreeMemory(threading.Thread):
    """The peak resident memory of a process tree: the larger of its summed resident memory,
    sampled every 0.2 s, and the high-water mark of its largest process.

    The refresh writes the spreadsheet in a second process beside itself, so the peak of the
    single largest process would understate what the machine needs. wait4's ru_maxrss is not
    used: Linux carries the high-water mark of the process that forked the command (this one,
    which has opened the warehouse) across the exec, so it reported this process's memory."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.peak_kib = max(self.peak_kib, *_tree_rss_kib(self.pid))


def timed_command(command: list[str], env: dict | None = None, cwd: Path = ROOT) -> dict:
    """Wall time and peak memory of one command (TreeMemory)."""
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    memory = TreeMemory(process.pid)
    memory.start()
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip())
        if line.startswith("  ") and line.rstrip().endswith(" s"):  # the refresh's per-run progress lines
            log("    " + line.strip())
    memory.done.set()
    status = os.waitpid(process.pid, 0)[1]
    seconds = time.monotonic() - start
    steps = [line.strip() for line in lines if line.startswith("  ") and line.rstrip().endswith(" s")]
    return {"seconds": seconds, "exit_code": os.waitstatus_to_exitcode(status),
            "peak_rss_mib": memory.peak_kib / 1024, "steps": steps[-12:], "tail": lines[-4:]}


def ensure_sample(months: int, seed: int) -> Path:
    landing = CACHE / f"national-{months}m-seed{seed}"
    marker = landing / ".complete"
    if marker.exists():
        log(f"national sample cached at {landing}")
        return landing
    log(f"generating the national sample ({months} months) into {landing}")
    shutil.rmtree(landing, ignore_errors=True)
    subprocess.run([*PRISONHEALTH, "sample", "--scale", "national", "--months", str(months), "--seed", str(seed),
                    "--out", str(landing)], cwd=ROOT, check=True)
    marker.write_text(datetime.now().isoformat())
    return landing


def month_list(landing: Path) -> list[str]:
    return sorted(p.stem for p in (landing / "reception_screening").glob("*.csv"))


INGEST = """
from pathlib import Path
import duckdb
from pipelines import contract, ingest, settings, validation, warehouse
from pipelines.pseudonymise import Pseudonymiser
landing, month, db = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
conn = duckdb.connect(db, config=settings.duckdb_config()); warehouse.create_all(conn)
for table in contract.REFERENCES:
    ingest.ingest(conn, landing, table, None, Pseudonymiser())
    validation.validate(conn, table, None)
rows = 0
t = time.monotonic()
for table in contract.SOURCES:
    outcome = ingest.ingest(conn, landing, table, month, Pseudonymiser(), force=True)
    rows += outcome.rows_read
ingest_seconds = time.monotonic() - t
t = time.monotonic()
for table in contract.SOURCES:
    validation.validate_partition(conn, table, month)
validate_seconds = time.monotonic() - t
files = [str(landing / t.name / f"{month}.csv") for t in contract.SOURCES]
t = time.monotonic()
bare_rows = 0
for f in files:
    bare_rows += duckdb.sql(f"SELECT count(*) FROM read_csv('{f}', all_varchar=true, strict_mode=false, "
                            "null_padding=true, ignore_errors=true)").fetchall()[0][0]
bare_seconds = time.monotonic() - t
result = {"rows": rows, "ingest_seconds": ingest_seconds, "validate_seconds": validate_seconds,
          "bare_read_csv_seconds": bare_seconds, "bare_rows": bare_rows}
"""

INDICATORS = """
import duckdb
from pipelines import contract, indicators, settings
db, months = sys.argv[1], sys.argv[2].split(",")
conn = duckdb.connect(db, config=settings.duckdb_config())
t = time.monotonic()
for month in months:  # a transaction per month, as the pipeline computes them; rolled back, to leave the warehouse
    conn.execute("BEGIN")
    indicators.compute_month(conn, month)
    conn.execute("ROLLBACK")
indicator_seconds = time.monotonic() - t
t = time.monotonic()
scanned = 0
for table in contract.SOURCES:
    columns = ", ".join(f"max({n})" for n, _ in contract.conformed_columns(table))
    conn.execute(f"SELECT count(*), {columns} FROM conformed.{table.name}").fetchall()
    scanned += conn.execute(f"SELECT count(*) FROM conformed.{table.name}").fetchone()[0]
scan_seconds = time.monotonic() - t
result = {"months": len(months), "indicator_seconds": indicator_seconds, "bare_scan_seconds": scan_seconds,
          "conformed_rows": scanned}
"""


def save_partial(results: dict) -> None:
    """The measurements so far, in case a later one fails (the full write is at the end)."""
    PARTIAL.write_text(json.dumps(results, indent=2, default=str))


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def refresh(landing: Path, out: Path, months: str | None = None, code: Path = ROOT) -> dict:
    """`prisonhealth refresh` of the project at `code` (this one, or a worktree of another commit)."""
    command = [*PRISONHEALTH, "refresh", "--landing", str(landing), "--out", str(out)]
    if months:
        command += ["--months", months]
    result = timed_command(command, env={"DAGSTER_HOME": ""}, cwd=code)
    if result["exit_code"] != 0:
        raise RuntimeError("refresh failed:\n" + "\n".join(result["tail"]))
    return result


def monthly_refreshes(landing: Path, out: Path, month: str, runs: int, code: Path = ROOT) -> list[dict]:
    """Refresh `month` as if its files had just arrived, `runs` times.

    Before each run the warehouse forgets that it loaded the month's files, so the refresh
    reads, validates and computes them again, as it does when the month is first delivered
    (an unchanged file would be skipped).
    """
    import duckdb

    results = []
    for _ in range(runs):
        with duckdb.connect(str(out / "warehouse.duckdb")) as conn:
            conn.execute("DELETE FROM quality.file_loads WHERE month = ?", [month])
        results.append(refresh(landing, out, f"{month}:{month}", code))
        log(f"monthly refresh of {month}: {results[-1]['seconds']:.1f} s, peak {results[-1]['peak_rss_mib']:.0f} MiB")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=120, help="months of national history (default 120)")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median reported)")
    parser.add_argument("--seed", type=int, default=20240401)
    parser.add_argument("--skip-backfill", action="store_true", help="reuse the last backfilled warehouse")
    args = parser.parse_args(argv)

    landing = ensure_sample(args.months, args.seed)
    months = month_list(landing)
    work = CACHE / "bench-work"
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"months": len(months), "runs": args.runs, "code": code_version(),
                     "command": " ".join(["python -m benchmarks.run", *(sys.argv[1:] if argv is None else argv)])}

    probe = months[len(months) // 2]
    log(f"ingest and validation of one national month ({probe}), {args.runs} runs")
    runs = []
    for i in range(args.runs):
        db = work / f"ingest-{i}.duckdb"
        db.unlink(missing_ok=True)
        runs.append(child(INGEST, str(landing), probe, str(db)))
        db.unlink(missing_ok=True)
    results["ingest"] = {
        "rows": runs[0]["rows"],
        "ingest_seconds": median_of(runs, "ingest_seconds"),
        "bare_read_csv_seconds": median_of(runs, "bare_read_csv_seconds"),
        "validate_seconds": median_of(runs, "validate_seconds"),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
    }

    full_out = work / f"full{len(months)}"
    if not args.skip_backfill or not (full_out / "warehouse.duckdb").exists():
        log(f"full backfill of {len(months)} months (one run: it takes a while)")
        shutil.rmtree(full_out, ignore_errors=True)
        results["backfill"] = {**refresh(landing, full_out), "code": results["code"]}
        log(f"backfill: {results['backfill']['seconds']:.0f} s")
    else:
        log("reusing the last backfill")
        earlier = PARTIAL.exists() and json.loads(PARTIAL.read_text())
        if earlier and earlier.get("months") == len(months) and earlier.get("backfill"):
            built = earlier["backfill"]
            results["backfill"] = {**built, "note": "measured by the run that built this warehouse"
                                   + (f", at commit {built['code']}" if "code" in built else "")}
    # The first monthly refresh after a backfill is not a typical month: it starts the analysts' database
    # from a copy (there is no spare file yet), and on a reused warehouse it takes in what an earlier
    # version left pending. It is recorded apart; the medians are of the refreshes after it.
    log("a first monthly refresh after the backfill")
    results["catch_up"] = monthly_refreshes(landing, full_out, months[-1], 1)[0]

    last = months[-1]
    log(f"monthly refresh of {last} with {len(months)} months of history, {args.runs} runs")
    results["monthly_full_history"] = monthly_refreshes(landing, full_out, last, args.runs)
    save_partial(results)

    short = work / "twelve"
    twelve = months[-12:]
    log("backfill of the last 12 months, then the monthly refresh with 12 months of history")
    shutil.rmtree(short, ignore_errors=True)
    short_landing = work / "landing-12"
    link_months(landing, short_landing, twelve)
    refresh(short_landing, short)
    results["catch_up_12_months"] = monthly_refreshes(short_landing, short, last, 1)[0]
    results["monthly_12_months_history"] = monthly_refreshes(short_landing, short, last, args.runs)
    save_partial(results)

    log(f"indicators over the full history ({len(months)} months), {args.runs} runs")
    runs = [child(INDICATORS, str(full_out / "warehouse.duckdb"), ",".join(months)) for _ in range(args.runs)]
    results["indicators"] = {k: median_of(runs, k) for k in ("indicator_seconds", "bare_scan_seconds")}
    results["indicators"]["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    results["indicators"]["conformed_rows"] = runs[0]["conformed_rows"]
    write_results(results, landing)
    log(f"results written to {RESULTS.relative_to(ROOT)}")
    return 0


def code_version() -> str:
    """The commit measured, and whether the checkout had changes of its own."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return (git("rev-parse", "--short", "HEAD") or "unknown") + (" with uncommitted changes" if git(
        "status", "--porcelain", "--untracked-files=no") else "")


def link_months(landing: Path, target: Path, months: list[str]) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(landing / "reference", target / "reference")
    for source in ("reception_screening", "bbv_testing", "tb_screening", "smoking", "prescribing"):
        (target / source).mkdir(parents=True)
        for month in months:
            os.link(landing / source / f"{month}.csv", target / source / f"{month}.csv")


def _versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("dagster", "duckdb", "polars", "great_expectations", "pandas"))


def write_results(results: dict, landing: Path) -> None:
    ingest = results["ingest"]
    indicators = results["indicators"]
    monthly = statistics.median(r["seconds"] for r in results["monthly_full_history"])
    monthly12 = statistics.median(r["seconds"] for r in results["monthly_12_months_history"])
    backfill = results.get("backfill")
    peak = max([ingest["peak_rss_mib"], indicators["peak_rss_mib"],
                *(r["peak_rss_mib"] for r in results["monthly_full_history"]),
                *([backfill["peak_rss_mib"]] if backfill else []),
                *(results[k]["peak_rss_mib"] for k in ("catch_up", "catch_up_12_months") if results.get(k)),
                *(r["peak_rss_mib"] for r in results["monthly_12_months_history"])])

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    rows_per_s = ingest["rows"] / ingest["ingest_seconds"]
    bare_per_s = ingest["rows"] / ingest["bare_read_csv_seconds"]
    lines = [
        "# Benchmark results",
        "",
        f"Recorded {datetime.now():%Y-%m-%d %H:%M} by `{results['command']}` (`make bench` runs it with the "
        f"defaults: 120 months, 3 runs), at commit {results.get('code', 'unknown')}.",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; Python "
        f"{platform.python_version()}; {_versions()}.",
        f"Data: `prisonhealth sample --scale national --months {results['months']}` ({landing}).",
        "Medians over the runs; peak resident memory is that of each measured process with its children, "
        "sampled every 0.2 s: the larger of the largest single process's high-water mark (VmHWM) and the "
        "process tree's summed resident memory.",
        "A monthly refresh first makes the warehouse forget the month's files, so they are read again as on "
        "delivery.",
        "",
        "| measurement | result | floor | ratio | target | |",
        "|---|---:|---:|---:|---|---|",
        f"| ingest of one national month ({ingest['rows']:,} rows) | {ingest['ingest_seconds']:.1f} s "
        f"({rows_per_s:,.0f} rows/s) | bare `read_csv` {ingest['bare_read_csv_seconds']:.2f} s "
        f"({bare_per_s:,.0f} rows/s) | {ingest['ingest_seconds'] / ingest['bare_read_csv_seconds']:.1f}x "
        f"| within 2x | {verdict(ingest['ingest_seconds'] <= 2 * ingest['bare_read_csv_seconds'])} |",
        f"| validation of one national month | {ingest['validate_seconds']:.1f} s | | | | |",
        f"| indicators over {results['months']} months ({indicators['conformed_rows']:,} conformed rows) "
        f"| {indicators['indicator_seconds']:.1f} s | bare scan {indicators['bare_scan_seconds']:.2f} s "
        f"| {indicators['indicator_seconds'] / indicators['bare_scan_seconds']:.1f}x | within 3x | "
        f"{verdict(indicators['indicator_seconds'] <= 3 * indicators['bare_scan_seconds'])} |",
        f"| monthly refresh, {results['months']} months of history | {monthly:.1f} s | | | 60 s | "
        f"{verdict(monthly <= 60)} |",
        f"| monthly refresh, 12 months of history | {monthly12:.1f} s | | {monthly / monthly12:.2f}x "
        f"({results['months']} vs 12 months) | within 1.5x | {verdict(monthly <= 1.5 * monthly12)} |",
    ]
    for key, history in (("catch_up", results["months"]), ("catch_up_12_months", 12)):
        if results.get(key):
            lines.append(f"| first monthly refresh after the backfill, {history} months of history (not in the "
                         f"medians: after a new backfill it starts the analysts' database from a copy) "
                         f"| {results[key]['seconds']:.1f} s | | | | |")
    if backfill:
        note = f" ({backfill['note']})" if "note" in backfill else ""
        lines.append(f"| full backfill of {results['months']} months{note} | {backfill['seconds'] / 60:.1f} min | | | "
                     f"15 min | {verdict(backfill['seconds'] <= 900)} |")
    lines += [
        f"| peak resident memory, all measurements | {peak / 1024:.2f} GiB | | | 4 GiB | {verdict(peak <= 4096)} |",
        "",
        "Raw measurements:",
        "",
        "```json",
        json.dumps(results, indent=2, default=str),
        "```",
        "",
    ]
    RESULTS.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
