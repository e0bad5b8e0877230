"""Data: the image data sets (:mod:`~portanet.data.datasets`), folders of images
(:mod:`~portanet.data.folders`), raw images laid out for a network
(:mod:`~portanet.data.images`), scalers and labels (:mod:`~portanet.data.preprocessing`) and
character text for language models (:mod:`~portanet.data.text`)."""

from .folders import ImageFolder

__all__ = ["ImageFolder"]
