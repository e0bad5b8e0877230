"""Export of trained networks to ONNX, to run them without portanet (onnxruntime, ...).

``export_onnx(net, "model.onnx")`` writes a graph with one input, ``"input"`` of shape
``(batch, *per-sample shape)`` in the network's dtype (int64 token ids for a network that
starts with an :class:`~portanet.Embedding`), and one output, ``"output"``. Each layer type
has a function in :data:`EXPORTS` that appends its nodes. It takes
the raw inputs :meth:`Network.predict` takes (a fitted ``net.scaler`` is the graph's first
nodes) in the plain layout (rows, or NCHW images; not the tutorial's ``(N, 1, n)``), and gives
what ``predict`` gives: logits for a network trained with ``softmax_crossentropy``, unless
``probabilities=True`` appends a softmax. Needs ``pip install "portanet[onnx]"``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .._checks import integer, one_of, sample_shape
from .._version import __version__
from ..activations import ACTIVATIONS, LEAKY_SLOPE
from ..backend import to_numpy
from ..backend.constants import GELU_C, GELU_K
from ..errors import InputError
from ..layers import (
    ActivationLayer,
    AvgPool1D,
    AvgPool2D,
    BatchNorm,
    Bidirectional,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    FCLayer,
    Flatten,
    LayerNorm,
    MaxPool1D,
    MaxPool2D,
    PositionalEmbedding,
    RandomCrop,
    RandomErasing,
    RandomFlip,
    Reshape,
    Residual,
    SelfAttention,
    Sequential,
    TiedDense,
)
from ..layers.base import walk
from ..losses import softmax_crossentropy, sparse_softmax_crossentropy
from .files import writable_file, write_atomically
from .onnx_graph import Graph, onnx_module
from .onnx_recurrent import GATE_ORDER, add_bidirectional, add_recurrent

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Softmax over one axis (older opsets flatten the trailing axes)
LAYER_NORM_OPSET = 17  # LayerNormalization


# -- activations: name -> function(graph, name) appending its nodes ---------------------------
def _plain(op, **attributes):
    return lambda graph, name: graph.node(op, name, **attributes)


def _gelu(graph, name):
    """portanet's GELU, the tanh approximation: ``0.5 x (1 + tanh(C (x + K x^3)))``."""
    x = graph.value
    graph.node("Mul", f"{name}.square", x)
    graph.node("Mul", f"{name}.cube", x)
    graph.node("Mul", f"{name}.k", graph.constant(f"{name}.K", GELU_K))
    graph.node("Add", f"{name}.inner", x)
    graph.node("Mul", f"{name}.c", graph.constant(f"{name}.C", GELU_C))
    graph.node("Tanh", f"{name}.tanh")
    graph.node("Add", f"{name}.one", graph.constant(f"{name}.1", 1.0))
    graph.node("Mul", f"{name}.half", graph.constant(f"{name}.0.5", 0.5))
    graph.node("Mul", name, x)


def _silu(graph, name):
    """``x * sigmoid(x)``."""
    x = graph.value
    graph.node("Sigmoid", f"{name}.sigmoid")
    graph.node("Mul", name, x)


ONNX_ACTIVATIONS = {"identity": _plain("Identity"), "tanh": _plain("Tanh"),
                    "sigmoid": _plain("Sigmoid"), "relu": _plain("Relu"),
                    "leaky_relu": _plain("LeakyRelu", alpha=LEAKY_SLOPE),
                    "softmax": _plain("Softmax", axis=-1), "gelu": _gelu, "silu": _silu}


def _activation_name(layer):
    function = layer.activation
    return next((name for name, pair in ACTIVATIONS.items()
                 if name in ONNX_ACTIVATIONS and pair[0] is function), None)


# -- layers: type -> function(graph, layer, key, shape) appending its nodes --------------------
# ``key`` is the layer's place ("3", "2.0.1" inside containers), ``shape`` its per-sample input
# shape; a function returns False where it cannot export this layer (its settings).
def _name(key, layer):
    return f"layer{key}.{type(layer).__name__}"


def _gemm(graph, layer, key, shape):  # the tutorial's FCLayer, on rows
    name = _name(key, layer)
    graph.node("Gemm", name, graph.parameter(layer, "weights", name),
               graph.parameter(layer, "bias", name))


def _dense(graph, layer, key, shape):  # over the last axis, inputs of any rank
    _affine(graph, layer, _name(key, layer))


def _affine(graph, layer, name, part=""):
    """``x @ weights + bias`` over the last axis, of ``layer``'s parameters ``part + "weights"``
    and ``part + "bias"``."""
    graph.node("MatMul", f"{name}.matmul", graph.parameter(layer, f"{part}weights", name))
    graph.node("Add", name, graph.parameter(layer, f"{part}bias", name))


def _activation(graph, layer, key, shape):
    name = _activation_name(layer)
    if name is None:
        return False
    ONNX_ACTIVATIONS[name](graph, _name(key, layer))


def _conv(graph, layer, key, shape):  # 1-D and 2-D
    name = _name(key, layer)
    pads = [pad for _, pad in layer.geometry(shape)]  # ONNX: all befores, then all afters
    graph.node("Conv", name, graph.parameter(layer, "weights", name),
               graph.parameter(layer, "bias", name),
               kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
               dilations=list(layer.dilation), pads=[pad for pair in zip(*pads) for pad in pair])


def _pool(graph, layer, key, shape):  # no padding, partial windows dropped (floor)
    op = "MaxPool" if type(layer) in (MaxPool1D, MaxPool2D) else "AveragePool"
    graph.node(op, _name(key, layer), kernel_shape=list(layer.pool_size),
               strides=list(layer.stride))


def _flatten(graph, layer, key, shape):
    graph.node("Flatten", _name(key, layer), axis=1)


def _reshape(graph, layer, key, shape):
    name = _name(key, layer)
    graph.node("Reshape", name, graph.integers(f"{name}.shape", [-1, *layer.output_shape(shape)]))


def _batch_norm(graph, layer, key, shape):  # inference: the running statistics, on axis 1
    name = _name(key, layer)
    graph.node("BatchNormalization", name,
               *(graph.parameter(layer, part, name)
                 for part in ("gamma", "beta", "running_mean", "running_var")),
               epsilon=float(layer.epsilon))


def _layer_norm(graph, layer, key, shape):
    name = _name(key, layer)
    if graph.opset < LAYER_NORM_OPSET:
        raise InputError(f"layer {key} ({layer!r}) exports as LayerNormalization, which needs "
                         f"opset {LAYER_NORM_OPSET} or later: export with opset="
                         f"{LAYER_NORM_OPSET} (the default)")
    graph.node("LayerNormalization", name, graph.parameter(layer, "gamma", name),
               graph.parameter(layer, "beta", name), axis=-1, epsilon=float(layer.epsilon))


def _inference_identity(graph, layer, key, shape):  # dropout and augmentation: no nodes
    pass


def _embedding(graph, layer, key, shape):  # integer ids in, rows of the matrix out
    name = _name(key, layer)
    graph.value = graph.op("Gather", name, [graph.parameter(layer, "weights", name), graph.value],
                           axis=0)


def _positions(graph, layer, key, shape):  # the rows of the sequence length, a constant
    name = _name(key, layer)
    graph.node("Add", name, graph.array(f"{name}.weights", to_numpy(layer.weights)[:shape[0]]))


def _attention(graph, layer, key, shape):
    """The fused projection, heads split by Slice and Reshape, ``softmax(q k^T / sqrt(d))``
    with the causal mask a constant (0 on and below the diagonal, -inf above), heads merged,
    the output projection."""
    name, (positions, dim), heads = _name(key, layer), shape, layer.heads
    _affine(graph, layer, f"{name}.qkv", "qkv_")
    qkv, split = graph.value, graph.integers(f"{name}.heads", [0, positions, heads, dim // heads])
    parts = []
    for index, part in enumerate("qkv"):
        graph.value = qkv
        graph.node("Slice", f"{name}.{part}", graph.integers(f"{name}.{part}.start",
                                                             [index * dim]),
                   graph.integers(f"{name}.{part}.stop", [(index + 1) * dim]),
                   graph.integers(f"{name}.{part}.axis", [-1]))
        graph.node("Reshape", f"{name}.{part}.split", split)
        # (N, heads, T, d), keys as (N, heads, d, T)
        graph.node("Transpose", f"{name}.{part}.heads", perm=[0, 2, 3, 1] if part == "k"
                   else [0, 2, 1, 3])
        parts.append(graph.value)
    graph.value = parts[0]
    graph.node("MatMul", f"{name}.scores", parts[1])
    graph.node("Mul", f"{name}.scaled", graph.constant(f"{name}.scale",
                                                       (dim // heads) ** -0.5))
    if layer.causal:
        mask = [0.0 if column <= row else float("-inf") for row in range(positions)
                for column in range(positions)]
        graph.node("Add", f"{name}.masked", graph.constant(f"{name}.mask", mask,
                                                           dims=[positions, positions]))
    graph.node("Softmax", f"{name}.softmax", axis=-1)
    graph.node("MatMul", f"{name}.context", parts[2])
    graph.node("Transpose", f"{name}.merge", perm=[0, 2, 1, 3])
    graph.node("Reshape", f"{name}.merged", graph.integers(f"{name}.shape",
                                                           [0, positions, dim]))
    _affine(graph, layer, name, "out_")


def _tied(graph, layer, key, shape):  # the embedding's matrix (exported before it), transposed
    name = _name(key, layer)
    matrix = graph.parameter(layer.embedding, "weights", name)
    graph.node("MatMul", f"{name}.matmul",
               graph.op("Transpose", f"{name}.transposed", [matrix], perm=[1, 0]))
    if layer.has_bias:
        graph.node("Add", name, graph.parameter(layer, "bias", name))


def _recurrent(graph, layer, key, shape):  # LSTM, GRU, Bidirectional: one ONNX node each
    add = add_bidirectional if isinstance(layer, Bidirectional) else add_recurrent
    return add(graph, layer, _name(key, layer))


def _sequential(graph, layer, key, shape):
    _add_layers(graph, layer.sublayers, shape, f"{key}.")


def _residual(graph, layer, key, shape):
    start = graph.value
    _add_layers(graph, layer.sublayers, shape, f"{key}.")
    graph.value = graph.op("Add", _name(key, layer), [start, graph.value])


EXPORTS = {FCLayer: _gemm, Dense: _dense, ActivationLayer: _activation, Conv1D: _conv,
           Conv2D: _conv, MaxPool1D: _pool, AvgPool1D: _pool, MaxPool2D: _pool, AvgPool2D: _pool,
           Flatten: _flatten, Reshape: _reshape,
           BatchNorm: _batch_norm, LayerNorm: _layer_norm, Dropout: _inference_identity,
           RandomFlip: _inference_identity, RandomCrop: _inference_identity,
           RandomErasing: _inference_identity, Embedding: _embedding,
           PositionalEmbedding: _positions, SelfAttention: _attention, TiedDense: _tied,
           Sequential: _sequential, Residual: _residual,
           **dict.fromkeys((*GATE_ORDER, Bidirectional), _recurrent)}
# Built-in layers that cannot be exported, by class name, with the reason (none now: a layer
# added to portanet.layers.LAYERS must be in EXPORTS or here; tests check it).
NOT_EXPORTABLE: dict[str, str] = {}
SUPPORTED = (", ".join(kind.__name__ for kind in EXPORTS) + "; activations "
             + ", ".join(ONNX_ACTIVATIONS))


def _add_layers(graph, layers, shape, prefix=""):
    """Append the nodes of ``layers`` (keys ``prefix`` + index) from per-sample ``shape``;
    returns the output shape. InputError naming a layer that cannot be exported."""
    for index, layer in enumerate(layers):
        key = f"{prefix}{index}"
        export = EXPORTS.get(type(layer))
        if export is None or export(graph, layer, key, shape) is False:
            why = NOT_EXPORTABLE.get(type(layer).__name__)
            raise InputError(f"layer {key} ({layer!r}) cannot be exported to ONNX"
                             + (f" ({why})" if why else "")
                             + f": the layers that can are {SUPPORTED}")
        shape = layer.output_shape(shape)
    return shape


def _takes_ids(network):
    """True when the network's first computing layer takes integer ids (an Embedding)."""
    first = next((layer for layer in walk(network.layers)
                  if not getattr(layer, "sublayers", ())), None)
    return getattr(first, "takes_ids", False)


def _input_shape(network, input_shape, takes_ids):
    if input_shape is not None:
        return sample_shape("input_shape", input_shape)
    shape = getattr(network.layers[0], "input_shape", None)
    if shape is None:
        what, python, command = (("the sequence length", "(64,)", "64") if takes_ids
                                 else ("it", "(1, 28, 28)", "1,28,28"))
        raise InputError(f"the first layer {network.layers[0]!r} does not fix the input's "
                         f"per-sample shape: give {what}, e.g. input_shape={python} (on the "
                         f"command line: --input-shape {command})")
    return tuple(shape)


def build_onnx(network, opset=None, input_shape=None, probabilities=False, dtype=None):
    """The ONNX model (an ``onnx.ModelProto``) of ``network``; see :func:`export_onnx`."""
    onnx = onnx_module()
    opset = DEFAULT_OPSET if opset is None else opset
    integer("opset", opset, low=MIN_OPSET)
    if not network.layers:
        raise InputError("the network has no layers: add some with net.add(...)")
    one_of("dtype", dtype, (None, "float32", "float64"))
    graph = Graph(onnx, dtype or network.working_dtype(), opset)
    takes_ids = _takes_ids(network)
    in_shape = _input_shape(network, input_shape, takes_ids)
    if network.scaler is not None:
        shift, divisor = network.scaler.shift_and_divisor()
        graph.node("Sub", "scaler.sub", graph.constant("scaler.shift", shift))
        graph.node("Div", "scaler.div", graph.constant("scaler.divisor", divisor))
    shape = _add_layers(graph, network.layers, in_shape)
    if probabilities:
        last = network.layers[-1]
        if network.loss in (softmax_crossentropy, sparse_softmax_crossentropy):
            graph.node("Softmax", "probabilities", axis=-1)
        elif not (isinstance(last, ActivationLayer) and _activation_name(last) == "softmax"):
            raise InputError("probabilities=True needs a network trained with "
                             "(sparse_)softmax_crossentropy or ending in a softmax; this one's "
                             "outputs are exported as they are with probabilities=False")
    if graph.nodes and graph.nodes[-1].output[0] == graph.value:
        graph.nodes[-1].output[0] = "output"
    else:  # the last layers add no nodes (dropout)
        graph.node("Identity", "output")

    def value_info(name, per_sample, elem_type=graph.elem_type):
        return onnx.helper.make_tensor_value_info(name, elem_type, ["batch", *per_sample])

    in_type = onnx.TensorProto.INT64 if takes_ids else graph.elem_type
    model = onnx.helper.make_model(
        onnx.helper.make_graph(graph.nodes, "portanet", [value_info("input", in_shape, in_type)],
                               [value_info("output", shape)], graph.weights),
        opset_imports=[onnx.helper.make_opsetid("", opset)], producer_name="portanet",
        producer_version=__version__, doc_string=repr(network))
    # the oldest IR version that holds this opset: runtimes a little older than onnx load it
    model.ir_version = onnx.helper.find_min_ir_version_for(list(model.opset_import))
    if network.metadata:
        onnx.helper.set_model_props(model, {"portanet.metadata": json.dumps(network.metadata)})
    onnx.checker.check_model(model, full_check=True)
    return model


def onnx_path(path) -> Path:
    """``path`` as a Path if an ONNX model can be written there (a writable place, .onnx)."""
    return writable_file(path, "the ONNX model", (".onnx",))


def export_onnx(network, path, opset=None, *, input_shape=None, probabilities=False,
                dtype=None) -> Path:
    """Write ``network`` to ``path`` as an ONNX model (atomically); return the path.

    ``opset`` is the ONNX operator set (default :data:`DEFAULT_OPSET`, at least 13);
    ``input_shape`` the per-sample input shape, needed where the first layer does not fix it
    (a Conv2D made without ``input_shape``; an Embedding: ``(sequence length,)``, which the
    model then takes, fixed). The model maps raw inputs ``"input"`` to what
    ``network.predict`` returns as ``"output"`` (with ``probabilities=True``: class
    probabilities, for networks trained on logits or ending in a softmax). ``dtype``
    ("float32" or "float64", default the network's) is the model's: onnxruntime's CPU
    convolutions and pooling take float32 only. InputError names a layer or activation that
    ONNX export does not cover; WriteError says why the disk refused the file.
    """
    path = onnx_path(path)
    data = build_onnx(network, opset, input_shape, probabilities, dtype).SerializeToString()
    return write_atomically(path, lambda stream: stream.write(data), "the ONNX model")


def describe_onnx(path) -> str:
    """One line per input and output of the ONNX model at ``path``: name, dtype and shape."""
    onnx = onnx_module()
    graph = onnx.load(str(path), load_external_data=False).graph
    lines = []
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for value in values:
            tensor = value.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
            lines.append(f"{kind} {value.name!r}: {dtype} ({', '.join(map(str, dims))})")
    return "\n".join(lines)
