import numpy as np
import pytest

from smilebot.boxes import (
    area,
    clip,
    convert,
    from_pixels,
    pairwise_intersection,
    pairwise_iou,
    to_pixels,
)


def test_iou_hand_computed():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], np.float32)
    b = np.array([[1, 1, 3, 3], [0.5, 0, 1.5, 1], [5, 5, 6, 6], [0, 0, 2, 2]], np.float32)
    iou = pairwise_iou(a, b)
    expected = [
        [1 / 7, 1 / 4, 0, 1],  # inter 1 / union 7; inter 1 / union 4; disjoint; same
        [0, 0.5 / 1.5, 0, 0.25],
    ]
    np.testing.assert_allclose(iou, expected, rtol=1e-6)
    assert iou.dtype == np.float32


def test_iou_degenerate_boxes_give_zero_not_nan():
    empty = np.array([[0.3, 0.3, 0.3, 0.5], [0.2, 0.2, 0.1, 0.1]], np.float32)  # zero / negative
    other = np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)
    with np.errstate(all="raise"):
        assert np.array_equal(pairwise_iou(empty, empty), np.zeros((2, 2), np.float32))
        assert np.array_equal(pairwise_iou(empty, other), np.zeros((2, 1), np.float32))
    assert np.array_equal(area(empty), [0, 0])


def test_iou_broadcasts_over_a_batch():
    rng = np.random.default_rng(1)
    corners = rng.uniform(0, 1, (3, 5, 2, 2)).astype(np.float32)
    gt = np.concatenate([corners.min(2), corners.max(2)], -1)  # [3, 5, 4]
    anchors = np.array([[0, 0, 0.5, 0.5], [0.25, 0.25, 1, 1]], np.float32)
    batched = pairwise_iou(gt, anchors)
    assert batched.shape == (3, 5, 2)
    for i in range(3):
        assert np.array_equal(batched[i], pairwise_iou(gt[i], anchors))
    assert np.array_equal(pairwise_iou(anchors, gt[0]), pairwise_iou(gt[0], anchors).T)


def test_convert_hand_computed_and_round_trip():
    xywh = np.array([[10, 20, 30, 40]], np.float32)
    xyxy = convert(xywh, "xywh", "xyxy")
    assert xyxy.tolist() == [[10, 20, 40, 60]]
    assert convert(xyxy, "xyxy", "cxcywh").tolist() == [[25, 40, 30, 40]]
    for src in ("xyxy", "xywh", "cxcywh"):
        for dst in ("xyxy", "xywh", "cxcywh"):
            there = convert(xyxy, "xyxy", src)
            np.testing.assert_allclose(convert(convert(there, src, dst), dst, src), there)


def test_pixels_edges_and_clip():
    px = np.array([[0, 0, 640, 480], [160, 120, 320, 360]], np.float32)
    norm = from_pixels(px, 640, 480)
    assert norm.tolist() == [[0, 0, 1, 1], [0.25, 0.25, 0.5, 0.75]]
    assert np.array_equal(to_pixels(norm, 640, 480), px)
    assert clip(np.array([[-0.5, 0.2, 1.5, 0.9]])).tolist() == [[0, 0.2, 1, 0.9]]


def test_bad_shape_and_format():
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        pairwise_iou(np.zeros((2, 3)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="xyhw"):
        convert(np.zeros((1, 4)), "xyhw", "xyxy")


def test_intersection_hand_computed():
    a = np.array([[0, 0, 2, 2]], np.float32)
    b = np.array([[1, 1, 3, 3], [0.5, -1, 1.5, 0.5], [3, 3, 4, 4]], np.float32)
    assert pairwise_intersection(a, b).tolist() == [[1.0, 0.5, 0.0]]
