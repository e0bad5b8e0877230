"""Array operations per training step: the proxy for GPU kernel launches.

    PORTANET_BACKEND=torch python benchmarks/ops.py      # eager: top-level aten ops per step
    PORTANET_BACKEND=jax python benchmarks/ops.py        # compiled: XLA programs and fusions

On torch, the profiler counts the top-level ATen compute operations of fit's steps (the modern
MLP, 784-256-128-10 ReLU, softmax cross-entropy, Adam, batch 128), averaged over the steps of
one epoch after a warm-up; views and metadata operations (reshape, slices, transposes) launch
no kernel and are not counted. On JAX, a compiled step is one XLA program per step; the count
given is the number of fused kernels in it (the launches it makes on a GPU).
"""

from __future__ import annotations

import collections
import sys

import numpy as np

import portanet
from portanet.models import modern_mlp
from portanet.optimizers import Adam
from portanet.training import cache
from portanet.training.step import Batches

BATCH, STEPS = 128, 40
# ATen operations that only make views or read metadata: no kernel launch on a GPU
VIEWS = {"aten::view", "aten::reshape", "aten::_reshape_alias", "aten::slice", "aten::t",
         "aten::transpose", "aten::permute", "aten::expand", "aten::as_strided",
         "aten::unsqueeze", "aten::squeeze", "aten::alias", "aten::detach", "aten::select",
         "aten::numpy_T", "aten::matrix_H", "aten::mT", "aten::lift_fresh", "aten::empty",
         "aten::empty_like", "aten::resolve_conj", "aten::resolve_neg", "aten::result_type",
         "aten::_unsafe_view", "aten::expand_as", "aten::item", "aten::_local_scalar_dense",
         "aten::is_nonzero", "aten::empty_strided", "aten::set_", "aten::flatten"}


def problem():
    gen = np.random.default_rng(0)
    x = gen.random((BATCH * STEPS, 784), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[gen.integers(0, 10, BATCH * STEPS)]
    portanet.set_seed(0)
    return modern_mlp((784,), 10), x, y


def torch_counts():
    from torch.profiler import ProfilerActivity, profile

    net, x, y = problem()
    optimizer = Adam()
    net.fit(x, y, epochs=1, batch_size=BATCH, optimizer=optimizer, verbose=0)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        net.fit(x, y, epochs=1, batch_size=BATCH, shuffle=True, optimizer=optimizer, verbose=0)
    top = [event for event in prof.events() if event.cpu_parent is None
           and event.name.startswith("aten::") and event.name not in VIEWS]
    counts = collections.Counter(event.name for event in top)
    print(f"torch backend, eager: {len(top) / STEPS:.1f} array operations per step "
          f"({len(top)} over {STEPS} steps and the epoch's bookkeeping)")
    for name, count in counts.most_common():
        print(f"  {name:32s} {count / STEPS:6.2f} per step")


def jax_counts():
    import jax

    net, x, y = problem()
    optimizer = Adam()
    history = net.fit(x, y, epochs=1, batch_size=BATCH, optimizer=optimizer, verbose=0)
    if history.compiled == "eager":
        sys.exit("the step did not compile (PORTANET_COMPILE=0?)")
    cached = list(net.cache.values()) + list(cache.SHARED.values())
    jitted = [value for value in cached if hasattr(value, "parts")][0].parts[0].compiled
    step = [value for value in cached if type(value).__name__ == "TrainStep"][0]
    params = step.layout.gather()
    batches = Batches(
        *(portanet.get_backend().asarray(a) for a in (x, y)), indexed=True)
    batches.start_epoch(None)
    text = jitted.lower(params, [], optimizer.state, portanet.get_backend().asarray(0.0),
                        batches(0, BATCH), optimizer.scalars(), []).compile().as_text()
    fusions = sum(" fusion(" in line for line in text.splitlines())
    print(f"jax backend, compiled ({jax.devices()[0].platform}): 1 XLA program per step, "
          f"{fusions} fused kernels in it")


if __name__ == "__main__":
    {"torch": torch_counts, "jax": jax_counts}.get(portanet.get_backend().name, lambda: sys.exit(
        "run with PORTANET_BACKEND=torch (eager operation count) or jax (compiled step)"))()
