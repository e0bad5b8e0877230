"""portanet: neural networks written once against the Python array API.

The same layers run on NumPy, CuPy, PyTorch, JAX and array-api-strict; pick one with the
``PORTANET_BACKEND`` environment variable or :func:`set_backend`.
"""

from . import callbacks, text
from .backend import BACKENDS, get_backend, set_backend, set_seed
from .callbacks import Callback, CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint
from .errors import (
    BackendError,
    CompileWarning,
    DataError,
    DistributedError,
    InputError,
    InputWarning,
    ModelFileError,
    PortanetError,
    ShapeError,
    TrainingError,
)
from .export import export_onnx
from .io import load
from .layers import (
    ActivationLayer,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    FCLayer,
    Flatten,
    Layer,
    LayerNorm,
    MaxPool2D,
    PositionalEmbedding,
    Reshape,
    Residual,
    SelfAttention,
    Sequential,
)
from .network import History, Network
from .registry import register_activation, register_layer, register_loss

__version__ = "0.1.0"

__all__ = [
    "BACKENDS", "ActivationLayer", "AvgPool2D", "BackendError", "BatchNorm", "CompileWarning",
    "Conv2D", "DataError", "DistributedError", "Dropout", "FCLayer", "Flatten", "get_backend",
    "History", "InputError", "InputWarning", "Layer", "load", "MaxPool2D", "ModelFileError",
    "Network", "PortanetError", "register_activation", "register_layer", "register_loss",
    "Reshape", "set_backend", "set_seed", "ShapeError", "TrainingError",
    "callbacks", "Callback", "CSVLogger", "EarlyStopping", "LearningRateScheduler",
    "ModelCheckpoint",
    "export_onnx",
    "text",
    "Dense", "Embedding", "LayerNorm", "PositionalEmbedding", "Residual", "SelfAttention",
    "Sequential",
]
