"""Options and helpers shared by the subcommands: the search space, the sampling settings, the sidecar."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from nasgen.common.errors import NasgenError, SpaceError
from nasgen.constraints.costs import MODEL_OPTIONS
from nasgen.space.definition import SearchSpace

#: the largest integer accepted in a shape, range or pool option (the kernel works in 64-bit integers)
MAX_OPTION_INT = 2**31 - 1

#: a sidecar is a few kilobytes; anything far larger is not one
_MAX_SIDECAR_BYTES = 2**20


def _int(text: str, what: str, example: str) -> int:
    text = text.strip()
    if not text.lstrip("+-").isdigit() or len(text) > 12:
        raise SpaceError(f"{what} must be integers like {example}, got {text[:40]!r}")
    value = int(text)
    if abs(value) > MAX_OPTION_INT:
        raise SpaceError(f"{what} must be integers up to {MAX_OPTION_INT}, got {text[:40]!r}")
    return value


def int_list(text: str, what: str) -> list[int]:
    """``"30,30"`` (or ``"30x30"``) -> ``[30, 30]``; a :class:`SpaceError` naming ``what`` otherwise."""
    return [_int(p, what, "30,30") for p in str(text).replace("x", ",").split(",")]


def range_arg(text: str | None, what: str):
    if text is None:
        return None
    low, sep, high = str(text).partition(":")
    if not sep:
        raise SpaceError(f"{what} range must look like MIN:MAX (for example 1:5), got {text[:40]!r}")
    return (_int(low, f"{what} range bounds", "1:5"), _int(high, f"{what} range bounds", "1:5"))


def pool_arg(text: str | None):
    if text is None:
        return None
    pairs = []
    for chunk in str(text).split(":"):
        values = int_list(chunk, "pool")
        if len(values) != 2:
            raise SpaceError(f"pool must be KERNEL,STRIDE (or one pair per dimension joined by ':'), got {text[:40]!r}")
        pairs.append(tuple(values))
    return pairs[0] if len(pairs) == 1 else pairs


def emit(lines: str | list[str]) -> None:
    """Print a command's result to standard output, all at once.

    Raises:
        NasgenError: standard output cannot be written (a full disk), with the OS reason.
        BrokenPipeError: its reader has gone (the CLI exits quietly).
    """
    import sys

    text = lines if isinstance(lines, str) else "\n".join(lines)
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise NasgenError(f"cannot write standard output: {exc.strerror or exc}") from None


def add_space_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The options that define a search space, shared by every subcommand.

    With ``required=False`` (commands that read a file of architectures) the
    space may instead come from the file's ``F.config.json`` sidecar.
    """
    g = parser.add_argument_group("search space" if required else
                                  "search space (default: from FILE.config.json, written by 'nasgen sample -o')")
    g.add_argument("-I", "--input", required=required, help="input shape, e.g. 30,30")
    g.add_argument("-O", "--output", required=required, help="output shape, e.g. 20,20")
    g.add_argument("-n", "--min-layers", type=int, default=None, help="fewest conv layers (default: N)")
    g.add_argument("-N", "--max-layers", type=int, default=None, help="most conv layers (default: n, else 1)")
    g.add_argument("--pool", help="pool after every conv: KERNEL,STRIDE, or per dimension K,S:K,S")
    g.add_argument("--rounding", choices=("exact", "floor"), default=None,
                   help="exact (default): (I-k) divisible by s (the paper); floor: real valid-padding arithmetic")
    g.add_argument("--relation", choices=("gt", "ge", "any"), default=None, help="kernel vs stride (default gt: k > s)")
    g.add_argument("--kernel", help="kernel range MIN:MAX")
    g.add_argument("--stride", help="stride range MIN:MAX")
    g.add_argument("--square", action="store_true", default=None,
                   help="one kernel and one stride per layer for all dimensions")


_SPACE_OPTIONS = ("input", "output", "min_layers", "max_layers", "pool", "rounding", "relation", "kernel", "stride",
                  "square")


def space_given(args: argparse.Namespace) -> bool:
    """Whether any space option was given on the command line."""
    return any(getattr(args, name, None) is not None for name in _SPACE_OPTIONS)


def space_from_args(args: argparse.Namespace, *, file: str | None = None) -> SearchSpace:
    """Build (and so validate) the SearchSpace the options describe.

    With no space option and a ``file`` that has a ``file.config.json``
    sidecar, the sidecar's space.

    Raises:
        SpaceError: invalid options, or no options and no sidecar.
    """
    if not space_given(args):
        if file is not None and file != "-":
            sidecar = read_sidecar(file)
            if sidecar is not None:
                return SearchSpace.from_dict(sidecar["space"])
        where = f" and {file}.config.json does not exist" if file not in (None, "-") else ""
        raise SpaceError(f"give the search space with -I and -O (and -n, -N, ...){where}")
    if args.input is None or args.output is None:
        raise SpaceError("the search space needs both -I/--input and -O/--output")
    n, big_n = args.min_layers, args.max_layers
    if n is None and big_n is None:
        n = big_n = 1
    elif n is None:
        n = big_n
    elif big_n is None:
        big_n = n
    return SearchSpace(
        input_shape=int_list(args.input, "input shape"),
        output_shape=int_list(args.output, "output shape"),
        min_layers=n,
        max_layers=big_n,
        pool=pool_arg(args.pool),
        rounding=args.rounding or "exact",
        relation=args.relation or "gt",
        kernel_range=range_arg(args.kernel, "kernel"),
        stride_range=range_arg(args.stride, "stride"),
        square=bool(args.square),
    )


# -- sampling options ----------------------------------------------------------------


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of every sampling method: method, samples, seed, replacement, timeout, --where, method options."""
    from nasgen.samplers.registry import method_names

    g = parser.add_argument_group("sampling")
    g.add_argument("-M", "--samples", type=int, default=None, help="how many architectures")
    g.add_argument("--method", choices=method_names(), default="exact",
                   help="exact (default): exactly uniform by dynamic programming; all/limited/uniwit: z3, the "
                        "paper's modes; see 'Sampling methods' in docs/solver.md for every method")
    g.add_argument("--seed", type=int, default=0, help="a non-negative integer (default 0)")
    g.add_argument("--with-replacement", action="store_true", help="independent draws (default: distinct)")
    g.add_argument("--where", action="append", default=[], metavar="EXPR",
                   help="constraint over k[l][d], s[l][d], size[l][d], layers, params, flops (repeatable; all "
                        "must hold); see 'Constraints' in the README")
    g.add_argument("--timeout", type=float, default=None, help="wall-clock seconds for the whole run")
    g = parser.add_argument_group("method options")
    g.add_argument("--query-rlimit", type=int, default=None, help="z3 methods: resource limit per query (reproducible)")
    g.add_argument("--no-prune", action="store_true", help="z3 methods: do not restrict domains first")
    g.add_argument("--pivot-k", type=float, default=None, help="uniwit: k in pivot = 2|V|^(1/k) (default 2)")
    g.add_argument("--start-xors", choices=("paper", "count"), default=None,
                   help="uniwit: start the XOR count as the paper does (default), or near log2(count/pivot)")
    g.add_argument("--depth-weights", choices=("space", "uniform"), default=None,
                   help="exact: how the number of layers is drawn: space (default; every architecture equally "
                        "likely) or uniform (every non-empty depth equally likely, then uniform within it)")
    g.add_argument("--max-draws", type=int, default=None,
                   help="exact with --where atoms it cannot absorb: budget of candidate draws (default 10^7)")
    g.add_argument("--epsilon", type=float, default=None, help="unigen: tolerance epsilon (default 0.8)")
    g.add_argument("--delta", type=float, default=None, help="unigen: confidence delta (default 0.2)")
    g.add_argument("--round-size", type=int, default=None,
                   help="unigen: samples asked of one UniGen call, one streamed chunk (default 1000)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The chain model's options that ``params`` and ``flops`` in ``--where`` read (as ``nasgen show``)."""
    g = parser.add_argument_group("cost model (for params and flops in --where; defaults as nasgen show)")
    g.add_argument("--width", type=int, default=None, help="chain channel width (default 16)")
    g.add_argument("--in-channels", type=int, default=None, help="input channels (default 1)")
    g.add_argument("--num-classes", type=int, default=None, help="classes of the logits head (default 10)")
    g.add_argument("--norm", choices=("batch", "none"), default=None, help="BatchNorm after each conv (default batch)")
    g.add_argument("--head", choices=("logits", "features"), default=None, help="linear head or none (default logits)")
    g.add_argument("--pooling", choices=("max", "avg"), default=None, help="the space's pool kind (default max)")


def model_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The model options given on the command line (None when none was given)."""
    given = {name: getattr(args, name, None) for name in MODEL_OPTIONS}
    given = {name: value for name, value in given.items() if value is not None}
    if "norm" in given and given["norm"] == "none":
        given["norm"] = None
    return given or None


#: CLI option -> (config option name, value transform); only options given on the command line are passed
_METHOD_OPTIONS = {
    "query_rlimit": ("query_rlimit", lambda v: v),
    "no_prune": ("prune", lambda v: not v),
    "pivot_k": ("pivot_k", lambda v: v),
    "start_xors": ("start_xors", lambda v: v),
    "max_draws": ("max_draws", lambda v: v),
    "epsilon": ("epsilon", lambda v: v),
    "delta": ("delta", lambda v: v),
    "round_size": ("round_size", lambda v: v),
    "depth_weights": ("depth_weights", lambda v: v),
}


def config_from_args(args: argparse.Namespace):
    """The :class:`~nasgen.samplers.registry.SamplingConfig` the options describe (validated).

    Raises:
        NasgenError: an invalid combination, named.
    """
    from nasgen.samplers.registry import SamplingConfig, method_class

    cls = method_class(args.method)
    options: dict[str, Any] = {}
    for attr, (name, transform) in _METHOD_OPTIONS.items():
        value = getattr(args, attr, None)
        if value is None or value is False:
            continue
        if name not in cls.option_names:
            flag = "--" + attr.replace("_", "-")
            raise NasgenError(f"{flag} does not apply to --method {args.method}")
        options[name] = transform(value)
    model = model_from_args(args)
    if model is not None:
        if "model" not in cls.option_names:
            raise NasgenError(f"the cost-model options (--width, ...) do not apply to --method {args.method}")
        options["model"] = model
    return SamplingConfig(method=args.method, samples=args.samples, seed=args.seed, replace=args.with_replacement,
                          timeout=args.timeout, where=tuple(args.where), options=options)


# -- the sidecar ---------------------------------------------------------------------


def sidecar_path(path: str | Path) -> Path:
    return Path(f"{path}.config.json")


def read_sidecar(path: str | Path) -> dict | None:
    """The ``path.config.json`` that ``nasgen sample -o path`` wrote, or None when there is none.

    Raises:
        NasgenError: the sidecar exists but is not a readable JSON object with a space.
    """
    from nasgen.space.definition import parse_json

    sidecar = sidecar_path(path)
    if not sidecar.exists():
        return None
    if sidecar.is_dir():
        raise NasgenError(f"cannot read {sidecar}: it is a directory")
    try:
        with open(sidecar, "rb") as handle:
            data = handle.read(_MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise NasgenError(f"cannot read {sidecar}: {exc.strerror or exc}") from None
    if len(data) > _MAX_SIDECAR_BYTES:
        raise NasgenError(f"{sidecar} is over {_MAX_SIDECAR_BYTES // 2**20} MiB: not a nasgen sidecar")
    try:
        data = parse_json(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise NasgenError(f"cannot read {sidecar}: not UTF-8 text") from None
    except NasgenError as exc:
        raise NasgenError(f"cannot read {sidecar}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("space"), dict):
        raise NasgenError(f"{sidecar} is not a nasgen sidecar (a JSON object with a 'space')")
    return data


def check_sidecar_target(path: str | Path | None) -> None:
    """Refuse, before a run starts, an output whose ``path.config.json`` could not be written.

    Raises:
        NasgenError: ``path.config.json`` is a directory.
    """
    if path in (None, "-"):
        return
    sidecar = sidecar_path(path)
    if sidecar.is_dir():
        raise NasgenError(f"cannot write {sidecar}: it is a directory (remove it or choose another -o)")


def stage_sidecar(path: str | Path, record: dict[str, Any]):
    """Write ``path.config.json`` under a temporary name; the caller commits it after the output itself.

    Returns:
        A :class:`nasgen.common.atomic.StagedFile`: ``commit()`` renames it into place, ``discard()`` removes it.

    Raises:
        NasgenError: it cannot be written (named, with the OS reason), or a
            figure is not finite (JSON has no NaN).
    """
    from nasgen.common.atomic import StagedFile

    try:
        text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    except ValueError as exc:
        raise NasgenError(f"cannot write {sidecar_path(path)}: {exc}") from None
    staged = StagedFile(sidecar_path(path))
    try:
        staged.write(text)
    except BaseException:
        staged.discard()
        raise
    return staged


def write_sidecar(path: str | Path, record: dict[str, Any]) -> None:
    """Write ``path.config.json`` atomically (a temporary file renamed into place).

    Raises:
        NasgenError: it cannot be written (named, with the OS reason).
    """
    stage_sidecar(path, record).commit()


def run_record(space: SearchSpace, config, command_line: list[str], **figures: Any) -> dict[str, Any]:
    """The sidecar's content: version, command line, time, space, sampling config and the run's figures."""
    from nasgen.common.version import __version__

    return {
        "nasgen_version": __version__,
        "command_line": list(command_line),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "space": space.to_dict(),
        "sampling": config.to_dict(),
        **figures,
    }
