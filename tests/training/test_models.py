"""The ready-made networks behind ``portanet train --model``, on the backend under test."""

import numpy as np
import pytest

from portanet import InputError
from portanet.backend import to_numpy
from portanet.models import small_cnn


@pytest.mark.parametrize("image_shape", [(8, 8), (1, 8, 8)])
def test_small_cnn_takes_a_grey_image_shape_with_or_without_its_channel(image_shape):
    net = small_cnn(image_shape, 10)
    assert net.layers[0].input_shape == (1, 8, 8)
    assert to_numpy(net.predict(np.zeros((2, 1, 8, 8), np.float32))).shape == (2, 10)


def test_small_cnn_takes_colour_images_channels_first():
    net = small_cnn((3, 8, 8), 10)
    assert net.layers[0].input_shape == (3, 8, 8)
    assert to_numpy(net.predict(np.zeros((2, 3, 8, 8), np.float32))).shape == (2, 10)


@pytest.mark.parametrize("image_shape", [(64,), (1, 1, 8, 8)])
def test_small_cnn_refuses_other_shapes_naming_the_ones_it_takes(image_shape):
    with pytest.raises(InputError, match=r"small_cnn takes images of shape \(C, H, W\), or "
                                         r"\(H, W\) for grey ones, got"):
        small_cnn(image_shape, 10)
