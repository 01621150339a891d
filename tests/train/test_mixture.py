"""nasgen.train.mixture: the zero-order gradients by hand, the optimisers from optax pieces, the mixture's creation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nasgen.train.mixture import Mixture, build_optimizer, kernel_mask, mixture_gradients

from .conftest import tiny_config


# -- gradients on a tiny case, against hand-computed values ------------------------


class _Affine(nnx.Module):
    """A stand-in network: logits = x @ W + b."""

    def __init__(self, weight, bias):
        self.kernel = nnx.Param(jnp.asarray(weight, jnp.float32))
        self.bias = nnx.Param(jnp.asarray(bias, jnp.float32))

    def __call__(self, x):
        return x @ self.kernel[...] + self.bias[...]


def _tiny_case(mixing):
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(3, 4)) for _ in range(3)]
    biases = [rng.normal(size=4) for _ in range(3)]
    mixture = Mixture([_Affine(w, b) for w, b in zip(weights, biases)], mixing=mixing)
    mixture.alpha[...] = jnp.asarray([0.3, -0.2, 0.5], jnp.float32)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    y = np.array([0, 3, 1, 2, 3], np.int32)
    return mixture, weights, biases, x, y


def _np_softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("mixing", ["logits", "probabilities"])
def test_zero_order_gradients_match_hand_computation(mixing):
    mixture, weights, biases, x, y = _tiny_case(mixing)
    alpha = np.array([0.3, -0.2, 0.5])
    grads, (mixture_loss, network_losses) = mixture_gradients(mixture, jnp.asarray(x), jnp.asarray(y))

    x64 = x.astype(np.float64)
    z = np.stack([x64 @ w + b for w, b in zip(weights, biases)])  # (3, batch, classes)
    w = _np_softmax(alpha)
    onehot = np.eye(4)[y]
    batch = len(y)
    if mixing == "logits":
        mixed = np.einsum("m,mbc->bc", w, z)
        p = _np_softmax(mixed)
        expected_loss = -np.log(p[np.arange(batch), y]).mean()
        # dL/dmixed = p - onehot; dmixed/dalpha_j = w_j (z_j - mixed)
        expected_alpha = np.array([((p - onehot) * w[j] * (z[j] - mixed)).sum() / batch for j in range(3)])
    else:
        py = _np_softmax(z)[:, np.arange(batch), y]  # (3, batch): each network's probability of the label
        total = (w[:, None] * py).sum(0)
        expected_loss = -np.log(total).mean()
        # d/dalpha_j of -log sum_i w_i p_i = w_j - w_j p_j / sum_i w_i p_i
        expected_alpha = np.array([(w[j] - w[j] * py[j] / total).mean() for j in range(3)])
    np.testing.assert_allclose(float(mixture_loss), expected_loss, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grads["alpha"][...]), expected_alpha, rtol=1e-4, atol=1e-6)

    # Each network's weights get the gradient of its own cross-entropy only.
    for i in range(3):
        p_i = _np_softmax(z[i])
        expected_kernel = x64.T @ (p_i - onehot) / batch
        expected_bias = (p_i - onehot).mean(0)
        np.testing.assert_allclose(np.asarray(grads["networks"][i]["kernel"][...]), expected_kernel, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.asarray(grads["networks"][i]["bias"][...]), expected_bias, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(
            float(network_losses[i]), -np.log(p_i[np.arange(batch), y]).mean(), rtol=1e-5
        )


def test_network_gradient_ignores_the_mixture():
    """Changing alpha changes alpha's gradient but not a single network weight gradient."""
    mixture, *_, x, y = _tiny_case("logits")
    g1, _ = mixture_gradients(mixture, jnp.asarray(x), jnp.asarray(y))
    mixture.alpha[...] = jnp.asarray([5.0, -3.0, 0.0])
    g2, _ = mixture_gradients(mixture, jnp.asarray(x), jnp.asarray(y))
    assert not np.allclose(g1["alpha"][...], g2["alpha"][...])
    for i in range(3):
        np.testing.assert_array_equal(g1["networks"][i]["kernel"][...], g2["networks"][i]["kernel"][...])


# -- optimiser ----------------------------------------------------------------------


def _one_update(name, weight_decay=0.5, lr=0.1):
    mixture, *_ = _tiny_case("logits")
    optimizer = nnx.Optimizer(mixture, build_optimizer(name, lr, weight_decay), wrt=nnx.Param)
    before = nnx.to_pure_dict(nnx.state(mixture, nnx.Param))
    zero = jax.tree.map(jnp.zeros_like, nnx.state(mixture, nnx.Param))
    optimizer.update(mixture, zero)
    after = nnx.to_pure_dict(nnx.state(mixture, nnx.Param))
    return before, after


def test_kernel_mask_selects_kernels_only():
    mixture, *_ = _tiny_case("logits")
    mask = nnx.to_pure_dict(kernel_mask(nnx.state(mixture, nnx.Param)))
    assert mask["alpha"] is False
    assert all(mask["networks"][i]["kernel"] is True and mask["networks"][i]["bias"] is False for i in range(3))


def test_adam_l2_is_adam_on_gradient_plus_decay():
    # With a zero loss gradient, Adam's first step on g = wd * w moves each
    # kernel entry by -lr * sign(w) (bias-corrected m / sqrt(v) = sign); biases
    # and alpha (no penalty) stay put.
    before, after = _one_update("adam-l2")
    for i in range(3):
        k0, k1 = np.asarray(before["networks"][i]["kernel"]), np.asarray(after["networks"][i]["kernel"])
        np.testing.assert_allclose(k1, k0 - 0.1 * np.sign(k0), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(after["networks"][i]["bias"], before["networks"][i]["bias"])
    np.testing.assert_array_equal(after["alpha"], before["alpha"])


def test_adamw_decays_kernels_decoupled():
    # Zero gradient: Adam's part is 0, the decoupled decay is -lr * wd * w.
    before, after = _one_update("adamw")
    for i in range(3):
        k0, k1 = np.asarray(before["networks"][i]["kernel"]), np.asarray(after["networks"][i]["kernel"])
        np.testing.assert_allclose(k1, k0 * (1 - 0.1 * 0.5), rtol=1e-6)
        np.testing.assert_array_equal(after["networks"][i]["bias"], before["networks"][i]["bias"])


def test_mixtures_of_different_seeds_share_one_traced_creation(digits, monkeypatch):
    import nasgen.train.mixture as training

    traces = []
    real = training.build_model

    def counted(*args, **kwargs):
        traces.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "build_model", counted)
    # width 3 and 77 training images: networks no other test has traced in this process.
    configs = [tiny_config(seed=seed, width=3, epochs=epochs, train_limit=77) for seed, epochs in ((5, 1), (6, 2))]
    created = [training.create_mixture(c, in_channels=digits.channels, num_classes=10) for c in configs]
    # Each network's initialisation is traced once, for the first seed only.
    assert len(traces) == len({arch for arch in [configs[0].baseline_architecture(),
                                                 *configs[0].generated_architectures()]})
    # The seed is an input of the networks' programs: each seed's weights are
    # those of building each network outside any jit.
    spec = configs[0].model_spec(in_channels=digits.channels, num_classes=10)
    for config, (mixture, optimizer) in zip(configs, created):
        archs = [config.baseline_architecture(), *config.generated_architectures()]
        for i, (arch, seed) in enumerate(zip(archs, training.network_seeds(config), strict=True)):
            expected = real(spec, config.search_space(), arch, rngs=nnx.Rngs(jax.random.key(seed, impl="rbg")))
            for got, want in zip(jax.tree.leaves(nnx.state(mixture.networks[i])), jax.tree.leaves(nnx.state(expected)),
                                 strict=True):
                np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        # The optimiser starts from zero moments.
        assert all(not np.asarray(leaf).any() for leaf in jax.tree.leaves(nnx.state(optimizer)))
    first, second = (jax.tree.leaves(nnx.state(m, nnx.Param)) for m, _ in created)
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))
