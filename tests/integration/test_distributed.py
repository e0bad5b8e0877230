"""Data-parallel training over MPI: 2-rank jobs started with mpirun, on the backend under test.

The tests of how a job stops (a rank that raises, hangs, dies or is interrupted), of the example
script and of ``portanet train --distributed`` exercise host-side code (the world, the launcher,
argument handling): they run in the numpy session only (marker ``backend_independent``).
test_two_ranks_end_identical_and_equal_to_one_process trains on every backend.

Without mpirun and mpi4py these tests skip, unless PORTANET_REQUIRE_MPI=1 (set by nox), which
turns the skip into a failure.
"""

import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import distributed_worker as worker
import numpy as np
import pytest

import portanet
from portanet import distributed
from portanet.cli import main

WORKER = Path(__file__).with_name("distributed_worker.py")
MPIRUN = shutil.which("mpirun") or shutil.which("mpiexec")


def launcher_flags():
    """Open MPI wants --oversubscribe to start more ranks than cores; others need nothing."""
    version = subprocess.run([MPIRUN, "--version"], capture_output=True, text=True).stdout
    return ["--oversubscribe"] if "Open MPI" in version else []


def mpi_job(args, cwd, mpi_timeout=None, limit=180, on_numpy=False):
    """Run ``args`` (after python) on 2 ranks, on the backend under test or ``on_numpy``:
    (CompletedProcess, seconds)."""
    missing = ("no mpirun or mpiexec on PATH" if MPIRUN is None else
               "mpi4py is not installed" if importlib.util.find_spec("mpi4py") is None else None)
    if missing:
        required = os.environ.get("PORTANET_REQUIRE_MPI") == "1"
        (pytest.fail if required else pytest.skip)(f"{missing}: pip install 'portanet[mpi]'")
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    if mpi_timeout is not None:
        env["PORTANET_MPI_TIMEOUT"] = str(mpi_timeout)
    if on_numpy:
        env.update(PORTANET_BACKEND="numpy", PORTANET_DEVICE="")
    started = time.monotonic()
    done = subprocess.run([MPIRUN, "-n", "2", *launcher_flags(), sys.executable, *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=limit)
    return done, time.monotonic() - started


def test_two_ranks_end_identical_and_equal_to_one_process(backend, tmp_path):
    done, _ = mpi_job([WORKER, "train", tmp_path], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rank0, rank1 = (np.load(tmp_path / f"rank{r}.npz") for r in (0, 1))
    for key in rank0.files:  # every array, BatchNorm statistics and figures included
        assert np.array_equal(rank0[key], rank1[key]), key
    assert int(rank0["size"]) == 2 and str(rank0["transport"]).startswith("host memory")
    assert not list((tmp_path / "checkpoints1").iterdir())  # only rank 0 writes checkpoints
    saved = [w for layer in portanet.load(tmp_path / "checkpoints0" / f"net-{worker.EPOCHS}.npz")
             .layers for w in layer.get_weights()]
    for k, expected in enumerate(saved):
        np.testing.assert_array_equal(rank0[f"w{k}"], expected)
    steps_per_epoch = math.ceil(worker.TRAINING_SAMPLES / worker.BATCH)
    assert int(rank0["steps"]) == (2 * worker.EPOCHS + worker.LM_EPOCHS) * steps_per_epoch

    net = worker.build()  # one process, the same global batches
    history = worker.train(net)
    weights = [w for layer in net.layers for w in layer.get_weights()]
    assert len(weights) == len([key for key in rank0.files if key.startswith("w")])
    for k, expected in enumerate(weights):
        np.testing.assert_allclose(rank0[f"w{k}"], expected, rtol=1e-9, atol=1e-12)
    for key in ("loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(rank0[key], history.history[key], rtol=1e-9)
    language_model = worker.build_transformer()
    worker.train_transformer(language_model)
    lm_weights = worker.parameters(language_model)
    assert len(lm_weights) == len([key for key in rank0.files if key.startswith("lm")])
    for k, expected in enumerate(lm_weights):
        np.testing.assert_allclose(rank0[f"lm{k}"], expected, rtol=1e-9, atol=1e-12)
    _, _, x_val, y_val = worker.data()
    scores = net.evaluate(x_val, y_val)
    np.testing.assert_allclose(rank0["evaluated"], [scores["loss"], scores["accuracy"]],
                               rtol=1e-9)


def test_two_ranks_streaming_read_their_shares_and_equal_one_process(backend, tmp_path):
    done, _ = mpi_job([WORKER, "stream", tmp_path], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rank0, rank1 = (np.load(tmp_path / f"stream{r}.npz") for r in (0, 1))
    net = worker.build()  # one process, the same global batches, from arrays
    history = worker.train(net)
    weights = [w for layer in net.layers for w in layer.get_weights()]
    for k, expected in enumerate(weights):
        assert np.array_equal(rank0[f"arr_{k}"], rank1[f"arr_{k}"])
        np.testing.assert_allclose(rank0[f"arr_{k}"], expected, rtol=1e-9, atol=1e-12)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(rank0[key], history.history[key], rtol=1e-9)
    # each rank read its share of every batch (after one sample read to check the shapes)
    reads = [rank["read"][1:] for rank in (rank0, rank1)]
    n = worker.TRAINING_SAMPLES
    shares = [sum(hi - lo for lo, hi in (distributed._shard_of(min(start + worker.BATCH, n) -
                                                               start, rank, 2)
                                         for start in range(0, n, worker.BATCH)))
              for rank in (0, 1)]
    assert [len(r) for r in reads] == [worker.EPOCHS * share for share in shares]
    assert shares[0] + shares[1] == n and min(shares) > 0
    np.testing.assert_array_equal(np.sort(np.concatenate(reads)),
                                  np.repeat(np.arange(n), worker.EPOCHS))


@pytest.mark.parametrize("how, says", [
    ("raise", r"rank 1 of 2: RuntimeError: sabotage on rank 1\. Stopping every rank"),
    ("hang", r"rank 0 of 2: no answer from the other ranks for 10 s in the gradient allreduce"),
    ("kill", r"rank 1 .*signal 9|no answer from the other ranks"),  # the launcher, or us
])
@pytest.mark.backend_independent
def test_a_failing_rank_stops_the_whole_job(tmp_path, how, says):
    # 10 s: long enough for a loaded machine to start both ranks, short enough to wait for
    done, seconds = mpi_job([WORKER, how, tmp_path], tmp_path, mpi_timeout=10, on_numpy=True)
    assert done.returncode != 0
    assert re.search(says, done.stdout + done.stderr, re.DOTALL), done.stdout + done.stderr
    assert not list(tmp_path.glob("finished*.npy"))  # no rank went on as if nothing happened
    assert seconds < 90


@pytest.mark.backend_independent
def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step(tmp_path):
    done, _ = mpi_job([WORKER, "interrupt", tmp_path], tmp_path, on_numpy=True)
    assert done.returncode == 0, done.stdout + done.stderr
    rank0, rank1 = (np.load(tmp_path / f"finished{r}.npy") for r in (0, 1))
    assert rank0[0] == 1 and rank0[1] == 3  # interrupted, after the third step
    assert np.array_equal(rank0, rank1)  # the same weights on both ranks


@pytest.mark.backend_independent  # the command line's --distributed; the backend's distributed
# training (compiled where it compiles): test_two_ranks_end_identical_and_equal_to_one_process
def test_portanet_train_distributed_matches_one_process(backend, tmp_path, capsys):
    options = ["train", "--epochs", "3", "--limit", "300", "--backend", backend.name]
    done, _ = mpi_job(["-m", "portanet", *options, "--distributed", "--save", "net.npz"],
                      tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.count("epoch 3/3") == 1  # only rank 0 prints
    assert "2 MPI processes" in out and "gradients summed through host memory" in out
    assert main(options) == 0
    single = capsys.readouterr().out

    def figures(text):
        last = next(line for line in text.splitlines() if line.startswith("epoch 3/3"))
        accuracy = text.split("\naccuracy")[-1].split()[0]
        return [float(value) for value in re.findall(r"=([\d.]+)", last)] + [float(accuracy)]

    np.testing.assert_allclose(figures(out), figures(single), rtol=1e-3, atol=2e-6)
    saved = portanet.load(tmp_path / "net.npz")  # rank 0 saved the trained network
    assert saved.predict(np.zeros((1, 64))).shape == (1, 10)


@pytest.mark.backend_independent
def test_distributed_example_runs(tmp_path):
    example = Path(__file__).parents[2] / "examples" / "distributed.py"
    done, _ = mpi_job([example, "--dataset", "digits", "--epochs", "2", "--save", "net.npz"],
                      tmp_path, on_numpy=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("test loss") == 1 and "2 processes" in done.stdout
    assert (tmp_path / "net.npz").exists()


# -- without MPI ----------------------------------------------------------------------------
@pytest.mark.parametrize("n, size", [(10, 2), (7, 3), (1, 2), (0, 2), (5, 5)])
def test_shards_cover_every_sample_once_in_order(n, size):
    shards = [distributed._shard_of(n, rank, size) for rank in range(size)]
    assert [lo for lo, _ in shards] == [0] + [hi for _, hi in shards[:-1]]
    assert shards[-1][1] == n
    sizes = [hi - lo for lo, hi in shards]
    assert max(sizes) - min(sizes) <= 1


def test_distributed_argument_is_checked():
    assert distributed.resolve(False) is distributed.SINGLE  # a world of one
    assert distributed.SINGLE.size == 1 and distributed.SINGLE.shard(3, 7) == (3, 7)
    with pytest.raises(portanet.InputError, match="distributed must be True, False"):
        distributed.resolve("yes")


def test_missing_mpi4py_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes "from mpi4py import MPI" fail
    with pytest.raises(portanet.DistributedError, match=r"portanet\[mpi\]"):
        distributed.World()


@pytest.mark.parametrize("value", ["ten", "0", "-5", ""])
def test_timeout_must_be_positive_seconds(value):
    with pytest.raises(portanet.InputError, match="positive number of seconds"):
        distributed._seconds(value)
    assert distributed._seconds("2.5") == 2.5
