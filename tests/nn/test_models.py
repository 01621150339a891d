"""Tests for nasgen.nn.models: shapes, parameter counts, train/eval modes, bad input.

Architectures are drawn by brute-force enumeration written here from the
convolution formula alone, so the models are checked against an independent
shape computation rather than against nasgen's own arithmetic.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import nasgen
from nasgen.nn.models import ConvChain, ResNet18, build_model, max_pool
from nasgen.nn.spec import (
    BN_MOMENTUM,
    LECUN,
    ORIGINAL_RESNET_ARCH,
    RESNET_BASELINE_SPACE,
    RESNET_INIT_SCALE,
    RESNET_SPACE,
    ModelSpec,
    resnet_space,
    resnet_widths,
)
from nasgen.common.errors import ArchitectureError, NasgenError, SpaceError
from nasgen.space.definition import Architecture, SearchSpace


def _chain(space, arch, *, rngs, **options):
    return ConvChain(ModelSpec.from_options("chain", **options), space, arch, rngs=rngs)


def _resnet(arch=None, *, rngs, **options):
    return ResNet18(ModelSpec.from_options("resnet18", **options), arch, rngs=rngs)

# -- an independent brute-force enumerator ------------------------------------


def _size_after(size: int, kernel: int, stride: int, rounding: str) -> int | None:
    """Valid-padding window arithmetic written out from its definition."""
    if kernel > size:
        return None
    if rounding == "exact" and (size - kernel) % stride != 0:
        return None
    # Count the window positions one by one instead of using the closed form.
    return len(range(0, size - kernel + 1, stride))


def _relation_ok(kernel: int, stride: int, relation: str) -> bool:
    return {"gt": kernel > stride, "ge": kernel >= stride, "any": True}[relation]


def _dimension_chains(space: SearchSpace, dim: int, size: int, layers: int):
    """Every tuple of (k, s) per layer taking ``size`` to the output size in dimension ``dim``."""
    if layers == 0:
        if size == space.output_shape[dim]:
            yield ()
        return
    for stride in range(1, size + 1):
        for kernel in range(1, size + 1):
            if not _relation_ok(kernel, stride, space.relation):
                continue
            after = _size_after(size, kernel, stride, space.rounding)
            if after is not None and space.pool is not None:
                pool_kernel, pool_stride = space.pool[dim]
                after = _size_after(after, pool_kernel, pool_stride, space.rounding)
            if after is None:
                continue
            for rest in _dimension_chains(space, dim, after, layers - 1):
                yield ((kernel, stride),) + rest


def brute_force_architectures(space: SearchSpace) -> list[Architecture]:
    """All members of a small, non-square space without kernel/stride ranges."""
    assert not space.square and space.kernel_range is None and space.stride_range is None
    found = []
    for layers in range(space.min_layers, space.max_layers + 1):
        per_dim = [list(_dimension_chains(space, d, space.input_shape[d], layers)) for d in range(space.dims)]
        for combo in itertools.product(*per_dim):
            kernel = tuple(tuple(combo[d][l][0] for d in range(space.dims)) for l in range(layers))
            stride = tuple(tuple(combo[d][l][1] for d in range(space.dims)) for l in range(layers))
            found.append(Architecture(kernel=kernel, stride=stride))
    return found


def random_small_spaces(seed: int, wanted: int) -> list[tuple[SearchSpace, list[Architecture]]]:
    """Seeded random spaces with 1-3 dims, pool on/off, both roundings, each with members."""
    rng = np.random.default_rng(seed)
    spaces = []
    combos = itertools.cycle(itertools.product((1, 2, 3), (False, True), ("exact", "floor")))
    while len(spaces) < wanted:
        dims, pooled, rounding = next(combos)
        for _ in range(50):  # retry until the drawn space has members
            inputs = tuple(int(v) for v in rng.integers(5, 11 if dims < 3 else 8, size=dims))
            outputs = tuple(int(rng.integers(1, i // 2 + 1)) for i in inputs)
            max_layers = int(rng.integers(1, 3 if dims > 1 else 4))
            pool = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if pooled else None
            space = SearchSpace(
                inputs,
                outputs,
                min_layers=1,
                max_layers=max_layers,
                pool=pool,
                rounding=rounding,
                relation=str(rng.choice(["gt", "ge", "any"])),
            )
            members = brute_force_architectures(space)
            if members:
                picks = rng.choice(len(members), size=min(3, len(members)), replace=False)
                spaces.append((space, [members[i] for i in sorted(picks)]))
                break
    return spaces


SMALL_SPACES = random_small_spaces(seed=20221, wanted=24)


def _features_shape(space: SearchSpace, arch: Architecture, width: int, batch: int = 2):
    x = jax.ShapeDtypeStruct((batch, *space.input_shape, 1), jnp.float32)

    def build_and_run(x):
        model = _chain(space, arch, width=width, head="features", rngs=nnx.Rngs(0))
        return model(x)

    return nnx.eval_shape(build_and_run, x).shape


# -- chain networks --------------------------------------------------------------


def test_brute_force_agrees_with_check_membership():
    # The enumerator above is the test oracle: every member it yields must pass
    # nasgen's own membership check, and on a 1-D space a tampered member must not.
    space = SearchSpace((9,), (3,), min_layers=1, max_layers=2, rounding="floor", relation="any")
    members = brute_force_architectures(space)
    assert len(members) > 10
    for arch in members:
        arch.shapes(space)  # raises if not a member
    member_set = set(members)
    for kernel in range(1, 10):
        for stride in range(1, 10):
            arch = Architecture(kernel=((kernel,),), stride=((stride,),))
            expected = _size_after(9, kernel, stride, "floor") == 3
            assert (arch in member_set) == expected


def test_random_spaces_cover_the_requested_kinds():
    kinds = {(s.dims, s.pool is not None, s.rounding) for s, _ in SMALL_SPACES}
    assert len(kinds) == 12


@pytest.mark.parametrize("index", range(len(SMALL_SPACES)))
def test_chain_feature_map_has_the_output_shape(index):
    space, archs = SMALL_SPACES[index]
    for arch in archs:
        assert _features_shape(space, arch, width=3) == (2, *space.output_shape, 3)


@pytest.mark.parametrize("index", range(0, len(SMALL_SPACES), 4))
def test_chain_forward_pass_runs(index):
    space, archs = SMALL_SPACES[index]
    arch = archs[0]
    model = _chain(space, arch, num_classes=5, in_channels=2, width=4, rngs=nnx.Rngs(index))
    x = jax.random.normal(jax.random.key(index), (3, *space.input_shape, 2))
    logits = nnx.jit(lambda m, x: m(x))(model, x)
    assert logits.shape == (3, 5)
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_chain_without_norm_and_with_avg_pool():
    space = SearchSpace((10, 10), (2, 2), min_layers=2, max_layers=2, pool=(2, 1), rounding="floor")
    arch = Architecture(kernel=((3, 3), (3, 3)), stride=((1, 1), (2, 2)))
    model = _chain(space, arch, norm=None, pooling="avg", width=2, rngs=nnx.Rngs(0))
    assert len(model.norms) == 0
    # Without a norm the convolutions keep their bias.
    assert model.convs[0].bias is not None
    x = jnp.ones((1, 10, 10, 1))
    assert model(x).shape == (1, 10)
    features = _chain(space, arch, norm=None, pooling="avg", width=2, head="features", rngs=nnx.Rngs(0))
    assert features(x).shape == (1, 2, 2, 2)


def test_chain_rejects_wrong_input_shape():
    space = SearchSpace((8,), (4,))
    arch = Architecture(kernel=((5,),), stride=((1,),))
    model = _chain(space, arch, width=2, rngs=nnx.Rngs(0))
    with pytest.raises(NasgenError, match=r"\(batch, 8, 1\)"):
        model(jnp.ones((2, 9, 1)))


# -- ResNet-18 ------------------------------------------------------------------


def test_resnet_space_and_original():
    assert RESNET_SPACE.input_shape == (7, 7) and RESNET_SPACE.output_shape == (1, 1)
    assert RESNET_SPACE.min_layers == RESNET_SPACE.max_layers == 3
    assert RESNET_SPACE.rounding == "floor" and RESNET_SPACE.relation == "gt"
    assert ORIGINAL_RESNET_ARCH.shapes(RESNET_BASELINE_SPACE) == [(7, 7), (4, 4), (2, 2), (1, 1)]
    with pytest.raises(ArchitectureError):
        ORIGINAL_RESNET_ARCH.shapes(RESNET_SPACE)
    members = brute_force_architectures(RESNET_SPACE)
    assert len(members) == 28**2  # 28 chains 7 -> 1 per dimension with k > s
    for arch in members:
        assert all(k > s for row_k, row_s in zip(arch.kernel, arch.stride) for k, s in zip(row_k, row_s))


def _resnet_logits_shape(arch, batch=3, width_multiplier=1 / 16):
    x = jax.ShapeDtypeStruct((batch, 28, 28, 1), jnp.float32)
    return nnx.eval_shape(lambda x: _resnet(arch, width_multiplier=width_multiplier, rngs=nnx.Rngs(0))(x), x).shape


def test_resnet_logits_shape_for_original_and_drawn_architectures():
    members = brute_force_architectures(RESNET_SPACE)
    rng = np.random.default_rng(7)
    drawn = [members[i] for i in rng.choice(len(members), size=3, replace=False)]
    # Also the sampler the training runs use; its draws must be true members.
    sampled = nasgen.sample(RESNET_SPACE, 3, seed=3)
    assert set(sampled) <= set(members)
    for arch in [None, ORIGINAL_RESNET_ARCH, *drawn, *sampled]:
        assert _resnet_logits_shape(arch) == (3, 10)


@pytest.mark.parametrize("index", range(1, len(SMALL_SPACES), 3))
def test_chains_from_the_core_sampler(index):
    space, _ = SMALL_SPACES[index]
    members = set(brute_force_architectures(space))
    assert nasgen.count(space) == len(members)
    for arch in nasgen.sample(space, 3, seed=index):
        assert arch in members
        assert _features_shape(space, arch, width=2) == (2, *space.output_shape, 2)


def _hand_counted_resnet18_params(in_channels: int, num_classes: int) -> int:
    """Parameters of the original network, counted from its layer list.

    Each entry is (kernel area, in channels, out channels) of a bias-free conv;
    every conv is followed by a BatchNorm with a scale and a bias per channel.
    """
    convs = [(49, in_channels, 64)]  # stem 7x7
    convs += [(9, 64, 64)] * 4  # stage 1: two basic blocks of two 3x3 convs
    for c_in, c_out in ((64, 128), (128, 256), (256, 512)):
        convs += [(1, c_in, c_out), (9, c_out, c_out), (1, c_in, c_out)]  # downsampling: (1,2) conv, 3x3, shortcut (1,2)
        convs += [(9, c_out, c_out)] * 2  # second basic block
    conv_weights = sum(area * c_in * c_out for area, c_in, c_out in convs)
    batch_norms = sum(2 * c_out for _, _, c_out in convs)
    dense = 512 * num_classes + num_classes
    return conv_weights + batch_norms + dense


def _param_count(model: nnx.Module) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_resnet_original_parameter_count_matches_hand_count():
    model = nnx.eval_shape(lambda: _resnet(rngs=nnx.Rngs(0)))
    assert _param_count(model) == _hand_counted_resnet18_params(1, 10) == 9_799_114
    model = nnx.eval_shape(lambda: _resnet(in_channels=3, num_classes=7, rngs=nnx.Rngs(0)))
    assert _param_count(model) == _hand_counted_resnet18_params(3, 7)


def test_resnet_width_multiplier():
    assert resnet_widths(1.0) == (64, 128, 256, 512)
    assert resnet_widths(0.25) == (16, 32, 64, 128)
    assert resnet_widths(0.001) == (1, 1, 1, 1)
    with pytest.raises(NasgenError, match="width_multiplier"):
        resnet_widths(0)


def test_resnet_generated_blocks_use_the_architecture():
    arch = Architecture(kernel=((3, 2), (2, 4), (2, 2)), stride=((2, 1), (1, 2), (1, 1)))
    model = nnx.eval_shape(lambda: _resnet(arch, width_multiplier=1 / 16, rngs=nnx.Rngs(0)))
    downsampling = [model.blocks[i] for i in (2, 4, 6)]
    for l, block in enumerate(downsampling):
        assert block.conv1.kernel_size == arch.kernel[l] and block.conv1.strides == arch.stride[l]
        assert block.shortcut_conv.kernel_size == arch.kernel[l]
        assert block.conv2.kernel_size == (3, 3) and block.conv2.padding == "SAME"


# -- train/eval modes ----------------------------------------------------------------


def test_batch_norm_uses_batch_statistics_in_train_and_running_averages_in_eval():
    space = SearchSpace((6,), (2,), min_layers=1, max_layers=1)
    arch = Architecture(kernel=((5,),), stride=((1,),))
    model = _chain(space, arch, width=2, head="features", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (8, 6, 1)) * 3.0 + 5.0
    mean_before = np.asarray(model.norms[0].mean.get_value())
    model.train()
    train_out = model(x)
    mean_after = np.asarray(model.norms[0].mean.get_value())
    assert not np.allclose(mean_before, mean_after)  # running mean moved
    # In train mode an example's output depends on the rest of the batch ...
    assert not np.allclose(model(x[:4])[0], train_out[0])
    mean_after = np.asarray(model.norms[0].mean.get_value())
    model.eval()
    # ... in eval mode it does not, and the running mean stays put.
    eval_out = model(x)
    np.testing.assert_allclose(model(x[:4])[0], eval_out[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(model.norms[0].mean.get_value()), mean_after)


def test_bn_momentum_reaches_every_batch_norm():
    def momenta(model):
        return {m.momentum for _, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm)}

    resnet = nnx.eval_shape(lambda: build_model(ModelSpec.from_options("resnet18", width_multiplier=1 / 16, bn_momentum=0.8), None, None, rngs=nnx.Rngs(0)))
    assert momenta(resnet) == {0.8}
    assert sum(isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(resnet)) == 1 + 2 * 2 + 3 * 3 + 3 * 2  # stem, stage 1, downsampling blocks, their basic blocks
    arch = Architecture(kernel=((3, 3), (3, 3)), stride=((2, 2), (1, 1)))
    chain = nnx.eval_shape(lambda: build_model(ModelSpec.from_options("chain", bn_momentum=0.5), CHAIN_SPACE, arch, rngs=nnx.Rngs(0)))
    assert momenta(chain) == {0.5}
    # One default everywhere: a spec's is the one a training run (and `nasgen train --bn-momentum`) uses.
    assert momenta(nnx.eval_shape(lambda: _resnet(width_multiplier=1 / 16, rngs=nnx.Rngs(0)))) == {BN_MOMENTUM} == {0.9}
    from nasgen.train.config import TrainConfig

    assert TrainConfig.from_dict({"architectures": []}).network.bn_momentum == BN_MOMENTUM
    with pytest.raises(NasgenError, match=r"bn_momentum must be a number in \[0, 1\)"):
        _chain(CHAIN_SPACE, arch, bn_momentum=1.0, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("shape", [(8, 7, 7, 16), (64, 5), (4, 3, 3, 3, 2)])
def test_batch_norm_matches_flax_values_gradients_and_running_averages(shape):
    """nasgen's BatchNorm (one custom-gradient op in training) against nnx.BatchNorm (autodiff).

    Feature 0 is constant, so its variance clips at 0; the loss also uses the
    updated running mean, so the statistics' own gradients are checked too.
    """
    from nasgen.nn.models import BatchNorm

    x = jax.random.normal(jax.random.key(0), shape) * 3.0 + 1.0
    x = x.at[..., 0].set(2.0)
    weights = jax.random.normal(jax.random.key(1), shape)
    features = shape[-1]

    def loss(bn, x):
        return (jnp.tanh(bn(x)) * weights).sum() + (bn.mean[...] ** 2).sum() + bn.var[...].sum()

    results = []
    for cls in (BatchNorm, nnx.BatchNorm):
        bn = cls(features, momentum=0.9, rngs=nnx.Rngs(0))
        bn.scale[...] = jnp.linspace(0.5, 2.0, features)
        bn.bias[...] = jnp.linspace(-1.0, 1.0, features)
        (bn_grads, x_grad) = nnx.grad(loss, argnums=(0, 1))(bn, x)
        y = bn(x)  # a second training step: running averages move again
        results.append([y, x_grad, bn_grads["scale"][...], bn_grads["bias"][...], bn.mean[...], bn.var[...]])
        bn.eval()
        results[-1].append(bn(x))
    names = ["y", "dx", "dscale", "dbias", "running mean", "running var", "eval y"]
    for ours, flax_, name in zip(*results, names, strict=True):
        scale = float(jnp.abs(flax_).max())
        np.testing.assert_allclose(np.asarray(ours), np.asarray(flax_), rtol=1e-5, atol=1e-6 * scale, err_msg=name)


def _kernel_variances(model):
    """(empirical variance, fan_in) of every conv and dense kernel."""
    out = []
    for _, m in nnx.iter_modules(model):
        if isinstance(m, (nnx.Conv, nnx.Linear)):
            k = np.asarray(m.kernel[...], np.float64)
            out.append((k.var(), int(np.prod(k.shape[:-1]))))
    return out


@pytest.mark.parametrize(
    "shape, window, strides, padding",
    [
        ((3, 9, 9, 2), (3, 3), (2, 2), ((1, 1), (1, 1))),  # the ResNet stem's pool
        ((2, 10, 7, 3), (2, 3), (2, 1), "VALID"),
        ((2, 11, 3), (4,), (3,), ((2, 1),)),
        ((2, 6, 5, 4, 2), (2, 2, 3), (1, 2, 1), "SAME"),
        ((1, 5, 5, 1), (5, 5), (1, 1), "VALID"),
    ],
)
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_matches_flax_values_and_gradients(shape, window, strides, padding, ties):
    """Same outputs and same vector-Jacobian products as nnx.max_pool (JAX's reduce_window rule).

    With ties (values drawn from {0, 1, 2}, as after a ReLU) both give each
    window's cotangent to its first maximum, so the gradients agree too.
    """
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(0, 3, shape) if ties else rng.normal(size=shape)
    x = jnp.asarray(x, jnp.float32)
    y_ref, vjp_ref = jax.vjp(lambda a: nnx.max_pool(a, window, strides, padding), x)
    y, vjp = jax.vjp(lambda a: max_pool(a, window, strides, padding), x)
    np.testing.assert_array_equal(y, y_ref)
    g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    (grad,), (grad_ref,) = vjp(g), vjp_ref(g)
    # Overlapping windows may add the same cotangents in another order.
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-6, atol=1e-6)
    # Every cotangent lands somewhere: the gradient's total is the cotangents' total.
    assert float(grad.sum()) == pytest.approx(float(g.sum()), rel=1e-5, abs=1e-5)
    # Under jit and inside jax.grad of a scalar loss, too.
    loss = lambda f: jax.jit(jax.grad(lambda a: (f(a, window, strides, padding) ** 2).sum()))
    np.testing.assert_allclose(loss(max_pool)(x), loss(nnx.max_pool)(x), rtol=1e-6, atol=1e-6)


_SMALL_CONVS = [
    # (input shape, kernel window, strides, padding): each window covers more
    # positions than the input or than the output (XLA's CPU compiler swaps
    # such a convolution's operands and then loops over it element by element).
    ((3, 1, 1, 5), (3, 3), (1, 1), "SAME"),  # ResNet-18's last stage on MNIST: only the centre sees data
    ((3, 2, 3, 5), (3, 3), (1, 1), "SAME"),
    ((3, 7, 7, 5), (4, 4), (2, 2), "VALID"),  # a generated downsampling layer: 2x2 out of a 4x4 window
    ((3, 6, 5, 5), (5, 4), (4, 1), "VALID"),
    ((3, 2, 2, 2), (3, 2), (1, 2), ((2, 0), (1, 1))),
    ((2, 9, 4), (7,), (1,), "VALID"),
    ((2, 3, 3, 2, 4), (3, 3, 3), (1, 1, 1), "SAME"),
]


def _lax_conv(x, w, strides, padding):
    spec = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}[w.ndim - 2]
    numbers = jax.lax.conv_dimension_numbers(x.shape, w.shape, spec)
    return numbers, jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=numbers,
                                                 precision=jax.lax.Precision.HIGHEST)


@pytest.mark.parametrize("shape, window, strides, padding", _SMALL_CONVS)
def test_small_convolutions_as_dots_match_lax_values_and_gradients(shape, window, strides, padding):
    """The models' conv_general_dilated computes these as dots, with lax's values and gradients."""
    from nasgen.nn.models import _selection_plan, conv_general_dilated

    rng = np.random.default_rng(sum(shape) + sum(window))
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=(*window, shape[-1], 16)), jnp.float32)
    numbers, _ = _lax_conv(x, w, strides, padding)
    # The dot form is the one taken (on this CPU), not lax's convolution.
    assert _selection_plan(x, w, strides, padding, None, None, numbers, 1, {}) is not None

    def ours(a, b):
        return conv_general_dilated(a, b, strides, padding, dimension_numbers=numbers,
                                    precision=jax.lax.Precision.HIGHEST)

    def theirs(a, b):
        return _lax_conv(a, b, strides, padding)[1]

    y, vjp = jax.vjp(ours, x, w)
    y_ref, vjp_ref = jax.vjp(theirs, x, w)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    for grad, grad_ref in zip(vjp(g), vjp_ref(g)):
        np.testing.assert_allclose(grad, grad_ref, rtol=1e-5, atol=1e-4)
    # No convolution is left in the compiled gradient for XLA to swap.
    text = jax.jit(jax.grad(lambda a, b: (ours(a, b) ** 2).sum(), (0, 1))).lower(x, w).compile().as_text()
    assert "convolution(" not in text


def test_other_convolutions_stay_lax_convolutions():
    """Windows no larger than the input and the output, dilations and feature groups go to lax unchanged."""
    from nasgen.nn.models import _selection_plan, conv_general_dilated

    x = jnp.ones((2, 7, 7, 4), jnp.float32)
    w = jnp.ones((3, 3, 4, 4), jnp.float32)
    numbers, y_ref = _lax_conv(x, w, (1, 1), "SAME")
    assert _selection_plan(x, w, (1, 1), "SAME", None, None, numbers, 1, {}) is None
    assert _selection_plan(x, w, (1, 1), "SAME", None, (2, 2), numbers, 1, {}) is None
    assert _selection_plan(x, jnp.ones((3, 3, 2, 4)), (1, 1), "SAME", None, None, numbers, 2, {}) is None
    # A window larger than the output, but an input so large that gathering its windows
    # by a dot would cost more than the convolution (12x12 positions, 32 features).
    big = jnp.ones((2, 12, 12, 8), jnp.float32)
    wide = jnp.ones((5, 5, 8, 32), jnp.float32)
    numbers, _ = _lax_conv(big, wide, (2, 2), "VALID")
    assert _selection_plan(big, wide, (2, 2), "VALID", None, None, numbers, 1, {}) is None
    numbers, _ = _lax_conv(x, w, (1, 1), "SAME")
    np.testing.assert_array_equal(conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=numbers,
                                                       precision=jax.lax.Precision.HIGHEST), y_ref)
    # Half precision in, half precision out, as from lax.
    small = jnp.ones((2, 1, 1, 4), jnp.bfloat16)
    kernel = jnp.ones((3, 3, 4, 4), jnp.bfloat16)
    numbers, ref = _lax_conv(small, kernel, (1, 1), "SAME")
    out = conv_general_dilated(small, kernel, (1, 1), "SAME", dimension_numbers=numbers)
    assert out.dtype == ref.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(ref, np.float32))


def test_resnet_convolutions_go_through_the_models_conv():
    """Every convolution of a ResNet-18 and a chain takes nasgen's conv_general_dilated."""
    from nasgen.nn.models import conv_general_dilated

    model = ResNet18(ModelSpec.from_options("resnet18", width_multiplier=1 / 16), rngs=nnx.Rngs(0))
    convs = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Conv)]
    assert len(convs) == 20 and all(m.conv_general_dilated is conv_general_dilated for m in convs)


@pytest.mark.parametrize("scale", [RESNET_INIT_SCALE, 1 / 3, 2.0])
def test_init_scale_sets_kernel_variance(scale):
    """Every kernel has variance scale / fan_in (uniform draws), the head included."""
    model = _resnet(width_multiplier=0.25, init_scale=scale, rngs=nnx.Rngs(3))
    variances = _kernel_variances(model)
    assert len(variances) == 1 + 2 * 2 + 3 * 3 + 3 * 2 + 1  # stem, stage 1, downsampling, basic blocks, head
    pooled = [v * fan_in / scale for v, fan_in in variances]
    # Each ratio is an estimate of 1 from at least 160 draws (the head: 128 x 10 = 1280).
    assert np.median(pooled) == pytest.approx(1.0, rel=0.05)
    assert all(0.6 < r < 1.4 for r in pooled)
    # Uniform on [-b, b] with b^2 / 3 = scale / fan_in: nothing beyond the bound.
    for _, m in nnx.iter_modules(model):
        if isinstance(m, nnx.Conv):
            k = np.asarray(m.kernel[...])
            bound = np.sqrt(3 * scale / np.prod(k.shape[:-1]))
            assert np.abs(k).max() <= bound * (1 + 1e-6)


def test_init_scale_defaults_and_errors():
    lecun = _kernel_variances(build_model(ModelSpec.from_options("chain", width=64), CHAIN_SPACE,
                                          Architecture(kernel=((3, 3), (3, 3)), stride=((2, 2), (1, 1))), rngs=nnx.Rngs(0)))
    # Chains keep flax's LeCun normal: variance 1 / fan_in.
    assert np.median([v * f for v, f in lecun]) == pytest.approx(1.0, rel=0.15)
    resnet = _kernel_variances(build_model(ModelSpec.from_options("resnet18", width_multiplier=0.25), None, None, rngs=nnx.Rngs(0)))
    assert np.median([v * f for v, f in resnet]) == pytest.approx(RESNET_INIT_SCALE, rel=0.05)
    flax_default = _kernel_variances(build_model(ModelSpec.from_options("resnet18", width_multiplier=0.25, init_scale=LECUN), None, None, rngs=nnx.Rngs(0)))
    assert np.median([v * f for v, f in flax_default]) == pytest.approx(1.0, rel=0.05)
    for bad in (0, -1.0, True, "big"):
        with pytest.raises(NasgenError, match="init_scale must be a finite positive number or 'lecun'"):
            _resnet(width_multiplier=1 / 16, init_scale=bad, rngs=nnx.Rngs(0))


# -- one optimisation step lowers the loss -----------------------------------------


def _loss(model, x, y):
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _one_step_lowers_loss(model, x, y, learning_rate):
    model.train()
    optimizer = nnx.Optimizer(model, optax.sgd(learning_rate), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(_loss)(model, x, y)
        optimizer.update(model, grads)
        return loss

    before = step(model, optimizer, x, y)
    after = nnx.jit(_loss)(model, x, y)
    assert float(after) < float(before)


def test_one_step_lowers_loss_for_a_chain():
    space = SearchSpace((12, 12), (3, 3), min_layers=2, max_layers=2, pool=(2, 1), rounding="floor")
    arch = Architecture(kernel=((3, 3), (3, 3)), stride=((1, 1), (2, 2)))
    model = _chain(space, arch, width=8, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (16, 12, 12, 1))
    y = jnp.arange(16) % 10
    _one_step_lowers_loss(model, x, y, learning_rate=0.05)


@pytest.mark.slow
def test_one_step_lowers_loss_for_a_resnet_variant():
    arch = Architecture(kernel=((3, 3), (2, 2), (2, 2)), stride=((2, 2), (1, 1), (1, 1)))
    # Built under jit: eagerly, each initialiser would compile a program of its own.
    model = nnx.jit(lambda: _resnet(arch, width_multiplier=1 / 16, rngs=nnx.Rngs(0)))()
    x = jax.random.normal(jax.random.key(0), (16, 28, 28, 1))
    y = jnp.arange(16) % 10
    _one_step_lowers_loss(model, x, y, learning_rate=0.05)


# -- bad input ----------------------------------------------------------------------


@pytest.fixture
def no_tracing(monkeypatch):
    """Make any layer construction fail, to prove validation happens first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a layer was built before the architecture was validated")

    monkeypatch.setattr(nnx, "Conv", refuse)
    monkeypatch.setattr(nnx, "BatchNorm", refuse)
    monkeypatch.setattr(nnx, "Linear", refuse)


CHAIN_SPACE = SearchSpace((10, 10), (2, 2), min_layers=2, max_layers=2, rounding="floor")


@pytest.mark.parametrize(
    "arch, message",
    [
        (Architecture(kernel=((3,), (3,)), stride=((1,), (1,))), "1 dimensions but the space has 2"),
        (Architecture(kernel=((3, 3),), stride=((1, 1),)), "1 layers but the space allows 2..2"),
        (Architecture(kernel=((3, 3), (11, 3)), stride=((1, 1), (2, 2))), "layer 2, dimension 0"),
        (Architecture(kernel=((3, 3), (3, 3)), stride=((1, 1), (1, 1))), "after layer 2 the shape is"),
    ],
)
def test_chain_refuses_non_members_before_tracing(no_tracing, arch, message):
    with pytest.raises(ArchitectureError, match=message):
        _chain(CHAIN_SPACE, arch, rngs=nnx.Rngs(0))
    with pytest.raises(ArchitectureError, match=message):
        build_model(ModelSpec.from_options("chain"), CHAIN_SPACE, arch, rngs=nnx.Rngs(0))


def test_resnet_refuses_non_members_before_tracing(no_tracing):
    too_big = Architecture(kernel=((2, 2), (7, 2), (2, 2)), stride=((1, 1), (1, 1), (1, 1)))
    with pytest.raises(ArchitectureError, match="layer 2, dimension 0"):
        _resnet(too_big, rngs=nnx.Rngs(0))
    misses_output = Architecture(kernel=((1, 1),) * 3, stride=((1, 1),) * 3)
    with pytest.raises(ArchitectureError, match="after layer 3"):
        _resnet(misses_output, rngs=nnx.Rngs(0))
    # (1, 2) in a block other than the original is outside RESNET_SPACE (k > s).
    mixed = Architecture(kernel=((1, 1), (2, 2), (2, 2)), stride=((2, 2), (1, 1), (1, 1)))
    with pytest.raises(ArchitectureError, match="layer 1, dimension 0"):
        build_model(ModelSpec.from_options("resnet18"), RESNET_SPACE, mixed, rngs=nnx.Rngs(0))


def test_build_model_validates_kind_space_and_options(no_tracing):
    with pytest.raises(NasgenError, match="model kind 'vgg'"):
        ModelSpec.from_options("vgg")
    with pytest.raises(SpaceError, match="7x7 -> 1x1"):
        build_model(ModelSpec.from_options("resnet18"), CHAIN_SPACE, None, rngs=nnx.Rngs(0))
    with pytest.raises(NasgenError, match=r"options \['norm'\] do not apply to resnet18"):
        ModelSpec.from_options("resnet18", norm=None)
    with pytest.raises(NasgenError, match="norm 'layer'"):
        ModelSpec.from_options("chain", norm="layer")
    # The form before specs (a kind name and keywords) is refused in one line, naming the way in.
    with pytest.raises(NasgenError, match=r"build_model takes a ModelSpec first \(ModelSpec.from_options\('chain', ...\)\)"):
        build_model("chain", CHAIN_SPACE, None, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError):
        build_model(ModelSpec.from_options("chain"), CHAIN_SPACE, None, width=3, rngs=nnx.Rngs(0))


def test_build_model_builds_both_kinds():
    arch = Architecture(kernel=((3, 3), (3, 3)), stride=((2, 2), (1, 1)))
    chain = nnx.eval_shape(lambda: build_model(ModelSpec.from_options("chain", width=5), CHAIN_SPACE, arch, rngs=nnx.Rngs(0)))
    assert isinstance(chain, ConvChain) and chain.spec.width == 5
    resnet = nnx.eval_shape(lambda: build_model(ModelSpec.from_options("resnet18", width_multiplier=0.5), RESNET_SPACE, None, rngs=nnx.Rngs(0)))
    assert isinstance(resnet, ResNet18) and resnet.arch == ORIGINAL_RESNET_ARCH and resnet.widths[0] == 32




IMAGE_SHAPES = [(28, 28, 1), (32, 32, 3), (64, 64, 3), (224, 224, 3), (17, 17, 1), (40, 24, 2)]


@pytest.mark.parametrize("image_shape", IMAGE_SHAPES)
def test_resnet_for_any_input_shape(image_shape):
    """jax.eval_shape of ResNet-18 on each input, for the original and drawn members of its space."""
    spec = ModelSpec.from_options("resnet18", width_multiplier=1 / 16, image_shape=image_shape, num_classes=4)
    space = resnet_space(image_shape)
    assert spec.input_shape == image_shape[:2] and spec.in_channels == image_shape[2]
    x = jax.ShapeDtypeStruct((2, *image_shape), jnp.float32)
    for arch in (None, *nasgen.sample(space, 2, seed=1)):
        model = nnx.eval_shape(lambda: build_model(spec, space, arch, rngs=nnx.Rngs(0)))
        assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (2, 4)
        # The architecture's own shape arithmetic agrees with the blocks' outputs.
        expected = (ORIGINAL_RESNET_ARCH if arch is None else arch).shapes(resnet_space(image_shape, relation="any"))
        assert expected[0] == space.input_shape and expected[-1] == space.output_shape
    with pytest.raises(NasgenError, match=r"expects input of shape \(batch, "):
        model(jnp.zeros((1, image_shape[0] + 1, image_shape[1], image_shape[2])))


def test_resnet_input_too_small_is_one_line():
    for shape in ((16, 16, 1), (8, 8, 1), (28, 12, 3)):
        with pytest.raises(NasgenError, match=r"ResNet-18 needs images of at least 17x17 .*got \d+x\d+$"):
            ModelSpec.from_options("resnet18", image_shape=shape)
    # The MNIST space is unchanged.
    assert resnet_space((28, 28, 1)) == RESNET_SPACE
