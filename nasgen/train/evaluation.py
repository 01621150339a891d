"""Test accuracy of every network of a mixture and of the mixture, in compiled batches."""

from __future__ import annotations

import collections
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nasgen.train.mixture import Mixture
from nasgen.train import programs
from nasgen.train.programs import default_compiler_options

__all__ = ["eval_step", "evaluate"]

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
        while len(_EVAL_PROGRAMS) > programs.STEPS_KEPT:
            _EVAL_PROGRAMS.popitem(last=False)
    return program


def evaluate(
    mixture: Mixture, images: np.ndarray, labels: np.ndarray, batch_size: int,
    *, place: Callable[..., Sequence[jax.Array]] | None = None,
) -> tuple[np.ndarray, float]:
    """Test accuracy of every network and of the mixture.

    The last batch is padded to ``batch_size`` (and masked) so one compiled
    step serves every batch, whatever the test set's size: the counts are
    those of the unpadded images, on any number of devices. Leaves
    ``mixture`` in eval mode.

    Args:
        mixture: the trained mixture.
        images, labels: the test set.
        batch_size: images per evaluation step. Without ``place`` it is cut
            to the test set's size; with ``place`` it is used as given, so
            the caller makes it a multiple of its devices (a test set
            smaller than that is padded up to it).
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
    if place is None:
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
            program = _eval_program(graphdef, default_compiler_options(placed[0]))
        hits, mixed_hits = program(state, *placed)
        network_correct += np.asarray(hits)
        mixture_correct += int(mixed_hits)
    return network_correct / count, mixture_correct / count
