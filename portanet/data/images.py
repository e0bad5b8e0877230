"""Raw images (NumPy arrays of pixels) laid out for a network's input, on the host."""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError


def prepare(images, metadata):
    """Lay raw images out for the network's input (the network's scaler scales them)."""
    images = np.asarray(images)
    shape = tuple(metadata["image_shape"])
    if images.shape == shape:
        images = images[None]
    if images.shape[1:] != shape:
        raise InputError(f"images have shape {images.shape[1:]} per sample; the network was "
                         f"trained on {shape}")
    x = images.astype(np.float32)
    if "scale" in metadata:  # saved before networks kept their scaler: scaled here
        x = x / np.float32(metadata["scale"])
    if metadata["layout"] == "flat":
        return x.reshape(len(x), -1)
    channels = () if len(shape) == 3 else (1,)  # (H, W): grey images, given their channel
    return x.reshape(len(x), *channels, *shape)


def network_input(images, network):
    """Raw ``images`` laid out for ``network``: as ``portanet train`` noted in its file, else
    from the network's own input shape (:func:`fit_network_input`)."""
    if "image_shape" in network.metadata:
        return prepare(images, network.metadata)
    return fit_network_input(images, network)


def fit_network_input(images, network):
    """Raw ``images`` shaped for a network saved without ``portanet train``'s notes (by
    ``net.save``): any layout with as many values per sample as its first layer takes."""
    first = network.layers[0] if network.layers else None
    shape = getattr(first, "input_shape", None)
    if shape is None:
        raise InputError(f"cannot tell which input the network takes: its file has no notes from "
                         f"'portanet train' and its first layer {first!r} fixes no input shape; "
                         "give that layer its input size (e.g. Conv2D(..., input_shape=(1, 28, "
                         "28))) and save it again, or call net.predict() in Python")
    images, size = np.asarray(images), math.prod(shape)
    if images.ndim == 0 or (images.size == size and math.prod(images.shape[1:]) != size):
        images = images[None]  # one sample
    values = math.prod(images.shape[1:])
    if values != size:
        raise InputError(f"images have shape {images.shape[1:]} per sample ({values} values); "
                         f"the network takes {size} values per sample (shape {tuple(shape)})")
    return images.reshape(len(images), *shape).astype(np.float32)
