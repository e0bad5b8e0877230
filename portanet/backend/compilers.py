"""Compilers of pure functions (the training step, the inference forward), one per backend.

``fit(compile=...)``, ``PORTANET_COMPILE`` and ``portanet train --compile/--no-compile`` choose:

- ``"auto"`` (default): compile where :data:`AUTO` says the benchmark measured it faster
  (``benchmarks/run.py --compare-compile``), eager elsewhere;
- ``True``: compile wherever the backend has a compiler (one warning where it has none);
- ``False``: eager.

Each backend's module names its compiler (:attr:`portanet.backend.library.Library.compiler`):
JAX compiles with ``jax.jit`` (the step's state buffers donated, so XLA updates them in place),
torch with ``torch.compile`` of a graph traced once per argument signature
(:class:`portanet.backend.torch.TorchCompile`; CUDA graphs on CUDA). NumPy, array-api-strict
and CuPy have none. A function that fails to compile runs eagerly from then on, after one
:class:`~portanet.errors.CompileWarning`, never giving a different result.
"""

from __future__ import annotations

import os
import warnings

from ..errors import CompileWarning, InputError, PortanetError

# (backend, device kind) pairs where compiling measured faster than eager
AUTO = {("jax", "cpu"), ("jax", "gpu")}
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class Compiler:
    """The eager "compiler": returns functions unchanged."""

    name = "eager"
    small_programs = False  # worth compiling small helpers (each eager operation costs a lot)

    def compile(self, function, donate=()):
        """``function`` compiled; ``donate`` names arguments whose buffers it may reuse."""
        return function


EAGER = Compiler()
WARNED: set = set()  # the compile warnings given (each is given once)


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
    kind = backend.library.compiler
    reason = eager_only or (None if kind else f"the {backend.name} backend has no compiler")
    if reason is not None:
        if wanted is True:
            _warn_once(f"compile=True: {reason}; running eagerly")
        return EAGER
    if wanted == "auto" and (backend.name, device_kind(backend)) not in AUTO:
        return EAGER
    return kind()


def _warn_once(message):
    if message not in WARNED:
        WARNED.add(message)
        warnings.warn(message, CompileWarning, stacklevel=4)


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
