"""The ``portanet`` command (:mod:`~portanet.cli.commands`) and its plots
(:mod:`~portanet.cli.plotting`)."""

from .commands import main

__all__ = ["main"]
