"""nasgen.cli.train: train, resume, seeds, experiment paper-mnist and npz datasets through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nasgen.space.definition import Architecture
from nasgen.train.config import DIGITS_BASELINE, DIGITS_SPACE

from .conftest import ARCHS, cli_main, snapshot, tiny_cli_args


# -- CLI -------------------------------------------------------------------------------------


def test_cli_errors_are_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, _, err = cli_main(["train", "--architectures", str(empty), "--output-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and err.count("\n") == 1 and "holds no architectures" in err
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text(json.dumps({"kernel": [[3]], "stride": [[1]]}) + "\n")
    code, _, err = cli_main(["train", "--architectures", str(foreign), "--output-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and err.count("\n") == 1 and "not in the chain space" in err
    code, _, err = cli_main(["train", "--architectures", str(foreign)], capsys)
    assert code == 2 and "exactly one of --output-dir" in err
    code, _, err = cli_main(["train", "--architectures", str(foreign), "--output-dir", str(tmp_path / "r"),
                         "--dataset", "mnist", "--data-dir", str(tmp_path / "no-mnist")], capsys)
    assert code == 2 and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train", "--architectures", str(foreign), "--output-dir", str(tmp_path / "r"), "--init-scale", "big"], capsys)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "'big' is not a positive number or 'lecun'" in err
    assert not (tmp_path / "r").exists()


def test_cli_train_and_resume(tmp_path, capsys, uninterrupted):
    archs = tmp_path / "archs.jsonl"
    archs.write_text("".join(json.dumps(a) + "\n" for a in ARCHS))
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
        code, out, err = cli_main(args + ["--output-dir", str(tmp_path / "run")], capsys)
    finally:
        root.removeHandler(collect)
    assert code == 0, err
    assert out.startswith("# Mixture training: 3 networks, 1 epochs, digits")
    # One epoch line, on stderr, and none duplicated through the root logger.
    assert err.count("epoch 1/1: mixture loss") == 1 and err.startswith("nasgen: epoch 1/1")
    assert not [r for r in collect.records if r.name.startswith("nasgen")]
    assert logging.getLogger("nasgen").propagate and not logging.getLogger("nasgen").handlers
    code, _, err = cli_main(["train", "--resume", str(tmp_path / "run"), "--seed", "1"], capsys)
    assert code == 2 and "drop the changed options (seed)" in err
    code, out, _ = cli_main(["train", "--resume", str(tmp_path / "run"), "--no-progress"], capsys)
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
    code, stdout, err = cli_main(["experiment", "paper-mnist", "--samples", "1", "--output-dir", str(out),
                              "--data-dir", str(data_dir), "--width-multiplier", "0.0625", "--epochs", "1",
                              "--batch-size", "32", "--no-progress", "--no-plots"], capsys)
    assert code == 0, err
    archs = [json.loads(line) for line in (out / "architectures.jsonl").read_text().splitlines()]
    assert len(archs) == 1
    from nasgen.nn.spec import RESNET_SPACE
    from nasgen.space.definition import check_membership

    for a in archs:
        check_membership(RESNET_SPACE, Architecture.from_dict(a))
    config = json.loads((out / "run" / "config.json").read_text())["config"]
    assert (config["model"], config["dataset"], config["learning_rate"], config["architectures"]) == ("resnet18", "mnist", 1e-4, archs)
    assert "| Generated-1 | MNIST |" in stdout
    # A second experiment into the same directory is refused, nothing changed.
    before = snapshot(out)
    code, _, err = cli_main(["experiment", "paper-mnist", "--output-dir", str(out), "--data-dir", str(data_dir)], capsys)
    assert code == 2 and "not empty" in err and snapshot(out) == before


# -- any dataset from an npz ----------------------------------------------------------------


def _digits_npz(path: Path, digits, scale: float = 1.0):
    np.savez(path, x_train=digits.train_images[:256] * np.float32(scale), y_train=digits.train_labels[:256],
             x_test=digits.test_images[:100] * np.float32(scale), y_test=digits.test_labels[:100])
    return path


def _npz_chain_args(tmp_path, npz):
    args = tiny_cli_args(tmp_path)
    args[args.index("--epochs") + 1] = "1"
    return args + ["--dataset", str(npz), "--model", "chain", "--space", json.dumps(DIGITS_SPACE.to_dict()),
                   "--baseline", json.dumps(DIGITS_BASELINE.to_dict())]


def test_an_npz_dataset_labels_the_report_and_divergence_exits_2(tmp_path, digits, capsys):
    npz = _digits_npz(tmp_path / "eights.npz", digits)
    code, out, err = cli_main(_npz_chain_args(tmp_path, npz) + ["--output-dir", str(tmp_path / "ok")], capsys)
    assert code == 0, err
    assert "| Baseline (c0) | eights |" in out
    stored = json.loads((tmp_path / "ok" / "config.json").read_text())
    assert stored["dataset"]["name"] == "eights" and stored["dataset"]["source"] == str(npz)
    huge = _digits_npz(tmp_path / "huge.npz", digits, scale=3e38)
    code, _, err = cli_main(_npz_chain_args(tmp_path, huge) + ["--output-dir", str(tmp_path / "bad")], capsys)
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
    code, out, err = cli_main(["train", "--architectures", str(archs), "--dataset", str(npz), "--epochs", "1",
                           "--batch-size", "16", "--width-multiplier", "0.0625", "--no-progress",
                           "--no-compile-cache", "--no-plots", "--output-dir", str(tmp_path / "run")], capsys)
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["image_shape"] == [32, 32, 3] and config["dataset"]["num_classes"] == 4
    assert "| Baseline (c0) | colour |" in out
