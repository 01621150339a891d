"""The cost model: sizes after every layer, and the chain model's parameters and FLOPs, per architecture."""

from __future__ import annotations

import types

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nasgen.common.errors import NasgenError
from nasgen.constraints.costs import MODEL_OPTIONS, chain_costs, cost_bound, layer_sizes, resolve_model
from nasgen.nn.spec import ModelSpec
from nasgen.space.definition import SearchSpace
from nasgen.space.encoding import to_arrays
from nasgen.space.tables import SpaceTables

from tests.conftest import brute_force_space, small_spaces


def _brute(space: SearchSpace, limit: int = 4000):
    # The exact count only bounds the brute force's cost; the brute force is the oracle.
    assume(0 < SpaceTables(space).count <= limit)
    return sorted(brute_force_space(space), key=lambda a: (a.kernel, a.stride))


@given(small_spaces(max_size=12, max_dims=2))
@settings(max_examples=40)
def test_layer_sizes_equal_the_architectures_own_shapes(space):
    archs = _brute(space)[:60]
    sizes = layer_sizes(*to_arrays(space, archs), space)
    for arch, row in zip(archs, sizes.tolist()):
        shapes = arch.shapes(space)[1:]  # Architecture.shapes: the input, then the size after every active layer
        expected = [list(s) for s in shapes] + [list(space.output_shape)] * (space.max_layers - arch.layers)
        assert row == expected


@given(small_spaces(max_size=12, max_dims=2), st.integers(1, 12), st.integers(1, 4), st.integers(1, 10),
       st.sampled_from(["batch", None]), st.sampled_from(["logits", "features"]), st.sampled_from(["max", "avg"]))
@settings(max_examples=40)
def test_chain_costs_equal_model_stats(space, width, in_channels, classes, norm, head, pooling):
    from nasgen.nn.summary import model_stats

    archs = _brute(space)[:40]
    model = types.SimpleNamespace(width=width, in_channels=in_channels, num_classes=classes, norm=norm, head=head,
                                  pooling=pooling)
    spec = ModelSpec.from_options("chain", width=width, in_channels=in_channels, num_classes=classes, norm=norm,
                                  head=head, pooling=pooling)
    params, flops = chain_costs(*to_arrays(space, archs), space, spec)
    exact = chain_costs(*to_arrays(space, archs), space, model, exact_ints=True)
    assert params.tolist() == exact[0].tolist() and flops.tolist() == exact[1].tolist()
    for a, p, f in zip(archs, params.tolist(), flops.tolist()):
        total = model_stats(spec, space, a)[-1]
        assert (p, f) == (total["params"], total["flops"])



def test_a_dict_of_model_options_is_a_chain_model_spec_with_defaults():
    space = SearchSpace((30, 30), (20, 20), 1, 3, pool=(2, 1))
    arrays = to_arrays(space, sorted(brute_force_space(space), key=lambda a: (a.kernel, a.stride))[:200])
    given_options = {"width": 6, "norm": None, "pooling": "avg"}
    spec = ModelSpec.from_options("chain", **given_options)
    by_dict, by_spec = chain_costs(*arrays, space, given_options), chain_costs(*arrays, space, spec)
    assert by_dict[0].tolist() == by_spec[0].tolist() and by_dict[1].tolist() == by_spec[1].tolist()
    assert by_dict[0].tolist() != chain_costs(*arrays, space, {"width": 6})[0].tolist()  # the options do count
    assert cost_bound(space, given_options) == cost_bound(space, spec) >= max(by_dict[1].tolist())
    assert resolve_model(None) is None and resolve_model(spec) is spec
    assert {o: getattr(resolve_model({}), o) for o in MODEL_OPTIONS} == \
        {o: getattr(ModelSpec.from_options("chain"), o) for o in MODEL_OPTIONS}


@pytest.mark.parametrize("options, fragment", [({"widht": 4}, "unknown model option 'widht'"),
                                               ({"width": 0}, "width")])
def test_a_bad_dict_of_model_options_is_one_error(options, fragment):
    space = SearchSpace((30,), (20,), 2, 2)
    with pytest.raises(NasgenError, match=fragment):
        chain_costs([2], [[[7], [5]]], [[[1], [1]]], space, options)
