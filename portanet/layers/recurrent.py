"""Recurrent layers: :class:`LSTM` and :class:`GRU` over batch-first sequences, with
PyTorch's gate order and weight layout (so weights copy both ways)."""

import math

from array_api_compat import device

from .. import initializers
from .._checks import boolean, integer, one_of
from ..activations import sigmoid
from ..backend import get_backend, matmul, namespace, rng, sum_rows
from ..errors import ShapeError
from .base import Layer


class Recurrent(Layer):
    """What :class:`LSTM` and :class:`GRU` share: the weights, the checks, the loop over time
    steps and backpropagation through time. A subclass gives the number of gate blocks
    (``gates``), the names of its initial states (``states``) and one time step forward
    (:meth:`step`) and backward (:meth:`step_back`)."""

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
        steps = x.shape[1]
        weight_ih, weight_hh = state["weight_ih"], state["weight_hh"]
        # every time step's input projection in one matmul: (N, T, gates * hidden)
        projected = x @ weight_ih.T + state["bias_ih"]
        recurrent = weight_hh.T
        start = carry = self.initial(state, x)
        outputs, records = [], []
        for t in range(steps):
            carry, record = self.step(projected[:, t, :], carry, recurrent, state["bias_hh"])
            outputs.append(carry[0])
            records.append(record)
        out = xp.stack(outputs, axis=1) if self.return_sequences else outputs[-1]

        def backprop(grad_output, need_input=True):
            grad_carry = tuple(xp.zeros_like(h) for h in carry)
            grads_in, grads_rec = [None] * steps, [None] * steps
            for t in range(steps - 1, -1, -1):
                grad_h = (grad_output[:, t, :] if self.return_sequences
                          else grad_output if t == steps - 1 else None)
                if grad_h is not None:
                    grad_carry = (grad_carry[0] + grad_h, *grad_carry[1:])
                grads_in[t], grads_rec[t], grad_carry = self.step_back(records[t], grad_carry)
                grad_carry = (grad_carry[0] + grads_rec[t] @ weight_hh, *grad_carry[1:])
            grad_in = xp.stack(grads_in, axis=1)  # (N, T, gates * hidden)
            grad_rec = xp.stack(grads_rec, axis=1)
            previous = xp.stack([start[0], *outputs[:-1]], axis=1)
            rows = self.gates * self.hidden_size
            flat_in = xp.reshape(grad_in, (-1, rows))
            flat_rec = xp.reshape(grad_rec, (-1, rows))
            grads = {
                "weight_ih": matmul(flat_in.T, xp.reshape(x, (-1, self.input_size)),
                                    run.place(self, "weight_ih")),
                "weight_hh": matmul(flat_rec.T, xp.reshape(previous, (-1, self.hidden_size)),
                                    run.place(self, "weight_hh")),
                "bias_ih": sum_rows(flat_in, out=run.place(self, "bias_ih")),
                "bias_hh": sum_rows(flat_rec, out=run.place(self, "bias_hh"))}
            if self.initial_state == "learned":
                grads.update({name: sum_rows(grad) for name, grad in zip(self.states, grad_carry)})
            return (grad_in @ weight_ih if need_input else None), grads
        return out, backprop

    def step(self, projected, carry, recurrent, bias_hh):
        """``(new carry, record)`` of one time step: ``projected`` is this step's input
        projection ``(N, gates * hidden)``, ``carry`` the states (hidden state first),
        ``recurrent`` the transposed ``weight_hh``; ``record`` is what :meth:`step_back`
        needs."""
        raise NotImplementedError

    def step_back(self, record, grad_carry):
        """``(grad of projected, grad of the recurrent product h @ weight_hh.T + bias_hh,
        grads of the previous carry)`` of one step, the previous hidden state's gradient not
        counting the recurrent product's (the loop adds it)."""
        raise NotImplementedError

    def config(self):
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "return_sequences": self.return_sequences, "initial_state": self.initial_state}


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
    at zero; ``"learned"`` adds trainable parameters ``h0`` and ``c0`` ``(H,)`` (starting at
    zero, shared by every sample; set them with ``set_weights`` for a fixed start)."""

    gates = 4
    states = ("h0", "c0")

    def step(self, projected, carry, recurrent, bias_hh):
        h, c = carry
        size = self.hidden_size
        gates = projected + h @ recurrent + bias_hh
        input_forget = sigmoid(gates[:, :2 * size])
        i, f = input_forget[:, :size], input_forget[:, size:]
        g = namespace(gates).tanh(gates[:, 2 * size:3 * size])
        o = sigmoid(gates[:, 3 * size:])
        c_new = f * c + i * g
        tanh_c = namespace(c_new).tanh(c_new)
        return (o * tanh_c, c_new), (i, f, g, o, c, tanh_c)

    def step_back(self, record, grad_carry):
        i, f, g, o, c, tanh_c = record
        grad_h, grad_c = grad_carry
        grad_c = grad_c + grad_h * o * (1.0 - tanh_c * tanh_c)
        grad_gates = namespace(c).concat(
            [grad_c * g * i * (1.0 - i), grad_c * c * f * (1.0 - f),
             grad_c * i * (1.0 - g * g), grad_h * tanh_c * o * (1.0 - o)], axis=-1)
        return grad_gates, grad_gates, (0.0, grad_c * f)


class GRU(Recurrent):
    """Gated recurrent unit over sequences ``(N, T, input_size)``, outputs as :class:`LSTM`'s.

    PyTorch's equations and layout: gates ``r, z, n`` stacked in that order in ``weight_ih``
    ``(3 H, input_size)``, ``weight_hh`` ``(3 H, H)``, ``bias_ih`` and ``bias_hh`` ``(3 H,)``;
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` (the recurrent bias inside the reset
    product), ``h' = (1 - z) * n + z * h``. ``initial_state`` as :class:`LSTM`'s, with the one
    state ``h0``."""

    gates = 3
    states = ("h0",)

    def step(self, projected, carry, recurrent, bias_hh):
        (h,) = carry
        size = self.hidden_size
        hidden = h @ recurrent + bias_hh
        reset_update = sigmoid(projected[:, :2 * size] + hidden[:, :2 * size])
        r, z = reset_update[:, :size], reset_update[:, size:]
        hidden_n = hidden[:, 2 * size:]
        n = namespace(h).tanh(projected[:, 2 * size:] + r * hidden_n)
        return (n + z * (h - n),), (r, z, n, hidden_n, h)

    def step_back(self, record, grad_carry):
        r, z, n, hidden_n, h = record
        (grad_h,) = grad_carry
        xp = namespace(h)
        grad_n = grad_h * (1.0 - z) * (1.0 - n * n)
        grad_z = grad_h * (h - n) * z * (1.0 - z)
        grad_r = grad_n * hidden_n * r * (1.0 - r)
        return (xp.concat([grad_r, grad_z, grad_n], axis=-1),
                xp.concat([grad_r, grad_z, grad_n * r], axis=-1), (grad_h * z,))
