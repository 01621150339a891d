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

import dataclasses
import functools
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nasgen import report
from nasgen.data import Dataset, batches, load_dataset
from nasgen.models import ORIGINAL_RESNET_ARCH, RESNET_INIT_SCALE, RESNET_SPACE, build_model
from nasgen.space import Architecture, ArchitectureError, NasgenError, SearchSpace, check_membership

__all__ = [
    "TrainConfig",
    "Mixture",
    "TrainingRun",
    "RunError",
    "DIGITS_SPACE",
    "DIGITS_BASELINE",
    "DATASET_DEFAULTS",
    "MIXINGS",
    "OPTIMIZERS",
    "build_mixture",
    "build_optimizer",
    "kernel_mask",
    "mixture_losses",
    "mixture_gradients",
    "train_step",
    "eval_step",
    "evaluate",
    "train",
    "read_config",
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


class RunError(NasgenError):
    """An output directory that cannot be used for the requested run."""


def _arch_dicts(archs: Sequence[Architecture | dict]) -> tuple[dict, ...]:
    out = []
    for a in archs:
        arch = a if isinstance(a, Architecture) else Architecture.from_dict(a)
        out.append(arch.to_dict())
    return tuple(out)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one mixture-training run; written to ``config.json`` beside its outputs.

    Args:
        architectures: the generated architectures c_1..c_M (Architecture or
            their dicts); stored as dicts so the config is plain JSON.
        model: ``"chain"`` (a :class:`~nasgen.models.ConvChain` per
            architecture) or ``"resnet18"`` (a ResNet-18 whose three
            downsampling blocks take each architecture).
        dataset: ``"digits"`` (bundled 8x8) or ``"mnist"``.
        space: the search space the architectures belong to (dict form); None
            picks :data:`DIGITS_SPACE` for chain runs on digits and
            :data:`~nasgen.models.RESNET_SPACE` for resnet18.
        baseline: c_0; None picks :data:`~nasgen.models.ORIGINAL_RESNET_ARCH`
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
        data_dir: where MNIST lives (see :func:`nasgen.data.load_mnist`).
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
            :data:`~nasgen.models.RESNET_INIT_SCALE` = 0.01 for resnet18,
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

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if self.model not in MODELS:
            raise NasgenError(f"model {self.model!r} is not one of {', '.join(MODELS)}")
        if self.dataset not in DATASET_DEFAULTS:
            raise NasgenError(f"dataset {self.dataset!r} is not one of {', '.join(DATASET_DEFAULTS)}")
        for name, value in DATASET_DEFAULTS[self.dataset].items():
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
        if not (isinstance(self.width_multiplier, (int, float)) and self.width_multiplier > 0):
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
            return self.space if isinstance(self.space, SearchSpace) else SearchSpace.from_dict(dict(self.space))
        if self.model == "resnet18":
            return RESNET_SPACE
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

    @property
    def num_networks(self) -> int:
        """M + 1."""
        return len(self.architectures) + 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it."""
        data = dataclasses.asdict(self)
        data["architectures"] = [dict(a) for a in self.architectures]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise NasgenError(f"unknown training settings {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**data)

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


def build_optimizer(optimizer: str, learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    """The optimiser for all networks and alpha, from optax pieces.

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


def build_mixture(config: TrainConfig, *, in_channels: int = 1, num_classes: int = 10) -> Mixture:
    """c_0 (the baseline) then c_1..c_M, each initialised from its own seed.

    Network i is initialised with ``nnx.Rngs`` seeded from ``(config.seed, i)``
    so that its initial weights do not depend on the other networks; every
    BatchNorm gets ``config.bn_momentum``.
    """
    space = config.search_space()
    archs = [config.baseline_architecture(), *config.generated_architectures()]
    networks = []
    for i, arch in enumerate(archs):
        seed = int(np.random.SeedSequence([config.seed, i]).generate_state(1)[0])
        kind_space = space if config.model == "chain" else None
        networks.append(
            build_model(
                config.model, kind_space, arch, num_classes=num_classes, in_channels=in_channels,
                width=config.width, width_multiplier=config.width_multiplier,
                init_scale=None if config.init_scale == "lecun" else config.init_scale, rngs=nnx.Rngs(jax.random.key(seed, impl="rbg")),
            )
        )
    for network in networks:
        for _, module in nnx.iter_modules(network):
            if isinstance(module, nnx.BatchNorm):
                module.momentum = config.bn_momentum
    return Mixture(networks, mixing=config.mixing)


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

        def own_loss(model, inputs=inputs):
            z = model(inputs)
            return optax.softmax_cross_entropy_with_integer_labels(z, labels).mean(), z

        (loss, z), grads = nnx.value_and_grad(own_loss, has_aux=True)(network)
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
    mixed, logits = mixture(images)
    hits = [((jnp.argmax(l, -1) == labels) & valid).sum() for l in logits]
    return jnp.stack(hits), ((jnp.argmax(mixed, -1) == labels) & valid).sum()


def evaluate(mixture: Mixture, images: np.ndarray, labels: np.ndarray, batch_size: int) -> tuple[np.ndarray, float]:
    """Test accuracy of every network and of the mixture.

    The last batch is padded to ``batch_size`` (and masked) so one compiled
    step serves every batch. Leaves ``mixture`` in eval mode.

    Returns:
        ``(accuracies (M+1,), mixture_accuracy)``.
    """
    mixture.eval()
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
        hits, mixed_hits = eval_step(mixture, jnp.asarray(x), jnp.asarray(y), jnp.asarray(valid))
        network_correct += np.asarray(hits)
        mixture_correct += int(mixed_hits)
    return network_correct / count, mixture_correct / count


# -- the run ----------------------------------------------------------------------


@functools.partial(nnx.jit, static_argnums=(0, 1, 2))
def _create(config_json: str, in_channels: int, num_classes: int) -> tuple[Mixture, nnx.Optimizer]:
    # Under one jit every initializer and optimiser slot is one XLA program
    # (eagerly, each parameter shape costs a compilation of its own), and the
    # static JSON key lets a second run with the same settings reuse it.
    config = TrainConfig.from_dict(json.loads(config_json))
    mixture = build_mixture(config, in_channels=in_channels, num_classes=num_classes)
    tx = build_optimizer(config.optimizer, config.learning_rate, config.weight_decay)
    return mixture, nnx.Optimizer(mixture, tx, wrt=nnx.Param)


def read_config(output_dir: str | os.PathLike) -> TrainConfig:
    """The config of the run stored in ``output_dir``.

    Raises:
        RunError: no readable ``config.json`` there.
    """
    path = Path(output_dir) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{output_dir} holds no training run (no {CONFIG_FILE}); nothing to resume") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RunError(f"{path} is unreadable ({exc}); cannot resume this run") from None
    return TrainConfig.from_dict(data.get("config", data))


class _Checkpoints:
    """One checkpoint per finished epoch, through :mod:`nasgen.checkpoint` (orbax).

    The state is ``{"mixture": ..., "optimizer": ...}``: parameters, BatchNorm
    statistics, alpha, the optimiser's moments and step count. Epoch e's data
    order is a function of (seed, e) alone, so this is all a resumed run needs
    to continue exactly. Only the newest ``keep`` epochs stay on disk (a
    full-width 21-network mixture is gigabytes per checkpoint).
    """

    def __init__(self, directory: Path, keep: int = 2) -> None:
        self.directory = directory
        self.keep = keep

    def latest_epoch(self) -> int | None:
        from nasgen.checkpoint import latest_step

        return latest_step(self.directory)

    def save(self, epoch: int, mixture: Mixture, optimizer: nnx.Optimizer) -> None:
        from nasgen.checkpoint import all_steps, save

        save(self.directory, epoch, {"mixture": mixture, "optimizer": optimizer}, overwrite=True)
        # Older epochs are removed only after the new one is complete on disk.
        for old in all_steps(self.directory)[: -self.keep]:
            shutil.rmtree(self.directory.resolve() / str(old), ignore_errors=True)

    def restore(self, epoch: int, mixture: Mixture, optimizer: nnx.Optimizer) -> None:
        from nasgen.checkpoint import restore

        restore(self.directory, epoch, target={"mixture": mixture, "optimizer": optimizer})


class TrainingRun:
    """One mixture-training run bound to its output directory; a context manager.

    Entering checks the directory (a fresh run refuses a directory that holds
    anything; a resumed run needs the same config there), writes
    ``config.json``, builds the networks and restores the last checkpoint when
    resuming. :meth:`run` trains the remaining epochs and writes the reports.

    Args:
        config: the run's settings.
        output_dir: where config, log, checkpoints and reports go.
        resume: continue the run already in ``output_dir`` (its config must
            equal ``config``; see :func:`read_config`).
        dataset: an already-loaded :class:`~nasgen.data.Dataset` (else it is
            loaded from ``config``).
        progress: show tqdm progress bars on stderr.

    Raises:
        RunError: the directory is not usable (one-line message; nothing
            written).
    """

    def __init__(
        self,
        config: TrainConfig,
        output_dir: str | os.PathLike,
        *,
        resume: bool = False,
        dataset: Dataset | None = None,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.output_dir = Path(output_dir)
        self.resume = resume
        self.progress = progress
        self._dataset = dataset
        self._checkpoints: _Checkpoints | None = None

    # -- directory handling

    def _check_directory(self) -> None:
        out = self.output_dir
        if out.exists() and not out.is_dir():
            raise RunError(f"output directory {out} is a file; give a directory path")
        if self.resume:
            stored = read_config(out)
            if stored != self.config:
                changed = ", ".join(stored.differences(self.config))
                raise RunError(f"{out} holds a different run (settings differ: {changed}); resume it with its own settings")
            return
        if out.exists() and any(out.iterdir()):
            if (out / CONFIG_FILE).exists():
                try:
                    stored = read_config(out)
                except NasgenError:
                    stored = None
                if stored == self.config:
                    raise RunError(f"{out} already holds this run; pass --resume {out} to continue it, or choose a new --output-dir")
                raise RunError(f"{out} holds a different run; choose a new --output-dir (nothing was overwritten)")
            raise RunError(f"output directory {out} is not empty and holds no nasgen run; choose an empty or new directory")

    def __enter__(self) -> "TrainingRun":
        self._check_directory()
        if self._dataset is None:
            self._dataset = load_dataset(self.config.dataset, self.config.data_dir)
        data = self._dataset
        space = self.config.search_space()
        expected = space.input_shape if self.config.model == "chain" else (28, 28)
        if tuple(data.image_shape) != tuple(expected):
            raise NasgenError(
                f"{self.config.model} networks take {'x'.join(map(str, expected))} inputs but "
                f"{data.name} images are {'x'.join(map(str, data.image_shape))}"
            )
        limit = lambda array, n: array if n is None else array[:n]  # noqa: E731
        self.train_images = limit(data.train_images, self.config.train_limit)
        self.train_labels = limit(data.train_labels, self.config.train_limit)
        self.test_images = limit(data.test_images, self.config.test_limit)
        self.test_labels = limit(data.test_labels, self.config.test_limit)
        if len(self.train_labels) < self.config.batch_size:
            raise NasgenError(
                f"batch size {self.config.batch_size} is larger than the {len(self.train_labels)} training images"
            )
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if not self.resume:
            (self.output_dir / CONFIG_FILE).write_text(
                json.dumps({"config": self.config.to_dict(), "nasgen_run": 1}, indent=1) + "\n", encoding="utf-8"
            )
        channels, classes = data.train_images.shape[-1], data.num_classes
        self.mixture, self.optimizer = _create(json.dumps(self.config.to_dict(), sort_keys=True), channels, classes)
        self._checkpoints = _Checkpoints(self.output_dir / CHECKPOINT_DIR)
        self.start_epoch = 0
        if self.resume:
            latest = self._checkpoints.latest_epoch()
            if latest is not None:
                self._checkpoints.restore(latest, self.mixture, self.optimizer)
                self.start_epoch = latest
        # A killed run may have logged an epoch whose checkpoint never landed:
        # keep exactly the epochs the restored state has seen.
        log_path = self.output_dir / LOG_FILE
        records = [r for r in report.read_log(log_path) if r["epoch"] <= self.start_epoch] if log_path.exists() else []
        report.write_log(log_path, records)
        return self

    def __exit__(self, *exc_info) -> None:
        self._checkpoints = None

    # -- training

    def run(self, *, on_epoch_end: Callable[[dict], None] | None = None) -> dict:
        """Train the remaining epochs, then write summary, markdown table and plots.

        Args:
            on_epoch_end: called with each epoch's log record after its
                checkpoint is saved.

        Returns:
            The summary dict (see :func:`nasgen.report.summarize`).
        """
        from tqdm import tqdm

        config = self.config
        count = len(self.train_labels)
        steps = count // config.batch_size
        names = network_names(config)
        epochs = tqdm(
            range(self.start_epoch, config.epochs), initial=self.start_epoch, total=config.epochs,
            desc="epochs", unit="epoch", disable=not self.progress, leave=True,
        )
        for epoch in epochs:
            self.mixture.train()
            # cached_partial walks the M+1 networks' object graph once per
            # epoch instead of on every call (plain nnx.jit calls spent about
            # as long on that as on the chain step itself).
            step_fn = nnx.cached_partial(train_step, self.mixture, self.optimizer)
            started = time.perf_counter()
            step_losses = []  # device arrays; summed on the host so no extra XLA program is compiled
            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}", unit="step", disable=not self.progress, leave=False)
            for step, index in enumerate(batches(count, config.batch_size, config.seed, epoch)):
                mixture_loss, network_losses = step_fn(
                    jnp.asarray(self.train_images[index]), jnp.asarray(self.train_labels[index])
                )
                step_losses.append((mixture_loss, network_losses))
                bar.update(1)
                # Reading the loss forces a device sync: do it only now and then.
                if self.progress and (step % 10 == 0 or step == steps - 1):
                    seconds = time.perf_counter() - started
                    bar.set_postfix(
                        loss=f"{float(mixture_loss):.4f}",
                        img_s=f"{(step + 1) * config.batch_size * len(names) / seconds:.0f}",
                    )
            bar.close()
            train_losses = np.mean([np.asarray(n, np.float64) for _, n in step_losses], axis=0)
            mixture_train_loss = float(np.mean([float(m) for m, _ in step_losses]))
            train_seconds = time.perf_counter() - started
            accuracies, mixture_accuracy = evaluate(
                self.mixture, self.test_images, self.test_labels, config.eval_batch_size
            )
            alpha = np.asarray(self.mixture.alpha[...], np.float64)
            record = report.epoch_record(
                epoch=epoch + 1, alpha=alpha, train_losses=train_losses, mixture_train_loss=mixture_train_loss,
                test_accuracies=accuracies, mixture_test_accuracy=mixture_accuracy,
                train_seconds=train_seconds, images_per_second=steps * config.batch_size * len(names) / train_seconds,
            )
            self._checkpoints.save(epoch + 1, self.mixture, self.optimizer)
            report.append_log(self.output_dir / LOG_FILE, record)
            epochs.set_postfix(best_acc=f"{accuracies.max():.4f}", mix_acc=f"{mixture_accuracy:.4f}")
            if on_epoch_end is not None:
                on_epoch_end(record)
        epochs.close()
        records = report.read_log(self.output_dir / LOG_FILE)
        summary = report.summarize(records, names=names, dataset=config.dataset)
        report.write_reports(self.output_dir, records, summary)
        return summary


def network_names(config: TrainConfig) -> list[str]:
    """Display names: ``c0 (baseline)``, ``c1``..``cM``."""
    return ["c0 (baseline)"] + [f"c{i}" for i in range(1, config.num_networks)]


def train(
    config: TrainConfig,
    output_dir: str | os.PathLike,
    *,
    resume: bool = False,
    dataset: Dataset | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> dict:
    """Run (or resume) a mixture training and write its reports; returns the summary.

    >>> from nasgen.core import sample
    >>> cfg = TrainConfig(architectures=sample(DIGITS_SPACE, 2, seed=0), epochs=1, width=4)  # doctest: +SKIP
    >>> train(cfg, "runs/quick")["best"]["accuracy"] > 0.1  # doctest: +SKIP
    True
    """
    with TrainingRun(config, output_dir, resume=resume, dataset=dataset, progress=progress) as run:
        return run.run(on_epoch_end=on_epoch_end)
