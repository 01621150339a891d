"""``nasgen check``: test whether a file of architectures is a uniform sample of its space."""

from __future__ import annotations

import json

from nasgen.cli.common import add_space_arguments, read_sidecar, space_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check", help="test a sample's uniformity against the exact marginals (exit 0 uniform, 1 not)")
    p.add_argument("file", help="JSON Lines or npz architectures, from any sampler ('-': standard input)")
    add_space_arguments(p, required=False)
    p.add_argument("--level", type=float, default=0.001, help="significance level of the verdict (default 0.001)")
    draws = p.add_mutually_exclusive_group()
    draws.add_argument("--with-replacement", dest="replace", action="store_const", const=True, default=None,
                       help="the draws are independent: test the number of repeats against its expectation "
                            "(the default without a sidecar)")
    draws.add_argument("--distinct", dest="replace", action="store_const", const=False,
                       help="the draws are meant to be distinct: any repeat fails")
    p.add_argument("--json", action="store_true", help="print one JSON object (uniform, overall_p, draws, tests)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from nasgen.samplers.check import check_uniformity, read_samples, validate_arrays
    from nasgen.common.errors import ArchitectureError, NasgenError

    space = space_from_args(args, file=args.file)
    replace = args.replace
    if replace is None:
        sidecar = read_sidecar(args.file) if args.file != "-" else None
        sampling = (sidecar or {}).get("sampling") or {}
        replace = bool(sampling.get("replace", True))
    if not 0 < args.level < 1:
        raise NasgenError(f"--level must be in (0, 1), got {args.level}")
    is_npz = False
    if args.file != "-":
        try:
            with open(args.file, "rb") as handle:
                is_npz = handle.read(4) == b"PK\x03\x04"
        except OSError as exc:
            raise NasgenError(f"cannot read {args.file}: {exc.strerror}") from None
    if args.file == "-" or is_npz:
        from nasgen.space.arrays_io import read_arrays

        arrays = read_arrays(args.file, space=None)
        if arrays[1].shape[1] > space.max_layers or (len(arrays[0]) and arrays[1].shape[2] != space.dims):
            raise ArchitectureError(f"{args.file} holds architectures of shape {arrays[1].shape[1:]} (layers, dims); "
                                    f"the space {space.describe()} has at most {space.max_layers} layers in "
                                    f"{space.dims} dimensions")
        import numpy as np

        pad = space.max_layers - arrays[1].shape[1]
        arrays = (arrays[0], np.pad(arrays[1], ((0, 0), (0, pad), (0, 0))),
                  np.pad(arrays[2], ((0, 0), (0, pad), (0, 0))))
        bad = validate_arrays(space, *arrays)[1]
        if bad is not None:
            raise ArchitectureError(f"{args.file} architecture {bad + 1} is not in the space {space.describe()}")
    else:
        arrays = read_samples(args.file, space)
    result = check_uniformity(space, arrays, level=args.level, replace=replace)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        width = max(len(t.name) for t in result.tests)
        print(f"{'test':<{width}}  {'statistic':>12}  {'df':>6}  {'p-value':>10}  {'Holm p':>10}")
        for t in result.tests:
            print(f"{t.name:<{width}}  {t.statistic:>12.4g}  {t.df:>6}  {t.p_value:>10.3g}  {t.p_adjusted:>10.3g}")
        for s in result.skipped:
            print(f"skipped: {s}")
        verdict = "uniform" if result.uniform else "NOT uniform"
        print(f"{result.draws} draws: {verdict} at level {result.level:g} (overall p = {result.overall_p:.3g}, "
              f"{len(result.tests)} tests, Holm-corrected)")
    return 0 if result.uniform else 1
