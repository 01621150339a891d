"""Benchmark of the search-space core (issue 2's figures).

Prints a markdown table (median of repeats, ratio against a baseline measured
in the same run) and writes it to bench/results/core.md.

    python bench/bench_core.py [--repeats 5] [--baseline-repeats 1]

Baselines:
* counting: a straightforward pure-Python memoised DP (per dimension, every
  (kernel, stride) pair tried), the way one would write it without the kernel;
* sampling: the plain-Python twin of the kernel (same algorithm, same output);
* Adj_T: numpy's vectorised ``bitwise_count`` over XORed rows.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time

import numpy as np

import nasgen
from nasgen.space import encoding, pykernel
from nasgen.space import tables as core
from nasgen.space.definition import SearchSpace


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def python_memo_count(space: SearchSpace) -> int:
    """Straightforward memoised DP: chains(x, r) sums chains(y, r - 1) over every allowed (k, s)."""
    totals = {}
    for d in range(space.dims):
        out = space.output_shape[d]

        @functools.lru_cache(maxsize=None)
        def chains(x, r):
            if r == 0:
                return int(x == out)
            total = 0
            for s in range(1, x + 1):
                for k in range(s + 1, x + 1):  # relation k > s
                    if (x - k) % s == 0:
                        y = (x - k) // s + 1
                        if y >= out:
                            total += chains(y, r - 1)
            return total

        for L in range(space.min_layers, space.max_layers + 1):
            totals.setdefault(L, 1)
            totals[L] *= chains(space.input_shape[d], L)
    return sum(totals.values())


def fresh_count(space):
    return nasgen.count(space)  # builds fresh tables on every call


def twin_sample(space, samples, seed=0):
    compiled = core.SpaceTables(space)
    values, layer_cum, _ = compiled.layer_tables()
    layers = np.zeros(samples, dtype=np.int64)
    k = np.zeros((samples, space.max_layers, space.dims), dtype=np.int64)
    s = np.zeros_like(k)
    pykernel.sample_batch(compiled.graph, compiled.rules, compiled.components, compiled.cum, compiled.g, values,
                           layer_cum, seed, layers, k, s)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-repeats", type=int, default=1)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "core.md"))
    args = parser.parse_args()
    rows = []

    count_cases = [
        ("2-D 224 -> 7, 1..5 layers", SearchSpace((224, 224), (7, 7), 1, 5)),
        ("1-D 512 -> 1, 1..8 layers", SearchSpace((512,), (1,), 1, 8)),
        ("1-D 1024 -> 4, 1..6 layers", SearchSpace((1024,), (4,), 1, 6)),
    ]
    for name, space in count_cases:
        fast = median_time(lambda: fresh_count(space), args.repeats)
        value = fresh_count(space)
        t0 = time.perf_counter()
        reference = python_memo_count(space)
        slow = time.perf_counter() - t0
        for _ in range(args.baseline_repeats - 1):
            python_memo_count(space)
        assert reference == value, (reference, value)
        rows.append((f"count {name} (= {value})", f"{fast * 1e3:.1f} ms", "pure-Python memoised DP",
                     f"{slow * 1e3:.0f} ms", f"{slow / fast:,.0f}x", "<= 50 ms and >= 1000x"))
        print(rows[-1], flush=True)

    sample_cases = [
        ("2-D 224 -> 7, 1..5 layers", SearchSpace((224, 224), (7, 7), 1, 5)),
        ("3-D 30 -> 20, L = 4, pool (2,1)", SearchSpace((30,) * 3, (20,) * 3, 4, 4, pool=(2, 1))),
    ]
    M = 10**6
    for name, space in sample_cases:
        tables = core.SpaceTables(space)  # built outside the timing, owned by the caller
        tables.sample_arrays(10, seed=0, replace=True)
        fast = median_time(lambda: tables.sample_arrays(M, seed=1, replace=True), args.repeats)
        m_twin = 2000
        slow = median_time(lambda: twin_sample(space, m_twin), args.baseline_repeats)
        rate, twin_rate = M / fast, m_twin / slow
        rows.append((f"sample 10^6 with replacement, {name}", f"{rate / 1e6:.2f} M/s ({fast:.3f} s)",
                     "plain-Python twin", f"{twin_rate / 1e3:.1f} k/s", f"{rate / twin_rate:,.0f}x", ">= 1 M/s"))
        print(rows[-1], flush=True)

    space = SearchSpace((224, 224), (7, 7), 1, 5)
    fast = median_time(lambda: core.SpaceTables(space).sample_arrays(10**5, seed=2, replace=False), args.repeats)
    distinct = len({r.tobytes() for r in encoding.encode(space, core.SpaceTables(space).sample_arrays(10**5, seed=2, replace=False))})
    assert distinct == 10**5
    slow = median_time(lambda: core.SpaceTables(space).sample_arrays(10**5, seed=2, replace=True), args.repeats)
    rows.append(("10^5 distinct architectures, 2-D 224 space", f"{fast:.3f} s", "10^5 with replacement",
                 f"{slow:.3f} s", f"{slow / fast:.2f}x", "< 1 s"))
    print(rows[-1], flush=True)

    rng = np.random.default_rng(0)
    vectors = rng.integers(0, 2**63, size=(10**6, 4), dtype=np.int64).astype(np.uint64)
    fast = median_time(lambda: encoding.adj_t_vectors(vectors), args.repeats)
    numpy_adj = lambda: np.bitwise_count(vectors[1:] ^ vectors[:-1]).sum() / (len(vectors) - 1)  # noqa: E731
    slow = median_time(numpy_adj, args.repeats)
    assert abs(numpy_adj() - encoding.adj_t_vectors(vectors)) < 1e-9
    rows.append(("Adj_T, 10^6 vectors of 256 bits", f"{fast * 1e3:.1f} ms", "numpy bitwise_count",
                 f"{slow * 1e3:.1f} ms", f"{slow / fast:.1f}x", "<= 20 ms"))
    print(rows[-1], flush=True)

    header = ("| case | nasgen (median) | baseline | baseline time | ratio | target |\n"
              "|---|---|---|---|---|---|\n")
    table = header + "".join("| " + " | ".join(r) + " |\n" for r in rows)
    note = (f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, numpy {np.__version__}; repeats: {args.repeats} "
            f"(baseline {args.baseline_repeats}); {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.write("# nasgen core benchmark\n\n" + table + note)
    print()
    print(table + note)


if __name__ == "__main__":
    main()
