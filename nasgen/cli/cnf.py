"""``nasgen cnf`` and ``nasgen decode``: the space as DIMACS CNF, and solver output back to architectures."""

from __future__ import annotations

import sys

from nasgen.cli.common import add_space_arguments, space_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cnf", help="write the space as DIMACS CNF (sampling set 'c ind' = the canonical bits) for external tools")
    add_space_arguments(p)
    p.add_argument("--where", action="append", default=[], metavar="EXPR",
                   help="constraint over k[l][d], s[l][d], size[l][d], layers (repeatable; lowered through z3)")
    p.add_argument("-o", "--output-file", default=None, help="the CNF file (default: standard output)")
    p.set_defaults(handler=run_cnf)
    p = subparsers.add_parser("decode", help="turn a solver's models of a 'nasgen cnf' file into JSON Lines")
    p.add_argument("cnf", help="a CNF written by 'nasgen cnf' (its comments hold the space and variable map)")
    p.add_argument("solutions", help="models: 'v' lines, plain '1 -2 ... 0' lines or UniGen's '... 0:N' ('-': stdin)")
    p.add_argument("-o", "--output-file", default=None, help="JSON Lines file (default: standard output)")
    p.set_defaults(handler=run_decode)


def run_cnf(args) -> int:
    import time

    from nasgen.samplers.cnf import encode_space, write_dimacs

    space = space_from_args(args)
    if args.where:
        from nasgen.constraints.language import parse_where_all

        for w in parse_where_all(args.where):
            w.check(space)
    started = time.perf_counter()
    cnf = encode_space(space, args.where)
    write_dimacs(cnf, sys.stdout if args.output_file in (None, "-") else args.output_file)
    print(f"nasgen: {cnf.num_vars} variables ({len(cnf.sampling)} sampling), {len(cnf.clauses)} clauses "
          f"in {time.perf_counter() - started:.3f} s", file=sys.stderr)
    return 0


def run_decode(args) -> int:
    from nasgen.space.arrays_io import ArchitectureWriter
    from nasgen.common.errors import CnfError
    from nasgen.samplers.cnf import decode_solutions, parse_solutions, read_dimacs
    from nasgen.space.encoding import to_arrays

    header = read_dimacs(args.cnf)
    source = "standard input" if args.solutions == "-" else args.solutions
    try:
        handle = sys.stdin if args.solutions == "-" else open(args.solutions, encoding="utf-8")
    except OSError as exc:
        raise CnfError(f"cannot read {args.solutions}: {exc.strerror}") from None
    try:
        # Decode (and check) everything before writing anything: a bad model leaves no half-written file.
        archs = list(decode_solutions(header, parse_solutions(handle, source=source), source=source))
    except UnicodeDecodeError:
        raise CnfError(f"{source} is not a text file of solver models") from None
    finally:
        if handle is not sys.stdin:
            handle.close()
    with ArchitectureWriter(args.output_file, fmt="jsonl") as writer:
        if archs:
            writer.write(*to_arrays(header.space, archs))
    print(f"nasgen: decoded {len(archs)} architectures", file=sys.stderr)
    return 0
