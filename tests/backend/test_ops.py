"""The hot-path helpers of portanet.backend.ops, and finding the library of an array."""

import math

import numpy as np
import pytest
from helpers import assert_backend_array

import portanet
from portanet.backend import (
    add_at,
    is_traced,
    libraries,
    matmul,
    sum_rows,
    to_numpy,
    writes_into,
)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("shape", [(4, 3, 2), (3, 2), (200, 3)])  # NumPy: 200 rows by BLAS
def test_sum_rows_sums_the_first_axis(backend, keepdims, shape):
    values = np.arange(math.prod(shape), dtype=np.float64).reshape(shape) - 7.5
    got = sum_rows(backend.asarray(values, "float64"), keepdims=keepdims)
    assert_backend_array(got, backend, "float64")
    np.testing.assert_array_equal(to_numpy(got),
                                  values.sum(axis=0, keepdims=keepdims))


@pytest.mark.parametrize("rows", [3, 100])
def test_matmul_and_sum_rows_write_into_an_array_that_fits(backend, rows):
    gen = np.random.default_rng(0)
    a, b = gen.normal(size=(rows, 4)), gen.normal(size=(4, 2))
    xa, xb = backend.asarray(a, "float64"), backend.asarray(b, "float64")
    in_place = writes_into(xa)
    assert in_place == (backend.name == "numpy")
    for compute, expected, fits in (
            (lambda out: matmul(xa, xb, out), a @ b, (rows, 2)),
            (lambda out: sum_rows(xa, False, out), a.sum(axis=0), (4,)),
            (lambda out: sum_rows(xa, True, out), a.sum(axis=0, keepdims=True),
             (1, 4))):
        out = backend.zeros(fits, "float64")
        got = compute(out)
        assert (got is out) == in_place
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-12)
        for other in (backend.zeros((5, 5), "float64"), backend.zeros(fits, "float32")):
            got = compute(other)  # the wrong shape or dtype: a new array, ``other`` untouched
            assert got is not other
            assert_backend_array(got, backend, "float64")
            np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-12)
            assert not np.any(to_numpy(other))


def test_add_at_adds_into_a_strided_window(backend):
    """Overlapping strided windows add up; on NumPy in place (the caller's own array)."""
    base = np.arange(20, dtype=np.float64).reshape(2, 10)
    x = backend.asarray(base.copy(), "float64")
    for start in (0, 1):
        y = np.full((2, 4), 10.0 ** start)
        x = add_at(x, (..., slice(start, start + 7, 2)), backend.asarray(y, "float64"))
    assert_backend_array(x, backend, "float64")
    expected = base.copy()
    expected[:, 0:7:2] += 1.0
    expected[:, 1:8:2] += 10.0
    np.testing.assert_array_equal(to_numpy(x), expected)
    if backend.name == "numpy":
        mine = backend.zeros((3,), "float64")
        assert add_at(mine, (slice(0, 2),), backend.asarray(np.ones(2), "float64")) is mine


def test_every_array_belongs_to_the_selected_backends_library(backend):
    array = backend.asarray([[1.0, 2.0], [3.0, 4.0]], "float64")
    assert libraries.library_of(array) is backend.library
    assert not is_traced(array)
    np.testing.assert_array_equal(to_numpy(array), [[1.0, 2.0], [3.0, 4.0]])
    assert libraries.library_of(np.zeros(2)).name == "numpy"
    assert libraries.library_of([1.0]) is None


def test_every_backend_is_described_by_one_module():
    assert tuple(libraries.LIBRARIES) == portanet.BACKENDS
    for name, library in libraries.LIBRARIES.items():
        assert library.name == name
        assert library.module and "pip install" in library.install
        assert type(library).__module__ == f"portanet.backend.{name}"


@pytest.mark.backend_independent
def test_a_new_backend_is_one_library_and_one_registry_line(monkeypatch):
    """A library registered in LIBRARIES is selectable by name, with nothing else changed."""
    from portanet.backend.numpy import NumPy

    class Renamed(NumPy):
        name = "renamed_numpy"

    monkeypatch.setitem(libraries.LIBRARIES, "renamed_numpy", Renamed())
    with portanet.using_backend("renamed_numpy") as backend:
        assert backend.name == "renamed_numpy" and str(backend) == "renamed_numpy on cpu"
        assert isinstance(portanet.FCLayer(2, 3).weights, np.ndarray)
    assert portanet.get_backend().name == "numpy"
