"""Benchmark of the z3 methods (issue 3): the paper's Tables 1, 2, 4, 5 and Figures 4 and 6.

Prints markdown tables (medians of repeats; ratios against a baseline measured
in the same run) beside the paper's numbers, and writes them to
bench/results/solver.md with PNG plots in bench/results/.

    python bench/bench_solver.py [--repeats 3] [--cell-timeout 60] [--quick]

Settings follow the paper: I = 30, O = 20, M = 20, n = N, seed 42, pool
(2, 1) where pooled. Adj_T uses the canonical bit-vector (nasgen.space.tables.adj_t).
Every architecture the runs produce is re-checked with check_membership.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nasgen.space import encoding  # noqa: E402
from nasgen.space import tables as core  # noqa: E402
from nasgen.samplers.solver import SolverSampler, count_solutions  # noqa: E402
from nasgen.space.definition import SearchSpace, check_membership  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PAPER = json.loads((ROOT.parent / "shared" / "paper" / "tables.json").read_text()) if (
    ROOT.parent / "shared" / "paper" / "tables.json").exists() else {}
REFERENCE = json.loads((ROOT.parent / "shared" / "paper" / "reference-code-timings.json").read_text()) if (
    ROOT.parent / "shared" / "paper" / "reference-code-timings.json").exists() else {}
SEED = 42
M = 20


def space_for(dims: int, layers: int, pooled: bool, gap: int = 10, min_layers: int | None = None) -> SearchSpace:
    return SearchSpace((30,) * dims, (30 - gap,) * dims, min_layers=min_layers or layers, max_layers=layers,
                       pool=(2, 1) if pooled else None)


def run(space: SearchSpace, method: str, samples: int | None, timeout: float, **kwargs):
    """One timed run: (seconds, architectures, stop reason, sampler statistics)."""
    t0 = time.perf_counter()
    with SolverSampler(space, method=method, seed=SEED, timeout=timeout, **kwargs) as sampler:
        archs = list(sampler.solutions(samples))
        reason, stats = sampler.stop_reason, sampler.statistics
    seconds = time.perf_counter() - t0
    for arch in archs:
        check_membership(space, arch)
    return seconds, archs, reason, stats


def timed(space, method, samples, timeout, repeats, **kwargs):
    """Median seconds over repeats (same seed: the same work each time), plus the last run."""
    times, last = [], None
    for _ in range(repeats):
        last = run(space, method, samples, timeout, **kwargs)
        times.append(last[0])
        if last[2] == "timeout":
            break
    return statistics.median(times), last


def fmt_time(seconds: float, reason: str) -> str:
    return f">{seconds:.0f}" if reason == "timeout" else f"{seconds:.3f}"


def paper_cell(table: str, layers: int, dims: int, index: int | None = None):
    try:
        cell = PAPER[table][str(layers)][f"{dims}D"]
    except KeyError:
        return None
    return cell if index is None else cell[index]


def reference_cell(pool_key: str, method: str, layers: int, dims: int):
    try:
        value = REFERENCE[pool_key][method][str(layers)][f"{dims}D"]
    except KeyError:
        return "-"
    return "did not finish in 240" if value is None else f"{value:.3f}"


# -- the sections --------------------------------------------------------------


def pruning_section(repeats: int, timeout: float) -> list[str]:
    lines = ["## What the pruning buys", "",
             "Same formula and solver with and without the dynamic program's domains "
             "(median of repeats, seconds; ratio = without / with).", "",
             "| space | method | architectures | with pruning | without | ratio |",
             "|---|---|---|---|---|---|"]
    cases = [
        ("3-D, 3 layers, pooled (issue figure)", space_for(3, 3, True), "all", None, {}),
        ("3-D, 4 layers, pooled", space_for(3, 4, True), "all", None, {}),
        ("2-D, 3 layers, no pool", space_for(2, 3, False), "all", None, {}),
        ("3-D, 3 layers, pooled", space_for(3, 3, True), "uniwit M=20", M, {}),
        ("3-D, 4 layers, pooled", space_for(3, 4, True), "uniwit M=20", M, {}),
        ("3-D, 3 layers, no pool", space_for(3, 3, False), "uniwit M=20", M, {}),
    ]
    for label, space, method, samples, kwargs in cases:
        name = method.split()[0]
        with_p, last = timed(space, name, samples, timeout, repeats, prune=True, **kwargs)
        without, last_off = timed(space, name, samples, timeout, repeats, prune=False, **kwargs)
        if name == "all":
            assert last[2] != "complete" or set(last[1]) == set(last_off[1]) or last_off[2] == "timeout"
        ratio = without / with_p if with_p > 0 else float("nan")
        lines.append(f"| {label} | {method} | {core.count(space)} | {fmt_time(with_p, last[2])} | "
                     f"{fmt_time(without, last_off[2])} | {ratio:.2f}x |")
        print(lines[-1], flush=True)
    return lines


def _round_trip(space: SearchSpace | None, prune: bool) -> tuple[int, dict]:
    """Enumerate every model the way ``all`` does, timing each phase of the per-model round trip.

    ``space=None`` is the floor: a formula of 12 free booleans (4,095 models
    once ``Or`` excludes all-false), so check, model and blocking cost only
    z3's fixed per-query work.
    """
    import z3

    from nasgen.samplers.formula import Formula, clause

    ctx = z3.Context()
    solver = z3.SolverFor("QF_BV", ctx=ctx)
    solver.set("model.compact", False)
    if space is None:
        bits = [z3.Bool(f"b{i}", ctx) for i in range(12)]
        one, zero = z3.BitVecVal(1, 1, ctx), z3.BitVecVal(0, 1, ctx)
        packed = z3.Concat([z3.If(b, one, zero) for b in bits][::-1])
        solver.add(z3.Or(bits))

        negations = [z3.Not(b) for b in bits]

        def block(v):  # as nasgen's blocking_clause does
            return clause(ctx, [(negations[i] if v >> i & 1 else b).as_ast() for i, b in enumerate(bits)])
    else:
        formula = Formula(space, prune, [], None, ctx)
        packed, block = formula.packed, formula.blocking_clause
        solver.add(formula.assertions)
    phases = dict(check=0.0, model=0.0, decode=0.0, block=0.0)
    models = 0
    while True:
        t0 = time.perf_counter()
        result = solver.check()
        t1 = time.perf_counter()
        phases["check"] += t1 - t0
        if result != z3.sat:
            break
        model = solver.model()
        t2 = time.perf_counter()
        vector = model.eval(packed, model_completion=True).as_long()
        t3 = time.perf_counter()
        solver.add(block(vector))
        t4 = time.perf_counter()
        phases["model"] += t2 - t1
        phases["decode"] += t3 - t2
        phases["block"] += t4 - t3
        models += 1
    return models, phases


def round_trip_section() -> list[str]:
    """Why pruning cannot make ``all`` 10x faster here: z3's per-model round trip."""
    lines = ["## Where the time of `all` goes: one z3 round trip per architecture", "",
             "`all` asks z3 for one model per query and blocks it (the paper's All). Microseconds per "
             "architecture, by phase; the last row is a formula of 12 free booleans, the fixed cost of "
             "one query, model and blocking clause however small the formula.", "",
             "| formula | models | check | model | decode | block | total |", "|---|---|---|---|---|---|---|"]
    space = space_for(3, 3, True)
    rows = [("3-D, 3 layers, pooled, pruned (table)", space, True),
            ("3-D, 3 layers, pooled, unpruned (arithmetic)", space, False),
            ("floor: 12 free booleans", None, True)]
    for label, sp, prune in rows:
        models, phases = _round_trip(sp, prune)
        us = {k: v / max(models, 1) * 1e6 for k, v in phases.items()}
        lines.append(f"| {label} | {models} | {us['check']:.0f} | {us['model']:.0f} | {us['decode']:.0f} | "
                     f"{us['block']:.0f} | {sum(us.values()):.0f} |")
        print(lines[-1], flush=True)
    return lines


def adj_t_section(pooled: bool, layer_range, repeats: int, timeout: float) -> list[str]:
    table = "table2_adj_t_pool_2_1" if pooled else "table1_adj_t_no_pool"
    title = "Table 2 (pool (2, 1))" if pooled else "Table 1 (no pool)"
    lines = [f"## {title}: Adj_T of Limited-20 / Limited_Uniform-20", "",
             "Ours: canonical bit-vector, seed 42 (uniwit: also the mean over seeds 42..44). "
             "Paper: its own bit-vector and code.", "",
             "| layers | dims | architectures | limited (ours) | uniwit (ours, seed 42) | uniwit (mean of 3 seeds) "
             "| paper limited / uniform |", "|---|---|---|---|---|---|---|"]
    for layers in layer_range:
        for dims in (1, 2, 3):
            space = space_for(dims, layers, pooled)
            total = core.count(space)
            _, (_, limited, reason_l, _) = timed(space, "limited", M, timeout, 1)
            adj_l = encoding.adj_t(space, limited)
            uniform_runs, short = [], []
            for seed in range(SEED, SEED + 3):
                with SolverSampler(space, method="uniwit", seed=seed, timeout=timeout) as sampler:
                    archs = list(sampler.solutions(M))
                    if sampler.stop_reason == "timeout":
                        short.append(len(archs))
                uniform_runs.append(encoding.adj_t(space, archs))
            paper = paper_cell(table, layers, dims)
            paper_text = "-" if paper is None else f"{paper[0]:.3f} / {paper[1]:.3f}"
            note = f" (timeout: {', '.join(map(str, short))} of {M} found)" if short else ""
            lines.append(f"| {layers} | {dims}D | {total} | {adj_l:.3f} | {uniform_runs[0]:.3f} | "
                         f"{statistics.mean(uniform_runs):.3f}{note} | {paper_text} |")
            print(lines[-1], flush=True)
    return lines


def time_section(repeats: int, timeout: float) -> tuple[list[str], dict]:
    lines = ["## Table 4 and Table 5: time for M = 20, pooled (2, 1)", "",
             f"Seconds for the whole run including building the formula (median of {repeats}). "
             "`uniwit` starts at no XOR (the paper's UniWit); `uniwit/count` starts near log2(count / pivot). "
             "Per sample = uniwit total / samples found. Reference code = the paper's smt_conv.py timed on a "
             "2-core machine of this project's kind.", "",
             "| layers | dims | archs | limited | uniwit | uniwit/count | uniwit no pruning | per sample (uniwit) "
             "| paper limited / uniform | paper per sample | reference code limited / uniform |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    plot = {}
    for layers in (2, 3, 4, 5):
        for dims in (1, 2, 3):
            space = space_for(dims, layers, True)
            t_lim, (_, _, r_lim, _) = timed(space, "limited", M, timeout, repeats)
            t_uni, (_, found, r_uni, _) = timed(space, "uniwit", M, timeout, repeats)
            t_cnt, (_, _, r_cnt, _) = timed(space, "uniwit", M, timeout, repeats, start_xors="count")
            t_off, (_, _, r_off, _) = timed(space, "uniwit", M, timeout, repeats, prune=False)
            per = t_uni / max(1, len(found))
            paper = paper_cell("table4_total_seconds_M20_pool_2_1", layers, dims)
            paper_per = paper_cell("table5_uniform_mean_sampling_seconds", layers, dims)
            ref = (f"{reference_cell('pooled_2_1', 'limited', layers, dims)} / "
                   f"{reference_cell('pooled_2_1', 'limited_uniform', layers, dims)}")
            lines.append(
                f"| {layers} | {dims}D | {core.count(space)} | {fmt_time(t_lim, r_lim)} | {fmt_time(t_uni, r_uni)} | "
                f"{fmt_time(t_cnt, r_cnt)} | {fmt_time(t_off, r_off)} | {per:.4f} | "
                f"{'-' if paper is None else f'{paper[0]:.3f} / {paper[1]:.3f}'} | "
                f"{'-' if paper_per is None else f'{paper_per:.4f}'} | {ref} |")
            print(lines[-1], flush=True)
            plot[(layers, dims)] = (t_lim, t_uni, t_cnt)
    return lines, plot


def figure4_section(out: Path, timeout: float) -> list[str]:
    lines = ["## Figure 4: number of architectures against I - O (n = N = 2, no pool)", "",
             "Exact count from the dynamic program; `z3` = count_solutions (model enumeration), "
             "run where it finishes within the cell timeout, must agree.", "",
             "| I - O | 1D | 2D | 3D | 4D | paper (1D..4D) |", "|---|---|---|---|---|---|"]
    gaps = list(range(1, 11))
    series = {dims: [] for dims in (1, 2, 3, 4)}
    paper = PAPER.get("figure4_solutions_n_N_2", {})
    for gap in gaps:
        cells = []
        for dims in (1, 2, 3, 4):
            space = space_for(dims, 2, False, gap=gap)
            exact = core.count(space)
            series[dims].append(exact)
            note = ""
            if exact <= 2500:
                got = count_solutions(space, timeout=timeout)
                assert got == exact, (space, got, exact)
                note = " (z3 agrees)"
            cells.append(f"{exact}{note}")
        index = gap - 2
        ref = " / ".join(str(paper[f"{d}D"][index]) for d in (1, 2, 3, 4)) if paper and 0 <= index < 9 else "-"
        lines.append(f"| {gap} | " + " | ".join(cells) + f" | {ref} |")
        print(lines[-1], flush=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for dims, values in series.items():
        ax.plot(gaps, values, marker="o", label=f"{dims}D")
    ax.set_yscale("symlog")
    ax.set_xlabel("I - O")
    ax.set_ylabel("number of architectures")
    ax.set_title("Figure 4: architectures, n = N = 2, I = 30")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "solver_figure4_solutions.png", dpi=120)
    plt.close(fig)
    lines += ["", "![Figure 4](solver_figure4_solutions.png)"]
    return lines


def figure6_section(out: Path, repeats: int, timeout: float) -> list[str]:
    lines = ["## Figure 6: time of `all` against the number of dimensions (n = N = 2, no pool)", "",
             "Seconds (median): time to the first architecture (the paper's 'solving time') and to enumerate "
             "every one.", "",
             "| I - O | dims | architectures | first | all |", "|---|---|---|---|---|"]
    curves = {}
    for gap in range(1, 7):
        for dims in (1, 2, 3, 4):
            space = space_for(dims, 2, False, gap=gap)
            t_first, (_, _, r_first, _) = timed(space, "limited", 1, timeout, repeats)
            t_all, (_, archs, r_all, _) = timed(space, "all", None, timeout, repeats)
            assert r_all == "timeout" or len(archs) == core.count(space)
            curves.setdefault(gap, []).append(t_all)
            lines.append(f"| {gap} | {dims} | {core.count(space)} | {fmt_time(t_first, r_first)} | "
                         f"{fmt_time(t_all, r_all)} |")
            print(lines[-1], flush=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for gap, values in curves.items():
        ax.plot([1, 2, 3, 4], values, marker="o", label=f"I - O = {gap}")
    ax.set_yscale("log")
    ax.set_xlabel("dimensions")
    ax.set_ylabel("seconds for All")
    ax.set_title("Figure 6: All, n = N = 2, I = 30")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "solver_figure6_all_time.png", dpi=120)
    plt.close(fig)
    lines += ["", "![Figure 6](solver_figure6_all_time.png)"]
    return lines


def table4_plot(out: Path, plot: dict) -> list[str]:
    fig, ax = plt.subplots(figsize=(6, 4))
    for dims, marker in ((1, "o"), (2, "s"), (3, "^")):
        layers = [L for L in (2, 3, 4, 5) if (L, dims) in plot]
        ax.plot(layers, [plot[(L, dims)][1] for L in layers], marker=marker, label=f"uniwit {dims}D")
        ax.plot(layers, [plot[(L, dims)][0] for L in layers], marker=marker, linestyle="--", label=f"limited {dims}D")
    ax.set_yscale("log")
    ax.set_xlabel("layers (n = N)")
    ax.set_ylabel("seconds for M = 20")
    ax.set_title("Table 4: total time, pooled (2, 1)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "solver_table4_time.png", dpi=120)
    plt.close(fig)
    return ["", "![Table 4](solver_table4_time.png)"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats per cell (median reported)")
    parser.add_argument("--cell-timeout", type=float, default=30.0, help="seconds before a cell gives up")
    parser.add_argument("--quick", action="store_true", help="one repeat, smaller grids")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--pruning-only", action="store_true",
                        help="only the pruning and round-trip sections, printed (no file written)")
    args = parser.parse_args(argv)
    if args.pruning_only:
        pruning_section(args.repeats, args.cell_timeout)
        round_trip_section()
        return 0
    repeats = 1 if args.quick else args.repeats
    args.out.mkdir(parents=True, exist_ok=True)
    header = [
        "# nasgen z3 methods: the paper's tables and figures",
        "",
        f"Generated by `python bench/bench_solver.py{' --quick' if args.quick else ''}` on "
        f"{platform.machine()} with {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"z3 {__import__('z3').get_version_string()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
    ]
    sections = []
    sections += pruning_section(repeats, args.cell_timeout) + [""]
    sections += round_trip_section() + [""]
    lines, plot = time_section(repeats, args.cell_timeout)
    sections += lines + table4_plot(args.out, plot) + [""]
    sections += adj_t_section(False, (2, 3) if args.quick else (2, 3, 4), repeats, args.cell_timeout) + [""]
    sections += adj_t_section(True, (2, 3, 4, 5), repeats, args.cell_timeout) + [""]
    sections += figure4_section(args.out, args.cell_timeout) + [""]
    sections += figure6_section(args.out, repeats, args.cell_timeout) + [""]
    text = "\n".join(header + sections)
    (args.out / "solver.md").write_text(text)
    print(f"\nwrote {args.out / 'solver.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
