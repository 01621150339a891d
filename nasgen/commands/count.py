"""``nasgen count``: the exact number of architectures, in total and per number of layers."""

from __future__ import annotations

import json

from nasgen.commands.common import add_space_arguments, space_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser("count", help="exact number of architectures (total and per number of layers)")
    add_space_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object with count and by_layers")
    p.add_argument("--where", action="append", default=[], metavar="EXPR",
                   help="constraint over k[l][d], s[l][d], size[l][d], layers (repeatable; counted with z3)")
    p.add_argument("--timeout", type=float, default=None, help="seconds, for z3 or approxmc counting")
    p.add_argument("--method", choices=("exact", "approxmc"), default="exact",
                   help="exact (default: dynamic programming, z3 with --where) or approxmc: an (epsilon, delta) "
                        "estimate by ApproxMC on the CNF (needs nasgen[samplers])")
    p.add_argument("--epsilon", type=float, default=0.8, help="approxmc: tolerance (default 0.8)")
    p.add_argument("--delta", type=float, default=0.2, help="approxmc: 1 - confidence (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="approxmc: seed (default 0)")
    p.set_defaults(handler=run)


def run(args) -> int:
    space = space_from_args(args)
    if args.method == "approxmc":
        return _run_approxmc(space, args)
    if args.where:
        from nasgen.where import parse_where_all

        parse_where_all(args.where)
        from nasgen.solver import count_solutions

        total = count_solutions(space, where=list(args.where), timeout=args.timeout)
        by_layers = None
    else:
        from nasgen.core import SpaceTables

        by_layers = SpaceTables(space).count_by_layers
        total = sum(by_layers.values())
    if args.json:
        payload = {"count": total, "exact": True, "space": space.to_dict()}
        if by_layers is not None:
            payload["by_layers"] = {str(L): c for L, c in by_layers.items()}
        print(json.dumps(payload))
        return 0
    if by_layers is not None and len(by_layers) > 1:
        for L, c in by_layers.items():
            print(f"{L} layers: {c}")
    print(total)
    return 0


def _run_approxmc(space, args) -> int:
    from nasgen.hashing import approx_count

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
