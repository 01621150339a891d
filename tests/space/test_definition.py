"""The data model (nasgen.space.definition): convolution arithmetic, membership and JSON, against the definitions."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasgen.common.errors import ArchitectureError, NasgenError, SpaceError
from nasgen.space.definition import Architecture, SearchSpace, check_membership, conv_output_size, parse_json

from ..conftest import brute_force_space, small_spaces


def _windows(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(windows that fit, elements left uncovered at the end), by sliding a window along the input."""
    start, placed = 0, 0
    while start + kernel <= size:
        placed += 1
        start += stride
    covered = (placed - 1) * stride + kernel if placed else 0
    return placed, size - covered


@given(st.integers(1, 40), st.integers(0, 42), st.integers(0, 42))
def test_conv_output_size_counts_the_windows_a_slide_places(size, kernel, stride):
    placed, uncovered = _windows(size, kernel, stride) if kernel >= 1 and stride >= 1 else (0, 0)
    floor = conv_output_size(size, kernel, stride, "floor")
    exact = conv_output_size(size, kernel, stride, "exact")
    if kernel < 1 or stride < 1 or kernel > size:
        assert floor is None and exact is None
        return
    assert floor == placed
    assert exact == (placed if uncovered == 0 else None)


@given(small_spaces(max_size=10), st.data())
@settings(max_examples=40)
def test_membership_is_exactly_the_brute_force_set(space, data):
    members = brute_force_space(space)
    for arch in list(members)[:30]:
        check_membership(space, arch)
        assert arch.shapes(space)[-1] == space.output_shape
    # random architectures of the space's shape: accepted exactly when brute force lists them
    for _ in range(20):
        layers = data.draw(st.integers(space.min_layers, space.max_layers))
        grid = st.lists(st.lists(st.integers(1, 6), min_size=space.dims, max_size=space.dims),
                        min_size=layers, max_size=layers)
        arch = Architecture(kernel=data.draw(grid), stride=data.draw(grid))
        if arch in members:
            check_membership(space, arch)
        else:
            with pytest.raises(ArchitectureError):
                check_membership(space, arch)


@given(small_spaces())
def test_spaces_round_trip_through_their_dict(space):
    data = json.loads(json.dumps(space.to_dict()))
    assert SearchSpace.from_dict(data) == space


def test_architectures_round_trip_through_json():
    arch = Architecture(kernel=[[5, 3], [7, 2]], stride=[[1, 1], [2, 1]])
    assert Architecture.from_json(arch.to_json()) == arch
    assert json.loads(arch.to_json()) == {"layers": 2, "kernel": [[5, 3], [7, 2]], "stride": [[1, 1], [2, 1]]}
    with pytest.raises(ArchitectureError):
        Architecture.from_json('{"layers": 3, "kernel": [[5]], "stride": [[1]]}')


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(input_shape=(10,), output_shape=(20,)), "output"),
    (dict(input_shape=(10,), output_shape=(2, 2)), "output"),
    (dict(input_shape=(10,), output_shape=(2,), min_layers=3, max_layers=2), "layers"),
    (dict(input_shape=(10,), output_shape=(2,), relation="lt"), "relation"),
    (dict(input_shape=(10,), output_shape=(2,), rounding="ceil"), "rounding"),
])
def test_bad_spaces_are_refused_in_one_line_naming_the_field(kwargs, fragment):
    with pytest.raises(SpaceError, match=fragment) as caught:
        SearchSpace(**kwargs)
    assert "\n" not in str(caught.value)


def test_parse_json_bounds_digits_and_depth():
    with pytest.raises(NasgenError, match="digits"):
        parse_json("1" * 5000)
    with pytest.raises(NasgenError, match="nested too deeply"):
        parse_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(NasgenError, match="NaN is not a JSON number"):
        parse_json('{"a": NaN}')
    with pytest.raises(NasgenError, match="not valid JSON"):
        parse_json('{"a": ')
