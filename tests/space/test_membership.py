"""Vectorised membership (nasgen.space.membership) against check_membership, one Architecture at a time."""

from __future__ import annotations

import numpy as np
import pytest

from nasgen.common.errors import ArchitectureError
from nasgen.space.definition import Architecture, SearchSpace, check_membership
from nasgen.space.membership import check_arrays, membership_mask, space_arrays
from nasgen.space.tables import SpaceTables

SPACES = [
    SearchSpace((30,), (20,), 1, 3),
    SearchSpace((12, 9), (3, 2), 1, 3, rounding="floor"),
    SearchSpace((16, 16), (4, 4), 1, 3, square=True, relation="ge"),
    SearchSpace((30,) * 3, (20,) * 3, 1, 3, pool=(2, 1)),
    SearchSpace((24, 20), (5, 4), 2, 3, rounding="floor", pool=((2, 2), (3, 1)), relation="any"),
    SearchSpace((40,), (10,), 1, 4, kernel_range=(2, 7), stride_range=(1, 3)),
]


def _scalar_mask(space, layers, kernel, stride):
    out = []
    for L, k, s in zip(layers.tolist(), kernel.tolist(), stride.tolist()):
        try:
            check_membership(space, Architecture(kernel=k[:L], stride=s[:L]))
            out.append(True)
        except ArchitectureError:
            out.append(False)
    return np.array(out)


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.describe())
def test_mask_equals_check_membership_on_members_and_perturbed_rows(space):
    rng = np.random.default_rng(11)
    tables = SpaceTables(space)
    layers, kernel, stride = tables.sample_arrays(400, seed=3, replace=True)
    assert membership_mask(space, layers, kernel, stride).all()
    # perturb: a kernel or stride moved by -2..2 somewhere within the layers, and some layer counts moved
    for trial in range(6):
        bad_k, bad_s, bad_l = kernel.copy(), stride.copy(), layers.copy()
        rows = rng.integers(0, len(layers), 200)
        cols = rng.integers(0, layers[rows])
        dims = rng.integers(0, space.dims, 200)
        target = bad_k if trial % 2 else bad_s
        target[rows, cols, dims] = np.maximum(1, target[rows, cols, dims] + rng.integers(-2, 3, 200))
        if trial >= 4:
            bad_l[rows[:50]] = np.clip(bad_l[rows[:50]] + rng.integers(-1, 2, 50), 1, space.max_layers)
        want = _scalar_mask(space, bad_l, bad_k, bad_s)
        assert not want.all()  # the perturbations do leave the space
        np.testing.assert_array_equal(membership_mask(space, bad_l, bad_k, bad_s), want)


def test_uniform_random_rows_agree_with_check_membership():
    space = SearchSpace((9, 7), (3, 2), 1, 3, rounding="floor")
    rng = np.random.default_rng(5)
    layers = rng.integers(0, 5, 20000)
    kernel = rng.integers(0, 6, (20000, 4, 2))
    stride = rng.integers(0, 4, (20000, 4, 2))
    want = np.array([L >= 1 and x for L, x in zip(layers, _scalar_mask(space, np.maximum(layers, 1), kernel, stride))])
    got = membership_mask(space, layers, kernel, stride)
    assert got.sum() > 20  # some rows are members
    np.testing.assert_array_equal(got, want)


def test_check_arrays_names_the_first_bad_row_with_check_membership_words():
    space = SearchSpace((30,), (20,), 1, 2)
    layers = np.array([1, 2, 1, 1])
    kernel = np.array([[[11], [0]], [[5], [7]], [[12], [0]], [[13], [0]]])
    stride = np.array([[[1], [0]], [[1], [1]], [[1], [0]], [[1], [0]]])
    arch = Architecture(kernel=((12,),), stride=((1,),))
    with pytest.raises(ArchitectureError) as scalar:
        check_membership(space, arch)
    with pytest.raises(ArchitectureError) as vector:
        check_arrays(space, layers, kernel, stride, first=101, source="f.npz")
    assert str(vector.value) == f"f.npz architecture 103: {scalar.value}"


def test_space_arrays_pads_zeroes_past_layers_and_refuses_other_dimensions():
    space = SearchSpace((30,), (20,), 1, 3)
    layers, kernel, stride = space_arrays(space, [1], [[[11], [9]]], [[[1], [4]]])
    assert kernel.tolist() == [[[11], [0], [0]]] and stride.tolist() == [[[1], [0], [0]]]
    with pytest.raises(ArchitectureError, match="2 dimensions; the space has 1"):
        space_arrays(space, [1], [[[11, 11]]], [[[1, 1]]])
    with pytest.raises(ArchitectureError, match="architecture 1 has 4 layers"):
        space_arrays(space, [4], [[[5]] * 4], [[[1]] * 4], check=False)
