"""The implementations a case runs on (portanet, PyTorch, a plain reference) and their timing."""

from __future__ import annotations

import math
import statistics
import sys
import time

import numpy as np
from cases import LSTM_LM, TRANSFORMER, char_text, epoch_order
from keras_models import keras_run
from torch_models import torch_lstm_lm, torch_transformer, transformer_weights

import portanet
import portanet.optimizers
from portanet import layers as pn_layers
from portanet.backend import to_numpy
from portanet.models import lstm_language_model

SEED = 1234
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # how run_once times
clock = CLOCKS["wall"]
IMPLS = ("portanet", "torch", "reference", "keras", "eager")


# -- the three implementations ---------------------------------------------------------------------
def build_portanet(case):
    """The case's model as a portanet Network (the tutorial's style of building it)."""
    if case.kind == "transformer":
        return build_transformer(case)
    if case.kind == "lstm-lm":
        return build_lstm_lm(case)
    net = portanet.Network(dtype=case.dtype)
    if case.kind == "cnn":
        for channels_in, channels_out in ((1, 32), (32, 64)):
            net.add(pn_layers.Conv2D(channels_in, channels_out, 3, padding="same",
                                     input_shape=(1, 28, 28) if channels_in == 1 else None))
            net.add(pn_layers.ActivationLayer(case.activation))
            net.add(pn_layers.MaxPool2D(2))
        net.add(pn_layers.Flatten())
    count = len(case.sizes) - 1
    for k, (n_in, n_out) in enumerate(zip(case.sizes, case.sizes[1:])):
        last = k == count - 1
        init = "glorot_uniform" if last and case.init == "he_uniform" else case.init
        net.add(pn_layers.FCLayer(n_in, n_out, init=init))
        if not last or case.output_activation:
            net.add(pn_layers.ActivationLayer(case.activation))
    net.use(case.loss)
    return net


def build_transformer(case):
    """A pre-norm causal transformer over ``char_text()``'s characters (as examples/charlm)."""
    dim, heads, vocabulary = TRANSFORMER["dim"], TRANSFORMER["heads"], len(char_text().vocabulary)
    blocks = []
    for _ in range(TRANSFORMER["blocks"]):
        attention = pn_layers.SelfAttention(dim, heads, causal=True)
        blocks += [pn_layers.Residual(pn_layers.Sequential([pn_layers.LayerNorm(dim), attention])),
                   pn_layers.Residual(pn_layers.Sequential([
                       pn_layers.LayerNorm(dim), pn_layers.Dense(dim, 4 * dim),
                       pn_layers.ActivationLayer("gelu"), pn_layers.Dense(4 * dim, dim)]))]
    net = portanet.Network([pn_layers.Embedding(vocabulary, dim),
                            pn_layers.PositionalEmbedding(TRANSFORMER["context"], dim), *blocks,
                            pn_layers.LayerNorm(dim), pn_layers.Dense(dim, vocabulary)],
                           dtype=case.dtype)
    net.use(case.loss)
    return net


def build_lstm_lm(case):
    """Embedding, an LSTM (or the case's ``cell``) giving every step's output, and the scores
    of the next character."""
    vocabulary, dim, hidden = len(char_text().vocabulary), LSTM_LM["dim"], LSTM_LM["hidden"]
    if case.cell == "LSTM":
        return lstm_language_model(vocabulary, dim, hidden, case.dtype)
    net = portanet.Network([pn_layers.Embedding(vocabulary, dim),
                            getattr(pn_layers, case.cell)(dim, hidden, return_sequences=True),
                            pn_layers.Dense(hidden, vocabulary)], dtype=case.dtype)
    net.use(case.loss)
    return net


def initial_weights(net):
    """[(kind, weights, bias)] of every layer with parameters, as NumPy arrays."""
    return [(type(layer).__name__, *layer.get_weights()) for layer in net.layers
            if getattr(layer, "params", ())]


class PortanetRun:
    """portanet as a user runs it: ``fit`` one epoch at a time, ``predict``."""

    def __init__(self, case, data, net, compile="auto"):
        self.case, self.net, self.compile = case, net, compile
        backend = portanet.get_backend()
        self.x, self.y = (backend.asarray(a, "int64" if a.dtype.kind == "i" else case.dtype)
                          for a in (data.x, data.y))
        if case.kind == "train" and case.batch == 1:  # the tutorial's (N, 1, features) layout
            xp = backend.xp
            self.x = xp.reshape(self.x, (self.x.shape[0], 1, self.x.shape[1]))
            self.y = xp.reshape(self.y, (self.y.shape[0], 1, self.y.shape[1]))
        self.optimizer = portanet.optimizers.get(case.optimizer, case.learning_rate)
        self.optimizer.clip_norm = case.clip_norm

    def epoch(self, seed):
        portanet.set_seed(seed)
        history = self.net.fit(self.x, self.y, epochs=1, batch_size=self.case.batch,
                               shuffle=self.case.shuffle, optimizer=self.optimizer, verbose=0,
                               compile=self.compile)
        return history.history["loss"][-1]

    def predict(self):
        return to_numpy(self.net.predict(self.x))


class TorchRun:
    """The same model in PyTorch: nn.Sequential, its loss and optimizer, manual batching."""

    def __init__(self, case, data, weights, device):
        import torch
        nn = torch.nn
        self.torch, self.case, self.device = torch, case, device
        dtype = getattr(torch, case.dtype)
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}[case.activation]
        modules, k = [], 0
        if case.kind == "cnn":
            for channels_in, channels_out in ((1, 32), (32, 64)):
                modules += [nn.Conv2d(channels_in, channels_out, 3, padding="same"), act(),
                            nn.MaxPool2d(2)]
            modules.append(nn.Flatten())
        count = len(case.sizes) - 1
        for k, (n_in, n_out) in enumerate(zip(case.sizes, case.sizes[1:])):
            modules.append(nn.Linear(n_in, n_out))
            if k < count - 1 or case.output_activation:
                modules.append(act())
        if case.kind in ("transformer", "lstm-lm"):
            model = (torch_transformer(torch, weights, TRANSFORMER["heads"])
                     if case.kind == "transformer" else torch_lstm_lm(torch, weights, case.cell))
            self.model = model.to(device=device, dtype=dtype)
        else:
            self.model = nn.Sequential(*modules).to(device=device, dtype=dtype)
            with torch.no_grad():
                learned = [m for m in self.model if isinstance(m, (nn.Linear, nn.Conv2d))]
                for module, (kind, w, b) in zip(learned, weights):
                    module.weight.copy_(torch.from_numpy(w.T if kind == "FCLayer" else w))
                    module.bias.copy_(torch.from_numpy(b.reshape(-1)))
        self.x = torch.as_tensor(data.x, device=device)
        mse = case.loss == "mse"
        self.y = torch.as_tensor(data.y if mse else data.labels, device=device)
        cross_entropy = nn.CrossEntropyLoss()
        self.loss = nn.MSELoss() if mse else lambda out, y: cross_entropy(
            out.reshape(-1, out.shape[-1]), y.reshape(-1))
        params = self.model.parameters()
        self.optimizer = (torch.optim.SGD(params, lr=case.learning_rate)
                          if case.optimizer == "sgd" else
                          torch.optim.Adam(params, lr=case.learning_rate, eps=1e-7))

    def epoch(self, seed):
        torch, n, batch = self.torch, self.x.shape[0], self.case.batch
        order = epoch_order(self.case, n, seed)
        order = None if order is None else torch.as_tensor(order, device=self.device)
        total = torch.zeros((), dtype=getattr(torch, self.case.dtype), device=self.device)
        for start in range(0, n, batch):
            if order is None:
                xb, yb = self.x[start:start + batch], self.y[start:start + batch]
            else:
                index = order[start:start + batch]
                xb, yb = self.x[index], self.y[index]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(self.model(xb), yb)
            loss.backward()
            if self.case.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.case.clip_norm)
            self.optimizer.step()
            total += loss.detach() * xb.shape[0]
        return float(total) / n

    def predict(self):
        with self.torch.no_grad():
            return self.model(self.x).cpu().numpy()


class PlainRun:
    """A hand-written mini-batch MLP on one array module ``np`` (numpy or cupy): the floor.

    Forward keeps each layer's output; backward uses the activation's derivative from that
    output, skips the first layer's input gradient and updates parameters in place as it goes
    (at batch 1 and in order this is the tutorial's per-sample loop).
    """

    def __init__(self, case, data, weights, np_module):
        self.np, self.case = np_module, case
        # copies: the reference updates in place, and NumPy's get_weights may share memory
        self.w = [np_module.array(w, copy=True) for _, w, _ in weights]
        self.b = [np_module.array(b, copy=True) for _, _, b in weights]
        self.moments = [[np_module.zeros_like(p), np_module.zeros_like(p)]
                        for p in self.w + self.b]
        self.t = 0
        self.x, self.y = np_module.asarray(data.x), np_module.asarray(data.y)

    def forward(self, a):
        np, count = self.np, len(self.w)
        outputs = [a]
        for k, (w, b) in enumerate(zip(self.w, self.b)):
            a = a @ w + b
            if k < count - 1 or self.case.output_activation:
                a = np.tanh(a) if self.case.activation == "tanh" else np.maximum(a, 0)
            outputs.append(a)
        return outputs

    def loss_and_grad(self, out, y):
        np, n = self.np, out.shape[0]
        if self.case.loss == "mse":
            diff = out - y
            return (diff * diff).mean(), diff * (2.0 / diff.size)
        shifted = out - out.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        total = e.sum(axis=1, keepdims=True)
        return -(y * (shifted - np.log(total))).sum() / n, (e / total - y) / n

    def update(self, k, param, grad):
        case = self.case
        if case.optimizer == "sgd":
            param -= case.learning_rate * grad
            return
        m, v = self.moments[k]
        m *= 0.9
        m += 0.1 * grad
        v *= 0.999
        v += 0.001 * grad * grad
        denom = self.np.sqrt(v)
        denom /= math.sqrt(1 - 0.999 ** self.t)
        denom += 1e-7
        param -= (case.learning_rate / (1 - 0.9 ** self.t)) * m / denom

    def step(self, xb, yb):
        outputs = self.forward(xb)
        loss, grad = self.loss_and_grad(outputs[-1], yb)
        self.t += 1
        count = len(self.w)
        for k in range(count - 1, -1, -1):
            if k < count - 1 or self.case.output_activation:
                a = outputs[k + 1]
                grad = grad * (1 - a * a) if self.case.activation == "tanh" else grad * (a > 0)
            grad_w, grad_b = outputs[k].T @ grad, grad.sum(axis=0, keepdims=True)
            if k:
                grad_next = grad @ self.w[k].T
            self.update(k, self.w[k], grad_w)
            self.update(count + k, self.b[k], grad_b)
            if k:
                grad = grad_next
        return loss

    def epoch(self, seed):
        np, n, batch = self.np, self.x.shape[0], self.case.batch
        order = epoch_order(self.case, n, seed)
        order = None if order is None else np.asarray(order)
        total = 0.0
        for start in range(0, n, batch):
            if order is None:
                xb, yb = self.x[start:start + batch], self.y[start:start + batch]
            else:
                index = order[start:start + batch]
                xb, yb = np.take(self.x, index, axis=0), np.take(self.y, index, axis=0)
            total = total + self.step(xb, yb) * xb.shape[0]
        return float(total) / n

    def predict(self):
        out = self.forward(self.x)[-1]
        return out.get() if hasattr(out, "get") else out


def reference_module(backend):
    """The array module of the plain reference for ``backend``, or None where there is none."""
    if backend.name == "numpy":
        return np
    if backend.name == "cupy":
        import cupy
        return cupy
    return None


def make_runs(case, data, which, torch_device):
    """{impl: runner} for the implementations in ``which`` (None where one cannot run)."""
    portanet.set_seed(SEED)
    net = build_portanet(case)
    weights = (transformer_weights(net) if case.kind in ("transformer", "lstm-lm")
               else initial_weights(net))
    runs = {}
    if "portanet" in which:
        runs["portanet"] = PortanetRun(case, data, net)
    if "eager" in which:  # the same network and initial weights, never compiled
        portanet.set_seed(SEED)
        runs["eager"] = PortanetRun(case, data, build_portanet(case), compile=False)
    if "torch" in which:
        try:
            runs["torch"] = TorchRun(case, data, weights, torch_device)
        except ImportError:
            runs["torch"] = None
    if "keras" in which:
        runs["keras"] = keras_run(case, data, weights)
    if "reference" in which:
        module = reference_module(portanet.get_backend())
        runs["reference"] = (PlainRun(case, data, weights, module)
                             if module is not None and case.kind in ("train", "predict")
                             else None)
    return runs


# -- measuring -----------------------------------------------------------------------------------
def run_once(run, case, seed):
    """One epoch (or prediction pass) of ``run``: (seconds by :data:`clock`, epoch loss,
    predictions)."""
    start = clock()
    if case.kind == "predict":
        out = run.predict()
        elapsed = clock() - start
        return elapsed, None, out
    loss = run.epoch(seed)
    return clock() - start, loss, None


def crossentropy(logits, labels):
    """Mean softmax cross-entropy of ``logits`` for integer ``labels`` (NumPy, float64)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def time_case(case, data, runs, repeats):
    """Interleaved warm-up and timed epochs; {impl: {"times", "median", "loss"}}."""
    live = [name for name in IMPLS if runs.get(name) is not None]
    results = {name: {"times": []} for name in live}
    for round_ in range(repeats + 1):
        seed = SEED + round_
        # rotate who goes first, so no implementation always follows the same one
        for name in live[round_ % len(live):] + live[:round_ % len(live)]:
            elapsed, loss, out = run_once(runs[name], case, seed)
            if out is not None:
                loss = crossentropy(out, data.labels)
            if round_:
                results[name]["times"].append(elapsed)
            results[name]["loss"] = loss
    for result in results.values():
        result["median"] = statistics.median(result["times"])
    return results


def peak_memory_mb():
    """This process's peak resident memory (VmHWM on Linux; ru_maxrss elsewhere), in MB.

    VmHWM belongs to the process's own address space; ru_maxrss can report a parent's peak in a
    child started by vfork, so it is only the fallback.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024


def device_peak_mb(impl, backend, on_gpu):
    """Peak device memory of the GPU allocator ``impl`` used, in MB (None on the CPU)."""
    name = "torch" if impl == "torch" else backend.name
    if not on_gpu:
        return None
    if name == "torch":
        return sys.modules["torch"].cuda.max_memory_allocated() / 2 ** 20
    if name == "cupy":  # the pool keeps what it has allocated: its size is the peak
        return sys.modules["cupy"].get_default_memory_pool().total_bytes() / 2 ** 20
    if name == "jax":
        stats = backend.device.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"] / 2 ** 20
    return None


def wide_flops(case, n):
    """Floating-point operations of one epoch of a dense network (no input gradient at layer 1)."""
    pairs = list(zip(case.sizes, case.sizes[1:]))
    return sum(2 * n * a * b * (2 if k == 0 else 3) for k, (a, b) in enumerate(pairs))


def matmul_rate(backend, dtype, repeats=20):
    """FLOP/s of a (1024 x 4096) @ (4096 x 4096) product on the backend, measured now."""
    xp = backend.xp
    a = xp.ones((1024, 4096), dtype=backend.dtype(dtype), device=backend.device)
    b = xp.ones((4096, 4096), dtype=backend.dtype(dtype), device=backend.device)
    float(xp.sum((a @ b)[:1, :1]))
    start = time.perf_counter()
    for _ in range(repeats):
        c = a @ b
    float(xp.sum(c[:1, :1]))
    return repeats * 2 * 1024 * 4096 * 4096 / (time.perf_counter() - start)
