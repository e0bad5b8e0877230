"""Training curves as an image (needs matplotlib: ``pip install 'portanet[plot]'``)."""

from pathlib import Path

from ..errors import InputError, PortanetError
from ..saving.files import check_writable


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise PortanetError("plotting needs matplotlib: pip install 'portanet[plot]'") from None
    return matplotlib


def plot_path(path) -> Path:
    """``path`` as a Path if the curves can be saved there: matplotlib installed, a writable
    place, a suffix naming a format matplotlib writes (.png, .pdf, .svg, ...)."""
    _matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    path = check_writable(path, "the plot")
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if path.suffix[1:].lower() not in formats:
        raise InputError(f"cannot save the plot to {str(path)!r}: unknown image suffix "
                         f"{path.suffix!r}; use one of {', '.join('.' + k for k in formats)}")
    return path


def plot_history(history, path) -> Path:
    """Draw the curves of ``history`` (what :meth:`portanet.Network.fit` returns) to the image
    file ``path``; return the path.

    One panel shows ``loss`` (and ``val_loss``) per epoch, a second ``accuracy`` and
    ``val_accuracy`` where validation accuracy was recorded. The suffix chooses the format
    (.png, .pdf, .svg, ...). Needs matplotlib (``pip install 'portanet[plot]'``); draws
    off-screen, so it works without a display.
    """
    path = plot_path(path)  # matplotlib is installed
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    values = history.history
    has_accuracy = "val_accuracy" in values
    figure, axes = plt.subplots(1, 2 if has_accuracy else 1, figsize=(10 if has_accuracy else 5, 4),
                                squeeze=False)
    for key in ("loss", "val_loss"):
        if key in values:
            axes[0][0].plot(history.epoch, values[key], marker="o", label=key)
    axes[0][0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[0][0].legend()
    if has_accuracy:
        for key in ("accuracy", "val_accuracy"):
            if key in values:
                axes[0][1].plot(history.epoch, values[key], marker="o", label=key)
        axes[0][1].set(xlabel="epoch", ylabel="accuracy", title="accuracy")
        axes[0][1].legend()
    for axis in axes[0]:  # epochs are whole numbers
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
