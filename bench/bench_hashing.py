"""Benchmark of the hashing samplers (issue 12): CNF encoding, UniGen3 beside UniWit, the 224 -> 7 space, check.

Prints markdown tables (medians of repeats; ratios against a baseline measured
in the same run) and writes them to bench/results/hashing.md.

    python bench/bench_hashing.py [--repeats 3] [--uniwit-timeout 20] [--big-timeout 120] [--quick]

Cells: the paper's Table 1 (no pool) and Table 4 (pool (2, 1)) spaces,
I = 30, O = 20, n = N = 2..4 layers, 1..3 dimensions, M = 20 distinct.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import nasgen
from nasgen.samplers.cnf import encode_space
from nasgen.samplers.hashing import HashingSampler
from nasgen.samplers.registry import SamplingConfig, draw
from nasgen.space.definition import SearchSpace, check_membership

ROOT = Path(__file__).resolve().parent.parent
M = 20


def cells():
    for pooled in (False, True):
        for dims in (1, 2, 3):
            for layers in (2, 3, 4):
                yield pooled, dims, layers, SearchSpace((30,) * dims, (20,) * dims, layers, layers,
                                                        pool=(2, 1) if pooled else None)


def z3_bitblast_seconds(space: SearchSpace) -> float:
    """The baseline: nasgen.samplers.solver's pruned formula through simplify, bit-blast, simplify, tseitin-cnf."""
    import z3

    from nasgen.samplers.formula import Formula

    t0 = time.perf_counter()
    ctx = z3.Context()
    formula = Formula(space, True, [], None, ctx)
    goal = z3.Goal(ctx=ctx)
    goal.add(formula.assertions)
    tactic = z3.Then(*(z3.Tactic(name, ctx=ctx) for name in ("simplify", "bit-blast", "simplify", "tseitin-cnf")))
    tactic(goal)
    return time.perf_counter() - t0


def encoding_section(repeats: int, quick: bool) -> list[str]:
    lines = ["## CNF encoding per cell", "",
             "`nasgen.samplers.cnf.encode_space` (tables built from scratch each time) against the z3 route "
             "(`nasgen.samplers.solver`'s pruned formula through `simplify, bit-blast, simplify, tseitin-cnf`), "
             "median seconds; ratio = z3 / tables.", "",
             "| table | dims | layers | architectures | variables | clauses | tables (s) | z3 bit-blast (s) | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for pooled, dims, layers, space in cells():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            cnf = encode_space(space)
            times.append(time.perf_counter() - t0)
        ours = statistics.median(times)
        base = statistics.median(z3_bitblast_seconds(space) for _ in range(1 if quick else repeats))
        lines.append(f"| {'4' if pooled else '1'} | {dims} | {layers} | {nasgen.count(space)} | {cnf.num_vars} | "
                     f"{len(cnf.clauses)} | {ours:.4f} | {base:.3f} | {base / ours:.0f}x |")
        print(lines[-1], flush=True)
    return lines


def timed_draw(space, method, seed, timeout, where=()):
    t0 = time.perf_counter()
    config = SamplingConfig(method=method, samples=M, seed=seed, timeout=timeout, where=tuple(where))
    with draw(space, config) as run:
        chunks = list(run.draw())
        reason, stats = run.stop_reason, dict(run.statistics)
    seconds = time.perf_counter() - t0
    found = 0
    for layers, kernel, stride in chunks:
        for arch in nasgen.space.encoding.arrays_to_architectures(layers, kernel, stride):
            check_membership(space, arch)
            found += 1
    return seconds, found, reason, stats


def timed_plain_unigen(space, seed):
    """UniGen as pyunigen runs alone: ApproxMC's count first, XORs over every canonical bit (the old default)."""
    t0 = time.perf_counter()
    with HashingSampler(space, "unigen", M, seed=seed, exact_count_enabled=False,
                        independent_support_enabled=False) as sampler:
        found = sum(len(chunk[0]) for chunk in sampler.draw())
    return time.perf_counter() - t0, found


def sampling_section(repeats: int, uniwit_timeout: float) -> list[str]:
    lines = ["## UniGen3 beside UniWit: M = 20 distinct, encoding included", "",
             f"unigen: median of {repeats} seeds (0..{repeats - 1}), the CNF encoded in the child process each "
             "time, UniGen started from the exact count and hashing over an independent support (support = its "
             "size / the canonical bits; support (s) = Padoa's time, inside the total). unigen plain: the same "
             "seeds as pyunigen runs alone (ApproxMC's count, XORs over every canonical bit), the baseline of the "
             f"speed-up. uniwit: one run (seed 0) with a {uniwit_timeout:.0f} s timeout; ratio = uniwit / unigen "
             "(a lower bound where uniwit timed out).", "",
             "| table | dims | layers | architectures | unigen (s) | support | support (s) | unigen plain (s) | "
             "speed-up | uniwit (s) | uniwit found | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    # The first hashing run starts the forkserver (about a second); later runs fork from it.
    timed_draw(SearchSpace((30,), (20,), 2, 2), "unigen", 0, None)
    for pooled, dims, layers, space in cells():
        runs = [timed_draw(space, "unigen", seed, None) for seed in range(repeats)]
        assert all(r[1] == min(M, nasgen.count(space)) for r in runs)
        assert all(r[3]["count_source"] == "exact" for r in runs)
        ours = statistics.median(r[0] for r in runs)
        support = statistics.median(r[3]["support"] for r in runs)
        support_s = statistics.median(r[3]["support_s"] for r in runs)
        plain_runs = [timed_plain_unigen(space, seed) for seed in range(repeats)]
        assert all(r[1] == min(M, nasgen.count(space)) for r in plain_runs)
        plain = statistics.median(r[0] for r in plain_runs)
        base, found, reason, _ = timed_draw(space, "uniwit", 0, uniwit_timeout)
        mark = ">" if reason == "timeout" else ""
        lines.append(f"| {'4' if pooled else '1'} | {dims} | {layers} | {nasgen.count(space)} | {ours:.3f} | "
                     f"{support:.0f}/{space.vector_bits} | {support_s:.3f} | {plain:.3f} | {plain / ours:.1f}x | "
                     f"{mark}{base:.2f} | {found} | {mark}{base / ours:.1f}x |")
        print(lines[-1], flush=True)
    return lines


BIG = SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor")


def big_where(kmax: int) -> tuple[str, SearchSpace]:
    """Five layers, every kernel <= kmax; the same set as a space of its own, so its size is exact."""
    text = "layers == 5 and " + " and ".join(f"k[{l}][{d}] <= {kmax}" for l in range(5) for d in range(2))
    return text, SearchSpace((224, 224), (7, 7), 5, 5, rounding="floor", kernel_range=(1, kmax))


def big_section(timeout: float) -> list[str]:
    total = nasgen.count(BIG)
    lines = ["## The 224 -> 7 space with a rare --where", "",
             f"Space: {BIG.describe()} ({total} architectures). unigen, M = 20 distinct, seed 0, timeout "
             f"{timeout:.0f} s, encoding and the independent support (in the child process) included in the total.",
             "", "| where | architectures | acceptance by rejection | variables | clauses | encode (s) | count | "
             "support | support (s) | total (s) | found | stop |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for kmax in (4, 8):
        text, subspace = big_where(kmax)
        accepted = nasgen.count(subspace)
        t0 = time.perf_counter()
        with HashingSampler(BIG, "unigen", M, seed=0, timeout=timeout, where=[text]) as sampler:
            found = sum(len(c[0]) for c in sampler.draw())
        seconds = time.perf_counter() - t0
        st = sampler.statistics
        lines.append(f"| layers == 5, every k <= {kmax} | {accepted} | {accepted / total:.1e} | {st.variables} | "
                     f"{st.clauses} | {st.encode_s:.2f} | {st.count_source} | {st.support}/{BIG.vector_bits} | "
                     f"{st.support_s:.2f} | {seconds:.1f} | {found} | {sampler.stop_reason} |")
        print(lines[-1], flush=True)
    return lines


def check_section(repeats: int) -> list[str]:
    from nasgen.cli.main import main

    lines = ["## nasgen check on 10^5 draws of the 224 -> 7 space", "",
             "`nasgen check FILE` end to end (read JSON Lines, validate, every test) on 100,000 exact draws "
             "with replacement; median seconds. Baseline: `nasgen adj FILE` on the same file (reading and "
             "checking membership with the library's reader).", "",
             "| command | median (s) | verdict |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "draws.jsonl")
        arrays = nasgen.sample_arrays(BIG, 100_000, seed=1, replace=True)
        with open(path, "w") as handle:
            handle.writelines(line + "\n" for line in nasgen.space.arrays_io.arrays_to_jsonl_lines(*arrays))
        args = ["-I", "224,224", "-O", "7,7", "-n", "1", "-N", "5", "--rounding", "floor"]

        def run(*argv):
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()) as out:
                code = main(list(argv))
            return time.perf_counter() - t0, code, out.getvalue()

        check = [run("check", path, *args, "--with-replacement") for _ in range(repeats)]
        adj = [run("adj", path, *args) for _ in range(repeats)]
    verdict = check[0][2].strip().splitlines()[-1]
    lines.append(f"| nasgen check | {statistics.median(c[0] for c in check):.2f} | {verdict} |")
    lines.append(f"| nasgen adj (baseline) | {statistics.median(c[0] for c in adj):.2f} | - |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--uniwit-timeout", type=float, default=20.0)
    parser.add_argument("--big-timeout", type=float, default=120.0)
    parser.add_argument("--quick", action="store_true", help="one z3 baseline run per cell")
    parser.add_argument("--sections", default="encoding,sampling,big,check")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "hashing.md"))
    parser.add_argument("--append", action="store_true",
                        help="add a dated section to the output instead of replacing it")
    args = parser.parse_args()
    sections = args.sections.split(",")
    command = f"`python bench/bench_hashing.py {' '.join(sys.argv[1:])}`"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.append:
        lines = [f"# Rerun {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
                 f"Command: {command}. Load average at the start (1, 5, 15 min): {load}; {os.cpu_count()} CPUs "
                 "shared with other jobs.", ""]
    else:
        lines = ["# Hashing samplers (issue 12)", "",
                 f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                 f"shared with other jobs. Command: {command}. Load average at the start: {load}.", ""]
    if "encoding" in sections:
        lines += encoding_section(args.repeats, args.quick) + [""]
    if "sampling" in sections:
        lines += sampling_section(args.repeats, args.uniwit_timeout) + [""]
    if "check" in sections:
        lines += check_section(args.repeats) + [""]
    if "big" in sections:
        lines += big_section(args.big_timeout) + [""]
    lines.append(f"Load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with open(args.output, "a") as handle:
            handle.write("\n" + text)
    else:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
