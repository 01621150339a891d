"""nasgen.train.report: alpha deviation, summaries and markdown, the Wilson interval, plots."""

from __future__ import annotations

import numpy as np
import pytest

from nasgen.common.stats import wilson_interval
from nasgen.train import report


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
                            timings={"train_seconds": 1, "images_per_second": 1})
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
                            mixture_test_accuracy=0.985,
                            timings={"train_seconds": 1, "images_per_second": 1})
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
