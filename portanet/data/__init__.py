"""Data: the image data sets (:mod:`~portanet.data.datasets`), raw images laid out for a
network (:mod:`~portanet.data.images`), scalers and labels (:mod:`~portanet.data.preprocessing`),
character text for language models (:mod:`~portanet.data.text`), and data sets read batch by
batch, ahead of training (:mod:`~portanet.data.loaders`)."""

from .loaders import ArrayDataset, Loader, is_stream, open_npy, open_npz

__all__ = ["ArrayDataset", "Loader", "is_stream", "open_npy", "open_npz"]
