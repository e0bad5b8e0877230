"""Compilers of pure functions (the training step, the inference forward), one per backend.

``fit(compile=...)``, ``PORTANET_COMPILE`` and ``portanet train --compile/--no-compile`` choose:

- ``"auto"`` (default): compile where :data:`AUTO` says the benchmark measured it faster
  (``benchmarks/run.py --compare-compile``), eager elsewhere;
- ``True``: compile wherever the backend has a compiler (one warning where it has none);
- ``False``: eager.

JAX compiles with ``jax.jit`` (the step's state buffers donated, so XLA updates them in place);
torch with ``torch.compile`` of a graph traced once per argument signature
(:class:`TorchCompile`; CUDA graphs on CUDA). NumPy, array-api-strict and CuPy have no
compiler. A function that fails to compile runs eagerly from then on, after one
:class:`~portanet.errors.CompileWarning`, never giving a different result.
"""

from __future__ import annotations

import os
import sys
import threading
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


class JaxJit(Compiler):
    name = "jax.jit"
    small_programs = True  # eager JAX compiles every operation for each new shape anyway

    def compile(self, function, donate=()):
        return sys.modules["jax"].jit(function, donate_argnums=donate)


class TorchCompile(Compiler):
    """``torch.compile`` of a graph traced once per argument signature, as ``jax.jit`` traces.

    TorchDynamo would trace the step's Python itself and guard on the Python state it reads;
    instead the function runs once per signature (the structure of its arguments, their shapes,
    dtypes and devices) on fake tensors under ``make_fx``, which records its tensor operations
    as one graph whatever Python computed them, and that graph is compiled (inductor; on CUDA
    with ``mode="reduce-overhead"``: CUDA graphs, the inputs copied into static buffers).
    Python numbers among the arguments (the step's learning rate, where a batch starts) become
    0-d tensors, so a new value is not a new trace."""

    name = "torch.compile"

    def compile(self, function, donate=()):
        return TracedBySignature(function)


class TracedBySignature:
    """``function`` traced and compiled once per argument signature (see :class:`TorchCompile`)."""

    def __init__(self, function):
        self.function = function
        self.programs = {}  # signature -> (compiled graph, output structure)
        self.ready = set()  # signatures whose graph has run (it compiles on its first call)
        self.first_calls = threading.Lock()  # one thread at a time traces and compiles

    def __call__(self, *args):
        torch = sys.modules["torch"]
        leaves, structure = torch.utils._pytree.tree_flatten(args)
        device = next((leaf.device for leaf in leaves if isinstance(leaf, torch.Tensor)), None)
        inputs, constants = [], []  # tensors (numbers made 0-d tensors); anything else
        for leaf in leaves:
            if isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
                leaf = torch.tensor(leaf, device=device, dtype=torch.float64
                                    if isinstance(leaf, float) else torch.int64)
            (inputs if isinstance(leaf, torch.Tensor) else constants).append(leaf)
        signature = (structure, tuple(map(repr, constants)),
                     tuple((tensor.shape, tensor.dtype, tensor.device) for tensor in inputs))
        if device is not None and device.type == "cuda":  # the last step's outputs are inputs
            torch.compiler.cudagraph_mark_step_begin()
        if signature in self.ready:
            program, outputs = self.programs[signature]
            return torch.utils._pytree.tree_unflatten(program(*inputs), outputs)
        with self.first_calls:
            if signature not in self.programs:
                self.programs[signature] = self._trace(structure, leaves, inputs)
            program, outputs = self.programs[signature]
            result = program(*inputs)
            self.ready.add(signature)
        return torch.utils._pytree.tree_unflatten(result, outputs)

    def _trace(self, structure, leaves, inputs):
        """The compiled graph of ``function`` for arguments ``leaves`` (``inputs`` among them
        as 0-d tensors or tensors), and the structure of its outputs."""
        torch = sys.modules["torch"]
        from torch.fx.experimental.proxy_tensor import make_fx

        pytree, found = torch.utils._pytree, {}
        tensor_at = [isinstance(leaf, (torch.Tensor, int, float)) and not isinstance(leaf, bool)
                     for leaf in leaves]

        def flat(*tensors):
            given = iter(tensors)
            args = [next(given) if is_tensor else leaf
                    for leaf, is_tensor in zip(leaves, tensor_at)]
            result = self.function(*pytree.tree_unflatten(args, structure))
            out_leaves, found["outputs"] = pytree.tree_flatten(result)
            return out_leaves

        graph = make_fx(flat, tracing_mode="fake")(*inputs)
        mode = "reduce-overhead" if inputs and inputs[0].device.type == "cuda" else None
        return torch.compile(graph, fullgraph=True, dynamic=False, mode=mode), found["outputs"]


def is_traced(array) -> bool:
    """True while ``array`` is a placeholder a compiler traces (its values are unknown, so
    checks of values must wait for eager use)."""
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(array, jax.core.Tracer):
        return True
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(array, torch.Tensor):
        return False
    from torch._subclasses.fake_tensor import is_fake

    return is_fake(array)


COMPILERS = {"jax": JaxJit, "torch": TorchCompile}
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
