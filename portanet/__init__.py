"""portanet: neural networks written once against the Python array API.

The same layers run on NumPy, CuPy, PyTorch, JAX and array-api-strict; pick one with the
``PORTANET_BACKEND`` environment variable or :func:`set_backend`.
"""

import sys

from . import callbacks
from ._version import __version__
from .backend import BACKENDS, get_backend, set_backend, set_seed, using_backend
from .callbacks import (
    BackupAndRestore,
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
)
from .data import ImageFolder, Loader, datasets, preprocessing, text
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
    WriteError,
)
from .layers import (
    GRU,
    LSTM,
    ActivationLayer,
    AvgPool1D,
    AvgPool2D,
    BatchNorm,
    Bidirectional,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    FCLayer,
    Flatten,
    Layer,
    LayerNorm,
    MaxPool1D,
    MaxPool2D,
    PositionalEmbedding,
    RandomCrop,
    RandomErasing,
    RandomFlip,
    Reshape,
    Residual,
    SelfAttention,
    Sequential,
    TiedDense,
)
from .network import Network, load, load_training
from .registry import register_activation, register_layer, register_loss
from .saving.onnx import export_onnx
from .saving.state import save_training
from .training import world as distributed
from .training.history import History

__all__ = [
    "BACKENDS", "ActivationLayer", "AvgPool2D", "BackendError", "BatchNorm", "CompileWarning",
    "Conv2D", "DataError", "DistributedError", "Dropout", "FCLayer", "Flatten", "get_backend",
    "History", "ImageFolder", "InputError", "InputWarning", "Layer", "load", "MaxPool2D",
    "ModelFileError", "Network", "PortanetError", "register_activation", "register_layer",
    "register_loss",
    "Reshape", "set_backend", "set_seed", "ShapeError", "TrainingError", "WriteError",
    "callbacks", "Callback", "CSVLogger", "EarlyStopping", "LearningRateScheduler",
    "ModelCheckpoint", "BackupAndRestore", "save_training", "load_training",
    "export_onnx",
    "text", "datasets", "preprocessing", "distributed", "using_backend", "__version__",
    "Dense", "Embedding", "LayerNorm", "PositionalEmbedding", "Residual", "SelfAttention",
    "Sequential", "TiedDense", "RandomCrop", "RandomErasing", "RandomFlip", "Loader",
    "Conv1D", "MaxPool1D", "AvgPool1D",
    "LSTM", "GRU", "Bidirectional",
]

# Modules that moved into packages keep their old import paths (``import portanet.datasets``):
sys.modules.update({f"{__name__}.{old}": module for old, module in (
    ("datasets", datasets), ("preprocessing", preprocessing), ("text", text),
    ("distributed", distributed))})
