"""Train M+1 networks as one softmax mixture (Calhas et al. 2022, Eq. 3) in one jitted step.

The mixture's prediction is ``y_hat = sum_i softmax(alpha)_i * c_i(x)`` over the
baseline c_0 and the generated networks c_1..c_M. Gradients are the paper's
"zero-order" ones (Liu et al. 2018, DARTS first-order setting as the paper
describes it):

* alpha moves along ``grad_alpha NLL(y, y_hat)``;
* each network's weights w_i move along ``grad_{w_i} NLL(y, c_i(x))``, its own
  loss only: the networks' outputs enter the mixture through
  ``stop_gradient``, so no gradient reaches w_i through y_hat.

Both come out of one ``nnx.grad`` of ``NLL(y, y_hat) + sum_i NLL(y, c_i(x))``,
and one :func:`train_step` under ``nnx.jit`` updates every network and alpha
(a Python-unrolled sum over the networks: they differ in shape, so ``vmap``
cannot batch them).

:class:`TrainingRun` owns an output directory (config, JSONL log, orbax
checkpoints, reports) and resumes a killed run bit for bit.

References:
    Calhas, Manquinho, Lynce. Automatic Generation of Neural Architecture
    Search Spaces. 2022, sections 5.3 and 6.3.
    Liu, Simonyan, Yang. DARTS: Differentiable Architecture Search. ICLR 2019.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import functools
import hashlib
import json
import logging
import math
import os
import pickle
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nasgen.train import report
from nasgen.common.atomic import signals_deferred
from nasgen.train.data import Dataset, batches, load_dataset
from nasgen.nn.models import build_model
from nasgen.nn.spec import ORIGINAL_RESNET_ARCH, RESNET_INIT_SCALE, RESNET_INPUT_SHAPE, ModelSpec, resnet_space
from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.space.definition import Architecture, SearchSpace, check_membership
from nasgen.common.errors import RunError

if TYPE_CHECKING:
    from jax.sharding import Mesh

__all__ = [
    "TrainConfig",
    "Mixture",
    "TrainingRun",
    "DIGITS_SPACE",
    "DIGITS_BASELINE",
    "DATASET_DEFAULTS",
    "MIXINGS",
    "OPTIMIZERS",
    "build_mixture",
    "create_mixture",
    "network_seeds",
    "build_optimizer",
    "kernel_mask",
    "mixture_losses",
    "mixture_gradients",
    "train_step",
    "FusedStep",
    "clear_step_programs",
    "default_step_programs",
    "eval_step",
    "evaluate",
    "train",
    "train_seeds",
    "read_config",
    "resume_epoch",
    "estimate_training_memory",
    "enable_compilation_cache",
    "data_mesh",
    "maybe_initialize_distributed",
    "network_table",
    "network_names",
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

CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".nasgen.lock"

logger = logging.getLogger("nasgen.train.run")


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
        raise NasgenError(f"invalid search space ({_reason(exc)})") from None


def _arch_dicts(archs: Sequence[Architecture | dict]) -> tuple[dict, ...]:
    out = []
    for a in archs:
        arch = a if isinstance(a, Architecture) else Architecture.from_dict(a)
        out.append(arch.to_dict())
    return tuple(out)


_NOT_IN_STEP = ("seed", "init_scale", "epochs", "train_limit", "test_limit", "data_dir", "eval_batch_size")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one mixture-training run; written to ``config.json`` beside its outputs.

    Args:
        architectures: the generated architectures c_1..c_M (Architecture or
            their dicts); stored as dicts so the config is plain JSON.
        model: ``"chain"`` (a :class:`~nasgen.nn.models.ConvChain` per
            architecture) or ``"resnet18"`` (a ResNet-18 whose three
            downsampling blocks take each architecture).
        dataset: ``"digits"`` (bundled 8x8), ``"mnist"``, or the path of an
            ``.npz`` with ``x_train, y_train, x_test, y_test`` (any image
            shape and class count; the paper's MNIST settings by default).
        image_shape: resnet18's input ``(H, W, C)``; None is MNIST's
            28x28x1. Its downsampling space is
            :func:`~nasgen.nn.spec.resnet_space` of it.
        space: the search space the architectures belong to (dict form); None
            picks :data:`DIGITS_SPACE` for chain runs on digits and
            :data:`~nasgen.nn.models.RESNET_SPACE` for resnet18.
        baseline: c_0; None picks :data:`~nasgen.nn.models.ORIGINAL_RESNET_ARCH`
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
        width: channels of every chain convolution.
        width_multiplier: ResNet-18 stage-width multiplier.
        seed: initialisation and data-order seed.
        data_dir: where MNIST lives (see :func:`nasgen.train.data.load_mnist`).
        train_limit, test_limit: use only the first n training / test images
            (None: all); for smoke runs and tests.
        eval_batch_size: images per evaluation step.
        bn_momentum: BatchNorm running-average momentum (new = m * old + (1 -
            m) * batch). 0.9 is PyTorch's default (its ``momentum=0.1``); Flax's
            0.99 still holds ~10% of the initial statistics after the 234 steps
            of two MNIST epochs at batch 512, and the test accuracy measured
            with those running averages lags far behind the training accuracy.
        init_scale: kernel initialisation of every conv and dense layer: a
            number s draws kernels uniformly with variance ``s / fan_in``;
            ``"lecun"`` is flax's LeCun normal; None picks the model's
            default (``"lecun"`` for chains,
            :data:`~nasgen.nn.models.RESNET_INIT_SCALE` = 0.01 for resnet18,
            which trains far faster at the paper's learning rate).

    Raises:
        NasgenError: for any invalid setting (one-line message).
    """

    architectures: tuple[dict, ...]
    model: str = "chain"
    dataset: str = "digits"
    space: dict | None = None
    baseline: dict | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    weight_decay: float | None = None
    optimizer: str = "adam-l2"
    mixing: str = "logits"
    width: int = 16
    width_multiplier: float = 1.0
    seed: int = 42
    data_dir: str | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    eval_batch_size: int = 1000
    bn_momentum: float = 0.9
    init_scale: float | str | None = None
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if self.model not in MODELS:
            raise NasgenError(f"model {self.model!r} is not one of {', '.join(MODELS)}")
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
        if self.optimizer not in OPTIMIZERS:
            raise NasgenError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.mixing not in MIXINGS:
            raise NasgenError(f"mixing {self.mixing!r} is not one of {', '.join(MIXINGS)}")
        for name in ("epochs", "batch_size", "width", "eval_batch_size"):
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
        if not (isinstance(self.width_multiplier, (int, float)) and not isinstance(self.width_multiplier, bool)
                and 0 < self.width_multiplier < math.inf):
            raise NasgenError(f"width multiplier must be a positive number, got {self.width_multiplier!r}")
        set_("learning_rate", float(self.learning_rate))
        set_("weight_decay", float(self.weight_decay))
        set_("width_multiplier", float(self.width_multiplier))
        if not (isinstance(self.bn_momentum, (int, float)) and 0 <= self.bn_momentum < 1):
            raise NasgenError(f"BatchNorm momentum must be in [0, 1), got {self.bn_momentum!r}")
        set_("bn_momentum", float(self.bn_momentum))
        if self.init_scale is None:
            set_("init_scale", "lecun" if self.model == "chain" else RESNET_INIT_SCALE)
        if self.init_scale != "lecun":
            value = self.init_scale
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
                raise NasgenError(f"init scale must be a positive number or 'lecun', got {value!r}")
            set_("init_scale", float(value))
        archs = _arch_dicts(self.architectures)
        set_("architectures", archs)
        space = self.search_space()
        set_("space", space.to_dict())
        baseline = self.baseline_architecture()
        set_("baseline", baseline.to_dict())
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
        """The :class:`~nasgen.nn.spec.ModelSpec` every network of the mixture is built from.

        Args:
            in_channels, num_classes: from the data.

        Raises:
            NasgenError: the data does not fit the model (e.g. ``image_shape``
                disagrees with ``in_channels``).
        """
        options = {"num_classes": num_classes, "in_channels": in_channels, "bn_momentum": self.bn_momentum,
                   "init_scale": self.init_scale}
        if self.model == "chain":
            return ModelSpec.from_options("chain", width=self.width, **options)
        shape = self.image_shape or (*RESNET_INPUT_SHAPE, in_channels)
        return ModelSpec.from_options("resnet18", width_multiplier=self.width_multiplier, image_shape=shape, **options)

    @property
    def num_networks(self) -> int:
        """M + 1."""
        return len(self.architectures) + 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it."""
        data = dataclasses.asdict(self)
        data["architectures"] = [dict(a) for a in self.architectures]
        if self.image_shape is not None:
            data["image_shape"] = list(self.image_shape)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """The config :meth:`to_dict` wrote.

        Raises:
            NasgenError: ``data`` is not an object of known settings with the
                required ``architectures``, or a setting is invalid.
        """
        if not isinstance(data, dict):
            raise NasgenError(f"training settings must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise NasgenError(f"unknown training settings {sorted(map(str, unknown))}; valid: {sorted(known)}")
        if "architectures" not in data:
            raise NasgenError("training settings lack \"architectures\"")
        if not isinstance(data["architectures"], (list, tuple)):
            raise NasgenError("\"architectures\" must be a list of architecture objects")
        for name in ("space", "baseline"):
            if data.get(name) is not None and not isinstance(data[name], (dict, SearchSpace, Architecture)):
                raise NasgenError(f"\"{name}\" must be a JSON object, got {type(data[name]).__name__}")
        return cls(**data)

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


# -- the mixture ----------------------------------------------------------------


class Mixture(nnx.Module):
    """M+1 networks and their mixture weights alpha.

    Args:
        networks: c_0..c_M, each mapping ``(batch, ...)`` to ``(batch, classes)`` logits.
        mixing: ``"logits"`` or ``"probabilities"`` (see :func:`mixture_losses`).

    alpha starts at zero: every network starts with weight 1 / (M+1).
    """

    def __init__(self, networks: Sequence[nnx.Module], *, mixing: str = "logits") -> None:
        if mixing not in MIXINGS:
            raise NasgenError(f"mixing {mixing!r} is not one of {', '.join(MIXINGS)}")
        if not networks:
            raise NasgenError("a mixture needs at least one network")
        self.networks = nnx.List(list(networks))
        self.alpha = nnx.Param(jnp.zeros((len(networks),), jnp.float32))
        self.mixing = mixing

    def __call__(self, x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        """The mixed output and each network's logits.

        Returns:
            ``(mixed, logits)``: ``mixed`` is ``(batch, classes)`` log-scores of
            the mixture (mixed logits, or log of mixed probabilities);
            ``logits`` the list of per-network ``(batch, classes)`` logits.
        """
        logits = [network(x) for network in self.networks]
        return mix(self.alpha[...], logits, self.mixing), logits


def mix(alpha: jax.Array, logits: Sequence[jax.Array], mixing: str) -> jax.Array:
    """Eq. 3: the softmax(alpha)-weighted combination, as scores whose argmax is the prediction.

    Args:
        alpha: ``(M+1,)`` mixture weights (before softmax).
        logits: M+1 arrays ``(batch, classes)``.
        mixing: ``"logits"`` returns ``sum_i w_i * logits_i``;
            ``"probabilities"`` returns ``log sum_i w_i * softmax(logits_i)``.

    Returns:
        ``(batch, classes)``; cross-entropy of it (after log-softmax, which is
        the identity for the probabilities variant) is the mixture's NLL.
    """
    stacked = jnp.stack(list(logits))  # (M+1, batch, classes)
    if mixing == "logits":
        return jnp.einsum("m,mbc->bc", jax.nn.softmax(alpha), stacked)
    # log sum_i w_i p_i, in log space so that tiny probabilities do not underflow.
    log_weights = jax.nn.log_softmax(alpha)[:, None, None]
    return jax.nn.logsumexp(log_weights + jax.nn.log_softmax(stacked, axis=-1), axis=0)


def mixture_losses(
    alpha: jax.Array, logits: Sequence[jax.Array], labels: jax.Array, mixing: str
) -> tuple[jax.Array, jax.Array]:
    """The two losses of the zero-order scheme.

    Args:
        alpha: ``(M+1,)`` mixture weights.
        logits: M+1 arrays ``(batch, classes)``, each network's logits.
        labels: ``(batch,)`` integer labels.
        mixing: ``"logits"`` or ``"probabilities"``.

    Returns:
        ``(mixture_loss, network_losses)``: the mean NLL of the mixture, a
        function of alpha only (the logits pass through ``stop_gradient``), and
        the ``(M+1,)`` mean NLL of each network on its own.
    """
    frozen = [jax.lax.stop_gradient(l) for l in logits]
    mixed = mix(alpha, frozen, mixing)
    mixture_loss = optax.softmax_cross_entropy_with_integer_labels(mixed, labels).mean()
    network_losses = jnp.stack(
        [optax.softmax_cross_entropy_with_integer_labels(l, labels).mean() for l in logits]
    )
    return mixture_loss, network_losses


def kernel_mask(params: Any) -> Any:
    """True for conv and dense kernels (the leaves named ``kernel``), False elsewhere.

    Biases, BatchNorm scales and alpha are not decayed: the paper's code puts
    its L2 penalty on kernels only.
    """

    def is_kernel(path, _):
        names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
        return "kernel" in names

    return jax.tree_util.tree_map_with_path(is_kernel, params)


@functools.lru_cache(maxsize=32)
def build_optimizer(optimizer: str, learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    """The optimiser for all networks and alpha, from optax pieces.

    The same settings return the same (stateless) transformation object, so
    that two mixtures created with them have equal nnx graphs and share
    compiled steps (:class:`FusedStep`).

    Args:
        optimizer: ``"adam-l2"``: ``add_decayed_weights`` (the gradient of an
            L2 penalty ``weight_decay/2 * |w|^2``) on kernels, then Adam;
            ``"adamw"``: Adam with decoupled weight decay on kernels.
        learning_rate: Adam's step size.
        weight_decay: penalty / decay coefficient (0 disables it).
    """
    if optimizer == "adam-l2":
        return optax.chain(optax.add_decayed_weights(weight_decay, mask=kernel_mask), optax.adam(learning_rate))
    if optimizer == "adamw":
        return optax.adamw(learning_rate, weight_decay=weight_decay, mask=kernel_mask)
    raise NasgenError(f"optimizer {optimizer!r} is not one of {', '.join(OPTIMIZERS)}")


def build_mixture(config: TrainConfig, *, in_channels: int = 1, num_classes: int = 10,
                  seeds: jax.Array | None = None) -> Mixture:
    """c_0 (the baseline) then c_1..c_M, each initialised from its own seed.

    Every network is built from :meth:`TrainConfig.model_spec` (which carries
    ``config.bn_momentum`` and ``config.init_scale``); network i is
    initialised with ``nnx.Rngs`` seeded from ``(config.seed, i)`` (see
    :func:`network_seeds`) so that its initial weights do not depend on the
    other networks.

    Args:
        seeds: the ``(M+1,)`` seeds to use instead of ``network_seeds(config)``
            (an array, so that under a jit the seed is an input rather than a
            constant of the program).
    """
    space = config.search_space()
    spec = config.model_spec(in_channels=in_channels, num_classes=num_classes)
    archs = [config.baseline_architecture(), *config.generated_architectures()]
    if seeds is None:
        seeds = jnp.asarray(network_seeds(config))
    networks = [
        _build_network(spec, space, arch, jax.random.key(seeds[i], impl="rbg")) for i, arch in enumerate(archs)
    ]
    return Mixture(networks, mixing=config.mixing)


def network_seeds(config: TrainConfig) -> np.ndarray:
    """``(M+1,)`` uint32: network i's seed, drawn from ``SeedSequence([config.seed, i])``."""
    count = 1 + len(config.architectures)
    return np.array([np.random.SeedSequence([config.seed, i]).generate_state(1)[0] for i in range(count)], np.uint32)


@functools.partial(nnx.jit, static_argnums=(0, 1, 2))
def _build_network(spec: ModelSpec, space: SearchSpace, arch: Architecture, key: jax.Array) -> nnx.Module:
    """One network of :func:`build_mixture`, initialised by a jitted program of its own.

    The program is keyed by the network's structure (``spec``, ``space``,
    ``arch``) and takes the key as an input: networks of the same structure
    and every seed share it, and JAX's persistent cache keeps it. Traced in
    one piece with the other networks, every parameter a network set made
    JAX walk the whole trace so far (the same cost as in
    :func:`_network_gradients`), so building the mixture grew quadratically
    with the number of networks.
    """
    return build_model(spec, space, arch, rngs=nnx.Rngs(key))


def mixture_gradients(mixture: Mixture, images: jax.Array, labels: jax.Array):
    """Gradients of the zero-order scheme for every network and alpha.

    Network i's weights get ``grad NLL(y, c_i(x))``, its own loss; alpha gets
    ``grad_alpha NLL(y, y_hat)`` with the networks' logits held fixed
    (``stop_gradient``). This is the gradient of ``NLL(y, y_hat) + sum_i
    NLL(y, c_i(x))`` with stopped logits in y_hat, computed network by
    network: each network's forward and backward pass run before the next
    network starts (an ``optimization_barrier`` orders them). Computed
    jointly, XLA ran every forward pass first and the fused step was slower
    on a CPU than stepping the networks one by one; ordered, it is faster
    (see docs/training.md). XLA's CPU backend still gives every network its
    own scratch buffers (about 109 MB per width-1/4 ResNet at batch 512, by
    ``memory_analysis``), barrier or not.

    Args:
        mixture: the networks and alpha (train mode updates BatchNorm statistics).
        images: ``(batch, *spatial, channels)``.
        labels: ``(batch,)`` integers.

    Returns:
        ``(grads, (mixture_loss, network_losses))`` with ``grads`` an
        ``nnx.State`` shaped like ``nnx.state(mixture, nnx.Param)``.
    """
    logits, losses, network_grads = [], [], []
    inputs = images
    for network in mixture.networks:
        (loss, z), grads = _network_gradients(network, inputs, labels)
        logits.append(z)
        losses.append(loss)
        network_grads.append(grads)
        # The next network's input passes through a barrier with this
        # network's gradients, so its work cannot start before they exist.
        inputs, _ = jax.lax.optimization_barrier((inputs, jax.tree.leaves(grads)))

    def alpha_loss(model: Mixture):
        return mixture_losses(model.alpha[...], logits, labels, model.mixing)[0]

    mixture_loss, grads = nnx.value_and_grad(alpha_loss)(mixture)
    for i, network_grad in enumerate(network_grads):
        grads["networks"][i] = network_grad
    return grads, (mixture_loss, jnp.stack(losses))


@nnx.jit
def _network_gradients(network: nnx.Module, images: jax.Array, labels: jax.Array):
    """``((loss, logits), grads)`` of one network's own cross-entropy.

    Jitted on its own, so that inside the fused step each network is traced
    into a sub-program of its own (XLA inlines it; the compiled step is the
    same). Traced in one piece, every BatchNorm statistics update made JAX
    walk the whole step's trace so far (flax's ``Variable.set_value`` asks a
    tracer for ``.sharding``, whose error message searches the trace for the
    value's origin), so tracing grew quadratically with the number of networks.
    """

    def own_loss(model):
        z = model(images)
        return optax.softmax_cross_entropy_with_integer_labels(z, labels).mean(), z

    return nnx.value_and_grad(own_loss, has_aux=True)(network)


@nnx.jit
def train_step(mixture: Mixture, optimizer: nnx.Optimizer, images: jax.Array, labels: jax.Array):
    """One optimisation step of all M+1 networks and alpha (one XLA program).

    Args:
        mixture: in train mode (BatchNorm uses and updates batch statistics).
        optimizer: ``nnx.Optimizer`` over ``nnx.Param`` of ``mixture``.
        images: ``(batch, *spatial, channels)`` float32.
        labels: ``(batch,)`` int32.

    Returns:
        ``(mixture_loss, network_losses (M+1,))`` before the update.
    """
    grads, (mixture_loss, network_losses) = mixture_gradients(mixture, images, labels)
    optimizer.update(mixture, grads)
    return mixture_loss, network_losses


@nnx.jit
def eval_step(mixture: Mixture, images: jax.Array, labels: jax.Array, valid: jax.Array):
    """Correct predictions in one (possibly padded) evaluation batch.

    Args:
        mixture: in eval mode (BatchNorm running averages).
        images, labels: one batch.
        valid: ``(batch,)`` bool, False on padding rows.

    Returns:
        ``(network_correct (M+1,), mixture_correct)`` int32 counts.
    """
    return _correct(mixture, images, labels, valid)


def _correct(mixture: Mixture, images: jax.Array, labels: jax.Array, valid: jax.Array):
    mixed, logits = mixture(images)
    hits = [((jnp.argmax(l, -1) == labels) & valid).sum() for l in logits]
    return jnp.stack(hits), ((jnp.argmax(mixed, -1) == labels) & valid).sum()


_EVAL_PROGRAMS: "collections.OrderedDict[tuple, Callable]" = collections.OrderedDict()


def _eval_program(graphdef: Any, options: dict[str, Any]) -> Callable:
    """:func:`eval_step` for mixtures of ``graphdef``, as a jitted function of their state, compiled with ``options``.

    Kept for the process's last :data:`STEPS_KEPT` graphs, so that every
    epoch's evaluation calls the same jitted function (no new trace).
    """
    key = (graphdef, repr(sorted(options.items())))
    program = _EVAL_PROGRAMS.get(key)
    if program is None:
        program = jax.jit(lambda state, *batch: _correct(nnx.merge(graphdef, state), *batch),
                          compiler_options=options or None)
        _EVAL_PROGRAMS[key] = program
        while len(_EVAL_PROGRAMS) > STEPS_KEPT:
            _EVAL_PROGRAMS.popitem(last=False)
    return program


def evaluate(
    mixture: Mixture, images: np.ndarray, labels: np.ndarray, batch_size: int,
    *, place: Callable[..., Sequence[jax.Array]] | None = None,
) -> tuple[np.ndarray, float]:
    """Test accuracy of every network and of the mixture.

    The last batch is padded to ``batch_size`` (and masked) so one compiled
    step serves every batch. Leaves ``mixture`` in eval mode.

    Args:
        mixture: the trained mixture.
        images, labels: the test set.
        batch_size: images per evaluation step.
        place: turns the host arrays of one batch into device arrays (e.g.
            sharded over a mesh); default ``jnp.asarray``.

    Returns:
        ``(accuracies (M+1,), mixture_accuracy)``.

    On a CPU the batches run as one program compiled with
    :data:`STEP_COMPILER_OPTIONS` (as the training step; 0.79x the time per
    batch at M = 20, ``bench/results/train.md``).
    """
    mixture.eval()
    graphdef, state = nnx.split(mixture)
    program = None  # chosen at the first batch, from where it lives
    count = len(labels)
    batch_size = min(batch_size, count)
    network_correct = np.zeros(len(mixture.networks), np.int64)
    mixture_correct = 0
    for start in range(0, count, batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        valid = np.ones(batch_size, bool)
        if len(y) < batch_size:
            pad = batch_size - len(y)
            valid[len(y):] = False
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros(pad, y.dtype)])
        placed = place(x, y, valid) if place is not None else (jnp.asarray(x), jnp.asarray(y), jnp.asarray(valid))
        if program is None:
            program = _eval_program(graphdef, _default_compiler_options(placed[0]))
        hits, mixed_hits = program(state, *placed)
        network_correct += np.asarray(hits)
        mixture_correct += int(mixed_hits)
    return network_correct / count, mixture_correct / count


# -- the compiled step ----------------------------------------------------------------

STEP_DIR = "steps"
"""Subdirectory of the compilation cache holding compiled training steps (see :class:`FusedStep`)."""

STEP_SUFFIX = ".xla"
_STEP_MAGIC = b"nasgen compiled step 1\n"

STEP_COMPILER_OPTIONS: dict[str, Any] = {"xla_cpu_experimental_ynn_fusion_type": ""}
"""XLA options for the training step's programs on a CPU (:class:`FusedStep`'s default there).

No YNNPACK library fusions: XLA's CPU backend otherwise hands the
convolutions, dots and reductions (BatchNorm's sums: about 2,800 of them in
the M = 20 ResNet step) to YNNPACK, each of which builds its runtime on the
program's first call. Without them (M = 20, 4 programs, one run) the first
step lost its 3.4 s of set-up, a warm start (stored executables) took 6.9 s
against 11.8 s, and a step 0.94x the time (one process, steps alternated),
for a cold compile 1.1x as long (``bench/results/train.md``). Other
platforms get XLA's defaults.
"""


def _default_compiler_options(array: Any) -> dict[str, Any]:
    """:data:`STEP_COMPILER_OPTIONS` for work on ``array``'s devices if they are CPUs, else none (XLA's defaults).

    None either where this XLA does not know one of them (a later jax may
    drop an experimental option): checked once per process and device.
    """
    if not isinstance(array, jax.Array):
        return {}
    device = next(iter(array.sharding.device_set))
    options = tuple(sorted(STEP_COMPILER_OPTIONS.items()))
    return dict(options) if device.platform == "cpu" and _accepted(options, device) else {}


@functools.cache
def _accepted(options: tuple, device: Any) -> bool:
    """Whether XLA compiles for ``device`` with ``options`` (a trivial program, once per process)."""
    try:
        jax.jit(lambda x: x + 1).lower(jax.device_put(np.float32(0), device)).compile(dict(options))
    except jax.errors.JaxRuntimeError as exc:
        if _unknown_option(exc):
            return False
        raise
    return True


def _unknown_option(exc: BaseException) -> bool:
    """Whether XLA refused a compile because it does not know an option."""
    return "compile option" in str(exc)


def _named(step: Callable, key: str | None) -> Callable:
    """``step`` under the name ``nasgen_step_KEY``, which names its XLA program.

    The name is part of JAX's persistent-cache key, so a program nasgen
    stores itself is found in JAX's cache only under the same nasgen key
    (when nasgen's own entry is missing or damaged), never from another
    step that happens to lower to the same module.
    """

    def program(*args):
        return step(*args)

    program.__name__ = program.__qualname__ = f"nasgen_step_{key}" if key else "nasgen_step"
    return program


_CACHE_HITS = threading.local()


def _note_cache_hit(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _CACHE_HITS.seen = True


@functools.cache
def _listen_for_cache_hits() -> None:
    """Have JAX report its persistent-cache hits to the thread that compiles (once per process)."""
    jax.monitoring.register_event_listener(_note_cache_hit)


def _compile_program(lowered: Any, path: Path | None, options: dict[str, Any] | None = None) -> Any:
    """XLA-compile a lowered step; store the executable at ``path`` (if given) for later processes.

    The file is :data:`_STEP_MAGIC`, the sha256 of the rest, then a pickle of
    ``jax.experimental.serialize_executable.serialize``'s executable and
    argument and result trees. Written to a temporary file and renamed, so a
    reader never sees half a file; a cache that cannot be written only costs
    the next process a compile. A program that JAX's persistent cache
    supplied is not stored: serialised again, such an executable lacks its
    kernels (jax 0.10 on CPU: "Function ... not found" when the reloaded copy
    runs), so a damaged entry is removed and the step keeps coming from
    JAX's cache (lowered, then loaded) until a real compile replaces it.

    ``options`` are XLA compiler options; one that XLA does not know is a
    :class:`NasgenError`.
    """
    _listen_for_cache_hits()
    _CACHE_HITS.seen = False
    try:
        compiled = lowered.compile(dict(options or {}))
    except jax.errors.JaxRuntimeError as exc:
        if not options or not _unknown_option(exc):
            raise
        reason = str(exc).strip().splitlines()[0]
        raise NasgenError(f"compiler_options {options!r}: XLA refused them ({reason}); valid names are "
                          f"fields of XLA's DebugOptions, such as xla_cpu_enable_fast_math") from None
    if path is not None and _CACHE_HITS.seen:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
    elif path is not None:
        try:
            from jax.experimental import serialize_executable

            payload = pickle.dumps(serialize_executable.serialize(compiled), protocol=pickle.HIGHEST_PROTOCOL)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(_STEP_MAGIC + hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, path)
        except (OSError, ValueError, NotImplementedError, pickle.PicklingError):
            pass  # not serialisable here (or not writable): later processes compile it again
    return compiled


def _load_program(path: Path) -> Any:
    """The compiled step stored at ``path`` (see :func:`_compile_program`), or None if it is damaged.

    The checksum catches truncated or corrupted files. Like JAX's own
    persistent cache, the file holds an executable: the cache directory must
    be one the user trusts.
    """
    from jax.experimental import serialize_executable

    try:
        blob = path.read_bytes()
        head = len(_STEP_MAGIC)
        digest, payload = blob[head:head + 32], blob[head + 32:]
        if not blob.startswith(_STEP_MAGIC) or hashlib.sha256(payload).digest() != digest:
            return None
        return serialize_executable.deserialize_and_load(*pickle.loads(payload))
    except Exception:  # an entry this jax cannot load: compile instead
        return None


def _network_of(path) -> int | None:
    """Which network a leaf of the (mixture, optimiser) state belongs to (None: alpha, counters)."""
    keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
    for name, index in zip(keys, keys[1:]):
        if name == "networks" and isinstance(index, int):
            return index
    return None


def _restrict(tree: Any, members: Sequence[int], alpha: bool) -> Any:
    """``tree`` (parameters, gradients or optimiser state, as pure arrays) for ``members`` and alpha only."""
    if isinstance(tree, nnx.State):
        out = {}
        for name, value in tree.items():
            if name == "networks":
                out[name] = nnx.State({i: value[i] for i in members})
            elif name == "alpha":
                if alpha:
                    out[name] = value
            else:
                out[name] = _restrict(value, members, alpha)
        return nnx.State(out)
    if isinstance(tree, tuple):
        parts = [_restrict(part, members, alpha) for part in tree]
        return type(tree)(*parts) if hasattr(tree, "_fields") else tuple(parts)
    return tree


def _update_part(mixture: "Mixture", optimizer: nnx.Optimizer, grads: nnx.State, members: Sequence[int],
                 alpha: bool) -> None:
    """``optimizer.update`` restricted to the networks ``members`` (and alpha if ``alpha``), step counter aside.

    ``nnx.Optimizer.update`` on the part of the parameters, of ``grads`` and
    of the optimiser state that belongs to them: the optimiser is elementwise
    per leaf (its count is shared and advanced the same way by every part),
    so the part's new values are those of a whole update. A part's program
    then traces (and XLA compiles) the update of its own leaves only.
    """
    params = _restrict(nnx.as_pure(nnx.state(mixture, optimizer.wrt)), members, alpha)
    opt_state = _restrict(nnx.as_pure(optimizer.opt_state), members, alpha)
    updates, new_opt_state = optimizer.tx.update(nnx.as_pure(grads), opt_state, params)
    nnx.update(mixture, optax.apply_updates(params, updates))
    nnx.update(optimizer.opt_state, nnx.state(new_opt_state))


STEPS_KEPT = 4
"""Compiled training steps a process keeps for reuse (the most recently used)."""

_STEP_PROGRAMS: "collections.OrderedDict[tuple, Callable]" = collections.OrderedDict()


def _kept_step_programs(kept: tuple | None) -> Any:
    """The compiled step(s) kept under ``kept`` (marked most recently used), or None."""
    if kept is None or kept not in _STEP_PROGRAMS:
        return None
    _STEP_PROGRAMS.move_to_end(kept)
    return _STEP_PROGRAMS[kept]


def _keep_step_programs(kept: tuple, programs: Any) -> None:
    _STEP_PROGRAMS[kept] = programs
    while len(_STEP_PROGRAMS) > STEPS_KEPT:
        _STEP_PROGRAMS.popitem(last=False)


def clear_step_programs() -> None:
    """Forget the compiled training steps this process keeps for reuse (frees their memory)."""
    _STEP_PROGRAMS.clear()


class FusedStep:
    """The fused :func:`train_step` as a function of the flat state, traced once per mixture.

    Called with one batch, it updates its own copy of the mixture's and the
    optimiser's arrays; :meth:`sync` writes them back into the nnx objects
    (before evaluation and checkpoints). It is compiled when it is made.
    With a ``cache_dir`` and an ``identity``, the compiled program is stored
    (``jax.experimental.serialize_executable``) under ``cache_dir/steps``,
    keyed by the mixture's structure, the batch's shapes and shardings, the
    library versions, the compiler options, the devices and the host CPU: a
    later process (a resumed run, the same mixture again) loads the executable instead of
    tracing the M+1 networks, lowering and compiling them, so a warm start
    neither traces nor compiles (nor lowers, as a JAX persistent-cache hit
    would need for its key). With an ``identity``, the process also
    keeps the compiled step (the last :data:`STEPS_KEPT`; see
    :func:`clear_step_programs`): a later FusedStep of the same structure in
    the same process (the next seed of ``--seeds``, another ``train`` call in
    a notebook) reuses it without loading or compiling anything
    (:attr:`reused`).

    Args:
        mixture, optimizer: the live objects (``mixture`` in train mode).
        images, labels: one batch (shapes, dtypes and shardings matter).
        cache_dir: JAX's compilation cache directory, or None for none.
        identity: text that determines the mixture and its optimiser (a
            run's config JSON); part of the cache key with the shapes, the
            shardings, the library versions and the source of the modules
            that define the step.
        programs: split the step into this many XLA programs over
            consecutive groups of networks, plus one for alpha (1: one
            program). Each group's program computes its networks' gradients
            and applies the optimiser to their leaves only; alpha's program
            takes every network's logits. The optimiser is elementwise per
            leaf, so the update is the one-program step's (to float
            rounding). XLA's CPU executable loader and its thunk graph grow
            faster than a program's size, so several smaller programs load
            from the cache much faster (``bench/results/train.md``).
        compiler_options: XLA options for every program (part of the cache
            key); None: :data:`STEP_COMPILER_OPTIONS` on a CPU whose XLA
            knows them, XLA's defaults otherwise; ``{}``:
            XLA's defaults.

    Raises:
        NasgenError: ``programs`` not between 1 and the number of networks,
            or ``compiler_options`` not a mapping of option names to values.
    """

    def __init__(self, mixture: "Mixture", optimizer: nnx.Optimizer, images: jax.Array, labels: jax.Array,
                 cache_dir: Path | None = None, identity: str = "", programs: int = 1,
                 compiler_options: dict[str, Any] | None = None) -> None:
        if compiler_options is None:
            self.compiler_options = _default_compiler_options(images)
        elif isinstance(compiler_options, dict) and all(isinstance(name, str) for name in compiler_options):
            self.compiler_options = dict(compiler_options)
        else:
            raise NasgenError(f"compiler_options must be a dict of XLA option names to values or None, "
                              f"got {compiler_options!r}")
        self._objects = (mixture, optimizer)
        graphdef, state = nnx.split(self._objects)
        leaves, self._treedef = jax.tree.flatten(state)
        # Committed to where they are, like the step's outputs: uncommitted
        # arrays (those of an un-sharded nnx.jit with no array inputs) lower
        # to a different program than the committed ones the first step
        # returns, so the second call compiled (and cached) the whole step a
        # second time.
        leaves = jax.device_put(leaves, [leaf.sharding for leaf in leaves])
        self.leaves = leaves
        treedef = self._treedef

        def step(leaves, images, labels):
            mixture, optimizer = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
            grads, losses = mixture_gradients(mixture, images, labels)
            optimizer.update(mixture, grads)
            return losses, jax.tree.leaves(nnx.state((mixture, optimizer)))

        self.loaded_from_cache = False
        self.reused = False
        networks = len(mixture.networks)
        if isinstance(programs, bool) or not isinstance(programs, int) or not 1 <= programs <= networks:
            raise NasgenError(f"programs must be an integer from 1 to the number of networks ({networks}), "
                              f"got {programs!r}")
        self.programs = programs
        key = self._key(identity, leaves, images, labels) if identity else None
        if programs > 1:
            self._split(graphdef, treedef, networks, key, cache_dir, images, labels)
            return
        # The compiled step is a pure function of (leaves, batch): any FusedStep
        # of the same identity, shapes, shardings and graph (nnx's own jit key)
        # can call it.
        kept = (key, graphdef, 1) if key is not None else None
        self._call = _kept_step_programs(kept)
        if self._call is not None:
            self.reused = True
            return
        self._call, = self._programs(
            [(key, lambda: jax.jit(_named(step, key)).trace(leaves, images, labels).lower())], cache_dir)
        if kept is not None:
            _keep_step_programs(kept, self._call)

    def _programs(self, parts: Sequence[tuple[str | None, Callable[[], Any]]], cache_dir: Path | None) -> list:
        """Compiled programs for ``parts``, each ``(key, lower)``: loaded from ``cache_dir`` or lowered and compiled.

        ``lower()`` traces and lowers the part (on this thread: tracing is
        Python). Loading a stored executable and XLA's compilation run on two
        worker threads (XLA releases the GIL), so one part compiles while the
        next is traced. A compiled part is stored under its key; a damaged or
        unreadable entry is compiled again and replaced. Sets
        :attr:`loaded_from_cache` (True if every part was loaded).
        """
        from concurrent.futures import ThreadPoolExecutor

        paths = [None if cache_dir is None or key is None else Path(cache_dir) / STEP_DIR / f"{key}{STEP_SUFFIX}"
                 for key, _ in parts]
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(_load_program, path) if path is not None and path.is_file() else None
                       for path in paths]
            stored = [future is not None for future in futures]
            try:
                for i, ((_, lower), path) in enumerate(zip(parts, paths)):
                    if futures[i] is None:
                        futures[i] = pool.submit(_compile_program, lower(), path, self.compiler_options)
                loaded = []
                for i, ((_, lower), path) in enumerate(zip(parts, paths)):
                    program = futures[i].result()
                    loaded.append(stored[i] and program is not None)
                    if program is None:  # a damaged or unloadable entry: compile this part after all
                        futures[i] = pool.submit(_compile_program, lower(), path, self.compiler_options)
                programs = [future.result() for future in futures]
            except BaseException:  # an interrupt or a failed part: start no further work
                for future in futures:
                    if future is not None:
                        future.cancel()
                raise
        self.loaded_from_cache = all(loaded)
        return programs

    def _split(self, graphdef, treedef, networks: int, key: str | None, cache_dir: Path | None,
               images: jax.Array, labels: jax.Array) -> None:
        """The step as one program per group of networks and one for alpha (see ``programs``)."""
        paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(jax.tree.unflatten(treedef, self.leaves))[0]]
        owners = [_network_of(path) for path in paths]
        groups = [tuple(int(i) for i in part) for part in np.array_split(np.arange(networks), self.programs)]
        self._owned = [[k for k, owner in enumerate(owners) if owner in group] for group in groups]
        self._rest = [k for k, owner in enumerate(owners) if owner is None]
        # Another FusedStep of this structure in this process compiled it already.
        kept = (key, graphdef, self.programs) if key is not None else None
        found = _kept_step_programs(kept)
        if found is not None:
            self._group_calls, self._alpha_call = found
            self.reused = True
            return

        # A part's program takes only the leaves it reads: its networks' and the
        # shared ones (alpha, counters). The others stand in as shapes only,
        # never read (an operation on one fails the trace); with every leaf as
        # an input, each part's signature, lowering and call handled all of them.
        shapes = [jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for leaf in self.leaves]

        def merged(read, reads):
            leaves = list(shapes)
            for k, value in zip(reads, read):
                leaves[k] = value
            return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))

        def group_step(read, images, labels, members, keep):
            mixture, optimizer = merged(read, keep + self._rest)
            grads, logits, losses, inputs = {}, [], [], images
            for i in members:
                (loss, z), grads[i] = _network_gradients(mixture.networks[i], inputs, labels)
                logits.append(z)
                losses.append(loss)
                inputs, _ = jax.lax.optimization_barrier((inputs, jax.tree.leaves(grads[i])))
            _update_part(mixture, optimizer, nnx.State({"networks": nnx.State(grads)}), members, alpha=False)
            new = jax.tree.leaves(nnx.state((mixture, optimizer)))
            return (jnp.stack(logits), jnp.stack(losses)), [new[k] for k in keep]

        def alpha_step(read, logits, losses, labels, keep):
            mixture, optimizer = merged(read, keep)
            logits = [z for part in logits for z in part]
            mixture_loss, grad = jax.value_and_grad(
                lambda alpha: mixture_losses(alpha, logits, labels, mixture.mixing)[0])(mixture.alpha[...])
            _update_part(mixture, optimizer, nnx.State({"alpha": grad, "networks": nnx.State({})}), (), alpha=True)
            optimizer.step[...] += 1
            new = jax.tree.leaves(nnx.state((mixture, optimizer)))
            return (mixture_loss, jnp.concatenate(losses)), [new[k] for k in keep]

        def part_key(name: str) -> str | None:
            # Named by what the part computes, so that splits sharing a group share its program.
            return None if key is None else hashlib.sha256(f"{key} {name}".encode()).hexdigest()[:32]

        def lowering(g: int, members: tuple[int, ...], keep: list[int]) -> tuple[str | None, Callable[[], Any]]:
            name = part_key(f"group {members}")
            step = _named(functools.partial(group_step, members=members, keep=keep), name)
            return name, lambda: jax.jit(step).trace(self._reading(g), images, labels).lower()

        self._group_calls = self._programs(
            [lowering(g, members, keep) for g, (members, keep) in enumerate(zip(groups, self._owned))], cache_dir)
        loaded = self.loaded_from_cache
        # Alpha's program takes the groups' logits and losses, as they come out of them.
        parts = [jax.tree.map(lambda out: jax.ShapeDtypeStruct(out.shape, out.dtype, sharding=out.sharding),
                              call.out_info[0]) for call in self._group_calls]
        logits, losses = [part[0] for part in parts], [part[1] for part in parts]
        name = part_key(f"alpha {groups}")
        alpha = _named(functools.partial(alpha_step, keep=self._rest), name)
        read = self._reading(None)
        self._alpha_call, = self._programs(
            [(name, lambda: jax.jit(alpha).trace(read, logits, losses, labels).lower())], cache_dir)
        self.loaded_from_cache = loaded and self.loaded_from_cache
        if kept is not None:
            _keep_step_programs(kept, (self._group_calls, self._alpha_call))

    def _reading(self, group: int | None) -> list[jax.Array]:
        """The leaves that a group's program (None: alpha's) takes: its own, then the shared ones."""
        own = [] if group is None else self._owned[group]
        return [self.leaves[k] for k in own + self._rest]

    def _split_call(self, images: jax.Array, labels: jax.Array):
        new = list(self.leaves)
        logits, losses = [], []
        for g, (call, keep) in enumerate(zip(self._group_calls, self._owned)):
            (z, loss), out = call(self._reading(g), images, labels)
            logits.append(z)
            losses.append(loss)
            for k, value in zip(keep, out):
                new[k] = value
        losses, out = self._alpha_call(self._reading(None), logits, losses, labels)
        for k, value in zip(self._rest, out):
            new[k] = value
        self.leaves = new
        return losses

    def _key(self, identity: str, leaves, images, labels) -> str:
        import nasgen.nn.models
        import nasgen.nn.spec

        digest = hashlib.sha256()
        sources = [Path(module.__file__).read_bytes() for module in (sys.modules[__name__], nasgen.nn.models, nasgen.nn.spec)]
        parts = [identity, _versions(), [hashlib.sha256(source).hexdigest() for source in sources], _machine(),
                 repr(sorted(self.compiler_options.items()))]
        for array in (*leaves, images, labels):
            parts.append((tuple(array.shape), str(array.dtype), str(getattr(array, "sharding", None))))
        digest.update(repr(parts).encode())
        return digest.hexdigest()[:32]

    def __call__(self, images: jax.Array, labels: jax.Array):
        """One step; returns ``(mixture_loss, network_losses)``."""
        if self.programs > 1:
            return self._split_call(images, labels)
        losses, self.leaves = self._call(self.leaves, images, labels)
        return losses

    def sync(self) -> None:
        """Write the step's arrays back into the mixture and optimiser objects."""
        nnx.update(self._objects, jax.tree.unflatten(self._treedef, self.leaves))


# -- the run ----------------------------------------------------------------------


def create_mixture(config: TrainConfig, *, in_channels: int, num_classes: int) -> tuple[Mixture, nnx.Optimizer]:
    """The mixture of :func:`build_mixture` and its ``nnx.Optimizer``.

    Each network is initialised by a jitted program of its own
    (:func:`_build_network`, keyed by the network's structure; the seed is an
    input, so the seeds of ``--seeds`` reuse the same programs), and the
    optimiser's zeroed state is made eagerly. One jit around the whole
    mixture made one program of every network's initialisation: XLA's CPU
    compiler grows faster than a program's size, so at M = 20 it took about
    1.2x as long from an empty persistent cache (small mixtures are the other
    way round; ``bench_train.py --case create``); the values are the same.
    """
    mixture = build_mixture(config, in_channels=in_channels, num_classes=num_classes)
    tx = build_optimizer(config.optimizer, config.learning_rate, config.weight_decay)
    return mixture, nnx.Optimizer(mixture, tx, wrt=nnx.Param)


def read_config(output_dir: str | os.PathLike) -> TrainConfig:
    """The config of the run stored in ``output_dir``.

    Raises:
        RunError: no readable ``config.json`` there, or one that does not hold
            a training config (one-line message).
    """
    path = Path(output_dir) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{output_dir} holds no training run (no {CONFIG_FILE}); nothing to resume") from None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
        raise RunError(f"{path} is unreadable ({reason}); cannot resume this run") from None
    settings = data.get("config") if isinstance(data, dict) else None
    if not isinstance(settings, dict):
        raise RunError(f"{path} does not hold a nasgen training run (expected an object with a \"config\" object)")
    try:
        return TrainConfig.from_dict(settings)
    except NasgenError as exc:
        raise RunError(f"{path} holds invalid settings: {exc}") from None


def _read_metadata(output_dir: Path) -> dict:
    # The part of config.json beside the settings (sessions, dataset); read
    # only after read_config has validated the file.
    return json.loads((output_dir / CONFIG_FILE).read_text(encoding="utf-8"))


def _write_json_atomic(path: Path, data: Any) -> None:
    # A reader (or a resumed run after a kill) sees the old file or the new
    # one, never half of one.
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=1, allow_nan=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class _Checkpoints:
    """One checkpoint per finished epoch, through :mod:`nasgen.train.checkpoint` (orbax).

    The state is ``{"mixture": ..., "optimizer": ...}``: parameters, BatchNorm
    statistics, alpha, the optimiser's moments and step count. Epoch e's data
    order is a function of (seed, e) alone, so this is all a resumed run needs
    to continue exactly. Only the newest ``keep`` epochs stay on disk (a
    full-width 21-network mixture is gigabytes per checkpoint).
    """

    def __init__(self, directory: Path, keep: int = 2) -> None:
        self.directory = directory
        self.keep = keep

    def epochs(self) -> list[int]:
        from nasgen.train.checkpoint import all_steps

        try:
            return all_steps(self.directory)
        except Exception as exc:  # orbax raises many types for a damaged directory
            raise RunError(f"cannot list the checkpoints in {self.directory} ({_reason(exc)})") from None

    def save(self, epoch: int, mixture: Mixture, optimizer: nnx.Optimizer) -> None:
        from nasgen.train.checkpoint import save

        # Retention is orbax's max_to_keep: once this epoch is committed the
        # oldest epochs beyond ``keep`` are deleted.
        save(self.directory, epoch, {"mixture": mixture, "optimizer": optimizer}, overwrite=True, keep=self.keep)

    def prune(self, newest: int) -> None:
        """Delete any epoch after ``newest`` (left by a run that is redoing them) and torn saves.

        Old epochs are not this method's business: :meth:`save` keeps the
        ``keep`` newest through orbax's ``max_to_keep``.
        """
        for epoch in self.epochs():
            if epoch > newest:
                shutil.rmtree(self.directory.resolve() / str(epoch), ignore_errors=True)
        # What a save killed half-way leaves behind (orbax's temporary directories).
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if ".orbax-checkpoint-tmp" in path.name:
                    shutil.rmtree(path, ignore_errors=True)

    def restore(self, epoch: int, mixture: Mixture, optimizer: nnx.Optimizer) -> None:
        from nasgen.train.checkpoint import restore

        try:
            restore(self.directory, epoch, target={"mixture": mixture, "optimizer": optimizer})
        except NasgenError as exc:
            raise RunError(f"cannot resume: {exc}") from None
        except Exception as exc:  # a truncated or tampered checkpoint: orbax's own error types
            raise RunError(
                f"cannot resume: checkpoint {epoch} in {self.directory} is damaged ({_reason(exc)}); "
                f"delete {self.directory / str(epoch)} to resume from the epoch before it"
            ) from None


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, for one-line errors."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def resume_epoch(logged: Sequence[int], checkpointed: Sequence[int]) -> int:
    """The epoch a resumed run continues from: log and checkpoints agree up to it.

    A commit writes epoch e's log record, then its checkpoint, then prunes old
    checkpoints; a run killed between any two of these leaves a log record
    without a checkpoint, or a checkpoint whose older neighbours are still
    there. The run resumes from the newest checkpoint whose epoch and every
    earlier one are in the log (0: start afresh, which also reproduces the
    run), so the log, checkpoints and final numbers equal an uninterrupted
    run's.

    Args:
        logged: the epochs of the log records, in file order.
        checkpointed: the epochs with a complete checkpoint.

    Returns:
        The epoch to restore (0 for none).

    >>> resume_epoch([1, 2, 3], [2, 3])
    3
    >>> resume_epoch([1, 2], [2, 3])  # the record of epoch 3 is missing: redo it
    2
    >>> resume_epoch([1, 2, 3, 4], [3])  # epoch 4 was logged but not saved
    3
    """
    contiguous = 0
    for expected, epoch in enumerate(logged, start=1):
        if epoch != expected:
            break
        contiguous = epoch
    return max([e for e in checkpointed if e <= contiguous], default=0)


class _RunLock:
    """An exclusive ``fcntl.flock`` on ``LOCK_FILE`` in the output directory.

    Two runs started into one directory at once would interleave their logs
    and checkpoints; the second to arrive is refused in one line. The lock
    goes with the process (the kernel drops it on exit, even on a kill), so a
    stale lock file never blocks a resume.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._handle = None

    def acquire(self) -> None:
        import fcntl

        try:
            handle = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise RunError(f"cannot write in {self.path.parent} ({exc.strerror}); choose a writable --output-dir") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise RunError(
                f"another nasgen run is using {self.path.parent} (it holds {self.path}); wait for it or choose "
                "another --output-dir"
            ) from None
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the flock
            self._handle = None


def _available_memory() -> tuple[int | None, str]:
    """Bytes one device can hold, and what that figure is."""
    device = jax.local_devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # backends without memory statistics (the CPU one) raise or return None
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{device.device_kind} memory"
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available host memory"
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available host memory"
    except (OSError, ValueError, AttributeError):
        return None, "unknown"


def estimate_training_memory(config: TrainConfig, *, in_channels: int, num_classes: int, devices: int = 1) -> int:
    """A rough upper estimate of one device's memory for the fused training step, in bytes.

    Per network, from the analytic table (:func:`nasgen.nn.summary.model_stats`):
    4 float32 copies of the parameters (weights, gradients, Adam's two
    moments) plus 3 float32 copies of every layer's output for the device's
    share of a batch (the forward value kept for the backward pass, its
    gradient, XLA scratch).

    Raises:
        NasgenError: the model options are invalid.
    """
    from nasgen.nn.summary import model_stats

    space = config.search_space()
    spec = config.model_spec(in_channels=in_channels, num_classes=num_classes)
    per_example = params = 0
    for arch in (config.baseline_architecture(), *config.generated_architectures()):
        rows = model_stats(spec, space if config.model == "chain" else None, arch)
        params += rows[-1]["params"] + rows[-1]["batch_stats"]
        per_example += sum(math.prod(r["output_shape"]) for r in rows[:-1])
    batch = -(-config.batch_size // devices)
    return 4 * (4 * params + 3 * batch * per_example)


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> Path:
    """Turn on JAX's persistent compilation cache (process-wide) and return its directory.

    A second run of the same mixture (or a resumed one) loads its compiled
    step from disk instead of compiling it again.

    Args:
        directory: where compiled programs go; default ``$NASGEN_JAX_CACHE``,
            else ``~/.cache/nasgen/jax``.
    """
    if directory is None:
        directory = os.environ.get("NASGEN_JAX_CACHE") or Path.home() / ".cache" / "nasgen" / "jax"
    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create the compilation cache {path} ({exc.strerror}); pass --no-compile-cache") from None
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_compilation_cache_dir", str(path))
    # JAX decides once per process whether to use the cache; a process that
    # compiled something before this call decides again.
    compilation_cache.reset_cache()
    # Cache every program that took a while (the step), not the many tiny ones.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


NETWORKS_PER_PROGRAM = 5
"""About how many networks each of the training step's programs holds on a CPU (:func:`default_step_programs`)."""


def default_step_programs(networks: int, platform: str) -> int:
    """How many programs a run's training step is compiled as when the user does not say (``--step-programs``).

    On a CPU, about :data:`NETWORKS_PER_PROGRAM` networks per program
    (``max(1, round(networks / 5))``: 4 at M = 20, 1 up to M = 6): at M = 20 on
    the 2-core machine, 4 programs compiled cold in 0.7x the time of one,
    loaded from the cache in about 0.2x, and stepped in 0.83x (one process,
    steps alternated; ``bench/results/train.md``). On other platforms one
    program (nothing measured there says splitting helps).

    >>> default_step_programs(21, "cpu"), default_step_programs(3, "cpu"), default_step_programs(21, "gpu")
    (4, 1, 1)
    """
    if platform != "cpu":
        return 1
    return max(1, round(networks / NETWORKS_PER_PROGRAM))


def data_mesh(devices: int | None = None) -> Mesh:
    """A one-axis ``("data",)`` mesh over the devices that share each batch.

    Args:
        devices: how many of this host's devices to use (default: all). On
            several hosts (after ``jax.distributed.initialize()``) every
            device of every host is used and ``devices`` must be None.

    Raises:
        RunError: ``devices`` is not a positive integer up to the local count.
    """
    from jax.sharding import Mesh

    local = jax.local_devices()
    if devices is None:
        chosen = jax.devices() if jax.process_count() > 1 else local
    else:
        if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
            raise RunError(f"--devices must be a positive integer, got {devices!r}")
        if jax.process_count() > 1:
            raise RunError("--devices is for one host; a multi-host run uses every device of every host")
        if devices > len(local):
            raise RunError(f"--devices {devices} is more than the {len(local)} {local[0].platform} device(s) present")
        chosen = local[:devices]
    return Mesh(np.asarray(chosen), ("data",))


def maybe_initialize_distributed() -> bool:
    """Call ``jax.distributed.initialize()`` when a multi-host environment is set; True if it was.

    The environment is JAX's own: ``JAX_COORDINATOR_ADDRESS`` with
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (or a cluster JAX detects
    itself, such as SLURM, when ``NASGEN_DISTRIBUTED=1``).
    """
    if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("NASGEN_DISTRIBUTED") == "1":
        if not jax.distributed.is_initialized():
            jax.distributed.initialize()
        return True
    return False


def _versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in ("nasgen", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _machine() -> list:
    """What a compiled program depends on beyond its source: the devices, the host CPU, XLA's flags.

    A stored executable (see :class:`FusedStep`) is machine code for these
    devices; the host CPU's feature flags (``/proc/cpuinfo``) tell apart CPUs
    whose instruction sets differ.
    """
    devices = jax.devices()
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            cpu = next((line for line in info if line.startswith(("flags", "Features"))), "")
    except OSError:
        import platform

        cpu = platform.processor() or platform.machine()
    return [devices[0].platform, devices[0].client.platform_version, sorted({d.device_kind for d in devices}),
            len(devices), jax.process_count(), cpu.strip(), os.environ.get("XLA_FLAGS", ""),
            str(jax.config.jax_default_matmul_precision), bool(jax.config.jax_enable_x64)]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class TrainingRun:
    """One mixture-training run bound to its output directory; a context manager.

    Entering validates everything that can be checked without training (the
    directory, the data, the memory the step needs) before it writes
    anything, then takes the directory's lock, writes ``config.json``, builds
    the networks and, when resuming, restores the last consistent epoch (see
    :func:`resume_epoch`). :meth:`run` trains the remaining epochs, committing
    each epoch's log record and checkpoint so that a kill at any instant
    resumes to the same log and numbers, and writes the reports.

    Args:
        config: the run's settings.
        output_dir: where config, log, checkpoints and reports go.
        resume: continue the run already in ``output_dir`` (its config must
            equal ``config``; see :func:`read_config`).
        dataset: an already-loaded :class:`~nasgen.train.data.Dataset` (else it is
            loaded from ``config``); its name labels the reports.
        progress: tqdm progress bars on stderr: None lets tqdm decide (bars
            only on a terminal), False never. Without bars every epoch logs
            one line through :mod:`logging` (logger ``nasgen.train.run``).
        devices: how many local devices share each batch (default all; see
            :func:`data_mesh`); must divide the batch size.
        compilation_cache: True for JAX's persistent compilation cache in
            the default directory, a path for another directory, False for
            none (see :func:`enable_compilation_cache`); None (the
            library's default) turns nothing on but uses the cache the
            process already has (``JAX_COMPILATION_CACHE_DIR`` or
            ``jax.config``), for the stored training step too.
        command: the command line to record in ``config.json``.
        plots: draw the three plots beside the summary, in this format
            (``png``, ``pdf`` or ``svg``; True is PNG) (False: summary and log
            only, e.g. for sweeps; the plots can be drawn later from
            ``log.jsonl`` and ``summary.json`` with
            :func:`nasgen.train.report.write_plots`).
        step_programs: the training step as this many XLA programs (groups
            of networks) plus one for alpha; 1 is one program; None
            (default): :func:`default_step_programs` for the run's devices
            (on a CPU about five networks per program). See
            :class:`FusedStep`'s ``programs``: the same numbers to float
            rounding, a shorter cold compile and a much shorter warm start
            from the cache at large M on a CPU. The number used is recorded
            in ``config.json`` (``step_programs`` of the session).

    Raises:
        RunError: the directory is not usable (one-line message; nothing
            written).
        NasgenError: data or settings that cannot train.
    """

    def __init__(
        self,
        config: TrainConfig,
        output_dir: str | os.PathLike,
        *,
        resume: bool = False,
        dataset: Dataset | None = None,
        progress: bool | None = None,
        devices: int | None = None,
        compilation_cache: bool | str | os.PathLike | None = None,
        command: Sequence[str] | None = None,
        plots: bool | str = True,
        step_programs: int | None = None,
    ) -> None:
        self.config = config
        self.plots = plots
        self.step_programs = step_programs
        self.output_dir = Path(output_dir)
        self.resume = resume
        self.progress = progress
        self.devices = devices
        self.compilation_cache = compilation_cache
        self.command = list(command) if command is not None else None
        self._dataset = dataset
        self._checkpoints: _Checkpoints | None = None
        self._lock: _RunLock | None = None

    # -- directory handling

    def _check_directory(self) -> None:
        out = self.output_dir
        if out.exists() and not out.is_dir():
            raise RunError(f"output directory {out} is a file; give a directory path")
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise RunError(f"output directory {out} is under {parent}, which is a file; give a directory path")
                break
        if self.resume:
            stored = read_config(out)
            if stored != self.config:
                changed = ", ".join(stored.differences(self.config))
                raise RunError(f"{out} holds a different run (settings differ: {changed}); resume it with its own settings")
            return
        if out.exists() and any(p.name != LOCK_FILE for p in out.iterdir()):
            if (out / CONFIG_FILE).exists():
                try:
                    stored = read_config(out)
                except NasgenError:
                    stored = None
                if stored == self.config:
                    raise RunError(f"{out} already holds this run; pass --resume {out} to continue it, or choose a new --output-dir")
                raise RunError(f"{out} holds a different run; choose a new --output-dir (nothing was overwritten)")
            raise RunError(f"output directory {out} is not empty and holds no nasgen run; choose an empty or new directory")

    def _check_data(self) -> None:
        data = self._dataset
        config = self.config
        space = config.search_space()
        spec = config.model_spec(in_channels=data.channels, num_classes=int(data.num_classes))
        expected = spec.image_shape(space)
        if tuple(data.example_shape) != tuple(expected):
            hint = " (pass --image-shape for another input)" if config.model == "resnet18" else ""
            raise NasgenError(
                f"{config.model} networks here take {'x'.join(map(str, expected))} inputs but "
                f"{data.name} images are {'x'.join(map(str, data.example_shape))}{hint}"
            )
        limit = lambda array, n: array if n is None else array[:n]  # noqa: E731
        self.train_images = limit(data.train_images, config.train_limit)
        self.train_labels = limit(data.train_labels, config.train_limit)
        self.test_images = limit(data.test_images, config.test_limit)
        self.test_labels = limit(data.test_labels, config.test_limit)
        for what, images in (("training", self.train_images), ("test", self.test_images)):
            if not np.isfinite(images).all():
                raise NasgenError(f"{data.name} holds non-finite {what} images (NaN or infinity); clean the data first")
        if len(self.train_labels) < config.batch_size:
            raise NasgenError(
                f"batch size {config.batch_size} is larger than the {len(self.train_labels)} training images"
            )
        if config.batch_size % self.mesh.size:
            raise RunError(
                f"batch size {config.batch_size} does not divide over {self.mesh.size} devices; choose --devices "
                f"among the divisors of {config.batch_size} (or another --batch-size)"
            )

    def _check_memory(self) -> None:
        data = self._dataset
        need = estimate_training_memory(
            self.config, in_channels=int(data.train_images.shape[-1]), num_classes=int(data.num_classes),
            devices=self.mesh.size,
        )
        have, what = _available_memory()
        if have is not None and need > have:
            raise RunError(
                f"this mixture needs about {need / 2**30:.1f} GiB per device for training, more than the "
                f"{have / 2**30:.1f} GiB of {what}; use a smaller --width / --width-multiplier, --batch-size, "
                "fewer networks or more --devices"
            )

    def _open_directory(self) -> None:
        out = self.output_dir
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create output directory {out} ({exc.strerror}); choose a writable path") from None
        self._lock = _RunLock(out)
        self._lock.acquire()
        # Checked again under the lock: a run that started at the same time
        # and won the lock may have written its config in the meantime.
        self._check_directory()

    def check(self) -> None:
        """Validate the directory, devices, data and memory without writing anything.

        :meth:`__enter__` calls it; a caller that writes files of its own
        before the run (an experiment) calls it first.

        Raises:
            NasgenError: as :class:`TrainingRun`.
        """
        self.mesh = data_mesh(self.devices)
        networks = len(network_names(self.config))
        programs = self.step_programs
        if programs is None:
            programs = self.step_programs = default_step_programs(networks, self.mesh.devices.flat[0].platform)
        if isinstance(programs, bool) or not isinstance(programs, int) or not 1 <= programs <= networks:
            raise RunError(f"--step-programs must be an integer from 1 to the number of networks ({networks}), "
                           f"got {programs!r}")
        self._check_directory()
        if self._dataset is None:
            self._dataset = load_dataset(self.config.dataset, self.config.data_dir)
        self._check_data()
        self._check_memory()

    def __enter__(self) -> "TrainingRun":
        self.check()
        log_path = self.output_dir / LOG_FILE
        self._cache_dir = None
        if self.compilation_cache is None:
            configured = jax.config.jax_compilation_cache_dir
            self._cache_dir = Path(configured) if configured else None
        elif self.compilation_cache not in (False, ""):
            self._cache_dir = enable_compilation_cache(
                None if self.compilation_cache is True else self.compilation_cache
            )
        self._open_directory()
        try:
            self._enter_locked(log_path)
        except BaseException:
            self._lock.release()
            raise
        return self

    def _enter_locked(self, log_path: Path) -> None:
        data = self._dataset
        records = report.read_log(log_path) if self.resume and log_path.exists() else []
        channels, classes = data.train_images.shape[-1], data.num_classes
        self.mixture, self.optimizer = create_mixture(self.config, in_channels=channels, num_classes=classes)
        self._checkpoints = _Checkpoints(self.output_dir / CHECKPOINT_DIR)
        self.start_epoch = 0
        if self.resume:
            self.start_epoch = resume_epoch([r["epoch"] for r in records], self._checkpoints.epochs())
            if self.start_epoch:
                self._checkpoints.restore(self.start_epoch, self.mixture, self.optimizer)
            metadata = _read_metadata(self.output_dir)
        else:
            metadata = {"config": self.config.to_dict(), "nasgen_run": 2}
        self._replicate_state()
        session = {
            "started": _now(), "ended": None, "start_epoch": self.start_epoch, "devices": self.mesh.size,
            "step_programs": self.step_programs,
            "processes": jax.process_count(), "device_kind": self.mesh.devices.flat[0].device_kind,
            "platform": self.mesh.devices.flat[0].platform, "command": self.command, "versions": _versions(),
        }
        metadata.setdefault("sessions", []).append(session)
        used = dataclasses.replace(
            data, train_images=self.train_images, train_labels=self.train_labels,
            test_images=self.test_images, test_labels=self.test_labels,
        )
        metadata.update(dataset=used.record(), devices=self.mesh.size)
        # Nothing on disk changes before this point, so a refused resume
        # (damaged checkpoint, bad log) leaves the directory as it was.
        if jax.process_index() == 0:
            _write_json_atomic(self.output_dir / CONFIG_FILE, metadata)
            # Records past the restored epoch are redone by this run.
            report.write_log(log_path, [r for r in records if r["epoch"] <= self.start_epoch])
        if self.resume:
            # Checkpoints past the restored epoch (their records were lost)
            # are redone; old ones a kill kept from pruning go now.
            self._checkpoints.prune(self.start_epoch)
        self._metadata = metadata

    def __exit__(self, *exc_info) -> None:
        self._checkpoints = None
        if self._lock is not None:
            self._lock.release()

    # -- devices

    def _replicate_state(self) -> None:
        """Every device of the mesh holds the whole mixture and optimiser state."""
        from jax.sharding import NamedSharding, PartitionSpec

        replicated = NamedSharding(self.mesh, PartitionSpec())
        state = nnx.state((self.mixture, self.optimizer))
        nnx.update((self.mixture, self.optimizer), jax.device_put(state, replicated))

    def _shard(self, *arrays: np.ndarray) -> list[jax.Array]:
        """Global batch arrays split over the mesh along the batch axis; each host passes only its rows."""
        from jax.sharding import NamedSharding, PartitionSpec

        sharding = NamedSharding(self.mesh, PartitionSpec("data"))
        hosts, host = jax.process_count(), jax.process_index()
        out = []
        for array in arrays:
            rows = len(array) // hosts
            local = array[host * rows : (host + 1) * rows]
            out.append(jax.make_array_from_process_local_data(sharding, local, array.shape))
        return out

    # -- training

    def _commit(self, epoch: int, record: dict) -> None:
        """Make epoch ``epoch`` durable: its log record, then its checkpoint, then pruning.

        Record first: a kill after it and before the checkpoint leaves a
        record without a checkpoint, which the resumed run drops and redoes
        (:func:`resume_epoch`); signals wait until the commit is complete.
        """
        with signals_deferred():
            if jax.process_index() == 0:
                report.append_log(self.output_dir / LOG_FILE, record)
            self._checkpoints.save(epoch, self.mixture, self.optimizer)
            self._checkpoints.prune(epoch)

    def run(self, *, on_epoch_end: Callable[[dict], None] | None = None) -> dict:
        """Train the remaining epochs, then write summary, markdown table and plots.

        Args:
            on_epoch_end: called with each epoch's log record after it is
                committed (log record and checkpoint on disk).

        Returns:
            The summary dict (see :func:`nasgen.train.report.summarize`).

        Raises:
            RunError: training diverged (a non-finite loss or alpha); the
                epoch that diverged is not committed.
        """
        from tqdm import tqdm

        config = self.config
        count = len(self.train_labels)
        steps = count // config.batch_size
        names = network_names(config)
        images_per_step = config.batch_size * len(names)
        disable = True if self.progress is False else None
        epochs = tqdm(
            range(self.start_epoch, config.epochs), initial=self.start_epoch, total=config.epochs,
            desc="epochs", unit="epoch", disable=disable, leave=True,
        )
        step_fn = None
        for epoch in epochs:
            self.mixture.train()
            order = batches(count, config.batch_size, config.seed, epoch)
            step_losses = []  # device arrays; summed on the host so no extra XLA program is compiled
            compile_seconds = 0.0
            started = time.perf_counter()
            if step_fn is None:
                # Tracing and compiling the step (or loading both from the
                # cache) and its first call are timed on their own, so that
                # img/s and the ETA below are those of the compiled step.
                index = next(order)
                batch = self._shard(self.train_images[index], self.train_labels[index])
                step_fn = FusedStep(self.mixture, self.optimizer, *batch, cache_dir=self._cache_dir,
                                    identity=config.step_identity(), programs=self.step_programs)
                losses = step_fn(*batch)
                jax.block_until_ready(losses)
                step_losses.append(losses)
                compile_seconds = time.perf_counter() - started
            first = len(step_losses)
            bar = tqdm(total=steps, initial=first, desc=f"epoch {epoch + 1}", unit="step", disable=disable, leave=False)
            if compile_seconds:
                bar.set_postfix(compile=f"{compile_seconds:.1f}s")
            timed_from = time.perf_counter()
            for step, index in enumerate(order, start=first):
                mixture_loss, network_losses = step_fn(*self._shard(self.train_images[index], self.train_labels[index]))
                step_losses.append((mixture_loss, network_losses))
                bar.update(1)
                # Reading the loss forces a device sync: do it only now and then.
                if not bar.disable and (step % 10 == 0 or step == steps - 1):
                    seconds = time.perf_counter() - timed_from
                    bar.set_postfix(
                        loss=f"{float(mixture_loss):.4f}",
                        img_s=f"{(step + 1 - first) * images_per_step / seconds:.0f}",
                        **({"compile": f"{compile_seconds:.1f}s"} if compile_seconds else {}),
                    )
            bar.close()
            step_fn.sync()
            train_losses = np.mean([np.asarray(n, np.float64) for _, n in step_losses], axis=0)
            mixture_train_loss = float(np.mean([float(m) for m, _ in step_losses]))
            ended = time.perf_counter()
            # The compiling call ran one step too; its share of the step time
            # is estimated from the mean of the other steps.
            timed_steps = steps - first
            mean_step = (ended - timed_from) / timed_steps if timed_steps else 0.0
            if compile_seconds:
                compile_seconds = max(0.0, compile_seconds - mean_step)
            train_seconds = (ended - timed_from) + mean_step * first
            accuracies, mixture_accuracy = self._evaluate()
            eval_seconds = time.perf_counter() - ended
            alpha = np.asarray(self.mixture.alpha[...], np.float64)
            if not (math.isfinite(mixture_train_loss) and np.isfinite(alpha).all() and np.isfinite(train_losses).all()):
                raise RunError(
                    f"training diverged in epoch {epoch + 1} (mixture loss {mixture_train_loss}, alpha "
                    f"{'finite' if np.isfinite(alpha).all() else 'not finite'}); epoch {epoch + 1} was not saved: "
                    "lower --learning-rate or check the data's scale"
                )
            record = report.epoch_record(
                epoch=epoch + 1, alpha=alpha, train_losses=train_losses, mixture_train_loss=mixture_train_loss,
                test_accuracies=accuracies, mixture_test_accuracy=mixture_accuracy,
                train_seconds=train_seconds,
                images_per_second=(steps * images_per_step / train_seconds) if train_seconds > 0 else 0.0,
                compile_seconds=compile_seconds, eval_seconds=eval_seconds,
            )
            self._commit(epoch + 1, record)
            epochs.set_postfix(best_acc=f"{accuracies.max():.4f}", mix_acc=f"{mixture_accuracy:.4f}")
            if bar.disable:
                _log_epoch(record, config.epochs, names)
            if on_epoch_end is not None:
                on_epoch_end(record)
        epochs.close()
        return self._write_reports(names)

    def _evaluate(self) -> tuple[np.ndarray, float]:
        # Evaluation batches are padded to a multiple of the device count.
        batch = min(self.config.eval_batch_size, len(self.test_labels))
        batch = -(-batch // self.mesh.size) * self.mesh.size
        return evaluate(self.mixture, self.test_images, self.test_labels, batch, place=self._shard)

    def _write_reports(self, names: list[str]) -> dict:
        records = report.read_log(self.output_dir / LOG_FILE)
        networks = network_table(self.config, self._dataset)
        summary = report.summarize(
            records, names=names, dataset=self._dataset.name, networks=networks,
            test_size=len(self.test_labels),
        )
        if jax.process_index() == 0:
            report.write_reports(self.output_dir, records, summary, plots=self.plots)
            self._metadata["sessions"][-1]["ended"] = _now()
            _write_json_atomic(self.output_dir / CONFIG_FILE, self._metadata)
        return summary


def _log_epoch(record: dict, epochs: int, names: Sequence[str]) -> None:
    best = int(np.argmax(record["test_accuracy"]))
    compile_note = f" (+{record['compile_seconds']:.1f} s compiling)" if record.get("compile_seconds") else ""
    logger.info(
        "epoch %d/%d: mixture loss %.4f, best %s %.4f, mixture %.4f, %.0f img/s, %.1f s%s",
        record["epoch"], epochs, record["mixture_train_loss"], names[best].split()[0], record["test_accuracy"][best],
        record["mixture_test_accuracy"], record["images_per_second"], record["train_seconds"], compile_note,
    )


def network_table(config: TrainConfig, data: Dataset) -> list[dict[str, Any]]:
    """Per network c_0..c_M: its architecture, parameters and FLOPs per example (analytic)."""
    from nasgen.nn.summary import model_stats

    space = config.search_space()
    spec = config.model_spec(in_channels=data.channels, num_classes=int(data.num_classes))
    table = []
    for arch in (config.baseline_architecture(), *config.generated_architectures()):
        total = model_stats(spec, space if config.model == "chain" else None, arch)[-1]
        table.append({"architecture": arch.to_dict(), "params": int(total["params"]), "flops": int(total["flops"])})
    return table


def network_names(config: TrainConfig) -> list[str]:
    """Display names: ``c0 (baseline)``, ``c1``..``cM``."""
    return ["c0 (baseline)"] + [f"c{i}" for i in range(1, config.num_networks)]


def train(
    config: TrainConfig,
    output_dir: str | os.PathLike,
    *,
    resume: bool = False,
    dataset: Dataset | None = None,
    progress: bool | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
    devices: int | None = None,
    compilation_cache: bool | str | os.PathLike | None = None,
    command: Sequence[str] | None = None,
    plots: bool | str = True,
    step_programs: int | None = None,
) -> dict:
    """Run (or resume) a mixture training and write its reports; returns the summary.

    Args:
        config, output_dir, resume, dataset, progress, devices,
            compilation_cache, command, plots, step_programs: as for :class:`TrainingRun`.
        on_epoch_end: called with each epoch's committed log record.

    Returns:
        The summary (see :func:`nasgen.train.report.summarize`).

    Raises:
        NasgenError: see :class:`TrainingRun` and :meth:`TrainingRun.run`.
    """
    with TrainingRun(
        config, output_dir, resume=resume, dataset=dataset, progress=progress, devices=devices,
        compilation_cache=compilation_cache, command=command, plots=plots, step_programs=step_programs,
    ) as run:
        return run.run(on_epoch_end=on_epoch_end)


SEEDS_FILE = "seeds.json"
SEEDS_SUMMARY_JSON = "seeds-summary.json"
SEEDS_SUMMARY_MD = "seeds-summary.md"


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """``"42,43,44"`` (or a list) -> distinct non-negative integer seeds.

    Raises:
        NasgenError: not a comma-separated list of distinct non-negative integers.
    """
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    seeds = []
    for part in parts:
        try:
            if isinstance(part, bool) or isinstance(part, float):
                raise ValueError
            value = int(part)
        except (TypeError, ValueError):
            raise NasgenError(f"--seeds must be comma-separated non-negative integers like 42,43,44, got {text!r}") from None
        if value < 0 or value >= 2**63:
            raise NasgenError(f"--seeds must be non-negative integers below 2**63, got {value}")
        seeds.append(value)
    if not seeds or len(set(seeds)) != len(seeds):
        raise NasgenError(f"--seeds must list at least one seed, each once, got {text!r}")
    return seeds


def train_seeds(
    config: TrainConfig, output_dir: str | os.PathLike, seeds: Sequence[int], *, resume: bool = False, **options: Any
) -> dict:
    """Train the same mixture once per seed and report mean and std across seeds (the paper's Table 3).

    Each seed's run is a complete run directory ``output_dir/seed-N`` (its
    own log, checkpoints, reports, resumable on its own); ``seeds.json``
    names the seeds and the shared settings, and ``seeds-summary.json`` /
    ``seeds-summary.md`` hold the figures across seeds (see
    :func:`nasgen.train.report.seed_summary`), and ``seeds-accuracy.FORMAT``
    each network's accuracy per seed (unless ``plots`` is False; see
    :func:`nasgen.train.report.plot_seed_figure`).

    Args:
        config: the settings; its ``seed`` is replaced by each of ``seeds``.
        output_dir: a new or empty directory (or, with ``resume``, the one a
            killed multi-seed run used).
        seeds: distinct non-negative seeds.
        resume: continue the runs in ``output_dir``; runs not yet started
            start.
        options: passed on to :func:`train` (dataset, progress, devices, ...).

    Returns:
        The across-seed summary.

    Raises:
        RunError: an unusable directory; any error of :func:`train`.
    """
    seeds = parse_seeds(seeds)
    out = Path(output_dir)
    manifest = {"seeds": seeds, "config": dataclasses.replace(config, seed=seeds[0]).to_dict()}
    if resume:
        stored = read_seed_manifest(out)
        if stored != manifest:
            raise RunError(f"{out} holds a different multi-seed run; resume it with its own settings")
    else:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise RunError(f"output directory {out} is not empty; choose a new or empty directory (nothing was overwritten)")
        # Every seed's settings are validated before anything is written.
        for seed in seeds:
            dataclasses.replace(config, seed=seed)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create output directory {out} ({exc.strerror}); choose a writable path") from None
        _write_json_atomic(out / SEEDS_FILE, manifest)
    summaries = {}
    for seed in seeds:
        run_dir = out / f"seed-{seed}"
        again = resume and (run_dir / CONFIG_FILE).exists()
        summaries[seed] = train(dataclasses.replace(config, seed=seed), run_dir, resume=again, **options)
    aggregate = report.seed_summary(summaries)
    _write_json_atomic(out / SEEDS_SUMMARY_JSON, aggregate)
    report._write_text_atomic(out / SEEDS_SUMMARY_MD, report.markdown_seed_summary(aggregate))
    figure_format = report.plot_format(options.get("plots", True))
    if figure_format is not None:
        report.write_seed_plot(out, summaries, figure_format)
    return aggregate


def read_seed_manifest(output_dir: str | os.PathLike) -> dict:
    """The ``seeds.json`` of a multi-seed run: ``{"seeds": [...], "config": {...}}``.

    Raises:
        RunError: no readable manifest there.
    """
    path = Path(output_dir) / SEEDS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{output_dir} holds no multi-seed run (no {SEEDS_FILE})") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} is unreadable ({_reason(exc)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict) or not isinstance(data.get("seeds"), list):
        raise RunError(f"{path} does not hold a multi-seed run")
    return {"seeds": parse_seeds(data["seeds"]), "config": TrainConfig.from_dict(data["config"]).to_dict()}
