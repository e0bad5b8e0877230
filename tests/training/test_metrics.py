"""Metrics on the backend under test: targets as one-hot rows or integer classes alike."""

import numpy as np
import pytest
from helpers import on_backend

from portanet import InputError
from portanet.backend import to_numpy
from portanet.metrics import accuracy, classification_report, confusion_matrix

OUTPUTS = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
LABELS = np.array([0, 1, 2, 1])


@pytest.mark.parametrize("dtype", ["int64", "uint8"])  # uint8: the data sets' labels
def test_integer_labels_report_as_one_hot_rows_do(backend, dtype):
    outputs = on_backend(OUTPUTS, "float32")
    labels = backend.asarray(LABELS.astype(dtype), dtype=None)
    one_hot = on_backend(np.eye(3)[LABELS], "float32")
    np.testing.assert_array_equal(to_numpy(confusion_matrix(labels, outputs)),
                                  [[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    report = classification_report(labels, outputs, ["a", "b", "c"])
    assert report == classification_report(one_hot, outputs, ["a", "b", "c"])
    assert report.splitlines()[-1].split()[-2:] == ["0.750", "4"]
    assert float(accuracy(labels, outputs)) == 0.75


def test_labels_outside_the_outputs_classes_are_refused(backend):
    labels = backend.asarray(np.array([0, 3, 1, 1]), dtype=None)
    with pytest.raises(InputError, match=r"y_true holds classes outside 0..2, the columns of "
                                         r"y_pred"):
        classification_report(labels, on_backend(OUTPUTS, "float32"))
