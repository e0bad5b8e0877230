"""ONNX export of :class:`~portanet.LSTM` and :class:`~portanet.GRU`: one ONNX ``LSTM`` or
``GRU`` node each (opset 13: time-major, so the sequences are transposed in and out).

ONNX stacks the gates in another order than PyTorch (and portanet): LSTM ``i, o, f, c`` for
``i, f, g, o``, GRU ``z, r, h`` for ``r, z, n`` (with ``linear_before_reset=1``, PyTorch's
``b_hn`` inside the reset product); the weight blocks are reordered here.
"""

from ..backend import namespace
from ..layers import GRU, LSTM

# the ONNX operator and, for each of its gate blocks, the index of portanet's block
GATE_ORDER = {LSTM: ("LSTM", (0, 3, 1, 2), {}),
              GRU: ("GRU", (1, 0, 2), {"linear_before_reset": 1})}


def _reordered(layer, name, order):
    """``layer``'s weight ``name`` with its gate blocks in ONNX's ``order``."""
    value, size = getattr(layer, name), layer.hidden_size
    return namespace(value).concat([value[k * size:(k + 1) * size, ...] for k in order], axis=0)


def _initial_state(graph, layer, prefix, name, batch_size):
    """The learned initial state ``name`` repeated for every sample: ``(1, N, hidden)``."""
    value = getattr(layer, name)
    vector = graph.array(f"{prefix}.{name}",
                         namespace(value).reshape(value, (1, 1, layer.hidden_size)))
    shape = f"{prefix}.{name}.shape"
    int64 = graph.onnx.TensorProto.INT64
    graph.nodes.append(graph.onnx.helper.make_node(
        "Concat", [graph.constant(f"{prefix}.{name}.one", [1], int64), batch_size,
                   graph.constant(f"{prefix}.{name}.hidden_size", [layer.hidden_size], int64)],
        [shape], name=shape, axis=0))
    expanded = f"{prefix}.{name}.expanded"
    graph.nodes.append(graph.onnx.helper.make_node("Expand", [vector, shape], [expanded],
                                                   name=expanded))
    return expanded


def add_recurrent(graph, layer, prefix):
    """Append the nodes of ``layer`` (an LSTM or a GRU) to ``graph``: batch-first sequences
    ``(N, T, input_size)`` in, ``(N, T, hidden)`` or ``(N, hidden)`` out."""
    op, order, attributes = GATE_ORDER[type(layer)]
    helper, int64 = graph.onnx.helper, graph.onnx.TensorProto.INT64

    def stacked(name, *names):
        parts = [_reordered(layer, part, order) for part in (name, *names)]
        joined = namespace(parts[0]).concat(parts, axis=0)
        return graph.array(f"{prefix}.{name}", namespace(joined).reshape(
            joined, (1, *joined.shape)))

    weights = [stacked("weight_ih"), stacked("weight_hh"), stacked("bias_ih", "bias_hh")]
    graph.node("Transpose", f"{prefix}.time_major", perm=[1, 0, 2])
    sequences = graph.value
    if layer.initial_state == "learned":
        batch_size = f"{prefix}.batch_size"
        graph.nodes.append(helper.make_node("Shape", [sequences], [f"{prefix}.shape"],
                                            name=f"{prefix}.shape"))
        graph.nodes.append(helper.make_node(
            "Gather", [f"{prefix}.shape", graph.constant(f"{prefix}.batch_axis", [1], int64)],
            [batch_size], name=batch_size, axis=0))
        weights += ["", *(_initial_state(graph, layer, prefix, name, batch_size)
                          for name in layer.states)]
    outputs = [f"{prefix}.sequence", f"{prefix}.last"]
    graph.nodes.append(helper.make_node(op, [sequences, *weights], outputs, name=prefix,
                                        hidden_size=layer.hidden_size, **attributes))
    if layer.return_sequences:  # (T, 1, N, hidden)
        graph.value = outputs[0]
        graph.node("Squeeze", f"{prefix}.squeezed",
                   graph.constant(f"{prefix}.direction_axis", [1], int64))
        graph.node("Transpose", f"{prefix}.batch_major", perm=[1, 0, 2])
    else:  # (1, N, hidden)
        graph.value = outputs[1]
        graph.node("Squeeze", f"{prefix}.squeezed",
                   graph.constant(f"{prefix}.direction_axis", [0], int64))
