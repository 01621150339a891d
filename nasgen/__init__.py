"""nasgen: neural-architecture search spaces from the arithmetic of convolution.

>>> import nasgen
>>> space = nasgen.SearchSpace((30,), (20,), min_layers=2, max_layers=2)
>>> nasgen.count(space)
9
"""

from nasgen.space import (
    Architecture,
    ArchitectureError,
    NasgenError,
    SearchSpace,
    SpaceError,
    check_membership,
    conv_output_size,
)
from nasgen.core import (
    LayerDomain,
    adj_t,
    count,
    count_by_layers,
    encode,
    enumerate_architectures,
    hamming_matrix,
    layer_domains,
    read_architectures,
    sample,
    sample_arrays,
    write_architectures,
)

__version__ = "0.1.0"

__all__ = [
    "Architecture",
    "ArchitectureError",
    "LayerDomain",
    "NasgenError",
    "SearchSpace",
    "SpaceError",
    "adj_t",
    "check_membership",
    "conv_output_size",
    "count",
    "count_by_layers",
    "encode",
    "enumerate_architectures",
    "hamming_matrix",
    "layer_domains",
    "read_architectures",
    "sample",
    "sample_arrays",
    "write_architectures",
]
