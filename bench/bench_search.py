"""The figures of nasgen inside a search loop (issue 30), as a Markdown table.

1. Uniform strategy: 10^4 trial architectures of a range-constrained 2-D space through
   ``nasgen.samplers.check.check_uniformity`` (level 0.001), and 10^4 of a ``--where``-constrained
   2-D space against its enumerated members (chi-square).
2. Optuna's per-trial overhead: NasgenSampler + suggest_architecture against RandomSampler with
   suggest_architecture, and RandomSampler with as many plain suggest_int calls, in the same run.
3. Regularized evolution (EvolutionConfig's defaults) against uniform random search on a synthetic
   objective (closeness of FLOPs to a target plus a depth term) whose top 0.1% is known by
   enumerating the space: trials to reach the top 0.1%, median over seeds 0..9 and over --seeds;
   with --sweep, the settings the defaults were chosen from (same operators, without Optuna).
4. Conditional draws: chi-square against enumeration for windows at the start, middle and end,
   with and without --where; draws per second on 224 -> 7 (floor, 1-5 layers) against the
   exact unconditional sampler in the same run.

Run: python bench/bench_search.py [--quick] [--sweep] [--seeds 30]   (a few minutes; --quick for a smoke run)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import optuna
from scipy.stats import chisquare

from nasgen import Architecture, SearchSpace, SpaceTables, enumerate_architectures
from nasgen.constraints.conditional import conditional_space
from nasgen.constraints.language import parse_where
from nasgen.samplers.check import check_uniformity
from nasgen.search.evolution import EvolutionConfig, mutate, select_parent
from nasgen.space.encoding import to_arrays
from nasgen.search.optuna import NasgenSampler, architecture_from_trial, suggest_architecture
from nasgen.space.conditional import ConditionalSpace


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run_study(sampler, space, trials, where=()):
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: float(suggest_architecture(t, space, where).layers), n_trials=trials)
    return [architecture_from_trial(t) for t in study.trials]


def members_of(space, where=()):
    wheres = [parse_where(w) for w in where]
    return [a for a in enumerate_architectures(space) if all(w.evaluate(a, space) for w in wheres)]


def chi_square_p(archs, members) -> float:
    index = {a: i for i, a in enumerate(members)}
    observed = np.zeros(len(members))
    for a in archs:
        observed[index[a]] += 1  # a KeyError here would be an architecture outside the space
    return float(chisquare(observed).pvalue)


def uniform_strategy_rows(trials: int):
    rows = []
    space = SearchSpace((32, 32), (4, 4), 1, 3, rounding="floor", kernel_range=(1, 7), stride_range=(1, 3))
    archs = run_study(NasgenSampler(space, seed=0), space, trials)
    result = check_uniformity(space, to_arrays(space, archs), level=0.001)
    rows.append((f"uniform strategy: {trials} trials of {space.describe()} ({SpaceTables(space).count} members), "
                 "nasgen check", f"overall p = {result.overall_p:.3g}: {'pass' if result.uniform else 'FAIL'}"))
    small = SearchSpace((12, 10), (4, 3), 1, 4, rounding="floor", kernel_range=(1, 4), stride_range=(1, 2))
    where = ["s[0][1] == 1", "k[0][0] + k[1][1] <= 6"]
    members = members_of(small, where)
    archs = run_study(NasgenSampler(small, where, seed=0), small, trials, where)
    p = chi_square_p(archs, members)
    rows.append((f"uniform strategy: {trials} trials of {small.describe()} where {' and '.join(where)} "
                 f"({len(members)} members), chi-square", f"p = {p:.3g}: {'pass' if p > 0.001 else 'FAIL'}"))
    return rows


def overhead_rows(trials: int, repeats: int):
    space = SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor")
    names = 1 + 2 * space.max_layers * space.dims

    def nasgen_uniform():
        run_study(NasgenSampler(space, seed=0), space, trials)

    def random_suggest_architecture():
        run_study(optuna.samplers.RandomSampler(seed=0), space, trials)

    def random_plain():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        study.optimize(lambda t: float(sum(t.suggest_int(f"p{i}", 1, 200) for i in range(names))), n_trials=trials)

    base = median_time(random_plain, repeats)
    ours = median_time(nasgen_uniform, repeats)
    other = median_time(random_suggest_architecture, repeats)
    return [
        (f"per trial, RandomSampler, {names} plain suggest_int (baseline)", f"{1e3 * base / trials:.2f} ms (1.00x)"),
        ("per trial, NasgenSampler(uniform) + suggest_architecture, 224 -> 7",
         f"{1e3 * ours / trials:.2f} ms ({ours / base:.2f}x)"),
        ("per trial, RandomSampler + suggest_architecture, 224 -> 7",
         f"{1e3 * other / trials:.2f} ms ({other / base:.2f}x)"),
    ]


def synthetic_objective(space: SearchSpace, width: int = 16, target: float = 2.0e6):
    """|log2(FLOPs / target)| + 0.25 * |layers - 2|: FLOPs of a chain of width-channel convolutions."""
    def value(arch: Architecture) -> float:
        sizes = list(space.input_shape)
        flops = 0
        for l in range(arch.layers):
            sizes = [space.apply_layer(x, arch.kernel[l][d], arch.stride[l][d], d) for d, x in enumerate(sizes)]
            flops += width * width * int(np.prod(sizes)) * int(np.prod(arch.kernel[l]))
        return abs(np.log2(flops / target)) + 0.25 * abs(arch.layers - 2)
    return value


def synthetic_setup():
    """The space, objective and top-0.1% threshold of the evolution figure (the optimum known by enumeration)."""
    space = SearchSpace((32, 32), (4, 4), 1, 3, rounding="floor", kernel_range=(1, 7), stride_range=(1, 3))
    objective = synthetic_objective(space)
    values = np.array([objective(a) for a in enumerate_architectures(space)])
    return space, objective, values, float(np.quantile(values, 0.001))


def evolution_rows(seeds: int, first: int, max_trials: int, config: EvolutionConfig):
    space, objective, values, threshold = synthetic_setup()
    fraction = float((values <= threshold).mean())

    def trials_to_top(strategy: str, seed: int) -> int:
        sampler = NasgenSampler(space, strategy=strategy, seed=seed, evolution=config)
        study = optuna.create_study(sampler=sampler)
        reached = []

        def stop_at_top(study, trial):
            if trial.value is not None and trial.value <= threshold:
                reached.append(trial.number + 1)
                study.stop()

        study.optimize(lambda t: objective(suggest_architecture(t, space)), n_trials=max_trials,
                       callbacks=[stop_at_top])
        return reached[0] if reached else max_trials + 1

    random_trials = [trials_to_top("uniform", s) for s in range(seeds)]
    evolution_trials = [trials_to_top("evolution", s) for s in range(seeds)]
    # uniform random search needs a geometric number of trials: its exact median, for reference
    exact_median = int(np.ceil(np.log(2) / -np.log1p(-fraction)))
    rows = [(f"synthetic objective on {space.describe()}: {len(values)} members, top 0.1% = value <= "
             f"{threshold:.4f} ({fraction:.4%} of the space); uniform random search's exact median {exact_median}", "")]
    label = (f"P={config.population_size}, S={config.tournament_size}, windows of 1-{config.max_window}, "
             f"one dimension {config.one_dimension:g}, no re-evaluation")
    for n in sorted({first, seeds}):
        r, e = statistics.median(random_trials[:n]), statistics.median(evolution_trials[:n])
        rows += [
            (f"trials to the top 0.1%, uniform random search, median of seeds 0..{n - 1} (cap {max_trials})",
             f"{r:g} (runs {sorted(random_trials[:n])})"),
            (f"trials to the top 0.1%, regularized evolution ({label}), median of seeds 0..{n - 1}",
             f"{e:g} (runs {sorted(evolution_trials[:n])}); evolution / random = {e / r:.2f}; "
             f"evolution / exact random median = {e / exact_median:.2f}"),
        ]
    return rows


def sweep_rows(seeds: int, max_trials: int):
    """Regularized evolution's settings on the synthetic objective, without Optuna (the same select_parent and
    mutate as NasgenSampler; ageing is the last P children), median trials to the top 0.1% over ``seeds`` seeds."""
    space, objective, values, threshold = synthetic_setup()
    value_of = dict(zip(enumerate_architectures(space), values.tolist()))
    conditional = ConditionalSpace(SpaceTables(space))

    def uniform(rng):
        layers, kernel, stride = conditional.sample_space_arrays(1, seed=rng)
        return Architecture(kernel=kernel[0, :layers[0]].tolist(), stride=stride[0, :layers[0]].tolist())

    def trials_to_top(config: EvolutionConfig, seed: int, avoid_seen: bool) -> int:
        rng = np.random.default_rng(seed)
        population, seen = [], set()
        for n in range(1, max_trials + 1):
            if len(population) < config.population_size:
                arch = uniform(rng)
            else:
                parent = population[select_parent([v for _, v in population], config, rng)][0]
                arch = mutate(conditional, parent, config, rng, avoid=seen if avoid_seen else ())
            seen.add(arch)
            if value_of[arch] <= threshold:
                return n
            population = (population + [(arch, value_of[arch])])[-config.population_size:]
        return max_trials + 1

    rows = []
    for P, S, W, D, avoid_seen in [(20, 5, 2, 0.0, False), (10, 3, 2, 0.0, False), (10, 3, 2, 0.0, True),
                                   (20, 5, 2, 0.0, True), (10, 3, 2, 0.5, True), (10, 3, 2, 1.0, True),
                                   (5, 2, 3, 0.0, True), (10, 3, 3, 0.0, False), (10, 3, 3, 0.0, True),
                                   (10, 2, 3, 0.0, False), (10, 2, 3, 0.0, True), (20, 3, 3, 0.0, True),
                                   (20, 5, 3, 0.0, True)]:
        config = EvolutionConfig(P, S, W, D)
        runs = [trials_to_top(config, seed, avoid_seen) for seed in range(seeds)]
        rows.append((f"sweep (no Optuna): P={P}, S={S}, windows of 1-{W}, one dimension {D:g}, "
                     f"{'no re-evaluation' if avoid_seen else 'repeats allowed'}, median of {seeds} seeds "
                     f"(cap {max_trials})", f"{statistics.median(runs):g}"))
    return rows


def conditional_rows(draws: int, repeats: int):
    rows = []
    small = SearchSpace((12, 10), (4, 3), 1, 4, rounding="floor", kernel_range=(1, 4), stride_range=(1, 2))
    where = ["s[0][1] == 1", "k[0][0] + k[1][1] <= 6"]
    for constraints in ((), tuple(where)):
        members = members_of(small, constraints)
        conditional = conditional_space(small, constraints)
        parent = max(members, key=lambda a: (a.layers, members.index(a) % 7))
        for label, (start, stop) in (("start", (0, 2)), ("middle", (1, 3)), ("end", (2, small.max_layers))):
            agreeing = [b for b in members if _agrees(parent, b, start, stop, small.max_layers)]
            drawn = conditional.sample(parent, start, stop, samples=60 * len(agreeing), seed=1)
            # one completion (the parent alone): every draw must be it, and p = 1 says so
            p = chi_square_p(drawn, agreeing) if len(agreeing) > 1 else float(set(drawn) == {parent})
            rows.append((f"conditional chi-square, window {label} [{start}, {stop}), "
                         f"{'where ' + ' and '.join(constraints) if constraints else 'no where'} "
                         f"({len(agreeing)} completions)", f"p = {p:.3g}: {'pass' if p > 0.001 else 'FAIL'}"))
    space = SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor")
    tables = SpaceTables(space)
    conditional = ConditionalSpace(tables)
    parent = conditional.sample_space_arrays(1, seed=3)
    parent = Architecture(kernel=parent[1][0, :parent[0][0]].tolist(), stride=parent[2][0, :parent[0][0]].tolist())
    base = median_time(lambda: tables.sample_arrays(draws, seed=0, replace=True), repeats)
    rows.append((f"exact unconditional sampler, 224 -> 7, {draws} draws (baseline)",
                 f"{draws / base:,.0f} /s (1.00x)"))
    for label, (start, stop) in (("start", (0, 2)), ("middle", (1, 3)), ("end", (3, 5))):
        conditional.sample_arrays(parent, start, stop, 10, seed=0)  # the window's table, built once and cached
        t = median_time(lambda: conditional.sample_arrays(parent, start, stop, draws, seed=0), repeats)
        rows.append((f"conditional draws, 224 -> 7, window {label} [{start}, {stop}), batches of {draws}",
                     f"{draws / t:,.0f} /s ({base / t:.2f}x)"))
    calls = 300
    t = median_time(lambda: [conditional.sample_arrays(parent, 1, 3, 1, seed=i) for i in range(calls)], repeats)
    rows.append(("conditional draws, 224 -> 7, window middle [1, 3), one draw per call, one parent",
                 f"{calls / t:,.0f} /s ({(calls / t) / (draws / base):.4f}x)"))
    t = median_time(lambda: [conditional.sample(parent, 1, 3, 1, seed=i) for i in range(calls)], repeats)
    rows.append(("conditional draws, 224 -> 7, window middle [1, 3), one Architecture per call (sample), one parent",
                 f"{calls / t:,.0f} /s ({(calls / t) / (draws / base):.4f}x)"))
    # a parent never seen before on every call: the plan and the end states are new, the per-(kernel, stride)
    # steps and the window tables are shared with earlier parents when they agree
    fresh = ConditionalSpace(tables)
    layers, kernel, stride = fresh.sample_space_arrays(4 * calls, seed=9)
    parents = [Architecture(kernel=kernel[i, :L].tolist(), stride=stride[i, :L].tolist())
               for i, L in enumerate(layers.tolist()) if L >= 3][:calls]
    started = time.perf_counter()
    for i, p in enumerate(parents):
        fresh.sample_arrays(p, 1, 2, 1, seed=i)
    t = time.perf_counter() - started
    rows.append((f"conditional draws, 224 -> 7, window [1, 2), one draw per call, {len(parents)} different parents "
                 "(cold caches at the start)", f"{len(parents) / t:,.0f} /s"))
    return rows


def _agrees(a: Architecture, b: Architecture, start: int, stop: int, max_layers: int) -> bool:
    for position in range(max_layers):
        if start <= position < stop:
            continue
        if (position < a.layers) != (position < b.layers):
            return False
        if position < a.layers and (a.kernel[position], a.stride[position]) != (b.kernel[position], b.stride[position]):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run with small figures")
    parser.add_argument("--sweep", action="store_true", help="also sweep evolution's settings (without Optuna)")
    parser.add_argument("--seeds", type=int, default=30,
                        help="seeds of the evolution figure (its first 10 are reported on their own too)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quick = args.quick
    rows = []
    rows += uniform_strategy_rows(1000 if quick else 10_000)
    rows += overhead_rows(100 if quick else 500, 1 if quick else 3)
    if args.sweep:
        rows += sweep_rows(5 if quick else 50, 1500)
    rows += evolution_rows(2 if quick else args.seeds, 2 if quick else 10, 3000, EvolutionConfig())
    rows += conditional_rows(10_000 if quick else 100_000, 1 if quick else 3)
    print("| figure | measured |")
    print("| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
