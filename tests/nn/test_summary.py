"""Tests for nasgen.nn.summary: the analytic model view against the real Flax models and XLA.

The summary never builds a network, so each of its figures is checked here
against an independent source: parameter shapes of the built nnx module at
the row's path, shapes from ``jax.eval_shape`` and ``Architecture.conv_shapes``,
and FLOPs from XLA's cost analysis of the compiled forward pass.
"""

from __future__ import annotations

import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from nasgen.nn.models import ConvChain, ResNet18
from nasgen.nn.spec import ORIGINAL_RESNET_ARCH, RESNET_SPACE, ModelSpec, resnet_space
from nasgen.common.errors import ArchitectureError, NasgenError, SpaceError
from nasgen.space.definition import Architecture, SearchSpace
from nasgen.nn.summary import conv_taps, model_stats, summarize

CHAINS = [
    # (space, arch, options)
    (
        SearchSpace((12, 12), (3, 3), min_layers=2, max_layers=2, pool=(2, 1)),
        Architecture(kernel=((3, 3), (3, 3)), stride=((1, 1), (2, 2))),
        {},
    ),
    (
        SearchSpace((12, 12), (3, 3), min_layers=2, max_layers=2, pool=(2, 1)),
        Architecture(kernel=((3, 3), (3, 3)), stride=((1, 1), (2, 2))),
        {"norm": None, "pooling": "avg"},
    ),
    (
        SearchSpace((20,), (4,), min_layers=1, max_layers=3, rounding="floor"),
        Architecture(kernel=((5,), (3,), (3,)), stride=((2,), (1,), (1,))),
        {"in_channels": 3, "num_classes": 4},
    ),
    (
        SearchSpace((7, 6, 5), (2, 2, 2), min_layers=1, max_layers=2, pool=((2, 2), (1, 1), (2, 1)), rounding="floor", relation="any"),
        Architecture(kernel=((3, 3, 3),), stride=((1, 2, 1),)),
        {"width": 3},
    ),
]


def _module_at(model: nnx.Module, path: str):
    node = model
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def _count(node, kind) -> int:
    if not isinstance(node, nnx.Module):
        return 0
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(nnx.state(node, kind)))


def _check_rows_against_model(rows, model):
    """Every module row's params and batch stats equal those of the module at its path."""
    seen_params = 0
    seen_stats = 0
    for row in rows[1:-1]:
        if row["params"] == 0:
            continue  # pools and the global average pool own no module
        module = _module_at(model, row["name"])
        assert _count(module, nnx.Param) == row["params"], row["name"]
        assert _count(module, nnx.BatchStat) == row["batch_stats"], row["name"]
        seen_params += row["params"]
        seen_stats += row["batch_stats"]
    # ... and together they account for the whole model.
    assert seen_params == _count(model, nnx.Param) == rows[-1]["params"]
    assert seen_stats == _count(model, nnx.BatchStat) == rows[-1]["batch_stats"]


def _xla_flops(function, *args) -> float:
    analysis = nnx.jit(function).lower(*args).compile().cost_analysis()
    if isinstance(analysis, list):  # older jax returned one dict per device
        analysis = analysis[0]
    return analysis["flops"]


def test_conv_taps_by_counting():
    # SAME 3x3 on 5: outputs at 0 and 4 lose one tap each.
    assert conv_taps(5, 3, 1, 1, 5) == 5 * 3 - 2
    # Valid padding never loses a tap.
    assert conv_taps(9, 4, 2, 0, 3) == 3 * 4
    # The ResNet stem: 28 wide, 7 taps, stride 2, pad 3 -> 14 outputs; the first
    # two outputs lose 3 and 1 taps, the last loses 2.
    assert conv_taps(28, 7, 2, 3, 14) == 14 * 7 - 3 - 1 - 2


@pytest.mark.parametrize("index", range(len(CHAINS)))
def test_chain_rows_match_the_model(index):
    space, arch, options = CHAINS[index]
    spec = ModelSpec.from_options("chain", **options)
    rows = model_stats(spec, space, arch)
    model = nnx.eval_shape(lambda: ConvChain(spec, space, arch, rngs=nnx.Rngs(0)))
    _check_rows_against_model(rows, model)
    # Shapes after each conv and each pool, from space.py's own arithmetic.
    width = options.get("width", 16)
    conv_rows = [r for r in rows if r["name"].startswith("convs.")]
    pool_rows = [r for r in rows if r["name"].startswith("pool.")]
    for l, (conv_shape, pooled_shape) in enumerate(arch.conv_shapes(space)):
        assert conv_rows[l]["output_shape"] == (*conv_shape, width)
        if space.pool is not None:
            assert pool_rows[l]["output_shape"] == (*pooled_shape, width)
    x = jax.ShapeDtypeStruct((1, *space.input_shape, options.get("in_channels", 1)), jnp.float32)
    logits = nnx.eval_shape(lambda m, x: m(x), model, x)
    assert rows[-1]["output_shape"] == logits.shape[1:]


@pytest.mark.parametrize("index", range(len(CHAINS)))
def test_chain_flops_equal_xla_cost_analysis(index):
    space, arch, options = CHAINS[index]
    spec = ModelSpec.from_options("chain", **options)
    rows = model_stats(spec, space, arch)
    model = ConvChain(spec, space, arch, rngs=nnx.Rngs(0))
    model.eval()
    x = jnp.ones((1, *space.input_shape, options.get("in_channels", 1)))
    assert _xla_flops(lambda m, x: m(x), model, x) == rows[-1]["flops"]


RESNET_VARIANT = Architecture(kernel=((3, 2), (2, 4), (2, 2)), stride=((2, 1), (1, 2), (1, 1)))


@pytest.mark.parametrize("arch", [None, RESNET_VARIANT])
def test_resnet_rows_match_the_model(arch):
    spec = ModelSpec.from_options("resnet18", width_multiplier=1 / 16)
    rows = model_stats(spec, RESNET_SPACE, arch)
    model = nnx.eval_shape(lambda: ResNet18(spec, arch, rngs=nnx.Rngs(0)))
    _check_rows_against_model(rows, model)
    by_name = {r["name"]: r for r in rows}

    def shapes(model, x):
        x = nnx.relu(model.stem_bn(model.stem_conv(x)))
        x = nnx.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        found = [x]
        for block in model.blocks:
            x = block(x)
            found.append(x)
        return found, model(jnp.zeros((1, 28, 28, 1)))

    found, logits = nnx.eval_shape(shapes, model, jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32))
    assert by_name["max_pool"]["output_shape"] == found[0].shape[1:]
    for i, activation in enumerate(found[1:]):
        last_row = [r for r in rows if r["name"].startswith(f"blocks.{i}.")][-1]
        assert last_row["output_shape"] == activation.shape[1:]
    assert rows[-1]["output_shape"] == logits.shape[1:] == (10,)


def test_resnet_full_width_totals():
    spec = ModelSpec.from_options("resnet18")
    rows = model_stats(spec, None, None)
    model = nnx.eval_shape(lambda: ResNet18(spec, rngs=nnx.Rngs(0)))
    _check_rows_against_model(rows, model)
    assert rows[-1]["params"] == 9_799_114


IMAGE_SHAPES = [(28, 28, 1), (32, 32, 3), (64, 64, 3), (224, 224, 3), (17, 17, 1), (40, 24, 2)]


@pytest.mark.parametrize("image_shape", IMAGE_SHAPES)
def test_resnet_rows_match_the_model_for_any_input(image_shape):
    """Parameters, batch statistics and every block's output shape agree with the built network."""
    spec = ModelSpec.from_options("resnet18", width_multiplier=1 / 16, image_shape=image_shape, num_classes=7)
    space = resnet_space(image_shape)
    # A drawn member of the input's space as well as the original blocks.
    from nasgen import sample

    for arch in (None, *sample(space, 2, seed=sum(image_shape))):
        rows = model_stats(spec, space, arch)
        model = nnx.eval_shape(lambda: ResNet18(spec, arch, rngs=nnx.Rngs(0)))
        _check_rows_against_model(rows, model)

        def shapes(model, x):
            found = []
            x = nnx.relu(model.stem_bn(model.stem_conv(x)))
            x = nnx.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
            assert x.shape[1:3] == space.input_shape  # the stem leaves the space's input
            for block in model.blocks:
                x = block(x)
                found.append(x)
            return found

        x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
        found = nnx.eval_shape(shapes, model, x)
        # The last block leaves the space's output shape, as resnet_space promises.
        assert found[-1].shape[1:3] == space.output_shape
        for i, activation in enumerate(found):
            last_row = [r for r in rows if r["name"].startswith(f"blocks.{i}.")][-1]
            assert last_row["output_shape"] == activation.shape[1:]
        assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (1, 7) == (1, *rows[-1]["output_shape"])


@pytest.mark.slow
def test_resnet_flops_equal_xla_per_block_and_agree_in_total(monkeypatch):
    # XLA counts the FLOPs of the convolutions as lax states them. On a CPU the
    # models compute small convolutions as two dots (nasgen.nn.models.conv_general_dilated),
    # and XLA would count the dot that gathers the windows as well: compare against lax's convolutions.
    import nasgen.nn.models

    monkeypatch.setattr(nasgen.nn.models, "_selection_plan", lambda *args: None)
    spec = ModelSpec.from_options("resnet18", width_multiplier=1 / 16)
    rows = model_stats(spec, RESNET_SPACE, RESNET_VARIANT)
    model = ResNet18(spec, RESNET_VARIANT, rngs=nnx.Rngs(0))
    model.eval()

    def block_flops(prefix):
        return sum(r["flops"] for r in rows if r["name"].startswith(prefix))

    def stem(model, x):
        x = nnx.relu(model.stem_bn(model.stem_conv(x)))
        return nnx.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

    x = jnp.ones((1, 28, 28, 1))
    assert _xla_flops(stem, model, x) == block_flops("stem_") + block_flops("max_pool")
    h = stem(model, x)
    # One block of each kind (basic, downsampling at each stage) compiled alone.
    for i, block in enumerate(model.blocks):
        if i in (1, 2, 4, 6):
            assert _xla_flops(lambda b, x: b(x), block, h) == block_flops(f"blocks.{i}."), i
        h = block(h)
    assert _xla_flops(lambda m, x: m.head(jnp.mean(x, axis=(1, 2))), model, h) == block_flops("global_avg_pool") + block_flops("head")
    # Compiled whole, XLA's fusion may duplicate cheap elementwise work into
    # several consumers and count it again, so the totals agree to within 2%.
    whole = _xla_flops(lambda m, x: m(x), model, x)
    assert abs(whole - rows[-1]["flops"]) <= 0.02 * whole


def test_summarize_lists_every_row_and_the_totals():
    space, arch, options = CHAINS[0]
    spec = ModelSpec.from_options("chain", **options)
    rows = model_stats(spec, space, arch)
    text = summarize(spec, space, arch)
    lines = text.splitlines()
    for row in rows[1:-1]:
        matching = [line for line in lines if line.split()[:1] == [row["name"]]]
        assert len(matching) == 1
        assert f"{row['params']:,}" in matching[0] and f"{row['flops']:,}" in matching[0]
    assert f"Trainable params: {rows[-1]['params']:,}" in lines
    assert f"FLOPs per example (inference): {rows[-1]['flops']:,}" in lines
    resnet = summarize(ModelSpec.from_options("resnet18"))
    assert "Trainable params: 9,799,114" in resnet.splitlines()
    assert ORIGINAL_RESNET_ARCH.to_json() in resnet
    cifar = summarize(ModelSpec.from_options("resnet18", image_shape=(32, 32, 3)))
    assert "ResNet18 on 32x32x3" in cifar.splitlines()[0]


def test_a_kind_name_in_place_of_a_spec_is_refused_in_one_line():
    """The form before specs (model_stats(space, arch, model=kind, ...)) is gone: one line names the way in."""
    space, arch, _ = CHAINS[2]
    with pytest.raises(NasgenError, match=r"model_stats takes a ModelSpec first \(ModelSpec.from_options\(kind, ...\)\), got SearchSpace"):
        model_stats(space, arch)
    with pytest.raises(NasgenError, match=r"summarize takes a ModelSpec first \(ModelSpec.from_options\('chain', ...\)\)"):
        summarize("chain", space, arch)
    with pytest.raises(TypeError):
        model_stats(ModelSpec.from_options("chain"), space, arch, width=3)


def test_summary_imports_no_jax():
    code = "import sys, nasgen.nn.summary, nasgen.nn.spec; print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax', 'jaxlib')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_model_stats_refuses_bad_input():
    space, arch, _ = CHAINS[0]
    chain = ModelSpec.from_options("chain")
    with pytest.raises(ArchitectureError, match="layer 2, dimension 0"):
        model_stats(chain, space, Architecture(kernel=((3, 3), (11, 3)), stride=((1, 1), (1, 1))))
    with pytest.raises(NasgenError, match="model kind 'vgg'"):
        ModelSpec.from_options("vgg")
    with pytest.raises(SpaceError, match="7x7 -> 1x1"):
        model_stats(ModelSpec.from_options("resnet18"), space, arch)
    with pytest.raises(SpaceError, match="on 32x32 input needs a 8x8 -> 1x1"):
        model_stats(ModelSpec.from_options("resnet18", image_shape=(32, 32)), RESNET_SPACE, None)
    with pytest.raises(NasgenError, match="needs both"):
        model_stats(chain, space, None)
    with pytest.raises(NasgenError, match="pooling 'min'"):
        ModelSpec.from_options("chain", pooling="min")


# -- training memory estimate (issue 13: refuse what cannot fit before compiling) ------


def _xla_training_bytes(spec, space, arch, batch):
    """Bytes XLA's memory analysis reports for one compiled Adam training step of the built network."""
    import optax

    from nasgen.nn.models import build_model

    model = build_model(spec, space, arch, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    def step(model, optimizer, x, y):
        loss = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()  # noqa: E731
        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    x = jnp.zeros((batch, *spec.image_shape(space)))
    y = jnp.zeros((batch,), jnp.int32)
    analysis = nnx.jit(step).lower(model, optimizer, x, y).compile().memory_analysis()
    return (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes
            - analysis.alias_size_in_bytes)


MEMORY_CASES = [
    pytest.param(
        ModelSpec.from_options("chain", width=32),
        SearchSpace((28, 28), (4, 4), min_layers=2, max_layers=2, rounding="floor"),
        Architecture(kernel=((5, 5), (5, 5)), stride=((2, 2), (2, 2))),
        128,
        id="chain",
    ),
    pytest.param(
        ModelSpec.from_options("resnet18", width_multiplier=1 / 8, image_shape=(32, 32, 3)), None, None, 32,
        id="resnet-32x32x3", marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize("spec, space, arch, batch", MEMORY_CASES)
def test_training_memory_estimate_is_near_xla_memory_analysis(spec, space, arch, batch):
    """Within a factor 1.5 of what XLA allocates for the compiled step (measured: 0.9-1.02)."""
    from nasgen.nn.summary import estimate_training_bytes

    estimate = estimate_training_bytes(spec, space, [arch], batch)
    measured = _xla_training_bytes(spec, space, arch, batch)
    assert measured / 1.5 <= estimate <= measured * 1.5


def test_training_memory_parts_follow_from_the_table():
    from nasgen import sample
    from nasgen.nn.summary import estimate_training_bytes, training_memory

    spec = ModelSpec.from_options("resnet18", width_multiplier=0.25)
    archs = [None, *sample(RESNET_SPACE, 3, seed=1)]
    tables = [model_stats(spec, RESNET_SPACE, a) for a in archs]
    params = sum(t[-1]["params"] for t in tables)
    stats = sum(t[-1]["batch_stats"] for t in tables)
    elements = sum(math.prod(r["output_shape"]) for t in tables for r in t[1:-1])
    memory = training_memory(spec, RESNET_SPACE, archs, 100)
    assert memory["parameters"] == 4 * (params + stats)
    assert memory["optimizer"] == 4 * 3 * params  # gradient + Adam's two moments
    assert memory["activations"] == 4 * 2 * 100 * elements
    assert memory["inputs"] == 4 * 100 * 28 * 28
    assert memory["total"] == sum(v for k, v in memory.items() if k != "total") == estimate_training_bytes(spec, RESNET_SPACE, archs, 100)
    # Activations grow with the batch, the rest does not.
    double = training_memory(spec, RESNET_SPACE, archs, 200)
    assert double["activations"] == 2 * memory["activations"] and double["optimizer"] == memory["optimizer"]
    # --width 100000 on a small chain space: far beyond any machine (over a terabyte).
    space, arch, _ = CHAINS[0]
    assert estimate_training_bytes(ModelSpec.from_options("chain", width=100_000), space, [arch], 512) > 2**40
    with pytest.raises(NasgenError, match="batch size must be a positive integer, got 0"):
        estimate_training_bytes(spec, None, [None], 0)
    with pytest.raises(NasgenError, match="at least one architecture"):
        estimate_training_bytes(spec, None, [], 8)
