"""The PyTorch backend: CPU or CUDA, its training step compiled with ``torch.compile``."""

from __future__ import annotations

import sys
import threading

import array_api_compat

from ..errors import BackendError
from .compilers import Compiler
from .library import Library


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


# make_fx and TorchDynamo keep global state while they trace: one trace at a time in a process
TRACING = threading.RLock()


class TracedBySignature:
    """``function`` traced and compiled once per argument signature (see :class:`TorchCompile`);
    the first call of each signature (trace, then inductor's compile on the graph's first run)
    is made one at a time in the process (:data:`TRACING`)."""

    def __init__(self, function):
        self.function = function
        self.programs = {}  # signature -> (compiled graph, output structure)
        self.ready = set()  # signatures whose graph has run (it compiles on its first call)

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
        with TRACING:
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


def conv2d(x, weights, bias, stride, padding, dilation):
    """The convolution kernel (:mod:`portanet.backend.kernels`) by ``torch.nn.functional`` and
    ATen's ``convolution_backward``; uneven padding is added to the image first."""
    torch = sys.modules["torch"]
    ((top, bottom), (left, right)), h, w = padding, *x.shape[2:]
    even = top == bottom and left == right
    image = x if even else torch.nn.functional.pad(x, (left, right, top, bottom))
    pad = (top, left) if even else (0, 0)
    out = torch.nn.functional.conv2d(image, weights, bias, stride, pad, dilation)

    def backward(grad_output, need_input=True):
        grad_image, grad_weights, grad_bias = torch.ops.aten.convolution_backward(
            grad_output, image, weights, [weights.shape[0]], stride, pad, dilation, False,
            (0, 0), 1, [need_input, True, True])
        if need_input and not even:
            grad_image = grad_image[:, :, top:top + h, left:left + w]
        return grad_image, grad_weights, grad_bias
    return out, backward


def max_pool2d(x, pool, stride):
    """The max-pooling kernel by ``torch.nn.functional.max_pool2d`` and its ATen backward."""
    torch = sys.modules["torch"]
    out, indices = torch.nn.functional.max_pool2d(x, pool, stride, return_indices=True)

    def backward(grad_output):
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad_output, x, pool, stride, (0, 0), (1, 1), False, indices)
    return out, backward


def avg_pool2d(x, pool, stride):
    """The average-pooling kernel by ``torch.nn.functional.avg_pool2d`` and its ATen
    backward."""
    torch = sys.modules["torch"]
    out = torch.nn.functional.avg_pool2d(x, pool, stride)

    def backward(grad_output):
        return torch.ops.aten.avg_pool2d_backward(grad_output, x, pool, stride, (0, 0), False,
                                                  True, None)
    return out, backward


def embedding(table, ids):
    """The embedding kernel by ``torch.nn.functional.embedding``; its gradient adds the output
    gradient's rows into zeros by ``index_add_`` (on the CPU 4x faster than ATen's
    ``embedding_dense_backward``)."""
    torch = sys.modules["torch"]
    out = torch.nn.functional.embedding(ids, table)

    def backward(grad_output):
        return torch.zeros_like(table).index_add_(0, ids.reshape(-1),
                                                  grad_output.reshape(-1, table.shape[1]))
    return out, backward


def attention(q, k, v, causal):
    """The attention kernel by ``torch.nn.functional.scaled_dot_product_attention``, its
    gradients by ``torch.func.vjp`` (which ``make_fx`` traces: the fused backward of whichever
    implementation PyTorch picked for the device)."""
    torch = sys.modules["torch"]
    out, vjp = torch.func.vjp(lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(
        q, k, v, is_causal=causal), q, k, v)
    return out, vjp


def relu_backward(y, grad):
    """ReLU's backward by ATen's ``threshold_backward``: one pass (the portable mask product
    takes three)."""
    return sys.modules["torch"].ops.aten.threshold_backward(grad, y, 0)


class Torch(Library):
    name = module = "torch"
    install = ("pip install 'portanet[torch]'  (CPU only: pip install torch --index-url "
               "https://download.pytorch.org/whl/cpu)")
    compiler = TorchCompile
    kernels = {"conv2d": conv2d, "max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d,
               "embedding": embedding, "attention": attention, "relu_backward": relu_backward}
    half_dtypes = ("bfloat16", "float16")

    def owns(self, x):
        return array_api_compat.is_torch_array(x)

    def device(self, module, kind, index, text):
        if kind in ("", "cpu"):
            return module.device("cpu")
        if kind != "cuda" or not module.cuda.is_available():
            raise BackendError(f"torch cannot use device {text!r}: no usable CUDA GPU "
                               "(torch.cuda.is_available() is False). Unset PORTANET_DEVICE "
                               "to run on the CPU, or install a CUDA build of torch.")
        return module.device(f"cuda:{index}")

    def gpu_count(self, module):
        return module.cuda.device_count()

    def devices(self, module):
        return ["cpu"] + [f"cuda:{i}" for i in range(self.gpu_count(module))]

    def asarray(self, xp, host, device):
        if any(stride < 0 for stride in host.strides):  # torch takes no negative strides
            host = host.copy()
        return xp.asarray(host, device=device)

    def to_numpy(self, x):
        return x.detach().cpu().numpy()

    def cuda_buffer(self, x):
        if not x.is_cuda:
            return None
        sys.modules["torch"].cuda.current_stream(x.device).synchronize()
        return x

    def is_traced(self, x):
        from torch._subclasses.fake_tensor import is_fake

        return isinstance(x, sys.modules["torch"].Tensor) and is_fake(x)


LIBRARY = Torch()
