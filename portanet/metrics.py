"""Metrics computed on the backend from targets and network outputs."""

from array_api_compat import device

from .backend import namespace, to_numpy
from .errors import InputError, ShapeError


def check_rows(y_true, y_pred):
    """ShapeError unless targets ``y_true`` and outputs ``y_pred`` have as many rows."""
    if y_true.shape[:1] != y_pred.shape[:1]:
        raise ShapeError(f"the targets have {tuple(y_true.shape)} and the outputs "
                         f"{tuple(y_pred.shape)}: give one target row per output row")


def accuracy(y_true, y_pred):
    """Share of rows classified right: argmax for several outputs, a 0.5 threshold for one.
    ``y_true`` holds one-hot rows, or integer classes (one axis less than ``y_pred``)."""
    check_rows(y_true, y_pred)
    xp = namespace(y_pred)
    if y_true.ndim == y_pred.ndim - 1:
        hits = xp.argmax(y_pred, axis=-1) == y_true
    elif y_pred.shape[-1] == 1:
        hits = (y_pred > 0.5) == (y_true > 0.5)
    else:
        hits = xp.argmax(y_pred, axis=-1) == xp.argmax(y_true, axis=-1)
    return xp.mean(xp.astype(hits, y_pred.dtype))


def _one_hot(classes, y_pred):
    """Rows of ``y_pred``'s dtype, 1 at each of the integer ``classes``."""
    xp = namespace(y_pred)
    columns = xp.arange(y_pred.shape[-1], dtype=classes.dtype, device=device(y_pred))
    return xp.astype(xp.expand_dims(classes, axis=-1) == columns, y_pred.dtype)


def confusion_matrix(y_true, y_pred):
    """Counts[i, j] of samples of class i predicted as j, from outputs and targets: one-hot
    rows, or integer classes (one axis less than ``y_pred``), as :func:`accuracy` takes them."""
    check_rows(y_true, y_pred)
    xp = namespace(y_pred)
    if y_true.ndim == y_pred.ndim - 1:
        classes = y_pred.shape[-1]
        if y_true.shape[0] and not bool(xp.all((y_true >= 0) & (y_true < classes))):
            raise InputError(f"y_true holds classes outside 0..{classes - 1}, the columns of "
                             f"y_pred: give one output column per class (or one-hot targets)")
        y_true = _one_hot(y_true, y_pred)
    winners = _one_hot(xp.argmax(y_pred, axis=-1), y_pred)
    return xp.matrix_transpose(y_true) @ winners


def classification_report(y_true, y_pred, names=None):
    """Per-class precision, recall, F1 and support, and the overall accuracy, as text;
    ``y_true`` holds one-hot rows or integer classes, as :func:`confusion_matrix` takes them."""
    counts = to_numpy(confusion_matrix(y_true, y_pred)).tolist()
    classes = len(counts)
    names = [str(name) for name in (names or range(classes))]
    width = max(len(name) for name in names + ["accuracy"])
    lines = [f"{'':>{width}}  precision    recall  f1-score   support"]
    correct = total = 0
    for k in range(classes):
        hits, support = counts[k][k], sum(counts[k])
        predicted = sum(row[k] for row in counts)
        precision = hits / predicted if predicted else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        lines.append(f"{names[k]:>{width}}  {precision:9.3f} {recall:9.3f} {f1:9.3f} "
                     f"{int(support):9d}")
        correct, total = correct + hits, total + support
    lines.append(f"{'accuracy':>{width}}  {'':9} {'':9} {correct / total:9.3f} {int(total):9d}")
    return "\n".join(lines)
