"""Side-by-side speed: portanet, PyTorch and a hand-written plain-backend reference.

    python benchmarks/run.py [--backend NAME] [--device DEV] [--cases a,b,...] [--quick]
                             [--json PATH] [--threads N] [--repeats N] [--no-memory]
                             [--compare-compile]

Each case trains (or runs) the same model three ways, from portanet's initial weights and with
the same batch order on the same device: portanet on the chosen backend; PyTorch; and, where the
backend has one, a plain reference written once against an array module (NumPy for ``numpy``,
CuPy for ``cupy``): the floor for that backend. portanet trains with ``compile="auto"`` (the
step compiled where the backend measured faster: jax.jit on JAX); ``--compare-compile`` adds
portanet with ``compile=False`` ("eager") beside it, and the compiled/eager ratio. Epochs are
interleaved across the implementations, so load from other processes hits them alike; a time is
the median of the timed epochs after one warm-up epoch. Peak memory comes from a fresh child
process per case and implementation (``--no-memory`` skips it): peak RSS on the CPU, the
allocator's peak on a GPU.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
from torch_models import torch_transformer, transformer_weights

import portanet
import portanet.datasets
import portanet.optimizers
import portanet.text
from portanet import layers as pn_layers
from portanet.backend import to_numpy

SEED = 1234
IMPLS = ("portanet", "torch", "reference", "eager")


@dataclass(frozen=True)
class Case:
    """One benchmark: a model, its training recipe and how much data it sees."""

    name: str
    sizes: tuple = (784, 100, 50, 10)
    activation: str = "tanh"
    output_activation: bool = True  # the tutorial applies tanh to the output layer too
    init: str = "uniform"
    loss: str = "mse"
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    batch: int = 64
    dtype: str = "float32"
    samples: int = 60000
    quick_samples: int = 6000
    shuffle: bool = True
    kind: str = "train"  # "train", "predict", "cnn" or "transformer"
    synthetic: bool = False  # random inputs of the first layer's size instead of images
    clip_norm: float | None = None  # gradient clipping by global norm
    note: str = ""


MODERN = dict(sizes=(784, 256, 128, 10), activation="relu", output_activation=False,
              init="he_uniform", loss="softmax_crossentropy", optimizer="adam",
              learning_rate=1e-3, batch=128)
CASES = {case.name: case for case in (
    Case("tutorial-mlp", note="784-100-50-10 tanh, MSE, SGD 0.1, batch 64"),
    Case("modern-mlp", **MODERN, note="784-256-128-10 ReLU, softmax-CE, Adam 1e-3, batch 128"),
    Case("cnn", **{**MODERN, "sizes": (64 * 7 * 7, 128, 10)}, kind="cnn", samples=6000,
         quick_samples=512, note="conv32-pool-conv64-pool-128-10, Adam, batch 128, "
                                 "a subset of the images to keep it short"),
    Case("per-sample", batch=1, dtype="float64", samples=1000, quick_samples=200, shuffle=False,
         note="the tutorial's recipe at batch 1, float64, samples in order"),
    Case("predict", **MODERN, kind="predict", samples=10000, quick_samples=2000,
         note="modern-mlp inference over the test images, time per pass"),
    Case("wide-mlp", **{**MODERN, "sizes": (4096, 4096, 4096, 10), "optimizer": "sgd",
                        "learning_rate": 0.01, "batch": 1024}, samples=16384, quick_samples=4096,
         synthetic=True,
         note="4096-4096-4096-10 ReLU, SGD, batch 1024, synthetic inputs (GPU only)"),
    Case("transformer", kind="transformer", loss="sparse_softmax_crossentropy",
         optimizer="adam", learning_rate=3e-4, clip_norm=1.0, batch=32, samples=512,
         quick_samples=64, note="causal character model: 2 pre-norm blocks, width 64, 4 heads, "
                                "context 64; Adam 3e-4, clip_norm 1, batch 32; windows of the "
                                "standard library's source"),
)}
TRANSFORMER = dict(blocks=2, dim=64, heads=4, context=64)


# -- the machine and the data ---------------------------------------------------------------------
def blas_info():
    """(name and version of NumPy's BLAS, its thread count) via threadpoolctl, if installed."""
    try:
        import threadpoolctl
    except ImportError:
        return "unknown (threadpoolctl not installed)", None
    for pool in threadpoolctl.threadpool_info():
        if pool.get("user_api") == "blas" and "numpy" in pool.get("filepath", ""):
            return f"{pool['internal_api']} {pool['version']}", pool["num_threads"]
    return "unknown", None


def set_threads(threads, with_torch=True):
    """Limit NumPy's BLAS, portanet's step threads (and torch) to ``threads``; return the count
    in use."""
    if threads is not None:
        os.environ["PORTANET_STEP_THREADS"] = str(threads)
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(threads, user_api="blas")
        except ImportError:
            os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    threads = threads or blas_info()[1] or os.cpu_count()
    if with_torch:
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            pass
    return threads


def cpu_model():
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(backend, threads, on_gpu):
    """A dict describing the machine, the libraries and the thread settings."""
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch, torch_version = None, "not installed"
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads,
            "python": platform.python_version(), "numpy": np.__version__, "torch": torch_version,
            "blas": blas_info()[0], "backend": str(backend),
            "backend_version": getattr(sys.modules.get(backend.name), "__version__", "?"),
            "load_average": [round(v, 2) for v in os.getloadavg()]}
    if on_gpu:
        info["gpu"] = gpu_name(backend, torch)
    return info


def gpu_name(backend, torch):
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    if backend.name == "cupy":
        import cupy
        return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return str(backend.device)


def load_images():
    """(train images, train labels, test images, test labels, source): uint8 28x28, or random."""
    try:
        (x, y), (xt, yt) = portanet.datasets.load_fashion_mnist(download=False)
        return x, y, xt, yt, "Fashion-MNIST"
    except portanet.PortanetError:
        rng = np.random.default_rng(0)
        x, xt = (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for n in (60000, 10000))
        y, yt = (rng.integers(0, 10, n).astype(np.uint8) for n in (60000, 10000))
        return x, y, xt, yt, "synthetic (Fashion-MNIST not found; same shapes, random pixels)"


@dataclass
class Data:
    x: np.ndarray  # inputs in [0, 1], shape (n, features), (n, 1, 28, 28) for the CNN
    y: np.ndarray  # one-hot targets
    labels: np.ndarray


@functools.cache
def char_text():
    """The transformer's text: the first 300 000 characters of the offline default."""
    return portanet.text.CharText(portanet.text.load_text(limit=300_000))


def case_data(case, images, n):
    """The first ``n`` samples shaped and typed for ``case``."""
    if case.kind == "transformer":  # consecutive windows of ids; targets shifted by one
        x, y = (to_numpy(a)[:n] for a in char_text().windows(TRANSFORMER["context"]))
        return Data(x, y, y)
    x, labels = (images[2], images[3]) if case.kind == "predict" else images[:2]
    if case.synthetic:
        rng = np.random.default_rng(0)
        x = rng.random((n, case.sizes[0]), dtype=np.float32)
        labels = rng.integers(0, 10, n)
    x, labels = x[:n], np.asarray(labels[:n], dtype=np.int64)
    shape = (n, 1, 28, 28) if case.kind == "cnn" else (n, x[0].size)
    if x.dtype == np.uint8:
        x = x.reshape(shape) / np.float32(255)
    x = x.astype(case.dtype, copy=False)
    y = np.eye(case.sizes[-1], dtype=case.dtype)[labels]
    return Data(x, y, labels)


# -- the three implementations ---------------------------------------------------------------------
def build_portanet(case):
    """The case's model as a portanet Network (the tutorial's style of building it)."""
    if case.kind == "transformer":
        return build_transformer(case)
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


def initial_weights(net):
    """[(kind, weights, bias)] of every layer with parameters, as NumPy arrays."""
    return [(type(layer).__name__, *layer.get_weights()) for layer in net.layers
            if getattr(layer, "params", ())]


def epoch_order(case, n, seed):
    """The batch order of one epoch: portanet's fit draws exactly this from its seeded generator."""
    return np.random.default_rng(seed).permutation(n) if case.shuffle else None


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
        if case.kind == "transformer":
            model = torch_transformer(torch, weights, TRANSFORMER["heads"])
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
    weights = transformer_weights(net) if case.kind == "transformer" else initial_weights(net)
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
    if "reference" in which:
        module = reference_module(portanet.get_backend())
        runs["reference"] = (PlainRun(case, data, weights, module)
                             if module is not None and case.kind in ("train", "predict")
                             else None)
    return runs


# -- measuring -----------------------------------------------------------------------------------
def run_once(run, case, seed):
    """One epoch (or prediction pass) of ``run``: (seconds, epoch loss, predictions)."""
    start = time.perf_counter()
    if case.kind == "predict":
        out = run.predict()
        elapsed = time.perf_counter() - start
        return elapsed, None, out
    loss = run.epoch(seed)
    return time.perf_counter() - start, loss, None


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


def child_memory(args, case, impl):
    """Run ``impl`` on ``case`` alone in a child process: {"rss_mb", "device_mb"} or an error."""
    command = [sys.executable, os.path.abspath(__file__), "--backend", args.backend,
               "--threads", str(args.threads), "--child", f"{case.name}:{impl}"]
    if args.device:
        command += ["--device", args.device]
    if args.quick:
        command.append("--quick")
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(lines[-1])


def child_main(args, on_gpu):
    """``--child CASE:IMPL``: two epochs (or passes) of one implementation, then its peaks."""
    case_name, impl = args.child.split(":")
    case = sized(CASES[case_name], args.quick)
    images = load_images()
    data = case_data(case, images, case.samples)
    del images
    runs = make_runs(case, data, (impl,), "cuda" if on_gpu else "cpu")
    for seed in (SEED, SEED + 1):
        run_once(runs[impl], case, seed)
    device_mb = device_peak_mb(impl, portanet.get_backend(), on_gpu)
    print(json.dumps({"rss_mb": peak_memory_mb(), "device_mb": device_mb}))


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


# -- reporting -----------------------------------------------------------------------------------
def sized(case, quick):
    return replace(case, samples=case.quick_samples) if quick else case


def fmt(value, digits=3):
    if value is None:
        return "—"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"


COLUMNS = (("case", 13), ("time per", 10), ("portanet", 9), ("torch", 9), ("reference", 9),
           ("eager", 9), ("pn/torch", 8), ("pn/ref", 7), ("pn/eager", 8),
           ("peak MB pn/torch/ref/eager", 27), ("final loss pn/torch/ref/eager", 30))


def table_row(cells):
    return "  ".join(f"{cell:<{width}}" if k == 0 else f"{cell:>{width}}"
                     for k, (cell, (_, width)) in enumerate(zip(cells, COLUMNS)))


def row_cells(case, entry):
    """Table cells of one measured case."""
    impls = entry["impls"]

    def time_of(name):
        if impls.get(name) is None:
            return entry["missing"].get(name, "—")
        return fmt(impls[name]["median"])

    def ratio(name):
        if impls.get(name) is None:
            return "—"
        return f"{impls['portanet']['median'] / impls[name]['median']:.2f}"

    def memory(name):
        found = entry["memory"].get(name) or {}
        value = found.get("device_mb") if found.get("device_mb") is not None else found.get(
            "rss_mb")
        return "err" if "error" in found else fmt(value, 4) if value is not None else "—"

    def loss(name):
        return fmt(impls[name]["loss"], 4) if impls.get(name) else "—"

    unit = "pass" if case.kind == "predict" else "epoch"
    return [case.name, f"{unit} (s)", time_of("portanet"), time_of("torch"),
            time_of("reference"), time_of("eager"), ratio("torch"), ratio("reference"),
            ratio("eager"),
            "/".join(memory(name) for name in IMPLS), "/".join(loss(name) for name in IMPLS)]


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=os.environ.get("PORTANET_BACKEND") or "numpy")
    parser.add_argument("--device", default=os.environ.get("PORTANET_DEVICE") or None)
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, from: {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run for CI")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--threads", type=int, help="BLAS and torch threads (default: NumPy's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per case")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--compare-compile", action="store_true",
                        help="also time portanet with compile=False (column 'eager')")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [name for name in args.cases.split(",") if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join(CASES)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def measure(args, backend, on_gpu, images, notes):
    """Time every case (progress on stderr); {case name: its figures}."""
    entries = {}
    for name in args.cases.split(","):
        case = sized(CASES[name], args.quick)
        if name == "wide-mlp" and not on_gpu:
            notes.append(f"{name}: skipped, GPU only (this run is on {backend})")
            continue
        if case.kind == "cnn" and not all(hasattr(pn_layers, n)
                                          for n in ("Conv2D", "MaxPool2D", "Flatten")):
            notes.append(f"{name}: skipped, portanet.layers has no Conv2D/MaxPool2D/Flatten")
            continue
        print(f"timing {name} ...", file=sys.stderr, flush=True)
        data = case_data(case, images, case.samples)
        which = IMPLS if args.compare_compile else IMPLS[:-1]
        runs = make_runs(case, data, which, "cuda" if on_gpu else "cpu")
        impls = time_case(case, data, runs, args.repeats)
        del runs
        entry = {"case": asdict(case), "impls": impls, "memory": {},
                 "missing": {"torch": "torch not installed"} if "torch" not in impls else {}}
        if name == "wide-mlp":
            flops, rate = wide_flops(case, case.samples), matmul_rate(backend, case.dtype)
            achieved = {impl: flops / result["median"] for impl, result in impls.items()}
            entry["flops"] = {"matmul": rate, **achieved}
            notes.append(f"{name}: matmul {rate / 1e12:.1f} TFLOP/s; achieved " + ", ".join(
                f"{impl} {value / 1e12:.1f} TFLOP/s ({value / rate:.0%})"
                for impl, value in achieved.items()))
        notes.append(f"{name}: {case.note}; {case.samples} samples")
        entries[name] = entry
    return entries


def main(argv=None):
    args = parse(argv)
    # a child measuring memory imports torch only if it runs torch
    args.threads = set_threads(args.threads, not args.child or args.child.endswith(":torch"))
    try:
        backend = portanet.set_backend(args.backend, args.device)
    except portanet.BackendError as exc:
        sys.exit(f"benchmarks/run.py: {exc}")
    text = str(backend).lower()
    on_gpu = backend.name == "cupy" or "cuda" in text or "gpu" in text
    if args.child:
        return child_main(args, on_gpu)

    info = machine(backend, args.threads, on_gpu)
    images = load_images()
    notes = []
    entries = measure(args, backend, on_gpu, images, notes)
    if not args.no_memory:
        print("measuring peak memory in child processes ...", file=sys.stderr, flush=True)
        jobs = [(entry, CASES[name], impl) for name, entry in entries.items()
                for impl in entry["impls"]]
        workers = max(1, min(8, (os.cpu_count() or 2) // 2))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            found = pool.map(lambda job: child_memory(args, job[1], job[2]), jobs)
            for (entry, _, impl), memory in zip(jobs, found):
                entry["memory"][impl] = memory
    info["load_average_after"] = [round(v, 2) for v in os.getloadavg()]

    print("portanet benchmark: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"data: {images[4]}; {'quick run, ' if args.quick else ''}median of {args.repeats} "
          "timed epochs after one warm-up, implementations interleaved")
    print("peak MB: not measured (--no-memory)" if args.no_memory else
          f"peak MB: {'device allocator' if on_gpu else 'resident set'} of a child process "
          "running that implementation alone (two epochs)")
    print(table_row([name for name, _ in COLUMNS]))
    for name, entry in entries.items():
        print(table_row(row_cells(sized(CASES[name], args.quick), entry)))
    print("\n".join(notes))
    if args.json:
        report = {"machine": info, "data": images[4], "quick": args.quick, "cases": entries}
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1, default=str)


if __name__ == "__main__":
    main()
