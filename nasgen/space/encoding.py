"""The canonical forms of an architecture: (layers, kernel, stride) arrays and the paper's bit-vectors.

The arrays are zero-padded to the space's N layers and K dimensions:
``layers`` (M,), ``kernel`` and ``stride`` (M, N, K). The canonical bit-vector
(the paper's c_m) holds, for each layer l < N and dimension d, the kernel's
then the stride's ``space.bit_width`` bits (least significant first; zero past
the architecture's last layer), then N activation bits (the first L set);
:func:`encode` packs it little-endian into uint64 words and :func:`decode`
inverts it. Adj_T (Eq. 2) and Hamming distances are computed on those words.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from nasgen.common.errors import ArchitectureError
from nasgen.space import backend
from nasgen.space.definition import Architecture, SearchSpace

__all__ = [
    "AdjTAccumulator",
    "adj_t",
    "adj_t_vectors",
    "arrays_to_architectures",
    "decode",
    "decode_bits",
    "empty_arrays",
    "encode",
    "hamming_matrix",
    "to_arrays",
]


# -- arrays ------------------------------------------------------------------


def to_arrays(space: SearchSpace, archs: Iterable[Architecture]):
    """Architectures -> zero-padded (layers, kernel, stride) arrays shaped for ``space``.

    Args:
        space: the space whose N (layers) and K (dimensions) shape the arrays.
        archs: the architectures (any iterable).

    Returns:
        ``layers`` (M,), ``kernel`` and ``stride`` (M, N, K) int64, zero past each architecture's last layer.

    Raises:
        ArchitectureError: an architecture deeper than N layers, with other than K dimensions, or
            with a kernel or stride too wide for the space's bit-vector.

    >>> layers, kernel, stride = to_arrays(SearchSpace((30,), (20,), 1, 3), [Architecture(((5,), (7,)), ((1,), (1,)))])
    >>> layers.tolist(), kernel[0].ravel().tolist()
    ([2], [5, 7, 0])
    """
    archs = list(archs)
    N, K = space.max_layers, space.dims
    layers = np.zeros(len(archs), dtype=np.int64)
    kernel = np.zeros((len(archs), N, K), dtype=np.int64)
    stride = np.zeros((len(archs), N, K), dtype=np.int64)
    for i, a in enumerate(archs):
        if a.dims != K or a.layers > N:
            raise ArchitectureError(
                f"architecture {i} has {a.layers} layers and {a.dims} dimensions; "
                f"the space allows at most {N} layers and has {K} dimensions"
            )
        layers[i] = a.layers
        kernel[i, : a.layers] = a.kernel
        stride[i, : a.layers] = a.stride
    limit = 1 << space.bit_width
    if kernel.size and (kernel.max() >= limit or stride.max() >= limit):
        raise ArchitectureError(f"a kernel or stride does not fit in the space's {space.bit_width}-bit encoding")
    return layers, kernel, stride


def arrays_to_architectures(layers, kernel, stride) -> list[Architecture]:
    """(layers, kernel, stride) arrays -> a list of :class:`Architecture`: the inverse of :func:`to_arrays`.

    Args:
        layers: (M,) layer counts.
        kernel: (M, N, K) kernels; rows past ``layers[i]`` are ignored.
        stride: (M, N, K) strides, likewise.

    Returns:
        M architectures, in order.

    >>> arrays_to_architectures(np.array([1]), np.array([[[5], [0]]]), np.array([[[1], [0]]]))
    [Architecture(kernel=((5,),), stride=((1,),))]
    """
    out = []
    for L, k, s in zip(layers.tolist(), kernel.tolist(), stride.tolist()):
        out.append(Architecture(kernel=k[:L], stride=s[:L]))
    return out


def empty_arrays(space: SearchSpace):
    """(layers, kernel, stride) arrays holding no architecture, shaped for ``space``.

    >>> [a.shape for a in empty_arrays(SearchSpace((30, 30), (20, 20), 1, 3))]
    [(0,), (0, 3, 2), (0, 3, 2)]
    """
    N, K = space.max_layers, space.dims
    return (np.zeros(0, dtype=np.int64), np.zeros((0, N, K), dtype=np.int64), np.zeros((0, N, K), dtype=np.int64))


# -- bit-vectors and Adj_T ---------------------------------------------------


def encode(space: SearchSpace, archs) -> np.ndarray:
    """Canonical bit-vectors, packed little-endian into uint64 words: shape (M, ceil(bits/64)).

    Args:
        space: the space (its N, K and bit width fix the layout).
        archs: a list of Architecture, or a (layers, kernel, stride) tuple of arrays shaped for ``space``.

    Returns:
        (M, ceil(space.vector_bits / 64)) uint64; :func:`decode` inverts it.

    Raises:
        ArchitectureError: an architecture that does not fit the space's shape or bit width.

    >>> encode(SearchSpace((30,), (20,), 1, 1), [Architecture(((11,),), ((1,),))]).tolist()   # 11 | 1 << 5 | 1 << 10
    [[1067]]
    """
    arrays = archs if isinstance(archs, tuple) else to_arrays(space, archs)
    return backend.encode_bits(*arrays, space.bit_width)


def decode_bits(space: SearchSpace, bits: np.ndarray):
    """Unpacked canonical bit-vectors (M, space.vector_bits) of 0/1 -> (layers, kernel, stride) arrays.

    The hashing samplers' solvers return models in this form (one 0/1 per sampling variable, in
    canonical order); :func:`decode` is the same for packed words.

    Args:
        space: the space the vectors belong to.
        bits: (M, V) of 0/1, V = ``space.vector_bits``.

    Returns:
        ``layers (M,)``, ``kernel (M, N, K)``, ``stride (M, N, K)`` int64, zero past each layer count.

    >>> space = SearchSpace((30,), (20,), 1, 1)
    >>> [a.tolist() for a in decode_bits(space, [[1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 1]])]
    [[1], [[[11]]], [[[1]]]]
    """
    N, K, B = space.max_layers, space.dims, space.bit_width
    bits = np.asarray(bits, dtype=np.int64)
    M = bits.shape[0]
    body = bits[:, : N * K * 2 * B].reshape(M, N, K, 2, B)
    weights = 1 << np.arange(B, dtype=np.int64)
    values = body @ weights
    layers = bits[:, N * K * 2 * B:].sum(axis=1)
    return layers, np.ascontiguousarray(values[..., 0]), np.ascontiguousarray(values[..., 1])


def decode(space: SearchSpace, vectors: np.ndarray):
    """Packed canonical bit-vectors -> (layers, kernel, stride) arrays: the inverse of :func:`encode`.

    Args:
        space: the space the vectors belong to.
        vectors: (M, words) uint64, as :func:`encode` returns them.

    Returns:
        ``layers (M,)``, ``kernel (M, N, K)``, ``stride (M, N, K)`` int64, zero past each layer count.

    Raises:
        ArchitectureError: ``vectors`` is not (M, words) with the space's number of words.

    >>> space = SearchSpace((30,), (20,), 1, 3)
    >>> arrays = to_arrays(space, [Architecture(((5,), (7,)), ((1,), (1,)))])
    >>> all((a == b).all() for a, b in zip(decode(space, encode(space, arrays)), arrays))
    True
    """
    words = (space.vector_bits + 63) // 64
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[1] != words:
        raise ArchitectureError(f"decode takes (M, {words}) packed words for this space, got shape {vectors.shape}")
    as_bytes = np.ascontiguousarray(vectors, dtype="<u8").view(np.uint8)
    bits = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, : space.vector_bits]
    return decode_bits(space, bits)


def adj_t_vectors(vectors: np.ndarray) -> float:
    """Mean Hamming distance between consecutive packed vectors; 0.0 for fewer than two.

    >>> adj_t_vectors(np.array([[0b101], [0b011], [0b011]], dtype=np.uint64))
    1.0
    """
    if len(vectors) < 2:
        return 0.0
    return backend.adjacent_distance_sum(vectors) / (len(vectors) - 1)


class AdjTAccumulator:
    """Adj_T over a stream of packed vectors, fed chunk by chunk; equal to :func:`adj_t_vectors` of the whole.

    >>> vectors = np.array([[3], [5], [6], [0], [7]], dtype=np.uint64)
    >>> acc = AdjTAccumulator()
    >>> for part in (vectors[:2], vectors[2:3], vectors[3:]):
    ...     acc.add(part)
    >>> acc.value == adj_t_vectors(vectors)
    True
    """

    def __init__(self) -> None:
        self.total = 0
        self.pairs = 0
        self._last: np.ndarray | None = None

    def add(self, vectors: np.ndarray) -> None:
        """Append packed vectors (M, words) to the sequence."""
        if len(vectors) == 0:
            return
        if self._last is not None:
            self.total += backend.adjacent_distance_sum(np.stack([self._last, vectors[0]]))
            self.pairs += 1
        self.total += backend.adjacent_distance_sum(vectors)
        self.pairs += len(vectors) - 1
        self._last = np.array(vectors[-1], copy=True)

    def add_arrays(self, space: SearchSpace, layers, kernel, stride) -> None:
        """Append architectures given as (layers, kernel, stride) arrays."""
        self.add(backend.encode_bits(layers, kernel, stride, space.bit_width))

    @property
    def value(self) -> float:
        """Adj_T of everything added so far (0.0 for fewer than two vectors)."""
        return self.total / self.pairs if self.pairs else 0.0


def adj_t(space: SearchSpace, archs) -> float:
    """The paper's Adj_T (Eq. 2): mean popcount(c_m XOR c_{m+1}) over the M-1 consecutive pairs.

    >>> space = SearchSpace((30,), (20,), 2, 2)
    >>> a = Architecture(((5,), (7,)), ((1,), (1,)))
    >>> b = Architecture(((7,), (5,)), ((1,), (1,)))
    >>> adj_t(space, [a, b, a])   # 5 = 0b00101 and 7 = 0b00111 differ in one bit, twice per pair
    2.0
    """
    return adj_t_vectors(encode(space, archs))


def hamming_matrix(space: SearchSpace, archs) -> np.ndarray:
    """All pairwise Hamming distances between canonical vectors, shape (M, M) int64.

    >>> space = SearchSpace((30,), (20,), 2, 2)
    >>> a = Architecture(((5,), (7,)), ((1,), (1,)))
    >>> b = Architecture(((7,), (5,)), ((1,), (1,)))
    >>> hamming_matrix(space, [a, b]).tolist()
    [[0, 2], [2, 0]]
    """
    return backend.hamming_matrix(encode(space, archs))

