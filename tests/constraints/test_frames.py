"""nasgen.costs and nasgen.to_dataframe against independent per-architecture computations."""

import numpy as np
import pytest

import nasgen
from nasgen.common.errors import NasgenError
from nasgen.nn.spec import ModelSpec
from nasgen.nn.summary import model_stats
from nasgen.space.definition import Architecture

SPACES = [
    nasgen.SearchSpace((30, 28), (4, 3), 1, 3, pool=(2, 1)),
    nasgen.SearchSpace((40,), (5,), 2, 4, rounding="floor"),
    nasgen.SearchSpace((12, 10, 9), (3, 2, 2), 1, 2),
]


def _architectures(arrays):
    layers, kernel, stride = arrays
    return [Architecture(kernel[i, :L].tolist(), stride[i, :L].tolist()) for i, L in enumerate(layers.tolist())]


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.describe())
@pytest.mark.parametrize("options", [{}, {"width": 8, "num_classes": 3, "norm": None},
                                     {"head": "features", "pooling": "avg", "in_channels": 3}])
def test_costs_equal_the_analytic_model_table_of_every_architecture(space, options):
    arrays = nasgen.sample_arrays(space, 40, seed=1, replace=True)
    figures = nasgen.costs(space, arrays, model=options)
    spec = ModelSpec.from_options("chain", **options)
    for i, arch in enumerate(_architectures(arrays)):
        total = model_stats(spec, space, arch)[-1]
        assert (figures["params"][i], figures["flops"][i]) == (total["params"], total["flops"])


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.describe())
def test_the_frame_holds_each_architecture_its_sizes_and_its_costs(space):
    arrays = nasgen.sample_arrays(space, 50, seed=2, replace=True)
    frame = nasgen.to_dataframe(arrays, space, costs={"width": 4})
    figures = nasgen.costs(space, arrays, model={"width": 4})
    N, K = space.max_layers, space.dims
    assert len(frame) == 50 and list(frame.columns[:3]) == ["layers", "k0_0", "s0_0"]
    for i, arch in enumerate(_architectures(arrays)):
        row = frame.iloc[i]
        assert row["layers"] == arch.layers
        shapes = arch.shapes(space)[1:]  # after each layer, from the space's own trace
        for l in range(N):
            for d in range(K):
                active = l < arch.layers
                assert row[f"k{l}_{d}"] == (arch.kernel[l][d] if active else 0)
                assert row[f"s{l}_{d}"] == (arch.stride[l][d] if active else 0)
                assert row[f"size{l}_{d}"] == (shapes[l][d] if active else space.output_shape[d])
        assert (row["params"], row["flops"]) == (figures["params"][i], figures["flops"][i])


def test_a_frame_without_sizes_or_costs_has_only_the_architecture_columns():
    space = SPACES[1]
    frame = nasgen.to_dataframe(nasgen.sample_arrays(space, 5, seed=0), space, sizes=False)
    assert list(frame.columns) == ["layers"] + [f"{v}{l}_0" for l in range(4) for v in "ks"]


def test_arrays_of_a_narrower_sample_are_padded_to_the_space():
    space = SPACES[1]
    layers, kernel, stride = nasgen.sample_arrays(space, 30, seed=4)
    deepest = int(layers.max())
    narrow = (layers, kernel[:, :deepest], stride[:, :deepest])
    assert nasgen.to_dataframe(narrow, space).equals(nasgen.to_dataframe((layers, kernel, stride), space))


@pytest.mark.parametrize("arrays, model, message", [
    ((np.zeros(2), np.zeros((2, 3)), np.zeros((2, 3))), None, "arrays must be"),
    ((np.zeros(2), np.zeros((2, 3, 5)), np.zeros((2, 3, 5))), None, "do not fit the space"),
    (None, {"depth": 3}, "depth"),
    (None, "wide", "ModelSpec or a mapping"),
])
def test_bad_arrays_and_model_options_are_refused_in_one_line(arrays, model, message):
    space = SPACES[0]
    arrays = arrays if arrays is not None else nasgen.sample_arrays(space, 3, seed=0)
    with pytest.raises(NasgenError, match=message) as error:
        nasgen.costs(space, arrays, model=model)
    assert "\n" not in str(error.value)
