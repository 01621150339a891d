"""Training figures: formats and their bytes, the zoomed accuracy axis, architecture labels, the seeds plot."""

from __future__ import annotations

import numpy as np
import pytest

from nasgen.common.stats import wilson_interval
from nasgen.train import report

from ..conftest import run_cli

MAGIC = {"png": (b"\x89PNG\r\n\x1a\n",), "pdf": (b"%PDF-",), "svg": (b"<?xml", b"<svg")}

# Three networks and their labels, written out by hand (kernels, then strides, layer by layer).
NETWORKS = [
    ({"layers": 3, "kernel": [[3, 3]] * 3, "stride": [[1, 1]] * 3}, "c0  k 3,3,3 s 1,1,1 (baseline)"),
    ({"layers": 2, "kernel": [[3, 3], [5, 5]], "stride": [[1, 1], [2, 2]]}, "c1  k 3,5 s 1,2"),
    ({"layers": 1, "kernel": [[4, 2]], "stride": [[2, 1]]}, "c2  k 4x2 s 2x1"),
]
NAMES = ["c0 (baseline)", "c1", "c2"]


def _records(accuracies, mixture, epochs=2):
    """Log records as plain dicts (only the fields the reports read), the last epoch with ``accuracies``."""
    records = []
    for epoch in range(1, epochs + 1):
        alpha = np.linspace(0.0, 0.1 * epoch, len(accuracies))
        records.append({"epoch": epoch, "alpha": list(alpha), "softmax_alpha": list(report.softmax(alpha)),
                        "alpha_deviation": report.alpha_deviation(alpha), "test_accuracy": list(accuracies),
                        "mixture_test_accuracy": mixture})
    return records


def _summary(accuracies, mixture, test_size=10000):
    networks = [{"architecture": arch, "params": 1, "flops": 1} for arch, _ in NETWORKS]
    return report.summarize(_records(accuracies, mixture), names=NAMES, dataset="mnist", networks=networks,
                            test_size=test_size)


def test_architecture_label_lists_kernels_then_strides_per_layer():
    for arch, label in NETWORKS:
        assert report.architecture_label(arch) == label.split("  ")[1].removesuffix(" (baseline)")
    assert report.architecture_label({"kernel": [], "stride": []}) == "no layers"
    assert report.architecture_label({"kernel": [[3], [2]], "stride": [[1], [2]]}) == "k 3,2 s 1,2"


def test_accuracy_axis_zooms_to_every_interval_and_labels_architectures():
    accuracies, mixture = [0.9710, 0.9724, 0.9853], 0.9861
    summary = _summary(accuracies, mixture)
    figure = report.plot_figures(_records(accuracies, mixture), NAMES, summary)["accuracy"]
    axis = figure.axes[0]
    # the intervals, computed here from the counts of correct images
    intervals = [wilson_interval(round(a * 10000), 10000) for a in accuracies + [mixture]]
    low, high = axis.get_xlim()
    assert low <= min(lo for lo, _ in intervals) and high >= max(hi for _, hi in intervals)
    assert 0.9 < low and high < 1.0  # not the whole 0..1: a difference of 0.0014 is visible
    assert high - low < 0.1
    assert "not 0..1" in axis.get_xlabel() and "95% Wilson" in axis.get_title()
    assert [t.get_text() for t in axis.get_yticklabels()] == [label for _, label in NETWORKS] + ["mixture"]
    # each network's interval is drawn as its error bar: the bar's ends are the interval's
    drawn = sorted(tuple(np.round(segment[:, 0], 6)) for c in axis.containers for segment in c[2][0].get_segments())
    assert drawn == sorted(tuple(np.round(i, 6)) for i in intervals)
    heat_map = report.plot_figures(_records(accuracies, mixture), NAMES, summary)["alpha"].axes[0]
    assert [t.get_text() for t in heat_map.get_yticklabels()] == [label for _, label in NETWORKS]


@pytest.mark.parametrize("epochs", [1, 2, 7])
def test_epoch_axes_have_integer_ticks_only(epochs):
    accuracies, mixture = [0.5, 0.6, 0.7], 0.7
    records = _records(accuracies, mixture, epochs=epochs)
    figures = report.plot_figures(records, NAMES, _summary(accuracies, mixture))
    for key in ("alpha", "alpha_deviation"):
        axis = figures[key].axes[0]
        figures[key].canvas.draw()  # ticks as they would be drawn
        low, high = axis.get_xlim()
        ticks = [t for t in axis.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), (key, ticks)


def test_accuracy_axis_without_intervals_still_holds_every_point():
    accuracies, mixture = [0.50, 0.52, 0.51], 0.53
    summary = _summary(accuracies, mixture, test_size=None)
    axis = report.plot_figures(_records(accuracies, mixture), NAMES, summary)["accuracy"].axes[0]
    low, high = axis.get_xlim()
    assert low < 0.50 and high > 0.53 and low > 0.4 and high < 0.6
    assert "Wilson" not in axis.get_title()


@pytest.mark.parametrize("figure_format", ["png", "pdf", "svg"])
def test_write_reports_writes_every_plot_in_the_format(tmp_path, figure_format):
    accuracies, mixture = [0.9710, 0.9724, 0.9853], 0.9861
    summary = _summary(accuracies, mixture)
    report.write_reports(tmp_path, _records(accuracies, mixture), summary, plots=figure_format)
    plots = sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".json" and p.suffix != ".md")
    assert plots == sorted(f"{stem}.{figure_format}" for stem in ("accuracy", "alpha", "alpha_deviation"))
    for name in plots:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(MAGIC[figure_format]), name
        if figure_format == "pdf":
            assert data.rstrip().endswith(b"%%EOF")
        if figure_format == "svg":
            assert b"<svg" in data[:1000] and data.rstrip().endswith(b"</svg>")
    if figure_format == "png":
        from PIL import Image

        with Image.open(tmp_path / "accuracy.png") as image:
            assert image.format == "PNG" and round(image.info["dpi"][0]) == 200


def test_write_reports_without_plots_and_a_bad_format(tmp_path):
    from nasgen.common.errors import NasgenError

    summary = _summary([0.5, 0.6, 0.7], 0.7)
    report.write_reports(tmp_path, _records([0.5, 0.6, 0.7], 0.7), summary, plots=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json", "summary.md"]
    with pytest.raises(NasgenError, match="'jpg' is not one of png, pdf, svg"):
        report.write_plots(tmp_path, _records([0.5, 0.6, 0.7], 0.7), NAMES, summary, figure_format="jpg")


def test_seed_figure_shows_each_seed_with_its_interval_and_the_mean():
    by_seed = {1: [0.96, 0.97, 0.98], 2: [0.965, 0.972, 0.975], 3: [0.958, 0.969, 0.981]}
    mixtures = {1: 0.982, 2: 0.978, 3: 0.984}
    summaries = {seed: _summary(acc, mixtures[seed]) for seed, acc in by_seed.items()}
    axis = report.plot_seed_figure(summaries).axes[0]
    assert [t.get_text() for t in axis.get_yticklabels()] == [label for _, label in NETWORKS] + ["mixture"]
    assert [t.get_text() for t in axis.get_legend().get_texts()] == ["mean across seeds", "seed 1", "seed 2", "seed 3"]
    means = np.mean([by_seed[s] + [mixtures[s]] for s in (1, 2, 3)], axis=0)
    diamonds = [line for line in axis.get_lines() if line.get_marker() == "D"]
    assert len(diamonds) == 1 and np.allclose(diamonds[0].get_xdata(), means)
    low, high = axis.get_xlim()
    every = [wilson_interval(round(a * 10000), 10000) for s in by_seed for a in by_seed[s] + [mixtures[s]]]
    assert low <= min(lo for lo, _ in every) and high >= max(hi for _, hi in every) and low > 0.9 and high < 1.0
    assert "3 seeds" in axis.get_title()


def test_cli_figure_format_for_a_run_over_seeds(tmp_path):
    archs = tmp_path / "archs.jsonl"
    code, _, err = run_cli("sample", "-I", "8,8", "-O", "2,2", "-n", "1", "-N", "3", "-M", "2", "--seed", "1",
                           "-o", archs)
    assert code == 0, err
    code, out, err = run_cli("train", "--architectures", archs, "--epochs", "1", "--batch-size", "32", "--width", "4",
                             "--train-limit", "64", "--test-limit", "40", "--no-progress", "--no-compile-cache",
                             "--seeds", "1,2", "--figure-format", "svg", "--output-dir", tmp_path / "run")
    assert code == 0, err
    run = tmp_path / "run"
    assert (run / "seeds-accuracy.svg").read_bytes().startswith(MAGIC["svg"])
    for seed in (1, 2):
        assert sorted(p.name for p in (run / f"seed-{seed}").glob("*.svg")) == [
            "accuracy.svg", "alpha.svg", "alpha_deviation.svg"]
    assert not list(run.rglob("*.png"))


def test_cli_bad_figure_format_is_one_line(tmp_path):
    code, out, err = run_cli("train", "--architectures", tmp_path / "a.jsonl", "--output-dir", tmp_path / "run",
                             "--figure-format", "jpg")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--figure-format" in err and "'jpg'" in err
    assert not (tmp_path / "run").exists()
