"""Sharing the machine: cores, threads, freed memory and the MPI rank on the node."""

import platform
import sys

import pytest

from portanet.backend import resources


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc's mallopt exists only on Linux with glibc")
def test_freed_memory_is_kept_unless_the_user_says_otherwise(monkeypatch):
    for variable in resources.MALLOC_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("PORTANET_KEEP_FREED_MEMORY", raising=False)
    assert resources.keep_freed_memory() is True
    monkeypatch.setenv("PORTANET_KEEP_FREED_MEMORY", "0")
    assert resources.keep_freed_memory() is False
    monkeypatch.delenv("PORTANET_KEEP_FREED_MEMORY")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")  # the user tuned glibc already
    assert resources.keep_freed_memory() is False


def test_local_rank_comes_from_the_launcher(monkeypatch):
    for variable in resources.LOCAL_RANK_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert resources.local_rank() == 0
    monkeypatch.setenv("SLURM_LOCALID", "3")
    assert resources.local_rank() == 3


def test_cpu_cores_are_shared_unless_the_user_set_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert resources.share_cpu_cores(4) is None
    assert resources.share_cpu_cores(1) is None
