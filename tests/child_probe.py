"""A module for pipelines.children to run in the tests: it records which process prepared it and
which ran its work, in the folder named by PRISONHEALTH_CHILD_PROBE."""

import json
import os
from pathlib import Path


def _folder() -> Path:
    return Path(os.environ["PRISONHEALTH_CHILD_PROBE"])


def prepare() -> None:
    (_folder() / "prepared.json").write_text(json.dumps({"pid": os.getpid()}))


def main(arguments: list[str]) -> None:
    if arguments[0] == "fail":
        raise ValueError("the probe was asked to fail")
    (_folder() / "ran.json").write_text(json.dumps({"pid": os.getpid(), "arguments": arguments}))
