import numpy as np
import pytest

from smilebot_tools.evaluate import (
    Found,
    Truth,
    average_precision,
    face_metrics,
    match,
    roc_auc,
    smile_metrics,
    smile_pairs,
    threshold_for_precision,
)


def truth(boxes, ignore=None, smile=None):
    boxes = np.array(boxes, float).reshape(-1, 4)
    n = len(boxes)
    return Truth(
        boxes,
        np.zeros(n, bool) if ignore is None else np.array(ignore),
        -np.ones(n, int) if smile is None else np.array(smile),
    )


def found(boxes, scores, smiles=None):
    boxes = np.array(boxes, float).reshape(-1, 4)
    smiles = np.zeros(len(boxes)) if smiles is None else np.array(smiles, float)
    return Found(boxes, np.array(scores, float), smiles)


def test_match_greedy_by_score_with_ignore_regions():
    t = truth([[0, 0, 10, 10], [20, 0, 30, 10]], ignore=[False, True])
    f = found(
        [[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10], [50, 50, 60, 60]], [0.5, 0.9, 0.8, 0.7]
    )
    # The 0.9 box (IoU 0.82) takes face 0 first; the 0.5 exact box is then a duplicate (FP).
    assert match(t, f, 0.5).tolist() == [-1, 0, -2, -1]


def test_average_precision_hand_computed():
    # Ranked hits: T, F, T with 3 faces -> precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3.
    # Envelope: 1 for the first third, 2/3 for the second -> AP = 1/3 + 2/9.
    ap = average_precision(np.array([True, False, True]), np.array([0.9, 0.8, 0.7]), 3)
    assert ap == pytest.approx(1 / 3 + 2 / 9)
    assert average_precision(np.array([True]), np.array([1.0]), 1) == 1.0


def test_face_metrics_and_top_iou():
    t = truth([[0, 0, 10, 10], [100, 100, 110, 110]])
    f = found([[0, 0, 10, 20], [0, 0, 10, 10], [200, 200, 210, 210]], [0.9, 0.6, 0.3])
    m = face_metrics([t], [f])
    # Top box on face 0 has IoU 0.5 (10x20 vs 10x10); face 1 is never seen.
    assert m["mean_top_iou"] == pytest.approx(0.5) and m["faces_seen"] == 1
    assert m["recall"] == 0.5 and m["fp_per_image"] == 2 and m["faces"] == 2
    assert m["ap50"] == pytest.approx(0.5)  # one hit at rank 1, recall 1/2 reached at precision 1
    # At the operating threshold 0.5 the 0.3 box is dropped: one hit and one duplicate left.
    assert (m["recall_at_threshold"], m["fp_per_image_at_threshold"]) == (0.5, 1.0)


def test_smile_pairs_and_metrics():
    t = truth([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], smile=[1, 0, -1])
    f = found([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], [0.9, 0.9, 0.9], [0.8, 0.6, 0.9])
    labels, probs = smile_pairs([t], [f])
    assert labels.tolist() == [1, 0] and probs.tolist() == [0.8, 0.6]  # unknown smile left out
    m = smile_metrics(labels, probs, threshold=0.5)
    assert (m["precision"], m["recall"], m["auc"]) == (0.5, 1.0, 1.0)
    assert m["threshold_at_target"] == 0.8 and m["recall_at_target"] == 1.0


def test_threshold_for_precision_and_ties():
    labels = np.array([1, 0, 1, 1, 0])
    probs = np.array([0.9, 0.8, 0.8, 0.4, 0.3])
    # At 0.8: {0.9, 0.8, 0.8} -> precision 2/3; at 0.9: 1/1; at 0.4: 3/4.
    assert threshold_for_precision(labels, probs, 0.75) == (0.4, 1.0)
    assert threshold_for_precision(labels, probs, 0.9) == (0.9, pytest.approx(1 / 3))
    assert np.isnan(threshold_for_precision(np.array([0]), np.array([0.5]), 0.9)[0])
    assert np.isnan(threshold_for_precision(np.zeros(0, int), np.zeros(0), 0.9)[0])


def test_roc_auc_hand_computed():
    assert roc_auc(np.array([0, 1]), np.array([0.2, 0.8])) == 1.0
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.1, 0.9])) == pytest.approx(0.875)
