"""The test suite's wall time from a fresh clone, for several commits in one run.

Each commit is cloned from this repository into a new temporary directory and
``.ci/run`` runs there as CI runs it (a fresh virtual environment, the
project installed from its own files, the README's test command). The
commits run one after another, in the order given, ``--rounds`` times
(interleaved): on a shared machine whose speed drifts by tens of per cent
within an hour, only times measured side by side compare.

    python bench/bench_suite.py bfa80bb b7c3f2f HEAD --rounds 1

prints, per run, the end-to-end seconds (install included), pytest's own
"N passed in S s" figure and the exit status, then the medians per commit
and their ratio to the first commit.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASSED = re.compile(r"(\d+) passed.* in ([\d.]+)s")


def run_once(commit: str) -> dict:
    """Clone ``commit`` into a new directory and time its ``.ci/run``."""
    with tempfile.TemporaryDirectory(prefix="nasgen-suite-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
        start = time.perf_counter()
        done = subprocess.run(["bash", ".ci/run"], cwd=clone, capture_output=True, text=True,
                              env={**os.environ, "CI": "true"}, check=False)
        seconds = time.perf_counter() - start
    found = PASSED.findall(done.stdout + done.stderr)
    tests, pytest_s = (int(found[-1][0]), float(found[-1][1])) if found else (0, float("nan"))
    return {"commit": commit, "rc": done.returncode, "end_to_end_s": seconds, "pytest_s": pytest_s, "tests": tests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commits", nargs="+", help="commits to compare (the first is the baseline)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (default 1)")
    args = parser.parse_args()
    commits = [subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", c], capture_output=True, text=True,
                              check=True).stdout.strip() for c in args.commits]
    runs = []
    for _ in range(args.rounds):
        for commit in commits:
            r = run_once(commit)
            runs.append(r)
            print(f"{time.strftime('%H:%M:%S')} {commit}: exit {r['rc']}, {r['tests']} passed, pytest {r['pytest_s']:.1f} s, "
                  f"end to end {r['end_to_end_s']:.1f} s", flush=True)
    print("\n| commit | tests | pytest s (median) | end to end s (median) | end to end vs first |")
    print("|---|---|---|---|---|")
    base = None
    for commit in commits:
        mine = [r for r in runs if r["commit"] == commit]
        e2e = statistics.median(r["end_to_end_s"] for r in mine)
        base = base or e2e
        print(f"| {commit} | {mine[0]['tests']} | {statistics.median(r['pytest_s'] for r in mine):.1f} | {e2e:.1f} | "
              f"{e2e / base:.2f}x |")
    if any(r["rc"] != 0 for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
