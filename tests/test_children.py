"""Second processes (pipelines.children): started warm, they have imported their module before
they are handed their work, and the work runs in that same process."""

import json
import os
import time

import pytest

from pipelines import children

PROBE = "tests.child_probe"


@pytest.fixture
def probe(tmp_path, monkeypatch):
    monkeypatch.setenv("PRISONHEALTH_CHILD_PROBE", str(tmp_path))
    yield tmp_path
    children._stop_warm_children()


def _wait_for(path, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)
    return json.loads(path.read_text())


def test_a_warm_child_prepares_before_its_work_and_then_runs_it(probe):
    children.warm(PROBE)
    prepared = _wait_for(probe / "prepared.json")
    time.sleep(0.3)
    assert not (probe / "ran.json").exists()  # prepared, and waiting for its arguments
    child = children.start(PROBE, "first", "second argument")
    assert child.wait() == 0, child.errors()
    ran = json.loads((probe / "ran.json").read_text())
    assert ran == {"pid": prepared["pid"], "arguments": ["first", "second argument"]}
    assert PROBE not in children._WARM  # taken: the next start is a new process


def test_a_child_started_cold_prepares_and_runs_too(probe):
    child = children.start(PROBE, "cold")
    assert child.wait() == 0, child.errors()
    ran = json.loads((probe / "ran.json").read_text())
    assert ran["arguments"] == ["cold"]
    assert json.loads((probe / "prepared.json").read_text())["pid"] == ran["pid"]


def test_a_failing_child_reports_its_error(probe):
    child = children.start(PROBE, "fail")
    assert child.wait() != 0
    assert "ValueError: the probe was asked to fail" in child.errors()


def test_a_warm_child_given_no_work_exits_when_its_parent_closes_its_input(probe):
    children.warm(PROBE)
    child = children._WARM.pop(PROBE)
    _wait_for(probe / "prepared.json")
    child._process.stdin.close()  # what the system does when the parent dies
    assert child.wait() == 0
    assert not (probe / "ran.json").exists()


def test_a_dead_warm_child_is_replaced_by_a_cold_start(probe):
    children.warm(PROBE)
    children._WARM[PROBE].kill()
    child = children.start(PROBE, "again")
    assert child.wait() == 0, child.errors()
    assert json.loads((probe / "ran.json").read_text())["arguments"] == ["again"]


class _FirstStepDone(Exception):
    """Ends a refresh once its first step (the reference tables) has run."""


def _warmed_before_the_first_step(tmp_path, monkeypatch, months: list[str]) -> list[tuple[str, ...]]:
    from pipelines import refresh, settings

    sample, landing = settings.PROJECT_ROOT / "data" / "sample", tmp_path / "landing"
    for path in sample.rglob("*.csv"):  # the reference tables, and the chosen months of every source
        if path.parent.name == "reference" or path.stem in months:
            (landing / path.parent.name).mkdir(parents=True, exist_ok=True)
            (landing / path.parent.name / path.name).symlink_to(path)
    for variable in ("PRISONHEALTH_LANDING", "PRISONHEALTH_OUT"):  # run_refresh sets them; put back after
        monkeypatch.setenv(variable, os.environ.get(variable, ""))
    warmed: list[tuple[str, ...]] = []
    monkeypatch.setattr(children, "warm", lambda *modules: warmed.append(modules))

    def first_step(line: str) -> None:
        raise _FirstStepDone(line)

    with pytest.raises(_FirstStepDone, match="reference tables"):
        refresh.run_refresh(landing, tmp_path / "out", f"{months[0]}:{months[-1]}", progress=first_step)
    return warmed


def test_a_monthly_refresh_warms_the_audit_and_the_workbook_children_before_its_first_step(tmp_path, monkeypatch):
    from pipelines import refresh

    warmed = _warmed_before_the_first_step(tmp_path, monkeypatch, ["2023-04"])
    assert warmed == [(refresh.AUDIT_CHILD, refresh.WORKBOOK_CHILD)]


def test_a_refresh_of_several_months_warms_no_child_before_its_first_step(tmp_path, monkeypatch):
    assert _warmed_before_the_first_step(tmp_path, monkeypatch, ["2023-04", "2023-05"]) == []
