"""The ``nasgen`` command line.

Every user mistake ends in one line, ``nasgen: error: ...``, and exit code 2.
Subcommands that need z3 or JAX import them inside their handler, so
``nasgen count`` starts fast. Further subcommands come from the modules in
:data:`COMMAND_MODULES`, each with a ``register(subparsers)`` function.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import time
from typing import Sequence

from nasgen.space import NasgenError, SearchSpace, SpaceError

#: Modules that add subcommands: each defines ``register(subparsers)``.
COMMAND_MODULES = ("nasgen.commands.train_cmds",)

METHODS = ("exact", "all", "limited", "uniwit")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"nasgen: error: {message} (see '{self.prog} --help')\n")


def _int_list(text: str, what: str) -> list[int]:
    parts = [p.strip() for p in str(text).replace("x", ",").split(",")]
    values = []
    for p in parts:
        try:
            values.append(int(p))
        except ValueError:
            raise SpaceError(f"{what} must be comma-separated integers like 30,30, got {text!r}") from None
    return values


def _range_arg(text: str | None, what: str):
    if text is None:
        return None
    low, sep, high = str(text).partition(":")
    if not sep:
        raise SpaceError(f"{what} range must look like MIN:MAX (for example 1:5), got {text!r}")
    try:
        return (int(low), int(high))
    except ValueError:
        raise SpaceError(f"{what} range must look like MIN:MAX with integers, got {text!r}") from None


def _pool_arg(text: str | None):
    if text is None:
        return None
    pairs = []
    for chunk in str(text).split(":"):
        values = _int_list(chunk, "pool")
        if len(values) != 2:
            raise SpaceError(f"pool must be KERNEL,STRIDE (or one pair per dimension joined by ':'), got {text!r}")
        pairs.append(tuple(values))
    return pairs[0] if len(pairs) == 1 else pairs


def add_space_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that define a search space, shared by every subcommand."""
    g = parser.add_argument_group("search space")
    g.add_argument("-I", "--input", required=True, help="input shape, e.g. 30,30")
    g.add_argument("-O", "--output", required=True, help="output shape, e.g. 20,20")
    g.add_argument("-n", "--min-layers", type=int, default=None, help="fewest conv layers (default: N)")
    g.add_argument("-N", "--max-layers", type=int, default=None, help="most conv layers (default: n, else 1)")
    g.add_argument("--pool", help="pool after every conv: KERNEL,STRIDE, or per dimension K,S:K,S")
    g.add_argument("--rounding", choices=("exact", "floor"), default="exact",
                   help="exact: (I-k) divisible by s (the paper); floor: real valid-padding arithmetic")
    g.add_argument("--relation", choices=("gt", "ge", "any"), default="gt", help="kernel vs stride (default k > s)")
    g.add_argument("--kernel", help="kernel range MIN:MAX")
    g.add_argument("--stride", help="stride range MIN:MAX")
    g.add_argument("--square", action="store_true", help="one kernel and one stride per layer for all dimensions")


def space_from_args(args: argparse.Namespace) -> SearchSpace:
    """Build (and so validate) the SearchSpace the options describe."""
    n, big_n = args.min_layers, args.max_layers
    if n is None and big_n is None:
        n = big_n = 1
    elif n is None:
        n = big_n
    elif big_n is None:
        big_n = n
    return SearchSpace(
        input_shape=_int_list(args.input, "input shape"),
        output_shape=_int_list(args.output, "output shape"),
        min_layers=n,
        max_layers=big_n,
        pool=_pool_arg(args.pool),
        rounding=args.rounding,
        relation=args.relation,
        kernel_range=_range_arg(args.kernel, "kernel"),
        stride_range=_range_arg(args.stride, "stride"),
        square=args.square,
    )


def _parse_where(exprs: Sequence[str]):
    if not exprs:
        return []
    from nasgen.where import parse_where

    return [parse_where(e) for e in exprs]


# -- count -------------------------------------------------------------------


def _cmd_count(args) -> int:
    space = space_from_args(args)
    if args.where:
        _parse_where(args.where)
        from nasgen.solver import count_solutions

        total = count_solutions(space, where=list(args.where), timeout=args.timeout)
        by_layers = None
    else:
        from nasgen.core import count_by_layers

        by_layers = count_by_layers(space)
        total = sum(by_layers.values())
    if args.json:
        payload = {"count": total, "space": space.to_dict()}
        if by_layers is not None:
            payload["by_layers"] = {str(L): c for L, c in by_layers.items()}
        print(json.dumps(payload))
        return 0
    if by_layers is not None and len(by_layers) > 1:
        for L, c in by_layers.items():
            print(f"{L} layers: {c}")
    print(total)
    return 0


# -- sample ------------------------------------------------------------------


class _AdjAccumulator:
    """Adj_T over a stream of packed vectors, chunk by chunk."""

    def __init__(self):
        self.total = 0
        self.pairs = 0
        self.last = None

    def add(self, vectors) -> None:
        import numpy as np

        from nasgen import _backend

        if len(vectors) == 0:
            return
        if self.last is not None:
            vectors = np.concatenate([self.last[None, :], vectors])
        self.total += _backend.adjacent_distance_sum(vectors)
        self.pairs += len(vectors) - 1
        self.last = vectors[-1].copy()

    @property
    def value(self) -> float:
        return self.total / self.pairs if self.pairs else 0.0


def _open_output(path):
    if path is None or path == "-":
        return sys.stdout, False
    try:
        return open(path, "w", encoding="utf-8"), True
    except OSError as exc:
        raise NasgenError(f"cannot write {path}: {exc.strerror}") from None


def _write_config(path, space: SearchSpace, args) -> None:
    if path is None or path == "-":
        return
    from nasgen import __version__

    config = {
        "nasgen_version": __version__,
        "space": space.to_dict(),
        "method": args.method,
        "samples": args.samples,
        "seed": args.seed,
        "with_replacement": args.with_replacement,
        "where": list(args.where),
        "timeout": args.timeout,
        "prune": not args.no_prune,
        "query_rlimit": args.query_rlimit,
        "pivot_k": args.pivot_k,
        "start_xors": args.start_xors,
    }
    with open(f"{path}.config.json", "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
        handle.write("\n")


def _cmd_sample(args) -> int:
    space = space_from_args(args)
    if args.samples is not None and args.samples < 0:
        raise NasgenError(f"--samples must be >= 0, got {args.samples}")
    wheres = _parse_where(args.where)
    if args.method == "exact" and wheres:
        raise NasgenError("--where constraints need a solver method: use --method all, limited or uniwit")
    if args.method in ("exact", "limited", "uniwit") and args.samples is None:
        raise NasgenError(f"--method {args.method} needs --samples M")
    from nasgen import _backend
    from nasgen.core import _compile, arrays_to_jsonl_lines, iter_sample_arrays, to_arrays

    adj = _AdjAccumulator()
    handle, close = _open_output(args.output_file)
    written = 0
    status = "complete"
    started = time.perf_counter()
    size_text = ""
    try:
        _write_config(args.output_file, space, args)
        if args.method == "exact":
            compiled = _compile(space)
            size_text = f" from a space of {compiled.total}"
            for layers, kernel, stride in iter_sample_arrays(
                space, args.samples, seed=args.seed, replace=args.with_replacement, chunk=16384
            ):
                handle.write("\n".join(arrays_to_jsonl_lines(layers, kernel, stride)) + "\n")
                handle.flush()
                written += len(layers)
                adj.add(_backend.encode_bits(layers, kernel, stride, space.bit_width))
        else:
            from nasgen.solver import SolverSampler

            with SolverSampler(
                space,
                method=args.method,
                seed=args.seed,
                where=list(args.where),
                prune=not args.no_prune,
                timeout=args.timeout,
                query_rlimit=args.query_rlimit,
                with_replacement=args.with_replacement,
                pivot_k=args.pivot_k,
                start_xors=args.start_xors,
            ) as sampler:
                for arch in sampler.solutions(args.samples):
                    handle.write(arch.to_json() + "\n")
                    handle.flush()
                    written += 1
                    adj.add(_backend.encode_bits(*to_arrays(space, [arch]), space.bit_width))
                status = sampler.stop_reason
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        if close:
            handle.close()
    elapsed = time.perf_counter() - started
    where_to = f" to {args.output_file}" if args.output_file not in (None, "-") else ""
    print(
        f"nasgen: {written} architectures{where_to}{size_text} by {args.method} (seed {args.seed}) "
        f"in {elapsed:.3f} s; Adj_T = {adj.value:.3f}; stopped: {status}",
        file=sys.stderr,
    )
    return 130 if status == "interrupted" else 0


# -- adj ---------------------------------------------------------------------


def _cmd_adj(args) -> int:
    space = space_from_args(args)
    from nasgen.core import adj_t, hamming_matrix, read_architectures

    archs = read_architectures(args.file, space=None if args.no_check else space)
    value = adj_t(space, archs)
    if args.json:
        payload = {"adj_t": value, "architectures": len(archs)}
        if len(archs) >= 2 and len(archs) <= 5000:
            h = hamming_matrix(space, archs)
            payload["mean_pairwise_distance"] = float(h.sum() / (len(archs) * (len(archs) - 1)))
        print(json.dumps(payload))
    else:
        print(f"{value:.6g}")
    return 0


# -- show --------------------------------------------------------------------


def _cmd_show(args) -> int:
    space = space_from_args(args)
    from nasgen.core import architecture_at, read_architectures
    from nasgen.space import Architecture

    if args.architecture:
        arch = Architecture.from_json(args.architecture)
    elif args.file:
        archs = read_architectures(args.file)
        if not 0 <= args.index < len(archs):
            raise NasgenError(f"--index {args.index} is outside 0..{len(archs) - 1} for {args.file}")
        arch = archs[args.index]
    else:
        arch = architecture_at(space, args.rank)
    rows = arch.conv_shapes(space)
    model_view = None
    if args.model:
        # built before anything is printed, so a bad model option fails with nothing half-shown
        from nasgen.summary import summarize

        model_view = summarize(space, arch, model=args.model, width=args.width, num_classes=args.num_classes,
                               in_channels=args.in_channels, width_multiplier=args.width_multiplier)
    fmt = "x".join
    header = f"{'layer':>5}  {'kernel':>12}  {'stride':>12}  {'after conv':>12}  {'after pool':>12}"
    print(space.describe())
    print(header)
    print(f"{'input':>5}  {'':>12}  {'':>12}  {'':>12}  {fmt(map(str, space.input_shape)):>12}")
    for l, (conv, pooled) in enumerate(rows):
        print(
            f"{l + 1:>5}  {fmt(map(str, arch.kernel[l])):>12}  {fmt(map(str, arch.stride[l])):>12}  "
            f"{fmt(map(str, conv)):>12}  {fmt(map(str, pooled)):>12}"
        )
    if model_view is not None:
        print()
        print(model_view)
    return 0


# -- parser ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nasgen",
        description="Neural-architecture search spaces from the arithmetic of convolution.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("count", help="exact number of architectures (total and per number of layers)")
    add_space_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object with count and by_layers")
    p.add_argument("--where", action="append", default=[], metavar="EXPR",
                   help="constraint the exact counter cannot express; counts with z3 (repeatable)")
    p.add_argument("--timeout", type=float, default=None, help="seconds, for z3 counting")
    p.set_defaults(handler=_cmd_count)

    p = sub.add_parser("sample", help="draw architectures as JSON Lines")
    add_space_arguments(p)
    p.add_argument("-M", "--samples", type=int, default=None, help="how many architectures (all: default all)")
    p.add_argument("--method", choices=METHODS, default="exact",
                   help="exact: uniform by dynamic programming; all/limited/uniwit: z3 (the paper's modes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--with-replacement", action="store_true", help="independent draws (default: distinct)")
    p.add_argument("-o", "--output-file", default=None, help="JSON Lines file (default: stdout)")
    p.add_argument("--where", action="append", default=[], metavar="EXPR",
                   help="extra constraint over k[l][d], s[l][d], size[l][d], layers (repeatable; z3 methods)")
    p.add_argument("--timeout", type=float, default=None, help="wall-clock seconds for the whole run (z3 methods)")
    p.add_argument("--query-rlimit", type=int, default=None, help="z3 resource limit per query (reproducible)")
    p.add_argument("--no-prune", action="store_true", help="z3 methods: do not restrict domains first")
    p.add_argument("--pivot-k", type=float, default=2.0, help="uniwit: k in pivot = 2|V|^(1/k)")
    p.add_argument("--start-xors", choices=("paper", "count"), default="paper",
                   help="uniwit: start the XOR count as the paper does, or near log2(count/pivot)")
    p.set_defaults(handler=_cmd_sample)

    p = sub.add_parser("adj", help="Adj_T (mean Hamming distance of consecutive architectures) of a file")
    p.add_argument("file", help="JSON Lines architectures")
    add_space_arguments(p)
    p.add_argument("--no-check", action="store_true", help="do not check that architectures belong to the space")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_adj)

    p = sub.add_parser("show", help="one architecture as a per-layer table (optionally its network)")
    add_space_arguments(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--architecture", help="the architecture as a JSON object")
    src.add_argument("--file", help="JSON Lines file; see --index")
    src.add_argument("--rank", type=int, default=0, help="position in the enumeration order (default 0)")
    p.add_argument("--index", type=int, default=0, help="line of --file, from 0")
    p.add_argument("--model", choices=("chain", "resnet18"), default=None, help="also summarise the network")
    p.add_argument("--width", type=int, default=16, help="chain channel width")
    p.add_argument("--width-multiplier", type=float, default=1.0, help="ResNet-18 width multiplier")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--in-channels", type=int, default=1)
    p.set_defaults(handler=_cmd_show)

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def _terminate(signum, frame):  # pragma: no cover - exercised through subprocess tests
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.handler(args) or 0)
    except NasgenError as exc:
        print(f"nasgen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasgen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
