"""Membership of many architectures at once: :func:`check_membership` on (layers, kernel, stride) arrays.

Reading a file of samples used to turn every row into an :class:`Architecture`
and walk it through :func:`nasgen.space.definition.check_membership` (20 s for
10^6 rows); here the same shape arithmetic runs a layer at a time over all rows
with numpy. A refused row is then walked through ``check_membership`` itself,
so the message is the one a single architecture gets, prefixed by its number.
"""

from __future__ import annotations

import numpy as np

from nasgen.common.errors import ArchitectureError
from nasgen.space.definition import Architecture, SearchSpace, check_membership

__all__ = ["check_arrays", "membership_mask", "space_arrays"]


def _window(size: np.ndarray, k: np.ndarray, s: np.ndarray, exact: bool):
    """(fits, output size) of a valid window op applied elementwise; the size is meaningless where it does not fit."""
    fits = (k >= 1) & (s >= 1) & (k <= size)
    span = size - k
    safe = np.maximum(s, 1)
    if exact:
        fits &= span % safe == 0
    return fits, span // safe + 1


def membership_mask(space: SearchSpace, layers, kernel, stride) -> np.ndarray:
    """Which rows of (layers (M,), kernel (M, N', K), stride (M, N', K)) are members of ``space``.

    The same test as :func:`~nasgen.space.definition.check_membership` (which the tests compare it
    with), a layer at a time over every row; entries past a row's layer count are ignored.

    Args:
        space: the space.
        layers: (M,) layer counts.
        kernel: (M, N', K) kernels, any N'.
        stride: (M, N', K) strides.

    Returns:
        (M,) bool.

    >>> space = SearchSpace((30,), (20,), 1, 3)
    >>> membership_mask(space, [1, 1, 2], [[[11], [0]], [[12], [0]], [[5], [7]]], [[[1], [0]], [[1], [0]], [[1], [1]]]).tolist()
    [True, False, True]
    """
    layers = np.asarray(layers, dtype=np.int64)
    kernel = np.asarray(kernel, dtype=np.int64)
    stride = np.asarray(stride, dtype=np.int64)
    M = len(layers)
    if kernel.ndim != 3 or kernel.shape[2] != space.dims:
        return np.zeros(M, dtype=bool)
    ok = (layers >= space.min_layers) & (layers <= space.max_layers) & (layers <= kernel.shape[1])
    exact = space.rounding == "exact"
    size = np.tile(np.array(space.input_shape, dtype=np.int64), (M, 1))
    for l in range(min(kernel.shape[1], space.max_layers)):
        active = ok & (layers > l)
        if not active.any():
            break
        k, s = kernel[:, l, :], stride[:, l, :]
        good, y = _window(size, k, s, exact)
        good &= s <= size
        if space.relation == "gt":
            good &= k > s
        elif space.relation == "ge":
            good &= k >= s
        if space.kernel_range:
            good &= (k >= space.kernel_range[0]) & (k <= space.kernel_range[1])
        if space.stride_range:
            good &= (s >= space.stride_range[0]) & (s <= space.stride_range[1])
        if space.pool is not None:
            pool_k = np.array([p[0] for p in space.pool], dtype=np.int64)
            pool_s = np.array([p[1] for p in space.pool], dtype=np.int64)
            fits, y = _window(y, np.broadcast_to(pool_k, y.shape), np.broadcast_to(pool_s, y.shape), exact)
            good &= fits
        row = good.all(axis=1)
        if space.square:
            row &= (k == k[:, :1]).all(axis=1) & (s == s[:, :1]).all(axis=1)
        ok &= ~active | row
        size = np.where((active & row)[:, None], y, size)
    ok &= (size == np.array(space.output_shape, dtype=np.int64)).all(axis=1)
    return ok


def check_arrays(space: SearchSpace, layers, kernel, stride, first: int = 1, source: str | None = None) -> None:
    """Raise, naming the first row outside ``space``, unless every row of the arrays is a member.

    Args:
        space: the space.
        layers, kernel, stride: (M,), (M, N', K), (M, N', K) integer arrays.
        first: the number the first row has in messages (1-based, as a person counts).
        source: the file named in messages (None: none).

    Raises:
        ArchitectureError: ``"[SOURCE ]architecture NUMBER: <what check_membership says>"``.

    >>> check_arrays(SearchSpace((30,), (20,), 1, 1), [1, 1], [[[11]], [[10]]], [[[1]], [[1]]])
    Traceback (most recent call last):
    ...
    nasgen.common.errors.ArchitectureError: architecture 2: after layer 1 the shape is (21,), not the output shape (20,)
    """
    mask = membership_mask(space, layers, kernel, stride)
    if mask.all():
        return
    i = int(np.argmin(mask))
    prefix = f"{source} architecture {first + i}" if source else f"architecture {first + i}"
    L = int(np.asarray(layers)[i])
    k, s = np.asarray(kernel)[i], np.asarray(stride)[i]
    try:
        arch = Architecture(kernel=k[:max(L, 0)].tolist(), stride=s[:max(L, 0)].tolist())
        check_membership(space, arch)
    except ArchitectureError as exc:
        raise ArchitectureError(f"{prefix}: {exc}") from None
    raise AssertionError(f"membership_mask refused row {i}, which check_membership accepts")  # pragma: no cover


def space_arrays(space: SearchSpace, layers, kernel, stride, check: bool = True, first: int = 1,
                 source: str | None = None):
    """(layers, kernel, stride) arrays shaped (M, N, K) for ``space``, zero past each row's layers; checked with ``check``.

    Args:
        space: the space whose N and K shape the result.
        layers, kernel, stride: (M,), (M, N', K), (M, N', K) integer arrays (N' any).
        check: refuse a row outside the space (else only rows that do not fit its shape or bit width).
        first, source: as :func:`check_arrays` names a row.

    Returns:
        ``layers (M,)``, ``kernel (M, N, K)``, ``stride (M, N, K)`` int64 (new arrays).

    Raises:
        ArchitectureError: a row outside the space (``check``) or not fitting its arrays.

    >>> [a.tolist() for a in space_arrays(SearchSpace((30,), (20,), 1, 2), [1], [[[11]]], [[[1]]])]
    [[1], [[[11], [0]]], [[[1], [0]]]]
    """
    layers = np.array(layers, dtype=np.int64)
    kernel = np.asarray(kernel, dtype=np.int64)
    stride = np.asarray(stride, dtype=np.int64)
    where = f"{source}: " if source else ""
    N, K = space.max_layers, space.dims
    if len(layers) and kernel.shape[2] != K:
        raise ArchitectureError(f"{where}the architectures have {kernel.shape[2]} dimensions; the space has {K}")
    if check:
        check_arrays(space, layers, kernel, stride, first=first, source=source)
    elif len(layers) and (layers.min() < 1 or layers.max() > min(N, kernel.shape[1])):
        i = int(np.argmax((layers < 1) | (layers > min(N, kernel.shape[1]))))
        raise ArchitectureError(f"{where}architecture {first + i} has {int(layers[i])} layers; "
                                f"the space allows at most {N}")
    out_k = np.zeros((len(layers), N, K), dtype=np.int64)
    out_s = np.zeros_like(out_k)
    depth = min(N, kernel.shape[1])
    out_k[:, :depth] = kernel[:, :depth]
    out_s[:, :depth] = stride[:, :depth]
    past = np.arange(N) >= layers[:, None]
    out_k[past] = 0
    out_s[past] = 0
    limit = 1 << space.bit_width
    if out_k.size and (out_k.max() >= limit or out_s.max() >= limit or min(out_k.min(), out_s.min()) < 0):
        raise ArchitectureError(f"{where}a kernel or stride does not fit in the space's {space.bit_width}-bit encoding")
    return layers, out_k, out_s
