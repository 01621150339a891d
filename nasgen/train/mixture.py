"""The softmax mixture of M+1 networks (Calhas et al. 2022, Eq. 3) and its zero-order gradients.

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

References:
    Calhas, Manquinho, Lynce. Automatic Generation of Neural Architecture
    Search Spaces. 2022, sections 5.3 and 6.3.
    Liu, Simonyan, Yang. DARTS: Differentiable Architecture Search. ICLR 2019.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nasgen.common.errors import NasgenError
from nasgen.nn.models import build_model
from nasgen.nn.spec import ModelSpec
from nasgen.space.definition import Architecture, SearchSpace
from nasgen.train.config import MIXINGS, OPTIMIZERS, TrainConfig

__all__ = [
    "Mixture",
    "build_mixture",
    "build_optimizer",
    "create_mixture",
    "kernel_mask",
    "mix",
    "mixture_gradients",
    "mixture_losses",
    "network_gradients",
    "network_seeds",
    "train_step",
]


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
    :func:`network_gradients`), so building the mixture grew quadratically
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
        (loss, z), grads = network_gradients(network, inputs, labels)
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
def network_gradients(network: nnx.Module, images: jax.Array, labels: jax.Array):
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
