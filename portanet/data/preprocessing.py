"""Input scaling and label encoding (any backend's arrays, or NumPy)."""

import math
import warnings

from array_api_compat import device

from .._checks import integer, number, positive
from ..backend import namespace, readable
from ..errors import InputError, InputWarning


def _floating(values, label="x"):
    """``values`` (any backend's, or host data) as a floating array, and its namespace;
    InputError for data that is not numbers, or none."""
    values, _ = readable(values, label)
    if values.ndim == 0 or values.size == 0:
        raise InputError(f"{label} holds no values: give an array of numbers")
    xp = namespace(values)
    if xp.isdtype(values.dtype, "real floating"):
        return xp, values
    return xp, xp.astype(values, xp.float32)


class Scaler:
    """Input scaling fitted on training data and applied, unchanged, to every later input.

    ``fit(x)`` records the statistics of ``x`` (of the whole array, as the tutorial's functions
    do) and its range; ``transform(x)`` applies them and warns (:class:`InputWarning`) when
    ``x`` lies far outside the training range, the sign of data scaled twice or not at all.
    Give a fitted scaler to a network (``net.scaler = Standardizer().fit(x_train)``) and it
    is applied to the inputs of ``fit``, ``predict`` and ``evaluate``, and saved with it.
    Statistics given to the constructor (as a saved network's are) are checked as fitted ones
    are: finite, low below high, a positive std.
    """

    STATISTICS = ("low", "high")  # the names of the fitted statistics

    def __init__(self, **statistics):
        self.statistics = self._checked(statistics) if statistics else {}

    def _checked(self, statistics):
        """``statistics`` as floats; InputError unless they are this scaler's, finite, and
        scale (low < high: the data fitted on were not all equal)."""
        kind = type(self).__name__
        if sorted(statistics) != sorted(self.STATISTICS):
            raise InputError(f"{kind} needs the statistics {', '.join(self.STATISTICS)}, got "
                             f"{', '.join(map(str, statistics))}: fit it with "
                             f"{kind}().fit(x_train)")
        values = {name: number(f"{kind}'s {name}", statistics[name])
                  for name in self.STATISTICS}
        if not values["low"] < values["high"]:
            raise InputError(f"{kind} cannot scale: low={values['low']:g} is not below "
                             f"high={values['high']:g} (all values are equal); fit it on data "
                             "whose values vary")
        return values

    def fit(self, x):
        """Record the statistics and the range of ``x``; returns the scaler."""
        xp, x = _floating(x)
        low, high = float(xp.min(x)), float(xp.max(x))
        if not (math.isfinite(low) and math.isfinite(high)):
            raise InputError(f"cannot fit {type(self).__name__}: the data hold NaN or infinite "
                             f"values (they lie in [{low}, {high}]); remove or replace them")
        self.statistics = self._checked({"low": low, "high": high, **self._fit(xp, x)})
        return self

    def transform(self, x, label="x"):
        """``x`` scaled with the fitted statistics (same backend, floating dtype)."""
        if not self.statistics:
            raise InputError(f"{type(self).__name__} is not fitted: call fit(x_train) first")
        xp, x = _floating(x, label)
        self._check_range(float(xp.min(x)), float(xp.max(x)), label)
        shift, divisor = self.shift_and_divisor()
        return (x - shift) / divisor

    def fit_transform(self, x):
        return self.fit(x).transform(x)

    def _check_range(self, low, high, label):
        fitted_low, fitted_high = self.statistics["low"], self.statistics["high"]
        width = fitted_high - fitted_low
        if low < fitted_low - width or high > fitted_high + width \
                or (high < fitted_low + 0.1 * width and 0 < high - low < 0.1 * width):
            warnings.warn(
                f"{label} lies in [{low:g}, {high:g}] but the scaler was fitted on data in "
                f"[{fitted_low:g}, {fitted_high:g}]: give inputs as they were before scaling "
                "(the network scales them itself), in the same units", InputWarning,
                stacklevel=4)

    def config(self):
        """The JSON-able description saved with a network."""
        return {"type": type(self).__name__, **self.statistics}

    def __repr__(self):
        return f"{type(self).__name__}(" + ", ".join(
            f"{key}={value:g}" for key, value in self.statistics.items()) + ")"


class Normalizer(Scaler):
    """Min-max scaling to [0, 1] with the training data's minimum and maximum."""

    def _fit(self, xp, x):
        return {}

    def shift_and_divisor(self):
        """``(shift, divisor)``: :meth:`transform` gives ``(x - shift) / divisor``."""
        return self.statistics["low"], self.statistics["high"] - self.statistics["low"]


class Standardizer(Scaler):
    """Shift to mean 0 and scale to standard deviation 1, with the training data's mean and
    standard deviation."""

    STATISTICS = ("low", "high", "mean", "std")

    def _checked(self, statistics):
        values = super()._checked(statistics)
        positive("Standardizer's std", values["std"])
        return values

    def _fit(self, xp, x):
        return {"mean": float(xp.mean(x)), "std": float(xp.std(x))}

    def shift_and_divisor(self):
        return self.statistics["mean"], self.statistics["std"]


SCALERS = {cls.__name__: cls for cls in (Normalizer, Standardizer)}


def scaler_from_config(config):
    """The scaler a network saved (see :meth:`Scaler.config`); InputError unless ``config``
    describes a usable one."""
    name = config.get("type") if isinstance(config, dict) else None
    if not (isinstance(name, str) and name in SCALERS):
        raise InputError(f"a scaler's config must name its type ({', '.join(SCALERS)}) and "
                         f"give its statistics, got {config!r:.80}")
    return SCALERS[name](**{key: value for key, value in config.items() if key != "type"})


def normalize(values):
    """Scale to [0, 1] with the minimum and maximum of the whole array (min-max scaling).

    The statistics are those of ``values`` itself: to scale new data the way the training data
    was, fit a :class:`Normalizer` on the training data and reuse it."""
    return Normalizer().fit_transform(values)


def standardize(values):
    """Shift to mean 0 and scale to standard deviation 1, over the whole array (its own
    statistics; see :class:`Standardizer` to reuse the training data's)."""
    return Standardizer().fit_transform(values)


def to_categorical(labels, num_classes=None):
    """One-hot encode integer class labels: shape ``labels.shape + (num_classes,)``, float32."""
    labels, _ = readable(labels, "labels")
    if num_classes is not None:
        integer("num_classes", num_classes)
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
