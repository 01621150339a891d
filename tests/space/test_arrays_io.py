"""Architectures on disk (nasgen.space.arrays_io): npz and JSON Lines round trips, staged writes, bad files."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import nasgen
from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.space.arrays_io import (
    ArchitectureWriter,
    arrays_to_jsonl_lines,
    format_for,
    iter_arrays,
    read_architectures,
    read_arrays,
    write_architectures,
    write_arrays,
)
from nasgen.space.definition import Architecture, SearchSpace
from nasgen.space.encoding import arrays_to_architectures
from nasgen.space.tables import SpaceTables


def test_arrays_round_trip_and_smallest_dtype(tmp_path):
    space = SearchSpace((224, 224), (7, 7), 1, 5)
    arrays = nasgen.sample_arrays(space, 300, seed=4)
    write_arrays(tmp_path / "a.npz", *arrays)
    for got, want in zip(read_arrays(tmp_path / "a.npz", space=space), arrays):
        np.testing.assert_array_equal(got, want)
    with np.load(tmp_path / "a.npz") as raw:
        assert raw["kernel"].dtype == np.uint8  # every value of this space is below 256
    with ArchitectureWriter(tmp_path / "a.jsonl") as writer:
        writer.write(*arrays)
    for got, want in zip(read_arrays(tmp_path / "a.jsonl", space=space), arrays):
        np.testing.assert_array_equal(got, want)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(NasgenError, match="npz"):
        read_arrays(tmp_path / "bad.npz")


def test_writer_leaves_the_target_alone_on_error(tmp_path):
    target = tmp_path / "keep.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), ArchitectureWriter(target) as writer:
        writer.write(*nasgen.sample_arrays(SearchSpace((30,), (20,), 2, 2), 3, seed=0))
        raise RuntimeError("fails mid-run")
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.jsonl"]



def test_jsonl_lines_are_the_architectures_own_json():
    space = SearchSpace((30, 30), (20, 20), 1, 3, pool=(2, 1))
    arrays = SpaceTables(space).sample_arrays(40, seed=6)
    archs = arrays_to_architectures(*arrays)
    lines = arrays_to_jsonl_lines(*arrays)
    assert [json.loads(line) for line in lines] == [json.loads(a.to_json()) for a in archs]
    assert [Architecture.from_json(line) for line in lines] == archs


def test_read_and_write_architectures_round_trip_and_check_membership(tmp_path):
    space = SearchSpace((30,), (20,), 2, 3)
    archs = SpaceTables(space).sample(12, seed=2)
    target = tmp_path / "a.jsonl"
    assert write_architectures(target, archs) == 12
    assert read_architectures(target, space=space) == archs
    buffer = io.StringIO()
    write_architectures(buffer, archs[:2])
    assert buffer.getvalue() == target.read_text().split("\n", 2)[0] + "\n" + target.read_text().split("\n")[1] + "\n"
    with pytest.raises(ArchitectureError, match="architecture 1"):
        read_architectures(target, space=SearchSpace((30,), (21,), 2, 3))
    with pytest.raises(NasgenError, match="cannot read"):
        read_architectures(tmp_path / "missing.jsonl")


def test_iter_arrays_chunks_concatenate_to_the_whole_in_both_formats(tmp_path):
    space = SearchSpace((30, 30), (20, 20), 1, 3)
    arrays = SpaceTables(space).sample_arrays(100, seed=1)
    write_arrays(tmp_path / "a.npz", *arrays)
    with ArchitectureWriter(tmp_path / "a.jsonl") as writer:
        writer.write(*arrays)
    for name in ("a.npz", "a.jsonl"):
        chunks = list(iter_arrays(tmp_path / name, space=space, chunk=7))
        assert [len(c[0]) for c in chunks] == [7] * 14 + [2]
        for got, want in zip((np.concatenate(p) for p in zip(*chunks)), arrays):
            np.testing.assert_array_equal(got, want)


def test_format_for_names_the_valid_formats():
    assert format_for("x.npz") == "npz" and format_for("x.txt") == "jsonl" and format_for("-") == "jsonl"
    with pytest.raises(NasgenError, match="jsonl, npz"):
        format_for("x", "csv")
    with pytest.raises(NasgenError, match="needs a file"):
        format_for("-", "npz")


def test_a_malformed_line_is_named_by_its_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"layers": 1, "kernel": [[5]], "stride": [[1]]}\n\n{"kernel": 3}\n')
    with pytest.raises(NasgenError, match="line 3"):
        read_arrays(path)


def test_npz_written_chunk_by_chunk_takes_the_widest_chunks_dtype_and_loads_with_numpy(tmp_path):
    space = SearchSpace((30, 30), (20, 20), 1, 3)
    small = SpaceTables(space).sample_arrays(50, seed=1)
    wide = tuple(a.copy() for a in small)
    wide[1][wide[1] > 0] += 300  # one chunk needs uint16: the whole file is uint16, every value kept
    with ArchitectureWriter(tmp_path / "w.npz") as writer:
        for start in range(0, 50, 7):
            writer.write(*(a[start:start + 7] for a in small))
        writer.write(*wide)
    with np.load(tmp_path / "w.npz", allow_pickle=False) as raw:
        assert raw["kernel"].dtype == np.uint16 and raw["layers"].dtype == np.uint16
        for name, want in zip(("layers", "kernel", "stride"), (np.concatenate(p) for p in zip(small, wide))):
            np.testing.assert_array_equal(raw[name], want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz"]  # the spill was never a named file


def test_an_npz_with_nothing_written_is_an_empty_valid_file(tmp_path):
    with ArchitectureWriter(tmp_path / "e.npz"):
        pass
    with np.load(tmp_path / "e.npz", allow_pickle=False) as raw:
        assert [raw[n].shape for n in ("layers", "kernel", "stride")] == [(0,), (0, 0, 0), (0, 0, 0)]


def test_npz_is_read_a_chunk_of_rows_at_a_time_with_the_same_rows_as_numpy(tmp_path):
    space = SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor")
    arrays = nasgen.sample_arrays(space, 1000, seed=2, replace=True)
    with ArchitectureWriter(tmp_path / "c.npz") as writer:
        for start in range(0, 1000, 300):  # several spill chunks
            writer.write(*(a[start:start + 300] for a in arrays))
    with np.load(tmp_path / "c.npz", allow_pickle=False) as raw:
        want = [raw[name].astype(np.int64) for name in ("layers", "kernel", "stride")]
    for space_or_none in (None, space):
        parts = list(iter_arrays(tmp_path / "c.npz", space=space_or_none, chunk=77))
        assert [len(p[0]) for p in parts] == [77] * 12 + [76]
        for got, expected in zip(zip(*parts), want):
            np.testing.assert_array_equal(np.concatenate(got), expected)


def test_npz_larger_than_the_memory_limit_streams_but_is_not_read_whole(tmp_path, monkeypatch):
    space = SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor")
    arrays = nasgen.sample_arrays(space, 60000, seed=1, replace=True)
    write_arrays(tmp_path / "big.npz", *arrays)
    monkeypatch.setenv("NASGEN_MEMORY_LIMIT", "1M")  # the arrays hold 60000 * 21 bytes, 1.2 MB
    assert sum(len(p[0]) for p in iter_arrays(tmp_path / "big.npz", space=space, chunk=4096)) == 60000
    with pytest.raises(NasgenError, match="more than the 1.0 MiB limit.*iter_arrays"):
        read_arrays(tmp_path / "big.npz", space=space)


def test_a_row_outside_the_space_in_a_later_npz_chunk_is_named_by_its_number(tmp_path):
    space = SearchSpace((30,), (20,), 1, 3)
    layers, kernel, stride = nasgen.sample_arrays(space, 50, seed=0, replace=True)
    kernel = kernel.copy()
    kernel[41, 0, 0] += 1  # row 42 now misses the output shape (or the relation)
    write_arrays(tmp_path / "bad.npz", layers, kernel, stride)
    with pytest.raises(ArchitectureError, match=r"bad.npz architecture 42: "):
        list(iter_arrays(tmp_path / "bad.npz", space=space, chunk=8))
    assert sum(len(p[0]) for p in iter_arrays(tmp_path / "bad.npz", space=space, chunk=8, check=False)) == 50


@pytest.mark.parametrize("reader", ["read_architectures", "read_bounded_text"])
def test_json_readers_refuse_a_file_without_line_ends_in_one_line(tmp_path, monkeypatch, reader):
    from nasgen.space import arrays_io

    monkeypatch.setenv("NASGEN_MEMORY_LIMIT", "64M")  # lines up to 1 MiB
    huge = tmp_path / "huge.json"
    huge.write_bytes(b"[" + b"1," * 700_000 + b"1]")  # one 1.4 MB line
    for path in ("/dev/zero", huge):
        call = (lambda: arrays_io.read_architectures(path)) if reader == "read_architectures" else (
            lambda: arrays_io.read_bounded_text(path, "--space"))
        with pytest.raises(NasgenError, match="longer than 1.0 MiB"):
            call()
    (tmp_path / "ok.json").write_text('{"a": 1}')
    if reader == "read_bounded_text":
        assert arrays_io.read_bounded_text(tmp_path / "ok.json", "--space") == '{"a": 1}'
