"""Backend selection, device handling, seeding and the rule that layers never import array
libraries by name."""


import numpy as np
import pytest
from helpers import assert_backend_array

import portanet
from portanet import backend as backend_module
from portanet.cli import main


def test_unknown_backend_lists_valid_names():
    with pytest.raises(portanet.BackendError) as info:
        portanet.set_backend("tensorflow")
    for name in portanet.BACKENDS:
        assert name in str(info.value)


def test_empty_env_value_means_numpy(monkeypatch):
    monkeypatch.setenv("PORTANET_BACKEND", "")
    monkeypatch.setenv("PORTANET_DEVICE", "  ")
    assert portanet.set_backend().name == "numpy"
    assert portanet.get_backend().name == "numpy"


def test_env_selects_backend(monkeypatch, backend):
    monkeypatch.setenv("PORTANET_BACKEND", backend.name)
    assert portanet.set_backend().name == backend.name


def test_missing_backend_names_the_install_command(monkeypatch):
    monkeypatch.setattr(backend_module.libraries.LIBRARIES["cupy"], "module",
                        "cupy_not_installed_here")
    with pytest.raises(portanet.BackendError, match="not installed.*pip install"):
        portanet.set_backend("cupy")


def test_numpy_on_a_gpu_device_is_refused():
    with pytest.raises(portanet.BackendError, match="CPU only"):
        portanet.set_backend("numpy", device="cuda")


def test_bad_device_text():
    with pytest.raises(portanet.BackendError, match="not understood"):
        portanet.set_backend("numpy", device="cuda:x")


def test_cuda_without_gpu_fails_loudly(backend):
    if backend.name not in ("torch", "jax"):
        pytest.skip(f"device probing of cuda is tested on torch and jax; this run is {backend}")
    if "cuda" in str(backend).lower() or "gpu" in str(backend).lower():
        pytest.skip("this machine has a GPU: the no-GPU error cannot happen here")
    with pytest.raises(portanet.BackendError, match="(?i)cuda|gpu"):
        portanet.set_backend(backend.name, device="cuda")


def test_seed_gives_the_same_network_and_draws_go_to_the_backend(backend):
    portanet.set_seed(5)
    first = portanet.FCLayer(3, 4)
    portanet.set_seed(5)
    second = portanet.FCLayer(3, 4)
    np.testing.assert_array_equal(first.get_weights()[0], second.get_weights()[0])
    assert_backend_array(first.weights, backend, "float32")
    assert_backend_array(portanet.FCLayer(2, 2, dtype="float64").bias, backend, "float64")


def test_same_seed_same_weights_as_on_numpy(backend):
    with portanet.using_backend("numpy"):
        portanet.set_seed(9)
        expected = portanet.FCLayer(5, 2).get_weights()
    portanet.set_seed(9)
    for mine, theirs in zip(portanet.FCLayer(5, 2).get_weights(), expected):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.backend_independent  # the host generator
def test_seeds_are_integers_from_0_and_backend_names_are_checked_without_importing():
    for seed in (-1, 1.5, True, "1"):
        with pytest.raises(portanet.InputError, match="seed must be an integer >= 0"):
            portanet.set_seed(seed)
    portanet.set_seed(np.int64(3))
    portanet.set_seed(None)  # fresh entropy
    assert backend_module.backend_name(" Array-API-Strict ") == "array_api_strict"
    with pytest.raises(portanet.BackendError, match="unknown backend 'tf': choose one of numpy"):
        backend_module.backend_name("tf")


def test_info_command_lists_every_backend(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in portanet.BACKENDS:
        assert name in out
    assert "selected:" in out
    threads = portanet.backend.step_threads(portanet.get_backend().name)
    assert (f"split large batches between {threads} threads" in out) == (threads > 1)


def test_env_device_goes_with_the_env_backend(monkeypatch):
    monkeypatch.setenv("PORTANET_BACKEND", "numpy")
    monkeypatch.setenv("PORTANET_DEVICE", "cuda")
    with pytest.raises(portanet.BackendError, match="CPU only"):
        portanet.set_backend()
    monkeypatch.setenv("PORTANET_BACKEND", "array_api_strict")
    assert portanet.set_backend("numpy").name == "numpy"  # an explicit other backend: its default


def test_using_backend_selects_inside_the_block_and_restores_after(backend):
    with portanet.using_backend("numpy") as inside:
        assert portanet.get_backend() is inside and inside.name == "numpy"
        assert isinstance(portanet.FCLayer(2, 2).weights, np.ndarray)
    assert portanet.get_backend() is backend
    with pytest.raises(portanet.BackendError):
        with portanet.using_backend("tensorflow"):
            pass
    assert portanet.get_backend() is backend
    with pytest.raises(KeyError):
        with portanet.using_backend(backend):
            raise KeyError("an error inside the block")
    assert portanet.get_backend() is backend
