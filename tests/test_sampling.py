"""The sampler interface: SpaceTables, ranks, SamplingConfig, the method registry, seeds, arrays on disk."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

import nasgen
from nasgen.common.memory import memory_limit_bytes
from nasgen.space import tables as core
from nasgen.space.arrays_io import ArchitectureWriter, read_arrays, write_arrays
from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.space.definition import Architecture, SearchSpace

from .conftest import small_spaces


@given(small_spaces(max_size=12))
@settings(max_examples=40)
def test_rank_inverts_unrank_and_matches_enumeration(space):
    tables = core.SpaceTables(space)
    if tables.count == 0 or tables.count > 3000:
        return
    ranks = list(range(tables.count))
    assert tables.rank(*tables.unrank(ranks)) == ranks
    listed = list(nasgen.enumerate_architectures(space))
    for r in sorted({0, tables.count - 1, tables.count // 2}):
        assert nasgen.rank(space, listed[r]) == r


def test_rank_refuses_architectures_outside_the_space():
    space = SearchSpace((30,), (20,), 2, 3)
    with pytest.raises(ArchitectureError):
        nasgen.rank(space, Architecture(kernel=[[5], [8]], stride=[[1], [1]]))  # ends at 19, not 20
    with pytest.raises(ArchitectureError):
        nasgen.rank(SearchSpace((30,), (20,), 2, 3, kernel_range=(1, 6)), Architecture([[5], [7]], [[1], [1]]))


def test_unrank_refuses_out_of_range():
    tables = core.SpaceTables(SearchSpace((30,), (20,), 2, 2))
    with pytest.raises(NasgenError, match="outside 0..8"):
        tables.unrank([9])


def test_adj_accumulator_equals_whole_sequence():
    space = SearchSpace((224, 224), (7, 7), 1, 5)
    layers, kernel, stride = nasgen.sample_arrays(space, 1000, seed=2, replace=True)
    acc = core.AdjTAccumulator()
    for a, b in ((0, 1), (1, 400), (400, 400), (400, 1000)):
        acc.add_arrays(space, layers[a:b], kernel[a:b], stride[a:b])
    assert acc.value == pytest.approx(nasgen.adj_t(space, (layers, kernel, stride)))


def test_memory_limit_units(monkeypatch):
    for text, value in (("4G", 4 * 2**30), ("512M", 512 * 2**20), ("100000000", 10**8), ("2gb", 2 * 2**30)):
        monkeypatch.setenv("NASGEN_MEMORY_LIMIT", text)
        assert memory_limit_bytes() == value
    for text in ("4X", "-1", "0", "lots", "1e9"):
        monkeypatch.setenv("NASGEN_MEMORY_LIMIT", text)
        with pytest.raises(NasgenError, match="NASGEN_MEMORY_LIMIT"):
            nasgen.count(SearchSpace((30,), (20,), 2, 2))
    monkeypatch.setenv("NASGEN_MEMORY_LIMIT", "4M")
    space = SearchSpace((224, 224), (7, 7), 1, 5)
    assert nasgen.count(space) > 10**18  # the tables fit in 4 MiB ...
    with pytest.raises(NasgenError, match="distinct architectures need about 5.8 MiB"):  # ... tracking 40000 does not
        nasgen.sample_arrays(space, 40000, seed=0)


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
