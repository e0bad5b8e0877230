"""Layers: one module per kind.

:data:`LAYERS` maps each layer class's name to the class, so a saved network is rebuilt from
``type(layer).__name__`` and ``layer.config()``.
"""

from .activation import ActivationLayer
from .base import Layer
from .conv import Conv2D
from .dense import FCLayer
from .pooling import AvgPool2D, MaxPool2D
from .regularization import BatchNorm, Dropout
from .shape import Flatten, Reshape

LAYERS = {cls.__name__: cls for cls in (FCLayer, ActivationLayer, Conv2D, MaxPool2D, AvgPool2D,
                                        Flatten, Reshape, Dropout, BatchNorm)}

__all__ = ["LAYERS", "ActivationLayer", "AvgPool2D", "BatchNorm", "Conv2D", "Dropout",
           "FCLayer", "Flatten", "Layer", "MaxPool2D", "Reshape"]
