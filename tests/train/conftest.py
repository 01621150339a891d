"""Shared fixtures and helpers of the training tests: a tiny digits run, its CLI form and its numbers."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from nasgen.samplers.registry import sample
from nasgen.train import report
from nasgen.train.config import DIGITS_SPACE, RunOptions, TrainConfig
from nasgen.train.data import load_digits
from nasgen.train.loop import train
from nasgen.train.mixture import create_mixture
from nasgen.train.step import FusedStep

ROOT = Path(__file__).resolve().parents[2]


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


ARCHS = [a.to_dict() for a in sample(DIGITS_SPACE, 2, seed=3, replace=False)]


def tiny_config(**overrides):
    settings = dict(architectures=ARCHS, epochs=3, batch_size=32, width=4, train_limit=256, test_limit=100,
                    eval_batch_size=64, learning_rate=3e-3, seed=7)
    settings.update(overrides)
    return TrainConfig.from_dict(settings)


def run_quietly(config, output_dir, *, resume=False, dataset=None, **options):
    """:func:`train` without progress bars or plots (the tests that look at plots call ``train`` itself).

    ``options`` are :class:`RunOptions` fields.
    """
    return train(config, output_dir, RunOptions(progress=False, plots=False, **options), resume=resume, dataset=dataset)


@pytest.fixture(scope="session")
def digits():
    return load_digits()


TIMINGS = report.TIMINGS


def run_numbers(run_dir: Path):
    """Everything a run computes, without its timings."""
    records = report.read_log(run_dir / "log.jsonl")
    for r in records:
        for key in TIMINGS:
            r.pop(key)
    return records


def without_timings(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "compile_seconds"}


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory, digits):
    """The tiny run, uninterrupted, with its plots: (its directory, its summary); the reference of the resume tests."""
    out = tmp_path_factory.mktemp("runs") / "full"
    summary = train(tiny_config(), out, RunOptions(progress=False), dataset=digits)
    return out, summary


def snapshot(directory: Path):
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def cli_main(argv, capsys):
    from nasgen.cli.main import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tiny_cli_args(tmp_path):
    archs = tmp_path / "archs.jsonl"
    archs.write_text("".join(json.dumps(a) + "\n" for a in ARCHS))
    return ["train", "--architectures", str(archs), "--epochs", "3", "--batch-size", "32", "--width", "4",
            "--train-limit", "256", "--test-limit", "100", "--eval-batch-size", "64", "--learning-rate", "3e-3",
            "--seed", "7", "--no-progress", "--no-compile-cache", "--no-plots"]


def fused_step(config, digits, **options):
    """A :class:`FusedStep` of ``config``'s fresh mixture on the first 32 digits, and that batch."""
    x = jnp.asarray(digits.train_images[:32])
    y = jnp.asarray(digits.train_labels[:32])
    mixture, optimizer = create_mixture(config, in_channels=digits.channels, num_classes=int(digits.num_classes))
    mixture.train()
    return FusedStep(mixture, optimizer, x, y, identity=config.step_identity(), **options), x, y
