"""``nasgen check``: test whether a file of architectures is a uniform sample of its (constrained) space."""

from __future__ import annotations

import json

from nasgen.cli.common import add_model_arguments, add_space_arguments, model_from_args, read_sidecar, space_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check", help="test a sample's uniformity against the exact marginals (exit 0 uniform, 1 not)")
    p.add_argument("file", help="JSON Lines or npz architectures, from any sampler ('-': standard input); read once, "
                                "so pipes and FIFOs work")
    add_space_arguments(p, required=False)
    p.add_argument("--where", action="append", default=None, metavar="EXPR",
                   help="the constraints the sample was drawn under (repeatable; default: the sidecar's): the tests "
                        "use the constrained space's exact marginals")
    p.add_argument("--depth-weights", choices=("space", "uniform"), default=None,
                   help="the distribution the sample was drawn from (default: the sidecar's, else space): uniform "
                        "over the space, or every non-empty depth equally likely then uniform within it")
    p.add_argument("--level", type=float, default=0.001, help="significance level of the verdict (default 0.001)")
    draws = p.add_mutually_exclusive_group()
    draws.add_argument("--with-replacement", dest="replace", action="store_const", const=True, default=None,
                       help="the draws are independent: test the number of repeats against its expectation "
                            "(the default without a sidecar)")
    draws.add_argument("--distinct", dest="replace", action="store_const", const=False,
                       help="the draws are meant to be distinct: any repeat fails")
    p.add_argument("--json", action="store_true", help="print one JSON object (uniform, overall_p, draws, tests)")
    add_model_arguments(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from nasgen.common.errors import NasgenError
    from nasgen.samplers.check import check_chunks, iter_sample_file
    from nasgen.samplers.registry import chain_spec, model_options

    if not 0 < args.level < 1:
        raise NasgenError(f"--level must be in (0, 1), got {args.level}")
    space = space_from_args(args, file=args.file)
    sidecar = read_sidecar(args.file) if args.file != "-" else None
    sampling = (sidecar or {}).get("sampling") or {}
    if not isinstance(sampling, dict):
        raise NasgenError(f"{args.file}.config.json: 'sampling' is not a JSON object")
    replace = args.replace
    if replace is None:
        replace = bool(sampling.get("replace", True))
    where = args.where
    if where is None:
        where = sampling.get("where") or []
        if not isinstance(where, list) or not all(isinstance(w, str) for w in where):
            raise NasgenError(f"{args.file}.config.json: 'sampling.where' is not a list of expressions")
    model = model_from_args(args)
    if model is None:
        options = sampling.get("options") or {}
        model = options.get("model") if isinstance(options, dict) else None
    model = None if model is None else chain_spec(model_options(model))
    depth_weights = args.depth_weights
    if depth_weights is None:
        options = sampling.get("options") or {}
        depth_weights = options.get("depth_weights", "space") if isinstance(options, dict) else "space"
    source = "standard input" if args.file == "-" else args.file
    result = check_chunks(space, iter_sample_file(args.file, space), level=args.level, replace=replace,
                          where=where, model=model, source=source, depth_weights=depth_weights)
    if args.json:
        print(json.dumps({**result.to_dict(), "where": list(where)}))
    else:
        width = max(len(t.name) for t in result.tests)
        print(f"{'test':<{width}}  {'statistic':>12}  {'df':>6}  {'p-value':>10}  {'Holm p':>10}")
        for t in result.tests:
            print(f"{t.name:<{width}}  {t.statistic:>12.4g}  {t.df:>6}  {t.p_value:>10.3g}  {t.p_adjusted:>10.3g}")
        for s in result.skipped:
            print(f"skipped: {s}")
        verdict = "uniform" if result.uniform else "NOT uniform"
        constrained = f" of the space under {' and '.join(where)}" if where else ""
        if depth_weights != "space":
            constrained += f" with {depth_weights} depth weights"
        print(f"{result.draws} draws: {verdict}{constrained} at level {result.level:g} (overall p = "
              f"{result.overall_p:.3g}, {len(result.tests)} tests, Holm-corrected)")
    return 0 if result.uniform else 1
