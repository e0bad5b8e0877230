"""Data: the image data sets (:mod:`~portanet.data.datasets`), raw images laid out for a
network (:mod:`~portanet.data.images`), scalers and labels (:mod:`~portanet.data.preprocessing`)
and character text for language models (:mod:`~portanet.data.text`)."""
