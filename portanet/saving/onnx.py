"""Export of trained networks to ONNX, to run them without portanet (onnxruntime, ...).

``export_onnx(net, "model.onnx")`` writes a graph with one input, ``"input"`` of shape
``(batch, *per-sample shape)`` in the network's dtype, and one output, ``"output"``. It takes
the raw inputs :meth:`Network.predict` takes (a fitted ``net.scaler`` is the graph's first
nodes) in the plain layout (rows, or NCHW images; not the tutorial's ``(N, 1, n)``), and gives
what ``predict`` gives: logits for a network trained with ``softmax_crossentropy``, unless
``probabilities=True`` appends a softmax. Needs ``pip install "portanet[onnx]"``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .._checks import integer, one_of
from .._version import __version__
from ..activations import ACTIVATIONS, LEAKY_SLOPE
from ..backend import to_numpy
from ..errors import InputError, PortanetError
from ..layers import (
    ActivationLayer,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dropout,
    FCLayer,
    Flatten,
    MaxPool2D,
    RandomCrop,
    RandomErasing,
    RandomFlip,
    Reshape,
)
from ..losses import softmax_crossentropy
from .files import writable_file, write_atomically
from .onnx_recurrent import GATE_ORDER, add_recurrent

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Softmax over one axis (older opsets flatten the trailing axes)

ONNX_ACTIVATIONS = {"identity": ("Identity", {}), "tanh": ("Tanh", {}),
                    "sigmoid": ("Sigmoid", {}), "relu": ("Relu", {}),
                    "leaky_relu": ("LeakyRelu", {"alpha": LEAKY_SLOPE}),
                    "softmax": ("Softmax", {"axis": -1})}
SUPPORTED = ("FCLayer, ActivationLayer (" + ", ".join(ONNX_ACTIVATIONS) + "), Conv2D, "
             "MaxPool2D, AvgPool2D, Flatten, Reshape, BatchNorm, Dropout, RandomFlip, RandomCrop, "
             "RandomErasing, LSTM, GRU")
# layers that pass their input through in inference: no nodes
IDENTITY_IN_INFERENCE = (Dropout, RandomFlip, RandomCrop, RandomErasing)


def _onnx():
    try:
        import onnx
    except ImportError:
        raise PortanetError('ONNX export needs the onnx package: pip install "portanet[onnx]"'
                            ) from None
    return onnx


class _Graph:
    """The nodes and weights of the graph being built; ``value`` names the latest output."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype = onnx, dtype
        self.elem_type = {"float32": onnx.TensorProto.FLOAT,
                          "float64": onnx.TensorProto.DOUBLE}[dtype]
        self.nodes, self.weights, self.value = [], [], "input"

    def array(self, name, value):
        """A weight from a backend (or NumPy) array, in the graph's dtype; returns its name."""
        host = to_numpy(value).astype(self.dtype)
        self.weights.append(self.onnx.numpy_helper.from_array(host, name))
        return name

    def constant(self, name, values, elem_type=None):
        """A weight of plain numbers (1-D; a scalar when ``values`` is a number)."""
        scalar = not isinstance(values, (list, tuple))
        self.weights.append(self.onnx.helper.make_tensor(
            name, elem_type or self.elem_type, [] if scalar else [len(values)],
            [values] if scalar else values))
        return name

    def node(self, op, name, *inputs, **attributes):
        """Append ``op`` applied to the latest output (and ``inputs``)."""
        self.nodes.append(self.onnx.helper.make_node(op, [self.value, *inputs], [name],
                                                     name=name, **attributes))
        self.value = name


def _activation_name(layer):
    function = layer.activation
    return next((name for name, pair in ACTIVATIONS.items()
                 if name in ONNX_ACTIVATIONS and pair[0] is function), None)


def _add_layer(graph, layer, prefix, shape):
    """Append the nodes of ``layer`` (per-sample input ``shape``); False if it has none."""
    kind = type(layer)
    if kind is FCLayer:
        graph.node("Gemm", prefix, graph.array(f"{prefix}.weights", layer.weights),
                   graph.array(f"{prefix}.bias", layer.bias))
    elif kind is ActivationLayer and _activation_name(layer) is not None:
        op, attributes = ONNX_ACTIVATIONS[_activation_name(layer)]
        graph.node(op, prefix, **attributes)
    elif kind is Conv2D:
        pads = [layer.geometry(size, kernel, stride, axis)[1] for size, kernel, stride, axis
                in zip(shape[1:], layer.kernel_size, layer.stride, ("height", "width"))]
        graph.node("Conv", prefix, graph.array(f"{prefix}.weights", layer.weights),
                   graph.array(f"{prefix}.bias", layer.bias),
                   kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                   pads=[pads[0][0], pads[1][0], pads[0][1], pads[1][1]])
    elif kind in (MaxPool2D, AvgPool2D):  # no padding, partial windows dropped (floor)
        graph.node("MaxPool" if kind is MaxPool2D else "AveragePool", prefix,
                   kernel_shape=list(layer.pool_size), strides=list(layer.stride))
    elif kind is Flatten:
        graph.node("Flatten", prefix, axis=1)
    elif kind is Reshape:
        target = [-1, *layer.output_shape(shape)]
        graph.node("Reshape", prefix, graph.constant(f"{prefix}.shape", target,
                                                     graph.onnx.TensorProto.INT64))
    elif kind is BatchNorm:  # inference: the running statistics, on axis 1 (features/channels)
        graph.node("BatchNormalization", prefix,
                   *(graph.array(f"{prefix}.{name}", getattr(layer, name))
                     for name in ("gamma", "beta", "running_mean", "running_var")),
                   epsilon=float(layer.epsilon))
    elif kind in GATE_ORDER:
        add_recurrent(graph, layer, prefix)
    elif kind not in IDENTITY_IN_INFERENCE:
        return False
    return True


def _input_shape(network, input_shape):
    shape = input_shape or getattr(network.layers[0], "input_shape", None)
    if shape is None:
        raise InputError(f"the first layer {network.layers[0]!r} does not fix the input's "
                         "shape: give it, e.g. export_onnx(net, path, input_shape=(1, 28, 28))")
    return tuple(shape)


def build_onnx(network, opset=None, input_shape=None, probabilities=False, dtype=None):
    """The ONNX model (an ``onnx.ModelProto``) of ``network``; see :func:`export_onnx`."""
    onnx = _onnx()
    opset = DEFAULT_OPSET if opset is None else opset
    integer("opset", opset, low=MIN_OPSET)
    if not network.layers:
        raise InputError("the network has no layers: add some with net.add(...)")
    one_of("dtype", dtype, (None, "float32", "float64"))
    graph = _Graph(onnx, dtype or network.working_dtype())
    shape = in_shape = _input_shape(network, input_shape)
    if network.scaler is not None:
        shift, divisor = network.scaler.shift_and_divisor()
        graph.node("Sub", "scaler.sub", graph.constant("scaler.shift", shift))
        graph.node("Div", "scaler.div", graph.constant("scaler.divisor", divisor))
    for index, layer in enumerate(network.layers):
        if not _add_layer(graph, layer, f"layer{index}.{type(layer).__name__}", shape):
            raise InputError(f"layer {index} ({layer!r}) cannot be exported to ONNX: the "
                             f"layers that can are {SUPPORTED}")
        shape = layer.output_shape(shape)
    if probabilities:
        last = network.layers[-1]
        if network.loss is softmax_crossentropy:
            graph.node("Softmax", "probabilities", axis=-1)
        elif not (isinstance(last, ActivationLayer) and _activation_name(last) == "softmax"):
            raise InputError("probabilities=True needs a network trained with "
                             "softmax_crossentropy or ending in a softmax; this one's outputs "
                             "are exported as they are with probabilities=False")
    if graph.nodes:
        graph.nodes[-1].output[0] = "output"
    else:
        graph.node("Identity", "output")

    def value_info(name, per_sample):
        return onnx.helper.make_tensor_value_info(name, graph.elem_type,
                                                  ["batch", *per_sample])

    model = onnx.helper.make_model(
        onnx.helper.make_graph(graph.nodes, "portanet", [value_info("input", in_shape)],
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
    ``input_shape`` the per-sample input shape, needed only where the first layer does not fix
    it (a Conv2D made without ``input_shape``). The model maps raw inputs ``"input"`` to what
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
    onnx = _onnx()
    graph = onnx.load(str(path), load_external_data=False).graph
    lines = []
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for value in values:
            tensor = value.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
            lines.append(f"{kind} {value.name!r}: {dtype} ({', '.join(map(str, dims))})")
    return "\n".join(lines)
