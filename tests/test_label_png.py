import io

import numpy as np
import pytest
from PIL import Image

from citypipe.prepare.label_png import encode_label_png


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (64, 128)])
def test_pillow_decodes_the_same_pixels(shape):
    labels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    image = Image.open(io.BytesIO(encode_label_png(labels)))
    assert image.mode == "L" and image.size == shape[::-1]
    assert np.array_equal(np.asarray(image), labels)


def test_rejects_anything_but_a_2d_uint8_map():
    with pytest.raises(ValueError, match="uint8"):
        encode_label_png(np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match="uint8"):
        encode_label_png(np.zeros((4, 4, 3), np.uint8))
