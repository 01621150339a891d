"""nasgen.train.evaluation: accuracies against the eager mixture, padding, compiler options."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from .conftest import ROOT, tiny_config


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


_SHARDED_EVALUATION = textwrap.dedent(
    """
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, numpy as np
    from flax import nnx
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from nasgen.train.config import TrainConfig
    from nasgen.train.data import load_digits
    from nasgen.train.evaluation import evaluate
    from nasgen.train.mixture import create_mixture
    assert jax.device_count() == 4, jax.devices()
    config = TrainConfig.from_dict(json.loads(sys.argv[1]))
    data = load_digits()
    mixture, _ = create_mixture(config, in_channels=data.channels, num_classes=int(data.num_classes))
    # 359 (the digits' test set) and 397 (odd, prime) images; 397 repeats the first 38.
    sets = {359: (data.test_images, data.test_labels),
            397: (np.concatenate([data.test_images, data.test_images[:38]]),
                  np.concatenate([data.test_labels, data.test_labels[:38]]))}
    out = {}
    for size, (images, labels) in sets.items():
        for devices in (1, 2, 3, 4):
            mesh = Mesh(np.asarray(jax.devices()[:devices]), ("data",))
            state = nnx.state(mixture)
            nnx.update(mixture, jax.device_put(state, NamedSharding(mesh, PartitionSpec())))
            rows = NamedSharding(mesh, PartitionSpec("data"))
            place = lambda *arrays: [jax.device_put(a, rows) for a in arrays]
            for batch in (64, 1000):  # padded up to a multiple of the devices, as a run does
                batch = -(-min(batch, size) // devices) * devices
                accuracies, mixed = evaluate(mixture, images, labels, batch, place=place)
                out[f"{size} {devices} {batch}"] = [list(map(float, accuracies * size)), float(mixed * size)]
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_any_test_set_size_on_any_number_of_devices_counts_as_one_device():
    config = tiny_config(epochs=1)
    done = subprocess.run([sys.executable, "-c", _SHARDED_EVALUATION, json.dumps(config.to_dict())],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    for size in (359, 397):
        # The reference: one device, batches of 64 (the last one padded).
        reference = counts[f"{size} 1 {min(64, size)}"]
        assert all(float(c).is_integer() for c in reference[0] + [reference[1]])
        for key, value in counts.items():
            if key.startswith(f"{size} "):
                assert value == reference, key
