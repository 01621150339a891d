"""Old tree against new, interleaved: the core rows that single runs of bench_core.py cannot separate from noise.

``bench_core.py`` times each tree in its own run, minutes apart; on a shared
2-core machine the spread between two runs of the same tree (10-30 %) is
larger than the differences being asked about. This script alternates fresh
child processes of the baseline checkout and of this one (``--pairs`` times,
the new tree first in every pair), each child timing the medians of the
rows below, and reports per-row medians and the paired new/old ratios.

Rows: ``count`` with fresh tables of the three bench_core count spaces;
10^6 draws with replacement of the 3-D pooled space (tables built outside
the timing); 10^5 distinct draws of the 2-D 224 space.

Run: ``python bench/bench_core_ab.py --baseline /path/to/old/checkout [--pairs 7]``
(the baseline needs its extension built in place: ``python setup.py
build_ext --inplace`` there). Nothing here is imported by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

_CHILD = "--child"


def child(repeats: int, label: str) -> dict:
    import numpy as np

    import nasgen
    from nasgen.space import tables as core
    from nasgen.space.definition import SearchSpace

    def median_ms(fn, n):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return float(np.median(times)) * 1e3

    new = hasattr(core, "SpaceTables")  # a tree before SpaceTables kept its tables in a hidden lru_cache

    def fresh_count(space):
        if not new:
            core._compile.cache_clear()
        return nasgen.count(space)

    out = {"tree": label}
    for name, space in (("count 2-D 224 -> 7, 1..5", SearchSpace((224, 224), (7, 7), 1, 5)),
                        ("count 1-D 512 -> 1, 1..8", SearchSpace((512,), (1,), 1, 8)),
                        ("count 1-D 1024 -> 4, 1..6", SearchSpace((1024,), (4,), 1, 6))):
        fresh_count(space)
        out[name + " (ms)"] = median_ms(lambda: fresh_count(space), 10 * repeats)
    pooled = SearchSpace((30,) * 3, (20,) * 3, 4, 4, pool=(2, 1))
    if new:
        tables = core.SpaceTables(pooled)
        draw = lambda: tables.sample_arrays(10**6, seed=1, replace=True)  # noqa: E731
    else:
        core.sample_arrays(pooled, 10, seed=0)
        draw = lambda: core.sample_arrays(pooled, 10**6, seed=1)  # noqa: E731
    draw()
    out["sample 10^6, 3-D pooled (ms)"] = median_ms(draw, repeats)
    big = SearchSpace((224, 224), (7, 7), 1, 5)

    def distinct(samples):  # fresh tables on every call, in either API
        if new:
            return core.SpaceTables(big).sample_arrays(samples, seed=2, replace=False)
        return core.sample_arrays(big, samples, seed=2, replace=False)

    distinct(10)
    out["10^5 distinct, 2-D 224 (ms)"] = median_ms(lambda: distinct(10**5), repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="an old checkout with its extension built in place")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5, help="timings per row in a child (counts: 10x)")
    parser.add_argument(_CHILD, choices=("old", "new"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.repeats, args.child)))
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = []
    for _ in range(args.pairs):
        for tree, label in ((here, "new"), (os.path.abspath(args.baseline), "old")):
            env = dict(os.environ, PYTHONPATH=tree)
            done = subprocess.run([sys.executable, os.path.abspath(__file__), _CHILD, label, "--baseline", tree,
                                   "--repeats", str(args.repeats)], env=env, capture_output=True, text=True,
                                  check=True, cwd=tree)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    old = [r for r in runs if r["tree"] == "old"]
    new = [r for r in runs if r["tree"] == "new"]
    print(f"{args.pairs} interleaved pairs of fresh processes (new first), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.2f} at the end\n")
    print("| row | old median | new median | paired new/old time, median | pairs with new faster |")
    print("|---|---|---|---|---|")
    for key in (k for k in new[0] if k != "tree"):
        ratios = [n[key] / o[key] for o, n in zip(old, new)]
        print(f"| {key} | {statistics.median(o[key] for o in old):.2f} | {statistics.median(n[key] for n in new):.2f} | "
              f"{statistics.median(ratios):.3f} | {sum(r < 1 for r in ratios)} of {len(ratios)} |")


if __name__ == "__main__":
    main()
