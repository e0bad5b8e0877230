"""Training curves as a PNG (needs matplotlib: ``pip install 'portanet[plot]'``)."""

from pathlib import Path

from ..errors import PortanetError


def plot_history(history, path):
    """Draw the loss curves (and validation accuracy, if recorded) of ``history`` to ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        raise PortanetError("plotting needs matplotlib: pip install 'portanet[plot]'") from None
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
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
