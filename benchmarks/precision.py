"""Side-by-side speed of the precision policies: one model trained in float32, mixed_bfloat16
and mixed_float16 on one backend, in one process.

    python benchmarks/precision.py [--backend torch|jax|cupy] [--device DEV]
                                   [--cases modern-mlp,transformer,wide-mlp] [--repeats N]
                                   [--compile auto|on|off] [--quick]

Each round trains every policy one epoch, from the same initial weights and batch order (the
rounds interleaved, so load from other processes hits them alike); a time is the median of the
timed epochs after one warm-up epoch, and each policy's is given as a ratio to float32's. The
cases are those of ``run.py`` (cases.py): "modern-mlp" and "transformer" on their data,
"wide-mlp" on synthetic inputs. Policies the backend lacks are left out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from cases import CASES, case_data, load_images, sized
from runners import SEED, build_portanet

import portanet
from portanet.precision import POLICIES

PRECISIONS = (None, *POLICIES)


def build(case, precision):
    """The case's network (same seed, so the same weights for every policy) and optimizer."""
    portanet.set_seed(SEED)
    net = build_portanet(case)
    net.precision = precision
    optimizer = portanet.optimizers.get(case.optimizer, case.learning_rate)
    optimizer.clip_norm = case.clip_norm
    return net, optimizer


def time_case(case, images, precisions, repeats, compile):
    """Median seconds per epoch of each policy."""
    data = case_data(case, images, case.samples)
    y = data.labels if case.loss == "sparse_softmax_crossentropy" else data.y
    runs = {precision: build(case, precision) for precision in precisions}
    times = {precision: [] for precision in precisions}
    losses = {}
    for round_ in range(repeats + 1):  # the first round warms up (and compiles)
        for precision, (net, optimizer) in runs.items():
            portanet.set_seed(round_)
            start = time.perf_counter()
            history = net.fit(data.x, y, epochs=1, batch_size=case.batch, shuffle=True,
                              optimizer=optimizer, verbose=0, compile=compile)
            elapsed = time.perf_counter() - start
            if round_:
                times[precision].append(elapsed)
            losses[precision] = history.history["loss"][-1]
        print(f"  round {round_} ({'warm-up' if not round_ else 'timed'}), each one's loss: "
              + ", ".join(f"{p or 'float32'} {loss:.4f}" for p, loss in losses.items()),
              flush=True)
    return {precision: statistics.median(values) for precision, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=os.environ.get("PORTANET_BACKEND") or "torch")
    parser.add_argument("--device", default=os.environ.get("PORTANET_DEVICE") or None)
    parser.add_argument("--cases", default="modern-mlp,transformer")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per policy")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args()
    backend = portanet.set_backend(args.backend, args.device)
    compile = {"auto": "auto", "on": True, "off": False}[args.compile]
    precisions = [p for p in PRECISIONS
                  if p is None or POLICIES[p].compute in backend.library.half_dtypes]
    images = load_images()
    print(f"backend {backend}, compile={args.compile}, torch threads/BLAS as set by the "
          "environment")
    for name in args.cases.split(","):
        case = sized(CASES[name], args.quick)
        print(f"{name} ({case.samples} samples, batch {case.batch}):")
        medians = time_case(case, images, precisions, args.repeats, compile)
        for precision, seconds in medians.items():
            print(f"  {str(precision or 'float32'):<16}{seconds:8.3f} s/epoch   "
                  f"{seconds / medians[None]:5.2f}x float32")


if __name__ == "__main__":
    main()
