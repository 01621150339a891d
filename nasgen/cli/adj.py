"""``nasgen adj``: Adj_T (mean Hamming distance of consecutive architectures) of a file, read as a stream."""

from __future__ import annotations

import json

from nasgen.cli.common import add_space_arguments, emit, space_from_args

#: ``--json`` adds the mean pairwise distance for files of at most this many architectures (an M x M matrix)
PAIRWISE_LIMIT = 5000


def register(subparsers) -> None:
    p = subparsers.add_parser("adj", help="Adj_T (mean Hamming distance of consecutive architectures) of a file")
    p.add_argument("file", help="JSON Lines or npz architectures ('-': standard input)")
    add_space_arguments(p, required=False)
    p.add_argument("--no-check", action="store_true", help="do not check that architectures belong to the space")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)


def run(args) -> int:
    import numpy as np

    from nasgen.space import backend
    from nasgen.space.arrays_io import iter_arrays
    from nasgen.space.encoding import AdjTAccumulator

    space = space_from_args(args, file=args.file)
    # One chunk at a time: memory stays flat however large the file (a 99 MB file used 827 MB when read whole).
    adj = AdjTAccumulator()
    count = 0
    first: list[np.ndarray] = []  # the vectors, while there are few enough for the pairwise matrix
    for layers, kernel, stride in iter_arrays(args.file, space=space, chunk=65536, check=not args.no_check):
        vectors = backend.encode_bits(layers, kernel, stride, space.bit_width)
        adj.add(vectors)
        count += len(layers)
        if args.json and count <= PAIRWISE_LIMIT:
            first.append(vectors)
    if args.json:
        payload = {"adj_t": adj.value, "architectures": count}
        if 2 <= count <= PAIRWISE_LIMIT:
            h = backend.hamming_matrix(np.concatenate(first))
            payload["mean_pairwise_distance"] = float(h.sum() / (count * (count - 1)))
        emit(json.dumps(payload))
    else:
        emit(f"{adj.value:.6g}")
    return 0
