"""The settings of a training run: :class:`TrainConfig` (what is trained) and :class:`RunOptions` (how it runs).

Both are frozen. ``TrainConfig`` is written to a run's ``config.json`` (its
model options as a :class:`~nasgen.nn.spec.ModelSpec`, stored under the same
flat keys as before: ``model``, ``width``, ``width_multiplier``,
``bn_momentum``, ``init_scale``); ``RunOptions`` changes nothing a run
computes (progress bars, devices, caches, plots), so it is not part of a
run's identity. This module imports no JAX.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.nn.spec import BN_MOMENTUM, LECUN, ORIGINAL_RESNET_ARCH, RESNET_INPUT_SHAPE, ModelSpec, resnet_space
from nasgen.space.definition import Architecture, SearchSpace, check_membership

__all__ = [
    "DATASET_DEFAULTS",
    "DIGITS_BASELINE",
    "DIGITS_SPACE",
    "MIXINGS",
    "MODELS",
    "OPTIMIZERS",
    "RunOptions",
    "TrainConfig",
    "exception_reason",
    "network_names",
    "network_spec",
    "space_from_dict",
]

DIGITS_SPACE = SearchSpace((8, 8), (2, 2), min_layers=1, max_layers=3)
"""The built-in chain space for the 8x8 digits: 8x8 -> 2x2 in 1..3 layers, exact, k > s (305 members)."""

DIGITS_BASELINE = Architecture(kernel=((3, 3),) * 3, stride=((1, 1),) * 3)
"""The default c_0 for chain runs on digits: three 3x3 stride-1 convolutions, 8 -> 6 -> 4 -> 2."""

MIXINGS = ("logits", "probabilities")
OPTIMIZERS = ("adam-l2", "adamw")
MODELS = ("chain", "resnet18")

DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # The paper's settings (section 6.3).
    "mnist": {"epochs": 10, "batch_size": 512, "learning_rate": 1e-4, "weight_decay": 1e-4},
    # 1438 training images: a batch of 512 would give 2 steps an epoch, so the
    # quick run takes smaller batches and a larger step to train in seconds.
    "digits": {"epochs": 8, "batch_size": 64, "learning_rate": 3e-3, "weight_decay": 1e-4},
}


def space_from_dict(data: Any) -> SearchSpace:
    """A :class:`SearchSpace` from its dict form, with one-line errors for a non-object or missing fields.

    Raises:
        NasgenError: ``data`` is not a complete search-space object.
    """
    if not isinstance(data, dict):
        raise NasgenError(f"a search space must be a JSON object with input_shape and output_shape, got {type(data).__name__}")
    missing = [name for name in ("input_shape", "output_shape") if name not in data]
    if missing:
        raise NasgenError(f"the search space lacks {' and '.join(missing)}; give at least input_shape and output_shape")
    try:
        return SearchSpace.from_dict(dict(data))
    except (TypeError, KeyError) as exc:
        raise NasgenError(f"invalid search space ({exception_reason(exc)})") from None


def _arch_dicts(archs: Sequence[Architecture | dict]) -> tuple[dict, ...]:
    out = []
    for a in archs:
        arch = a if isinstance(a, Architecture) else Architecture.from_dict(a)
        out.append(arch.to_dict())
    return tuple(out)


_NOT_IN_STEP = ("seed", "init_scale", "epochs", "train_limit", "test_limit", "data_dir", "eval_batch_size")


#: The ``config.json`` keys of :attr:`TrainConfig.network`, in the file's order: the ModelSpec field each one is.
_NETWORK_KEYS = {"model": "kind", "width": "width", "width_multiplier": "width_multiplier",
                 "bn_momentum": "bn_momentum", "init_scale": "init_scale"}

#: ``config.json``'s keys in their order (the order of TrainConfig's fields before the spec held the model options).
_FILE_ORDER = ("architectures", "model", "dataset", "space", "baseline", "epochs", "batch_size", "learning_rate",
               "weight_decay", "optimizer", "mixing", "width", "width_multiplier", "seed", "data_dir", "train_limit",
               "test_limit", "eval_batch_size", "bn_momentum", "init_scale", "image_shape")

_DEFAULT_NETWORK = ModelSpec("chain", bn_momentum=BN_MOMENTUM)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one mixture-training run; written to ``config.json`` beside its outputs.

    Build one from its ``config.json`` form with :meth:`from_dict` (flat keys:
    ``model``, ``width``, ``width_multiplier``, ``bn_momentum``,
    ``init_scale`` are the network's options) or directly with a
    :class:`~nasgen.nn.spec.ModelSpec`.

    Args:
        architectures: the generated architectures c_1..c_M (Architecture or
            their dicts); stored as dicts so the config is plain JSON.
        network: the options of every network (a
            :class:`~nasgen.nn.spec.ModelSpec`): its ``kind`` is ``"chain"`` (a
            :class:`~nasgen.nn.models.ConvChain` per architecture) or
            ``"resnet18"`` (a ResNet-18 whose three downsampling blocks take
            each architecture); ``width`` (chain channels),
            ``width_multiplier`` (ResNet-18 stage widths), ``bn_momentum``
            (0.9, :data:`~nasgen.nn.spec.BN_MOMENTUM`) and ``init_scale``
            (None: the kind's default) are used; its ``num_classes``,
            ``in_channels`` and ``input_shape`` come from the data and
            ``image_shape`` (:meth:`model_spec`), and its norm, head, pooling
            and activation must be the defaults.
        dataset: ``"digits"`` (bundled 8x8), ``"mnist"``, or the path of an
            ``.npz`` with ``x_train, y_train, x_test, y_test`` (any image
            shape and class count; the paper's MNIST settings by default).
        image_shape: resnet18's input ``(H, W, C)``; None is MNIST's
            28x28x1. Its downsampling space is
            :func:`~nasgen.nn.spec.resnet_space` of it.
        space: the search space the architectures belong to (dict form); None
            picks :data:`DIGITS_SPACE` for chain runs on digits and
            :data:`~nasgen.nn.spec.RESNET_SPACE` for resnet18.
        baseline: c_0; None picks :data:`~nasgen.nn.spec.ORIGINAL_RESNET_ARCH`
            for resnet18 and :data:`DIGITS_BASELINE` for chain on digits.
        epochs, batch_size, learning_rate, weight_decay: the optimisation
            settings (defaults: :data:`DATASET_DEFAULTS` for the dataset).
        optimizer: ``"adam-l2"`` (Adam on the gradient plus ``weight_decay * w``
            for conv and dense kernels, the paper code's L2 penalty) or
            ``"adamw"`` (decoupled weight decay on the same kernels).
        mixing: ``"logits"`` (cross-entropy on the alpha-weighted sum of the
            networks' logits, as the paper's code does) or ``"probabilities"``
            (NLL of the alpha-weighted sum of the networks' softmax outputs, a
            true mixture model).
        seed: initialisation and data-order seed.
        data_dir: where MNIST lives (see :func:`nasgen.train.data.load_mnist`).
        train_limit, test_limit: use only the first n training / test images
            (None: all); for smoke runs and tests.
        eval_batch_size: images per evaluation step.

    Raises:
        NasgenError: for any invalid setting (one-line message).

    >>> config = TrainConfig.from_dict({"architectures": [], "width": 8})
    >>> config.network.kind, config.network.width, config.epochs, config.to_dict()["bn_momentum"]
    ('chain', 8, 8, 0.9)
    """

    architectures: tuple[dict, ...]
    network: ModelSpec = _DEFAULT_NETWORK
    dataset: str = "digits"
    space: dict | None = None
    baseline: dict | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    weight_decay: float | None = None
    optimizer: str = "adam-l2"
    mixing: str = "logits"
    seed: int = 42
    data_dir: str | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    eval_batch_size: int = 1000
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        self._check_network()
        if not isinstance(self.dataset, str) or not (self.dataset in DATASET_DEFAULTS or self.dataset.endswith(".npz")):
            raise NasgenError(f"dataset {self.dataset!r} is not one of {', '.join(DATASET_DEFAULTS)} or a FILE.npz")
        if self.image_shape is not None:
            if self.model != "resnet18":
                raise NasgenError("image_shape applies to resnet18 only; a chain's input is its space's input shape")
            shape = self.image_shape
            if (not isinstance(shape, (list, tuple)) or len(shape) != 3
                    or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape)):
                raise NasgenError(f"image shape must be three positive integers H,W,C, got {shape!r}")
            set_("image_shape", tuple(shape))
        for name, value in DATASET_DEFAULTS.get(self.dataset, DATASET_DEFAULTS["mnist"]).items():
            if getattr(self, name) is None:
                set_(name, value)
        self._check_optimisation()
        archs = _arch_dicts(self.architectures)
        set_("architectures", archs)
        space = self.search_space()
        set_("space", space.to_dict())
        baseline = self.baseline_architecture()
        set_("baseline", baseline.to_dict())
        self._check_membership(space, baseline)

    def _check_network(self) -> None:
        network = self.network
        if not isinstance(network, ModelSpec):
            raise NasgenError(f"network must be a ModelSpec, got {type(network).__name__}")
        if network.kind not in MODELS:
            raise NasgenError(f"model {network.kind!r} is not one of {', '.join(MODELS)}")
        fixed = [name for name in ("norm", "head", "pooling", "activation")
                 if getattr(network, name) != getattr(_DEFAULT_NETWORK, name)]
        if fixed:
            raise NasgenError(f"a training run uses the default {', '.join(fixed)} of ModelSpec; "
                              f"only {', '.join(_NETWORK_KEYS)} can be set")

    def _check_optimisation(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if self.optimizer not in OPTIMIZERS:
            raise NasgenError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.mixing not in MIXINGS:
            raise NasgenError(f"mixing {self.mixing!r} is not one of {', '.join(MIXINGS)}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NasgenError(f"{name.replace('_', ' ')} must be a positive integer, got {value!r}")
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise NasgenError(f"{name.replace('_', ' ')} must be a positive integer or None, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise NasgenError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise NasgenError(f"learning rate must be a positive number, got {self.learning_rate!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise NasgenError(f"weight decay must be a non-negative number, got {self.weight_decay!r}")
        set_("learning_rate", float(self.learning_rate))
        set_("weight_decay", float(self.weight_decay))

    def _check_membership(self, space: SearchSpace, baseline: Architecture) -> None:
        # Membership is checked before any network is built, so a file of the
        # wrong space fails in one line instead of deep inside a shape error.
        for number, arch in enumerate(self.generated_architectures(), start=1):
            try:
                check_membership(space, arch)
            except ArchitectureError as exc:
                raise ArchitectureError(
                    f"architecture {number} is not in the {self.model} space ({space.describe()}): {exc}"
                ) from None
        if self.model == "chain":
            try:
                check_membership(space, baseline)
            except ArchitectureError as exc:
                raise ArchitectureError(f"the baseline is not in the chain space ({space.describe()}): {exc}") from None
        elif baseline != ORIGINAL_RESNET_ARCH:
            check_membership(space, baseline)

    @property
    def model(self) -> str:
        """The network kind, ``"chain"`` or ``"resnet18"`` (``config.json``'s ``model``)."""
        return self.network.kind

    def search_space(self) -> SearchSpace:
        """The space of the generated architectures (explicit, or the default for model and dataset)."""
        if self.space is not None:
            return self.space if isinstance(self.space, SearchSpace) else space_from_dict(self.space)
        if self.model == "resnet18":
            return resnet_space(self.image_shape or RESNET_INPUT_SHAPE)
        if self.dataset == "digits":
            return DIGITS_SPACE
        raise NasgenError("a chain model on mnist needs an explicit search space (e.g. 28x28 -> 4x4); pass --space")

    def baseline_architecture(self) -> Architecture:
        """c_0 (explicit, or the default for model and dataset)."""
        if self.baseline is not None:
            return self.baseline if isinstance(self.baseline, Architecture) else Architecture.from_dict(self.baseline)
        if self.model == "resnet18":
            return ORIGINAL_RESNET_ARCH
        if self.search_space() == DIGITS_SPACE:
            return DIGITS_BASELINE
        raise NasgenError("a chain run outside the built-in digits space needs a baseline architecture; pass --baseline")

    def generated_architectures(self) -> list[Architecture]:
        """c_1..c_M as Architecture objects."""
        return [Architecture.from_dict(a) for a in self.architectures]

    def model_spec(self, *, in_channels: int, num_classes: int) -> ModelSpec:
        """:attr:`network` completed by the data: every network of the mixture is built from it.

        Args:
            in_channels, num_classes: from the data.

        Raises:
            NasgenError: the data does not fit the model (e.g. ``image_shape``
                disagrees with ``in_channels``).
        """
        network = self.network
        options = {"num_classes": num_classes, "in_channels": in_channels, "bn_momentum": network.bn_momentum,
                   "init_scale": network.init_scale}
        if self.model == "chain":
            return ModelSpec.from_options("chain", width=network.width, **options)
        shape = self.image_shape or (*RESNET_INPUT_SHAPE, in_channels)
        return ModelSpec.from_options("resnet18", width_multiplier=network.width_multiplier, image_shape=shape,
                                      **options)

    @property
    def num_networks(self) -> int:
        """M + 1."""
        return len(self.architectures) + 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``config.json``'s keys); :meth:`from_dict` inverts it."""
        flat = {name: getattr(self, name) for name in _FILE_ORDER if name not in _NETWORK_KEYS}
        flat.update({key: getattr(self.network, field) for key, field in _NETWORK_KEYS.items()})
        data = {name: flat[name] for name in _FILE_ORDER}
        data["architectures"] = [dict(a) for a in self.architectures]
        if self.image_shape is not None:
            data["image_shape"] = list(self.image_shape)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """The config :meth:`to_dict` wrote (``config.json``'s ``config``), or any subset of its keys.

        ``width`` of a resnet18 run and ``width_multiplier`` of a chain run do
        not apply to that kind and are ignored, as they always were.

        Raises:
            NasgenError: ``data`` is not an object of known settings with the
                required ``architectures``, or a setting is invalid.
        """
        if not isinstance(data, dict):
            raise NasgenError(f"training settings must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - set(_FILE_ORDER)
        if unknown:
            raise NasgenError(f"unknown training settings {sorted(map(str, unknown))}; valid: {sorted(_FILE_ORDER)}")
        if "architectures" not in data:
            raise NasgenError("training settings lack \"architectures\"")
        if not isinstance(data["architectures"], (list, tuple)):
            raise NasgenError("\"architectures\" must be a list of architecture objects")
        for name in ("space", "baseline"):
            if data.get(name) is not None and not isinstance(data[name], (dict, SearchSpace, Architecture)):
                raise NasgenError(f"\"{name}\" must be a JSON object, got {type(data[name]).__name__}")
        settings = {name: value for name, value in data.items() if name not in _NETWORK_KEYS}
        return cls(network=network_spec(**{k: v for k, v in data.items() if k in _NETWORK_KEYS}), **settings)

    def step_identity(self) -> str:
        """The settings that determine the compiled training step, as JSON (a cache key).

        Leaves out what only changes initial values, the data's order or
        the run's length (seed, init scale, epochs, data limits, data
        directory, evaluation batch), so runs that differ only there (the
        seeds of ``--seeds``, a longer run) share one compiled step.
        """
        data = self.to_dict()
        for name in _NOT_IN_STEP:
            data.pop(name)
        return json.dumps(data, sort_keys=True)

    def differences(self, other: "TrainConfig") -> list[str]:
        """Names of the settings whose values differ (for error messages)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [k for k in mine if mine[k] != theirs[k]]


def network_spec(model: str = "chain", *, width: int = 16, width_multiplier: float = 1.0,
                 bn_momentum: float = BN_MOMENTUM, init_scale: float | str | None = None) -> ModelSpec:
    """The :attr:`TrainConfig.network` of ``config.json``'s model keys (or the CLI's options of the same names).

    The option of the other kind (``width`` for resnet18, ``width_multiplier``
    for chain) is not used and is left at its default.

    Raises:
        NasgenError: an unknown model or an invalid option (one line).

    >>> network_spec("resnet18", width=8, width_multiplier=0.25).width
    16
    """
    if model not in MODELS:
        raise NasgenError(f"model {model!r} is not one of {', '.join(MODELS)}")
    if isinstance(width_multiplier, bool) or not isinstance(width_multiplier, (int, float)) or not (
            0 < width_multiplier < math.inf):
        raise NasgenError(f"width multiplier must be a positive number, got {width_multiplier!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise NasgenError(f"width must be a positive integer, got {width!r}")
    if isinstance(bn_momentum, bool) or not isinstance(bn_momentum, (int, float)) or not 0 <= bn_momentum < 1:
        raise NasgenError(f"BatchNorm momentum must be in [0, 1), got {bn_momentum!r}")
    if init_scale is not None and init_scale != LECUN and (
            isinstance(init_scale, bool) or not isinstance(init_scale, (int, float))
            or not (init_scale > 0 and math.isfinite(init_scale))):
        raise NasgenError(f"init scale must be a positive number or 'lecun', got {init_scale!r}")
    kind_option = {"width": width} if model == "chain" else {"width_multiplier": float(width_multiplier)}
    return ModelSpec(model, bn_momentum=float(bn_momentum), init_scale=init_scale, **kind_option)


@dataclass(frozen=True)
class RunOptions:
    """How a training run runs, as opposed to what it computes (:class:`TrainConfig`); one object through every layer.

    Nothing here changes a run's numbers, so none of it is part of a run's
    identity: a run resumed with other options continues the same run.

    Args:
        progress: tqdm progress bars on stderr: None lets tqdm decide (bars
            only on a terminal), False never. Without bars every epoch logs
            one line through :mod:`logging` (logger ``nasgen.train.loop``).
        devices: how many local devices share each batch (default all; see
            :func:`nasgen.train.runtime.data_mesh`); must divide the batch size.
        compilation_cache: True for JAX's persistent compilation cache in the
            default directory, a path for another directory, False for none
            (see :func:`nasgen.train.programs.enable_compilation_cache`); None
            (the library's default) turns nothing on but uses the cache the
            process already has (``JAX_COMPILATION_CACHE_DIR`` or
            ``jax.config``), for the stored training step too.
        step_programs: the training step as this many XLA programs (groups of
            networks) plus one for alpha; 1 is one program; None:
            :func:`nasgen.train.runtime.default_step_programs` for the run's
            devices (on a CPU about five networks per program). The same
            numbers to float rounding (see :class:`nasgen.train.step.FusedStep`);
            the number used is recorded in ``config.json``.
        plots: draw the three plots beside the summary, in this format
            (``png``, ``pdf`` or ``svg``; True is PNG) (False: summary and
            log only, e.g. for sweeps; :func:`nasgen.train.report.write_plots`
            draws them later from ``log.jsonl`` and ``summary.json``).
        command: the command line to record in ``config.json``.
        on_epoch_end: called with each epoch's log record once it is committed
            (log record and checkpoint on disk).
        log: where one-line progress messages of the steps around training go
            (an experiment's MNIST download); None: nowhere.

    >>> RunOptions(progress=False, command=["nasgen", "train"]).command
    ('nasgen', 'train')
    """

    progress: bool | None = None
    devices: int | None = None
    compilation_cache: bool | str | os.PathLike | None = None
    step_programs: int | None = None
    plots: bool | str = True
    command: tuple[str, ...] | None = None
    on_epoch_end: Callable[[dict], None] | None = None
    log: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if self.command is not None:
            object.__setattr__(self, "command", tuple(str(part) for part in self.command))


def network_names(config: TrainConfig) -> list[str]:
    """Display names: ``c0 (baseline)``, ``c1``..``cM``."""
    return ["c0 (baseline)"] + [f"c{i}" for i in range(1, config.num_networks)]

def exception_reason(exc: BaseException) -> str:
    """The first line of an exception's message with its type, for one-line errors.

    >>> exception_reason(ValueError("bad value\\nmore detail"))
    'ValueError: bad value'
    """
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
