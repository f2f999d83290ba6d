"""Shared fixtures: one small synthetic landing directory refreshed end to end, reused by many tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tests run on ephemeral Dagster instances, never on a developer's own DAGSTER_HOME.
os.environ.pop("DAGSTER_HOME", None)

# The committed demo sample (data/sample) is exactly the generator's default output, so the
# fixture regenerates it (to have the fault log) and refreshes it end to end: a real, in-process
# run of the project's Dagster definitions, shared by every test that needs a refreshed warehouse.
SAMPLE_MONTHS = 24


@dataclass
class RefreshedSample:
    landing: Path
    out: Path
    generation: object
    report: object

    @property
    def warehouse(self) -> Path:
        return self.out / "warehouse.duckdb"

    @property
    def analyst(self) -> Path:
        return self.out / "analyst.duckdb"


@pytest.fixture(scope="session")
def refreshed_sample(tmp_path_factory) -> RefreshedSample:
    from pipelines import sample
    from pipelines.refresh import run_refresh

    root = tmp_path_factory.mktemp("end_to_end")
    landing, out = root / "landing", root / "out"
    generation = sample.generate(landing, "demo")
    report = run_refresh(landing, out, progress=lambda line: None)
    return RefreshedSample(landing, out, generation, report)
