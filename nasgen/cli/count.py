"""``nasgen count``: the number of architectures, in total and per number of layers, optionally under --where."""

from __future__ import annotations

import json

from nasgen.cli.common import add_model_arguments, add_space_arguments, emit, model_from_args, space_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser("count", help="exact number of architectures (total and per number of layers)")
    add_space_arguments(p)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: count, exact, by_layers (and interval, draws, acceptance for an estimate)")
    p.add_argument("--where", action="append", default=[], metavar="EXPR",
                   help="constraint over k[l][d], s[l][d], size[l][d], layers, params, flops (repeatable)")
    p.add_argument("--method", choices=("exact", "all", "approxmc"), default="exact",
                   help="exact (default): the dynamic program, exact where --where is absorbed or the rest is "
                        "small enough to filter, else an estimate with a 95%% interval; all: count with z3; "
                        "approxmc: an (epsilon, delta) estimate by ApproxMC on the CNF (needs nasgen[samplers])")
    p.add_argument("--epsilon", type=float, default=0.8, help="approxmc: tolerance (default 0.8)")
    p.add_argument("--delta", type=float, default=0.2, help="approxmc: 1 - confidence (default 0.2)")
    p.add_argument("--draws", type=int, default=None, help="exact: draws for an estimate (default 10^6)")
    p.add_argument("--seed", type=int, default=0, help="exact or approxmc: seed of an estimate (default 0)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds: z3 counting (--method all), approxmc, or exact --where counting that must filter "
                        "or draw (it stops at the deadline and prints the interval the work done proves)")
    add_model_arguments(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    import math
    import time

    from nasgen.common.errors import NasgenError

    started = time.monotonic()

    space = space_from_args(args)
    if args.method == "approxmc":
        return _run_approxmc(space, args)
    by_layers = None
    extra = {}
    if args.method == "all":
        from nasgen.constraints.language import parse_where_all

        parse_where_all(args.where)
        from nasgen.samplers.solver import count_solutions

        total, exact = count_solutions(space, where=list(args.where), timeout=args.timeout), True
    elif args.where:
        from nasgen.constraints.constrained import DEFAULT_ESTIMATE_DRAWS, ConstrainedSpace
        from nasgen.samplers.registry import chain_spec, model_options

        if args.seed < 0:
            raise NasgenError(f"--seed must be a non-negative integer, got {args.seed}")
        model = model_from_args(args)
        model = None if model is None else chain_spec(model_options(model))
        deadline = None
        if args.timeout is not None:
            if not (math.isfinite(args.timeout) and args.timeout > 0):
                raise NasgenError(f"--timeout must be a finite number of seconds > 0, got {args.timeout}")
            deadline = started + args.timeout
        constrained = ConstrainedSpace(space, args.where, model=model)
        result = constrained.count(seed=args.seed, draws=DEFAULT_ESTIMATE_DRAWS if args.draws is None else args.draws,
                                   deadline=deadline)
        total, exact = result.count, result.exact
        if constrained.all_absorbed:
            by_layers = constrained.tables.count_by_layers
        extra = result.to_dict()
    else:
        from nasgen.space.tables import SpaceTables

        by_layers = SpaceTables(space).count_by_layers
        total, exact = sum(by_layers.values()), True
    if args.json:
        payload = {"count": total, "exact": exact, **extra, "space": space.to_dict()}
        if by_layers is not None:
            payload["by_layers"] = {str(L): c for L, c in by_layers.items()}
        emit(json.dumps(payload))
        return 0
    lines = []
    if by_layers is not None and len(by_layers) > 1:
        lines += [f"{L} layers: {c}" for L, c in by_layers.items()]
    if exact:
        lines.append(str(total))
    else:
        low, high = extra["interval"]
        if extra.get("stop") == "timeout" and not extra["draws"]:
            lines.append(f"{total} (not exact: stopped at the --timeout after filtering {extra['enumerated']} of "
                         f"{result.restricted} candidates; the count is certainly in [{low}, {high}])")
        else:
            cut = " (stopped at the --timeout)" if extra.get("stop") == "timeout" else ""
            lines.append(f"{total} (estimate: 95% interval [{low}, {high}] from {extra['draws']} draws{cut}, "
                         f"acceptance {extra['acceptance']:.3g})")
    emit(lines)
    return 0


def _run_approxmc(space, args) -> int:
    from nasgen.samplers.hashing import approx_count

    result = approx_count(space, where=list(args.where), epsilon=args.epsilon, delta=args.delta, seed=args.seed,
                          timeout=args.timeout)
    low, high = result.bounds
    if args.json:
        print(json.dumps({"count": result.estimate, "exact": False, "method": "approxmc", "epsilon": result.epsilon,
                          "delta": result.delta, "bounds": [low, high], "cell": result.cell, "hashes": result.hashes,
                          "space": space.to_dict()}))
        return 0
    print(f"ApproxMC estimate (not exact): with probability >= {1 - result.delta:g} the count is within a factor "
          f"{1 + result.epsilon:g} of it, in [{low:.6g}, {high:.6g}]")
    print(result.estimate)
    return 0
