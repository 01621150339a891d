"""The sampler interface: SpaceTables, ranks, SamplingConfig, the method registry, seeds, arrays on disk."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

import nasgen
from nasgen.common.memory import memory_limit_bytes
from nasgen.space import tables as core
from nasgen.samplers import registry as sampling
from nasgen.space.arrays_io import ArchitectureWriter, read_arrays, write_arrays
from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.space.definition import Architecture, SearchSpace

from .conftest import brute_force_space, small_spaces


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


def test_api_and_cli_agree_on_distinct_by_default():
    space = SearchSpace((30,), (20,), 2, 3)
    total = nasgen.count(space)
    archs = nasgen.sample(space, 200, seed=1)
    assert len(archs) == min(200, total) == len(set(archs))
    drawn = nasgen.sample(space, 200, seed=1, replace=True)
    assert len(drawn) == 200 and len(set(drawn)) < 200  # 200 independent draws from 88 must repeat
    assert set(archs) <= brute_force_space(space)


def test_seed_accepts_none_int_and_generator():
    space = SearchSpace((30, 30), (20, 20), 2, 3)
    a = nasgen.sample_arrays(space, 50, seed=np.random.default_rng(7))
    b = nasgen.sample_arrays(space, 50, seed=np.random.default_rng(7))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = nasgen.sample_arrays(space, 50, seed=None)
    assert len(c[0]) == 50
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(NasgenError, match="seed"):
            nasgen.sample(space, 3, seed=bad)


def test_sampling_config_validates_in_one_place():
    assert sampling.SamplingConfig.from_dict(sampling.SamplingConfig(samples=3, seed=4).to_dict()) == \
        sampling.SamplingConfig(samples=3, seed=4)
    cases = [
        (dict(method="nope", samples=1), "unknown method"),
        (dict(method="exact"), "needs a number of samples"),
        (dict(samples=-2), "samples"),
        (dict(samples=True), "samples"),
        (dict(samples=1, replace="no"), "replace"),
        (dict(samples=1, timeout=float("inf")), "timeout"),
        (dict(samples=1, timeout=0), "timeout"),
        (dict(method="limited", samples=1, replace=True), "never repeats"),
        (dict(samples=1, options={"pivot_k": 2}), "takes no option 'pivot_k'"),
        (dict(method="uniwit", samples=1, options={"pivot_k": 1e-300}), "pivot_k"),
        (dict(samples=1, where="k[0][0] > 2"), "sequence of expression strings"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(sampling.SamplingError, match=fragment):
            sampling.SamplingConfig(**kwargs)


def test_every_method_goes_through_draw():
    space = SearchSpace((30,), (20,), 2, 2)
    everything = set(nasgen.enumerate_architectures(space))
    for method in ("exact", "all", "limited", "uniwit"):
        archs = nasgen.sample(space, None if method == "all" else 4, method=method, seed=3)
        assert set(archs) <= everything and len(archs) == len(set(archs)) == (9 if method == "all" else 4), method


def test_draw_records_the_seed_it_chose():
    space = SearchSpace((30,), (20,), 2, 2)
    with sampling.draw(space, sampling.SamplingConfig(samples=5, seed=None)) as run:
        first = np.concatenate([c[1] for c in run.draw()])
        seed = run.config.seed
    again = nasgen.sample_arrays(space, 5, seed=seed)[1]
    np.testing.assert_array_equal(first, again)


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
