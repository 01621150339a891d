"""The sampling registry: one frozen config validated in one place, every method behind draw(), seeds recorded."""

from __future__ import annotations

import numpy as np
import pytest

import nasgen
from nasgen.common.errors import NasgenError
from nasgen.samplers import registry as sampling
from nasgen.space.definition import SearchSpace

from tests.conftest import brute_force_space


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
