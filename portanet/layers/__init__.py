"""Layers: one module per kind."""

from .activation import ActivationLayer
from .base import Layer
from .dense import FCLayer

__all__ = ["ActivationLayer", "FCLayer", "Layer"]
