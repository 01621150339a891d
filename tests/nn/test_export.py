"""nasgen.nn.export and ``nasgen export``: onnxruntime runs every network kind as Flax does.

Each check builds a network with non-trivial weights and BatchNorm running
statistics, writes it with :func:`to_onnx`, runs the file in onnxruntime on
random inputs and compares with the Flax model's own output in eval mode.
"""

from __future__ import annotations

import functools
import json

import jax
import numpy as np
import onnx
import onnxruntime
import pytest
from flax import nnx

from nasgen.common.errors import ExportError
from nasgen.nn.export import INPUT_NAME, to_onnx
from nasgen.nn.models import ModelSpec, build_model
from nasgen.nn.spec import ACTIVATIONS, resnet_space
from nasgen.samplers.registry import sample
from nasgen.space.definition import Architecture, SearchSpace
from nasgen.train import checkpoint
from tests.conftest import run_cli

TOLERANCE = 1e-4


@functools.partial(nnx.jit, static_argnums=(0, 1, 2, 3))
def _build(spec, space, arch, seed):
    # Under jit: built eagerly, every initialiser would be compiled on its own.
    return build_model(spec, space, arch, rngs=nnx.Rngs(seed))


@nnx.jit
def _forward(model, x):
    return model(x)


def _with_statistics(model, seed: int):
    """``model`` in eval mode with BatchNorm means, variances, scales and biases far from their initial 0 and 1."""
    rng = np.random.default_rng(seed)

    def perturb(path, value):
        name = str(path[-1].key if hasattr(path[-1], "key") else path[-1])
        shape = np.shape(value)
        if name == "var":
            return rng.uniform(0.3, 3.0, shape).astype(np.float32)
        if name in ("mean", "bias"):
            return rng.normal(0.0, 0.5, shape).astype(np.float32)
        if name == "scale":
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return value

    norms = nnx.state(model, nnx.BatchStat)
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree_util.tree_map_with_path(perturb, norms))
    # Only BatchNorm's scale and bias, and the biases of convolutions and dense layers: kernels keep their init.
    nnx.update(model, jax.tree_util.tree_map_with_path(perturb, params))
    model.eval()
    return model


def _session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _max_difference(model, path, batch: int, seed: int = 1) -> float:
    """max |onnxruntime - flax| on one random batch, after checking that the outputs are not trivially small."""
    shape = (batch, *(d.dim_value for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim[1:]))
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    (got,) = _session(path).run(None, {INPUT_NAME: x})
    expected = np.asarray(_forward(model, x))
    assert got.shape == expected.shape
    # outputs far above the 1e-4 tolerance (some average-pooled chains give outputs of order 0.05): a difference
    # under the tolerance then means the same function, not two near-zero ones
    assert np.abs(expected).max() > 0.01
    return float(np.abs(got - expected).max())


def _fixed_and_dynamic(model, directory, input_shape) -> float:
    """The larger max |difference| of the fixed-batch and the dynamic-batch export, on a batch of input_shape[0]."""
    fixed, dynamic = directory / "fixed.onnx", directory / "dynamic.onnx"
    to_onnx(model, fixed, input_shape)
    to_onnx(model, dynamic, input_shape, dynamic_batch=True)
    return max(_max_difference(model, fixed, input_shape[0]), _max_difference(model, dynamic, input_shape[0]))


def _chain(space, spec, seed=0):
    [arch] = sample(space, 1, seed=seed)
    return _with_statistics(_build(spec, space, arch, seed), seed)


CHAIN_SPACES = {
    "1d": SearchSpace((20,), (6,), min_layers=1, max_layers=3),
    "1d-pool": SearchSpace((24,), (5,), min_layers=2, max_layers=3, pool=(2, 1)),
    "2d": SearchSpace((12, 10), (4, 3), min_layers=2, max_layers=3, rounding="floor"),
    "2d-pool": SearchSpace((16, 16), (2, 2), min_layers=2, max_layers=2, pool=(2, 2), rounding="floor"),
    "3d": SearchSpace((8, 7, 6), (3, 3, 2), min_layers=1, max_layers=2, rounding="floor"),
    "3d-pool": SearchSpace((9, 9, 9), (2, 2, 2), min_layers=2, max_layers=2, pool=(2, 1), rounding="floor"),
}


@pytest.mark.parametrize("name, pooling", [
    *((name, "max") for name in sorted(CHAIN_SPACES)),
    *((name, "avg") for name in sorted(CHAIN_SPACES) if CHAIN_SPACES[name].pool is not None),
])
def test_chains_in_one_two_and_three_dimensions_match(tmp_path, name, pooling):
    space = CHAIN_SPACES[name]
    spec = ModelSpec.from_options("chain", width=4, in_channels=2, num_classes=5, pooling=pooling)
    model = _chain(space, spec, seed=len(name))
    assert _fixed_and_dynamic(model, tmp_path, (3, *space.input_shape, 2)) < TOLERANCE
    pools = [node.op_type for node in onnx.load(tmp_path / "fixed.onnx").graph.node if node.op_type.endswith("Pool")]
    layers = len(model.arch.kernel)
    assert pools == ([] if space.pool is None else [{"max": "MaxPool", "avg": "AveragePool"}[pooling]] * layers)


@pytest.mark.parametrize("options", [
    {"norm": None},
    {"head": "features"},
    {"head": "features", "norm": None},
    *({"activation": name} for name in ACTIVATIONS),
], ids=lambda options: ",".join(f"{k}={v}" for k, v in options.items()))
def test_every_chain_option_matches(tmp_path, options):
    space = CHAIN_SPACES["2d-pool"]
    spec = ModelSpec.from_options("chain", width=3, num_classes=4, **options)
    model = _chain(space, spec, seed=3)
    assert _fixed_and_dynamic(model, tmp_path, (2, *space.input_shape, 1)) < TOLERANCE


def _resnet(image_shape, arch=None, seed=0):
    spec = ModelSpec.from_options("resnet18", width_multiplier=1 / 16, image_shape=image_shape, init_scale="lecun",
                                  num_classes=6)
    return _with_statistics(_build(spec, None, arch, seed), seed)


def test_resnet18_matches(tmp_path):
    model = _resnet((28, 28, 1))
    assert _fixed_and_dynamic(model, tmp_path, (2, 28, 28, 1)) < TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("image_shape", [(32, 32, 3), (20, 36, 2)])
def test_resnet18_with_a_sampled_architecture_matches_for_other_input_shapes(tmp_path, image_shape):
    model = _resnet(image_shape, sample(resnet_space(image_shape), 1, seed=5)[0])
    assert _fixed_and_dynamic(model, tmp_path, (2, *image_shape)) < TOLERANCE


def test_dynamic_batch_runs_any_batch_size_and_a_fixed_batch_only_its_own(tmp_path):
    space = CHAIN_SPACES["1d-pool"]
    chain = _chain(space, ModelSpec.from_options("chain", width=3, head="features"))
    dynamic, fixed = tmp_path / "dynamic.onnx", tmp_path / "fixed.onnx"
    to_onnx(chain, dynamic, (2, *space.input_shape, 1), dynamic_batch=True)
    to_onnx(chain, fixed, (2, *space.input_shape, 1))
    for batch in (1, 7):
        assert _max_difference(chain, dynamic, batch) < TOLERANCE
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument):
        _session(fixed).run(None, {INPUT_NAME: np.zeros((7, *space.input_shape, 1), np.float32)})


def test_a_model_in_training_mode_exports_its_inference_network(tmp_path):
    space = CHAIN_SPACES["2d"]
    model = _chain(space, ModelSpec.from_options("chain", width=4))
    x = np.random.default_rng(1).normal(size=(4, *space.input_shape, 1)).astype(np.float32)
    inference = np.asarray(_forward(model, x))
    model.train()
    to_onnx(model, tmp_path / "m.onnx", x.shape)
    (got,) = _session(tmp_path / "m.onnx").run(None, {INPUT_NAME: x})
    assert np.abs(got - inference).max() < TOLERANCE
    # and the batch statistics would have given something else
    assert np.abs(got - np.asarray(model(x))).max() > 10 * TOLERANCE


def test_bad_models_and_shapes_are_refused_and_nothing_is_written(tmp_path):
    space = CHAIN_SPACES["1d"]
    model = _chain(space, ModelSpec.from_options("chain", width=2))
    target = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"takes input of shape \(batch, 20, 1\)"):
        to_onnx(model, target, (1, 21, 1))
    with pytest.raises(ExportError, match="only nasgen's ConvChain and ResNet18"):
        to_onnx(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), target, (1, 2))
    assert not target.exists()
    target.write_bytes(b"previous")
    (tmp_path / "folder").mkdir()
    with pytest.raises(Exception, match="cannot write"):
        to_onnx(model, tmp_path / "folder", None)
    with pytest.raises(Exception, match="cannot write"):
        to_onnx(model, tmp_path / "missing" / "m.onnx", None)
    assert target.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["folder", "m.onnx"]


# -- nasgen export ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_mixture(tmp_path_factory):
    """A run-like directory: ``config.json`` and ``checkpoints/`` holding a two-network mixture state."""
    run = tmp_path_factory.mktemp("export") / "run"
    space = CHAIN_SPACES["2d-pool"]
    spec = ModelSpec.from_options("chain", width=3, num_classes=4)
    networks = [_chain(space, spec, seed=seed) for seed in (0, 1)]
    checkpoint.save(run / "checkpoints", 2, {"mixture": {"networks": networks}})
    (run / "config.json").write_text(json.dumps({}))
    return run, networks


def test_cli_exports_the_chosen_network_of_a_run(tmp_path, saved_mixture):
    run, networks = saved_mixture
    target = tmp_path / "c1.onnx"
    code, out, err = run_cli("export", run, "--network", "c1", "-o", target, "--dynamic-batch")
    assert code == 0, err
    assert out.startswith(f"wrote {target}: c1 of step 2")
    assert _max_difference(networks[1], target, 3) < TOLERANCE
    assert _max_difference(networks[0], target, 3) > 10 * TOLERANCE  # the other network differs
    # the checkpoint directory itself, and the saved path as the network's name
    code, _, err = run_cli("export", run / "checkpoints", "--network", "mixture.networks.0", "-o", target,
                           "--batch-size", "2")
    assert code == 0, err
    assert _max_difference(networks[0], target, 2) < TOLERANCE


def test_cli_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, saved_mixture):
    run, _ = saved_mixture
    target = tmp_path / "m.onnx"
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "notes.txt").write_text("not a run")
    multi = tmp_path / "multi"
    (multi / "seed-3").mkdir(parents=True)
    (multi / "seeds.json").write_text("{}")
    cases = [
        (["export", empty, "-o", target], "holds no nasgen checkpoint"),
        (["export", tmp_path / "absent", "-o", target], "is not a directory"),
        (["export", tmp_path / "notes.txt", "-o", target], "is not a directory"),
        (["export", multi, "-o", target], "is a multi-seed run; export from one of its runs, e.g."),
        (["export", run, "-o", target], "holds 2 networks (c0..c1); choose one with --network"),
        (["export", run, "--network", "c7", "-o", target], "no network 'c7'"),
        (["export", run, "--network", "c0", "--step", "5", "-o", target], "no checkpoint step 5"),
        (["export", run, "--network", "c0", "--batch-size", "0", "-o", target], "--batch-size must be"),
        (["export", run, "--network", "c0", "-o", tmp_path / "missing" / "m.onnx"], "cannot write"),
        (["export", run, "--network", "c0", "-o", empty], "cannot write"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(*argv)
        assert (code, out) == (2, ""), (argv, err)
        assert err.startswith("nasgen: error: ") and err.count("\n") == 1 and message in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "multi", "notes.txt"]
    assert list(empty.iterdir()) == []
