"""``nasgen bench``: time sampling methods over spaces, seeds and repeats; JSON rows, a table and a plot.

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

__all__ = ["BenchRun", "connect_scheduler", "end_with_parent", "heal_rows_file", "run_one", "run_sweep", "read_rows", "markdown_table", "plot_times"]


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


def markdown_table(rows: Iterable[dict], baseline: str) -> str:
    """Medians per (space, method): time, encode, found, Adj_T, check p, and the time ratio to ``baseline``."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["space"], row["method"]), []).append(row)
    lines = [f"| space | method | runs | median time (s) | median encode (s) | median found | stops | "
             f"median Adj_T | median check p (on each run's draws only) | time / {baseline} |", "|---|---|---|---|---|---|---|---|---|---|"]
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    fmt = lambda v, p=3: "-" if v is None else f"{v:.{p}g}"  # noqa: E731
    for (space, method), group in sorted(groups.items()):
        times = [t for t in map(_total, group) if t is not None]
        base = [t for t in map(_total, groups.get((space, baseline), [])) if t is not None]
        ratio = med(times) / med(base) if times and base and med(base) > 0 else None
        stops = ",".join(sorted({str(r["stop"]).split(":")[0] for r in group}))
        lines.append(
            f"| {space} | {method} | {len(group)} | {fmt(med(times))} | "
            f"{fmt(med([r['encode_s'] for r in group if r.get('encode_s') is not None]))} | "
            f"{fmt(med([r['found'] for r in group]))} | {stops} | "
            f"{fmt(med([r['adj_t'] for r in group if r.get('adj_t') is not None]))} | "
            f"{fmt(med([r['check_p'] for r in group if r.get('check_p') is not None]))} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} |")
    return "\n".join(lines) + "\n"


def plot_times(rows: Iterable[dict], path: str | os.PathLike) -> None:
    """A PNG of median time against space size (architectures), one line per method, log-log."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from nasgen.space.tables import SpaceTables

    sizes: dict[str, int] = {}
    points: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        t = _total(row)
        if t is None:
            continue
        key = json.dumps(row["space_dict"], sort_keys=True)
        if key not in sizes:
            sizes[key] = SpaceTables(SearchSpace.from_dict(row["space_dict"])).count
        points.setdefault(row["method"], {}).setdefault(sizes[key], []).append(t)
    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    for method, by_size in sorted(points.items()):
        xs = sorted(by_size)
        ax.plot(xs, [statistics.median(by_size[x]) for x in xs], marker="o", label=method)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("architectures in the space")
    ax.set_ylabel("median time per run (s)")
    ax.legend()
    figure.tight_layout()
    try:
        figure.savefig(path)
    except OSError as exc:
        raise NasgenError(f"cannot write {path}: {exc.strerror or exc}") from None
