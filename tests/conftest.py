"""One backend per test run, chosen by PORTANET_BACKEND (and PORTANET_DEVICE).

An explicitly requested backend that cannot be used stops the run with an error: a green run
that tested nothing would be worse than a red one.
"""

import os
from importlib import metadata

import pytest

import portanet

STRICT_API_VERSION = "2024.12"  # pinned so a new array-api-strict cannot change "the standard"
# Eager JAX compiles every operation afresh for each new shape: the JAX session compiles some
# 3,000 one-operation programs, and XLA's CPU optimisations cost more there than they save
# (compilation takes half as long without them). Set for the tests and their subprocesses only;
# known to jaxlib >= 0.10 (XLA stops on a flag it does not know).
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


def quick_jax_compilation():
    """Add TEST_XLA_FLAGS to XLA_FLAGS (before JAX starts), where this jaxlib knows them."""
    try:
        version = tuple(int(part) for part in metadata.version("jaxlib").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return
    if version >= (0, 10):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()


def pytest_configure(config):
    name = os.environ.get("PORTANET_BACKEND", "").strip() or "numpy"
    if name == "array_api_strict":
        import array_api_strict

        array_api_strict.set_array_api_strict_flags(api_version=STRICT_API_VERSION)
    if name == "jax":
        quick_jax_compilation()
    try:
        chosen = portanet.set_backend()
    except portanet.BackendError as exc:
        raise pytest.UsageError(f"PORTANET_BACKEND={name!r} cannot be used: {exc}") from exc
    if os.environ.get("PORTANET_REQUIRE_GPU") == "1" and "cuda" not in str(chosen).lower() \
            and "gpu" not in str(chosen).lower():
        raise pytest.UsageError(f"PORTANET_REQUIRE_GPU=1 but the tests would run on {chosen}")


def pytest_collection_modifyitems(config, items):
    """Tests marked backend_independent never touch the selected backend's arrays: they run in
    the numpy session and are reported as skipped in the others."""
    name = portanet.get_backend().name
    if name == "numpy":
        return
    skip = pytest.mark.skip(reason=f"backend-independent: runs in the numpy session, not {name}")
    for item in items:
        if item.get_closest_marker("backend_independent"):
            item.add_marker(skip)


def pytest_report_header(config):
    return f"portanet backend: {portanet.get_backend()}"


@pytest.fixture(autouse=True)
def _isolate():
    """Every test starts from the same seed and gets the run's backend back afterwards."""
    portanet.set_seed(1234)
    with portanet.using_backend(portanet.get_backend()):
        yield


@pytest.fixture
def backend():
    return portanet.get_backend()


@pytest.fixture
def xp(backend):
    return backend.xp
