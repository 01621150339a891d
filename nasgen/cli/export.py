"""``nasgen export``: one network of a training run or checkpoint as an ONNX file."""

from __future__ import annotations

from pathlib import Path

from nasgen.common.errors import ExportError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write one network of a training run or checkpoint as an ONNX file")
    p.add_argument("directory", metavar="RUN_OR_CHECKPOINT_DIR",
                   help="a nasgen train output directory (its checkpoints/) or a checkpoint directory")
    p.add_argument("--network", default=None, metavar="cI",
                   help="which network: c0 (a run's baseline), c1, ... in the checkpoint's order, or its saved "
                        "path (e.g. mixture.networks.3); needed when the checkpoint holds several")
    p.add_argument("-o", "--output", required=True, metavar="FILE.onnx", help="the ONNX file to write")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (a run's epoch; default the latest)")
    p.add_argument("--batch-size", type=int, default=1, help="the graph's fixed batch size (default 1)")
    p.add_argument("--dynamic-batch", action="store_true", help="let the graph take any batch size")
    p.set_defaults(handler=run)


def checkpoint_directory(directory: str) -> Path:
    """The checkpoint directory of a run directory, or ``directory`` itself when it holds checkpoint steps.

    Raises:
        ExportError: a missing path, a multi-seed run (which holds one run per seed), or a directory
            with no checkpoint.
    """
    from nasgen.train.checkpoint import all_steps
    from nasgen.train.rundir import CHECKPOINT_DIR
    from nasgen.train.seeds import SEEDS_FILE

    path = Path(directory)
    valid = "give a nasgen train output directory (with checkpoints/) or a checkpoint directory"
    if not path.is_dir():
        raise ExportError(f"{directory} is not a directory; {valid}")
    if (path / SEEDS_FILE).is_file():
        runs = sorted(p.name for p in path.glob("seed-*") if p.is_dir())
        example = path / runs[0] if runs else path / "seed-N"
        raise ExportError(f"{directory} is a multi-seed run; export from one of its runs, e.g. {example}")
    if (path / CHECKPOINT_DIR).is_dir():
        path = path / CHECKPOINT_DIR
    try:
        steps = all_steps(path)
    except OSError as exc:
        raise ExportError(f"cannot read {path} ({exc.strerror or exc})") from None
    if not steps:
        raise ExportError(f"{directory} holds no nasgen checkpoint; {valid}")
    return path


def network_names(count: int) -> list[str]:
    """``c0``..``c{count-1}``: a run's networks in the order they were trained (c0 is the baseline)."""
    return [f"c{i}" for i in range(count)]


def run(args) -> int:
    from flax import nnx

    from nasgen.nn.export import to_onnx
    from nasgen.nn.models import build_model
    from nasgen.train.checkpoint import latest_step, restore, saved_networks

    if args.batch_size < 1:
        raise ExportError(f"--batch-size must be a positive integer, got {args.batch_size}")
    directory = checkpoint_directory(args.directory)
    step = latest_step(directory) if args.step is None else args.step
    networks = saved_networks(directory, step)
    if not networks:
        raise ExportError(f"checkpoint step {step} in {directory} records no network")
    names = network_names(len(networks))
    if args.network is None:
        if len(networks) > 1:
            raise ExportError(f"{args.directory} holds {len(networks)} networks ({names[0]}..{names[-1]}); "
                              "choose one with --network")
        index = 0
    elif args.network in names:
        index = names.index(args.network)
    elif args.network in [n.path for n in networks]:
        index = [n.path for n in networks].index(args.network)
    else:
        choices = names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"
        paths = [n.path for n in networks if n.path]
        also = f" (or a saved path such as {paths[-1]})" if paths else ""
        raise ExportError(f"no network {args.network!r} in {args.directory}; choose {choices}{also}")
    network = networks[index]
    # Built abstractly (no initialisation computed), then its saved arrays restored into it.
    abstract = nnx.eval_shape(lambda: build_model(network.spec, network.space, network.arch, rngs=nnx.Rngs(0)))
    model = restore(directory, step, target=abstract, path=network.path or None)
    model.eval()
    example = network.spec.image_shape(network.space)
    to_onnx(model, args.output, (args.batch_size, *example), dynamic_batch=args.dynamic_batch)
    batch = "batch" if args.dynamic_batch else str(args.batch_size)
    print(f"wrote {args.output}: {names[index]} of step {step} ({network.spec.describe()}), "
          f"input ({batch}, {', '.join(map(str, example))}) channels-last")
    return 0
