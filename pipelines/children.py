"""Second Python processes: the spreadsheet and the Great Expectations audit run in one while
the pipeline's process goes on, so the machine's second core has work.

A plain `python -m <module>` rather than multiprocessing: "fork" would copy DuckDB's and
Dagster's threads into the child, and "spawn" re-runs the caller's main script, which an
analyst's own script may not guard. The child gets its inputs through a file and no
database connection (DuckDB allows one writer per file).
"""

from __future__ import annotations

import os
import subprocess
import sys

from pipelines import settings


def start(module: str, *args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    """`python -m module args...` with this project importable; stdout discarded, stderr kept
    (a pipe by default) for the error a failed child reports."""
    path = os.pathsep.join(filter(None, [str(settings.PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.DEVNULL, stderr=stderr,
                            text=True, env={**os.environ, "PYTHONPATH": path})
