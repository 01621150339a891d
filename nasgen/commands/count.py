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
    p.add_argument("--timeout", type=float, default=None, help="seconds, for z3 counting")
    p.set_defaults(handler=run)


def run(args) -> int:
    space = space_from_args(args)
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
