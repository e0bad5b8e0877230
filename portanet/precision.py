"""Precision policies: training and inference in a 16-bit float dtype, weights in float32.

``Network(..., precision="mixed_bfloat16")`` or ``"mixed_float16"``: the layers compute their
forward and backward passes in bfloat16 or float16, on copies of the float32 *master* weights
made for each pass; the gradients come back as float32, and the optimizer updates the float32
masters and keeps its state in float32. Sums that 16-bit arithmetic would round away are taken
in float32: layer and batch normalisation (layers with ``full_precision = True`` run wholly in
float32), softmax, and the loss (the network's outputs are cast to float32 before it).
``predict`` returns float32 outputs; ``evaluate`` scores them in float32.

float16 spans only about 6e-8 to 65504, so small gradients would flush to zero: under
``mixed_float16`` the loss is scaled by a dynamic factor before the backward pass and the
gradients unscaled after it (:class:`LossScale`). A step whose gradients are not all finite
changes no weight and no optimizer state; it halves the scale and is counted in
``history.history["skipped_steps"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from array_api_compat import device

from .backend import cast, get_backend, namespace
from .backend.libraries import LIBRARIES
from .errors import InputError


@dataclass(frozen=True)
class Policy:
    """A precision policy: ``name``, the dtype the layers compute in (``compute``), and
    whether the loss is scaled (:class:`LossScale`)."""

    name: str
    compute: str
    loss_scaling: bool

    def check(self, backend=None):
        """InputError unless ``backend`` (default: the selected one) computes in this policy's
        dtype, naming the backends that do."""
        backend = backend or get_backend()
        if self.compute in backend.library.half_dtypes:
            return
        able = [name for name, library in LIBRARIES.items() if self.compute in library.half_dtypes]
        why = (" (NumPy's float16 has no fast matrix products: 34 times slower than float32)"
               if backend.name == "numpy" and self.compute == "float16" else "")
        raise InputError(f"precision={self.name!r} computes in {self.compute}, which the "
                         f"{backend.name} backend does not support{why}: select "
                         f"{' or '.join(able)} (PORTANET_BACKEND), or leave precision out to "
                         "train in float32")


POLICIES = {policy.name: policy for policy in (
    Policy("mixed_bfloat16", "bfloat16", loss_scaling=False),
    Policy("mixed_float16", "float16", loss_scaling=True),
)}


def policy(name) -> Policy | None:
    """The policy named ``name`` (None: no policy, the network computes in its weights'
    dtype); InputError for any other value."""
    if name is None:
        return None
    if not isinstance(name, str) or name not in POLICIES:
        raise InputError(f"precision must be one of {', '.join(map(repr, POLICIES))} or None, "
                         f"got {name!r}")
    return POLICIES[name]


class LossScale:
    """Dynamic loss scaling, as in Keras's ``LossScaleOptimizer`` and PyTorch's ``GradScaler``.

    Its state is one float32 array ``[scale, good steps, skipped steps]`` that goes into every
    training step and comes out of it (an argument, so a compiled step is traced once). The
    loss gradient is multiplied by ``scale`` before the backward pass, the gradients divided by
    it after; where they are not all finite the step is skipped, the scale halved and the skip
    counted; after ``GROWTH_INTERVAL`` finite steps in a row the scale doubles.
    """

    INITIAL = 2.0 ** 15
    GROWTH_INTERVAL = 2000

    @staticmethod
    def initial():
        """The state at the start of training."""
        return get_backend().asarray([LossScale.INITIAL, 0.0, 0.0], "float32")

    @staticmethod
    def unscaled(grads, state):
        """``(grads / scale, all finite?)``: the float32 gradients and a 0-d boolean array."""
        xp = namespace(state)
        grads = [grad / cast(state[0], "float32") for grad in grads]
        finite = xp.asarray(True, device=device(state)) if not grads else xp.all(
            xp.stack([xp.all(xp.isfinite(grad)) for grad in grads]))
        return grads, finite

    @staticmethod
    def chosen(finite, new, old):
        """``new`` where ``finite`` (a 0-d boolean array), else ``old``: for lists of arrays
        (or of tuples of arrays, the optimizer's state), without a branch (it runs compiled)."""
        xp = namespace(finite)
        if isinstance(new, (list, tuple)):
            return type(new)(LossScale.chosen(finite, n, o) for n, o in zip(new, old))
        return xp.where(finite, new, old)

    @staticmethod
    def next(state, finite):
        """The state after a step whose gradients were (or were not) all ``finite``."""
        xp = namespace(state)
        scale, good, skipped = state[0], state[1], state[2]
        good = xp.where(finite, good + 1.0, 0.0)
        grow = good >= LossScale.GROWTH_INTERVAL
        scale = xp.where(finite, xp.where(grow, scale * 2.0, scale), scale * 0.5)
        good = xp.where(grow, 0.0, good)
        skipped = xp.where(finite, skipped, skipped + 1.0)
        return xp.stack([scale, good, skipped])
