"""Recurrent layers: :class:`LSTM` and :class:`GRU` over batch-first sequences, with
PyTorch's gate order and weight layout (so weights copy both ways), and :class:`Bidirectional`,
which runs one of them over the sequences both ways."""

import math

from array_api_compat import device

from .. import initializers
from .._checks import boolean, integer, one_of
from ..activations import sigmoid
from ..backend import dtype_name, get_backend, kernels, matmul, namespace, rng, row_major, sum_rows
from ..errors import InputError, ShapeError
from .base import EMPTY, Layer
from .containers import Container


class Recurrent(Layer):
    """What :class:`LSTM` and :class:`GRU` share: the weights, the checks, the input
    projection and the weights' gradients. A subclass gives the number of gate blocks
    (``gates``), the names of its initial states (``states``) and either the loop over time
    steps (:meth:`sequence`) or one time step forward (:meth:`step`) and backward
    (:meth:`step_back`) for the default loop."""

    gates = 1
    states = ("h0",)

    def __init__(self, input_size, hidden_size, return_sequences=False, initial_state="zeros",
                 dtype="float32"):
        super().__init__()
        name = type(self).__name__
        integer(f"{name} input_size", input_size)
        integer(f"{name} hidden_size", hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.return_sequences = boolean(f"{name} return_sequences", return_sequences)
        self.initial_state = one_of(f"{name} initial_state", initial_state,
                                    ("zeros", "learned"))
        rows = self.gates * hidden_size
        for weight, shape in (("weight_ih", (rows, input_size)), ("weight_hh", (rows, hidden_size)),
                              ("bias_ih", (rows,)), ("bias_hh", (rows,))):
            setattr(self, weight, initializers.initial_weights(
                _torch_uniform, shape, input_size, hidden_size, dtype, self))
        self.params = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        if initial_state == "learned":
            for state in self.states:
                setattr(self, state, get_backend().zeros((hidden_size,), dtype))
            self.params += self.states

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 2 or shape[1] != self.input_size:
            hint = "; one feature per step: reshape to (N, T, 1)" if len(shape) == 1 else ""
            raise ShapeError(f"{self!r} takes sequences of per-sample shape (time steps, "
                             f"{self.input_size}), got {shape}{hint}")
        if shape[0] == 0:
            raise ShapeError(f"{self!r} needs sequences of at least one time step, got {shape}")
        return (shape[0], self.hidden_size) if self.return_sequences else (self.hidden_size,)

    def initial(self, state, x):
        """The initial states ``(N, hidden_size)`` of the batch ``x``: zeros, or the learned
        vectors repeated for every sample."""
        xp = namespace(x)
        n, size = x.shape[0], self.hidden_size
        if self.initial_state == "zeros":
            zeros = xp.zeros((n, size), dtype=x.dtype, device=device(x))
            return (zeros,) * len(self.states)
        for name in self.states:
            if tuple(state[name].shape) != (size,):
                raise ShapeError(f"{self!r}: the initial state {name} has shape "
                                 f"{tuple(state[name].shape)}, expected ({size},) (one value "
                                 "per hidden unit, shared by every sample)")
        return tuple(xp.broadcast_to(state[name], (n, size)) for name in self.states)

    def apply(self, state, x, run):
        self.output_shape(tuple(x.shape[1:]))
        xp = namespace(x)
        steps, n, rows = x.shape[1], x.shape[0], self.gates * self.hidden_size
        # time on the first axis, and a column of ones that multiplies the input bias: one
        # product gives the projection with its bias, one the gradients of weight_ih and bias_ih
        ones = xp.ones((steps, n, 1), dtype=x.dtype, device=device(x))
        inputs = xp.reshape(xp.concat([xp.permute_dims(x, (1, 0, 2)), ones], axis=2),
                            (-1, self.input_size + 1))  # (T N, input_size + 1)
        projected, recurrent = self.prepare(state, inputs)
        start = self.initial(state, x)
        hidden, backward = self.sequence(xp.reshape(projected, (steps, n, rows)), recurrent,
                                         start)
        out = xp.permute_dims(hidden, (1, 0, 2)) if self.return_sequences else hidden[-1, ...]

        def backprop(grad_output, need_input=True):
            if self.return_sequences:
                grad_hidden = xp.permute_dims(grad_output, (1, 0, 2))
            else:
                earlier = xp.zeros((steps - 1, *grad_output.shape), dtype=grad_output.dtype,
                                   device=device(grad_output))
                grad_hidden = xp.concat([earlier, grad_output[None, ...]], axis=0)
            grad_in, grad_rec, grad_start = backward(grad_hidden)
            flat_in = xp.reshape(grad_in, (-1, rows))  # (T N, gates * hidden)
            grad_input_side = flat_in.T @ inputs  # weight_ih's gradient, then bias_ih's
            grad_bias_ih = grad_input_side[:, -1]
            previous = xp.concat([start[0][None, ...], hidden[:-1, ...]], axis=0)
            grads = {
                "weight_ih": grad_input_side[:, :-1],
                "weight_hh": matmul((flat_in if grad_rec is None
                                     else xp.reshape(grad_rec, (-1, rows))).T,
                                    xp.reshape(previous, (-1, self.hidden_size)),
                                    run.place(self, "weight_hh")),
                "bias_ih": grad_bias_ih,
                "bias_hh": (grad_bias_ih if grad_rec is None  # the same sum
                            else sum_rows(xp.reshape(grad_rec, (-1, rows)),
                                          out=run.place(self, "bias_hh")))}
            if self.initial_state == "learned":
                grads.update({name: sum_rows(grad) for name, grad in zip(self.states, grad_start)})
            if not need_input:
                return None, grads
            grad_input = xp.reshape(flat_in @ state["weight_ih"], (steps, n, self.input_size))
            return xp.permute_dims(grad_input, (1, 0, 2)), grads
        return out, backprop

    def prepare(self, state, inputs):
        """``(projected, recurrent)``: the input projection ``(T N, gates * hidden)`` of every
        time step of ``inputs`` ``(T N, input_size + 1)`` (time major, a last column of ones)
        in one matmul, and what :meth:`sequence` needs of the recurrent weights."""
        return (inputs @ _with_bias(state["weight_ih"], state["bias_ih"]).T,
                (row_major(state["weight_hh"].T), state["bias_hh"], state["weight_hh"]))

    def sequence(self, projected, recurrent, start):
        """``(hidden, backward)``: every step's hidden state ``(T, N, hidden)`` from the
        projection ``(T, N, gates * hidden)`` and the initial states ``start``;
        ``backward(grad_hidden) -> (grad of the gates' input part, grad of their recurrent part
        h @ weight_hh.T + bias_hh (None: the same), grads of the initial states)``. Here a scan
        of :meth:`step` and one of :meth:`step_back`."""
        xp, weight_hh = namespace(projected), recurrent[-1]

        def forward(carry, inputs):
            carry, record = self.step(inputs[0], carry, recurrent)
            return carry, (carry[0], *record)

        _, (hidden, *records) = kernels.scan(forward, start, (projected,))

        def step_back(grad_carry, inputs):
            *record, grad_h = inputs
            grad_carry = (grad_carry[0] + grad_h, *grad_carry[1:])
            grad_in, grad_rec, grad_carry = self.step_back(record, grad_carry, recurrent)
            through_weights = (grad_in if grad_rec is None else grad_rec) @ weight_hh
            grad_carry = (through_weights if grad_carry[0] is None
                          else grad_carry[0] + through_weights, *grad_carry[1:])
            return grad_carry, (grad_in,) if grad_rec is None else (grad_in, grad_rec)

        def backward(grad_hidden):
            zeros = tuple(xp.zeros_like(h) for h in start)
            grad_start, (grad_in, *grad_rec) = kernels.scan(
                step_back, zeros, (*records, grad_hidden), reverse=True)
            return grad_in, grad_rec[0] if grad_rec else None, grad_start
        return hidden, backward

    def step(self, projected, carry, recurrent):
        """``(new carry, record)`` of one time step: ``projected`` is this step's slice of
        :meth:`prepare`'s projection ``(N, gates * hidden)``, ``carry`` the states (hidden
        state first); ``record``, a tuple of arrays, is what :meth:`step_back` needs."""
        raise NotImplementedError

    def step_back(self, record, grad_carry, recurrent):
        """``(grad of the gates' input part, grad of their recurrent part h @ weight_hh.T +
        bias_hh (None: the same), grads of the previous carry)`` of one step; the previous
        hidden state's gradient leaves out what flows through ``weight_hh`` (the loop adds
        it; None: nothing else)."""
        raise NotImplementedError

    def config(self):
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "return_sequences": self.return_sequences, "initial_state": self.initial_state}


def _with_bias(weight, bias):
    """``weight`` ``(rows, input_size)`` with ``bias`` as an extra last column."""
    return namespace(weight).concat([weight, bias[:, None]], axis=1)


def _torch_uniform(shape, fan_in, hidden_size):
    """U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as torch.nn.LSTM and GRU start every
    weight and bias."""
    limit = 1.0 / math.sqrt(hidden_size)
    return rng().uniform(-limit, limit, size=shape)


class LSTM(Recurrent):
    """Long short-term memory over sequences ``(N, T, input_size)``: the output is every
    step's hidden state ``(N, T, hidden_size)`` with ``return_sequences=True``, else the last
    one ``(N, hidden_size)``.

    PyTorch's equations and layout: gates ``i, f, g, o`` stacked in that order in
    ``weight_ih`` ``(4 H, input_size)``, ``weight_hh`` ``(4 H, H)``, ``bias_ih`` and
    ``bias_hh`` ``(4 H,)``; ``c' = f * c + i * g``, ``h' = o * tanh(c')``. Weights start
    U(-1/sqrt(H), 1/sqrt(H)) as PyTorch's do. ``initial_state="zeros"`` starts ``h`` and ``c``
    at zero; ``"learned"`` adds trainable parameters ``h0`` and ``c0`` ``(H,)``, shared by
    every sample, starting at zero (``set_weights`` starts them elsewhere; they train as any
    parameter does)."""

    gates = 4
    states = ("h0", "c0")

    def prepare(self, state, inputs):
        """Both biases added once to the input projection, its rows scaled for the kernel
        (:func:`portanet.backend.kernels.lstm_gate_scale`)."""
        weights = _with_bias(state["weight_ih"], state["bias_ih"] + state["bias_hh"])
        scale = kernels.lstm_gate_scale(state["weight_hh"])
        return inputs @ (weights * scale[:, None]).T, state["weight_hh"]

    def sequence(self, projected, recurrent, start):
        """The loop by :func:`portanet.backend.kernels.lstm` (native on NumPy)."""
        hidden, backward = kernels.lstm(projected, recurrent, *start)

        def gradients(grad_hidden):
            grad_gates, *grad_start = backward(grad_hidden)
            return grad_gates, None, tuple(grad_start)
        return hidden, gradients


class GRU(Recurrent):
    """Gated recurrent unit over sequences ``(N, T, input_size)``, outputs as :class:`LSTM`'s.

    PyTorch's equations and layout: gates ``r, z, n`` stacked in that order in ``weight_ih``
    ``(3 H, input_size)``, ``weight_hh`` ``(3 H, H)``, ``bias_ih`` and ``bias_hh`` ``(3 H,)``;
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` (the recurrent bias inside the reset
    product), ``h' = (1 - z) * n + z * h``. ``initial_state`` as :class:`LSTM`'s, with the one
    state ``h0``."""

    gates = 3
    states = ("h0",)

    def step(self, projected, carry, recurrent):
        (h,) = carry
        size = self.hidden_size
        weights, bias_hh, _ = recurrent
        hidden = h @ weights + bias_hh
        reset_update = sigmoid(projected[:, :2 * size] + hidden[:, :2 * size])
        r, z = reset_update[:, :size], reset_update[:, size:]
        hidden_n = hidden[:, 2 * size:]
        n = namespace(h).tanh(projected[:, 2 * size:] + r * hidden_n)
        return (n + z * (h - n),), (r, z, n, hidden_n, h)

    def step_back(self, record, grad_carry, recurrent):
        r, z, n, hidden_n, h = record
        (grad_h,) = grad_carry
        xp = namespace(h)
        grad_n = grad_h * (1.0 - z) * (1.0 - n * n)
        grad_z = grad_h * (h - n) * z * (1.0 - z)
        grad_r = grad_n * hidden_n * r * (1.0 - r)
        return (xp.concat([grad_r, grad_z, grad_n], axis=-1),
                xp.concat([grad_r, grad_z, grad_n * r], axis=-1), (grad_h * z,))


class Bidirectional(Container):
    """An :class:`LSTM` or :class:`GRU` run over the sequences both ways, as
    ``torch.nn.LSTM(bidirectional=True)`` and Keras's ``Bidirectional`` do: ``layer`` reads them
    forward, ``backward_layer`` (default: a new, independently initialised layer with
    ``layer``'s settings) reads them reversed. With ``return_sequences`` the backward
    direction's outputs are flipped back to the input's positions; without, each direction's
    last step is taken (the backward one's is position 0, as PyTorch's ``h_n``).
    ``merge_mode`` joins the two outputs: ``"concat"`` (forward first, ``2 * hidden_size``
    features, PyTorch's layout), ``"sum"``, ``"mul"`` or ``"ave"``."""

    branches = True  # both sublayers read the container's input
    merges = ("concat", "sum", "mul", "ave")

    def __init__(self, layer, merge_mode="concat", backward_layer=None):
        if not isinstance(layer, Recurrent):
            raise InputError(f"Bidirectional wraps an LSTM or a GRU, got {layer!r}")
        if backward_layer is None:
            backward_layer = type(layer)(**layer.config(), dtype=dtype_name(layer.weight_ih))
        elif backward_layer is layer:
            raise InputError("Bidirectional needs a backward_layer of its own, got the forward "
                             "layer again; leave it out for a new one with the same settings")
        elif type(backward_layer) is not type(layer) or backward_layer.config() != layer.config():
            raise InputError(f"Bidirectional's backward_layer must be a {type(layer).__name__} "
                             f"with the settings of {layer!r}, got {backward_layer!r}")
        super().__init__([layer, backward_layer])
        self.forward_layer, self.backward_layer = layer, backward_layer
        self.merge_mode = one_of("Bidirectional merge_mode", merge_mode, self.merges)

    @classmethod
    def from_sublayers(cls, sublayers, **config):
        layer, backward_layer = sublayers
        return cls(layer, backward_layer=backward_layer, **config)

    def output_shape(self, input_shape):
        shape = self.forward_layer.output_shape(input_shape)
        return (*shape[:-1], 2 * shape[-1]) if self.merge_mode == "concat" else shape

    def apply(self, state, x, run):
        xp = namespace(x)
        sequences = self.forward_layer.return_sequences
        ahead, ahead_backprop = run.apply(self.forward_layer, x)
        behind, behind_backprop = run.apply(self.backward_layer, xp.flip(x, axis=1))
        if sequences:
            behind = xp.flip(behind, axis=1)
        mode = self.merge_mode
        if mode == "concat":
            out = xp.concat([ahead, behind], axis=-1)
        elif mode == "mul":
            out = ahead * behind
        else:
            out = ahead + behind if mode == "sum" else 0.5 * (ahead + behind)

        def backprop(grad_output, need_input=True):
            if mode == "concat":
                size = self.forward_layer.hidden_size
                grad_ahead, grad_behind = grad_output[..., :size], grad_output[..., size:]
            elif mode == "mul":
                grad_ahead, grad_behind = grad_output * behind, grad_output * ahead
            else:
                grad_ahead = grad_behind = grad_output if mode == "sum" else 0.5 * grad_output
            if sequences:
                grad_behind = xp.flip(grad_behind, axis=1)
            grad_input, grads = ahead_backprop(grad_ahead, need_input)
            run.record(self.forward_layer, grads)
            grad_reversed, grads = behind_backprop(grad_behind, need_input)
            run.record(self.backward_layer, grads)
            if not need_input:
                return None, EMPTY
            return grad_input + xp.flip(grad_reversed, axis=1), EMPTY
        return out, backprop

    def config(self):
        return {"merge_mode": self.merge_mode}

    def __repr__(self):
        merge = "" if self.merge_mode == "concat" else f", merge_mode={self.merge_mode!r}"
        return f"Bidirectional({self.forward_layer!r}{merge})"
