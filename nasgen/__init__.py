"""nasgen: neural-architecture search spaces from the arithmetic of convolution.

>>> import nasgen
>>> space = nasgen.SearchSpace((30,), (20,), min_layers=2, max_layers=2)
>>> nasgen.count(space)
9
"""

from nasgen.common.errors import ArchitectureError, NasgenError, SpaceError
from nasgen.space.definition import Architecture, SearchSpace, check_membership, conv_output_size
from nasgen.space.tables import (
    LayerDomain,
    SpaceTables,
    architecture_at,
    count_by_layers,
    enumerate_architectures,
    layer_domains,
    rank,
)
from nasgen.space.encoding import AdjTAccumulator, adj_t, encode, hamming_matrix
from nasgen.space.arrays_io import read_architectures, read_arrays, write_architectures, write_arrays
from nasgen.constraints.counting import count
from nasgen.common.version import __version__
from nasgen.constraints.frames import costs, to_dataframe
from nasgen.samplers.registry import SamplingConfig, draw, sample, sample_arrays


__all__ = [
    "AdjTAccumulator",
    "Architecture",
    "ArchitectureError",
    "LayerDomain",
    "NasgenError",
    "SamplingConfig",
    "SearchSpace",
    "SpaceError",
    "SpaceTables",
    "adj_t",
    "architecture_at",
    "check_membership",
    "conv_output_size",
    "count",
    "costs",
    "count_by_layers",
    "draw",
    "encode",
    "enumerate_architectures",
    "hamming_matrix",
    "layer_domains",
    "rank",
    "read_architectures",
    "read_arrays",
    "sample",
    "sample_arrays",
    "to_dataframe",
    "write_architectures",
    "write_arrays",
]
