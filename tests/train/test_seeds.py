"""nasgen.train.seeds: several seeds of one mixture, their mean and sample standard deviation."""

from __future__ import annotations

import json

import numpy as np
import pytest


from .conftest import ARCHS, cli_main


def test_seed_summary_is_mean_and_sample_std(tmp_path, digits, capsys):
    archs = tmp_path / "archs.jsonl"
    archs.write_text("".join(json.dumps(a) + "\n" for a in ARCHS))
    args = ["train", "--architectures", str(archs), "--epochs", "1", "--batch-size", "32", "--width", "4",
            "--train-limit", "128", "--test-limit", "50", "--no-progress", "--no-compile-cache", "--no-plots", "--seeds", "5,6"]
    code, out, err = cli_main(args + ["--output-dir", str(tmp_path / "seeds")], capsys)
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
    code, _, _ = cli_main(["train", "--resume", str(tmp_path / "seeds"), "--no-progress", "--no-compile-cache"], capsys)
    assert code == 0
