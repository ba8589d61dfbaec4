"""Tests of smilebot.nms against hand-computed cases and the naive reference."""

from __future__ import annotations

import numpy as np
import pytest

from smilebot.nms import METHODS, Kept, nms
from smilebot_tools.naive import naive_nms

# Two boxes with exact IoU 1/3: intersection 0.25 * 0.5, union 0.25 + 0.25 - 0.125.
PAIR = np.array([[0.0, 0.0, 0.5, 0.5], [0.25, 0.0, 0.75, 0.5]], dtype=np.float32)
PAIR_SCORES = np.array([0.9, 0.6], dtype=np.float32)


def _random_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Boxes clustered around a few centres, some exact duplicates and degenerate boxes."""
    n = int(rng.integers(0, 61))
    centres = rng.uniform(0.1, 0.9, size=(int(rng.integers(1, 6)), 2))
    centre = centres[rng.integers(0, len(centres), size=n)] + rng.normal(0, 0.03, size=(n, 2))
    size = rng.uniform(0.05, 0.3, size=(n, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    if n > 1:
        duplicates = rng.random(n) < 0.2
        boxes[duplicates] = boxes[rng.integers(0, n, size=int(duplicates.sum()))]
        degenerate = rng.random(n) < 0.05
        boxes[degenerate, 2] = boxes[degenerate, 0]
    scores = rng.random(n).astype(np.float32)
    if rng.random() < 0.3:
        scores = np.round(scores, 1)  # ties, to check the stable order
    threshold = float(rng.choice([rng.uniform(0.05, 0.95), 0.5, 0.45]))
    return boxes, scores, threshold


def test_greedy_matches_naive_reference_on_random_cases() -> None:
    rng = np.random.default_rng(0)
    sizes = []
    for _ in range(300):
        boxes, scores, threshold = _random_case(rng)
        expected = naive_nms(boxes, scores, threshold)
        kept = nms(boxes, scores, iou_threshold=threshold, max_detections=1000)
        assert kept.indices.tolist() == expected
        np.testing.assert_array_equal(kept.boxes, boxes[expected].reshape(-1, 4))
        np.testing.assert_array_equal(kept.scores, scores[expected])
        voted = nms(boxes, scores, iou_threshold=threshold, method="voting", max_detections=1000)
        assert voted.indices.tolist() == expected
        sizes.append(len(boxes))
    assert min(sizes) == 0 and max(sizes) >= 55


def test_pair_suppressed_above_threshold_only() -> None:
    assert nms(PAIR, PAIR_SCORES, iou_threshold=0.3).indices.tolist() == [0]
    assert nms(PAIR, PAIR_SCORES, iou_threshold=0.5).indices.tolist() == [0, 1]
    assert naive_nms(PAIR, PAIR_SCORES, 0.3) == [0]


def test_iou_equal_to_threshold_is_not_suppressed() -> None:
    # The second box is the lower half of the first: IoU exactly 0.125 / 0.25 = 0.5.
    boxes = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.25]], dtype=np.float32)
    scores = np.array([0.9, 0.8], dtype=np.float32)
    assert nms(boxes, scores, iou_threshold=0.5).indices.tolist() == [0, 1]
    assert nms(boxes, scores, iou_threshold=0.49).indices.tolist() == [0]


def test_output_is_in_descending_score_order_with_stable_ties() -> None:
    boxes = np.array([[0.0, 0.0, 0.1, 0.1], [0.2, 0.2, 0.3, 0.3], [0.4, 0.4, 0.5, 0.5]])
    kept = nms(boxes, np.array([0.5, 0.9, 0.5], dtype=np.float32))
    assert kept.indices.tolist() == [1, 0, 2]
    assert kept.indices.dtype == np.int64
    assert kept.boxes.dtype == np.float32 and kept.scores.dtype == np.float32
    np.testing.assert_array_equal(kept.scores, np.float32([0.9, 0.5, 0.5]))


@pytest.mark.parametrize("method", METHODS)
def test_empty_input(method: str) -> None:
    kept = nms(
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.float32),
        method=method,
        predicted_iou=np.zeros(0, np.float32),
    )
    assert isinstance(kept, Kept)
    assert kept.indices.shape == (0,) and kept.indices.dtype == np.int64
    assert kept.boxes.shape == (0, 4) and kept.boxes.dtype == np.float32
    assert kept.scores.shape == (0,) and kept.scores.dtype == np.float32


@pytest.mark.parametrize("method", METHODS)
def test_one_box(method: str) -> None:
    box = np.array([[0.1, 0.2, 0.4, 0.6]], dtype=np.float32)
    kept = nms(box, np.float32([0.7]), method=method, predicted_iou=np.float32([0.5]))
    assert kept.indices.tolist() == [0]
    np.testing.assert_array_equal(kept.boxes, box)
    np.testing.assert_array_equal(kept.scores, np.float32([0.7]))


@pytest.mark.parametrize("method", METHODS)
def test_identical_boxes_keep_one_and_the_same_box(method: str) -> None:
    boxes = np.tile(np.float32([0.13, 0.27, 0.61, 0.83]), (7, 1))
    scores = np.float32([0.2, 0.9, 0.5, 0.9, 0.1, 0.3, 0.7])
    kept = nms(boxes, scores, method=method, predicted_iou=np.full(7, 0.8, np.float32))
    assert kept.indices.tolist() == [1]  # the first of the two best scores
    np.testing.assert_array_equal(kept.boxes, boxes[:1])
    np.testing.assert_array_equal(kept.scores, np.float32([0.9]))


def test_degenerate_box_is_kept_once_and_unchanged_by_voting() -> None:
    boxes = np.float32([[0.2, 0.2, 0.2, 0.5], [0.2, 0.2, 0.2, 0.5]])  # zero width
    kept = nms(boxes, np.float32([0.6, 0.4]), method="voting")
    assert kept.indices.tolist() == [0, 1]  # IoU of zero-area boxes is 0: no suppression
    np.testing.assert_array_equal(kept.boxes, boxes)


def test_voting_gives_hand_computed_weighted_mean() -> None:
    kept = nms(PAIR, PAIR_SCORES, iou_threshold=0.3, method="voting")
    # Weights: 0.9 * 1 = 0.9 for the kept box, 0.6 * 1/3 = 0.2 for the suppressed one.
    expected = (0.9 * np.array([0.0, 0.0, 0.5, 0.5]) + 0.2 * np.array([0.25, 0.0, 0.75, 0.5])) / 1.1
    np.testing.assert_allclose(expected, [1 / 22, 0.0, 6 / 11, 0.5])
    assert kept.indices.tolist() == [0]
    np.testing.assert_allclose(kept.boxes, expected[None], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(kept.scores, np.float32([0.9]))


def test_voting_leaves_boxes_alone_below_threshold() -> None:
    kept = nms(PAIR, PAIR_SCORES, iou_threshold=0.5, method="voting")
    np.testing.assert_array_equal(kept.boxes, PAIR)


def test_iou_rerank_changes_the_winner() -> None:
    predicted_iou = np.float32([0.5, 0.9])  # ranks 0.45 and 0.54: the second box wins
    greedy = nms(PAIR, PAIR_SCORES, iou_threshold=0.3)
    rerank = nms(
        PAIR, PAIR_SCORES, iou_threshold=0.3, method="iou_rerank", predicted_iou=predicted_iou
    )
    assert greedy.indices.tolist() == [0]
    assert rerank.indices.tolist() == [1]
    np.testing.assert_array_equal(rerank.boxes, PAIR[1:])
    np.testing.assert_array_equal(rerank.scores, np.float32([0.6]))  # face score, not rank


def test_iou_rerank_keeps_winner_when_predicted_iou_agrees() -> None:
    kept = nms(
        PAIR,
        PAIR_SCORES,
        iou_threshold=0.3,
        method="iou_rerank",
        predicted_iou=np.float32([0.9, 0.9]),
    )
    assert kept.indices.tolist() == [0]


def test_max_detections() -> None:
    boxes = np.float32([[0.1 * i, 0.0, 0.1 * i + 0.05, 0.05] for i in range(6)])
    scores = np.float32([0.1, 0.6, 0.3, 0.9, 0.5, 0.2])
    assert nms(boxes, scores, max_detections=3).indices.tolist() == [3, 1, 4]
    assert nms(boxes, scores, max_detections=0).indices.tolist() == []
    assert nms(boxes, scores, max_detections=3, method="voting").boxes.shape == (3, 4)


def test_score_threshold_drops_candidates_first() -> None:
    boxes = np.float32([[0.1 * i, 0.0, 0.1 * i + 0.05, 0.05] for i in range(4)])
    scores = np.float32([0.2, 0.6, 0.5, 0.9])
    assert nms(boxes, scores, score_threshold=0.5).indices.tolist() == [3, 1, 2]
    assert nms(boxes, scores, score_threshold=0.95).indices.tolist() == []


def test_score_threshold_keeps_indices_into_the_input() -> None:
    # The low-score box 0 is dropped, so it cannot suppress box 1 (it would not anyway)
    # and box 2, which overlaps box 1 at IoU 1/3, is suppressed by box 1.
    boxes = np.float32([[0.6, 0.6, 0.9, 0.9], [0.0, 0.0, 0.5, 0.5], [0.25, 0.0, 0.75, 0.5]])
    kept = nms(boxes, np.float32([0.1, 0.8, 0.7]), iou_threshold=0.3, score_threshold=0.2)
    assert kept.indices.tolist() == [1]
    np.testing.assert_array_equal(kept.boxes, boxes[1:2])


@pytest.mark.parametrize(
    ("boxes", "scores", "match"),
    [
        (np.zeros((3, 3)), np.zeros(3), r"boxes must have shape \[N, 4\], got \(3, 3\)"),
        (np.zeros(4), np.zeros(1), r"boxes must have shape \[N, 4\], got \(4,\)"),
        (np.zeros((1, 3, 4)), np.zeros(3), r"got \(1, 3, 4\)"),
        (np.zeros((3, 4)), np.zeros(2), r"scores must have shape \[N\].*\(3, 4\), got \(2,\)"),
        (np.zeros((3, 4)), np.zeros((3, 1)), r"got \(3, 1\)"),
        (np.zeros((2, 4)), np.float32([0.5, np.nan]), "NaN"),
    ],
)
def test_bad_inputs_raise(boxes: np.ndarray, scores: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        nms(boxes, scores)


def test_unknown_method_raises_naming_it_and_the_choices() -> None:
    with pytest.raises(ValueError, match=r"'soft'.*greedy.*voting.*iou_rerank"):
        nms(PAIR, PAIR_SCORES, method="soft")


def test_iou_rerank_needs_predicted_iou_of_the_right_shape() -> None:
    with pytest.raises(ValueError, match="needs predicted_iou"):
        nms(PAIR, PAIR_SCORES, method="iou_rerank")
    with pytest.raises(ValueError, match=r"predicted_iou must have the shape.*got \(3,\)"):
        nms(PAIR, PAIR_SCORES, method="iou_rerank", predicted_iou=np.zeros(3))
    with pytest.raises(ValueError, match="predicted_iou contains NaN"):
        nms(PAIR, PAIR_SCORES, method="iou_rerank", predicted_iou=np.float32([0.5, np.nan]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"iou_threshold": -0.1}, "iou_threshold"),
        ({"max_detections": -1}, "max_detections"),
    ],
)
def test_bad_parameters_raise(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        nms(PAIR, PAIR_SCORES, **kwargs)
