"""Data: the image data sets (:mod:`~portanet.data.datasets`), folders of images
(:mod:`~portanet.data.folders`), raw images laid out for a network
(:mod:`~portanet.data.images`), scalers and labels (:mod:`~portanet.data.preprocessing`),
character text for language models (:mod:`~portanet.data.text`), and data sets read batch by
batch, ahead of training (:mod:`~portanet.data.loaders`)."""

from .folders import ImageFolder
from .loaders import ArrayDataset, Loader, is_stream, open_npy, open_npz

__all__ = ["ArrayDataset", "ImageFolder", "Loader", "is_stream", "open_npy", "open_npz"]
