"""Networks on disk: the file format (:mod:`~portanet.saving.format`, its description checked by
:mod:`~portanet.saving.schema`; ``Network.save`` and
``portanet.load`` use it), ONNX export (:mod:`~portanet.saving.onnx`) and safe writes
(:mod:`~portanet.saving.files`)."""
