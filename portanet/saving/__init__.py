"""Networks on disk: the file format (:mod:`~portanet.saving.format`; ``Network.save`` and
``portanet.load`` use it), ONNX export (:mod:`~portanet.saving.onnx`) and safe writes
(:mod:`~portanet.saving.files`)."""
