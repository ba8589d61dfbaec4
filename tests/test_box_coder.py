import math

import numpy as np
import pytest

from smilebot.anchors import DEFAULT_SPEC
from smilebot.box_coder import BoxCoder


def test_encode_hand_computed():
    anchor = np.array([[0.0, 0.0, 0.2, 0.2]], np.float32)  # centre (0.1, 0.1), 0.2 x 0.2
    box = np.array([[0.02, 0.04, 0.22, 0.44]], np.float32)  # centre (0.12, 0.24), 0.2 x 0.4
    code = BoxCoder().encode(box, anchor)
    # tx = 0.02 / 0.2 / 0.1, ty = 0.14 / 0.2 / 0.1, tw = log(1) / 0.2, th = log(2) / 0.2
    np.testing.assert_allclose(code, [[1.0, 7.0, 0.0, math.log(2) / 0.2]], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(BoxCoder().decode(code, anchor), box, atol=1e-6)


def test_round_trip_on_real_anchors_batched():
    anchors = DEFAULT_SPEC.generate()
    rng = np.random.default_rng(0)
    centre = rng.uniform(0, 1, (2, len(anchors), 2))
    size = rng.uniform(0.01, 0.9, (2, len(anchors), 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], -1).astype(np.float32)
    coder = BoxCoder()
    codes = coder.encode(boxes, anchors)
    assert codes.shape == boxes.shape and codes.dtype == np.float32
    np.testing.assert_allclose(coder.decode(codes, anchors), boxes, atol=2e-6)


def test_variances_scale_the_codes():
    anchor = np.array([[0.0, 0.0, 0.2, 0.2]], np.float32)
    box = np.array([[0.02, 0.04, 0.22, 0.44]], np.float32)
    unit = BoxCoder((1, 1, 1, 1)).encode(box, anchor)
    np.testing.assert_allclose(BoxCoder().encode(box, anchor), unit / [0.1, 0.1, 0.2, 0.2])


def test_degenerate_boxes_and_huge_codes_stay_finite():
    anchors = DEFAULT_SPEC.generate()[:3]
    degenerate = np.array([[0.5, 0.5, 0.5, 0.5], [0.2, 0.2, 0.1, 0.3], [0, 0, 0, 0]], np.float32)
    coder = BoxCoder()
    with np.errstate(all="raise"):
        codes = coder.encode(degenerate, anchors)
        assert np.isfinite(codes).all()
        boxes = coder.decode(np.full((3, 4), 1e6, np.float32), anchors)
    assert np.isfinite(boxes).all()


def test_bad_variances():
    with pytest.raises(ValueError, match="variances"):
        BoxCoder((0.1, 0.1, 0.0, 0.2))
