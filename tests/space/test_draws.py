"""Uniform draws from the exact tables (nasgen.space.draws): membership, uniformity, seeds, chunking, memory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import nasgen
from nasgen.common.errors import NasgenError
from nasgen.common.memory import memory_limit_bytes
from nasgen.space.definition import SearchSpace, check_membership
from nasgen.space.draws import SampleStream, check_samples, iter_uniform_arrays, seed_sequence, uniform_arrays
from nasgen.space.tables import SpaceTables

from ..conftest import small_spaces


@given(small_spaces(), st.integers(0, 2**32))
def test_samples_are_members(space, seed):
    if nasgen.count(space) == 0:
        with pytest.raises(NasgenError, match="empty"):
            SpaceTables(space).sample(3, seed=seed)
        return
    for arch in SpaceTables(space).sample(20, seed=seed):
        check_membership(space, arch)
        # an independent shape computation agrees
        assert arch.shapes(space)[-1] == space.output_shape


def test_sampler_is_uniform_chi_square():
    space = SearchSpace((14, 9), (4, 3), 1, 3, pool=(2, 1), relation="ge")
    members = list(nasgen.enumerate_architectures(space))
    assert 200 <= len(members) <= 600
    index = {a: i for i, a in enumerate(members)}
    draws = 40 * len(members)
    counts = np.bincount([index[a] for a in SpaceTables(space).sample(draws, seed=12345)], minlength=len(members))
    # H0: uniform; a fixed seed makes this deterministic; level 0.001.
    assert stats.chisquare(counts).pvalue > 1e-3
    # the same statistic rejects a mildly skewed sampler (the test has power)
    skew = counts.copy()
    skew[: len(skew) // 4] += 10
    assert stats.chisquare(skew).pvalue < 1e-3


def test_same_seed_same_samples_and_chunking_does_not_matter():
    space = SearchSpace((64, 48), (5, 4), 1, 4)
    a = SpaceTables(space).sample_arrays(5000, seed=3)
    b = [np.concatenate(p) for p in zip(*SpaceTables(space).iter_sample_arrays(5000, seed=3, chunk=333))]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = SpaceTables(space).sample_arrays(5000, seed=4)
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("samples", [10, 150, 400, 1000])
def test_without_replacement_distinct_and_complete(samples):
    space = SearchSpace((20, 12), (6, 4), 1, 2, rounding="floor")
    total = nasgen.count(space)
    assert 200 < total < 1000
    archs = SpaceTables(space).sample(samples, seed=1, replace=False)
    assert len(archs) == min(samples, total)
    assert len(set(archs)) == len(archs)
    for a in archs:
        check_membership(space, a)
    if samples >= total:
        assert set(archs) == set(nasgen.enumerate_architectures(space))


def test_without_replacement_is_uniform_over_first_draw():
    # The first of M distinct draws must itself be uniform.
    space = SearchSpace((12,), (3,), 1, 3)
    members = list(nasgen.enumerate_architectures(space))
    index = {a: i for i, a in enumerate(members)}
    firsts = [index[SpaceTables(space).sample(2, seed=s, replace=False)[0]] for s in range(30 * len(members))]
    assert stats.chisquare(np.bincount(firsts, minlength=len(members))).pvalue > 1e-3


def test_sample_memory_guard():
    with pytest.raises(NasgenError, match="GiB"):
        SpaceTables(SearchSpace((30,), (20,), 1, 3)).sample_arrays(10**12)



def test_the_space_tier_and_the_public_sampler_draw_the_same_architectures():
    # nasgen.sample_arrays(method="exact") is the one public entry point; it must draw what the tables draw.
    space = SearchSpace((28, 28), (1, 1), 1, 4, pool=(2, 1))
    for replace in (False, True):
        ours = uniform_arrays(SpaceTables(space), 300, seed=3, replace=replace)
        public = nasgen.sample_arrays(space, 300, seed=3, replace=replace)
        for a, b in zip(ours, public):
            np.testing.assert_array_equal(a, b)


def test_a_stream_does_not_depend_on_how_it_is_chunked():
    tables = SpaceTables(SearchSpace((64, 48), (5, 4), 1, 4))
    whole = SampleStream(tables, 11).draw(1000)
    stream = SampleStream(tables, 11)
    parts = [stream.draw(n) for n in (1, 499, 0, 500)]
    for a, b in zip(whole, (np.concatenate(p) for p in zip(*parts))):
        np.testing.assert_array_equal(a, b)
    chunked = [np.concatenate(p) for p in zip(*iter_uniform_arrays(tables, 1000, seed=11, replace=True, chunk=77))]
    for a, b in zip(whole, chunked):
        np.testing.assert_array_equal(a, b)


def test_seeds_and_sample_counts_are_checked_in_one_place():
    assert seed_sequence(5).entropy == 5 and seed_sequence(None).entropy is not None
    assert seed_sequence(np.random.default_rng(7)).entropy == seed_sequence(np.random.default_rng(7)).entropy
    for bad in (-1, 1.5, "3", True, 2**128):
        with pytest.raises(NasgenError, match="seed"):
            seed_sequence(bad)
    assert check_samples(np.int32(4)) == 4 and type(check_samples(np.int32(4))) is int
    for bad in (-1, 2.0, True, "3", None):
        with pytest.raises(NasgenError, match="number of samples"):
            check_samples(bad)


def test_an_empty_space_is_refused_in_one_line():
    tables = SpaceTables(SearchSpace((3,), (1,), 3, 3))
    assert tables.count == 0
    with pytest.raises(NasgenError, match="is empty"):
        tables.sample_arrays(3, seed=0)


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


def test_uniform_depth_weights_draw_each_depth_equally_and_uniformly_within_it():
    """Against enumeration: P(arch) = 1 / (non-empty depths) / (architectures of its depth)."""
    space = SearchSpace((14, 9), (4, 3), 1, 3, pool=(2, 1), relation="ge")
    members = list(nasgen.enumerate_architectures(space))
    per_depth = {L: sum(a.layers == L for a in members) for L in (1, 2, 3)}
    assert len(set(per_depth.values())) == 3 and min(per_depth.values()) > 0  # unequal depths: a real test
    index = {a: i for i, a in enumerate(members)}
    expected = np.array([1 / 3 / per_depth[a.layers] for a in members])
    draws = 60 * len(members)
    got = SpaceTables(space).sample(draws, seed=7, replace=True, depth_weights="uniform")
    counts = np.bincount([index[a] for a in got], minlength=len(members))
    assert stats.chisquare(counts, expected * draws).pvalue > 1e-3
    depths = np.bincount([a.layers for a in got], minlength=4)[1:]
    assert stats.chisquare(depths).pvalue > 1e-3
    # power: the space's own weights are far from equal depths on the same statistic
    plain = np.bincount([a.layers for a in SpaceTables(space).sample(draws, seed=7, replace=True)], minlength=4)[1:]
    assert stats.chisquare(plain).pvalue < 1e-3


def test_uniform_depth_weights_skip_empty_depths_and_keep_distinct_draws_distinct():
    space = SearchSpace((8,), (1,), 1, 4, pool=(2, 1))   # 3, 6, 3 and 0 architectures of 1..4 layers
    tables = SpaceTables(space)
    assert tables.count_by_layers == {1: 3, 2: 6, 3: 3, 4: 0}
    layers = tables.sample_arrays(3000, seed=1, replace=True, depth_weights="uniform")[0]
    assert set(np.unique(layers)) == {L for L, c in tables.count_by_layers.items() if c}
    distinct = tables.sample_arrays(tables.count, seed=2, depth_weights="uniform")
    keys = {(int(L), k.tobytes(), s.tobytes()) for L, k, s in zip(*distinct)}
    assert len(keys) == tables.count  # every architecture once, repeats dropped


def test_depth_weights_are_checked_in_one_line():
    with pytest.raises(NasgenError, match="unknown depth weights 'balanced': use one of space, uniform"):
        SpaceTables(SearchSpace((30,), (20,), 2, 2)).sample_arrays(3, depth_weights="balanced")


@pytest.mark.parametrize("replace", [True, False])
def test_the_same_seed_gives_the_same_arrays_for_every_thread_count_and_chunk(replace):
    # 20,000 draws: several ranges of at least 4096 draws each, so 2 and 3 threads really split the batches
    space = SearchSpace((64, 48), (5, 4), 1, 4, pool=(2, 1))
    tables = SpaceTables(space)
    reference = tables.sample_arrays(20000, seed=9, replace=replace, threads=1)
    for threads, chunk in ((2, 65536), (3, 65536), (3, 7001), (2, 333)):
        parts = list(tables.iter_sample_arrays(20000, seed=9, replace=replace, chunk=chunk, threads=threads))
        for got, want in zip(zip(*parts), reference):
            np.testing.assert_array_equal(np.concatenate(got), want)
    assert len({tuple(r) for r in reference[1].reshape(20000, -1).tolist()}) > 1000


def test_dense_distinct_draws_and_enumeration_do_not_depend_on_threads():
    space = SearchSpace((24, 20), (6, 4), 1, 3, rounding="floor")
    tables = SpaceTables(space)
    assert 10000 < tables.count < 200000  # dense: more than half the space is asked for
    one = tables.sample_arrays(tables.count, seed=5, threads=1)
    three = tables.sample_arrays(tables.count, seed=5, threads=3)
    for a, b in zip(one, three):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(zip(*tables.enumerate_arrays(batch=20000, threads=1)),
                    zip(*tables.enumerate_arrays(batch=20000, threads=2))):
        np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))


def test_threads_are_checked_in_one_place():
    tables = SpaceTables(SearchSpace((30,), (20,), 1, 2))
    for bad in (0, 1025, -1, 2.0, True, "2"):
        with pytest.raises(NasgenError, match="threads must be an integer in 1..1024"):
            tables.sample_arrays(3, threads=bad)
    with pytest.raises(NasgenError, match="threads must be"):
        nasgen.sample_arrays(SearchSpace((30,), (20,), 1, 2), 3, threads=0)


def test_the_public_sampler_passes_threads_without_changing_the_draws():
    space = SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor")
    one = nasgen.sample_arrays(space, 12000, seed=2, replace=True, threads=1)
    two = nasgen.sample_arrays(space, 12000, seed=2, replace=True, threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
