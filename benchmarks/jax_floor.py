"""How fast XLA runs the benchmark transformer without portanet: the floor for the JAX backend.

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
        python benchmarks/jax_floor.py [--repeats 3]

Times, by the process's CPU time and interleaved, epochs of the ``transformer`` case (see
cases.py) trained three ways from the same weights on the same batches: portanet on JAX (its
step compiled), a hand-written pure-JAX twin (``jax.value_and_grad`` of the same model, Adam,
clipping by global norm, one ``jax.jit`` step with donated buffers) and PyTorch, with each
one's last epoch loss (the three should agree to about 1e-4); then the matrix products of one
step alone, XLA's against PyTorch's. One thread each.
"""

import argparse
import math
import os
import statistics
import time

import numpy as np
from cases import CASES, TRANSFORMER, case_data
from run import set_threads
from runners import PortanetRun, TorchRun, build_transformer
from torch_models import transformer_weights

import portanet


def layer_norm(jnp, x, gamma, beta, epsilon=1e-5):
    """Layer normalisation over the last axis, as portanet's LayerNorm."""
    centred = x - x.mean(-1, keepdims=True)
    return centred / jnp.sqrt((centred * centred).mean(-1, keepdims=True) + epsilon) * gamma + beta


def twin_logits(jax, p, ids):
    """The benchmark transformer (runners.build_transformer) from its weights by name."""
    jnp, (n, t), heads = jax.numpy, ids.shape, TRANSFORMER["heads"]
    x = jnp.take(p["0.weights"], ids, axis=0) + p["1.weights"][:t]
    allowed = jnp.tril(jnp.ones((t, t), bool))
    for block in range(TRANSFORMER["blocks"]):
        a, m = f"{2 + 2 * block}.0", f"{3 + 2 * block}.0"
        h = layer_norm(jnp, x, p[f"{a}.0.gamma"], p[f"{a}.0.beta"])
        qkv, d = h @ p[f"{a}.1.qkv_weights"] + p[f"{a}.1.qkv_bias"], x.shape[-1]
        q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(n, t, heads, d // heads)
                   .transpose(0, 2, 1, 3) for i in range(3))
        scores = jnp.where(allowed, (q / math.sqrt(d // heads)) @ k.transpose(0, 1, 3, 2),
                           -jnp.inf)
        context = (jax.nn.softmax(scores, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(n, t, d)
        x = x + context @ p[f"{a}.1.out_weights"] + p[f"{a}.1.out_bias"]
        h = layer_norm(jnp, x, p[f"{m}.0.gamma"], p[f"{m}.0.beta"])
        h = jax.nn.gelu(h @ p[f"{m}.1.weights"] + p[f"{m}.1.bias"], approximate=True)
        x = x + h @ p[f"{m}.3.weights"] + p[f"{m}.3.bias"]
    last = 2 + 2 * TRANSFORMER["blocks"]
    x = layer_norm(jnp, x, p[f"{last}.gamma"], p[f"{last}.beta"])
    return x @ p[f"{last + 1}.weights"] + p[f"{last + 1}.bias"]


class JaxTwin:
    """The pure-JAX twin's training, one compiled step per batch, as portanet's Adam."""

    def __init__(self, case, data, weights):
        import jax
        jnp, tree = jax.numpy, jax.tree_util
        self.case, self.t, self.to_device = case, 0, jax.device_put
        self.x, self.y = jnp.asarray(data.x), jnp.asarray(data.y)
        self.state = [{k: jnp.asarray(w) for k, w in weights.items()}]
        self.state += [{k: jnp.zeros_like(w) for k, w in self.state[0].items()} for _ in "mv"]

        def loss(p, ids, targets):
            logits = jax.nn.log_softmax(twin_logits(jax, p, ids), axis=-1)
            return -jnp.take_along_axis(logits, targets[..., None], axis=-1).mean()

        def step(p, m, v, t, order, start):
            rows = jax.lax.dynamic_slice_in_dim(order, start, case.batch)
            value, g = jax.value_and_grad(loss)(p, self.x[rows], self.y[rows])
            norm = jnp.sqrt(sum(jnp.sum(gi * gi) for gi in tree.tree_leaves(g)))
            g = tree.tree_map(lambda gi: gi * jnp.minimum(1.0, case.clip_norm / (norm + 1e-6)), g)
            m = tree.tree_map(lambda mi, gi: mi + 0.1 * (gi - mi), m, g)
            v = tree.tree_map(lambda vi, gi: vi + 0.001 * (gi * gi - vi), v, g)
            correction = jnp.sqrt(1 - 0.999 ** t)
            rate = case.learning_rate * correction / (1 - 0.9 ** t)
            p = tree.tree_map(
                lambda pi, mi, vi: pi - rate * mi / (jnp.sqrt(vi) + 1e-7 * correction), p, m, v)
            return p, m, v, value
        self.step = jax.jit(step, donate_argnums=(0, 1, 2))

    def epoch(self, seed):
        n = self.x.shape[0]
        order = self.to_device(np.random.default_rng(seed).permutation(n))  # once an epoch
        total = 0.0
        for start in range(0, n, self.case.batch):
            self.t += 1
            *self.state, loss = self.step(*self.state, float(self.t), order, start)
            total = total + loss * self.case.batch
        return float(total) / n


def cpu_seconds(function, *args):
    """``(CPU seconds, result)`` of ``function(*args)``."""
    start = time.process_time()
    result = function(*args)
    return time.process_time() - start, result


def repeated(function, arguments, repeats):
    """``function(*arguments)`` ``repeats`` times, waiting for the last result."""
    for _ in range(repeats):
        out = function(*arguments)
    if hasattr(out, "block_until_ready"):
        out.block_until_ready()


def products(repeats=200):
    """{shape: (XLA seconds, PyTorch seconds)} of the step's matrix products, fastest of three."""
    import jax
    import torch
    n, d, vocabulary = 32 * TRANSFORMER["context"], TRANSFORMER["dim"], 96
    shapes = {"x @ w (2048x64 @ 64x256)": ((n, d), (d, 4 * d), False),
              "x @ w (2048x256 @ 256x64)": ((n, 4 * d), (4 * d, d), False),
              "x.T @ g (2048x64, 2048x256)": ((n, d), (n, 4 * d), True),
              "x.T @ g (2048x256, 2048x64)": ((n, 4 * d), (n, d), True),
              "x.T @ g (2048x64, 2048x64)": ((n, d), (n, d), True),
              "x @ w (2048x64 @ 64x96)": ((n, d), (d, vocabulary), False)}
    rng, found = np.random.default_rng(0), {}
    for name, (shape_a, shape_b, transposed) in shapes.items():
        a, b = (rng.standard_normal(s, dtype=np.float32) for s in (shape_a, shape_b))
        xla = jax.jit((lambda x, y: x.T @ y) if transposed else (lambda x, y: x @ y))
        xla_args = (jax.numpy.asarray(a), jax.numpy.asarray(b))
        xla(*xla_args).block_until_ready()
        torch_args = (torch.tensor(a), torch.tensor(b))
        torch_product = (lambda x, y: x.T @ y) if transposed else (lambda x, y: x @ y)
        found[name] = tuple(min(cpu_seconds(repeated, function, arguments, repeats)[0]
                                for _ in range(3)) / repeats
                            for function, arguments in ((xla, xla_args),
                                                        (torch_product, torch_args)))
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs of each")
    args = parser.parse_args()
    set_threads(1)
    portanet.set_backend("jax")
    case = CASES["transformer"]
    data = case_data(case, None, case.samples)
    portanet.set_seed(1234)
    net = build_transformer(case)
    weights = transformer_weights(net)
    runs = {"portanet": PortanetRun(case, data, net), "pure JAX": JaxTwin(case, data, weights),
            "PyTorch": TorchRun(case, data, weights, "cpu")}
    times, losses = {name: [] for name in runs}, {}
    for round_ in range(args.repeats + 1):  # the first round warms up (compiles)
        for name, run in runs.items():
            seconds, losses[name] = cpu_seconds(run.epoch, 1234 + round_)
            if round_:
                times[name].append(seconds)
    torch_time = statistics.median(times["PyTorch"])
    print(f"transformer, CPU seconds per epoch (median of {args.repeats}), load average "
          f"{[round(v, 2) for v in os.getloadavg()]}:")
    for name, found in times.items():
        median = statistics.median(found)
        print(f"  {name:10s} {median:.3f}  ({median / torch_time:.2f}x PyTorch), last epoch's "
              f"loss {losses[name]:.5f}")
    print("matrix products of one step, CPU microseconds (XLA, PyTorch, ratio):")
    for name, (xla, torch_seconds) in products().items():
        print(f"  {name:30s} {xla * 1e6:8.1f} {torch_seconds * 1e6:8.1f}  "
              f"{xla / torch_seconds:.2f}")


if __name__ == "__main__":
    main()
