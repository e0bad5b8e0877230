"""The ``portanet`` command (:mod:`~portanet.cli.commands`: its options and ``main``) and its
plots (:mod:`~portanet.cli.plotting`). One module per command: :mod:`~portanet.cli.info`,
:mod:`~portanet.cli.train` and :mod:`~portanet.cli.saved` (``evaluate``, ``predict`` and
``export``, on a saved network); what they read and report: :mod:`~portanet.cli.reading`."""

from .commands import main

__all__ = ["main"]
