"""``nasgen bench``: time sampling methods over spaces, seeds and repeats; JSON rows, a table and a figure.

Every run is one (space, method, seed, repeat) cell: it builds the method
(``encode_s``: for the hashing methods the CNF encoding measured in their
child process, otherwise the method's set-up), draws M architectures
(``solve_s``), and records what was found, why it stopped, Adj_T and the
overall p-value of :func:`nasgen.samplers.check.check_uniformity` on the draws. Rows are
appended to the output (JSON Lines, flushed) as runs finish, in any order; a
rerun with the same output skips the rows already there, so an interrupted
sweep resumes. Runs go to local worker processes (``jobs``) or to an existing
Dask cluster (``scheduler``).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from nasgen.common.errors import NasgenError
from nasgen.space.definition import SearchSpace

__all__ = ["BenchRun", "DEFAULT_BASELINE", "bench_figure", "connect_scheduler", "default_baseline",
           "end_with_parent", "heal_rows_file", "markdown_table", "plot_times", "quartiles", "read_rows", "run_one",
           "run_sweep"]


@dataclass(frozen=True)
class BenchRun:
    """One cell of the sweep (JSON-ready fields)."""

    space: dict
    method: str
    seed: int
    repeat: int
    samples: int
    timeout: float | None = None
    where: tuple = ()
    replace: bool = False

    @property
    def key(self) -> str:
        return json.dumps([self.space, self.method, self.seed, self.repeat, self.samples, list(self.where),
                           self.replace], sort_keys=True)


def run_one(run: BenchRun) -> dict:
    """Run one cell and return its row (never raises for a failed run: ``stop`` says ``error: ...``)."""
    from nasgen.space.encoding import AdjTAccumulator
    from nasgen.samplers.registry import SamplingConfig, draw

    space = SearchSpace.from_dict(run.space)
    row = {"key": run.key, "method": run.method, "space": space.describe(), "space_dict": run.space,
           "seed": run.seed, "repeat": run.repeat, "samples": run.samples, "where": list(run.where)}
    adj = AdjTAccumulator()
    chunks = []
    t0 = time.perf_counter()
    try:
        config = SamplingConfig(method=run.method, samples=run.samples, seed=run.seed, replace=run.replace,
                                timeout=run.timeout, where=tuple(run.where))
        with draw(space, config) as method:
            t1 = time.perf_counter()
            for chunk in method.draw():
                chunks.append(chunk)
                adj.add_arrays(space, *chunk)
            t2 = time.perf_counter()
            stop, stats, count = method.stop_reason, dict(method.statistics), method.count
    except NasgenError as exc:
        row.update(encode_s=None, solve_s=None, found=0, stop=f"error: {exc}", adj_t=None, check_p=None)
        return row
    encode_s = stats.get("encode_s")
    if encode_s is None:
        encode_s = t1 - t0
        solve_s = t2 - t1
    else:
        solve_s = (t2 - t0) - encode_s
    found = sum(len(c[0]) for c in chunks)
    check_p = None
    if found >= 2:
        from nasgen.samplers.check import check_chunks

        try:
            # against the constrained space's exact marginals when --where is set
            check_p = check_chunks(space, chunks, replace=run.replace, where=run.where).overall_p
        except NasgenError:
            check_p = None
    row.update(encode_s=encode_s, solve_s=solve_s, total_s=t2 - t0, found=found, stop=stop, adj_t=adj.value,
               check_p=check_p, check_draws=found if check_p is not None else 0, count=count,
               queries=stats.get("queries"),
               xors=stats.get("xors") if stats.get("xors") else None)
    return row


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Rows already in ``path`` (none if it does not exist); a torn last line is ignored.

    Raises:
        NasgenError: the file exists but is not JSON Lines of rows.

    >>> import tempfile, pathlib
    >>> rows_file = pathlib.Path(tempfile.mkdtemp()) / "rows.jsonl"
    >>> _ = rows_file.write_text('{"key": "a"}\\n{"ke')
    >>> [row["key"] for row in read_rows(rows_file)]
    ['a']
    """
    return _read_rows(path)[0]


def _read_rows(path) -> tuple[list[dict], int | None]:
    """(rows, the byte offset where a torn last line starts, or None when the file ends cleanly)."""
    if not os.path.exists(path):
        return [], None
    rows = []
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        lines = data.decode("utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise NasgenError(f"cannot read {path}: {exc}") from None
    torn_at = None
    offset = 0
    complete = len(lines) - 1  # the text after the last newline is not a finished row
    for number, line in enumerate(lines, start=1):
        start, offset = offset, offset + len(line.encode("utf-8")) + 1
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "key" not in row:
                raise ValueError
        except ValueError:
            if number >= complete:  # an interrupted write: that run is simply done again
                torn_at = start
                continue
            raise NasgenError(f"{path} line {number} is not a nasgen bench row; use another --output-file") from None
        if number > complete:  # a whole row whose newline was not written: keep it, end its line
            torn_at = len(data)
        rows.append(row)
    return rows, torn_at


def heal_rows_file(path: str | os.PathLike) -> str | None:
    """Make ``path`` end at a line boundary before rows are appended; returns what was done, or None.

    A run killed while writing a row leaves a torn last line; appending after it
    would glue the next row onto it (and lose both). The torn line is cut off
    (its run is done again); a complete row that lacks only its newline gets one.

    Raises:
        NasgenError: the file cannot be read or written, or is not JSON Lines of rows.

    >>> import tempfile, pathlib
    >>> rows_file = pathlib.Path(tempfile.mkdtemp()) / "rows.jsonl"
    >>> _ = rows_file.write_text('{"key": "a"}\\n{"ke')
    >>> heal_rows_file(rows_file)
    'cut a torn last line (4 bytes) left by an interrupted run; that run is done again'
    >>> rows_file.read_text()
    '{"key": "a"}\\n'
    """
    rows, torn_at = _read_rows(path)
    if torn_at is None:
        return None
    size = os.path.getsize(path)
    try:
        if torn_at >= size:
            with open(path, "ab") as handle:
                handle.write(b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            return "ended its last row with the newline an interrupted run did not write"
        with open(path, "r+b") as handle:
            handle.truncate(torn_at)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise NasgenError(f"cannot repair {path}: {exc.strerror or exc}") from None
    return f"cut a torn last line ({size - torn_at} bytes) left by an interrupted run; that run is done again"


def _executor(jobs: int, scheduler: str | None):
    if scheduler is None:
        import concurrent.futures
        import multiprocessing

        return concurrent.futures.ProcessPoolExecutor(max_workers=jobs,
                                                      mp_context=multiprocessing.get_context("spawn"),
                                                      initializer=end_with_parent, initargs=(os.getpid(),))
    try:
        from dask.distributed import Client
    except ImportError:
        raise NasgenError('--scheduler needs dask.distributed, which is not installed: '
                          'pip install "nasgen[samplers]"') from None
    return connect_scheduler(Client, scheduler)


#: Seconds ``--scheduler`` may take to connect and hear the scheduler's handshake.
SCHEDULER_CONNECT_S = 5.0


def connect_scheduler(client_class, address: str, timeout_s: float = SCHEDULER_CONNECT_S):
    """A ``client_class(address)`` (a Dask Client) connected within ``timeout_s`` seconds, or a one-line error.

    Only ``tcp://`` and ``tls://`` addresses (or a bare ``HOST:PORT``), and the
    ``inproc://`` address of a cluster in this process, are taken: other
    protocols need packages nasgen does not install. The connection is made
    in a daemon thread so that a listener that accepts and then never answers (or
    answers garbage) cannot hold the command: the client's own timeout does not
    cover the handshake.

    Raises:
        NasgenError: an address of another protocol, or a scheduler that cannot be
            reached, does not answer in time, or does not speak Dask's protocol.

    >>> connect_scheduler(object, "ucx://127.0.0.1:1")
    Traceback (most recent call last):
    ...
    nasgen.common.errors.NasgenError: --scheduler 'ucx://127.0.0.1:1': use a tcp://HOST:PORT or tls://HOST:PORT address of a running Dask scheduler
    """
    import threading

    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    host, colon, port = rest.rpartition(":")
    in_process = scheme == "inproc"  # a LocalCluster(processes=False) in this very process
    if not in_process and (scheme not in ("tcp", "tls") or not colon or not host or not port.isdigit()):
        raise NasgenError(f"--scheduler {address!r:.80}: use a tcp://HOST:PORT or tls://HOST:PORT address of a "
                          "running Dask scheduler")
    outcome: dict = {}

    def connect() -> None:
        try:
            outcome["client"] = client_class(address, timeout=max(1.0, timeout_s - 2.0))
        except BaseException as exc:  # anything the client raises on a bad peer becomes the one line below
            outcome["error"] = exc

    thread = threading.Thread(target=connect, name="nasgen-scheduler-connect", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if "client" in outcome:
        return outcome["client"]
    error = outcome.get("error")
    why = f"no answer in {timeout_s:g} s" if error is None else f"{type(error).__name__}: {str(error)[:120]}"
    raise NasgenError(f"cannot reach the Dask scheduler at {address!r:.80} ({why}): give a running scheduler's "
                      "address, e.g. tcp://127.0.0.1:8786")


def end_with_parent(parent: int, poll_s: float = 0.2) -> None:
    """Make this (worker) process end when ``parent`` does, even if the parent is killed with SIGKILL.

    A killed ``nasgen bench`` cannot stop its workers itself, and a worker in the
    middle of a long run would otherwise go on until the run ends. On Linux the
    kernel sends SIGKILL at once (``PR_SET_PDEATHSIG``); everywhere a daemon thread
    also checks every ``poll_s`` seconds that the parent is still ours.
    """
    import threading

    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the thread below does the job
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)  # no clean-up to do: the parent that wanted the rows is gone

    threading.Thread(target=watch, name="nasgen-end-with-parent", daemon=True).start()


def run_sweep(runs: Sequence[BenchRun], output: str | os.PathLike, jobs: int = 1, scheduler: str | None = None,
              progress=None, notice=None) -> list[dict]:
    """Run every cell not already in ``output``, appending rows as they finish; returns all rows.

    ``progress(row)`` is called as each row is written; ``notice(text)`` with
    one line when the output had to be repaired first (a torn last line cut).

    Raises:
        NasgenError: an unreadable output, bad ``jobs`` or an unreachable scheduler.
    """
    if jobs < 1:
        raise NasgenError(f"--jobs must be >= 1, got {jobs}")
    done = read_rows(output)
    repaired = heal_rows_file(output) if os.path.exists(output) else None
    if repaired is not None and notice is not None:
        notice(f"{output}: {repaired}")
    finished = {row["key"] for row in done}
    todo = [r for r in runs if r.key not in finished]
    if not todo:
        return done
    executor = _executor(jobs, scheduler)
    try:
        with open(output, "a", encoding="utf-8") as handle:
            if scheduler is None:
                import concurrent.futures

                futures = [executor.submit(run_one, r) for r in todo]
                completed = concurrent.futures.as_completed(futures)
            else:
                from dask.distributed import as_completed

                futures = [executor.submit(run_one, r, pure=False) for r in todo]
                completed = as_completed(futures)
            for future in completed:
                row = future.result()
                handle.write(json.dumps(row) + "\n")
                handle.flush()
                done.append(row)
                if progress is not None:
                    progress(row)
    finally:
        if scheduler is None:
            executor.shutdown(cancel_futures=True)
        else:
            executor.close()
    return done


def _total(row: dict) -> float | None:
    if row.get("encode_s") is None:
        return None
    return row["encode_s"] + row["solve_s"]


#: ``--baseline``'s default when ``exact`` is among the methods: nasgen's exact sampler, the reference
#: every other method's time is divided by (otherwise the first method given).
DEFAULT_BASELINE = "exact"

def default_baseline(methods: Sequence[str]) -> str:
    """The method the ratios are against when none is named: ``exact`` if it is there, else the first.

    >>> default_baseline(["uniwit", "exact"]), default_baseline(["uniwit", "unigen"])
    ('exact', 'uniwit')
    """
    return DEFAULT_BASELINE if DEFAULT_BASELINE in methods else methods[0]


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile) of ``values``, linear between order statistics.

    The same as ``numpy.percentile(values, [25, 50, 75])``; one value is its own three quartiles.

    >>> quartiles([1.0, 2.0, 3.0, 4.0, 5.0])
    (2.0, 3.0, 4.0)
    """
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def _method_order(methods: Iterable[str], baseline: str) -> list[str]:
    """The baseline first, then the other methods alphabetically."""
    return sorted(set(methods), key=lambda m: (m != baseline, m))


def markdown_table(rows: Iterable[dict], baseline: str) -> str:
    """One row per (space, method), the baseline method first in each space.

    Columns: runs; the median time per run (encoding included) and its
    interquartile range over the runs; the median encoding time; the median
    number found; the stop reasons seen; the medians of Adj_T and of the check
    p-value; and the ratio of the median time to the baseline's in the same
    space. docs/solver.md ("nasgen bench") defines every column and stop reason.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["space"], row["method"]), []).append(row)
    lines = [f"| space | method | runs | median time (s) | time IQR: Q1-Q3 (s) | median encode (s) | median found | "
             f"stops | median Adj_T | median check p (on each run's draws only) | time / {baseline} |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    fmt = lambda v, p=3: "-" if v is None else f"{v:.{p}g}"  # noqa: E731
    for space in sorted({space for space, _ in groups}):
        base = [t for t in map(_total, groups.get((space, baseline), [])) if t is not None]
        for method in _method_order([m for s, m in groups if s == space], baseline):
            group = groups[(space, method)]
            times = [t for t in map(_total, group) if t is not None]
            ratio = med(times) / med(base) if times and base and med(base) > 0 else None
            spread = "-" if not times else "{}-{}".format(*(fmt(q) for q in quartiles(times)[::2]))
            stops = ",".join(sorted({str(r["stop"]).split(":")[0] for r in group}))
            lines.append(
                f"| {space} | {method} | {len(group)} | {fmt(med(times))} | {spread} | "
                f"{fmt(med([r['encode_s'] for r in group if r.get('encode_s') is not None]))} | "
                f"{fmt(med([r['found'] for r in group]))} | {stops} | "
                f"{fmt(med([r['adj_t'] for r in group if r.get('adj_t') is not None]))} | "
                f"{fmt(med([r['check_p'] for r in group if r.get('check_p') is not None]))} | "
                f"{'-' if ratio is None else f'{ratio:.2f}x'} |")
    return "\n".join(lines) + "\n"


def bench_figure(rows: Iterable[dict], baseline: str | None = None):
    """Median time per run of every method, one panel per (space, M): points from different spaces never joined.

    In each panel the methods (the baseline first) are on the x axis and the
    median time per run, encoding included, on a log y axis, with error bars
    from the first to the third quartile of the runs (the interquartile
    range). A method with a run that found fewer than M architectures is
    drawn hollow, with those runs' stop reasons and the fewest found beside it. Each panel's title
    names the space, its size and M. Rows without a time (an error) are left out.

    Args:
        rows: bench rows (:func:`run_one`).
        baseline: the method drawn first in each panel (default :func:`default_baseline`).

    Returns:
        A ``matplotlib.figure.Figure``.

    Raises:
        NasgenError: no row has a time.
    """
    import math

    from matplotlib.figure import Figure

    from nasgen.space.tables import SpaceTables

    panels: dict[tuple[str, int], dict[str, list[dict]]] = {}
    for row in rows:
        if _total(row) is None:
            continue
        key = (json.dumps(row["space_dict"], sort_keys=True), int(row["samples"]))
        panels.setdefault(key, {}).setdefault(row["method"], []).append(row)
    if not panels:
        raise NasgenError("no bench run has a time to plot (every run ended in an error)")
    columns = min(len(panels), 3)
    lines = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * lines + 0.6))
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    repeats = set()
    every_method = _method_order({m for by_method in panels.values() for m in by_method}, baseline or "")
    colour = {method: f"C{i % 10}" for i, method in enumerate(every_method)}  # one colour per method in every panel
    for ax, ((space_key, samples), by_method) in zip(axes, sorted(panels.items())):
        space = SearchSpace.from_dict(json.loads(space_key))
        methods = _method_order(by_method, baseline or default_baseline(sorted(by_method)))
        for x, method in enumerate(methods):
            group = by_method[method]
            repeats.add(len(group))
            q1, median, q3 = quartiles([_total(r) for r in group])
            unfinished = sorted({str(r["stop"]).split(":")[0] for r in group if r["found"] < r["samples"]})
            ax.errorbar([x], [median], yerr=[[median - q1], [q3 - median]], fmt="o", capsize=4, color=colour[method],
                        markerfacecolor="white" if unfinished else colour[method])
            if unfinished:
                fewest = min(r["found"] for r in group)
                ax.annotate(f"{','.join(unfinished)}\n{fewest} of {samples}", (x, median), textcoords="offset points",
                            xytext=(7, 0), ha="left", va="center", fontsize=7)
        ax.set_yscale("log")
        ax.set_xticks(range(len(methods)), methods)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_ylabel("time per run (s), encoding included")
        ax.set_title(f"{space.describe()}\n{SpaceTables(space).count:,} architectures, M = {samples}", fontsize=9)
        ax.grid(axis="y", which="both", linewidth=0.3, alpha=0.5)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    sample_counts = sorted({samples for _, samples in panels})
    runs = str(min(repeats)) if len(repeats) == 1 else f"{min(repeats)}-{max(repeats)}"
    figure.suptitle(f"nasgen bench: time per run to draw M = {', '.join(map(str, sample_counts))} architectures "
                    f"(encoding included)\npoints: median of {runs} runs; bars: interquartile range (Q1-Q3); "
                    "hollow: some runs stopped before M", fontsize=9)
    figure.tight_layout()
    return figure


def plot_times(rows: Iterable[dict], path: str | os.PathLike, figure_format: str = "png",
               baseline: str | None = None) -> None:
    """:func:`bench_figure` written to ``path``: PNG at 200 dpi, or vector PDF or SVG.

    Raises:
        NasgenError: an unknown format, no row with a time, or a path that cannot be written.
    """
    from nasgen.common.figures import check_figure_format, save_figure

    check_figure_format(figure_format)
    save_figure(bench_figure(rows, baseline), path, figure_format)
