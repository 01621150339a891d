"""Seeded uniform draws from a space's exact tables: the streams behind :meth:`SpaceTables.sample_arrays`.

Depth weights choose how the number of layers is drawn: ``"space"`` (the
default) weighs each depth by how many architectures it holds, so every
architecture is equally likely; ``"uniform"`` draws the depth uniformly among
the non-empty ones, then an architecture uniformly within it (in the 224 -> 7
space 99.6% of architectures have 5 layers: uniform depth weights give each
depth a fifth of the draws). Both run at the kernel's full speed: the depth is
drawn from a table of cumulative weights either way.

Independent draws (``replace=True``) come from one seeded stream of the
compiled kernel (:class:`SampleStream`), identical however it is chunked and
however many threads draw it: the generator is counter-based, draw i depending
on (seed, i) alone, so a batch is cut into contiguous ranges drawn in parallel
and the result never depends on the machine it ran on.
Distinct draws (the default) are, when at least half the space is asked for, a
uniformly shuffled choice of ranks unranked in chunks; otherwise the stream's
draws with repeats dropped, which is exactly sampling without replacement in
a uniformly random order.

The functions here take a :class:`nasgen.space.tables.SpaceTables` (built by the
caller, who keeps it) and are what its sampling methods call; the public
entry points are those methods and :func:`nasgen.sample_arrays`.
"""

from __future__ import annotations

import os

import numpy as np

from nasgen.common.errors import EmptySpaceError, NasgenError
from nasgen.common.memory import human_bytes, memory_limit_bytes
from nasgen.space import backend
from nasgen.space.encoding import empty_arrays

__all__ = ["DEPTH_WEIGHTS", "MAX_THREADS", "SampleStream", "check_depth_weights", "check_samples", "check_threads",
           "default_threads", "depth_probabilities", "iter_uniform_arrays", "require_nonempty", "seed_sequence",
           "seed_state", "uniform_arrays"]

#: the most threads a sampling call accepts
MAX_THREADS = 1024


def default_threads() -> int:
    """The cores this process may run on (``len(os.sched_getaffinity(0))`` where the system says).

    >>> default_threads() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - systems without affinity masks
        return max(1, os.cpu_count() or 1)


def check_threads(threads) -> int:
    """The number of threads to draw with: ``threads`` checked, or :func:`default_threads` for None.

    Raises:
        NasgenError: not an integer in 1..MAX_THREADS.

    >>> check_threads(2), check_threads(None) == default_threads()
    (2, True)
    """
    if threads is None:
        return default_threads()
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)) \
            or not 1 <= threads <= MAX_THREADS:
        raise NasgenError(f"threads must be an integer in 1..{MAX_THREADS}, got {str(threads)[:60]!r}")
    return int(threads)

#: How the number of layers of a draw is weighted: by the architectures each depth holds, or equally.
DEPTH_WEIGHTS = ("space", "uniform")


def seed_sequence(seed) -> np.random.SeedSequence:
    """A ``numpy.random.SeedSequence`` from a seed as the API accepts it.

    Args:
        seed: None (fresh entropy from the OS), a non-negative int, a
            ``numpy.random.Generator`` (one integer is drawn from it) or a
            ``SeedSequence``.

    Raises:
        NasgenError: anything else (a negative int, a bool, a float, a string).

    >>> seed_sequence(7).entropy, seed_sequence(np.random.SeedSequence(7)).entropy
    (7, 7)
    """
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(0, 2**63)))
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**128:
        raise NasgenError(
            f"seed must be None, an integer in 0..2**128-1 or a numpy.random.Generator, got {str(seed)[:60]!r}"
        )
    return np.random.SeedSequence(int(seed))


def seed_state(seed) -> int:
    """The kernel generator's 64-bit starting state for ``seed`` (as :func:`seed_sequence` takes it).

    >>> seed_state(7) == seed_state(np.random.SeedSequence(7))
    True
    """
    return int(seed_sequence(seed).generate_state(1, np.uint64)[0])


def require_nonempty(tables: "SpaceTables") -> None:
    """Refuse to draw from an empty space, in one line that says how to widen it.

    Args:
        tables: the space's :class:`~nasgen.space.tables.SpaceTables` (or anything with ``count`` and ``space``).

    Raises:
        EmptySpaceError: ``tables.count`` is 0.
    """
    if tables.count == 0:
        raise EmptySpaceError(
            f"the space {tables.space.describe()} is empty: no architecture maps the input to the output; "
            "widen the layer bounds, ranges or relation"
        )


def check_samples(samples) -> int:
    """The number of architectures asked for, as a Python int, checked once for every sampler.

    Args:
        samples: M, as the caller gave it.

    Returns:
        ``int(samples)``.

    Raises:
        NasgenError: not an integer >= 0 (bools and floats included).

    >>> check_samples(np.int64(3))
    3
    """
    if isinstance(samples, (bool, np.bool_)) or not isinstance(samples, (int, np.integer)) or samples < 0:
        raise NasgenError(f"the number of samples must be an integer >= 0, got {str(samples)[:60]!r}")
    return int(samples)


def check_depth_weights(value) -> str:
    """``value`` if it is one of :data:`DEPTH_WEIGHTS`.

    Raises:
        NasgenError: anything else, in one line naming the valid values.

    >>> check_depth_weights("uniform")
    'uniform'
    """
    if not isinstance(value, str) or value not in DEPTH_WEIGHTS:
        raise NasgenError(f"unknown depth weights {str(value)[:40]!r}: use one of {', '.join(DEPTH_WEIGHTS)}")
    return value


def depth_probabilities(by_layers: dict[int, int], depth_weights: str = "space") -> dict[int, float]:
    """The probability of each number of layers under ``depth_weights``, from the counts per depth.

    Args:
        by_layers: architectures per number of layers (zero counts allowed).
        depth_weights: ``"space"`` (proportional to the counts) or ``"uniform"`` (equal over the non-empty depths).

    Returns:
        ``{L: probability}`` over the non-empty depths.

    >>> depth_probabilities({1: 1, 2: 3, 3: 0}), depth_probabilities({1: 1, 2: 3, 3: 0}, "uniform")
    ({1: 0.25, 2: 0.75}, {1: 0.5, 2: 0.5})
    """
    check_depth_weights(depth_weights)
    nonempty = {L: c for L, c in by_layers.items() if c}
    total = sum(nonempty.values())
    if depth_weights == "uniform":
        return {L: 1 / len(nonempty) for L in nonempty}
    return {L: c / total for L, c in nonempty.items()}


class SampleStream:
    """A seeded stream of independent, exactly uniform draws from a space's tables.

    Draw i of the stream depends on (seed, i) only (a counter-based generator;
    the stream counts the draws made), so the concatenated draws depend on the
    seed only, not on how they are chunked nor on how many threads draw them. The constrained space (:mod:`nasgen.constraints.constrained`)
    draws from its restricted tables through one.

    Args:
        tables: the :class:`~nasgen.space.tables.SpaceTables` to draw from (non-empty).
        seed: as :func:`seed_sequence` takes it.
        depth_weights: ``"space"`` (every architecture equally likely) or ``"uniform"``
            (every non-empty depth equally likely, then uniform within it).

    >>> from nasgen.space.tables import SpaceTables
    >>> from nasgen.space.definition import SearchSpace
    >>> tables = SpaceTables(SearchSpace((30,), (20,), 2, 3))
    >>> one, two = SampleStream(tables, 5), SampleStream(tables, 5)
    >>> whole = one.draw(6)[1]
    >>> bool((np.concatenate([two.draw(2, threads=2)[1], two.draw(4)[1]]) == whole).all())
    True
    """

    def __init__(self, tables: "SpaceTables", seed, depth_weights: str = "space") -> None:
        self.tables = tables
        self.key = seed_state(seed)
        self.drawn = 0  # the index of the next draw
        self.values, self.cum, _ = tables.layer_tables()
        if check_depth_weights(depth_weights) == "uniform":
            # the kernel picks depth i when a uniform number below cum[-1] falls below cum[i]: equal steps
            self.cum = np.arange(1, len(self.values) + 1, dtype=np.uint64).reshape(-1, 1)

    def draw(self, samples: int, threads: int = 1):
        """The next ``samples`` draws, as (layers (M,), kernel (M, N, K), stride (M, N, K)) int64 arrays.

        Args:
            samples: how many.
            threads: contiguous ranges drawn in parallel (the draws do not depend on it).
        """
        t = self.tables
        layers, kernel, stride, self.drawn = backend.sample_batch(
            t.graph, t.rules, t.components, t.cum, t.g, self.values, self.cum, self.key, samples,
            t.space.max_layers, t.space.dims, first=self.drawn, threads=threads)
        return layers, kernel, stride


def iter_uniform_arrays(tables: "SpaceTables", samples: int, seed=0, replace: bool = False, chunk: int = 65536,
                        depth_weights: str = "space", threads: int | None = None):
    """Yield (layers, kernel, stride) chunks of a uniform sample of ``tables``' space, lazily.

    A caller streaming them to disk keeps every completed chunk if interrupted.
    The concatenated chunks depend on neither ``chunk`` nor ``threads``.

    Args:
        tables: the space's :class:`~nasgen.space.tables.SpaceTables`.
        samples: M, how many to draw.
        seed: as :func:`seed_sequence` takes it; same seed, same draws.
        replace: False for min(M, count) distinct architectures in uniformly random order,
            True for M independent draws.
        chunk: architectures per yielded chunk (at most).
        depth_weights: ``"space"`` or ``"uniform"`` (see the module); distinct draws under uniform depth
            weights are successive draws with repeats dropped.
        threads: threads drawing (and unranking) each chunk; None: :func:`default_threads`.

    Yields:
        ``(layers (m,), kernel (m, N, K), stride (m, N, K))`` int64 arrays.

    Raises:
        NasgenError: a bad M, seed or thread count, or distinct draws too many to track in the memory limit.
        EmptySpaceError: the space is empty.

    >>> from nasgen.space.tables import SpaceTables
    >>> from nasgen.space.definition import SearchSpace
    >>> tables = SpaceTables(SearchSpace((30,), (20,), 2, 2))
    >>> [len(part[0]) for part in iter_uniform_arrays(tables, 9, seed=0, chunk=4)]   # all 9, in chunks
    [4, 4, 1]
    """
    samples = check_samples(samples)
    check_depth_weights(depth_weights)
    threads = check_threads(threads)
    require_nonempty(tables)
    space = tables.space
    total = tables.count
    limit = memory_limit_bytes()
    # distinct draws keep one key per architecture: a bytes object (33 bytes + the key, rounded up by the
    # allocator) in a set (16-byte slots at a fill of 1/3 to 2/3): measured 153 bytes a key for 24-byte keys
    # (700,000 distinct 224x224 -> 7x7 draws, 107 MB over the interpreter's own 40 MB)
    distinct_bytes = min(samples, total) * (128 + 8 * ((space.vector_bits + 63) // 64))
    if not replace and distinct_bytes > limit:
        raise NasgenError(
            f"{min(samples, total)} distinct architectures need about {human_bytes(distinct_bytes)} to track, "
            f"more than the {human_bytes(limit)} limit: ask for fewer, or draw with replacement in a stream"
        )
    if replace:
        stream = SampleStream(tables, seed, depth_weights)
        done = 0
        while done < samples:
            n = min(chunk, samples - done)
            yield stream.draw(n, threads)
            done += n
        return
    if 2 * samples >= total and depth_weights == "space":
        # Dense case: a uniformly ordered choice of distinct ranks.
        rng = np.random.default_rng(seed_sequence(seed))
        ranks = rng.permutation(total)[: min(samples, total)].tolist()
        for start in range(0, len(ranks), chunk):
            yield tables.unrank(ranks[start:start + chunk], threads=threads)
        return
    # Sparse case: uniform draws, dropping repeats. Sequential rejection of repeats is
    # exactly sampling without replacement, in a uniformly random order.
    stream = SampleStream(tables, seed, depth_weights)
    seen: set[bytes] = set()
    bits = space.bit_width
    while len(seen) < samples:
        need = samples - len(seen)
        layers, kernel, stride = stream.draw(min(chunk, need + need // 8 + 16), threads)
        rows = np.ascontiguousarray(backend.encode_bits(layers, kernel, stride, bits))
        # one bytes key per row in a single call (a void view's tolist), not a tobytes() per row
        keys = rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).ravel().tolist()
        keep = []
        for i, key in enumerate(keys):
            if key not in seen:
                seen.add(key)
                keep.append(i)
                if len(seen) == samples:
                    break
        if keep:
            idx = np.array(keep)
            yield layers[idx], kernel[idx], stride[idx]


def uniform_arrays(tables: "SpaceTables", samples: int, seed=0, replace: bool = False, depth_weights: str = "space",
                   threads: int | None = None):
    """Draw architectures of ``tables``' space exactly uniformly into numpy arrays, all at once.

    Args:
        tables: the space's :class:`~nasgen.space.tables.SpaceTables`.
        samples: M, how many to draw.
        seed: None (fresh entropy), a non-negative int or a ``numpy.random.Generator``,
            as scikit-learn's ``random_state``; same int, same draws.
        replace: False (the default) for min(M, count) distinct architectures
            in uniformly random order (all of them, shuffled, when M >= count);
            True for M independent draws.
        depth_weights: ``"space"`` or ``"uniform"`` (see the module).
        threads: threads drawing; the draws do not depend on it (None: :func:`default_threads`).

    Returns:
        ``(layers (M,), kernel (M, N, K), stride (M, N, K))`` int64 arrays;
        rows past ``layers[i]`` are zero.

    Raises:
        NasgenError: a bad M, seed or depth weights, or arrays that would not fit in the memory limit
            (then draw in chunks with :func:`iter_uniform_arrays`).
        EmptySpaceError: the space is empty.

    >>> from nasgen.space.tables import SpaceTables
    >>> from nasgen.space.definition import SearchSpace
    >>> layers, kernel, stride = uniform_arrays(SpaceTables(SearchSpace((30,), (20,), 2, 2)), 9, seed=0)
    >>> len({(tuple(k.ravel()), tuple(s.ravel())) for k, s in zip(kernel, stride)})   # all 9, distinct
    9
    """
    space = tables.space
    row_bytes = 8 * (1 + 2 * space.max_layers * space.dims)
    limit = memory_limit_bytes()
    if check_samples(samples) * row_bytes > limit:
        raise NasgenError(
            f"{samples} samples need {human_bytes(samples * row_bytes)} of arrays, more than the "
            f"{human_bytes(limit)} limit: draw them in chunks with iter_sample_arrays"
        )
    # One chunk for independent draws: the stream is the same however it is chunked.
    chunk = max(samples, 1) if replace else 65536
    chunks = list(iter_uniform_arrays(tables, samples, seed=seed, replace=replace, chunk=chunk,
                                      depth_weights=depth_weights, threads=threads))
    if not chunks:
        return empty_arrays(space)
    if len(chunks) == 1:  # draws with replacement come in one chunk: no copy
        return chunks[0]
    return tuple(np.concatenate(parts) for parts in zip(*chunks))
