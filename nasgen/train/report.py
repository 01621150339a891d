"""Reports of a mixture-training run: JSONL epoch log, summary, Table-3 markdown, plots (PNG, PDF or SVG).

Everything here works on plain numbers (lists and numpy arrays), so reports
can be rebuilt from a run's ``log.jsonl`` without JAX. matplotlib is imported
only inside the plotting functions, which draw on ``matplotlib.figure.Figure``
objects: no pyplot state and no backend switch, so a caller's notebook is
left as it was.

The quantities follow Calhas et al. 2022, section 6.3:

* per network, the test accuracy after the last epoch; over the generated
  networks c_1..c_M their mean, standard deviation, best and worst, against
  the baseline c_0's accuracy (Table 3);
* the network with the largest alpha at the end (the "best NA");
* the alpha deviation from the baseline, ``sqrt(sum_{i=1..M} (alpha_i -
  alpha_0)^2 / (M - 1))``, per epoch (Figure 5).

Note on Table 3: its column headed "alpha deviation" holds 0.0028 and 0.0019,
which the text gives as the standard deviation of the accuracies; the
markdown table here prints both the accuracy standard deviation and the
final alpha deviation, each under its own name.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from nasgen.common.atomic import write_atomic
from nasgen.common.errors import LogError
from nasgen.common.figures import check_figure_format, save_figure
from nasgen.common.stats import wilson_interval

__all__ = [
    "TIMINGS",
    "seed_summary",
    "markdown_seed_summary",
    "alpha_deviation",
    "softmax",
    "epoch_record",
    "append_log",
    "write_log",
    "read_log",
    "summarize",
    "markdown_summary",
    "plot_figures",
    "write_plots",
    "write_reports",
    "SUMMARY_JSON",
    "SUMMARY_MD",
    "PLOT_FILES",
    "SEEDS_PLOT_STEM",
    "architecture_label",
    "plot_file",
    "plot_format",
    "plot_seed_figure",
    "write_seed_plot",
]

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
PLOT_FILES = {"alpha": "alpha.png", "alpha_deviation": "alpha_deviation.png", "accuracy": "accuracy.png"}
"""The plots' file names in the default format, PNG (:func:`plot_file` for another)."""
SEEDS_PLOT_STEM = "seeds-accuracy"


def softmax(alpha: Sequence[float]) -> np.ndarray:
    """softmax of a 1-D vector, computed stably in float64."""
    a = np.asarray(alpha, np.float64)
    e = np.exp(a - a.max())
    return e / e.sum()


def alpha_deviation(alpha: Sequence[float]) -> float:
    """The paper's alpha deviation from the baseline (Figure 5).

    ``sqrt(sum_{i=1..M} (alpha_i - alpha_0)^2 / (M - 1))`` with alpha_0 the
    baseline's weight. Defined for M >= 2; for M = 1 the ``M - 1`` divisor is
    zero and NaN is returned.

    >>> alpha_deviation([0.0, 1.0, -1.0, 1.0])
    1.224744871391589
    """
    a = np.asarray(alpha, np.float64)
    m = len(a) - 1
    if m < 2:
        return float("nan")
    return float(math.sqrt(float(((a[1:] - a[0]) ** 2).sum()) / (m - 1)))


def _finite_or_none(value: float) -> float | None:
    # JSON has no NaN: an undefined figure (alpha deviation with M < 2) is null.
    return None if math.isnan(value) else float(value)


def _floats(values: Iterable[float]) -> list[float]:
    return [float(v) for v in np.asarray(values, np.float64).ravel()]


TIMINGS = ("train_seconds", "images_per_second", "compile_seconds", "eval_seconds")
"""The timings of a log record, in its order: they vary from run to run where every other field is reproduced."""


def epoch_record(
    *,
    epoch: int,
    alpha: Sequence[float],
    train_losses: Sequence[float],
    mixture_train_loss: float,
    test_accuracies: Sequence[float],
    mixture_test_accuracy: float,
    timings: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """One line of the run log.

    Args:
        epoch: 1-based epoch number.
        alpha: ``(M+1,)`` mixture weights after the epoch.
        train_losses: ``(M+1,)`` each network's mean training NLL over the epoch.
        mixture_train_loss: the mixture's mean training NLL over the epoch.
        test_accuracies: ``(M+1,)`` test accuracy of each network after the epoch.
        mixture_test_accuracy: test accuracy of the mixture's prediction.
        timings: :data:`TIMINGS` (each 0 where not given): ``train_seconds``,
            the wall time of the epoch's training steps, compilation
            excluded; ``images_per_second``, training images processed per
            second, summed over networks, compilation excluded;
            ``compile_seconds``, time spent compiling the training step in
            this epoch (the first epoch a process runs; 0 after);
            ``eval_seconds``, wall time of the evaluation (including its
            compilation).

    Raises:
        LogError: a timing not among :data:`TIMINGS`.

    >>> epoch_record(epoch=1, alpha=[0.0, 0.0], train_losses=[1.0, 2.0], mixture_train_loss=1.5,
    ...              test_accuracies=[0.5, 0.25], mixture_test_accuracy=0.5)["softmax_alpha"]
    [0.5, 0.5]
    """
    timings = dict(timings or {})
    unknown = sorted(set(timings) - set(TIMINGS))
    if unknown:
        raise LogError(f"unknown timings {unknown}; valid: {', '.join(TIMINGS)}")
    return {
        "epoch": int(epoch),
        "alpha": _floats(alpha),
        "softmax_alpha": _floats(softmax(alpha)),
        "alpha_deviation": _finite_or_none(alpha_deviation(alpha)),
        "train_loss": _floats(train_losses),
        "mixture_train_loss": float(mixture_train_loss),
        "test_accuracy": _floats(test_accuracies),
        "mixture_test_accuracy": float(mixture_test_accuracy),
        **{name: float(timings.get(name, 0.0)) for name in TIMINGS},
    }


def append_log(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record as a JSON line and flush it to disk."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_log(path: str | os.PathLike, records: Sequence[dict[str, Any]]) -> None:
    """Replace the log with ``records`` (atomically, flushed to disk)."""
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run log; a torn last line (a killed writer) is dropped.

    Raises:
        LogError: the file is unreadable, or a complete line is not a JSON
            object with an integer ``epoch``.
    """
    records = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.endswith("\n"):
                    break  # written partially when the run was killed
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise LogError(f"{path} line {number} is not JSON ({exc}); the log was edited or damaged") from None
                epoch = record.get("epoch") if isinstance(record, dict) else None
                if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
                    raise LogError(f"{path} line {number} is not an epoch record (no positive integer \"epoch\")")
                records.append(record)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise LogError(f"cannot read {path} ({reason})") from None
    return records


def summarize(
    records: Sequence[dict[str, Any]],
    *,
    names: Sequence[str],
    dataset: str,
    networks: Sequence[dict[str, Any]] | None = None,
    test_size: int | None = None,
) -> dict[str, Any]:
    """The end-of-run figures from the log.

    Args:
        records: the epoch records, in order (at least one).
        names: M+1 display names, baseline first.
        dataset: the name of the dataset actually trained on.
        networks: per network (baseline first), a dict with its
            ``architecture``, ``params`` and ``flops`` (see
            :func:`nasgen.train.loop.network_table`); copied into the summary.
        test_size: test images behind each accuracy; gives each accuracy a
            95% Wilson interval.

    Returns:
        A JSON-ready dict: ``accuracies`` (per network, last epoch),
        ``baseline_accuracy``, ``generated`` (mean, std, best, worst over
        c_1..c_M with the population standard deviation, ddof=0; None when
        M = 0), ``best`` and ``worst`` (name, index, accuracy), ``argmax_alpha``
        (name, index, softmax weight), ``mixture_accuracy``, ``alpha``,
        ``softmax_alpha``, ``alpha_deviation`` per epoch, ``epochs``,
        ``compile_seconds`` (summed over epochs), ``test_size``, and
        ``per_network``: one dict per network with its name, accuracy, 95%
        Wilson interval (``accuracy_low``, ``accuracy_high``; None without
        ``test_size``), softmax weight and the entries of ``networks``.
    """
    if not records:
        raise ValueError("no epoch records to summarise")
    last = records[-1]
    acc = np.asarray(last["test_accuracy"], np.float64)
    generated = acc[1:]
    best_i = int(np.argmax(generated)) + 1 if len(generated) else 0
    worst_i = int(np.argmin(generated)) + 1 if len(generated) else 0
    weights = np.asarray(last["softmax_alpha"])
    top = int(np.argmax(weights))

    def interval(accuracy: float) -> tuple[float | None, float | None]:
        if not test_size:
            return None, None
        return wilson_interval(int(round(accuracy * test_size)), test_size)

    per_network = []
    for i, name in enumerate(names):
        low, high = interval(float(acc[i]))
        entry = {"name": name, "accuracy": float(acc[i]), "accuracy_low": low, "accuracy_high": high,
                 "softmax_alpha": float(weights[i])}
        if networks is not None:
            entry.update(networks[i])
        per_network.append(entry)
    mixture_low, mixture_high = interval(float(last["mixture_test_accuracy"]))
    return {
        "dataset": dataset,
        "epochs": int(last["epoch"]),
        "networks": list(names),
        "accuracies": _floats(acc),
        "baseline_accuracy": float(acc[0]),
        "generated": None if not len(generated) else {
            "count": int(len(generated)),
            "mean": float(generated.mean()),
            "std": float(generated.std()),
            "best": float(generated.max()),
            "worst": float(generated.min()),
        },
        "best": {"name": names[best_i], "index": best_i, "accuracy": float(acc[best_i])},
        "worst": {"name": names[worst_i], "index": worst_i, "accuracy": float(acc[worst_i])},
        "argmax_alpha": {"name": names[top], "index": top, "weight": float(weights[top]), "accuracy": float(acc[top])},
        "mixture_accuracy": float(last["mixture_test_accuracy"]),
        "mixture_accuracy_low": mixture_low,
        "mixture_accuracy_high": mixture_high,
        "test_size": test_size,
        "alpha": list(last["alpha"]),
        "softmax_alpha": list(last["softmax_alpha"]),
        "alpha_deviation": [r["alpha_deviation"] for r in records],
        "compile_seconds": float(sum(r.get("compile_seconds", 0.0) for r in records)),
        "per_network": per_network,
    }


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NA"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _dataset_label(name: str) -> str:
    return name.upper() if name == "mnist" else name


def _arch_text(arch: dict[str, Any]) -> str:
    """``k3x3/s2x2, k2x2/s1x1`` for one architecture's layers."""
    return ", ".join(
        f"k{'x'.join(map(str, k))}/s{'x'.join(map(str, s))}" for k, s in zip(arch["kernel"], arch["stride"])
    )


def _interval_text(entry: dict[str, Any]) -> str:
    if entry.get("accuracy_low") is None:
        return "NA"
    return f"[{entry['accuracy_low']:.4f}, {entry['accuracy_high']:.4f}]"


def markdown_summary(summary: dict[str, Any], *, label: str = "Generated") -> str:
    """A markdown report whose first table is shaped like the paper's Table 3.

    Args:
        summary: from :func:`summarize`.
        label: row name for the generated networks (e.g. ``Uniform-20``).
    """
    g = summary["generated"]
    dataset = _dataset_label(summary["dataset"])
    base = summary["baseline_accuracy"]
    lines = [
        f"# Mixture training: {len(summary['networks'])} networks, {summary['epochs']} epochs, {dataset}",
        "",
        "| Networks | Dataset | Accuracy | Std | Best | Worst | Best - baseline | Worst - baseline | α deviation |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| Baseline (c0) | {dataset} | {_fmt(base)} | NA | NA | NA | NA | NA | NA |",
    ]
    if g is not None:
        lines.append(
            f"| {label}-{g['count']} | {dataset} | {_fmt(g['mean'])} | {_fmt(g['std'])} | {_fmt(g['best'])} | "
            f"{_fmt(g['worst'])} | {_fmt(g['best'] - base, True)} | {_fmt(g['worst'] - base, True)} | "
            f"{_fmt(summary['alpha_deviation'][-1])} |"
        )
    arg = summary["argmax_alpha"]
    test_size = summary.get("test_size")
    lines += [
        "",
        "Accuracy is the mean test accuracy of the generated networks c1..cM after the last epoch; Std is their "
        "standard deviation (the paper's Table 3 prints this figure in its column headed α deviation); "
        "α deviation is sqrt(sum_i (α_i - α_0)^2 / (M - 1)) after the last epoch (the paper's Figure 5).",
        "",
        f"- argmax α: {arg['name']} (softmax weight {arg['weight']:.4f}, test accuracy {arg['accuracy']:.4f})",
        f"- best generated: {summary['best']['name']} ({_fmt(summary['best']['accuracy'])}); "
        f"worst generated: {summary['worst']['name']} ({_fmt(summary['worst']['accuracy'])})",
        f"- mixture prediction accuracy: {_fmt(summary['mixture_accuracy'])}"
        + (f" (95% Wilson interval [{summary['mixture_accuracy_low']:.4f}, {summary['mixture_accuracy_high']:.4f}])"
           if summary.get("mixture_accuracy_low") is not None else ""),
    ]
    if test_size:
        lines.append(
            f"- {test_size} test images: one image is {1 / test_size:.4f} of accuracy; intervals are 95% Wilson "
            "score intervals"
        )
    if summary.get("compile_seconds"):
        lines.append(f"- compiling the training step took {summary['compile_seconds']:.1f} s (not in any img/s figure)")
    per_network = summary.get("per_network") or [
        {"name": n, "accuracy": a, "softmax_alpha": w}
        for n, a, w in zip(summary["networks"], summary["accuracies"], summary["softmax_alpha"])
    ]
    lines += [
        "",
        "| Network | Architecture (kernel/stride per layer) | Parameters | FLOPs / image | Test accuracy | 95% interval | softmax(α) |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in per_network:
        arch = _arch_text(entry["architecture"]) if "architecture" in entry else "NA"
        params = f"{entry['params']:,}" if "params" in entry else "NA"
        flops = f"{entry['flops']:,}" if "flops" in entry else "NA"
        lines.append(
            f"| {entry['name']} | {arch} | {params} | {flops} | {entry['accuracy']:.4f} | {_interval_text(entry)} | "
            f"{entry['softmax_alpha']:.4f} |"
        )
    lines += ["", "| Epoch | α deviation |", "|---|---|"]
    lines += [f"| {e} | {_fmt(d)} |" for e, d in enumerate(summary["alpha_deviation"], start=1)]
    return "\n".join(lines) + "\n"


# -- several seeds ----------------------------------------------------------------------

_SEED_FIGURES = (
    ("baseline_accuracy", "Baseline accuracy"),
    ("generated_mean", "Generated mean accuracy"),
    ("generated_std", "Generated accuracy std"),
    ("generated_best", "Best generated"),
    ("generated_worst", "Worst generated"),
    ("mixture_accuracy", "Mixture accuracy"),
    ("alpha_deviation", "α deviation (last epoch)"),
)


def _seed_figures(summary: dict[str, Any]) -> dict[str, float]:
    g = summary["generated"] or {}
    deviation = summary["alpha_deviation"][-1]
    return {
        "baseline_accuracy": summary["baseline_accuracy"],
        "generated_mean": g.get("mean", math.nan),
        "generated_std": g.get("std", math.nan),
        "generated_best": g.get("best", math.nan),
        "generated_worst": g.get("worst", math.nan),
        "mixture_accuracy": summary["mixture_accuracy"],
        "alpha_deviation": math.nan if deviation is None else deviation,
    }


def seed_summary(summaries: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation across seeds of each run's Table-3 figures (paper, Table 3).

    Args:
        summaries: seed -> that run's :func:`summarize` output.

    Returns:
        ``{"seeds": [...], "figures": {name: {"values": [...], "mean": m,
        "std": s}}}``, with the sample standard deviation (ddof=1; None for
        one seed) and undefined figures as None.
    """
    seeds = sorted(summaries)
    figures = {}
    for key, _ in _SEED_FIGURES:
        values = np.asarray([_seed_figures(summaries[s])[key] for s in seeds], np.float64)
        finite = not np.isnan(values).any()
        figures[key] = {
            "values": [_finite_or_none(v) for v in values],
            "mean": float(values.mean()) if finite else None,
            "std": float(values.std(ddof=1)) if finite and len(values) > 1 else None,
        }
    return {"seeds": seeds, "dataset": summaries[seeds[0]]["dataset"], "figures": figures}


def markdown_seed_summary(summary: dict[str, Any]) -> str:
    """Markdown table of :func:`seed_summary`: one row per figure, mean ± std, then each seed's value."""
    seeds = summary["seeds"]
    lines = [
        f"# Mixture training over {len(seeds)} seeds ({', '.join(map(str, seeds))}), {_dataset_label(summary['dataset'])}",
        "",
        "| Figure | Mean | Std (across seeds) | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|---|---|" + "---|" * len(seeds),
    ]
    for key, title in _SEED_FIGURES:
        f = summary["figures"][key]
        values = " | ".join(_fmt(v) for v in f["values"])
        lines.append(f"| {title} | {_fmt(f['mean'])} | {_fmt(f['std'])} | {values} |")
    lines += ["", "Std across seeds is the sample standard deviation (n - 1); each seed's own report is in seed-N/."]
    return "\n".join(lines) + "\n"


# -- plots ---------------------------------------------------------------------------------


def architecture_label(arch: dict[str, Any]) -> str:
    """A short label of one architecture: its kernels, then its strides, layer by layer.

    Layers are separated by commas; a layer whose dimensions differ shows them
    joined by ``x``, one whose dimensions are all equal shows the number once.

    >>> architecture_label({"kernel": [[3, 3], [5, 5]], "stride": [[1, 1], [2, 2]]})
    'k 3,5 s 1,2'
    >>> architecture_label({"kernel": [[3, 2]], "stride": [[2, 1]]})
    'k 3x2 s 2x1'
    """
    def layers(rows: Sequence[Sequence[int]]) -> str:
        return ",".join(str(row[0]) if len(set(row)) == 1 else "x".join(map(str, row)) for row in rows)

    if not arch["kernel"]:
        return "no layers"
    return f"k {layers(arch['kernel'])} s {layers(arch['stride'])}"


def _network_labels(names: Sequence[str], summary: dict[str, Any] | None) -> list[str]:
    """``c3  k 3,5 s 1,2`` per network (``(baseline)`` after c0); the bare name where no architecture is known."""
    entries = (summary or {}).get("per_network") or [{} for _ in names]
    labels = []
    for i, (name, entry) in enumerate(zip(names, entries)):
        short = name.split()[0]
        arch = f"  {architecture_label(entry['architecture'])}" if "architecture" in entry else ""
        labels.append(f"{short}{arch}{' (baseline)' if i == 0 else ''}")
    return labels


def _zoomed_limits(lows: Sequence[float], highs: Sequence[float]) -> tuple[float, float]:
    """An accuracy axis that holds every interval with a margin, within 0..1 (never the whole 0..1 by default)."""
    low, high = float(min(lows)), float(max(highs))
    margin = max(0.08 * (high - low), 0.002)
    return max(0.0, low - margin), min(1.0, high + margin)


def _tick_font(count: int) -> float:
    return max(5, min(9, 200 // max(count, 1)))


def write_plots(output_dir: str | os.PathLike, records: Sequence[dict[str, Any]], names: Sequence[str],
                summary: dict[str, Any] | None = None, *, figure_format: str = "png") -> dict[str, Path]:
    """:func:`plot_figures` saved into ``output_dir``: PNG at 200 dpi, or vector PDF or SVG.

    Args:
        output_dir: an existing directory.
        records, names, summary: as for :func:`plot_figures`.
        figure_format: ``png``, ``pdf`` or ``svg`` (:data:`nasgen.common.figures.FIGURE_FORMATS`).

    Returns:
        ``{"alpha": path, "alpha_deviation": path, "accuracy": path}``, each
        ``STEM.FORMAT`` (see :data:`PLOT_FILES` for the stems).

    Raises:
        NasgenError: an unknown format, or a file that cannot be written.
    """
    check_figure_format(figure_format)
    paths = {key: Path(output_dir) / plot_file(key, figure_format) for key in PLOT_FILES}
    for key, figure in plot_figures(records, names, summary).items():
        save_figure(figure, paths[key], figure_format)
    return paths


def plot_file(key: str, figure_format: str = "png") -> str:
    """The file name of plot ``key`` (a key of :data:`PLOT_FILES`) in ``figure_format``: ``accuracy.pdf``."""
    return f"{Path(PLOT_FILES[key]).stem}.{figure_format}"


def plot_figures(records: Sequence[dict[str, Any]], names: Sequence[str],
                 summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Three figures, readable for any number of networks.

    Networks are labelled ``c3  k 3,5 s 1,2`` (name and :func:`architecture_label`)
    when ``summary`` holds their architectures, the baseline c0 marked ``(baseline)``
    and drawn in red.

    * ``alpha``: softmax(alpha) of every network (rows) per epoch (columns),
      a heat map with its colour scale;
    * ``alpha_deviation``: the alpha deviation per epoch (Figure 5);
    * ``accuracy``: final test accuracy of every network and of the mixture as
      points with their 95% Wilson intervals when ``summary`` has them, a
      dashed line at the baseline's accuracy, on an axis zoomed to the points
      and intervals (not 0..1; the axis label says so), so that differences of
      one test image show.

    Drawn on ``matplotlib.figure.Figure`` objects (no pyplot, no backend
    change). Epoch axes carry integer ticks only.

    Returns:
        ``{"alpha": Figure, "alpha_deviation": Figure, "accuracy": Figure}``.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figures = {}
    epochs = [int(r["epoch"]) for r in records]
    weights = np.asarray([r["softmax_alpha"] for r in records])  # (epochs, networks)
    count = len(names)
    labels = _network_labels(names, summary)
    width = 3.5 + 0.06 * max(len(label) for label in labels)
    row_height = 0.22

    fig = Figure(figsize=(max(5.0, width + 0.5 * len(epochs)), max(3.0, 1.2 + row_height * count)))
    ax = fig.subplots()
    image = ax.imshow(weights.T, aspect="auto", cmap="viridis", interpolation="nearest",
                      extent=(epochs[0] - 0.5, epochs[-1] + 0.5, count - 0.5, -0.5))
    ax.set_yticks(range(count), labels, fontsize=_tick_font(count))
    ax.get_yticklabels()[0].set_color("tab:red")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set(xlabel="epoch", title="softmax(α) per network and epoch")
    fig.colorbar(image, ax=ax, label="softmax(α)")
    fig.tight_layout()
    figures["alpha"] = fig

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    deviation = [np.nan if r["alpha_deviation"] is None else r["alpha_deviation"] for r in records]
    ax.plot(epochs, deviation, marker="o")
    ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: one tick, not 0.945..1.05
    ax.set_ylim(bottom=0)
    ax.set(xlabel="epoch", ylabel="α deviation from c0", title="α deviation from the baseline (Figure 5)")
    fig.tight_layout()
    figures["alpha_deviation"] = fig

    figures["accuracy"] = _accuracy_figure(records, labels, summary)
    return figures


def _accuracy_figure(records: Sequence[dict[str, Any]], labels: Sequence[str], summary: dict[str, Any] | None):
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    acc = np.asarray(list(records[-1]["test_accuracy"]) + [records[-1]["mixture_test_accuracy"]], np.float64)
    labels = list(labels) + ["mixture"]
    colours = ["tab:red"] + ["tab:blue"] * (len(acc) - 2) + ["tab:green"]
    low, high = acc, acc
    with_intervals = summary is not None and bool(summary.get("test_size"))
    if with_intervals:
        entries = list(summary["per_network"]) + [{
            "accuracy_low": summary["mixture_accuracy_low"], "accuracy_high": summary["mixture_accuracy_high"]}]
        low = np.asarray([e["accuracy_low"] for e in entries], np.float64)
        high = np.asarray([e["accuracy_high"] for e in entries], np.float64)
    fig = Figure(figsize=(3.5 + 0.06 * max(map(len, labels)) + 3.5, max(3.0, 1.3 + 0.24 * len(acc))))
    ax = fig.subplots()
    positions = np.arange(len(acc))
    ax.axvline(acc[0], color="tab:red", linestyle="--", linewidth=0.8, zorder=1)
    for y, value, lo, hi, colour in zip(positions, acc, low, high, colours):
        ax.errorbar(value, y, xerr=[[value - lo], [hi - value]], fmt="o", color=colour, markersize=4,
                    elinewidth=1.0, capsize=2.5, zorder=2)
    ax.set_xlim(*_zoomed_limits(low, high))
    to_right_margin = blended_transform_factory(ax.transAxes, ax.transData)
    for y, value in zip(positions, acc):
        ax.text(1.01, y, f"{value:.4f}", transform=to_right_margin, va="center", ha="left", fontsize=7)
    ax.set_yticks(positions, labels, fontsize=_tick_font(len(acc)))
    ax.get_yticklabels()[0].set_color("tab:red")
    ax.set_ylim(len(acc) - 0.5, -0.5)
    ax.grid(axis="x", linewidth=0.4, alpha=0.5)
    size = summary.get("test_size") if summary else None
    interval_note = f", 95% Wilson intervals on {size} test images" if with_intervals else ""
    ax.set(xlabel="test accuracy (axis zoomed to the data and intervals, not 0..1; dashed: baseline c0)",
           title=f"Test accuracy after epoch {records[-1]['epoch']}{interval_note}")
    fig.tight_layout()
    return fig


def plot_seed_figure(summaries: dict[int, dict[str, Any]]):
    """Every network's test accuracy under each seed, with its 95% interval, and the mean across seeds.

    One row per network (labelled as in :func:`plot_figures`) and one for the
    mixture; in each row one point per seed (offset a little, one colour per
    seed) with that run's Wilson interval where the run knows its test-set
    size, and a black diamond at the mean across seeds. The accuracy axis is
    zoomed to the points and intervals (not 0..1).

    Args:
        summaries: seed -> that run's :func:`summarize` output (the same networks in each).

    Returns:
        A ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure

    seeds = sorted(summaries)
    first = summaries[seeds[0]]
    labels = _network_labels(first["networks"], first) + ["mixture"]
    count = len(labels)
    fig = Figure(figsize=(3.5 + 0.06 * max(map(len, labels)) + 3.5, max(3.0, 1.5 + 0.28 * count)))
    ax = fig.subplots()
    positions = np.arange(count)
    offsets = np.linspace(-0.25, 0.25, len(seeds)) if len(seeds) > 1 else np.zeros(1)
    all_low, all_high, values = [], [], []
    for seed, offset, colour in zip(seeds, offsets, _seed_colours(len(seeds))):
        s = summaries[seed]
        acc = np.asarray(list(s["accuracies"]) + [s["mixture_accuracy"]], np.float64)
        if s.get("test_size"):
            low = np.asarray([e["accuracy_low"] for e in s["per_network"]] + [s["mixture_accuracy_low"]], np.float64)
            high = np.asarray([e["accuracy_high"] for e in s["per_network"]] + [s["mixture_accuracy_high"]], np.float64)
        else:
            low, high = acc, acc
        ax.errorbar(acc, positions + offset, xerr=[acc - low, high - acc], fmt="o", color=colour, markersize=3.5,
                    elinewidth=0.9, capsize=2, label=f"seed {seed}")
        all_low.extend(low)
        all_high.extend(high)
        values.append(acc)
    mean = np.mean(values, axis=0)
    ax.plot(mean, positions, "D", color="black", markersize=4.5, label="mean across seeds", zorder=3)
    ax.axvline(mean[0], color="tab:red", linestyle="--", linewidth=0.8, zorder=1)
    ax.set_xlim(*_zoomed_limits(all_low, all_high))
    ax.set_yticks(positions, labels, fontsize=_tick_font(count))
    ax.get_yticklabels()[0].set_color("tab:red")
    ax.set_ylim(count - 0.5, -0.5)
    ax.grid(axis="x", linewidth=0.4, alpha=0.5)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    intervals = ", bars: each run's 95% Wilson interval" if first.get("test_size") else ""
    ax.set(xlabel="test accuracy (axis zoomed to the data and intervals, not 0..1; dashed: baseline's mean)",
           title=f"Test accuracy over {len(seeds)} seeds after epoch {first['epochs']}{intervals}")
    fig.tight_layout()
    return fig


def _seed_colours(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(count)]


def write_seed_plot(output_dir: str | os.PathLike, summaries: dict[int, dict[str, Any]],
                    figure_format: str = "png") -> Path:
    """:func:`plot_seed_figure` saved as ``output_dir/SEEDS_PLOT_STEM.FORMAT`` (``seeds-accuracy.png``).

    Raises:
        NasgenError: an unknown format, or a file that cannot be written.
    """
    check_figure_format(figure_format)
    return save_figure(plot_seed_figure(summaries), Path(output_dir) / f"{SEEDS_PLOT_STEM}.{figure_format}",
                       figure_format)


def plot_format(plots: bool | str) -> str | None:
    """The figure format a run's ``plots`` setting asks for: True is PNG, False none, else the format named.

    Raises:
        NasgenError: a string that is not one of ``png``, ``pdf``, ``svg``.

    >>> plot_format(True), plot_format(False), plot_format("svg")
    ('png', None, 'svg')
    """
    if plots is True:
        return "png"
    if plots is False or plots is None:
        return None
    return check_figure_format(plots)


def write_reports(output_dir: str | os.PathLike, records: Sequence[dict[str, Any]], summary: dict[str, Any],
                  *, label: str = "Generated", plots: bool | str = True) -> None:
    """``summary.json``, ``summary.md`` and the three plots into ``output_dir``.

    Args:
        plots: the plots' format, ``png``, ``pdf`` or ``svg``; True for PNG;
            False for none (see :func:`plot_format`).

    Each file is replaced atomically.
    """
    out = Path(output_dir)
    write_atomic(out / SUMMARY_JSON, json.dumps(summary, indent=1, allow_nan=False) + "\n")
    write_atomic(out / SUMMARY_MD, markdown_summary(summary, label=label))
    figure_format = plot_format(plots)
    if figure_format is not None:
        write_plots(out, records, summary["networks"], summary, figure_format=figure_format)
