"""What a network is, without building it: model kinds, options, defaults and validation.

A :class:`ModelSpec` holds every option of a model kind (``"chain"`` or
``"resnet18"``), validated once, in one frozen dataclass that writes itself
to and reads itself from plain JSON. :func:`nasgen.nn.models.build_model` builds
a Flax network from a spec; :func:`nasgen.nn.summary.model_stats` describes one
analytically. This module imports no jax, flax or optax, so the analytic side
(``nasgen show --model ...``) starts fast.

It also holds ResNet-18's geometry: the stem's arithmetic, the stage widths,
and :func:`resnet_space`, the space of the three generated downsampling
layers for an input image shape.

>>> spec = ModelSpec.from_options("resnet18", width_multiplier=0.25, image_shape=(32, 32, 3))
>>> spec.in_channels, spec.input_shape, spec.init_scale
(3, (32, 32), 0.01)
>>> resnet_space((32, 32, 3)).describe()
'8x8 -> 1x1, 3..3 layers, floor, k gt s'
>>> ModelSpec.from_dict(spec.to_dict()) == spec
True
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Sequence

from nasgen.common.errors import NasgenError, SpaceError
from nasgen.space.definition import Architecture, SearchSpace

__all__ = [
    "ModelSpec",
    "MODEL_KINDS",
    "NORMS",
    "HEADS",
    "POOLINGS",
    "ACTIVATIONS",
    "LECUN",
    "BN_MOMENTUM",
    "RESNET_INIT_SCALE",
    "RESNET_STAGE_WIDTHS",
    "RESNET_INPUT_SHAPE",
    "RESNET_SPACE",
    "RESNET_BASELINE_SPACE",
    "ORIGINAL_RESNET_ARCH",
    "RESNET_STEM",
    "resnet_space",
    "resnet_baseline_space",
    "resnet_stem_shape",
    "resnet_min_input_size",
    "resnet_widths",
    "check_resnet_space",
    "check_init_scale",
    "require_spec",
]

MODEL_KINDS = ("chain", "resnet18")
NORMS = ("batch", None)
HEADS = ("logits", "features")
POOLINGS = ("max", "avg")
ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "sigmoid", "elu", "leaky_relu")
"""Names of the chain's activation; :mod:`nasgen.nn.models` maps each to ``flax.nnx``'s function."""

LECUN = "lecun"
"""The ``init_scale`` value for flax's default initialiser (LeCun normal, variance ``1 / fan_in``)."""

BN_MOMENTUM = 0.9
"""Default BatchNorm momentum, everywhere (specs, training runs, the CLI): running = m * running + (1 - m) * batch.

PyTorch's default (its ``momentum=0.1``). Flax's 0.99 still holds about 10% of
the initial statistics after the 234 steps of two MNIST epochs at batch 512,
and the test accuracy measured with those running averages lagged far behind
the training accuracy (0.75; docs/training.md).
"""

RESNET_INIT_SCALE = 0.01
"""Default ``init_scale`` of ResNet-18: kernels start at variance ``0.01 / fan_in``.

Every ResNet convolution is followed by BatchNorm, so its kernel's scale does
not change the function, only how far one optimiser step moves it: Adam's
steps have a size set by the learning rate alone, so a smaller kernel turns
more per step. At the paper's learning rate 1e-4, LeCun-scale kernels train
slowly; see docs/training.md for the measurements. The head gets the same
scale, so the initial logits are near zero.
"""

RESNET_STAGE_WIDTHS = (64, 128, 256, 512)
"""Channel widths of ResNet-18's four stages at width multiplier 1."""

RESNET_INPUT_SHAPE = (28, 28)
"""Default spatial input shape of ResNet-18 (MNIST); the stem maps it to 7x7."""

RESNET_STEM = {"conv": (7, 2, 3), "pool": (3, 2, 1)}
"""ResNet-18's stem as (window, stride, padding per side): a 7x7 stride-2 conv
padded by 3, then a 3x3 stride-2 max pool padded by 1."""

ORIGINAL_RESNET_ARCH = Architecture(kernel=((1, 1),) * 3, stride=((2, 2),) * 3)
"""The paper's "original" ResNet-18 (c_0): (k, s) = (1, 2) in all three blocks (7 -> 4 -> 2 -> 1 on MNIST)."""

_RESNET_LAYERS = 3


def _check_int(value: Any, what: str, minimum: int = 1) -> int:
    # bool is an int subclass and floats such as 1e30 are not sizes: refuse both.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise NasgenError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_real(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise NasgenError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _check_choice(value: Any, valid: Sequence, what: str) -> Any:
    # `in` on a tuple with None compares with ==, so a value such as 1.0 or
    # a numpy array could match oddly; compare by type and value.
    for option in valid:
        if type(value) is type(option) and value == option:
            return option
    shown = ", ".join(repr(v) for v in valid)
    raise NasgenError(f"{what} {value!r} is not one of {shown}")


def _padded_window_size(size: int, window: int, stride: int, pad: int) -> int:
    # floor((x + 2p - w) / s) + 1, the size after a padded conv or pool
    return (size + 2 * pad - window) // stride + 1


def resnet_stem_shape(image_shape: Sequence[int]) -> tuple[int, int]:
    """Spatial size after ResNet-18's stem (conv 7/2 pad 3, max pool 3/2 pad 1).

    Args:
        image_shape: ``(H, W)`` or ``(H, W, C)``.

    Returns:
        ``(H', W')``, the size entering the first stage; each is
        ``ceil(ceil(x / 2) / 2)``.

    >>> resnet_stem_shape((224, 224, 3))
    (56, 56)
    """
    return tuple(_stem_size(size) for size in _spatial(image_shape))


def _stem_size(size: int) -> int:
    for window, stride, pad in RESNET_STEM.values():
        size = _padded_window_size(size, window, stride, pad)
    return size


def _original_sizes(size: int) -> list[int]:
    # Sizes entering and leaving the original blocks (k, s) = (1, 2): ceil(x / 2) each time.
    sizes = [size]
    for _ in range(_RESNET_LAYERS):
        sizes.append((sizes[-1] - 1) // 2 + 1)
    return sizes


def _original_output(size: int) -> int:
    return _original_sizes(size)[-1]


def resnet_min_input_size() -> int:
    """Smallest image side ResNet-18 takes here.

    Two conditions set it: the original blocks' stride 2 must not exceed
    the size it is applied to (a space's rule, so that the original network
    is a member of :func:`resnet_baseline_space`), and the generated space
    (k > s) must not be empty; every valid-padding layer with k > s shrinks
    its input by at least 1, so the stem must leave the original output plus
    at least 3.

    >>> resnet_min_input_size()
    17
    """
    size = 1
    while True:
        stem = _stem_size(size)
        sizes = _original_sizes(stem)
        if min(sizes[:-1]) >= 2 and stem - sizes[-1] >= _RESNET_LAYERS:
            return size
        size += 1


def _spatial(image_shape: Any) -> tuple[int, ...]:
    if isinstance(image_shape, (str, bytes)) or not isinstance(image_shape, Sequence):
        raise NasgenError(f"image shape must be (H, W) or (H, W, C), got {image_shape!r}")
    values = tuple(image_shape)
    if len(values) not in (2, 3):
        raise NasgenError(f"image shape must be (H, W) or (H, W, C), got {image_shape!r}")
    for v in values:
        _check_int(v, "image shape entries")
    return values[:2]


def resnet_space(image_shape: Sequence[int] = RESNET_INPUT_SHAPE, *, relation: str = "gt") -> SearchSpace:
    """The space of ResNet-18's three generated downsampling layers for an input shape.

    The space runs from the size entering the first downsampling stage (after
    the stem and stage 1) to the size the original network leaves its last
    stage with, in exactly three floor-rounded valid-padding layers, per
    spatial dimension.

    Args:
        image_shape: ``(H, W)`` or ``(H, W, C)``; channels do not matter.
        relation: ``"gt"`` (k > s, the paper's sampled space) or ``"any"``
            (also admits the original (1, 2) blocks).

    Returns:
        The :class:`~nasgen.space.definition.SearchSpace`.

    Raises:
        NasgenError: if the image is smaller than :func:`resnet_min_input_size`
            on a side, or the shape is malformed.

    >>> resnet_space((224, 224)).describe()
    '56x56 -> 7x7, 3..3 layers, floor, k gt s'
    """
    spatial = _spatial(image_shape)
    minimum = resnet_min_input_size()
    if min(spatial) < minimum:
        raise NasgenError(
            f"ResNet-18 needs images of at least {minimum}x{minimum} (its stem divides each side by 4 and "
            f"its three downsampling stages need at least 5x5 after it), got {'x'.join(map(str, spatial))}"
        )
    stem = resnet_stem_shape(spatial)
    return SearchSpace(
        stem,
        tuple(_original_output(s) for s in stem),
        min_layers=_RESNET_LAYERS,
        max_layers=_RESNET_LAYERS,
        rounding="floor",
        relation=relation,
    )


def resnet_baseline_space(image_shape: Sequence[int] = RESNET_INPUT_SHAPE) -> SearchSpace:
    """:func:`resnet_space` without the kernel/stride relation, so the original (1, 2) is a member."""
    return resnet_space(image_shape, relation="any")


RESNET_SPACE = resnet_space(RESNET_INPUT_SHAPE)
"""The generated downsampling space for MNIST (28x28): 7x7 -> 1x1 in three layers, floor, k > s.

The relation is ``"gt"`` (k > s) as in the paper's code, so a sampled block
never skips input elements; the baseline (1, 2) is therefore not a member
(see :data:`RESNET_BASELINE_SPACE`). Other inputs: :func:`resnet_space`.
"""

RESNET_BASELINE_SPACE = resnet_baseline_space(RESNET_INPUT_SHAPE)
"""RESNET_SPACE without the kernel/stride relation: it admits the original (1, 2)."""


def check_resnet_space(space: SearchSpace, input_shape: Sequence[int]) -> None:
    """Refuse a space that is not the downsampling space of ResNet-18 for ``input_shape``.

    Any relation and any kernel or stride bounds are allowed; the shapes,
    the three layers, floor rounding and no pooling are what the network
    needs.

    Raises:
        SpaceError: naming the space the input needs.
    """
    expected = resnet_space(input_shape)
    fits = (
        space.input_shape == expected.input_shape
        and space.output_shape == expected.output_shape
        and space.min_layers == space.max_layers == _RESNET_LAYERS
        and space.rounding == "floor"
        and space.pool is None
    )
    if not fits:
        raise SpaceError(
            f"a resnet18 model on {'x'.join(map(str, input_shape))} input needs a "
            f"{expected.describe()} space without pooling (nasgen.nn.spec.resnet_space), got {space.describe()}"
        )


def check_init_scale(value: Any) -> float | str:
    """The one encoding of a kernel initialisation: :data:`LECUN` or a finite positive float.

    Raises:
        NasgenError: for anything else (None included: a spec resolves None
            to its kind's default before calling this).
    """
    if isinstance(value, str) and value == LECUN:
        return LECUN
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise NasgenError(f"init_scale must be a finite positive number or {LECUN!r}, got {value!r}")
    return float(value)


def resnet_widths(width_multiplier: float) -> tuple[int, ...]:
    """Channel widths of the four ResNet-18 stages for a width multiplier.

    Each width is ``max(1, round(w * width_multiplier))``; the stem has the
    first stage's width.

    Raises:
        NasgenError: for a multiplier that is not a finite positive number.

    >>> resnet_widths(0.25)
    (16, 32, 64, 128)
    """
    multiplier = _check_real(width_multiplier, "width_multiplier")
    if not multiplier > 0:
        raise NasgenError(f"width_multiplier must be a positive number, got {width_multiplier!r}")
    return tuple(max(1, int(round(w * multiplier))) for w in RESNET_STAGE_WIDTHS)


_CHAIN_ONLY = ("width", "norm", "head", "pooling", "activation")
_RESNET_ONLY = ("width_multiplier", "input_shape")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Every option of one network, validated; a model is (spec, space, architecture, seed).

    Build one with :meth:`from_options` (which fills the kind's defaults and
    refuses options of the other kind) or :meth:`from_dict`.

    Args:
        kind: ``"chain"`` (a chain of valid-padding convolutions, one per layer
            of the architecture) or ``"resnet18"`` (ResNet-18 whose three
            downsampling blocks take the architecture).
        num_classes: logits of the head.
        in_channels: channels of the input image.
        width: channels of every chain convolution (chain only).
        norm: ``"batch"`` for BatchNorm after each chain convolution, or None
            (chain only; ResNet-18 always uses BatchNorm).
        head: ``"logits"`` (flatten and one linear layer) or ``"features"``
            (return the feature map) (chain only).
        pooling: ``"max"`` or ``"avg"``, the window op of the space's pool
            (chain only).
        activation: one of :data:`ACTIVATIONS` (chain only; ResNet uses relu).
        width_multiplier: scales ResNet-18's stage widths 64, 128, 256, 512
            (see :func:`resnet_widths`) (resnet18 only).
        input_shape: ResNet-18's spatial input ``(H, W)``; None for chains,
            whose input is their space's input shape.
        bn_momentum: BatchNorm running-average momentum in [0, 1) (see
            :data:`BN_MOMENTUM`).
        init_scale: kernel initialisation of every convolution and dense
            layer: :data:`LECUN` (flax's LeCun normal) or a finite positive
            number s, a uniform draw of variance ``s / fan_in``. None (the
            default) is the kind's default, stored resolved: :data:`LECUN`
            for chains, :data:`RESNET_INIT_SCALE` for resnet18.

    Raises:
        NasgenError: for any invalid option, in one line.
    """

    kind: str
    num_classes: int = 10
    in_channels: int = 1
    width: int = 16
    norm: str | None = "batch"
    head: str = "logits"
    pooling: str = "max"
    activation: str = "relu"
    width_multiplier: float = 1.0
    input_shape: tuple[int, ...] | None = None
    bn_momentum: float = BN_MOMENTUM
    init_scale: float | str | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        _check_choice(self.kind, MODEL_KINDS, "model kind")
        set_("num_classes", _check_int(self.num_classes, "num_classes"))
        set_("in_channels", _check_int(self.in_channels, "in_channels"))
        set_("width", _check_int(self.width, "width"))
        set_("norm", _check_choice(self.norm, NORMS, "norm"))
        set_("head", _check_choice(self.head, HEADS, "head"))
        set_("pooling", _check_choice(self.pooling, POOLINGS, "pooling"))
        set_("activation", _check_choice(self.activation, ACTIVATIONS, "activation"))
        resnet_widths(self.width_multiplier)
        set_("width_multiplier", float(self.width_multiplier))
        momentum = _check_real(self.bn_momentum, "bn_momentum")
        if not 0 <= momentum < 1:
            raise NasgenError(f"bn_momentum must be a number in [0, 1), got {self.bn_momentum!r}")
        set_("bn_momentum", momentum)
        if self.init_scale is None:
            set_("init_scale", LECUN if self.kind == "chain" else RESNET_INIT_SCALE)
        set_("init_scale", check_init_scale(self.init_scale))
        if self.kind == "chain":
            if self.input_shape is not None:
                raise NasgenError("input_shape applies to resnet18 only; a chain's input is its space's input shape")
        else:
            shape = RESNET_INPUT_SHAPE if self.input_shape is None else _spatial(self.input_shape)
            resnet_space(shape)  # refuses an image too small for the stem
            set_("input_shape", tuple(int(s) for s in shape))

    @classmethod
    def from_options(cls, kind: str, *, image_shape: Sequence[int] | None = None, **options: Any) -> "ModelSpec":
        """A spec of ``kind`` with the kind's defaults for every option not given.

        Args:
            kind: ``"chain"`` or ``"resnet18"``.
            image_shape: resnet18 only: ``(H, W)`` or ``(H, W, C)``; sets
                ``input_shape`` (and ``in_channels`` when C is given).
            **options: fields of :class:`ModelSpec`.

        Raises:
            NasgenError: for an unknown option, an option of the other kind
                with a non-default value, or an invalid value.

        >>> ModelSpec.from_options("chain", width=8).init_scale
        'lecun'
        """
        _check_choice(kind, MODEL_KINDS, "model kind")
        known = {f.name for f in dataclasses.fields(cls)} - {"kind"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise NasgenError(f"unknown model options {unknown}; valid: {sorted(known)}")
        if image_shape is not None:
            if kind != "resnet18":
                raise NasgenError("image_shape applies to resnet18 only; a chain's input is its space's input shape")
            spatial = _spatial(image_shape)
            if "input_shape" in options and tuple(options["input_shape"]) != spatial:
                raise NasgenError(f"image_shape {tuple(image_shape)} disagrees with input_shape {options['input_shape']}")
            options["input_shape"] = spatial
            if len(tuple(image_shape)) == 3:
                channels = tuple(image_shape)[2]
                if options.get("in_channels", channels) != channels:
                    raise NasgenError(
                        f"image_shape {tuple(image_shape)} disagrees with in_channels {options['in_channels']}"
                    )
                options["in_channels"] = channels
        other = _RESNET_ONLY if kind == "chain" else _CHAIN_ONLY
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        stray = sorted(name for name in other if name in options and options[name] != defaults[name])
        if stray:
            raise NasgenError(f"options {stray} do not apply to {kind} models")
        return cls(kind, **options)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field; :meth:`from_dict` inverts it."""
        data = dataclasses.asdict(self)
        if data["input_shape"] is not None:
            data["input_shape"] = list(data["input_shape"])
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "ModelSpec":
        """The spec of a :meth:`to_dict` dict (e.g. read back from JSON).

        Raises:
            NasgenError: for a non-dict, a missing kind, unknown keys or invalid values.
        """
        if not isinstance(data, dict) or "kind" not in data:
            raise NasgenError(f"a model spec must be an object with a 'kind', got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise NasgenError(f"unknown model spec keys {unknown}; valid: {sorted(known)}")
        values = dict(data)
        if isinstance(values.get("input_shape"), list):
            values["input_shape"] = tuple(values["input_shape"])
        return cls(**values)

    def replace(self, **changes: Any) -> "ModelSpec":
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def default_space(self) -> SearchSpace | None:
        """resnet18: :func:`resnet_space` of the input shape; chain: None (chains need a space)."""
        return resnet_space(self.input_shape) if self.kind == "resnet18" else None

    def image_shape(self, space: SearchSpace | None = None) -> tuple[int, ...]:
        """The input of one example, ``(*spatial, in_channels)``; a chain takes its spatial shape from ``space``."""
        if self.kind == "resnet18":
            return (*self.input_shape, self.in_channels)
        if space is None:
            raise NasgenError("a chain model needs a search space for its input shape")
        return (*space.input_shape, self.in_channels)

    def describe(self) -> str:
        """One line naming the kind and the options that set its size."""
        if self.kind == "chain":
            return f"ConvChain, width {self.width}"
        return (
            f"ResNet18 on {'x'.join(map(str, self.input_shape))}x{self.in_channels}, "
            f"stage widths {', '.join(map(str, resnet_widths(self.width_multiplier)))}"
        )


def require_spec(spec: Any, what: str) -> ModelSpec:
    """``spec`` if it is a :class:`ModelSpec`, else a one-line error naming ``what`` needed it.

    Raises:
        NasgenError: ``spec`` is not a ModelSpec (a kind name of the older call forms, say).

    >>> require_spec("chain", "build_model")
    Traceback (most recent call last):
    ...
    nasgen.common.errors.NasgenError: build_model takes a ModelSpec first (ModelSpec.from_options('chain', ...)), got str
    """
    if not isinstance(spec, ModelSpec):
        hint = f"ModelSpec.from_options({spec!r}, ...)" if isinstance(spec, str) else "ModelSpec.from_options(kind, ...)"
        raise NasgenError(f"{what} takes a ModelSpec first ({hint}), got {type(spec).__name__}")
    return spec