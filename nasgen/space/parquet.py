"""Architectures as Apache Parquet: one flat row per architecture, streamed a row group at a time.

The columns are ``layers``, then ``k{l}_{d}`` and ``s{l}_{d}`` for every layer ``l < N`` and dimension
``d < K`` (layer-major: ``k0_0, s0_0, k0_1, s0_1, k1_0, ...``), int32, zero on the layers an architecture
does not have: the same numbers as the npz arrays, in a table pandas, polars and DuckDB read directly::

    import pandas as pd
    frame = pd.read_parquet("archs.parquet")          # or polars.read_parquet, duckdb "FROM 'archs.parquet'"

:class:`ParquetSink` writes one row group per chunk as the draws are made (behind a staged file, so a
refused or failed run leaves an existing target as it was, and an interrupted one a valid file with every
completed chunk); :func:`iter_parquet_arrays` reads a row group at a time, so memory stays bounded by the
largest row group whatever the file's size. pyarrow is imported on first use (the ``tables`` extra).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO

import numpy as np

from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.common.memory import human_bytes, memory_limit_bytes

__all__ = ["MAGIC", "ParquetSink", "column_names", "iter_parquet_arrays", "require_pyarrow"]

#: The first (and last) four bytes of every Parquet file.
MAGIC = b"PAR1"
INSTALL_HINT = 'pip install "nasgen[tables]"'
_COLUMN = re.compile(r"^([ks])(\d+)_(\d+)$")


def require_pyarrow():
    """``pyarrow.parquet``, or a one-line NasgenError naming the extra that installs it."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise NasgenError(f"Parquet files need pyarrow: {INSTALL_HINT}") from None
    return pq


def column_names(layers: int, dims: int) -> list[str]:
    """The columns of a file of architectures with up to ``layers`` layers in ``dims`` dimensions.

    >>> column_names(2, 1)
    ['layers', 'k0_0', 's0_0', 'k1_0', 's1_0']
    """
    names = ["layers"]
    for l in range(layers):
        for d in range(dims):
            names += [f"k{l}_{d}", f"s{l}_{d}"]
    return names


class ParquetSink:
    """Writes (layers, kernel, stride) chunks to an open binary file as Parquet row groups.

    The table's shape (N layers, K dimensions) is fixed by the first chunk;
    :meth:`close` writes the footer (a file is readable only after it).

    Args:
        handle: a writable binary file object (the staged file of the target).
        compression: a Parquet codec (``"zstd"`` by default: small and fast).
    """

    def __init__(self, handle: IO[bytes], compression: str = "zstd") -> None:
        self._pq = require_pyarrow()
        import pyarrow

        self._pa = pyarrow
        self._handle = handle
        self._compression = compression
        self._writer = None
        self._shape: tuple[int, int] | None = None
        self.rows = 0

    def _open(self, layers: int, dims: int) -> None:
        pa = self._pa
        schema = pa.schema([(name, pa.int32()) for name in column_names(layers, dims)])
        self._shape = (layers, dims)
        self._writer = self._pq.ParquetWriter(self._handle, schema, compression=self._compression)

    def write(self, layers: np.ndarray, kernel: np.ndarray, stride: np.ndarray) -> None:
        """Append one chunk as a row group.

        Raises:
            ArchitectureError: a chunk whose (N, K) differs from the first chunk's.
        """
        layers, kernel, stride = np.asarray(layers), np.asarray(kernel), np.asarray(stride)
        _, N, K = kernel.shape
        if self._writer is None:
            self._open(N, K)
        elif (N, K) != self._shape:
            raise ArchitectureError(f"a chunk of {N} layers x {K} dimensions after chunks of "
                                    f"{self._shape[0]} x {self._shape[1]}")
        # One (M, 1 + 2NK) int32 block, then a column view per name: the layer-major k, s order.
        block = np.empty((len(layers), 1 + 2 * N * K), dtype=np.int32)
        block[:, 0] = layers
        block[:, 1::2] = kernel.reshape(len(layers), N * K)
        block[:, 2::2] = stride.reshape(len(layers), N * K)
        columns = [self._pa.array(block[:, i]) for i in range(block.shape[1])]
        self._writer.write_table(self._pa.Table.from_arrays(columns, schema=self._writer.schema))
        self.rows += len(layers)

    def discard(self) -> None:
        """Close the writer of a file that is being thrown away (so that nothing writes to it later)."""
        if self._writer is not None:
            try:
                self._writer.close()
            except (OSError, ValueError):
                pass  # the staged file is removed next; a failing footer does not matter
            self._writer = None

    def close(self, layers: int = 1, dims: int = 1) -> None:
        """Write the footer (an empty file gets a ``layers`` x ``dims`` table of no rows)."""
        if self._writer is None:
            self._open(layers, dims)
        self._writer.close()


def _shape_of(names: list[str], source: str) -> tuple[int, int]:
    """(N, K) from a file's column names; a one-line error for missing, extra or misnamed columns."""
    found = [m for m in map(_COLUMN.match, names) if m]
    if "layers" not in names or not found:
        raise NasgenError(f"{source}: not a nasgen Parquet file of architectures: it needs the columns layers, "
                          f"k{{l}}_{{d}} and s{{l}}_{{d}} (found {', '.join(names[:6])}{'...' if len(names) > 6 else ''})")
    N = 1 + max(int(m.group(2)) for m in found)
    K = 1 + max(int(m.group(3)) for m in found)
    want = column_names(N, K)
    missing = [c for c in want if c not in names]
    extra = [c for c in names if c not in want]
    if missing or extra:
        what = f"missing column {missing[0]}" if missing else f"extra column {extra[0]}"
        raise NasgenError(f"{source}: {what}: a file of {N} layers x {K} dimensions has exactly the columns "
                          f"layers, k0_0, s0_0 ... k{N - 1}_{K - 1}, s{N - 1}_{K - 1}")
    return N, K


def iter_parquet_arrays(handle: IO[bytes], source: str, chunk: int = 65536) -> Iterator[tuple[np.ndarray, ...]]:
    """Read a Parquet file of architectures in chunks of at most ``chunk`` rows.

    Args:
        handle: a seekable binary file object holding the file.
        source: its name, for messages.
        chunk: rows per chunk.

    Yields:
        (layers (m,), kernel (m, N, K), stride (m, N, K)) int64 arrays, zero on inactive layers.

    Raises:
        NasgenError: not a Parquet file, missing or extra columns, a column that is not integer or holds
            nulls, or a row group larger than the memory limit (``NASGEN_MEMORY_LIMIT``).
    """
    pq = require_pyarrow()
    import pyarrow

    try:
        parquet = pq.ParquetFile(handle)
    except (pyarrow.ArrowException, OSError) as exc:
        raise NasgenError(f"{source}: not a readable Parquet file ({str(exc).splitlines()[0][:200]})") from None
    names = parquet.schema_arrow.names
    N, K = _shape_of(names, source)
    for field in parquet.schema_arrow:
        if not pyarrow.types.is_integer(field.type):
            raise NasgenError(f"{source}: column {field.name} holds {field.type}, not integers")
    meta = parquet.metadata
    limit = memory_limit_bytes()
    for g in range(meta.num_row_groups):
        rows = meta.row_group(g).num_rows
        if rows * len(names) * 8 * 3 > limit:  # the int64 arrays, the block and pyarrow's buffers
            raise NasgenError(f"{source}: row group {g} holds {rows} rows, about {human_bytes(rows * len(names) * 24)} "
                              f"to read, more than the {human_bytes(limit)} memory limit (NASGEN_MEMORY_LIMIT)")
    order = column_names(N, K)
    try:
        for batch in parquet.iter_batches(batch_size=chunk, columns=order):
            if any(column.null_count for column in batch.columns):
                raise NasgenError(f"{source}: a column holds nulls; every cell must be an integer")
            block = np.column_stack([column.to_numpy() for column in batch.columns]).astype(np.int64)
            m = len(block)
            layers = block[:, 0].copy()
            kernel = block[:, 1::2].reshape(m, N, K)
            stride = block[:, 2::2].reshape(m, N, K)
            yield layers, np.ascontiguousarray(kernel), np.ascontiguousarray(stride)
    except pyarrow.ArrowException as exc:
        raise NasgenError(f"{source}: a damaged Parquet file ({str(exc).splitlines()[0][:200]})") from None
