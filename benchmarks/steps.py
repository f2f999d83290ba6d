"""Where a refresh's time went, asset by asset: the sums of the step durations in its log.

`python -m benchmarks.steps LOG` reads a refresh log (`<out>/logs/refresh-*.log`; the backfill
of `make bench` leaves one in ~/.cache/prisonhealth/bench-work/full120/logs) and prints, for
each kind of run (source months, indicator months, the publication), its runs' wall time
(from the log's timestamps), the sum of its steps' durations, and each step's total. For the
source months it then gives each step's mean over blocks of 20 months, which shows whether a
month's cost grows with the years loaded before it.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path

_RUN = re.compile(r"^(\S+ \S+) INFO prisonhealth\.refresh: (.+?) steps: (.*)$")
_STEP = re.compile(r"(\w+) (\d+(?:\.\d+)?) s")
BLOCK = 20


def kind_of(label: str) -> str:
    """'sources', 'indicators' or the label itself ('reference tables', 'publication')."""
    match = re.match(r"\[\d+/\d+\] (\w+) \d{4}-\d{2}$", label)
    return match.group(1) if match else label


def runs(lines: list[str]) -> list[tuple[datetime, str, dict[str, float]]]:
    """(when the run ended, its label, seconds per step) of every run the log records."""
    found = []
    for line in lines:
        match = _RUN.match(line.rstrip())
        if match:
            when, label, steps = match.groups()
            found.append((datetime.strptime(when, "%Y-%m-%d %H:%M:%S,%f"), label,
                          {name: float(seconds) for name, seconds in _STEP.findall(steps)}))
    return found


def summary(lines: list[str]) -> list[str]:
    recorded = runs(lines)
    wall: dict[str, float] = defaultdict(float)
    by_kind: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    count: dict[str, int] = defaultdict(int)
    for (before, _, _), (ended, label, _) in zip(recorded, recorded[1:], strict=False):
        kind = kind_of(label)  # the first run has no start in the log: it is left out of the wall times
        wall[kind] += (ended - before).total_seconds()
    for _, label, steps in recorded:
        kind = kind_of(label)
        count[kind] += 1
        for name, seconds in steps.items():
            by_kind[kind][name] += seconds
    out = []
    for kind, steps in by_kind.items():
        out.append(f"{kind}: {count[kind]} run(s), {wall[kind]:.1f} s wall, steps {sum(steps.values()):.1f} s")
        out += [f"  {name:<36} {seconds:8.1f} s" for name, seconds in sorted(steps.items(), key=lambda s: -s[1])]
    months = [steps for _, label, steps in recorded if kind_of(label) == "sources"]
    if len(months) > BLOCK:
        blocks = [months[start:start + BLOCK] for start in range(0, len(months), BLOCK)]
        out.append(f"sources, mean seconds per month, by blocks of {BLOCK} months:")
        out.append(f"  {'step':<36}" + "".join(f"{f'{i * BLOCK + 1}-{i * BLOCK + len(b)}':>9}"
                                                 for i, b in enumerate(blocks)))
        for name in sorted({name for steps in months for name in steps}):
            out.append(f"  {name:<36}" + "".join(f"{sum(m.get(name, 0.0) for m in b) / len(b):9.2f}" for b in blocks))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="a refresh log (<out>/logs/refresh-*.log)")
    args = parser.parse_args(argv)
    print("\n".join(summary(args.log.read_text(encoding="utf-8").splitlines())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
