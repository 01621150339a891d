"""``nasgen bench``: time sampling methods over spaces, seeds and repeats (JSON rows, markdown medians, a figure)."""

from __future__ import annotations

import json
import sys

from nasgen.cli.common import add_space_arguments, space_from_args, space_given
from nasgen.common.figures import FIGURE_FORMATS


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="time sampling methods: JSON rows, a table of medians, a plot")
    add_space_arguments(p, required=False)
    p.add_argument("--spaces", default=None, help="JSON Lines file of search spaces (SearchSpace.to_dict objects)")
    p.add_argument("--methods", default="exact,uniwit,unigen",
                   help="comma-separated methods (default exact,uniwit,unigen)")
    p.add_argument("-M", "--samples", type=int, default=20, help="architectures per run (default 20)")
    p.add_argument("--repeats", type=int, default=5, help="runs per (space, method) (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first repeat; repeat r uses seed + r")
    p.add_argument("--timeout", type=float, default=None, help="wall-clock seconds per run")
    p.add_argument("--where", action="append", default=[], metavar="EXPR", help="constraint for every run")
    p.add_argument("--with-replacement", action="store_true", help="independent draws (default: distinct)")
    p.add_argument("--baseline", default=None,
                   help="method the ratios are against, listed first (default: exact if it runs, else the first method)")
    p.add_argument("-o", "--output-file", required=True,
                   help="JSON Lines of rows, appended as runs finish; rows already there are skipped (resume)")
    p.add_argument("--markdown", default=None, help="also write the table of medians here (default: stdout only)")
    p.add_argument("--plot", default=None, metavar="FILE",
                   help="figure of the time per run of each method, one panel per space, with interquartile ranges")
    p.add_argument("--figure-format", choices=FIGURE_FORMATS, default=None,
                   help="--plot's format: png (200 dpi), pdf or svg (vector) (default: FILE's suffix, else png)")
    p.add_argument("--jobs", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (dask.distributed)")
    p.set_defaults(handler=run)


def _spaces(args):
    from nasgen.common.errors import NasgenError, SpaceError
    from nasgen.space.definition import SearchSpace

    if args.spaces is None:
        return [space_from_args(args)]
    if space_given(args):
        raise NasgenError("give either space options or --spaces FILE, not both")
    try:
        with open(args.spaces, encoding="utf-8") as handle:
            lines = [line for line in handle.read().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise NasgenError(f"cannot read {args.spaces}: {getattr(exc, 'strerror', None) or exc}") from None
    spaces = []
    for number, line in enumerate(lines, start=1):
        try:
            spaces.append(SearchSpace.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError, AttributeError, SpaceError) as exc:
            raise NasgenError(f"{args.spaces} line {number}: not a search space ({exc})") from None
    if not spaces:
        raise NasgenError(f"{args.spaces} holds no search space")
    return spaces


def run(args) -> int:
    from nasgen.samplers.benchmark import BenchRun, default_baseline, markdown_table, plot_times, run_sweep
    from nasgen.samplers.registry import SamplingConfig
    from nasgen.common.errors import NasgenError

    spaces = _spaces(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise NasgenError("--methods names no method")
    if args.repeats < 1 or args.samples < 1:
        raise NasgenError("--repeats and --samples must be >= 1")
    baseline = args.baseline or default_baseline(methods)
    if baseline not in methods:
        raise NasgenError(f"--baseline {baseline} is not one of --methods {','.join(methods)}")
    figure_format = _figure_format(args)
    runs = []
    for method in methods:
        # Validates the method, the replacement and the where constraints before anything runs.
        SamplingConfig(method=method, samples=args.samples, seed=args.seed, replace=args.with_replacement,
                       timeout=args.timeout, where=tuple(args.where))
        if method in ("unigen", "cmsgen"):
            from nasgen.samplers.hashing import require_package

            require_package(method)
        for space in spaces:
            for r in range(args.repeats):
                runs.append(BenchRun(space=space.to_dict(), method=method, seed=args.seed + r, repeat=r,
                                     samples=args.samples, timeout=args.timeout, where=tuple(args.where),
                                     replace=args.with_replacement))
    keys = {r.key for r in runs}

    def progress(row):
        print(f"nasgen: {row['method']} on {row['space']} seed {row['seed']}: found {row['found']}, "
              f"stop {row['stop']}", file=sys.stderr, flush=True)

    def notice(text):
        print(f"nasgen: {text}", file=sys.stderr, flush=True)

    rows = run_sweep(runs, args.output_file, jobs=args.jobs, scheduler=args.scheduler, progress=progress,
                     notice=notice)
    rows = [row for row in rows if row["key"] in keys]
    table = markdown_table(rows, baseline)
    print(table, end="")
    if args.markdown:
        from nasgen.common.atomic import write_atomic

        write_atomic(args.markdown, table)
    if args.plot:
        plot_times(rows, args.plot, figure_format, baseline)
    return 0


def _figure_format(args) -> str | None:
    """``--plot``'s format: ``--figure-format``, else the file's suffix when it names one, else png."""
    from nasgen.common.errors import NasgenError

    if args.plot is None:
        if args.figure_format is not None:
            raise NasgenError("--figure-format is the format of --plot FILE; give --plot too")
        return None
    suffix = args.plot.rpartition(".")[2].lower() if "." in args.plot.rpartition("/")[2] else ""
    if args.figure_format is None:
        return suffix if suffix in FIGURE_FORMATS else "png"
    if suffix in FIGURE_FORMATS and suffix != args.figure_format:
        raise NasgenError(f"--plot {args.plot} ends in .{suffix} but --figure-format is {args.figure_format}; "
                          "make them agree")
    return args.figure_format
