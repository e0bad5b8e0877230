"""Layers: one module per kind."""

from .activation import ActivationLayer
from .base import Layer
from .dense import FCLayer

LAYERS = {cls.__name__: cls for cls in (ActivationLayer, FCLayer)}

__all__ = ["LAYERS", "ActivationLayer", "FCLayer", "Layer"]
