"""``nasgen adj``: Adj_T (mean Hamming distance of consecutive architectures) of a file."""

from __future__ import annotations

import json

from nasgen.commands.common import add_space_arguments, space_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser("adj", help="Adj_T (mean Hamming distance of consecutive architectures) of a file")
    p.add_argument("file", help="JSON Lines or npz architectures ('-': standard input)")
    add_space_arguments(p, required=False)
    p.add_argument("--no-check", action="store_true", help="do not check that architectures belong to the space")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)


def run(args) -> int:
    from nasgen import _backend
    from nasgen.arrays_io import read_arrays
    from nasgen.core import adj_t_vectors

    space = space_from_args(args, file=args.file)
    layers, kernel, stride = read_arrays(args.file, space=None if args.no_check else space)
    if args.no_check:
        from nasgen.core import arrays_to_architectures, to_arrays

        layers, kernel, stride = to_arrays(space, arrays_to_architectures(layers, kernel, stride))
    vectors = _backend.encode_bits(layers, kernel, stride, space.bit_width)
    value = adj_t_vectors(vectors)
    if args.json:
        payload = {"adj_t": value, "architectures": len(layers)}
        if 2 <= len(layers) <= 5000:
            h = _backend.hamming_matrix(vectors)
            payload["mean_pairwise_distance"] = float(h.sum() / (len(layers) * (len(layers) - 1)))
        print(json.dumps(payload))
    else:
        print(f"{value:.6g}")
    return 0
