"""Monthly refreshes of two commits taken in turns: `python -m benchmarks.compare BEFORE AFTER`.

This machine's speed drifts through the day by more than most changes move a refresh: on
2026-11-27 the monthly refresh at 120 months took 62.4 to 64.6 s in `make bench` at 10:50
(0cdb9c3), and 74.1 to 76.2 s three hours later here (`b0c2473 62f39c6`: b0c2473's changes since
0cdb9c3 touch only the audit's temporary folder). So two benchmark results taken hours apart
cannot say what a change gained. This checks
each commit out in a git worktree (under ~/.cache/prisonhealth/bench-work/compare/, with this
project's virtual environment) and runs the benchmark's monthly refresh of the last month
from each in turn, `--runs` times, on the warehouse the last `make bench` built, then prints
every run and the median of each. Both commits must read and write that warehouse as it is.

`--backfill N` compares backfills instead: each run refreshes the last N national months into a
new warehouse (as `make bench` does for its 12 months of history), so what a change does to a
backfill shows in minutes rather than in the hour a 120-month backfill takes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
from pathlib import Path

from benchmarks.run import CACHE, ROOT, ensure_sample, link_months, log, month_list, monthly_refreshes, refresh


def worktree(commit: str) -> Path:
    """A checkout of `commit`, made once, that runs with this project's virtual environment."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{commit}^{{commit}}"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    path = CACHE / "bench-work" / "compare" / sha[:12]
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True,
                       capture_output=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commits", nargs=2, metavar="COMMIT", help="the code before and after a change")
    parser.add_argument("--runs", type=int, default=3, help="refreshes of each (default 3)")
    parser.add_argument("--months", type=int, default=120, help="months of national history (default 120)")
    parser.add_argument("--seed", type=int, default=20240401)
    parser.add_argument("--backfill", type=int, metavar="N", help="compare backfills of the last N months instead")
    args = parser.parse_args(argv)

    landing = ensure_sample(args.months, args.seed)
    month = month_list(landing)[-1]
    if args.backfill:
        short, out = CACHE / "bench-work" / f"landing-{args.backfill}", CACHE / "bench-work" / "compare-backfill"
        link_months(landing, short, month_list(landing)[-args.backfill:])
        what = f"backfill of the last {args.backfill} months to {month}"
    else:
        out = CACHE / "bench-work" / f"full{args.months}"
        if not (out / "warehouse.duckdb").exists():
            parser.error(f"no warehouse at {out}: run `make bench` first")
        what = f"monthly refresh of {month} at {args.months} months"
    code = {commit: worktree(commit) for commit in args.commits}
    seconds: dict[str, list[float]] = {commit: [] for commit in args.commits}
    for turn in range(1, args.runs + 1):
        for commit in args.commits:
            log(f"turn {turn}/{args.runs}: {commit}")
            if args.backfill:
                shutil.rmtree(out, ignore_errors=True)
                result = refresh(short, out, code=code[commit])
                log(f"{what}: {result['seconds']:.1f} s, peak {result['peak_rss_mib']:.0f} MiB")
            else:
                (result,) = monthly_refreshes(landing, out, month, 1, code[commit])
            seconds[commit].append(result["seconds"])
    if args.backfill:
        shutil.rmtree(out, ignore_errors=True)
    for commit, times in seconds.items():
        log(f"{commit}: {what}, median {statistics.median(times):.1f} s ({', '.join(f'{t:.1f}' for t in times)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
