"""ONNX export of the networks nasgen builds: :class:`~nasgen.nn.models.ConvChain` and :class:`~nasgen.nn.models.ResNet18`.

The route: the ONNX graph is written directly with the ``onnx`` package from
the model's parameters, one standard operator per layer (Transpose, Conv,
BatchNormalization, an activation, MaxPool/AveragePool, Add,
GlobalAveragePool, Flatten, Gemm), rather than traced through ``jax2onnx``.
nasgen has few layer types, so the graph is short and each node says what
the layer is mathematically, while tracing records how JAX computes it:
``jax2onnx`` turns nasgen's ``max_pool`` (a ``reduce_window`` with a custom
gradient) into a MaxPool whose kernel covers the batch and channel axes,
which onnxruntime refuses; its ResNet-18 does not load (a layout mismatch on
the residual add); a small convolution that nasgen computes on a CPU as two
dots would become two MatMuls with a gather matrix; and installing it
downgrades orbax. Writing the graph needs only ``onnx`` (and
``onnxruntime`` to run it), neither of which changes nasgen's other
dependencies.

The exported graph takes the same input as the Flax model, channels-last
``(batch, *spatial, channels)``, and transposes it once to ONNX's
channels-first layout; the flattened feature map of a chain's head is in
channels-last order in Flax, so the head's kernel rows are permuted to the
channels-first order instead of transposing the activations back. The graph
is the inference network: BatchNorm uses its running averages, whatever mode
the model is in. Opset 17 (IR version 8), which onnxruntime 1.12 and later
and ``onnx2torch`` load.

>>> import tempfile, pathlib
>>> import numpy as np
>>> import onnxruntime
>>> from flax import nnx
>>> from nasgen.nn.models import ConvChain, ModelSpec
>>> from nasgen.space.definition import Architecture, SearchSpace
>>> space = SearchSpace((12,), (4,), min_layers=2, max_layers=2)
>>> arch = Architecture(kernel=((3,), (4,)), stride=((1,), (2,)))
>>> model = ConvChain(ModelSpec.from_options("chain", width=4), space, arch, rngs=nnx.Rngs(0))
>>> model.eval()
>>> path = pathlib.Path(tempfile.mkdtemp()) / "chain.onnx"
>>> to_onnx(model, path, (2, 12, 1))
>>> x = np.random.default_rng(0).normal(size=(2, 12, 1)).astype(np.float32)
>>> session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
>>> (y,) = session.run(None, {"input": x})
>>> bool(np.abs(y - np.asarray(model(x))).max() < 1e-4)
True
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nasgen.common.atomic import write_atomic
from nasgen.common.errors import ExportError

__all__ = ["OPSET", "IR_VERSION", "INPUT_NAME", "OUTPUT_NAME", "to_onnx", "onnx_model"]

OPSET = 17
"""The ONNX operator set the graph declares (every operator it uses is unchanged since opset 15)."""

IR_VERSION = 8
"""The ONNX IR version written: opset 17's, so runtimes older than the ``onnx`` package that wrote it load it."""

INPUT_NAME = "input"
"""Name of the graph's one input, ``(batch, *spatial, channels)`` float32."""

OUTPUT_NAME = "output"
"""Name of the graph's one output: logits ``(batch, classes)``, or a chain's ``(batch, *O, width)`` features."""

BATCH_DIMENSION = "batch"
"""The symbolic name of the batch dimension when it is dynamic."""

# jax.nn's defaults for the chain's activations: leaky_relu's negative slope and elu's alpha.
_LEAKY_RELU_SLOPE = 0.01
_ELU_ALPHA = 1.0


class _Graph:
    """Nodes and initialisers of one ONNX graph, with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counts: dict[str, int] = {}

    def name(self, stem: str) -> str:
        count = self._counts.get(stem, 0)
        self._counts[stem] = count + 1
        return f"{stem}_{count}"

    def constant(self, stem: str, value: Any) -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: Sequence[str], **attributes: Any) -> str:
        output = self.name(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [output], name=output, **attributes))
        return output


def _array(variable: Any) -> np.ndarray:
    return np.asarray(variable.get_value(), dtype=np.float32)


def _per_axis(value: int | Sequence[int] | None, axes: int, what: str) -> list[int]:
    if value is None:
        return [1] * axes
    if isinstance(value, int):
        return [value] * axes
    values = [int(v) for v in value]
    if len(values) != axes:
        raise ExportError(f"a convolution's {what} has {len(values)} entries for {axes} spatial axes")
    return values


def _pads(padding: Any, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
          dilations: Sequence[int]) -> list[int]:
    """ONNX ``pads`` (every axis's start, then every axis's end) for a flax padding on ``spatial`` input."""
    if isinstance(padding, str):
        if padding == "VALID":
            pairs = [(0, 0)] * len(spatial)
        elif padding == "SAME":
            # lax.padtype_to_pads: output ceil(n / s), the extra padding split with the odd one at the end.
            pairs = []
            for n, k, s, d in zip(spatial, kernel, strides, dilations):
                total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
                pairs.append((total // 2, total - total // 2))
        else:
            raise ExportError(f"padding {padding!r} has no ONNX export; VALID, SAME or explicit pairs do")
    elif isinstance(padding, int):
        pairs = [(padding, padding)] * len(spatial)
    else:
        pairs = [(int(lo), int(hi)) for lo, hi in padding]
    return [lo for lo, _ in pairs] + [hi for _, hi in pairs]


def _window_output(spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                   dilations: Sequence[int], pads: Sequence[int]) -> tuple[int, ...]:
    axes = len(spatial)
    return tuple(
        (n + pads[i] + pads[axes + i] - (k - 1) * d - 1) // s + 1
        for i, (n, k, s, d) in enumerate(zip(spatial, kernel, strides, dilations))
    )


def _conv(graph: _Graph, x: str, spatial: tuple[int, ...], conv: Any) -> tuple[str, tuple[int, ...]]:
    """A flax ``nnx.Conv`` as an ONNX Conv on channels-first data; returns the output and its spatial shape."""
    axes = len(spatial)
    if _per_axis(conv.input_dilation, axes, "input dilation") != [1] * axes:
        raise ExportError("a convolution with input dilation has no ONNX Conv export (use ConvTranspose)")
    kernel = _array(conv.kernel)  # (*window, in / groups, out)
    window = list(kernel.shape[:axes])
    strides = _per_axis(conv.strides, axes, "strides")
    dilations = _per_axis(conv.kernel_dilation, axes, "kernel dilation")
    pads = _pads(conv.padding, spatial, window, strides, dilations)
    weight = np.transpose(kernel, (axes + 1, axes, *range(axes)))  # ONNX: (out, in / groups, *window)
    inputs = [x, graph.constant("conv_weight", weight)]
    if conv.bias is not None:
        inputs.append(graph.constant("conv_bias", _array(conv.bias)))
    y = graph.node("Conv", inputs, kernel_shape=window, strides=strides, dilations=dilations, pads=pads,
                   group=int(conv.feature_group_count))
    return y, _window_output(spatial, window, strides, dilations, pads)


def _batch_norm(graph: _Graph, x: str, norm: Any) -> str:
    """A flax ``nnx.BatchNorm`` on the channel axis, with its running averages (inference)."""
    features = int(norm.num_features)
    scale = _array(norm.scale) if norm.scale is not None else np.ones(features, np.float32)
    bias = _array(norm.bias) if norm.bias is not None else np.zeros(features, np.float32)
    inputs = [graph.constant("bn_scale", scale), graph.constant("bn_bias", bias),
              graph.constant("bn_mean", _array(norm.mean)), graph.constant("bn_var", _array(norm.var))]
    return graph.node("BatchNormalization", [x, *inputs], epsilon=float(norm.epsilon))


def _activation(graph: _Graph, x: str, name: str) -> str:
    """One of :data:`nasgen.nn.spec.ACTIVATIONS`, as jax.nn computes it with its defaults."""
    if name == "relu":
        return graph.node("Relu", [x])
    if name == "tanh":
        return graph.node("Tanh", [x])
    if name == "sigmoid":
        return graph.node("Sigmoid", [x])
    if name == "elu":
        return graph.node("Elu", [x], alpha=_ELU_ALPHA)
    if name == "leaky_relu":
        return graph.node("LeakyRelu", [x], alpha=_LEAKY_RELU_SLOPE)
    if name == "silu":
        return graph.node("Mul", [x, graph.node("Sigmoid", [x])])
    if name == "gelu":
        # jax.nn.gelu's default is the tanh approximation, which ONNX's Gelu has only from opset 20:
        # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), written out.
        cube = graph.node("Mul", [x, graph.node("Mul", [x, x])])
        inner = graph.node("Add", [x, graph.node("Mul", [cube, graph.constant("gelu_c", 0.044715)])])
        tanh = graph.node("Tanh", [graph.node("Mul", [inner, graph.constant("gelu_a", math.sqrt(2 / math.pi))])])
        half = graph.node("Mul", [x, graph.constant("gelu_half", 0.5)])
        return graph.node("Mul", [half, graph.node("Add", [tanh, graph.constant("gelu_one", 1.0)])])
    raise ExportError(f"activation {name!r} has no ONNX export")


def _dense(graph: _Graph, x: str, linear: Any, row_order: np.ndarray | None = None) -> str:
    """A flax ``nnx.Linear`` on ``(batch, features)`` as Gemm; ``row_order`` permutes the kernel's input rows."""
    kernel = _array(linear.kernel)  # (in, out), y = x @ kernel + bias
    if row_order is not None:
        kernel = kernel[row_order]
    inputs = [x, graph.constant("dense_kernel", kernel)]
    if linear.bias is not None:
        inputs.append(graph.constant("dense_bias", _array(linear.bias)))
    return graph.node("Gemm", inputs)


def _chain_graph(graph: _Graph, model: Any, x: str) -> tuple[str, tuple[int, ...] | None]:
    """The nodes of a :class:`~nasgen.nn.models.ConvChain`; returns the output and, for features, its shape."""
    spec, space = model.spec, model.space
    spatial = tuple(space.input_shape)
    pool = space.pool
    for index, conv in enumerate(model.convs):
        x, spatial = _conv(graph, x, spatial, conv)
        if len(model.norms):
            x = _batch_norm(graph, x, model.norms[index])
        x = _activation(graph, x, spec.activation)
        if pool is not None:
            window = [k for k, _ in pool]
            strides = [s for _, s in pool]
            op = "MaxPool" if spec.pooling == "max" else "AveragePool"
            x = graph.node(op, [x], kernel_shape=window, strides=strides, pads=[0] * (2 * len(window)))
            spatial = _window_output(spatial, window, strides, [1] * len(window), [0] * (2 * len(window)))
    axes = len(spatial)
    if model.head is None:
        # back to flax's channels-last feature map
        return graph.node("Transpose", [x], perm=[0, *range(2, axes + 2), 1]), (*spatial, spec.width)
    # Flax flattens (*O, width) channels-last; ONNX's Flatten of (width, *O) is channels-first: row r of
    # the channels-first order is row order[r] of flax's.
    order = np.arange(math.prod(spatial) * spec.width).reshape(*spatial, spec.width)
    order = np.transpose(order, (axes, *range(axes))).reshape(-1)
    return _dense(graph, graph.node("Flatten", [x], axis=1), model.head, order), None


def _resnet_graph(graph: _Graph, model: Any, x: str) -> str:
    """The nodes of a :class:`~nasgen.nn.models.ResNet18`."""
    from nasgen.nn.models import BasicBlock, DownsamplingBlock
    from nasgen.nn.spec import RESNET_STEM

    spatial = tuple(model.spec.input_shape)
    x, spatial = _conv(graph, x, spatial, model.stem_conv)
    x = graph.node("Relu", [_batch_norm(graph, x, model.stem_bn)])
    window, stride, pad = RESNET_STEM["pool"]
    x = graph.node("MaxPool", [x], kernel_shape=[window] * 2, strides=[stride] * 2, pads=[pad] * 4)
    spatial = _window_output(spatial, [window] * 2, [stride] * 2, [1, 1], [pad] * 4)
    for block in model.blocks:
        y, block_spatial = _conv(graph, x, spatial, block.conv1)
        y = graph.node("Relu", [_batch_norm(graph, y, block.bn1)])
        y, block_spatial = _conv(graph, y, block_spatial, block.conv2)
        y = _batch_norm(graph, y, block.bn2)
        if isinstance(block, DownsamplingBlock):
            shortcut, _ = _conv(graph, x, spatial, block.shortcut_conv)
            shortcut = _batch_norm(graph, shortcut, block.shortcut_bn)
        else:
            assert isinstance(block, BasicBlock), type(block)
            shortcut = x
        x = graph.node("Relu", [graph.node("Add", [shortcut, y])])
        spatial = block_spatial
    pooled = graph.node("Flatten", [graph.node("GlobalAveragePool", [x])], axis=1)
    return _dense(graph, pooled, model.head)


def _expected_input(model: Any) -> tuple[int, ...]:
    """``(*spatial, channels)`` of one example of ``model``."""
    from nasgen.nn.models import ConvChain, ResNet18

    if isinstance(model, ConvChain):
        return model.spec.image_shape(model.space)
    if isinstance(model, ResNet18):
        return model.spec.image_shape()
    raise ExportError(f"only nasgen's ConvChain and ResNet18 export to ONNX, got {type(model).__name__}")


def _check_input_shape(model: Any, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    example = _expected_input(model)
    if input_shape is None:
        return (1, *example)
    try:
        shape = tuple(int(n) for n in input_shape)
    except (TypeError, ValueError):
        raise ExportError(f"input_shape must be a sequence of integers, got {input_shape!r}") from None
    if len(shape) != len(example) + 1 or shape[1:] != example or shape[0] < 1:
        expected = ", ".join(map(str, example))
        raise ExportError(f"{type(model).__name__} takes input of shape (batch, {expected}) with batch >= 1, "
                          f"got {shape}")
    return shape


def onnx_model(model: Any, input_shape: Sequence[int] | None = None, *, dynamic_batch: bool = False) -> onnx.ModelProto:
    """The ONNX model of a nasgen network, checked by ``onnx.checker`` (nothing is written).

    Args:
        model: a :class:`~nasgen.nn.models.ConvChain` or
            :class:`~nasgen.nn.models.ResNet18` (any mode: the graph is the
            inference network, BatchNorm with its running averages).
        input_shape: ``(batch, *spatial, channels)``, channels-last like the
            Flax model; None is a batch of 1 of the model's input.
        dynamic_batch: name the batch dimension ``"batch"`` so any batch
            size runs; otherwise the graph takes exactly ``input_shape``.

    Returns:
        The ``onnx.ModelProto``: input :data:`INPUT_NAME`, output
        :data:`OUTPUT_NAME`.

    Raises:
        ExportError: a model that is not one of nasgen's networks, or an
            input shape it does not take.

    >>> from flax import nnx
    >>> from nasgen.nn.models import ModelSpec, build_model
    >>> spec = ModelSpec.from_options("resnet18", width_multiplier=1 / 16)
    >>> proto = onnx_model(build_model(spec, None, None, rngs=nnx.Rngs(0)), dynamic_batch=True)
    >>> proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    'batch'
    """
    from nasgen.nn.models import ConvChain

    shape = _check_input_shape(model, input_shape)
    axes = len(shape) - 2
    graph = _Graph()
    x = graph.node("Transpose", [INPUT_NAME], perm=[0, axes + 1, *range(1, axes + 1)])
    if isinstance(model, ConvChain):
        y, features_shape = _chain_graph(graph, model, x)
    else:
        y, features_shape = _resnet_graph(graph, model, x), None
    # The last node's output becomes the graph's named output.
    graph.nodes[-1].output[0] = OUTPUT_NAME
    assert graph.nodes[-1].name == y
    batch: int | str = BATCH_DIMENSION if dynamic_batch else shape[0]
    output_shape = [batch, *features_shape] if features_shape is not None else [batch, model.spec.num_classes]
    proto_graph = helper.make_graph(
        graph.nodes,
        f"nasgen_{type(model).__name__}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch, *shape[1:]])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, output_shape)],
        initializer=graph.initializers,
    )
    from nasgen.common.version import __version__

    proto = helper.make_model(proto_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nasgen", producer_version=__version__)
    proto.ir_version = IR_VERSION
    proto.doc_string = f"{model.spec.describe()}; input (batch, {', '.join(map(str, shape[1:]))}) channels-last"
    onnx.checker.check_model(proto)
    return proto


def to_onnx(model: Any, path: str | os.PathLike, input_shape: Sequence[int] | None = None, *,
            dynamic_batch: bool = False) -> None:
    """Write a nasgen network as an ONNX file (see :func:`onnx_model` for the graph).

    The file is written whole or not at all (:func:`nasgen.common.atomic.write_atomic`).

    Args:
        model: a :class:`~nasgen.nn.models.ConvChain` or :class:`~nasgen.nn.models.ResNet18`.
        path: the ``.onnx`` file to write.
        input_shape: ``(batch, *spatial, channels)``; None is a batch of 1.
        dynamic_batch: any batch size runs (the batch dimension is named ``"batch"``).

    Raises:
        ExportError: as :func:`onnx_model`.
        NasgenError: the file cannot be written (it is left as it was).

    >>> import tempfile, pathlib
    >>> from flax import nnx
    >>> from nasgen.nn.models import ModelSpec, build_model
    >>> model = build_model(ModelSpec.from_options("resnet18", width_multiplier=1 / 16), None, None,
    ...                     rngs=nnx.Rngs(0))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "resnet.onnx"
    >>> to_onnx(model, path, (4, 28, 28, 1))
    >>> [n.op_type for n in onnx.load(path).graph.node][:4]
    ['Transpose', 'Conv', 'BatchNormalization', 'Relu']
    """
    proto = onnx_model(model, input_shape, dynamic_batch=dynamic_batch)
    write_atomic(path, proto.SerializeToString())
