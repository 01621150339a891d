"""``nasgen show``: one architecture as a per-layer table, optionally with its network's analytic summary."""

from __future__ import annotations

from nasgen.commands.common import add_space_arguments, space_from_args
from nasgen.space import NasgenError


def register(subparsers) -> None:
    p = subparsers.add_parser("show", help="one architecture as a per-layer table (optionally its network)")
    add_space_arguments(p, required=False)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--architecture", help="the architecture as a JSON object")
    src.add_argument("--file", help="JSON Lines or npz file ('-': standard input); see --index")
    src.add_argument("--rank", type=int, default=0, help="position in the enumeration order (default 0)")
    p.add_argument("--index", type=int, default=0, help="line of --file, from 0")
    p.add_argument("--model", choices=("chain", "resnet18"), default=None, help="also summarise the network")
    p.add_argument("--width", type=int, default=16, help="chain channel width")
    p.add_argument("--width-multiplier", type=float, default=1.0, help="ResNet-18 width multiplier")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--in-channels", type=int, default=1)
    p.set_defaults(handler=run)


def run(args) -> int:
    from nasgen.space import Architecture

    space = space_from_args(args, file=args.file)
    if args.architecture:
        arch = Architecture.from_json(args.architecture)
    elif args.file:
        from nasgen.arrays_io import read_arrays
        from nasgen.core import arrays_to_architectures

        layers, kernel, stride = read_arrays(args.file)
        if not 0 <= args.index < len(layers):
            raise NasgenError(f"--index {args.index} is outside 0..{len(layers) - 1} for {args.file}")
        i = args.index
        arch = arrays_to_architectures(layers[i:i + 1], kernel[i:i + 1], stride[i:i + 1])[0]
    else:
        from nasgen.core import SpaceTables

        arch = SpaceTables(space).architecture_at(args.rank)
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
