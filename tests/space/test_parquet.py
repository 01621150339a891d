"""Parquet files of architectures: written as draws are made, read back by nasgen, pandas, polars and DuckDB."""

import json
import os
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import nasgen
from nasgen.common.errors import NasgenError
from nasgen.space.arrays_io import ArchitectureWriter, iter_arrays, read_arrays
from nasgen.space.parquet import column_names

SPACE = nasgen.SearchSpace((30, 28), (4, 3), 1, 3, pool=(2, 1))


def _chunks(seed=5, sizes=(700, 1, 300)):
    stream = nasgen.SpaceTables(SPACE)
    out, start = [], 0
    for i, n in enumerate(sizes):
        out.append(stream.sample_arrays(n, seed=seed + i, replace=True))
        start += n
    return out


def _expected_frame(chunks):
    """The flat table built by hand from the arrays: one row per architecture, the documented column order."""
    rows = []
    for layers, kernel, stride in chunks:
        for i in range(len(layers)):
            row = [int(layers[i])]
            for l in range(kernel.shape[1]):
                for d in range(kernel.shape[2]):
                    row += [int(kernel[i, l, d]), int(stride[i, l, d])]
            rows.append(row)
    return pd.DataFrame(rows, columns=column_names(SPACE.max_layers, SPACE.dims))


def test_chunks_written_as_row_groups_read_back_equal_by_nasgen_pandas_polars_and_duckdb(tmp_path):
    path = tmp_path / "archs.parquet"
    chunks = _chunks()
    with ArchitectureWriter(path) as writer:
        for chunk in chunks:
            writer.write(*chunk)
    assert writer.format == "parquet" and pq.ParquetFile(path).metadata.num_row_groups == 3
    layers, kernel, stride = read_arrays(path, space=SPACE)
    for got, want in zip((layers, kernel, stride), (np.concatenate(parts) for parts in zip(*chunks))):
        np.testing.assert_array_equal(got, want)
    want = _expected_frame(chunks)
    pd.testing.assert_frame_equal(pd.read_parquet(path).astype(np.int64), want)
    assert pl.read_parquet(path).to_pandas().astype(np.int64).equals(want)
    by_layers = dict(duckdb.sql(f"SELECT layers, count(*) FROM '{path}' GROUP BY layers").fetchall())
    assert by_layers == dict(zip(*np.unique(layers, return_counts=True)))


def test_reading_in_small_chunks_crosses_row_groups_and_keeps_the_order(tmp_path):
    path = tmp_path / "archs.parquet"
    chunks = _chunks()
    with ArchitectureWriter(path) as writer:
        for chunk in chunks:
            writer.write(*chunk)
    parts = list(iter_arrays(path, chunk=128))
    assert max(len(p[0]) for p in parts) <= 128
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), np.concatenate([c[1] for c in chunks]))


def test_an_interrupted_run_leaves_a_valid_file_with_every_completed_chunk(tmp_path):
    path = tmp_path / "archs.parquet"
    chunks = _chunks()
    with pytest.raises(KeyboardInterrupt):
        with ArchitectureWriter(path) as writer:
            writer.write(*chunks[0])
            raise KeyboardInterrupt
    assert len(read_arrays(path, space=SPACE)[0]) == len(chunks[0][0])
    assert [p.name for p in tmp_path.iterdir()] == ["archs.parquet"]


def test_a_failed_run_leaves_the_existing_target_untouched(tmp_path):
    path = tmp_path / "archs.parquet"
    path.write_bytes(b"before")
    with pytest.raises(RuntimeError):
        with ArchitectureWriter(path) as writer:
            writer.write(*_chunks()[0])
            raise RuntimeError("boom")
    assert path.read_bytes() == b"before" and len(list(tmp_path.iterdir())) == 1


def _write_table(path, columns: dict):
    pq.write_table(pa.table(columns), path)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("s0_1"), "missing column s0_1"),
    (lambda c: c.update(extra=c["layers"]), "extra column extra"),
    (lambda c: c.update(k0_0=c["k0_0"].astype(np.float64)), "column k0_0 holds double, not integers"),
    (lambda c: c.pop("layers"), "not a nasgen Parquet file"),
])
def test_a_file_with_missing_extra_or_mistyped_columns_is_refused_in_one_line(tmp_path, change, message):
    layers, kernel, stride = _chunks(sizes=(20,))[0]
    frame = {"layers": layers}
    for l in range(kernel.shape[1]):
        for d in range(kernel.shape[2]):
            frame[f"k{l}_{d}"], frame[f"s{l}_{d}"] = kernel[:, l, d], stride[:, l, d]
    change(frame)
    _write_table(tmp_path / "bad.parquet", frame)
    with pytest.raises(NasgenError, match=message) as error:
        read_arrays(tmp_path / "bad.parquet", space=SPACE)
    assert "\n" not in str(error.value)


def test_nulls_and_a_truncated_file_are_refused_in_one_line(tmp_path):
    layers, kernel, stride = _chunks(sizes=(20,))[0]
    frame = {"layers": pa.array([None] + layers[1:].tolist(), type=pa.int32())}
    for l in range(kernel.shape[1]):
        for d in range(kernel.shape[2]):
            frame[f"k{l}_{d}"], frame[f"s{l}_{d}"] = kernel[:, l, d], stride[:, l, d]
    _write_table(tmp_path / "nulls.parquet", frame)
    with pytest.raises(NasgenError, match="nulls"):
        read_arrays(tmp_path / "nulls.parquet")
    good = tmp_path / "good.parquet"
    with ArchitectureWriter(good) as writer:
        writer.write(layers, kernel, stride)
    (tmp_path / "cut.parquet").write_bytes(good.read_bytes()[:-20])
    with pytest.raises(NasgenError, match="cut.parquet"):
        read_arrays(tmp_path / "cut.parquet")


def _nasgen(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "nasgen", *args], capture_output=True, text=True, **kwargs)


def test_the_cli_samples_to_parquet_and_every_reader_takes_it(tmp_path):
    space = ["-I", "30,28", "-O", "4,3", "-n", "1", "-N", "3", "--pool", "2,1"]
    target = tmp_path / "s.parquet"
    done = _nasgen("sample", *space, "-M", "400", "--seed", "9", "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "s.parquet.config.json").read_text())["format"] == "parquet"
    same = _nasgen("sample", *space, "-M", "400", "--seed", "9", "-o", str(tmp_path / "s.npz"))
    assert same.returncode == 0
    adj_parquet, adj_npz = _nasgen("adj", str(target)), _nasgen("adj", str(tmp_path / "s.npz"))
    assert adj_parquet.returncode == 0 and adj_parquet.stdout == adj_npz.stdout
    shown = _nasgen("show", "--file", str(target), "--index", "3")
    assert shown.returncode == 0 and shown.stdout == _nasgen("show", "--file", str(tmp_path / "s.npz"), "--index", "3").stdout
    with open(target, "rb") as stdin:
        piped = subprocess.run([sys.executable, "-m", "nasgen", "adj", "-", *space], stdin=stdin,
                               capture_output=True, text=True)
    assert piped.returncode == 0 and piped.stdout == adj_npz.stdout


def test_parquet_to_standard_output_is_refused_before_anything_runs():
    done = _nasgen("sample", "-I", "30", "-O", "4", "-N", "2", "-M", "3", "--format", "parquet")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "parquet output needs a file" in done.stderr
    assert done.stdout == ""


def test_an_unwritable_parquet_target_is_refused_in_one_line(tmp_path):
    done = _nasgen("sample", "-I", "30", "-O", "4", "-N", "2", "-M", "3", "-o", str(tmp_path / "no" / "x.parquet"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "cannot write" in done.stderr
    assert not os.path.exists(tmp_path / "no")
