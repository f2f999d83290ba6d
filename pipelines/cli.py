"""`prisonhealth`: generate sample data, refresh the pipeline, regenerate the documents.

Exit codes of `refresh` follow the data contract: 0 every file loaded, 2 a file
was rejected or a blocking check failed, 1 anything else. Tracebacks go to the
log file under the output directory, never to the screen.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from datetime import datetime
from pathlib import Path

from rich.console import Console

from pipelines import settings

console = Console(highlight=False, soft_wrap=True)


def _log_to_file(out: Path) -> Path:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"refresh-{datetime.now():%Y%m%d-%H%M%S}.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("dagster", "great_expectations"):
        logging.getLogger(noisy).propagate = True
    logging.captureWarnings(True)
    warnings.simplefilter("ignore")
    return path


def cmd_refresh(args) -> int:
    out = Path(args.out)
    log_path = _log_to_file(out)
    try:
        from pipelines import pseudonymise
        from pipelines.refresh import RefreshError, run_refresh

        if pseudonymise.warn_if_development_key():
            console.print(f"[bold yellow]WARNING: {pseudonymise.KEY_VARIABLE} is not set: person keys use the "
                          "public DEVELOPMENT key. Never load real patient data this way.[/]")
        report = run_refresh(Path(args.landing), out, args.months,
                             progress=lambda line: console.print(f"  {line}"))
    except RefreshError as error:
        logging.getLogger("prisonhealth").error("refresh not started: %s", error)
        console.print(f"[red]refresh not started: {error}[/]")
        return 1
    except Exception:  # noqa: BLE001 - the contract: exit 1, traceback only in the log
        logging.getLogger("prisonhealth").exception("refresh failed")
        console.print(f"[red]refresh failed; see {log_path}[/]")
        return 1
    for file, message in report.rejected:
        console.print(f"[red]REJECTED {file}: {message}[/]")
    for item in report.blocked:
        console.print(f"[yellow]BLOCKED {item} (a blocking data-quality check failed)[/]")
    for item in report.runs_failed:
        console.print(f"[red]FAILED {item}; see {log_path}[/]")
    files = ", ".join(f"{n} {status}" for status, n in sorted(report.files.items())) or "none"
    rows = report.rows
    console.print(
        f"Refreshed {len(report.months)} month(s) in {report.seconds:.1f} s: files {files}; "
        f"rows read {rows.get('read', 0):,}, loaded {rows.get('loaded', 0):,}, "
        f"quarantined {rows.get('quarantined', 0):,}."
    )
    console.print(f"Warehouse: {out / 'warehouse.duckdb'}")
    for label, path in (("Analysts' database", out / "analyst.duckdb"), ("Report", out / "report" / "index.html")):
        if path.exists():
            console.print(f"{label}: {path}")
    console.print(f"Log: {log_path}")
    return report.exit_code


def cmd_sample(args) -> int:
    from pipelines import sample

    summary = sample.generate(Path(args.out), scale=args.scale, seed=args.seed, start=args.start,
                              months=args.months, progress=True)
    console.print(str(summary))
    return 0


def cmd_docs(args) -> int:
    from pipelines import docs

    written = docs.write_all()
    for path in written:
        console.print(f"wrote {path.relative_to(settings.PROJECT_ROOT)}")
    console.print(f"{len(written)} document(s) updated." if written else "Documents are up to date.")
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="prisonhealth", description=__doc__.splitlines()[0])
    sub = main.add_subparsers(dest="command", required=True)

    refresh = sub.add_parser("refresh", help="land, validate and compute the chosen months")
    refresh.add_argument("--landing", default=str(settings.landing_dir()), help="landing directory")
    refresh.add_argument("--out", default=str(settings.out_dir()), help="output directory (default ./out)")
    refresh.add_argument("--months", help="YYYY-MM:YYYY-MM (either end may be left open); default all found")
    refresh.set_defaults(func=cmd_refresh)

    sample = sub.add_parser("sample", help="write a synthetic landing directory")
    sample.add_argument("--scale", choices=("demo", "national"), default="demo")
    sample.add_argument("--seed", type=int, default=20240401)
    sample.add_argument("--start", help="first month, YYYY-MM")
    sample.add_argument("--months", type=int, help="number of months")
    sample.add_argument("--out", default="data/sample", help="landing directory to write")
    sample.set_defaults(func=cmd_sample)

    docs = sub.add_parser("docs", help="regenerate the data dictionary, methodology and expectation suites")
    docs.set_defaults(func=cmd_docs)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
