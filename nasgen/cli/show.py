"""``nasgen show``: one architecture as a per-layer table, optionally with its network's analytic summary."""

from __future__ import annotations

from nasgen.cli.common import add_space_arguments, emit, int_list, space_from_args, space_given
from nasgen.common.errors import NasgenError


def register(subparsers) -> None:
    p = subparsers.add_parser("show", help="one architecture as a per-layer table (optionally its network)")
    add_space_arguments(p, required=False)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--architecture", help="the architecture as a JSON object")
    src.add_argument("--file", help="JSON Lines or npz file ('-': standard input); see --index")
    src.add_argument("--rank", type=int, default=0, help="position in the enumeration order (default 0)")
    p.add_argument("--index", type=int, default=0, help="line of --file, from 0")
    p.add_argument("--model", choices=("chain", "resnet18"), default=None, help="also summarise the network")
    p.add_argument("--width", type=int, default=None, help="chain channel width (default 16)")
    p.add_argument("--width-multiplier", type=float, default=None, help="ResNet-18 width multiplier (default 1)")
    p.add_argument("--num-classes", type=int, default=None, help="classes (default 10)")
    p.add_argument("--in-channels", type=int, default=None, help="input channels (default 1, or C of --image-shape)")
    p.add_argument("--image-shape", default=None, metavar="H,W[,C]",
                   help="resnet18: the input image; the space defaults to its downsampling space (default 28,28,1)")
    p.set_defaults(handler=run)


def _model_spec(args):
    """The ModelSpec the options describe (jax-free), or None without --model."""
    from nasgen.nn.spec import ModelSpec

    options = {name: getattr(args, name) for name in ("num_classes", "in_channels") if getattr(args, name) is not None}
    image_shape = None if args.image_shape is None else int_list(args.image_shape, "--image-shape")
    if args.model == "chain":
        if args.width_multiplier is not None or image_shape is not None:
            raise NasgenError("--width-multiplier and --image-shape apply to --model resnet18; a chain takes --width")
        if args.width is not None:
            options["width"] = args.width
        return ModelSpec.from_options("chain", **options)
    if args.width is not None:
        raise NasgenError("--width applies to --model chain; ResNet-18 takes --width-multiplier")
    if args.width_multiplier is not None:
        options["width_multiplier"] = args.width_multiplier
    return ModelSpec.from_options("resnet18", image_shape=image_shape, **options)


def run(args) -> int:
    from nasgen.space.definition import Architecture

    spec = None
    if args.model is not None:
        spec = _model_spec(args)
    elif any(getattr(args, n) is not None for n in ("width", "width_multiplier", "num_classes", "in_channels",
                                                    "image_shape")):
        raise NasgenError("the model options (--width, --image-shape, ...) need --model chain or --model resnet18")
    if spec is not None and spec.kind == "resnet18" and not space_given(args) and args.file in (None, "-"):
        from nasgen.nn.spec import resnet_space

        space = resnet_space(spec.input_shape)
    else:
        space = space_from_args(args, file=args.file)
    if args.architecture:
        arch = Architecture.from_json(args.architecture)
    elif args.file:
        from nasgen.space.arrays_io import read_arrays
        from nasgen.space.encoding import arrays_to_architectures

        layers, kernel, stride = read_arrays(args.file)
        if not 0 <= args.index < len(layers):
            if not len(layers):
                raise NasgenError(f"{args.file} holds no architecture")
            raise NasgenError(f"--index {args.index} is outside 0..{len(layers) - 1} for {args.file}")
        i = args.index
        arch = arrays_to_architectures(layers[i:i + 1], kernel[i:i + 1], stride[i:i + 1])[0]
    else:
        from nasgen.space.tables import SpaceTables

        arch = SpaceTables(space).architecture_at(args.rank)
    rows = arch.conv_shapes(space)
    model_view = None
    if spec is not None:
        # built before anything is printed, so a bad model option fails with nothing half-shown
        from nasgen.nn.summary import summarize

        model_view = summarize(spec, space, arch)
    fmt = "x".join
    header = f"{'layer':>5}  {'kernel':>12}  {'stride':>12}  {'after conv':>12}  {'after pool':>12}"
    lines = [space.describe(), header,
             f"{'input':>5}  {'':>12}  {'':>12}  {'':>12}  {fmt(map(str, space.input_shape)):>12}"]
    for l, (conv, pooled) in enumerate(rows):
        lines.append(
            f"{l + 1:>5}  {fmt(map(str, arch.kernel[l])):>12}  {fmt(map(str, arch.stride[l])):>12}  "
            f"{fmt(map(str, conv)):>12}  {fmt(map(str, pooled)):>12}"
        )
    if model_view is not None:
        lines += ["", str(model_view)]
    emit(lines)
    return 0
