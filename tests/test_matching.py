import numpy as np
import pytest

from smilebot.anchors import DEFAULT_SPEC, AnchorLevel, AnchorSpec
from smilebot.matching import BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS, match
from smilebot_tools.naive import naive_match

NEG, IGNORE = BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS
TINY = AnchorSpec(input_width=32, input_height=16, levels=(AnchorLevel(16, (16,)),))
TINY_ANCHORS = TINY.generate()  # [[0, 0, 0.5, 1], [0.5, 0, 1, 1]]


def random_batch(rng, batch, max_boxes):
    """Faces of 2% to 90% of the input, 0..max_boxes per image, some off the edge."""
    centre = rng.uniform(-0.05, 1.05, (batch, max_boxes, 2))
    size = np.exp(rng.uniform(np.log(0.02), np.log(0.9), (batch, max_boxes, 1)))
    size = size * rng.uniform(0.7, 1.4, (batch, max_boxes, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], -1).astype(np.float32)
    valid = rng.uniform(size=(batch, max_boxes)) < rng.uniform(0.1, 1.0, (batch, 1))
    return boxes, valid


def test_sentinels_are_distinct_negatives():
    assert NEG == -1 and IGNORE == -2


def test_equals_naive_loop_on_random_cases():
    rng = np.random.default_rng(2024)
    anchors = DEFAULT_SPEC.generate()
    positives = forced_below = 0
    for _case in range(25):  # 25 batches x 8 images = 200 images
        boxes, valid = random_batch(rng, 8, int(rng.integers(1, 11)))
        high, low = sorted(rng.choice([0.3, 0.4, 0.5, 0.6], 2, replace=False))[::-1]
        got = match(boxes, valid, anchors, high=high, low=low)
        indices, iou = naive_match(boxes, valid, DEFAULT_SPEC, high=high, low=low)
        assert np.array_equal(got.indices, np.array(indices, np.int32))
        assert np.array_equal(got.iou, np.array(iou, np.float32))
        positives += (got.indices >= 0).sum()
        forced_below += ((got.indices >= 0) & (got.iou < high)).sum()
    assert positives > 1000 and forced_below > 0  # the cases exercise both rules


def test_hand_computed_thresholds():
    gt = np.array(
        [
            [[0, 0, 0.5, 1]],  # anchor 0 exactly
            [[0.25, 0, 0.75, 1]],  # IoU 1/3 with both anchors
            [[0.5, 0, 0.95, 1]],  # IoU 0.45 / 0.5 = 0.9 with anchor 1, 0 with anchor 0
        ],
        np.float32,
    )
    valid = np.ones((3, 1), bool)
    m = match(gt, valid, TINY_ANCHORS, high=0.95, low=0.4)
    # Image 1: both below low, anchor 0 forced (first anchor on the tie) with IoU 1/3.
    # Image 2: 0.9 is between low and high, but the box forces its best anchor.
    assert m.indices.tolist() == [[0, NEG], [0, NEG], [NEG, 0]]
    np.testing.assert_allclose(m.iou, [[1, 0], [1 / 3, 1 / 3], [0, 0.9]], rtol=1e-6)
    unforced = match(gt[2:], valid[2:], np.concatenate([TINY_ANCHORS, TINY_ANCHORS[1:]]), 0.95)
    assert unforced.indices.tolist() == [[NEG, 0, IGNORE]]  # a second copy stays ignored


def test_lower_box_index_wins_a_contested_anchor():
    gt = np.array([[[0.5, 0, 1, 1], [0.55, 0, 1, 1]]], np.float32)  # both best on anchor 1
    m = match(gt, np.ones((1, 2), bool), TINY_ANCHORS)
    assert m.indices.tolist() == [[NEG, 0]]


def test_padding_empty_images_and_unreachable_boxes():
    gt = np.array([[[0, 0, 0.5, 1], [0.5, 0, 1, 1]], [[2, 2, 3, 3], [0, 0, 0, 0]]], np.float32)
    valid = np.array([[True, False], [True, False]])
    m = match(gt, valid, TINY_ANCHORS)
    # Image 0: the padded row is not matched even though it fits anchor 1 exactly.
    # Image 1: a box outside the image overlaps nothing and forces nothing.
    assert m.indices.tolist() == [[0, NEG], [NEG, NEG]]
    none = match(np.zeros((2, 0, 4), np.float32), np.zeros((2, 0), bool), TINY_ANCHORS)
    assert none.indices.tolist() == [[NEG, NEG]] * 2 and not none.iou.any()


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"low=0\.6, high=0\.5"):
        match(np.zeros((1, 1, 4)), np.ones((1, 1), bool), TINY_ANCHORS, high=0.5, low=0.6)
    with pytest.raises(ValueError, match=r"\[B, M, 4\]"):
        match(np.zeros((1, 4)), np.ones((1,), bool), TINY_ANCHORS)
