"""Reports of a mixture-training run: JSONL epoch log, summary, Table-3 markdown, PNG plots.

Everything here works on plain numbers (lists and numpy arrays), so reports
can be rebuilt from a run's ``log.jsonl`` without JAX. matplotlib is imported
only inside :func:`write_plots`.

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
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "alpha_deviation",
    "softmax",
    "epoch_record",
    "append_log",
    "write_log",
    "read_log",
    "summarize",
    "markdown_summary",
    "write_plots",
    "write_reports",
    "SUMMARY_JSON",
    "SUMMARY_MD",
    "PLOT_FILES",
]

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
PLOT_FILES = {"alpha": "alpha.png", "alpha_deviation": "alpha_deviation.png", "accuracy": "accuracy.png"}


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


def epoch_record(
    *,
    epoch: int,
    alpha: Sequence[float],
    train_losses: Sequence[float],
    mixture_train_loss: float,
    test_accuracies: Sequence[float],
    mixture_test_accuracy: float,
    train_seconds: float,
    images_per_second: float,
) -> dict[str, Any]:
    """One line of the run log.

    Args:
        epoch: 1-based epoch number.
        alpha: ``(M+1,)`` mixture weights after the epoch.
        train_losses: ``(M+1,)`` each network's mean training NLL over the epoch.
        mixture_train_loss: the mixture's mean training NLL over the epoch.
        test_accuracies: ``(M+1,)`` test accuracy of each network after the epoch.
        mixture_test_accuracy: test accuracy of the mixture's prediction.
        train_seconds: wall time of the epoch's training steps.
        images_per_second: training images processed per second, summed over networks.
    """
    return {
        "epoch": int(epoch),
        "alpha": _floats(alpha),
        "softmax_alpha": _floats(softmax(alpha)),
        "alpha_deviation": _finite_or_none(alpha_deviation(alpha)),
        "train_loss": _floats(train_losses),
        "mixture_train_loss": float(mixture_train_loss),
        "test_accuracy": _floats(test_accuracies),
        "mixture_test_accuracy": float(mixture_test_accuracy),
        "train_seconds": float(train_seconds),
        "images_per_second": float(images_per_second),
    }


def append_log(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record as a JSON line and flush it to disk."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_log(path: str | os.PathLike, records: Sequence[dict[str, Any]]) -> None:
    """Replace the log with ``records`` (atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run log; a torn last line (a killed writer) is dropped."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # written partially when the run was killed
            if line.strip():
                records.append(json.loads(line))
    return records


def summarize(records: Sequence[dict[str, Any]], *, names: Sequence[str], dataset: str) -> dict[str, Any]:
    """The end-of-run figures from the log.

    Args:
        records: the epoch records, in order (at least one).
        names: M+1 display names, baseline first.
        dataset: dataset name for the table.

    Returns:
        A JSON-ready dict: ``accuracies`` (per network, last epoch),
        ``baseline_accuracy``, ``generated`` (mean, std, best, worst over
        c_1..c_M with the population standard deviation, ddof=0; None when
        M = 0), ``best`` and ``worst`` (name, index, accuracy), ``argmax_alpha``
        (name, index, softmax weight), ``mixture_accuracy``, ``alpha``,
        ``softmax_alpha``, ``alpha_deviation`` per epoch, ``epochs``.
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
        "alpha": list(last["alpha"]),
        "softmax_alpha": list(last["softmax_alpha"]),
        "alpha_deviation": [r["alpha_deviation"] for r in records],
    }


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NA"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def markdown_summary(summary: dict[str, Any], *, label: str = "Generated") -> str:
    """A markdown report whose first table is shaped like the paper's Table 3.

    Args:
        summary: from :func:`summarize`.
        label: row name for the generated networks (e.g. ``Uniform-20``).
    """
    g = summary["generated"]
    dataset = summary["dataset"].upper() if summary["dataset"] == "mnist" else summary["dataset"]
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
    lines += [
        "",
        "Accuracy is the mean test accuracy of the generated networks c1..cM after the last epoch; Std is their "
        "standard deviation (the paper's Table 3 prints this figure in its column headed α deviation); "
        "α deviation is sqrt(sum_i (α_i - α_0)^2 / (M - 1)) after the last epoch (the paper's Figure 5).",
        "",
        f"- argmax α: {arg['name']} (softmax weight {arg['weight']:.4f}, test accuracy {arg['accuracy']:.4f})",
        f"- best generated: {summary['best']['name']} ({_fmt(summary['best']['accuracy'])}); "
        f"worst generated: {summary['worst']['name']} ({_fmt(summary['worst']['accuracy'])})",
        f"- mixture prediction accuracy: {_fmt(summary['mixture_accuracy'])}",
        "",
        "| Network | Test accuracy | softmax(α) |",
        "|---|---|---|",
    ]
    for name, acc, w in zip(summary["networks"], summary["accuracies"], summary["softmax_alpha"]):
        lines.append(f"| {name} | {acc:.4f} | {w:.4f} |")
    lines += ["", "| Epoch | α deviation |", "|---|---|"]
    lines += [f"| {e} | {_fmt(d)} |" for e, d in enumerate(summary["alpha_deviation"], start=1)]
    return "\n".join(lines) + "\n"


def write_plots(output_dir: str | os.PathLike, records: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Path]:
    """Three PNGs: softmax(alpha) per epoch, alpha deviation per epoch (Figure 5), final accuracy per network.

    Returns:
        ``{"alpha": path, "alpha_deviation": path, "accuracy": path}``.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only; never needs a display
    import matplotlib.pyplot as plt

    out = Path(output_dir)
    epochs = [r["epoch"] for r in records]
    weights = np.asarray([r["softmax_alpha"] for r in records])
    paths = {key: out / name for key, name in PLOT_FILES.items()}

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, name in enumerate(names):
        ax.plot(epochs, weights[:, i], marker="o", ms=3, lw=2.5 if i == 0 else 1, label=name if i < 12 else None)
    ax.set(xlabel="epoch", ylabel="softmax(α)", title="Mixture weights per network")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(paths["alpha"], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    deviation = [np.nan if r["alpha_deviation"] is None else r["alpha_deviation"] for r in records]
    ax.plot(epochs, deviation, marker="o")
    ax.set(xlabel="epoch", ylabel="α deviation from c0", title="α deviation from the baseline (Figure 5)")
    fig.tight_layout()
    fig.savefig(paths["alpha_deviation"], dpi=120)
    plt.close(fig)

    acc = records[-1]["test_accuracy"]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names)), 4))
    ax.bar(range(len(acc)), acc, color=["tab:red"] + ["tab:blue"] * (len(acc) - 1))
    ax.set_xticks(range(len(acc)), [n.split()[0] for n in names], rotation=90, fontsize=7)
    low = min(acc)
    ax.set_ylim(max(0.0, low - 0.05), 1.0)
    ax.set(ylabel="test accuracy", title=f"Test accuracy after epoch {records[-1]['epoch']} (c0 = baseline, red)")
    fig.tight_layout()
    fig.savefig(paths["accuracy"], dpi=120)
    plt.close(fig)
    return paths


def write_reports(output_dir: str | os.PathLike, records: Sequence[dict[str, Any]], summary: dict[str, Any],
                  *, label: str = "Generated") -> None:
    """``summary.json``, ``summary.md`` and the three plots into ``output_dir``."""
    out = Path(output_dir)
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (out / SUMMARY_MD).write_text(markdown_summary(summary, label=label), encoding="utf-8")
    write_plots(out, records, summary["networks"])
