"""nasgen.train.evaluation: accuracies against the eager mixture, padding, compiler options."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx


from .conftest import tiny_config


def test_evaluation_counts_as_the_eager_mixture_and_compiles_without_ynnpack_on_a_cpu(digits):
    # evaluate() runs one jitted program (nasgen's CPU options) over padded batches;
    # its accuracies are those of the mixture run eagerly on the whole test set.
    import nasgen.train.evaluation as evaluation
    from nasgen.train.evaluation import evaluate
    from nasgen.train.mixture import create_mixture
    from nasgen.train.programs import STEP_COMPILER_OPTIONS

    mixture, _ = create_mixture(tiny_config(), in_channels=digits.channels, num_classes=int(digits.num_classes))
    images, labels = digits.test_images[:100], digits.test_labels[:100]
    accuracies, mixture_accuracy = evaluate(mixture, images, labels, 64)  # 64 + 36 padded
    mixed, logits = mixture(jnp.asarray(images))
    expected = [float(np.mean(np.argmax(np.asarray(z), -1) == labels)) for z in logits]
    np.testing.assert_allclose(accuracies, expected)
    assert mixture_accuracy == pytest.approx(float(np.mean(np.argmax(np.asarray(mixed), -1) == labels)))
    graphdef, state = nnx.split(mixture)
    program = evaluation._EVAL_PROGRAMS[(graphdef, repr(sorted(STEP_COMPILER_OPTIONS.items())))]
    x, y, valid = jnp.asarray(images[:64]), jnp.asarray(labels[:64]), jnp.ones(64, bool)
    assert "ynn_fusion" not in program.lower(state, x, y, valid).compile().as_text()
