"""The JAX backend: CPU or GPU, its training step compiled with ``jax.jit``."""

from __future__ import annotations

import os
import sys

import array_api_compat
import numpy as np

from ..errors import BackendError
from .compilers import Compiler
from .library import Library
from .resources import env


class JaxJit(Compiler):
    name = "jax.jit"
    small_programs = True  # eager JAX compiles every operation for each new shape anyway

    def compile(self, function, donate=()):
        return sys.modules["jax"].jit(function, donate_argnums=donate)


def conv2d(x, weights, bias, stride, padding, dilation):
    """The convolution kernel (:mod:`portanet.backend.kernels`) by
    ``jax.lax.conv_general_dilated``, its gradients by ``jax.vjp``."""
    jax = sys.modules["jax"]

    def convolve(x, weights, bias):
        out = jax.lax.conv_general_dilated(x, weights, stride, padding, rhs_dilation=dilation,
                                           dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return out + bias[:, None, None]
    out, vjp = jax.vjp(convolve, x, weights, bias)

    def backward(grad_output, need_input=True):
        grad_x, grad_weights, grad_bias = vjp(grad_output)
        return (grad_x if need_input else None), grad_weights, grad_bias
    return out, backward


def avg_pool2d(x, pool, stride):
    """The average-pooling kernel by ``jax.lax.reduce_window``, its gradient by ``jax.vjp``."""
    jax, size = sys.modules["jax"], pool[0] * pool[1]

    def total(x):
        return jax.lax.reduce_window(x, np.array(0, x.dtype), jax.lax.add, (1, 1, *pool),
                                     (1, 1, *stride), "VALID")
    out, vjp = jax.vjp(total, x)
    return out / size, lambda grad_output: vjp(grad_output / size)[0]


def scan(step, carry, xs, reverse=False):
    """The loop kernel (:mod:`portanet.backend.kernels`) by ``jax.lax.scan``: the step is
    traced once, whatever the number of time steps."""
    return sys.modules["jax"].lax.scan(step, carry, xs, reverse=reverse)


def embedding(table, ids):
    """The embedding kernel by ``jnp.take``; its gradient adds the output gradient's rows into
    zeros (``.at[ids].add``, a scatter-add)."""
    jnp = sys.modules["jax"].numpy
    return (jnp.take(table, ids, axis=0),
            lambda grad_output: jnp.zeros_like(table).at[ids].add(grad_output))


class Jax(Library):
    name = module = "jax"
    install = "pip install 'portanet[jax]'  (for NVIDIA GPUs: pip install 'jax[cuda12]')"
    compiler = JaxJit
    # Max pooling stays portable: under jax.jit on the CPU, reduce_window's gradient
    # (select_and_scatter_add) took twice as long as the portable backward (CNN benchmark
    # shapes). So does attention: jax.nn.dot_product_attention with jax.vjp took twice as long
    # under jax.jit (transformer benchmark shapes, float32), and its softmax is float32 whatever
    # the inputs (1e-8 from the float64 portable one).
    kernels = {"conv2d": conv2d, "avg_pool2d": avg_pool2d, "embedding": embedding, "scan": scan}
    half_dtypes = ("bfloat16", "float16")

    def load(self):
        # take GPU memory on demand, like torch and cupy, so processes can share a GPU
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        return super().load()

    def device(self, module, kind, index, text):
        platform = {"": None, "cpu": "cpu", "cuda": "gpu", "gpu": "gpu"}.get(kind, kind)
        try:
            found = module.devices(platform) if platform else module.devices()
            return found[index]
        except (RuntimeError, IndexError) as exc:
            raise BackendError(f"jax has no device {text!r} ({exc}). Unset PORTANET_DEVICE to "
                               "run on the CPU, or install jax with CUDA support.") from exc

    def gpu_count(self, module):
        return len(module.devices("gpu"))

    def devices(self, module):
        return [str(d) for d in module.devices()]

    def probe(self, module, device):
        module.config.update("jax_enable_x64", True)  # float64 on request, like the others
        if not env("JAX_DEFAULT_MATMUL_PRECISION"):  # full float32 matmuls on GPUs (no TF32),
            module.config.update("jax_default_matmul_precision", "highest")  # as elsewhere
        return module.device_put(module.numpy.zeros(1), device)

    def asarray(self, xp, host, device):
        # a plain copy: jnp.asarray would compile a conversion per shape
        return sys.modules["jax"].device_put(host, device)

    def zeros(self, xp, shape, dtype, device):
        # made on the host and copied: no compilation per shape
        return self.asarray(xp, np.zeros(shape, dtype=dtype), device)

    def owns(self, x):
        return array_api_compat.is_jax_array(x)

    def to_numpy(self, x):
        return np.asarray(x)

    def is_traced(self, x):
        return isinstance(x, sys.modules["jax"].core.Tracer)


LIBRARY = Jax()
