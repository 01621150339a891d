"""Canonical bit-vectors and Adj_T (nasgen.space.encoding): hand-computed layouts, decode inverts encode."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nasgen
from nasgen.common.errors import ArchitectureError
from nasgen.space.definition import Architecture, SearchSpace
from nasgen.space.encoding import (
    AdjTAccumulator,
    arrays_to_architectures,
    decode,
    decode_bits,
    empty_arrays,
    encode,
    to_arrays,
)
from nasgen.space.tables import SpaceTables

from ..conftest import small_spaces


def test_bit_vector_layout_by_hand():
    space = SearchSpace((30,), (20,), 2, 3)  # B = 5, length 3*1*2*5 + 3 = 33
    arch = Architecture(kernel=[[5], [7]], stride=[[1], [1]])
    bits = "".join(str((int(w) >> i) & 1) for w in nasgen.encode(space, [arch])[0] for i in range(64))[:33]
    expected = "10100" + "10000" + "11100" + "10000" + "00000" + "00000" + "110"
    assert bits == expected
    assert space.vector_bits == 33


def test_adj_t_hand_computed():
    space = SearchSpace((30,), (20,), 2, 2)
    a = Architecture(kernel=[[5], [7]], stride=[[1], [1]])  # k=5: 10100, k=7: 11100
    b = Architecture(kernel=[[7], [5]], stride=[[1], [1]])
    c = Architecture(kernel=[[2], [10]], stride=[[1], [1]])  # 2: 01000, 10: 01010
    # d(a,b) = 1 + 1 = 2; d(b,c) = popcount(11100^01000) + popcount(10100^01010) = 2 + 4 = 6;
    # d(a,c) = popcount(10100^01000) + popcount(11100^01010) = 3 + 3 = 6
    assert nasgen.adj_t(space, [a, b]) == 2.0
    assert nasgen.adj_t(space, [a, b, c]) == (2 + 6) / 2
    assert nasgen.adj_t(space, [a]) == 0.0
    assert nasgen.adj_t(space, []) == 0.0
    h = nasgen.hamming_matrix(space, [a, b, c])
    np.testing.assert_array_equal(h, [[0, 2, 6], [2, 0, 6], [6, 6, 0]])


def test_inactive_layers_are_zero_and_activation_bits_count_layers():
    space = SearchSpace((30,), (20,), 1, 3)
    one = Architecture(kernel=[[11]], stride=[[1]])
    vec = nasgen.encode(space, [one])[0]
    bits = [(int(vec[p // 64]) >> (p % 64)) & 1 for p in range(space.vector_bits)]
    assert bits[-3:] == [1, 0, 0]
    assert sum(bits[10:30]) == 0


def test_encode_refuses_foreign_architecture():
    space = SearchSpace((30,), (20,), 1, 2)
    with pytest.raises(ArchitectureError):
        nasgen.encode(space, [Architecture(kernel=[[3], [3], [3]], stride=[[1], [1], [1]])])



def test_adj_accumulator_equals_whole_sequence():
    space = SearchSpace((224, 224), (7, 7), 1, 5)
    layers, kernel, stride = nasgen.sample_arrays(space, 1000, seed=2, replace=True)
    acc = AdjTAccumulator()
    for a, b in ((0, 1), (1, 400), (400, 400), (400, 1000)):
        acc.add_arrays(space, layers[a:b], kernel[a:b], stride[a:b])
    assert acc.value == pytest.approx(nasgen.adj_t(space, (layers, kernel, stride)))



def _bits_by_hand(space: SearchSpace, arch: Architecture) -> list[int]:
    """The canonical vector written from the paper's definition, bit by bit (an independent encoder)."""
    bits = []
    for l in range(space.max_layers):
        for d in range(space.dims):
            k = arch.kernel[l][d] if l < arch.layers else 0
            s = arch.stride[l][d] if l < arch.layers else 0
            bits += [(k >> b) & 1 for b in range(space.bit_width)] + [(s >> b) & 1 for b in range(space.bit_width)]
    return bits + [int(l < arch.layers) for l in range(space.max_layers)]


@given(small_spaces(max_size=12), st.integers(0, 2**32))
@settings(max_examples=30)
def test_decode_inverts_encode_and_decode_bits_reads_the_hand_written_layout(space, seed):
    tables = SpaceTables(space)
    if tables.count == 0:
        return
    arrays = tables.sample_arrays(min(tables.count, 20), seed=seed)
    for a, b in zip(decode(space, encode(space, arrays)), arrays):
        np.testing.assert_array_equal(a, b)
    archs = arrays_to_architectures(*arrays)
    by_hand = np.array([_bits_by_hand(space, a) for a in archs])
    for a, b in zip(decode_bits(space, by_hand), arrays):
        np.testing.assert_array_equal(a, b)
    assert arrays_to_architectures(*to_arrays(space, archs)) == archs


def test_decode_names_a_wrong_shape_and_handles_no_vectors():
    space = SearchSpace((30,), (20,), 1, 3)
    with pytest.raises(ArchitectureError, match=r"decode takes \(M, 1\) packed words"):
        decode(space, np.zeros((2, 3), dtype=np.uint64))
    for a, b in zip(decode(space, encode(space, empty_arrays(space))), empty_arrays(space)):
        assert a.shape == b.shape
