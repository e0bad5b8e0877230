"""Compilers of pure functions (the training step, the inference forward), one per backend.

``fit(compile=...)``, ``PORTANET_COMPILE`` and ``portanet train --compile/--no-compile`` choose:

- ``"auto"`` (default): compile where :data:`AUTO` says the benchmark measured it faster
  (``benchmarks/run.py --compare-compile``), eager elsewhere;
- ``True``: compile wherever the backend has a compiler (one warning where it has none);
- ``False``: eager.

JAX compiles with ``jax.jit`` (the step's state buffers donated, so XLA updates them in place).
NumPy and array-api-strict have no compiler. torch and CuPy run eagerly for now:
``torch.compile`` re-traced the step every call on the CPU, and CUDA graphs have not been
measured on a GPU (see the guide's "Compiled training steps"). A function that fails to compile
runs eagerly from then on, after one :class:`~portanet.errors.CompileWarning`, never giving a
different result.
"""

from __future__ import annotations

import os
import sys
import warnings

from ..errors import CompileWarning, InputError, PortanetError

# (backend, device kind) pairs where compiling measured faster than eager
AUTO = {("jax", "cpu"), ("jax", "gpu")}
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class Compiler:
    """The eager "compiler": returns functions unchanged."""

    name = "eager"

    def compile(self, function, donate=()):
        """``function`` compiled; ``donate`` names arguments whose buffers it may reuse."""
        return function


class JaxJit(Compiler):
    name = "jax.jit"

    def compile(self, function, donate=()):
        return sys.modules["jax"].jit(function, donate_argnums=donate)


def is_traced(array) -> bool:
    """True while ``array`` is a placeholder a compiler traces (its values are unknown, so
    checks of values must wait for eager use)."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(array, jax.core.Tracer)


COMPILERS = {"jax": JaxJit}
EAGER = Compiler()
_warned: set = set()


def mode(setting="auto"):
    """``setting`` (True, False or "auto"; "auto" defers to ``PORTANET_COMPILE``) as
    True, False or "auto"."""
    if setting == "auto":
        setting = os.environ.get("PORTANET_COMPILE", "").strip().lower() or "auto"
        if setting in TRUE_WORDS:
            return True
        if setting in FALSE_WORDS:
            return False
        if setting != "auto":
            raise InputError(f"PORTANET_COMPILE must be auto, 1 or 0, got {setting!r}")
        return "auto"
    if isinstance(setting, bool):
        return setting
    raise InputError(f"compile must be True, False or 'auto', got {setting!r}")


def device_kind(backend) -> str:
    """ "gpu" for CUDA devices, else "cpu"."""
    text = str(backend.device).lower()
    return "gpu" if "cuda" in text or "gpu" in text else "cpu"


def choose(backend, setting="auto", eager_only: str | None = None) -> Compiler:
    """The compiler for ``backend`` under ``setting``; ``eager_only`` is a reason the model
    cannot be compiled (e.g. tutorial-style layers), said once when compiling was asked for."""
    wanted = mode(setting)
    if wanted is False:
        return EAGER
    kind = COMPILERS.get(backend.name)
    reason = eager_only or (None if kind else f"the {backend.name} backend has no compiler")
    if reason is not None:
        if wanted is True:
            _warn_once(f"compile=True: {reason}; running eagerly")
        return EAGER
    if wanted == "auto" and (backend.name, device_kind(backend)) not in AUTO:
        return EAGER
    return kind()


def _warn_once(message):
    if message not in _warned:
        _warned.add(message)
        warnings.warn(f"portanet: {message}", CompileWarning, stacklevel=4)


class Fallback:
    """Calls ``compiled``; if its first call fails (tracing or compiling), warns once and calls
    ``eager`` from then on.

    portanet's own errors (bad input found while tracing), and any error after a first call
    that worked (the compiled code ran, and may have consumed donated buffers), pass through.
    """

    def __init__(self, compiled, eager, what):
        self.compiled, self.eager, self.what = compiled, eager, what
        self.failed = self.worked = False

    def __call__(self, *args):
        if self.worked:
            return self.compiled(*args)
        if not self.failed:
            try:
                result = self.compiled(*args)
                self.worked = True
                return result
            except PortanetError:
                raise
            except Exception as exc:  # any failure to trace or compile: run eagerly instead
                self.failed = True
                _warn_once(f"compiling {self.what} failed ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); running it "
                           "eagerly")
        return self.eager(*args)


def compiled(compiler: Compiler, function, what, donate=()):
    """``function`` compiled by ``compiler``, falling back to eager if that fails."""
    if compiler is EAGER:
        return function
    return Fallback(compiler.compile(function, donate), function, what)
