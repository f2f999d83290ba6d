"""Shared fixtures: one small synthetic landing directory refreshed end to end, reused by many tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

# A refresh is a real, in-process Dagster run of the project's definitions on this sample.
SAMPLE_MONTHS = 5
SAMPLE_START = "2024-01"


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
    generation = sample.generate(landing, "demo", seed=7, start=SAMPLE_START, months=SAMPLE_MONTHS)
    report = run_refresh(landing, out, progress=lambda line: None)
    return RefreshedSample(landing, out, generation, report)
