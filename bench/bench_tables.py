"""Parquet and DataFrames of sampled architectures: the figures of issue 31 item 2, in one run.

Rows (10^6 draws of the 224 -> 7 space, floor rounding, 1..5 layers, drawn once outside the timing):

* writing them through ``ArchitectureWriter`` in the sampler's 65,536-row chunks, as npz and as Parquet
  (alternated, the median of ``--repeats``; the Parquet/npz ratio is the figure: at most 2x);
* reading the Parquet file back with ``pandas.read_parquet`` (target: under 1 s) and with nasgen's
  ``read_arrays`` (the path every command takes);
* ``nasgen.to_dataframe(arrays, space, costs=...)`` for the 10^6 rows (target: under 3 s);
* depth-balanced draws (``depth_weights="uniform"``) against plain draws, when the tree has them.

Run: ``python bench/bench_tables.py [--rows 1000000] [--repeats 5] [--out bench/results/tables.md]``.
Nothing here is imported by the tests.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import nasgen
from nasgen.space.arrays_io import ArchitectureWriter, read_arrays

SPACE = nasgen.SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor")
CHUNK = 65536


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _write(path: Path, arrays) -> None:
    layers, kernel, stride = arrays
    with ArchitectureWriter(path) as writer:
        for start in range(0, len(layers), CHUNK):
            writer.write(layers[start:start + CHUNK], kernel[start:start + CHUNK], stride[start:start + CHUNK])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10**6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="also append the table to this Markdown file")
    args = parser.parse_args(argv)

    import pandas as pd

    arrays = nasgen.sample_arrays(SPACE, args.rows, seed=1, replace=True)
    times: dict[str, list[float]] = {k: [] for k in ("npz", "parquet", "pandas", "read_arrays", "frame")}
    with tempfile.TemporaryDirectory() as folder:
        npz, parquet = Path(folder) / "a.npz", Path(folder) / "a.parquet"
        _write(parquet, arrays)  # pyarrow's import and first-use costs stay out of the timing
        pd.read_parquet(parquet)
        for _ in range(args.repeats):
            times["npz"].append(_timed(lambda: _write(npz, arrays)))
            times["parquet"].append(_timed(lambda: _write(parquet, arrays)))
            times["pandas"].append(_timed(lambda: pd.read_parquet(parquet)))
            times["read_arrays"].append(_timed(lambda: read_arrays(parquet)))
            times["frame"].append(_timed(lambda: nasgen.to_dataframe(arrays, SPACE, costs={"width": 16})))
        sizes = {"npz": npz.stat().st_size, "parquet": parquet.stat().st_size}
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [
        ("write npz (baseline)", med["npz"], "1.00x", f"{sizes['npz'] / 2**20:.1f} MiB"),
        ("write Parquet", med["parquet"], f"{med['parquet'] / med['npz']:.2f}x (target <= 2x)",
         f"{sizes['parquet'] / 2**20:.1f} MiB"),
        ("pandas.read_parquet", med["pandas"], "target < 1 s", ""),
        ("nasgen.read_arrays(parquet)", med["read_arrays"], "", ""),
        ("to_dataframe, sizes + params + flops", med["frame"], "target < 3 s", ""),
    ]
    depth = _depth_rows(args)
    lines = [f"`python bench/bench_tables.py --rows {args.rows} --repeats {args.repeats}` "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rows} draws of {SPACE.describe()}; "
             f"medians of {args.repeats}, alternated)", "",
             "| row | median s | against | file |", "|---|---|---|---|"]
    lines += [f"| {name} | {seconds:.3f} | {against} | {size} |" for name, seconds, against, size in rows + depth]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as handle:
            handle.write("\n" + text + "\n")
    return 0


def _depth_rows(args) -> list[tuple[str, float, str, str]]:
    """Plain against depth-balanced draws, alternated, when the tree has depth weights."""
    tables = nasgen.SpaceTables(SPACE)
    try:
        tables.sample_arrays(10, seed=0, replace=True, depth_weights="uniform")
    except TypeError:
        return []
    plain, balanced = [], []
    for r in range(args.repeats):
        plain.append(_timed(lambda: tables.sample_arrays(args.rows, seed=r, replace=True)))
        balanced.append(_timed(lambda: tables.sample_arrays(args.rows, seed=r, replace=True, depth_weights="uniform")))
    p, b = statistics.median(plain), statistics.median(balanced)
    return [("draws, depth_weights=space (baseline)", p, f"{args.rows / p / 1e6:.2f} M/s", ""),
            ("draws, depth_weights=uniform", b, f"{args.rows / b / 1e6:.2f} M/s, {p / b:.2f}x the rate "
             "(target >= 0.5x)", "")]


if __name__ == "__main__":
    sys.exit(main())
