"""Second Python processes: the spreadsheet and the Great Expectations audit run in one while
the pipeline's process goes on, so the machine's second core has work.

A plain `python -m pipelines.children <module>` rather than multiprocessing: "fork" would copy
DuckDB's and Dagster's threads into the child, and "spawn" re-runs the caller's main script,
which an analyst's own script may not guard. The child gets its inputs through a file and no
database connection (DuckDB allows one writer per file).

A child imports its module (and what the module's `prepare()` imports: Great Expectations alone
takes seconds) before it reads its arguments, one JSON line on stdin, and calls the module's
`main(arguments)`. So a refresh starts each child `warm` before it needs it, and the imports are
done by the time it hands the child its work, instead of taking the second core from the indicator
months and the report. A monthly refresh warms both at its start: the parent's own imports (Dagster,
the definitions) keep one core busy for seconds there and leave the other idle. A refresh of
several months warms each one step ahead, in a step that keeps one core busy (the audit's beside
the last source month, the workbook's beside the last indicator month); not earlier, or a backfill
would hold the idle children's memory for its whole length. A warm child never given work exits
when its parent closes its stdin or dies.
"""

from __future__ import annotations

import atexit
import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile

from pipelines import settings

log = logging.getLogger("prisonhealth.children")


class Child:
    """`python -m pipelines.children <module>`: imported, waiting for `run(arguments)`.

    stderr goes to an anonymous temporary file (a pipe could fill and stall the child; the
    file has no name, so the rows in an error message never outlive the parent)."""

    def __init__(self, module: str):
        path = os.pathsep.join(filter(None, [str(settings.PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        self._errors = tempfile.TemporaryFile("w+")
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, module], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=self._errors, text=True, env={**os.environ, "PYTHONPATH": path})

    def alive(self) -> bool:
        return self._process.poll() is None

    def run(self, *arguments: str) -> Child:
        try:
            self._process.stdin.write(json.dumps(arguments) + "\n")
            self._process.stdin.close()
        except BrokenPipeError:  # the child died first: wait() says so and errors() says why
            pass
        return self

    def wait(self) -> int:
        """The child's exit code, once it has finished."""
        return self._process.wait()

    def errors(self) -> str:
        self._errors.seek(0)
        return self._errors.read()

    def kill(self) -> None:
        self._process.kill()
        self._process.wait()


_WARM: dict[str, Child] = {}  # module -> a child that has imported it and waits for its arguments


def warm(*modules: str) -> None:
    """Start a child for each module now, for `start` to hand its work later."""
    for module in modules:
        if module not in _WARM or not _WARM[module].alive():
            _WARM[module] = Child(module)


def start(module: str, *arguments: str) -> Child:
    """`module.main(arguments)` in a second process: a warm one when there is one."""
    child = _WARM.pop(module, None)
    warmed = child is not None and child.alive()
    if not warmed:
        child = Child(module)
    log.info("%s: work handed to a %s child", module, "warm" if warmed else "new")
    return child.run(*arguments)


@atexit.register
def _stop_warm_children() -> None:
    for child in _WARM.values():
        child.kill()
    _WARM.clear()


def _main(module_name: str) -> None:
    module = importlib.import_module(module_name)
    if hasattr(module, "prepare"):
        module.prepare()
    line = sys.stdin.readline()
    if line:  # nothing: the parent went without handing this child any work
        module.main(json.loads(line))


if __name__ == "__main__":
    _main(sys.argv[1])
