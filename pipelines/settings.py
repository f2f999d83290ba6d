"""Where the pipeline reads and writes, from the environment so the CLI and the UI agree.

PRISONHEALTH_LANDING  landing directory (default: data/sample of this checkout)
PRISONHEALTH_OUT      output directory (default: ./out): warehouse.duckdb, analyst.duckdb, report/
PRISONHEALTH_FIRST_MONTH  first monthly partition (default: the earliest month file in the landing
                      directory, else 2015-04)
PRISONHEALTH_QUARANTINE_THRESHOLD  share of a file's rows quarantined above which the month is
                      blocked (default 0.05)
PRISONHEALTH_DUCKDB_MEMORY  DuckDB's memory limit for the warehouse (default 2GB): DuckDB spills
                      to disk beyond it, which keeps a national refresh inside 4 GiB of RAM
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines import contract, landing

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LANDING = PROJECT_ROOT / "data" / "sample"
DEFAULT_OUT = Path("out")
DEFAULT_FIRST_MONTH = "2015-04"
DEFAULT_QUARANTINE_THRESHOLD = 0.05
DEFAULT_DUCKDB_MEMORY = "2GB"


def landing_dir() -> Path:
    return Path(os.environ.get("PRISONHEALTH_LANDING") or DEFAULT_LANDING)


def out_dir() -> Path:
    return Path(os.environ.get("PRISONHEALTH_OUT") or DEFAULT_OUT)


def quarantine_threshold() -> float:
    return float(os.environ.get("PRISONHEALTH_QUARANTINE_THRESHOLD") or DEFAULT_QUARANTINE_THRESHOLD)


def duckdb_config() -> dict[str, str]:
    """Settings for every warehouse connection. DuckDB's own default (80% of RAM) lets one
    national query take most of the machine; the cap makes it spill instead."""
    return {"memory_limit": os.environ.get("PRISONHEALTH_DUCKDB_MEMORY") or DEFAULT_DUCKDB_MEMORY}


def months_in_landing(landing_path: Path) -> list[str]:
    """Every month for which at least one source delivered a file."""
    months: set[str] = set()
    for table in contract.SOURCES:
        months |= set(landing.month_files(landing_path, table.name))
    return sorted(months)


def first_month() -> str:
    configured = os.environ.get("PRISONHEALTH_FIRST_MONTH")
    if configured:
        return configured
    found = months_in_landing(landing_dir())
    return found[0] if found else DEFAULT_FIRST_MONTH
