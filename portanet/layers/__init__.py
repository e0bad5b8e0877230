"""Layers: one module per kind.

:data:`LAYERS` maps each layer class's name to the class, so a saved network is rebuilt from
``type(layer).__name__`` and ``layer.config()``.
"""

from .activation import ActivationLayer
from .attention import SelfAttention
from .augmentation import RandomCrop, RandomErasing, RandomFlip
from .base import Layer, Pass
from .containers import Residual, Sequential
from .conv import Conv1D, Conv2D
from .dense import Dense, FCLayer
from .embedding import Embedding, PositionalEmbedding, TiedDense
from .pooling import AvgPool1D, AvgPool2D, MaxPool1D, MaxPool2D
from .recurrent import GRU, LSTM, Bidirectional
from .regularization import BatchNorm, Dropout, LayerNorm
from .shape import Flatten, Reshape

LAYERS = {cls.__name__: cls for cls in (FCLayer, ActivationLayer, Conv2D, MaxPool2D, AvgPool2D,
                                        Conv1D, MaxPool1D, AvgPool1D, Flatten, Reshape,
                                        Dropout, BatchNorm, Dense, LayerNorm, Embedding,
                                        PositionalEmbedding, TiedDense, SelfAttention, Sequential,
                                        Residual, RandomFlip, RandomCrop, RandomErasing, LSTM,
                                        GRU, Bidirectional)}

__all__ = ["LAYERS", "ActivationLayer", "AvgPool1D", "AvgPool2D", "BatchNorm", "Bidirectional",
           "Conv1D", "Conv2D", "Dense", "Dropout", "Embedding", "FCLayer", "Flatten", "GRU", "LSTM",
           "Layer", "LayerNorm", "MaxPool1D", "MaxPool2D",
           "Pass", "PositionalEmbedding", "RandomCrop", "RandomErasing", "RandomFlip", "Reshape",
           "Residual", "SelfAttention", "Sequential", "TiedDense"]
