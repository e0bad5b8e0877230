"""The ONNX graph being built by :func:`portanet.saving.onnx.export_onnx`: its nodes, weights
and latest output; each layer's export function appends to it."""

from __future__ import annotations

from ..backend import to_numpy
from ..errors import PortanetError


def onnx_module():
    """The onnx package, or a PortanetError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise PortanetError('ONNX export needs the onnx package: pip install "portanet[onnx]"'
                            ) from None
    return onnx


class Graph:
    """The nodes and weights of the graph being built; ``value`` names the latest output."""

    def __init__(self, onnx, dtype, opset):
        self.onnx, self.dtype, self.opset = onnx, dtype, opset
        self.elem_type = {"float32": onnx.TensorProto.FLOAT,
                          "float64": onnx.TensorProto.DOUBLE}[dtype]
        self.nodes, self.weights, self.value = [], [], "input"
        self.exported = {}  # (id(layer), parameter name) -> its weight's name

    def array(self, name, value):
        """A weight from a backend (or NumPy) array, in the graph's dtype; returns its name."""
        host = to_numpy(value).astype(self.dtype)
        self.weights.append(self.onnx.numpy_helper.from_array(host, name))
        return name

    def parameter(self, layer, name, prefix):
        """The weight of ``layer``'s parameter ``name``, added once (as ``prefix.name``) however
        often the layer (or a TiedDense) uses it."""
        key = (id(layer), name)
        if key not in self.exported:
            self.exported[key] = self.array(f"{prefix}.{name}", getattr(layer, name))
        return self.exported[key]

    def constant(self, name, values, elem_type=None, dims=None):
        """A weight of plain numbers (1-D, or ``dims``; a scalar when ``values`` is a number)."""
        scalar = not isinstance(values, (list, tuple))
        self.weights.append(self.onnx.helper.make_tensor(
            name, elem_type or self.elem_type, dims or ([] if scalar else [len(values)]),
            [values] if scalar else values))
        return name

    def integers(self, name, values):
        return self.constant(name, list(values), self.onnx.TensorProto.INT64)

    def op(self, op, name, inputs, **attributes):
        """Append ``op`` of ``inputs`` (names) giving ``name``; returns ``name``."""
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [name], name=name,
                                                     **attributes))
        return name

    def node(self, op, name, *inputs, **attributes):
        """Append ``op`` applied to the latest output (and ``inputs``); it becomes the latest."""
        self.value = self.op(op, name, [self.value, *inputs], **attributes)
