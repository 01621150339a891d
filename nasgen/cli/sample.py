"""``nasgen sample``: draw architectures with any method, streamed to JSON Lines, npz or Parquet."""

from __future__ import annotations

import dataclasses
import sys
import time

from nasgen.common.errors import NasgenError

from nasgen.cli.common import (
    add_model_arguments,
    add_sampling_arguments,
    add_space_arguments,
    check_sidecar_target,
    config_from_args,
    run_record,
    space_from_args,
    stage_sidecar,
)


def register(subparsers) -> None:
    p = subparsers.add_parser("sample", help="draw architectures as JSON Lines or compressed arrays")
    add_space_arguments(p)
    add_sampling_arguments(p)
    add_model_arguments(p)
    p.add_argument("-o", "--output-file", default=None,
                   help="JSON Lines file, F.npz for compressed arrays or F.parquet for a table "
                        "(default: JSON Lines on stdout)")
    p.add_argument("--format", choices=("jsonl", "npz", "parquet"), default=None,
                   help="output format (default: from the name)")
    p.add_argument("--threads", type=int, default=None,
                   help="exact: threads drawing, 1..1024 (default: the cores this process may use); "
                        "the draws for a seed are the same for every value")
    p.set_defaults(handler=run)


def run(args) -> int:
    from nasgen.space.arrays_io import ArchitectureWriter, format_for
    from nasgen.space.encoding import AdjTAccumulator
    from nasgen.samplers.registry import draw, method_class
    from nasgen.space.draws import check_threads

    # everything is validated before any output is opened: a refused run touches nothing
    started = time.perf_counter()
    space = space_from_args(args)
    config = config_from_args(args)
    if args.threads is not None:
        if "threads" not in method_class(config.method).option_names:
            raise NasgenError(f"--threads does not apply to --method {config.method}")
        config = dataclasses.replace(config, options={**config.options, "threads": check_threads(args.threads)})
    fmt = format_for(args.output_file, args.format)
    check_sidecar_target(args.output_file)
    adj = AdjTAccumulator()
    status = "complete"
    with draw(space, config) as method:
        # A method that fails (an empty space) raises from draw(): the temporary file goes, the target stays.
        # --timeout covers writing the file too: drawing stops early enough for the writer to finish in time
        deadline = None if config.timeout is None else time.monotonic() + config.timeout - (time.perf_counter() - started)
        with ArchitectureWriter(args.output_file, fmt=fmt) as writer:
            try:
                status = None
                for layers, kernel, stride in method.draw():
                    writer.write(layers, kernel, stride)
                    adj.add_arrays(space, layers, kernel, stride)
                    if deadline is not None and time.monotonic() + writer.closing_estimate() >= deadline:
                        status = "timeout"
                        break
                status = status or method.stop_reason or "complete"
            except KeyboardInterrupt:
                status = "interrupted"
            elapsed = time.perf_counter() - started
            config = method.config  # the seed actually used
            sidecar = None
            if writer.regular_file:
                # staged before the output is committed and renamed after it: no sidecar without its output
                sidecar = stage_sidecar(args.output_file, run_record(
                    space, config, args.command_line, format=fmt, count=method.count, written=writer.written,
                    elapsed_s=round(elapsed, 6), adj_t=adj.value, stop=status, statistics=method.statistics))
            try:
                writer.close()
            except BaseException:
                if sidecar is not None:
                    sidecar.discard()
                raise
            if sidecar is not None:
                sidecar.commit()
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
