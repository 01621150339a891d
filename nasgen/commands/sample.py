"""``nasgen sample``: draw architectures with any method, streamed to JSON Lines or npz."""

from __future__ import annotations

import sys
import time

from nasgen.commands.common import (
    add_model_arguments,
    add_sampling_arguments,
    add_space_arguments,
    config_from_args,
    run_record,
    space_from_args,
    write_sidecar,
)


def register(subparsers) -> None:
    p = subparsers.add_parser("sample", help="draw architectures as JSON Lines or compressed arrays")
    add_space_arguments(p)
    add_sampling_arguments(p)
    add_model_arguments(p)
    p.add_argument("-o", "--output-file", default=None,
                   help="JSON Lines file, or F.npz for compressed arrays (default: JSON Lines on stdout)")
    p.add_argument("--format", choices=("jsonl", "npz"), default=None, help="output format (default: from the name)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from nasgen.arrays_io import ArchitectureWriter, format_for
    from nasgen.core import AdjTAccumulator
    from nasgen.sampling import draw

    # everything is validated before any output is opened: a refused run touches nothing
    space = space_from_args(args)
    config = config_from_args(args)
    fmt = format_for(args.output_file, args.format)
    adj = AdjTAccumulator()
    status = "complete"
    started = time.perf_counter()
    with draw(space, config) as method:
        with ArchitectureWriter(args.output_file, fmt=fmt) as writer:
            try:
                for layers, kernel, stride in method.draw():
                    writer.write(layers, kernel, stride)
                    adj.add_arrays(space, layers, kernel, stride)
                status = method.stop_reason or "complete"
            except KeyboardInterrupt:
                status = "interrupted"
        elapsed = time.perf_counter() - started
        config = method.config  # the seed actually used
        if args.output_file not in (None, "-"):
            write_sidecar(args.output_file, run_record(
                space, config, args.command_line, format=fmt, count=method.count, written=writer.written, elapsed_s=round(elapsed, 6),
                adj_t=adj.value, stop=status, statistics=method.statistics))
    where_to = f" to {args.output_file}" if args.output_file not in (None, "-") else ""
    size_text = f" from a space of {method.count}" if method.count is not None else ""
    stats = method.statistics
    if status == "budget":
        status = f"budget: {stats.get('message')}"
    elif stats.get("acceptance") is not None and stats.get("accepted") != stats.get("draws"):
        size_text += f" (rejection: {stats['accepted']} of {stats['draws']} draws accepted, {stats['acceptance']:.3g})"
    print(
        f"nasgen: {writer.written} architectures{where_to}{size_text} by {config.method} (seed {config.seed}) "
        f"in {elapsed:.3f} s; Adj_T = {adj.value:.3f}; stopped: {status}",
        file=sys.stderr,
    )
    return 130 if status == "interrupted" else 0
