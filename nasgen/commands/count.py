"""``nasgen count``: the number of architectures, in total and per number of layers, optionally under --where."""

from __future__ import annotations

import json

from nasgen.commands.common import add_model_arguments, add_space_arguments, model_from_args, space_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser("count", help="exact number of architectures (total and per number of layers)")
    add_space_arguments(p)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: count, exact, by_layers (and interval, draws, acceptance for an estimate)")
    p.add_argument("--where", action="append", default=[], metavar="EXPR",
                   help="constraint over k[l][d], s[l][d], size[l][d], layers, params, flops (repeatable)")
    p.add_argument("--method", choices=("exact", "all"), default="exact",
                   help="exact (default): the dynamic program, exact where --where is absorbed or the rest is "
                        "small enough to filter, else an estimate with a 95%% interval; all: count with z3")
    p.add_argument("--draws", type=int, default=None, help="exact: draws for an estimate (default 10^6)")
    p.add_argument("--seed", type=int, default=0, help="exact: seed of an estimate (default 0)")
    p.add_argument("--timeout", type=float, default=None, help="seconds, for z3 counting (--method all)")
    add_model_arguments(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from nasgen.space import NasgenError

    space = space_from_args(args)
    by_layers = None
    extra = {}
    if args.method == "all":
        from nasgen.where import parse_where_all

        parse_where_all(args.where)
        from nasgen.solver import count_solutions

        total, exact = count_solutions(space, where=list(args.where), timeout=args.timeout), True
    elif args.where:
        from nasgen.constrained import DEFAULT_ESTIMATE_DRAWS, ConstrainedSpace
        from nasgen.sampling import chain_spec, model_options

        if args.seed < 0:
            raise NasgenError(f"--seed must be a non-negative integer, got {args.seed}")
        model = model_from_args(args)
        model = None if model is None else chain_spec(model_options(model))
        constrained = ConstrainedSpace(space, args.where, model=model)
        result = constrained.count(seed=args.seed, draws=DEFAULT_ESTIMATE_DRAWS if args.draws is None else args.draws)
        total, exact = result.count, result.exact
        if constrained.all_absorbed:
            by_layers = constrained.tables.count_by_layers
        extra = result.to_dict()
    else:
        from nasgen.core import SpaceTables

        by_layers = SpaceTables(space).count_by_layers
        total, exact = sum(by_layers.values()), True
    if args.json:
        payload = {"count": total, "exact": exact, **extra, "space": space.to_dict()}
        if by_layers is not None:
            payload["by_layers"] = {str(L): c for L, c in by_layers.items()}
        print(json.dumps(payload))
        return 0
    if by_layers is not None and len(by_layers) > 1:
        for L, c in by_layers.items():
            print(f"{L} layers: {c}")
    if exact:
        print(total)
    else:
        low, high = extra["interval"]
        print(f"{total} (estimate: 95% interval [{low}, {high}] from {extra['draws']} draws, "
              f"acceptance {extra['acceptance']:.3g})")
    return 0
