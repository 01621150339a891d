"""Threads for the exact sampler and reading at sampling speed (issue 33, items 1 and 2).

Prints a markdown table and appends it, dated, to bench/results/threads.md.

    PYTHONPATH=. python bench/bench_threads.py [--draws 10000000] [--repeats 3] [--rows 1000000]

* 10^7 independent draws (``SpaceTables.iter_sample_arrays``, chunks of 10^6, dropped as they come) of the
  224 -> 7 space and of the 3-D pooled space, with 2 threads and with 1, alternated run by run; medians and
  the ratio. The draws are checked equal for both thread counts on the first chunk.
* Reading ``--rows`` rows of an npz of the 224 -> 7 space: ``read_arrays(space=...)`` and ``nasgen adj``
  (a whole process), beside the old path (an Architecture per row through check_membership, as before this
  branch) timed on a tenth of the rows and scaled; ``SpaceTables.rank`` of 10^5 rows.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nasgen.space.arrays_io import read_arrays, write_arrays
from nasgen.space.definition import SearchSpace, check_membership
from nasgen.space.encoding import arrays_to_architectures, to_arrays
from nasgen.space.tables import SpaceTables

SPACES = {
    "224x224 -> 7x7, 1..5 layers, floor": SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor"),
    "30^3 -> 20^3, 4 layers, pool (2, 1)": SearchSpace((30,) * 3, (20,) * 3, 4, 4, pool=(2, 1)),
}


ADJ_SPACE = ["-I", "224,224", "-O", "7,7", "-n", "1", "-N", "5", "--rounding", "floor"]


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def draw_all(tables: SpaceTables, draws: int, threads: int) -> None:
    for _ in tables.iter_sample_arrays(draws, seed=1, replace=True, chunk=1_000_000, threads=threads):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    options = parser.parse_args()
    here = str(Path(__file__).resolve().parents[1])
    rows = [f"| {options.draws:,} draws | 1 thread (median s) | 2 threads (median s) | speed-up | same draws |",
            "| --- | --- | --- | --- | --- |"]
    for name, space in SPACES.items():
        tables = SpaceTables(space)
        first = [tables.sample_arrays(50_000, seed=1, replace=True, threads=t) for t in (1, 2, 3)]
        same = all(np.array_equal(a, b) for other in first[1:] for a, b in zip(first[0], other))
        times = {1: [], 2: []}
        for _ in range(options.repeats):
            for threads in (1, 2):  # alternated, so the load of other jobs falls on both
                times[threads].append(timed(lambda: draw_all(tables, options.draws, threads)))
        one, two = statistics.median(times[1]), statistics.median(times[2])
        rows.append(f"| {name} | {one:.2f} | {two:.2f} | {one / two:.2f}x | {'yes' if same else 'NO'} |")
        print(rows[-1], flush=True)
    space = next(iter(SPACES.values()))
    tables = SpaceTables(space)
    work = tempfile.mkdtemp(prefix="bench_threads_")
    path = os.path.join(work, "rows.npz")
    arrays = tables.sample_arrays(options.rows, seed=3, replace=True)
    write_arrays(path, *arrays)
    tenth = tuple(a[: options.rows // 10] for a in arrays)

    def old_path():  # what read_arrays(space=) did per row before this branch
        archs = arrays_to_architectures(*tenth)
        for arch in archs:
            check_membership(space, arch)
        to_arrays(space, archs)

    new = statistics.median(timed(lambda: read_arrays(path, space=space)) for _ in range(options.repeats))
    old = statistics.median(timed(old_path) for _ in range(max(1, options.repeats // 2))) * 10
    rank_rows = tuple(a[:100_000] for a in arrays)
    rank_s = statistics.median(timed(lambda: tables.rank(*rank_rows)) for _ in range(1))
    env = {**os.environ, "PYTHONPATH": here}
    adj = statistics.median(timed(lambda: subprocess.run([sys.executable, "-m", "nasgen", "adj", path, *ADJ_SPACE], env=env,
                                                         check=True, stdout=subprocess.DEVNULL))
                            for _ in range(options.repeats))
    os.remove(path)
    rows += ["", f"| reading {options.rows:,} npz rows of the 224 -> 7 space | seconds (median) | rows/s | old path |",
             "| --- | --- | --- | --- |",
             f"| `read_arrays(f, space=...)` | {new:.2f} | {options.rows / new:,.0f} | {old:.1f} s (scaled from a tenth) |",
             f"| `nasgen adj f` (whole process) | {adj:.2f} | {options.rows / adj:,.0f} | - |",
             f"| `SpaceTables.rank` of 100,000 rows | {rank_s:.2f} | {100_000 / rank_s:,.0f} | unchanged (per row) |"]
    table = "\n".join(rows)
    print(table)
    out = Path(here) / "bench" / "results" / "threads.md"
    new_file = not out.exists()
    with open(out, "a", encoding="utf-8") as handle:
        if new_file:
            handle.write("# Threads and reading speed (bench/bench_threads.py)\n")
        handle.write(f"\n## {datetime.date.today().isoformat()}: {platform.processor() or platform.machine()}, "
                     f"{len(os.sched_getaffinity(0))} cores available, shared with other jobs; median of "
                     f"{options.repeats} alternated runs\n\n{table}\n")


if __name__ == "__main__":
    main()
