"""Input scaling and label encoding (any backend's arrays, or NumPy)."""

from array_api_compat import device

from .backend import namespace
from .errors import InputError


def _floating(values):
    xp = namespace(values)
    if xp.isdtype(values.dtype, "real floating"):
        return xp, values
    return xp, xp.astype(values, xp.float32)


def normalize(values):
    """Scale to [0, 1] with the minimum and maximum of the whole array (min-max scaling)."""
    xp, values = _floating(values)
    low, high = xp.min(values), xp.max(values)
    if not float(high - low) > 0:
        raise InputError("cannot normalize: all values are equal (max - min is 0)")
    return (values - low) / (high - low)


def standardize(values):
    """Shift to mean 0 and scale to standard deviation 1, over the whole array."""
    xp, values = _floating(values)
    std = xp.std(values)
    if not float(std) > 0:
        raise InputError("cannot standardize: all values are equal (standard deviation is 0)")
    return (values - xp.mean(values)) / std


def to_categorical(labels, num_classes=None):
    """One-hot encode integer class labels: shape ``labels.shape + (num_classes,)``, float32."""
    xp = namespace(labels)
    if not xp.isdtype(labels.dtype, "integral"):
        raise InputError(f"to_categorical needs integer class labels, got dtype {labels.dtype}")
    if labels.ndim == 0 or labels.shape[0] == 0:
        raise InputError("to_categorical got no labels")
    top = int(xp.max(labels))
    if int(xp.min(labels)) < 0 or (num_classes is not None and top >= num_classes):
        raise InputError(f"labels must lie in [0, num_classes); got range "
                         f"[{int(xp.min(labels))}, {top}] with num_classes={num_classes}")
    classes = xp.arange(num_classes or top + 1, dtype=labels.dtype, device=device(labels))
    return xp.astype(xp.expand_dims(labels, axis=-1) == classes, xp.float32)
