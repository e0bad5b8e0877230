"""Streamed training beside in-memory training, in one run: samples per second, peak anonymous
memory, and prefetch overlapping a costly map with the step.

    python benchmarks/streaming.py                      # 1 GB file, NumPy backend
    python benchmarks/streaming.py --gigabytes 0.2 --repeats 2 --json out.json

1. Throughput: the modern MLP (784-256-128-10 ReLU, Adam, batch 128, shuffled) trains one epoch
   on a float32 file of ``--gigabytes`` held in memory (``numpy.load``) and on the same file
   memory-mapped (``mmap_mode="r"``, read batch by batch), taking turns ``--repeats`` times. The
   file is in the page cache (it was just written): this measures portanet's streaming, not the
   disk.
2. Memory: a fresh child process trains one streamed epoch on a file of a tenth of the size and
   one on the whole file, sampling its anonymous resident memory (``RssAnon``) every 5 ms; a
   stream holds a few batches, so the peak should not grow with the file.
3. Prefetch: a Loader whose ``map`` costs about as much as a step (elementwise passes written
   into one buffer, and the same passes allocating new arrays); the epoch against the step
   alone (no map) and the map alone (iterating the loader without training). Without overlap
   the epoch would take their sum.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import portanet
from portanet import ActivationLayer, Dense, Loader, Network

FEATURES, CLASSES, BATCH = 784, 10, 128


def network():
    portanet.set_seed(0)
    net = Network([Dense(FEATURES, 256, init="he_uniform"), ActivationLayer("relu"),
                   Dense(256, 128, init="he_uniform"), ActivationLayer("relu"),
                   Dense(128, CLASSES)])
    net.use("softmax_crossentropy")
    return net


def write_files(folder, samples):
    """``x.npy`` (float32, samples x 784, values in [0, 1)) and ``y.npy`` (int64 classes)."""
    rs = np.random.default_rng(0)
    x = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype="float32",
                                  shape=(samples, FEATURES))
    for start in range(0, samples, 65536):  # written in parts: never the whole file in memory
        stop = min(start + 65536, samples)
        x[start:stop] = rs.random((stop - start, FEATURES), dtype="float32")
    x.flush()
    del x
    np.save(folder / "y.npy", rs.integers(0, CLASSES, samples))


def epoch_seconds(net, *data):
    """One epoch on arrays ``x, y`` (batches of BATCH, shuffled) or on a Loader."""
    batches = {} if isinstance(data[0], Loader) else {"batch_size": BATCH, "shuffle": True}
    started = time.perf_counter()
    net.fit(*data, epochs=1, optimizer="adam", verbose=0, **batches)
    return time.perf_counter() - started


def throughput(folder, repeats):
    """Seconds per epoch in memory and streamed, taking turns; samples."""
    in_memory = (np.load(folder / "x.npy"), np.load(folder / "y.npy"))
    mapped = (np.load(folder / "x.npy", mmap_mode="r"), np.load(folder / "y.npy", mmap_mode="r"))
    times = {"in memory": [], "streamed": []}
    net = network()
    epoch_seconds(net, in_memory[0][:4096], in_memory[1][:4096])  # warm-up
    for _ in range(repeats):
        times["in memory"].append(epoch_seconds(net, *in_memory))
        times["streamed"].append(epoch_seconds(net, *mapped))
    return times, len(in_memory[0])


def anonymous_memory() -> int:
    """This process's RssAnon in bytes (0 where /proc does not say)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def child_peak(folder, samples):
    """In this (child) process: the peak RssAnon of one streamed epoch over ``samples``."""
    x = np.load(folder / "x.npy", mmap_mode="r")[:samples]
    y = np.load(folder / "y.npy", mmap_mode="r")[:samples]
    net = network()
    peak, done = [anonymous_memory()], threading.Event()

    def sample():
        while not done.wait(0.005):
            peak[0] = max(peak[0], anonymous_memory())

    watcher = threading.Thread(target=sample)
    watcher.start()
    before = anonymous_memory()
    epoch_seconds(net, x, y)
    done.set()
    watcher.join()
    return {"before": before, "peak": peak[0]}


def child(*args, **env):
    """The figures a child process of this script prints (its last line, JSON)."""
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], text=True,
                         capture_output=True, check=True, env={**os.environ, **env})
    return json.loads(out.stdout.splitlines()[-1])


def memory(folder, samples):
    return {label: {"samples": count, **child("memory", folder, count)}
            for label, count in (("tenth", samples // 10), ("whole", samples))}


def in_place(rounds, x, y):
    """A map of ``rounds`` elementwise passes over the batch into one output buffer (NumPy
    releases the GIL in each)."""
    out = np.empty_like(x)
    np.copyto(out, x)
    for _ in range(rounds):
        np.sqrt(out, out=out)
        np.multiply(out, out, out=out)
    return out, y


def allocating(rounds, x, y):
    """The same passes, each into a new array (memory allocated and freed in the loader's
    thread while the step allocates in its own)."""
    for _ in range(rounds):
        x = np.sqrt(x) * np.sqrt(x)
    return x, y


def map_seconds(x, y, kind, rounds):
    """Seconds to iterate a Loader over ``x``, ``y`` mapping ``kind`` of ``rounds`` rounds."""
    started = time.perf_counter()
    for _ in Loader(x, y, batch_size=BATCH, map=functools.partial(kind, rounds)):
        pass
    return time.perf_counter() - started


def prefetch(folder, repeats):
    """Epoch seconds: the step alone, and for each kind of map costing about a step, the map
    alone and both with prefetch (in a process whose BLAS and step use one core, so the map
    has the other)."""
    x = np.load(folder / "x.npy", mmap_mode="r")[:60000]
    y = np.load(folder / "y.npy", mmap_mode="r")[:60000]
    net = network()
    step = statistics.median(epoch_seconds(net, Loader(x, y, batch_size=BATCH))
                             for _ in range(repeats))
    figures = {"step alone": step}
    for kind in (in_place, allocating):
        rounds = max(1, round(8 * step / map_seconds(x, y, kind, 8)))  # costing about a step
        map_alone = map_seconds(x, y, kind, rounds)
        both = statistics.median(epoch_seconds(net, Loader(
            x, y, batch_size=BATCH, map=functools.partial(kind, rounds)))
            for _ in range(repeats))
        figures[kind.__name__] = {"map alone": map_alone, "both": both, "rounds": rounds}
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, folder, number = args.child
        run = child_peak if kind == "memory" else prefetch
        print(json.dumps(run(Path(folder), int(number))))
        return
    samples = int(args.gigabytes * 1e9 / (FEATURES * 4))
    print(f"portanet {portanet.__version__} on {portanet.get_backend()}, "
          f"{os.cpu_count()} cores; {samples} samples, {samples * FEATURES * 4 / 1e9:.2f} GB")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_files(folder, samples)
        times, _ = throughput(folder, args.repeats)
        medians = {k: statistics.median(v) for k, v in times.items()}
        rates = {k: samples / v for k, v in medians.items()}
        print("| data | s/epoch (median) | samples/s | each epoch (s) |\n|---|---|---|---|")
        for k in times:
            print(f"| {k} | {medians[k]:.2f} | {rates[k]:,.0f} | "
                  f"{', '.join(f'{t:.2f}' for t in times[k])} |")
        print(f"streamed / in memory samples/s: {rates['streamed'] / rates['in memory']:.3f}")
        peaks = memory(folder, samples)
        for k, v in peaks.items():
            print(f"streamed epoch on {v['samples']} samples ({k} of the file): RssAnon "
                  f"{v['before'] / 2**20:.0f} MiB before, peak {v['peak'] / 2**20:.0f} MiB")
        growth = (peaks["whole"]["peak"] - peaks["tenth"]["peak"]) / 2**20
        print(f"peak growth from a tenth to the whole file: {growth:.0f} MiB")
        overlap = child("prefetch", folder, args.repeats, OPENBLAS_NUM_THREADS="1",
                        PORTANET_STEP_THREADS="1")
        for kind in ("in_place", "allocating"):
            figures = overlap[kind]
            slowest = max(overlap["step alone"], figures["map alone"])
            print(f"prefetch, {kind} map of {figures['rounds']} rounds (60000 samples): step "
                  f"alone {overlap['step alone']:.2f} s, map alone {figures['map alone']:.2f} s, "
                  f"both {figures['both']:.2f} s = {figures['both'] / slowest:.2f}x the larger "
                  f"(the sum would be "
                  f"{(overlap['step alone'] + figures['map alone']) / slowest:.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"samples": samples, "times": times,
                                               "memory": peaks, "prefetch": overlap}, indent=1))


if __name__ == "__main__":
    main()
