"""Data-parallel scaling: training throughput on 1 and N MPI processes, side by side.

    python benchmarks/scaling.py [--processes 1,2] [--cases modern-mlp,cnn] [--epochs 3]
                                 [--backend NAME] [--json PATH]

For each case (the models of ``run.py``, same data and batch size) it runs, one after another:
one plain process (``fit`` without MPI) on one BLAS thread and on all cores, then ``mpirun -n P``
for each P with ``fit(distributed=True)`` (portanet gives each rank cores // P BLAS threads).
Every run does one warm-up epoch and reports the median of the timed epochs: samples per
second, milliseconds per step, and the share of the step spent exchanging gradients (waiting
for slower ranks included).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import portanet
from portanet import distributed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import CASES, build_portanet, case_data, load_images  # noqa: E402

SEED = 1234


def worker(args):
    """One process (or MPI rank): time ``args.epochs`` epochs of one case; rank 0 prints JSON."""
    world = distributed.init() if args.distributed else None
    portanet.set_backend(args.backend)
    case = CASES[args.case]
    images = load_images()
    data = case_data(case, images, case.samples)
    portanet.set_seed(SEED)
    net = build_portanet(case)
    backend = portanet.get_backend()
    x, y = backend.asarray(data.x, case.dtype), backend.asarray(data.y, case.dtype)
    optimizer = portanet.optimizers.get(case.optimizer, case.learning_rate)
    times, shares, losses = [], [], []
    for epoch in range(args.epochs + 1):  # the first is the warm-up
        before = world.comm_seconds if world else 0.0
        started = time.perf_counter()
        history = net.fit(x, y, epochs=1, batch_size=case.batch, shuffle=True,
                          optimizer=optimizer, verbose=0, distributed=world or False)
        elapsed = time.perf_counter() - started
        if epoch:
            times.append(elapsed)
            shares.append(((world.comm_seconds if world else 0.0) - before) / elapsed)
            losses.append(history.history["loss"][-1])
    if world is None or world.is_root:
        seconds = statistics.median(times)
        steps = -(-case.samples // case.batch)
        print(json.dumps({
            "case": case.name, "processes": world.size if world else 1,
            "mpi": world is not None,
            "threads": (world and world.threads) or os.environ.get("OMP_NUM_THREADS", "all"),
            "transport": world.transport if world else "-", "samples": case.samples,
            "batch": case.batch, "epoch_s": seconds, "samples_per_s": case.samples / seconds,
            "step_ms": 1000 * seconds / steps, "comm_share": statistics.median(shares),
            "loss": losses[-1], "data": images[4]}))


def run(args, case, processes, threads=None):
    """One measurement in a fresh process: under mpirun when ``processes`` is given, with
    ``threads`` BLAS/torch threads when given (else all cores, or portanet's share per rank)."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--case", case,
               "--epochs", str(args.epochs), "--backend", args.backend]
    if processes:
        command = [args.mpirun, "-n", str(processes), *args.mpirun_flags, *command,
                   "--distributed"]
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"scaling.py: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2", help="MPI process counts to run")
    parser.add_argument("--cases", default="modern-mlp,cnn")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after a warm-up")
    parser.add_argument("--backend", default=os.environ.get("PORTANET_BACKEND") or "numpy")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    args.mpirun = shutil.which("mpirun") or shutil.which("mpiexec")
    if args.mpirun is None:
        sys.exit("scaling.py: no mpirun on PATH: pip install 'portanet[mpi]'")
    version = subprocess.run([args.mpirun, "--version"], capture_output=True, text=True).stdout
    args.mpirun_flags = ["--oversubscribe"] if "Open MPI" in version else []

    rows = []
    for case in args.cases.split(","):
        one_core = run(args, case, None, threads=1)
        plain = run(args, case, None)
        rows += [one_core, plain]
        for processes in map(int, args.processes.split(",")):
            rows.append(run(args, case, processes))
        for row in rows[-2 - len(args.processes.split(",")):]:
            row["vs_one_core"] = row["samples_per_s"] / one_core["samples_per_s"]
            row["vs_all_cores"] = row["samples_per_s"] / plain["samples_per_s"]
    print(f"portanet data-parallel scaling: backend {args.backend}, {os.cpu_count()} cores, "
          f"data: {rows[0]['data']}; median of {args.epochs} epochs after a warm-up")
    print(f"{'case':<11} {'processes':>9} {'threads':>7} {'samples/s':>10} {'vs 1 core':>9} "
          f"{'vs 1 process':>12} {'step ms':>8} {'comm share':>10} {'final loss':>10}")
    for row in rows:
        label = f"{row['processes']}" + (" (MPI)" if row["mpi"] else " plain")
        print(f"{row['case']:<11} {label:>9} {row['threads']:>7} {row['samples_per_s']:>10,.0f} "
              f"{row['vs_one_core']:>9.2f} {row['vs_all_cores']:>12.2f} {row['step_ms']:>8.2f} "
              f"{row['comm_share']:>10.0%} {row['loss']:>10.4f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
