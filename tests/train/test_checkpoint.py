"""nasgen.train.checkpoint: checkpoints that stand alone, round trips, partial restores, orbax retention, damaged steps.

Every check compares a restored or rebuilt network against the network that
was saved: the same outputs on a batch, the same arrays.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nasgen.train import checkpoint
from nasgen.common.errors import CheckpointError
from nasgen.nn.models import ConvChain, ResNet18, build_model
from nasgen.nn.spec import ModelSpec, resnet_space
from nasgen.space.definition import Architecture, SearchSpace

SPACE = SearchSpace((9, 9), (3, 3), min_layers=2, max_layers=2, rounding="floor")
ARCH = Architecture(kernel=((3, 3), (3, 3)), stride=((1, 1), (2, 2)))
CHAIN = ModelSpec.from_options("chain", width=3, num_classes=4, in_channels=2)


def _trained_chain(seed: int = 0):
    """A chain after one Adam step, so weights, batch statistics and moments all differ from a fresh build."""
    model = _build(CHAIN, SPACE, ARCH, seed)
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(seed), (6, 9, 9, 2))
    model.train()
    _adam_step(model, optimizer, x, jnp.arange(6) % 4)
    return model, optimizer, x


# Built and stepped under jit: run eagerly, every primitive of the network
# compiled on its own (186 programs, about 10 s, for this chain's one step).
@functools.partial(nnx.jit, static_argnums=(0, 1, 2, 3))
def _build(spec, space, arch, seed):
    return build_model(spec, space, arch, rngs=nnx.Rngs(seed))


@nnx.jit
def _adam_step(model, optimizer, x, y):
    def loss(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    optimizer.update(model, nnx.grad(loss)(model))


@nnx.jit
def _forward(model, x):
    return model(x)


def _same_state(a, b):
    leaves_a, leaves_b = jax.tree.leaves(nnx.state(a)), jax.tree.leaves(nnx.state(b))
    assert len(leaves_a) == len(leaves_b)
    for left, right in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))


def test_load_model_rebuilds_the_network_from_the_directory_alone(tmp_path):
    model, optimizer, x = _trained_chain()
    checkpoint.save(tmp_path / "ck", 3, {"model": model, "optimizer": optimizer})
    [saved] = checkpoint.saved_networks(tmp_path / "ck")
    assert (saved.path, saved.spec, saved.space, saved.arch) == ("model", CHAIN, SPACE, ARCH)
    loaded = checkpoint.load_model(tmp_path / "ck")
    assert isinstance(loaded, ConvChain) and loaded.spec == CHAIN
    _same_state(loaded, model)
    model.eval()
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_load_models_rebuilds_every_network_of_a_mixture_like_state(tmp_path):
    spec = ModelSpec.from_options("resnet18", width_multiplier=1 / 32, image_shape=(32, 32, 3), num_classes=5)
    space = resnet_space((32, 32, 3))
    variant = Architecture(kernel=((3, 3), (3, 3), (2, 2)), stride=((1, 1), (2, 2), (1, 1)))
    networks = [_build(spec, space, arch, i) for i, arch in enumerate([None, variant])]
    chain, _, _ = _trained_chain(1)
    state = {"networks": networks, "extra": chain, "alpha": jnp.ones(3)}
    checkpoint.save(tmp_path, 1, state)
    recorded = checkpoint.saved_networks(tmp_path, 1)
    assert [n.path for n in recorded] == ["extra", "networks.0", "networks.1"]
    assert [n.arch for n in recorded][1:] == [networks[0].arch, variant]
    loaded = checkpoint.load_models(tmp_path)
    assert [type(m) for m in loaded] == [ConvChain, ResNet18, ResNet18]
    x = jax.random.normal(jax.random.key(2), (2, 32, 32, 3))
    for original, rebuilt in zip(networks, loaded[1:]):
        original.eval()
        np.testing.assert_array_equal(np.asarray(_forward(rebuilt, x)), np.asarray(_forward(original, x)))
    with pytest.raises(CheckpointError, match="records 3 networks; use load_models"):
        checkpoint.load_model(tmp_path)


def test_restore_the_model_alone_from_a_model_and_optimizer_checkpoint(tmp_path):
    model, optimizer, x = _trained_chain()
    checkpoint.save(tmp_path, 0, {"model": model, "optimizer": optimizer})
    fresh = build_model(CHAIN, SPACE, ARCH, rngs=nnx.Rngs(5))
    checkpoint.restore(tmp_path, target={"model": fresh})
    _same_state(fresh, model)
    other = build_model(CHAIN, SPACE, ARCH, rngs=nnx.Rngs(6))
    checkpoint.restore(tmp_path, target=other, path="model")
    _same_state(other, model)
    # The optimizer alone, too, and a raw part without a target.
    fresh_optimizer = nnx.Optimizer(fresh, optax.adam(1e-2), wrt=nnx.Param)
    checkpoint.restore(tmp_path, target={"optimizer": fresh_optimizer})
    assert int(fresh_optimizer.step[...]) == 1
    raw = checkpoint.restore(tmp_path, path="model.convs.0")
    np.testing.assert_array_equal(raw["kernel"]["value"], np.asarray(model.convs[0].kernel[...]))
    with pytest.raises(CheckpointError, match="has no entry model.nothing"):
        checkpoint.restore(tmp_path, path="model.nothing")


def test_retention_is_orbax_max_to_keep(tmp_path):
    model, _, _ = _trained_chain()
    for step in (1, 2, 3, 4):
        checkpoint.save(tmp_path, step, model, keep=2)
    assert checkpoint.all_steps(tmp_path) == [3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3", "4"]


def _data_files(step_dir):
    return sorted(p for p in (step_dir / "default").rglob("*") if p.is_file() and p.parent.name == "d" and p.stat().st_size > 0)


def _flip_bytes(path):
    raw = bytearray(path.read_bytes())
    for i in range(len(raw) // 2, len(raw) // 2 + 8):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "record", "record-truncated", "record-json"])
def test_damaged_checkpoints_are_one_line_errors(tmp_path, damage):
    model, optimizer, x = _trained_chain()
    step_dir = checkpoint.save(tmp_path, 7, {"model": model, "optimizer": optimizer})
    record_file = step_dir / checkpoint.MODEL_ITEM / "metadata"
    if damage in ("flip", "truncate", "delete"):
        files = _data_files(step_dir)
        assert files
        for path in files:
            if damage == "flip":
                _flip_bytes(path)
            elif damage == "truncate":
                path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
            else:
                path.unlink()
    elif damage == "record":
        record = json.loads(record_file.read_text())
        record["networks"][0]["spec"]["width"] = 4
        record_file.write_text(json.dumps(record))
    elif damage == "record-truncated":
        record_file.write_text(record_file.read_text()[:40])
    else:
        record_file.write_text("[1, 2]")
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_model(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "step 7" in message
    with pytest.raises(CheckpointError):
        checkpoint.restore(tmp_path, target={"model": build_model(CHAIN, SPACE, ARCH, rngs=nnx.Rngs(1)), "optimizer": optimizer})


def test_old_checkpoints_without_a_record_still_restore(tmp_path):
    model, _, x = _trained_chain()
    checkpoint.save(tmp_path, 2, model, networks=[])
    assert checkpoint.saved_networks(tmp_path) == []
    fresh = build_model(CHAIN, SPACE, ARCH, rngs=nnx.Rngs(3))
    checkpoint.restore(tmp_path, target=fresh)
    _same_state(fresh, model)
    with pytest.raises(CheckpointError, match="records 0 networks"):
        checkpoint.load_model(tmp_path)


def test_checkpoint_round_trip_restores_weights_and_batch_statistics(tmp_path):
    space = SearchSpace((9, 9), (3, 3), min_layers=2, max_layers=2, rounding="floor")
    arch = Architecture(kernel=((3, 3), (3, 3)), stride=((1, 1), (2, 2)))
    model = ConvChain(ModelSpec.from_options("chain", width=3), space, arch, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(0), (4, 9, 9, 1))
    y = jnp.arange(4)
    model.train()

    @nnx.jit  # eagerly, each primitive of the step would compile a program of its own
    def step(model, optimizer, x, y):
        optimizer.update(model, nnx.grad(_cross_entropy)(model, x, y))  # also moves the BatchNorm running averages

    step(model, optimizer, x, y)

    assert checkpoint.latest_step(tmp_path / "run") is None
    checkpoint.save(tmp_path / "run", 1, {"model": model, "optimizer": optimizer})
    checkpoint.save(tmp_path / "run", 5, model)
    assert checkpoint.all_steps(tmp_path / "run") == [1, 5]
    assert checkpoint.latest_step(tmp_path / "run") == 5

    fresh = ConvChain(ModelSpec.from_options("chain", width=3), space, arch, rngs=nnx.Rngs(1))
    fresh_optimizer = nnx.Optimizer(fresh, optax.adam(1e-2), wrt=nnx.Param)
    assert not np.allclose(fresh.convs[0].kernel[...], model.convs[0].kernel[...])
    checkpoint.restore(tmp_path / "run", step=1, target={"model": fresh, "optimizer": fresh_optimizer})
    for want, got in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(fresh))):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert int(fresh_optimizer.step[...]) == 1
    model.eval()
    fresh.eval()
    np.testing.assert_array_equal(np.asarray(fresh(x)), np.asarray(model(x)))

    # Without a target the stored tree comes back as plain nested dicts.
    raw = checkpoint.restore(tmp_path / "run")
    np.testing.assert_array_equal(raw["convs"]["0"]["kernel"]["value"], np.asarray(model.convs[0].kernel[...]))


def test_checkpoint_errors(tmp_path):
    space = SearchSpace((9,), (3,), min_layers=1, max_layers=1)
    arch = Architecture(kernel=((7,),), stride=((1,),))
    model = ConvChain(ModelSpec.from_options("chain", width=2), space, arch, rngs=nnx.Rngs(0))
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint found"):
        checkpoint.restore(tmp_path / "empty")
    checkpoint.save(tmp_path, 0, model)
    with pytest.raises(checkpoint.CheckpointError, match="step 0 already exists"):
        checkpoint.save(tmp_path, 0, model)
    checkpoint.save(tmp_path, 0, {"w": jnp.ones(2)}, overwrite=True)
    assert set(checkpoint.restore(tmp_path, 0)) == {"w"}
    checkpoint.save(tmp_path, 2, model)
    with pytest.raises(checkpoint.CheckpointError, match=r"no checkpoint step 3 .* saved steps: \[0, 2\]"):
        checkpoint.restore(tmp_path, 3)
    with pytest.raises(checkpoint.CheckpointError, match="non-negative integer"):
        checkpoint.save(tmp_path, -1, model)
    with pytest.raises(checkpoint.CheckpointError, match="keep must be a positive integer"):
        checkpoint.save(tmp_path, 9, model, keep=0)
    checkpoint.save(tmp_path / "kept", 1, model)
    checkpoint.save(tmp_path / "kept", 7, model)
    checkpoint.save(tmp_path / "kept", 3, model, keep=2)
    assert checkpoint.all_steps(tmp_path / "kept") == [3, 7]
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["3", "7"]
    wider = ConvChain(ModelSpec.from_options("chain", width=3), space, arch, rngs=nnx.Rngs(0))
    with pytest.raises(checkpoint.CheckpointError, match=r"convs\.0\.kernel\.value is stored with shape \(7, 1, 2\)"):
        checkpoint.restore(tmp_path, 2, target=wider)
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    checkpoint.save(tmp_path, 4, {"model": model, "optimizer": optimizer})
    # A bare model against a {model, optimizer} checkpoint names the way in.
    with pytest.raises(checkpoint.CheckpointError, match=r"top-level entries: model, optimizer; restore a part with path="):
        checkpoint.restore(tmp_path, 4, target=model)


def _cross_entropy(model, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
