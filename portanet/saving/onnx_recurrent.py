"""ONNX export of :class:`~portanet.LSTM`, :class:`~portanet.GRU` and
:class:`~portanet.Bidirectional`: one ONNX ``LSTM`` or ``GRU`` node each (a bidirectional one
for ``Bidirectional``; opset 13: time-major, so the sequences are transposed in and out).

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


def _node(graph, directions, prefix):
    """Append one ONNX LSTM or GRU node reading the latest output (batch-first sequences), with
    ``directions`` (the layer, or a Bidirectional's forward and backward layers); returns the
    names of its outputs: every step's hidden states ``(T, directions, N, hidden)`` and the
    last ones ``(directions, N, hidden)``."""
    layer = directions[0]
    op, order, attributes = GATE_ORDER[type(layer)]
    helper, int64 = graph.onnx.helper, graph.onnx.TensorProto.INT64

    def stacked(name, *names):  # (directions, rows, columns)
        xp = namespace(getattr(layer, name))
        return graph.array(f"{prefix}.{name}", xp.stack(
            [xp.concat([_reordered(one, part, order) for part in (name, *names)], axis=0)
             for one in directions], axis=0))

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
        weights.append("")
        for name in layer.states:
            starts = [_initial_state(graph, one, f"{prefix}.{index}" if len(directions) > 1
                                     else prefix, name, batch_size)
                      for index, one in enumerate(directions)]
            weights.append(starts[0] if len(starts) == 1 else graph.op(
                "Concat", f"{prefix}.{name}.directions", starts, axis=0))
    outputs = [f"{prefix}.sequence", f"{prefix}.last"]
    direction = {"direction": "bidirectional"} if len(directions) > 1 else {}
    graph.nodes.append(helper.make_node(op, [sequences, *weights], outputs, name=prefix,
                                        hidden_size=layer.hidden_size, **direction,
                                        **attributes))
    return outputs


def add_recurrent(graph, layer, prefix):
    """Append the nodes of ``layer`` (an LSTM or a GRU) to ``graph``: batch-first sequences
    ``(N, T, input_size)`` in, ``(N, T, hidden)`` or ``(N, hidden)`` out."""
    sequence, last = _node(graph, [layer], prefix)
    int64 = graph.onnx.TensorProto.INT64
    if layer.return_sequences:  # (T, 1, N, hidden)
        graph.value = sequence
        graph.node("Squeeze", f"{prefix}.squeezed",
                   graph.constant(f"{prefix}.direction_axis", [1], int64))
        graph.node("Transpose", f"{prefix}.batch_major", perm=[1, 0, 2])
    else:  # (1, N, hidden)
        graph.value = last
        graph.node("Squeeze", f"{prefix}.squeezed",
                   graph.constant(f"{prefix}.direction_axis", [0], int64))


def add_bidirectional(graph, layer, prefix):
    """Append the nodes of a :class:`~portanet.Bidirectional` to ``graph``: one node with
    ``direction="bidirectional"`` (ONNX runs the second direction over the reversed sequences
    and gives its outputs at the input's positions, as portanet does), then the two
    directions merged; False (not exportable) around a recurrent layer of your own."""
    if type(layer.forward_layer) not in GATE_ORDER:
        return False
    sequence, last = _node(graph, layer.sublayers, prefix)
    sequences = layer.forward_layer.return_sequences
    # (T, 2, N, hidden): the directions on axis 1; (2, N, hidden): on axis 0
    source, axis = (sequence, 1) if sequences else (last, 0)
    int64 = graph.onnx.TensorProto.INT64
    ahead, behind = (graph.op("Gather", f"{prefix}.{name}", [source, graph.constant(
        f"{prefix}.{name}.index", index, int64)], axis=axis)  # a scalar index: the axis goes
        for index, name in enumerate(("forward", "backward")))
    merged = f"{prefix}.merged"
    if layer.merge_mode == "concat":
        graph.op("Concat", merged, [ahead, behind], axis=-1)
    elif layer.merge_mode == "mul":
        graph.op("Mul", merged, [ahead, behind])
    else:
        graph.op("Add", merged, [ahead, behind])
        if layer.merge_mode == "ave":
            merged = graph.op("Mul", f"{prefix}.average",
                              [merged, graph.constant(f"{prefix}.half", 0.5)])
    graph.value = merged
    if sequences:  # (T, N, features)
        graph.node("Transpose", f"{prefix}.batch_major", perm=[1, 0, 2])
