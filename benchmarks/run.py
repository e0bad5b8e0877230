"""Side-by-side speed: portanet, PyTorch and a hand-written plain-backend reference.

    python benchmarks/run.py [--backend NAME] [--device DEV] [--cases a,b,...] [--quick]
                             [--json PATH] [--threads N] [--repeats N] [--no-memory]
                             [--compare-compile] [--cpu-time]

Each case trains (or runs) the same model three ways, from portanet's initial weights and with
the same batch order on the same device: portanet on the chosen backend; PyTorch; and, where the
backend has one, a plain reference written once against an array module (NumPy for ``numpy``,
CuPy for ``cupy``): the floor for that backend. Where Keras 3 is importable, it runs the MLPs
(batch above 1), the CNN and ``predict`` on JAX too (column "keras"; ``KERAS_BACKEND=jax``).
portanet trains with ``compile="auto"`` (the step compiled where the backend measured faster:
jax.jit on JAX); ``--compare-compile`` adds portanet with ``compile=False`` ("eager") beside
it, and the compiled/eager ratio. Epochs are interleaved across the implementations, so load
from other processes hits them alike; a time is the median of the timed epochs after one warm-up
epoch. Peak memory comes from a fresh child process per case and implementation
(``--no-memory`` skips it): peak RSS on the CPU, the allocator's peak on a GPU. The cases are
defined in cases.py, the implementations and their timing in runners.py. ``--cpu-time`` times
each epoch by the process's CPU time (all its threads) instead of the wall clock: with
``--threads 1`` on a machine shared with other busy processes, it leaves out the time the
process waited for a core.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import runners
from cases import CASES, case_data, load_images, sized
from runners import (
    IMPLS,
    SEED,
    device_peak_mb,
    make_runs,
    matmul_rate,
    peak_memory_mb,
    run_once,
    time_case,
    wide_flops,
)

import portanet
from portanet import layers as pn_layers


# -- the machine ----------------------------------------------------------------------------------
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
    """The CPU's model name."""
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
    """The GPU's name."""
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    if backend.name == "cupy":
        import cupy
        return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return str(backend.device)


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



# -- reporting -----------------------------------------------------------------------------------
def fmt(value, digits=3):
    """``value`` to ``digits`` significant digits (whole above 1000; a dash for None)."""
    if value is None:
        return "—"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"


COLUMNS = (("case", 13), ("time per", 10), ("portanet", 9), ("torch", 9), ("reference", 9),
           ("keras", 9), ("eager", 9), ("pn/torch", 8), ("pn/ref", 7), ("pn/keras", 8),
           ("keras/torch", 11), ("pn/eager", 8), ("peak MB pn/torch/ref/keras/eager", 32),
           ("final loss pn/torch/ref/keras/eager", 36))


def table_row(cells):
    """One line of the table, each cell padded to its column's width."""
    return "  ".join(f"{cell:<{width}}" if k == 0 else f"{cell:>{width}}"
                     for k, (cell, (_, width)) in enumerate(zip(cells, COLUMNS)))


def row_cells(case, entry):
    """Table cells of one measured case."""
    impls = entry["impls"]

    def time_of(name):
        if impls.get(name) is None:
            return entry["missing"].get(name, "—")
        return fmt(impls[name]["median"])

    def ratio(name, over="portanet"):
        if impls.get(name) is None or impls.get(over) is None:
            return "—"
        return f"{impls[over]['median'] / impls[name]['median']:.2f}"

    def memory(name):
        found = entry["memory"].get(name) or {}
        value = found.get("device_mb") if found.get("device_mb") is not None else found.get(
            "rss_mb")
        return "err" if "error" in found else fmt(value, 4) if value is not None else "—"

    def loss(name):
        return fmt(impls[name]["loss"], 4) if impls.get(name) else "—"

    unit = "pass" if case.kind == "predict" else "epoch"
    return [case.name, f"{unit} (s)", time_of("portanet"), time_of("torch"),
            time_of("reference"), time_of("keras"), time_of("eager"), ratio("torch"),
            ratio("reference"), ratio("keras"), ratio("torch", "keras"), ratio("eager"),
            "/".join(memory(name) for name in IMPLS), "/".join(loss(name) for name in IMPLS)]


def parse(argv):
    """The command line's arguments, checked."""
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
    parser.add_argument("--cpu-time", action="store_true",
                        help="time epochs by the process's CPU time, not the wall clock")
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
        which = [impl for impl in IMPLS if args.compare_compile or impl != "eager"]
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
    """Time the cases, measure their memory, print the table and write the JSON."""
    args = parse(argv)
    runners.clock = runners.CLOCKS["cpu" if args.cpu_time else "wall"]
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
          "timed epochs after one warm-up, implementations interleaved; "
          f"{'CPU' if args.cpu_time else 'wall-clock'} time")
    print("peak MB: not measured (--no-memory)" if args.no_memory else
          f"peak MB: {'device allocator' if on_gpu else 'resident set'} of a child process "
          "running that implementation alone (two epochs)")
    print(table_row([name for name, _ in COLUMNS]))
    for name, entry in entries.items():
        print(table_row(row_cells(sized(CASES[name], args.quick), entry)))
    print("\n".join(notes))
    if args.json:
        report = {"machine": info, "data": images[4], "quick": args.quick,
                  "clock": "cpu" if args.cpu_time else "wall", "cases": entries}
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1, default=str)


if __name__ == "__main__":
    main()
