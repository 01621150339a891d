"""nasgen.train.run / nasgen.train.report / the train CLI: gradients, optimiser, run directory, resume, reports."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nasgen.common.stats import wilson_interval
from nasgen.train import report
from nasgen.samplers.registry import sample
from nasgen.train.data import load_digits
from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.space.definition import Architecture
from nasgen.common.errors import RunError
from nasgen.train.run import (
    DIGITS_BASELINE,
    DIGITS_SPACE,
    Mixture,
    TrainConfig,
    build_optimizer,
    clear_step_programs,
    default_step_programs,
    kernel_mask,
    mixture_gradients,
    train,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _private_jax_cache(tmp_path_factory, monkeypatch):
    """Runs that use the compilation cache by default write it here, not into the user's home.

    A test that points JAX's process-wide cache elsewhere
    (:func:`enable_compilation_cache`) has it pointed back afterwards, to the
    session's cache (see conftest.py).
    """
    from jax.experimental.compilation_cache import compilation_cache

    monkeypatch.setenv("NASGEN_JAX_CACHE", str(tmp_path_factory.getbasetemp() / "jax-cache"))
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    before = {name: getattr(jax.config, name) for name in names}
    yield
    if any(getattr(jax.config, name) != value for name, value in before.items()):
        for name, value in before.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()


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


# -- report ---------------------------------------------------------------------------


def test_alpha_deviation_by_hand():
    alpha = [0.5, 1.0, 0.0, 2.5]
    expected = np.sqrt(((1.0 - 0.5) ** 2 + (0.0 - 0.5) ** 2 + (2.5 - 0.5) ** 2) / (3 - 1))
    assert report.alpha_deviation(alpha) == pytest.approx(expected)
    assert np.isnan(report.alpha_deviation([0.1, 0.2]))


def test_summary_and_markdown():
    records = [
        report.epoch_record(epoch=e, alpha=[0.0, 0.1 * e, -0.1 * e], train_losses=[1, 1, 1], mixture_train_loss=1,
                            test_accuracies=[0.9, 0.95, 0.85], mixture_test_accuracy=0.93,
                            train_seconds=1, images_per_second=1)
        for e in (1, 2)
    ]
    s = report.summarize(records, names=["c0 (baseline)", "c1", "c2"], dataset="mnist")
    assert s["generated"]["mean"] == pytest.approx(0.9) and s["generated"]["std"] == pytest.approx(0.05)
    assert s["best"]["name"] == "c1" and s["worst"]["name"] == "c2" and s["argmax_alpha"]["name"] == "c1"
    # M = 2: sqrt(((0.1e)^2 + (0.1e)^2) / 1) at epoch e
    assert s["alpha_deviation"] == pytest.approx([np.sqrt(0.02), np.sqrt(0.08)])
    md = report.markdown_summary(s, label="Uniform")
    assert "| Networks | Dataset | Accuracy | Std | Best | Worst |" in md
    assert "| Uniform-2 | MNIST | 0.9000 | 0.0500 | 0.9500 | 0.8500 | +0.0500 | -0.0500 | 0.2828 |" in md


# -- end-to-end runs on the digits ---------------------------------------------------------

_ARCHS = [a.to_dict() for a in sample(DIGITS_SPACE, 2, seed=3, replace=False)]


def _tiny_config(**overrides):
    settings = dict(architectures=_ARCHS, epochs=3, batch_size=32, width=4, train_limit=256, test_limit=100,
                    eval_batch_size=64, learning_rate=3e-3, seed=7)
    settings.update(overrides)
    return TrainConfig(**settings)


def _run(config, output_dir, **options):
    """:func:`train` without progress bars or plots (the tests that look at plots call ``train`` itself)."""
    return train(config, output_dir, progress=False, plots=False, **options)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


TIMINGS = ("train_seconds", "images_per_second", "compile_seconds", "eval_seconds")


def _numbers(run_dir: Path):
    """Everything a run computes, without its timings."""
    records = report.read_log(run_dir / "log.jsonl")
    for r in records:
        for key in TIMINGS:
            r.pop(key)
    return records


def _without_timings(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "compile_seconds"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("runs") / "full"
    summary = train(_tiny_config(), out, dataset=digits, progress=False)
    return out, summary


def test_run_writes_log_reports_and_plots(uninterrupted):
    out, summary = uninterrupted
    records = report.read_log(out / "log.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for r in records:
        assert len(r["alpha"]) == len(r["test_accuracy"]) == len(r["train_loss"]) == 3
        assert sum(r["softmax_alpha"]) == pytest.approx(1.0)
        assert r["alpha_deviation"] == pytest.approx(report.alpha_deviation(r["alpha"]))
    assert "NaN" not in (out / "log.jsonl").read_text()
    assert summary["accuracies"] == records[-1]["test_accuracy"]
    assert json.loads((out / "summary.json").read_text()) == summary
    assert "| Baseline (c0) | digits |" in (out / "summary.md").read_text()
    for name in report.PLOT_FILES.values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Training did something: the mixture's loss fell and accuracies beat chance (0.1).
    assert records[-1]["mixture_train_loss"] < records[0]["mixture_train_loss"]
    assert max(summary["accuracies"]) > 0.3
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["baseline"] == DIGITS_BASELINE.to_dict() and config["architectures"] == _ARCHS


def test_same_seed_same_numbers(uninterrupted, tmp_path, digits):
    out, _ = uninterrupted
    train(_tiny_config(), tmp_path / "again", dataset=digits, progress=False, plots=False)
    assert _numbers(tmp_path / "again") == _numbers(out)
    # plots=False: the same summary, no PNG files.
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["accuracies"] == \
        json.loads((out / "summary.json").read_text())["accuracies"]
    assert not list((tmp_path / "again").glob("*.png")) and len(list(out.glob("*.png"))) == len(report.PLOT_FILES)


def test_mixtures_of_different_seeds_share_one_traced_creation(digits, monkeypatch):
    import nasgen.train.run as training

    traces = []
    real = training.build_model

    def counted(*args, **kwargs):
        traces.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "build_model", counted)
    # width 3 and 77 training images: networks no other test has traced in this process.
    configs = [_tiny_config(seed=seed, width=3, epochs=epochs, train_limit=77) for seed, epochs in ((5, 1), (6, 2))]
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


_KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from nasgen.train.run import TrainConfig, train
    config = TrainConfig.from_dict({config!r})
    def die(record):
        if record["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, like a crash
    train(config, sys.argv[1], progress=False, plots=False, on_epoch_end=die)
    """
)


@pytest.mark.slow
def test_resume_after_kill_reproduces_the_uninterrupted_run(uninterrupted, tmp_path, digits):
    full, summary = uninterrupted
    out = tmp_path / "killed"
    script = _KILLED_RUN.format(config=_tiny_config().to_dict())
    done = subprocess.run([sys.executable, "-c", script, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    assert [r["epoch"] for r in report.read_log(out / "log.jsonl")] == [1, 2]
    assert not (out / "summary.json").exists()
    resumed = _run(_tiny_config(), out, resume=True, dataset=digits)
    assert _numbers(out) == _numbers(full)
    assert _without_timings(resumed) == _without_timings(summary)


def test_resume_drops_log_lines_past_the_checkpoint(uninterrupted, tmp_path, digits):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(uninterrupted[0], out)
    # As if the process died after logging epoch 3 but before its checkpoint landed.
    shutil.rmtree(out / "checkpoints" / "3")
    _run(_tiny_config(), out, resume=True, dataset=digits)
    assert _numbers(out) == _numbers(uninterrupted[0])


def _snapshot(directory: Path):
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_output_dir_guards(uninterrupted, tmp_path, digits):
    out, _ = uninterrupted
    before = _snapshot(out)
    with pytest.raises(RunError, match="already holds this run.*--resume"):
        _run(_tiny_config(), out, dataset=digits)
    with pytest.raises(RunError, match="holds a different run"):
        _run(_tiny_config(seed=8), out, dataset=digits)
    with pytest.raises(RunError, match="settings differ: seed"):
        _run(_tiny_config(seed=8), out, resume=True, dataset=digits)
    assert _snapshot(out) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty and holds no nasgen run"):
        _run(_tiny_config(), other, dataset=digits)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    with pytest.raises(RunError, match="no training run"):
        _run(_tiny_config(), tmp_path / "nothing", resume=True, dataset=digits)


def test_config_rejects_architectures_of_another_space():
    foreign = Architecture(kernel=((3,),), stride=((1,),))  # 1-D: not in the 8x8 -> 2x2 space
    with pytest.raises(ArchitectureError, match="architecture 2 is not in the chain space"):
        _tiny_config(architectures=[_ARCHS[0], foreign.to_dict()])
    with pytest.raises(ArchitectureError, match="resnet18 space"):
        TrainConfig(architectures=[foreign.to_dict()], model="resnet18", dataset="mnist")
    with pytest.raises(NasgenError, match="mixing"):
        _tiny_config(mixing="average")


def test_paper_defaults_for_mnist():
    config = TrainConfig(architectures=[{"kernel": [[3, 3], [2, 2], [2, 2]], "stride": [[2, 2], [1, 1], [1, 1]]}],
                         model="resnet18", dataset="mnist")
    assert (config.epochs, config.batch_size, config.learning_rate, config.weight_decay, config.seed) == (10, 512, 1e-4, 1e-4, 42)
    assert (config.optimizer, config.mixing) == ("adam-l2", "logits")
    assert config.init_scale == 0.01 and _tiny_config().init_scale == "lecun"
    assert _tiny_config(init_scale=0.5).init_scale == 0.5
    for bad in (0, float("nan"), "big", True):
        with pytest.raises(NasgenError, match="init scale must be a positive number or 'lecun'"):
            _tiny_config(init_scale=bad)


def test_probability_mixing_runs(tmp_path, digits):
    summary = _run(_tiny_config(mixing="probabilities", epochs=1, optimizer="adamw"), tmp_path / "p", dataset=digits)
    assert 0.0 <= summary["mixture_accuracy"] <= 1.0 and len(summary["accuracies"]) == 3


@pytest.mark.slow
def test_digits_quick_run_quality(tmp_path):
    """The README's quick run: the best network reaches 0.9 test accuracy on the 8x8 digits.

    Run as the README runs it, ``nasgen train`` in a process of its own, with
    XLA's default optimisation level: this test is bound by the steps' speed,
    not by compiling (conftest.py lowers the level for the others).
    """
    import os

    archs = tmp_path / "archs.jsonl"
    archs.write_text("".join(json.dumps(a.to_dict()) + "\n" for a in sample(DIGITS_SPACE, 3, seed=1, replace=False)))
    flags = os.environ.get("XLA_FLAGS", "").replace("--xla_backend_optimization_level=0", "").strip()
    done = subprocess.run([sys.executable, "-m", "nasgen", "train", "--architectures", str(archs), "--no-progress",
                           "--output-dir", str(tmp_path / "quick")], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, XLA_FLAGS=flags))
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "quick" / "summary.json").read_text())
    assert max(summary["accuracies"]) >= 0.9


# -- CLI -------------------------------------------------------------------------------------


def _cli(argv, capsys):
    from nasgen.cli.main import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_errors_are_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, _, err = _cli(["train", "--architectures", str(empty), "--output-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and err.count("\n") == 1 and "holds no architectures" in err
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text(json.dumps({"kernel": [[3]], "stride": [[1]]}) + "\n")
    code, _, err = _cli(["train", "--architectures", str(foreign), "--output-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and err.count("\n") == 1 and "not in the chain space" in err
    code, _, err = _cli(["train", "--architectures", str(foreign)], capsys)
    assert code == 2 and "exactly one of --output-dir" in err
    code, _, err = _cli(["train", "--architectures", str(foreign), "--output-dir", str(tmp_path / "r"),
                         "--dataset", "mnist", "--data-dir", str(tmp_path / "no-mnist")], capsys)
    assert code == 2 and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        _cli(["train", "--architectures", str(foreign), "--output-dir", str(tmp_path / "r"), "--init-scale", "big"], capsys)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "'big' is not a positive number or 'lecun'" in err
    assert not (tmp_path / "r").exists()


def test_cli_train_and_resume(tmp_path, capsys, uninterrupted):
    archs = tmp_path / "archs.jsonl"
    archs.write_text("".join(json.dumps(a) + "\n" for a in _ARCHS))
    args = ["train", "--architectures", str(archs), "--epochs", "1", "--batch-size", "32", "--width", "4",
            "--train-limit", "128", "--test-limit", "50", "--no-progress", "--no-plots"]
    import logging

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__()
            self.records = []

        def emit(self, record):
            self.records.append(record)

    root = logging.getLogger()
    collect = Collect()  # stands for the root handler orbax installs on import
    root.addHandler(collect)
    try:
        code, out, err = _cli(args + ["--output-dir", str(tmp_path / "run")], capsys)
    finally:
        root.removeHandler(collect)
    assert code == 0, err
    assert out.startswith("# Mixture training: 3 networks, 1 epochs, digits")
    # One epoch line, on stderr, and none duplicated through the root logger.
    assert err.count("epoch 1/1: mixture loss") == 1 and err.startswith("nasgen: epoch 1/1")
    assert not [r for r in collect.records if r.name.startswith("nasgen")]
    assert logging.getLogger("nasgen").propagate and not logging.getLogger("nasgen").handlers
    code, _, err = _cli(["train", "--resume", str(tmp_path / "run"), "--seed", "1"], capsys)
    assert code == 2 and "drop the changed options (seed)" in err
    code, out, _ = _cli(["train", "--resume", str(tmp_path / "run"), "--no-progress"], capsys)
    assert code == 0 and "Mixture training" in out


@pytest.mark.slow
def test_cli_paper_mnist_experiment_on_a_small_fake_mnist(tmp_path, capsys):
    """The whole pipeline (sample 7x7 -> 1x1, train with ResNet-18, report) on random 28x28 images."""
    rng = np.random.default_rng(0)
    data_dir = tmp_path / "mnist"
    data_dir.mkdir()
    np.savez(data_dir / "mnist.npz", x_train=rng.integers(0, 256, (96, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, 96), x_test=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, 40))
    out = tmp_path / "paper"
    code, stdout, err = _cli(["experiment", "paper-mnist", "--samples", "1", "--output-dir", str(out),
                              "--data-dir", str(data_dir), "--width-multiplier", "0.0625", "--epochs", "1",
                              "--batch-size", "32", "--no-progress", "--no-plots"], capsys)
    assert code == 0, err
    archs = [json.loads(line) for line in (out / "architectures.jsonl").read_text().splitlines()]
    assert len(archs) == 1
    from nasgen.nn.models import RESNET_SPACE
    from nasgen.space.definition import check_membership

    for a in archs:
        check_membership(RESNET_SPACE, Architecture.from_dict(a))
    config = json.loads((out / "run" / "config.json").read_text())["config"]
    assert (config["model"], config["dataset"], config["learning_rate"], config["architectures"]) == ("resnet18", "mnist", 1e-4, archs)
    assert "| Generated-1 | MNIST |" in stdout
    # A second experiment into the same directory is refused, nothing changed.
    before = _snapshot(out)
    code, _, err = _cli(["experiment", "paper-mnist", "--output-dir", str(out), "--data-dir", str(data_dir)], capsys)
    assert code == 2 and "not empty" in err and _snapshot(out) == before


# -- crash consistency: a failure at every boundary of an epoch's commit ----------------------


class _Crash(BaseException):
    """Stands for a kill: nothing in nasgen catches a BaseException it does not know."""


_BOUNDARIES = ("before-log", "torn-log", "after-log", "during-save", "after-save", "after-prune")


def _inject_crash(monkeypatch, tmp_path, boundary, epoch):
    """Make epoch ``epoch``'s commit fail at ``boundary`` (the commit writes log, checkpoint, then prunes)."""
    import shutil

    import nasgen.train.checkpoint as checkpoint
    import nasgen.train.run as train_module

    real_append, real_save, real_prune = report.append_log, checkpoint.save, train_module._Checkpoints.prune

    def append_log(path, record):
        if record["epoch"] == epoch and boundary == "before-log":
            raise _Crash
        if record["epoch"] == epoch and boundary == "torn-log":
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record)[:40])  # the line the kill tore
            raise _Crash
        real_append(path, record)
        if record["epoch"] == epoch and boundary == "after-log":
            raise _Crash

    def save(directory, step, state, **options):
        if step == epoch and boundary == "during-save":
            # What orbax leaves when killed mid-write: a partial temporary directory.
            scratch = tmp_path / "scratch"
            real_save(scratch, step, state, **options)
            partial = Path(directory).resolve() / f"{step}.orbax-checkpoint-tmp-1700000000"
            shutil.copytree(scratch / str(step), partial)
            for i, f in enumerate(sorted(p for p in partial.rglob("*") if p.is_file())):
                if i % 2 == 0:
                    f.unlink()
            raise _Crash
        saved = real_save(directory, step, state, **options)
        if step == epoch and boundary == "after-save":
            raise _Crash
        return saved

    def prune(self, newest):
        real_prune(self, newest)
        if newest == epoch and boundary == "after-prune":
            raise _Crash

    monkeypatch.setattr(report, "append_log", append_log)
    monkeypatch.setattr(checkpoint, "save", save)
    monkeypatch.setattr(train_module._Checkpoints, "prune", prune)


@pytest.mark.parametrize("epoch", [2, 3])
@pytest.mark.parametrize("boundary", _BOUNDARIES)
def test_a_failure_at_any_commit_boundary_resumes_to_the_uninterrupted_run(
    uninterrupted, tmp_path, digits, monkeypatch, boundary, epoch
):
    from nasgen.train.checkpoint import all_steps

    full, summary = uninterrupted
    out = tmp_path / "crashed"
    with monkeypatch.context() as patch:
        _inject_crash(patch, tmp_path, boundary, epoch)
        with pytest.raises(_Crash):
            _run(_tiny_config(), out, dataset=digits)
    assert not (out / "summary.json").exists()
    resumed = _run(_tiny_config(), out, resume=True, dataset=digits)
    assert _numbers(out) == _numbers(full)
    assert _without_timings(resumed) == _without_timings(summary)
    assert json.loads((out / "summary.json").read_text()) == resumed
    assert all_steps(out / "checkpoints") == all_steps(full / "checkpoints") == [2, 3]


def test_resume_redoes_an_epoch_whose_record_is_missing(uninterrupted, tmp_path, digits):
    """The issue's reproduction: checkpoints 2 and 3 on disk, the log cut after epoch 2."""
    import shutil

    out = tmp_path / "cut"
    shutil.copytree(uninterrupted[0], out)
    lines = (out / "log.jsonl").read_text().splitlines(keepends=True)
    (out / "log.jsonl").write_text("".join(lines[:2]))
    for name in ("summary.json", "summary.md"):
        (out / name).unlink()
    summary = _run(_tiny_config(), out, resume=True, dataset=digits)
    assert _numbers(out) == _numbers(uninterrupted[0])
    assert summary["epochs"] == 3 and _without_timings(summary) == _without_timings(uninterrupted[1])


def test_resume_epoch_agrees_with_a_brute_force_rule():
    from itertools import combinations

    from nasgen.train.run import resume_epoch

    # Independent statement: the largest checkpoint c such that the log starts
    # with exactly the records 1..c.
    for logged_count in range(5):
        logged = list(range(1, logged_count + 1))
        for size in range(4):
            for checkpoints in combinations(range(1, 5), size):
                expected = max([c for c in checkpoints if logged[:c] == list(range(1, c + 1))], default=0)
                assert resume_epoch(logged, checkpoints) == expected
    assert resume_epoch([1, 3], [1, 3]) == 1  # a gap in the log stops at the gap


# -- signals and concurrent runs, through the CLI in-process ----------------------------------


def _tiny_cli_args(tmp_path):
    archs = tmp_path / "archs.jsonl"
    archs.write_text("".join(json.dumps(a) + "\n" for a in _ARCHS))
    return ["train", "--architectures", str(archs), "--epochs", "3", "--batch-size", "32", "--width", "4",
            "--train-limit", "256", "--test-limit", "100", "--eval-batch-size", "64", "--learning-rate", "3e-3",
            "--seed", "7", "--no-progress", "--no-compile-cache", "--no-plots"]


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_during_a_save_ends_in_one_line_and_resumes(uninterrupted, tmp_path, capsys, monkeypatch,
                                                             terminal_sigint, signum):
    import os
    import signal

    import nasgen.train.checkpoint as checkpoint
    from nasgen.train.checkpoint import all_steps

    real_save = checkpoint.save

    def save(directory, step, state, **options):
        if step == 2:
            os.kill(os.getpid(), getattr(signal, signum))  # arrives while orbax writes
        return real_save(directory, step, state, **options)

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "save", save)
        code, _, err = _cli(_tiny_cli_args(tmp_path) + ["--output-dir", str(out)], capsys)
    lines = [line for line in err.splitlines() if not line.startswith("nasgen: epoch ")]
    assert code == 130 and len(lines) == 1 and "interrupted" in lines[0] and "--resume" in lines[0], err
    assert "Traceback" not in err
    assert all_steps(out / "checkpoints") == [1, 2]  # the save finished before the signal acted
    assert [r["epoch"] for r in report.read_log(out / "log.jsonl")] == [1, 2]
    code, _, err = _cli(["train", "--resume", str(out), "--no-progress", "--no-compile-cache"], capsys)
    assert code == 0, err
    assert _numbers(out) == _numbers(uninterrupted[0])


def test_a_second_run_into_a_locked_directory_is_refused(tmp_path, capsys):
    import fcntl

    from nasgen.train.run import LOCK_FILE

    out = tmp_path / "run"
    out.mkdir()
    with open(out / LOCK_FILE, "a") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds it
        code, _, err = _cli(_tiny_cli_args(tmp_path) + ["--output-dir", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1 and "another nasgen run is using" in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]


@pytest.mark.slow
def test_two_runs_started_at_once_one_wins(tmp_path):
    args = _tiny_cli_args(tmp_path)
    args[args.index("--epochs") + 1] = "1"
    command = [sys.executable, "-m", "nasgen", *args, "--output-dir", str(tmp_path / "same")]
    runs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = sorted((run.wait(timeout=600), run.stderr.read()) for run in runs)
    for run in runs:
        run.stdout.close(), run.stderr.close()
    (won, _), (lost, err) = results
    assert (won, lost) == (0, 2)
    assert err.count("\n") == 1 and err.startswith("nasgen: error:") and "Traceback" not in err
    assert [r["epoch"] for r in report.read_log(tmp_path / "same" / "log.jsonl")] == [1]


# -- run-level bad input: one line, exit 2, nothing changed ----------------------------------


def _damage(kind, run_dir: Path):
    if kind == "checkpoint":
        for f in (run_dir / "checkpoints" / "3").rglob("*"):
            if f.is_file():
                f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    elif kind == "config-list":
        (run_dir / "config.json").write_text("[1, 2]\n")
    elif kind == "config-not-utf8":
        (run_dir / "config.json").write_bytes(b"\xff\xfe{\"config\": 1}")
    elif kind == "log-not-json":
        (run_dir / "log.jsonl").write_text("{\"epoch\": 1}\nnot json\n")
    elif kind == "log-no-epoch":
        lines = (run_dir / "log.jsonl").read_text().splitlines()
        record = json.loads(lines[1])
        del record["epoch"]
        (run_dir / "log.jsonl").write_text("\n".join([lines[0], json.dumps(record), lines[2]]) + "\n")


@pytest.mark.parametrize("kind", ["checkpoint", "config-list", "config-not-utf8", "log-not-json", "log-no-epoch"])
def test_resuming_a_damaged_run_is_one_line_and_changes_nothing(uninterrupted, tmp_path, capsys, kind):
    import shutil

    out = tmp_path / "damaged"
    shutil.copytree(uninterrupted[0], out)
    (out / "summary.json").unlink()  # so that the resume has work to do
    _damage(kind, out)
    before = _snapshot(out)
    code, _, err = _cli(["train", "--resume", str(out), "--no-progress", "--no-compile-cache"], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("nasgen: error:"), err
    assert _snapshot(out) == before


def test_new_run_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    args = _tiny_cli_args(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    cases = [
        (["--output-dir", str(blocker / "run")], "which is a file"),
        (["--output-dir", str(blocker)], "is a file"),
        (["--output-dir", "/sys/nasgen-run"], "cannot create output directory"),
        (["--output-dir", str(tmp_path / "r"), "--space", "[8, 8]"], "--space: a search space must be a JSON object"),
        (["--output-dir", str(tmp_path / "r"), "--space", '{"input_shape": [8, 8]}'], "lacks output_shape"),
        (["--output-dir", str(tmp_path / "r"), "--width", "100000"], "GiB per device"),
        (["--output-dir", str(tmp_path / "r"), "--devices", "64"], "more than the"),
        (["--output-dir", str(tmp_path / "r"), "--devices", "0"], "positive integer"),
        (["--output-dir", str(tmp_path / "r"), "--seeds", "1,x"], "--seeds must be"),
        (["--output-dir", str(tmp_path / "r"), "--seeds", "1,1"], "each once"),
        (["--output-dir", str(tmp_path / "r"), "--seeds", "1,2"], "--seed or --seeds"),
        (["--output-dir", str(tmp_path / "r"), "--width-multiplier", "inf"], "width multiplier"),
        (["--output-dir", str(tmp_path / "r"), "--step-programs", "0"], "--step-programs must be an integer"),
        (["--output-dir", str(tmp_path / "r"), "--step-programs", "4"], "number of networks (3)"),
    ]
    for extra, message in cases:
        code, _, err = _cli(args + extra, capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, (extra, err)
    assert blocker.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "archs.jsonl"]


def test_non_finite_data_is_refused_and_divergence_fails(tmp_path, digits):
    import dataclasses

    poisoned = digits.train_images.copy()
    poisoned[3, 2, 2, 0] = np.nan
    with pytest.raises(NasgenError, match="non-finite training images"):
        _run(_tiny_config(), tmp_path / "nan", dataset=dataclasses.replace(digits, train_images=poisoned))
    assert not (tmp_path / "nan").exists()
    # Finite but enormous pixels overflow float32 inside the networks: the
    # run must fail in one line, not report alpha = NaN.
    huge = dataclasses.replace(digits, train_images=digits.train_images * np.float32(3e38))
    with pytest.raises(RunError, match="training diverged in epoch 1"):
        _run(_tiny_config(), tmp_path / "huge", dataset=huge)
    assert not (tmp_path / "huge" / "log.jsonl").read_text()
    assert not (tmp_path / "huge" / "checkpoints").exists()


# -- progress, logs and the recorded environment -----------------------------------------------


def test_epoch_lines_are_logged_and_compile_time_is_separate(uninterrupted, tmp_path, digits, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="nasgen.train.run"):
        train(_tiny_config(epochs=2), tmp_path / "logged", dataset=digits, progress=None)  # stderr is no terminal here
    lines = [r.getMessage() for r in caplog.records if r.name == "nasgen.train.run"]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    records = report.read_log(tmp_path / "logged" / "log.jsonl")
    assert records[0]["compile_seconds"] >= 0 and records[1]["compile_seconds"] == 0
    assert all(r["images_per_second"] > 0 for r in records)


def test_config_records_data_versions_devices_and_times(uninterrupted, digits):
    import hashlib
    from datetime import datetime

    out, _ = uninterrupted
    stored = json.loads((out / "config.json").read_text())
    data = stored["dataset"]
    assert (data["name"], data["train_size"], data["test_size"], data["image_shape"]) == ("digits", 256, 100, [8, 8, 1])
    digest = hashlib.sha256()
    for array in (digits.train_images[:256], digits.train_labels[:256], digits.test_images[:100], digits.test_labels[:100]):
        digest.update(f"{array.dtype.str}{array.shape}".encode() + np.ascontiguousarray(array).tobytes())
    assert data["sha256"] == digest.hexdigest()
    assert stored["devices"] == 1
    session = stored["sessions"][-1]
    assert datetime.fromisoformat(session["ended"]) >= datetime.fromisoformat(session["started"])
    assert set(session["versions"]) >= {"nasgen", "jax", "flax", "optax"} and session["devices"] == 1


def test_summary_per_network_table(uninterrupted):
    from nasgen.nn.summary import model_stats

    out, summary = uninterrupted
    config = _tiny_config()
    for entry, arch in zip(summary["per_network"], [config.baseline_architecture(), *config.generated_architectures()]):
        assert entry["architecture"] == arch.to_dict()
        total = model_stats(DIGITS_SPACE, arch, width=4)[-1]
        assert (entry["params"], entry["flops"]) == (total["params"], total["flops"])
        assert entry["accuracy_low"] <= entry["accuracy"] <= entry["accuracy_high"]
    md = (out / "summary.md").read_text()
    assert "| Network | Architecture (kernel/stride per layer) | Parameters | FLOPs / image |" in md
    assert "100 test images: one image is 0.0100 of accuracy" in md


def test_wilson_interval_matches_scipy():
    from scipy.stats import binomtest

    for correct, total in [(0, 10), (3, 10), (10, 10), (97, 100), (9769, 10000), (1, 359)]:
        expected = binomtest(correct, total).proportion_ci(confidence_level=0.95, method="wilson")
        low, high = wilson_interval(correct, total)
        assert low == pytest.approx(expected.low, abs=1e-9) and high == pytest.approx(expected.high, abs=1e-9)


def _synthetic_records(networks, epochs):
    rng = np.random.default_rng(0)
    return [
        report.epoch_record(epoch=e, alpha=rng.normal(size=networks), train_losses=np.ones(networks),
                            mixture_train_loss=1.0, test_accuracies=rng.uniform(0.96, 0.99, networks),
                            mixture_test_accuracy=0.985, train_seconds=1, images_per_second=1)
        for e in range(1, epochs + 1)
    ]


def test_plots_name_every_network_at_m_21_without_touching_the_backend(tmp_path):
    import matplotlib
    from PIL import Image

    backend = matplotlib.get_backend()
    names = ["c0 (baseline)"] + [f"c{i}" for i in range(1, 22)]
    records = _synthetic_records(len(names), 3)
    summary = report.summarize(records, names=names, dataset="mnist", test_size=10000)
    figures = report.plot_figures(records, names, summary)
    alpha_axis = figures["alpha"].axes[0]
    assert [t.get_text().split()[0] for t in alpha_axis.get_yticklabels()] == [n.split()[0] for n in names]
    assert all(float(t).is_integer() for t in alpha_axis.get_xticks() if 0.5 <= t <= 3.5)
    accuracy_axis = figures["accuracy"].axes[0]
    assert [t.get_text().split()[0] for t in accuracy_axis.get_yticklabels()] == [n.split()[0] for n in names] + ["mixture"]
    low, high = accuracy_axis.get_xlim()  # zoomed to the 0.96..0.99 accuracies and their intervals
    assert 0.9 < low < min(e["accuracy_low"] for e in summary["per_network"]) and high < 1.0
    paths = report.write_plots(tmp_path, records, names, summary)
    for path in paths.values():
        with Image.open(path) as image:
            assert image.format == "PNG"
    assert matplotlib.get_backend() == backend


def test_seed_summary_is_mean_and_sample_std(tmp_path, digits, capsys):
    archs = tmp_path / "archs.jsonl"
    archs.write_text("".join(json.dumps(a) + "\n" for a in _ARCHS))
    args = ["train", "--architectures", str(archs), "--epochs", "1", "--batch-size", "32", "--width", "4",
            "--train-limit", "128", "--test-limit", "50", "--no-progress", "--no-compile-cache", "--no-plots", "--seeds", "5,6"]
    code, out, err = _cli(args + ["--output-dir", str(tmp_path / "seeds")], capsys)
    assert code == 0, err
    assert out.startswith("# Mixture training over 2 seeds (5, 6)")
    aggregate = json.loads((tmp_path / "seeds" / "seeds-summary.json").read_text())
    runs = [json.loads((tmp_path / "seeds" / f"seed-{s}" / "summary.json").read_text()) for s in (5, 6)]
    values = [r["mixture_accuracy"] for r in runs]
    figure = aggregate["figures"]["mixture_accuracy"]
    assert figure["values"] == values
    assert figure["mean"] == pytest.approx(np.mean(values)) and figure["std"] == pytest.approx(np.std(values, ddof=1))
    for seed, run in zip((5, 6), runs):
        assert json.loads((tmp_path / "seeds" / f"seed-{seed}" / "config.json").read_text())["config"]["seed"] == seed
    code, _, _ = _cli(["train", "--resume", str(tmp_path / "seeds"), "--no-progress", "--no-compile-cache"], capsys)
    assert code == 0


# -- any dataset from an npz ----------------------------------------------------------------


def _digits_npz(path: Path, digits, scale: float = 1.0):
    np.savez(path, x_train=digits.train_images[:256] * np.float32(scale), y_train=digits.train_labels[:256],
             x_test=digits.test_images[:100] * np.float32(scale), y_test=digits.test_labels[:100])
    return path


def _npz_chain_args(tmp_path, npz):
    args = _tiny_cli_args(tmp_path)
    args[args.index("--epochs") + 1] = "1"
    return args + ["--dataset", str(npz), "--model", "chain", "--space", json.dumps(DIGITS_SPACE.to_dict()),
                   "--baseline", json.dumps(DIGITS_BASELINE.to_dict())]


def test_an_npz_dataset_labels_the_report_and_divergence_exits_2(tmp_path, digits, capsys):
    npz = _digits_npz(tmp_path / "eights.npz", digits)
    code, out, err = _cli(_npz_chain_args(tmp_path, npz) + ["--output-dir", str(tmp_path / "ok")], capsys)
    assert code == 0, err
    assert "| Baseline (c0) | eights |" in out
    stored = json.loads((tmp_path / "ok" / "config.json").read_text())
    assert stored["dataset"]["name"] == "eights" and stored["dataset"]["source"] == str(npz)
    huge = _digits_npz(tmp_path / "huge.npz", digits, scale=3e38)
    code, _, err = _cli(_npz_chain_args(tmp_path, huge) + ["--output-dir", str(tmp_path / "bad")], capsys)
    assert code == 2 and err.count("\n") == 1 and "training diverged in epoch 1" in err, err
    assert not (tmp_path / "bad" / "summary.json").exists()


@pytest.mark.slow
def test_resnet18_on_32x32x3_images_from_an_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    npz = tmp_path / "colour.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), y_train=rng.integers(0, 4, 64),
             x_test=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), y_test=rng.integers(0, 4, 20))
    from nasgen.nn.spec import resnet_space
    from nasgen.samplers.registry import sample as draw_sample

    archs = tmp_path / "archs.jsonl"
    archs.write_text("".join(json.dumps(a.to_dict()) + "\n" for a in draw_sample(resnet_space((32, 32, 3)), 1, seed=0)))
    code, out, err = _cli(["train", "--architectures", str(archs), "--dataset", str(npz), "--epochs", "1",
                           "--batch-size", "16", "--width-multiplier", "0.0625", "--no-progress",
                           "--no-compile-cache", "--no-plots", "--output-dir", str(tmp_path / "run")], capsys)
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["image_shape"] == [32, 32, 3] and config["dataset"]["num_classes"] == 4
    assert "| Baseline (c0) | colour |" in out


# -- data parallelism over forced host devices --------------------------------------------------

_DEVICES_RUN = textwrap.dedent(
    """
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax
    from nasgen.train.data import load_digits
    from nasgen.train.run import TrainConfig, train
    assert jax.device_count() == 4, jax.devices()
    config = TrainConfig.from_dict(json.loads(sys.argv[1]))
    data = load_digits()
    for n in (1, 2, 4):
        train(config, os.path.join(sys.argv[2], f"d{n}"), dataset=data, progress=False, plots=False, devices=n)
    # The step split into programs, sharded the same way.
    train(config, os.path.join(sys.argv[2], "d4s"), dataset=data, progress=False, plots=False, devices=4,
          step_programs=3)
    """
)


@pytest.mark.slow
def test_one_two_and_four_devices_give_the_same_numbers(tmp_path):
    config = _tiny_config(epochs=2)
    done = subprocess.run([sys.executable, "-c", _DEVICES_RUN, json.dumps(config.to_dict()), str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {n: _numbers(tmp_path / f"d{n}") for n in (1, 2, 4, "4s")}
    for n in (2, 4, "4s"):
        assert json.loads((tmp_path / f"d{n}" / "config.json").read_text())["devices"] == (4 if n == "4s" else n)
        for one, many in zip(runs[1], runs[n]):
            assert one["epoch"] == many["epoch"]
            for key in ("alpha", "train_loss", "softmax_alpha"):
                np.testing.assert_allclose(many[key], one[key], rtol=1e-4, atol=1e-5, err_msg=f"{key}, {n} devices")
            np.testing.assert_allclose(many["mixture_train_loss"], one["mixture_train_loss"], rtol=1e-4)
            # Accuracies are counts of 100 test images: a logit that ties
            # within float error may flip one image.
            np.testing.assert_allclose(many["test_accuracy"], one["test_accuracy"], atol=0.011)


# -- the stored step in the compilation cache -----------------------------------------------------


def test_a_warm_run_loads_the_compiled_step_and_gives_the_same_numbers(tmp_path, digits, monkeypatch):
    import nasgen.train.run as train_module
    from nasgen.train.run import STEP_DIR, STEP_SUFFIX

    cache = tmp_path / "cache"
    config = _tiny_config(epochs=1)
    clear_step_programs()  # a cold start: not the step an earlier test left in this process
    cold = _run(config, tmp_path / "cold", dataset=digits, compilation_cache=cache)
    stored = list((cache / STEP_DIR).glob(f"*{STEP_SUFFIX}"))
    assert len(stored) == 1

    def no_tracing(*args, **kwargs):
        raise AssertionError("the step was traced again instead of loaded from the cache")

    def no_compiling(*args, **kwargs):
        raise AssertionError("the step was compiled again instead of loaded from the cache")

    clear_step_programs()  # as a new process would be: the step comes from the cache, not from memory
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "_network_gradients", no_tracing)
        patch.setattr(train_module, "_compile_program", no_compiling)
        warm = _run(config, tmp_path / "warm", dataset=digits, compilation_cache=cache)
    assert _numbers(tmp_path / "warm") == _numbers(tmp_path / "cold")
    assert _without_timings(warm) == _without_timings(cold)
    # Without the cache the same step is traced and compiled in-process: same numbers.
    clear_step_programs()
    _run(config, tmp_path / "plain", dataset=digits, compilation_cache=False)
    assert _numbers(tmp_path / "plain") == _numbers(tmp_path / "cold")
    # A damaged or truncated entry is compiled again and replaced, not an error.
    entry = stored[0]
    good = entry.read_bytes()
    for n, damaged in enumerate((b"not a compiled step", good[: len(good) // 2], good[:-1] + bytes([good[-1] ^ 1]))):
        entry.write_bytes(damaged)
        clear_step_programs()
        _run(config, tmp_path / f"repaired{n}", dataset=digits, compilation_cache=cache)
        assert _numbers(tmp_path / f"repaired{n}") == _numbers(tmp_path / "cold")
        # Replaced by a program that loads, or (when JAX's own cache supplied the
        # program, which cannot be stored again) removed.
        assert not entry.exists() or train_module._load_program(entry) is not None


def test_step_identity_leaves_out_only_what_the_step_does_not_depend_on():
    base = _tiny_config()
    same = [_tiny_config(seed=8), _tiny_config(epochs=5), _tiny_config(train_limit=128, test_limit=50),
            _tiny_config(eval_batch_size=10), _tiny_config(init_scale=0.5)]
    assert all(c.step_identity() == base.step_identity() for c in same)
    different = [_tiny_config(learning_rate=1e-3), _tiny_config(weight_decay=0.1), _tiny_config(batch_size=16),
                 _tiny_config(width=8), _tiny_config(optimizer="adamw"), _tiny_config(mixing="probabilities"),
                 _tiny_config(architectures=_ARCHS[:1]), _tiny_config(bn_momentum=0.5)]
    identities = {c.step_identity() for c in different}
    assert len(identities) == len(different) and base.step_identity() not in identities


def test_a_fused_step_compiles_once_from_freshly_created_state(tmp_path, digits):
    # A mixture fresh from create_mixture holds uncommitted arrays and the step returns
    # committed ones; both calls must run the same compiled program, which JAX's
    # persistent cache shows as exactly one stored step.
    import jax.numpy as jnp

    from nasgen.train.run import FusedStep, create_mixture, enable_compilation_cache

    before = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    cache = enable_compilation_cache(tmp_path / "cache")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # store even a quick compile
    try:
        config = _tiny_config()
        identity = json.dumps(config.to_dict(), sort_keys=True)
        mixture, optimizer = create_mixture(config, in_channels=digits.channels, num_classes=int(digits.num_classes))
        mixture.train()
        x = jnp.asarray(digits.train_images[: config.batch_size])
        y = jnp.asarray(digits.train_labels[: config.batch_size])
        clear_step_programs()  # compiled here, not reused from an earlier test in this process
        step = FusedStep(mixture, optimizer, x, y, cache_dir=cache, identity=identity)
        for _ in range(2):
            step(x, y)
        assert len(list(cache.glob("jit_nasgen_step*"))) == 1
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])


def test_a_fused_step_of_the_same_structure_reuses_the_compiled_program(digits):
    # The next seed of --seeds (or another train() call in a notebook) reuses the
    # compiled step in memory instead of loading or compiling it again; its numbers
    # are its own mixture's, as nnx.jit's train_step computes them.
    from nasgen.train.run import FusedStep, create_mixture, train_step

    x = jnp.asarray(digits.train_images[:32])
    y = jnp.asarray(digits.train_labels[:32])

    def fused(config):
        mixture, optimizer = create_mixture(config, in_channels=digits.channels, num_classes=int(digits.num_classes))
        mixture.train()
        return FusedStep(mixture, optimizer, x, y, identity=config.step_identity())

    def by_train_step(config):
        mixture, optimizer = create_mixture(config, in_channels=digits.channels, num_classes=int(digits.num_classes))
        mixture.train()
        losses = train_step(mixture, optimizer, x, y)
        return losses, jax.tree.leaves(nnx.state((mixture, optimizer)))

    clear_step_programs()
    first = fused(_tiny_config())
    assert not first.reused
    first(x, y)
    second = fused(_tiny_config(seed=8))
    assert second.reused
    losses = second(x, y)
    expected_losses, expected_leaves = by_train_step(_tiny_config(seed=8))
    np.testing.assert_allclose(np.asarray(losses[1]), np.asarray(expected_losses[1]), rtol=1e-5, atol=1e-6)
    for got, want in zip(second.leaves, expected_leaves, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    # The first seed's own state was not touched by the second's steps.
    first_losses = first(x, y)
    assert not np.allclose(np.asarray(first_losses[1]), np.asarray(losses[1]))
    assert not fused(_tiny_config(learning_rate=1e-3)).reused  # another step: compiled anew
    clear_step_programs()
    assert not fused(_tiny_config(seed=8)).reused


def _fused_step(config, digits, **options):
    from nasgen.train.run import FusedStep, create_mixture

    x = jnp.asarray(digits.train_images[:32])
    y = jnp.asarray(digits.train_labels[:32])
    mixture, optimizer = create_mixture(config, in_channels=digits.channels, num_classes=int(digits.num_classes))
    mixture.train()
    return FusedStep(mixture, optimizer, x, y, identity=config.step_identity(), **options), x, y


def test_the_step_on_a_cpu_compiles_without_ynnpack_fusions_and_updates_the_same(digits):
    # nasgen's CPU default (STEP_COMPILER_OPTIONS) reaches XLA: its program has no
    # YNNPACK fusion, where XLA's own defaults ({}) hand it the convolutions and
    # reductions. Both compute the same update, to float rounding.
    from nasgen.train.run import STEP_COMPILER_OPTIONS

    clear_step_programs()
    ours, x, y = _fused_step(_tiny_config(), digits)
    xla, _, _ = _fused_step(_tiny_config(), digits, compiler_options={})
    assert ours.compiler_options == STEP_COMPILER_OPTIONS and xla.compiler_options == {}
    assert not xla.reused  # other options: another program than the one kept in the process
    assert "ynn_fusion" not in ours._call.as_text()
    assert "ynn_fusion" in xla._call.as_text()
    for _ in range(2):
        ours_losses, xla_losses = ours(x, y), xla(x, y)
        np.testing.assert_allclose(np.asarray(ours_losses[1]), np.asarray(xla_losses[1]), rtol=1e-5, atol=1e-6)
    for got, want in zip(ours.leaves, xla.leaves, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)


def test_evaluation_counts_as_the_eager_mixture_and_compiles_without_ynnpack_on_a_cpu(digits):
    # evaluate() runs one jitted program (nasgen's CPU options) over padded batches;
    # its accuracies are those of the mixture run eagerly on the whole test set.
    import nasgen.train.run as train_module
    from nasgen.train.run import STEP_COMPILER_OPTIONS, create_mixture, evaluate

    mixture, _ = create_mixture(_tiny_config(), in_channels=digits.channels, num_classes=int(digits.num_classes))
    images, labels = digits.test_images[:100], digits.test_labels[:100]
    accuracies, mixture_accuracy = evaluate(mixture, images, labels, 64)  # 64 + 36 padded
    mixed, logits = mixture(jnp.asarray(images))
    expected = [float(np.mean(np.argmax(np.asarray(z), -1) == labels)) for z in logits]
    np.testing.assert_allclose(accuracies, expected)
    assert mixture_accuracy == pytest.approx(float(np.mean(np.argmax(np.asarray(mixed), -1) == labels)))
    graphdef, state = nnx.split(mixture)
    program = train_module._EVAL_PROGRAMS[(graphdef, repr(sorted(STEP_COMPILER_OPTIONS.items())))]
    x, y, valid = jnp.asarray(images[:64]), jnp.asarray(labels[:64]), jnp.ones(64, bool)
    assert "ynn_fusion" not in program.lower(state, x, y, valid).compile().as_text()


def test_compiler_options_that_xla_does_not_know(digits, monkeypatch):
    # nasgen's own default is left out where this XLA lacks it (a later jax may
    # drop an experimental option); one a caller asks for is a clear error.
    import nasgen.train.run as train_module
    from nasgen.train.run import FusedStep

    monkeypatch.setattr(train_module, "STEP_COMPILER_OPTIONS", {"xla_cpu_no_such_option": True})
    clear_step_programs()
    step, x, y = _fused_step(_tiny_config(), digits)
    assert np.all(np.isfinite(np.asarray(step(x, y)[1])))
    accuracies, _ = train_module.evaluate(step._objects[0], digits.test_images[:50], digits.test_labels[:50], 32)
    assert accuracies.shape == (len(_ARCHS) + 1,) and np.all((0 <= accuracies) & (accuracies <= 1))
    with pytest.raises(NasgenError, match="compiler_options .*xla_cpu_nor_this_one"):
        _fused_step(_tiny_config(seed=9), digits, compiler_options={"xla_cpu_nor_this_one": True})
    with pytest.raises(NasgenError, match="compiler_options must be a dict"):
        FusedStep(*step._objects, x, y, compiler_options="fast")
    clear_step_programs()


@pytest.mark.parametrize("optimizer", ["adam-l2", "adamw"])
def test_a_step_split_into_programs_updates_like_the_one_program_step(tmp_path, digits, optimizer):
    # Groups of networks in programs of their own plus alpha's: every leaf of the
    # mixture and the optimiser after three steps equals the one-program step's;
    # a new FusedStep (as in a new process) loads every part from the cache.
    from nasgen.train.run import FusedStep, create_mixture

    config = _tiny_config(optimizer=optimizer, weight_decay=0.01)
    x = jnp.asarray(digits.train_images[:32])
    y = jnp.asarray(digits.train_labels[:32])

    def three_steps(programs, cache=None):
        mixture, optimizer_ = create_mixture(config, in_channels=digits.channels,
                                             num_classes=int(digits.num_classes))
        mixture.train()
        step = FusedStep(mixture, optimizer_, x, y, cache_dir=cache, identity=config.step_identity(),
                         programs=programs)
        losses = [step(x, y) for _ in range(3)]
        step.sync()
        return step, losses, jax.tree.leaves(nnx.state((mixture, optimizer_)))

    clear_step_programs()
    _, one_losses, one = three_steps(1)
    networks = len(config.architectures) + 1
    for programs in (2, networks):
        step, losses, split = three_steps(programs, tmp_path / "cache")
        assert step.programs == programs and not step.loaded_from_cache
        for got, want in zip(losses, one_losses, strict=True):
            np.testing.assert_allclose(np.asarray(got[0]), np.asarray(want[0]), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), rtol=1e-5, atol=1e-7)
        for a, b in zip(split, one, strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    clear_step_programs()
    step, _, again = three_steps(networks, tmp_path / "cache")
    assert step.loaded_from_cache and not step.reused
    for a, b in zip(again, split, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(NasgenError, match="programs must be an integer from 1 to the number of networks"):
        three_steps(networks + 1)



def test_a_run_with_a_split_step_logs_the_one_program_numbers(tmp_path, digits):
    config = _tiny_config(epochs=2)
    _run(config, tmp_path / "one", dataset=digits, compilation_cache=False)
    _run(config, tmp_path / "split", dataset=digits, compilation_cache=False, step_programs=3)
    one, split = _numbers(tmp_path / "one"), _numbers(tmp_path / "split")
    assert [sorted(r) for r in split] == [sorted(r) for r in one]
    for a, b in zip(split, one, strict=True):
        for key, value in b.items():
            if isinstance(value, str) or value is None:
                assert a[key] == value, key
            else:  # numbers and lists of numbers: equal to float rounding
                np.testing.assert_allclose(np.asarray(a[key], float), np.asarray(value, float), rtol=1e-4, atol=1e-6,
                                           err_msg=key)
    config_json = json.loads((tmp_path / "split" / "config.json").read_text())
    assert config_json["sessions"][-1]["step_programs"] == 3
    # Not given: chosen for the devices (3 networks on a CPU: one program) and recorded as a number.
    config_json = json.loads((tmp_path / "one" / "config.json").read_text())
    assert config_json["sessions"][-1]["step_programs"] == default_step_programs(3, "cpu") == 1


def test_the_default_step_programs_hold_about_five_networks_each_on_a_cpu_and_one_elsewhere():
    for networks in range(1, 200):
        programs = default_step_programs(networks, "cpu")
        assert 1 <= programs <= networks
        if networks >= 3:
            assert 2.5 <= networks / programs < 7.5, networks
        for platform in ("gpu", "tpu"):
            assert default_step_programs(networks, platform) == 1
    assert default_step_programs(21, "cpu") == 4  # M = 20, the figure in bench/results/train.md
