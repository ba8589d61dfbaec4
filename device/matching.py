"""Anchor matching: which ground-truth face, if any, each anchor is trained on.

Vectorized over a whole batch. For every anchor, the ground-truth box with the
highest IoU is its candidate; the anchor is

- matched to it (index ``>= 0``) when that IoU is ``>= high``,
- :data:`BELOW_LOW_THRESHOLD` (a negative, trained as background) when it is ``< low``,
- :data:`BETWEEN_THRESHOLDS` (ignored by the loss) otherwise.

Then every ground-truth box is forced onto its best anchor (highest IoU, first on
ties), whatever the thresholds say, so that no face goes untrained; where two
boxes force the same anchor the lower box index wins. A box that overlaps no
anchor at all (best IoU 0) is not forced. Ties between ground-truth boxes for one
anchor also go to the lower index.

IoU is computed in float64 so that the result does not hinge on rounding at the
thresholds; the TensorFlow input pipeline mirrors this module and is tested
against it.

Not the job of this module: encoding box offsets (box_coder.py) or choosing hard
negatives (the loss does that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smilebot.boxes import pairwise_iou

BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2


@dataclass(frozen=True)
class Matches:
    """``indices``: ``int32[B, A]``, a ground-truth index or a sentinel;
    ``iou``: ``float32[B, A]``, IoU with the matched box (for sentinels, the best IoU)."""

    indices: np.ndarray
    iou: np.ndarray


def match(
    gt_boxes: np.ndarray,
    gt_valid: np.ndarray,
    anchors: np.ndarray,
    high: float = 0.5,
    low: float = 0.4,
) -> Matches:
    """Match a batch of padded ground truth to one anchor set.

    gt_boxes: ``float32[B, M, 4]`` normalized ``(x1, y1, x2, y2)``, padded to M per image.
    gt_valid: ``bool[B, M]``, False for padding rows.
    anchors: ``float32[A, 4]`` normalized ``(x1, y1, x2, y2)``.
    """
    if not 0 <= low <= high <= 1 or high == 0:
        raise ValueError(
            "matching thresholds need 0 <= low <= high <= 1 and high > 0; "
            f"got low={low}, high={high}"
        )
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64)
    gt_valid = np.asarray(gt_valid, dtype=bool)
    if gt_boxes.ndim != 3 or gt_valid.shape != gt_boxes.shape[:2]:
        raise ValueError(
            "gt_boxes must be [B, M, 4] and gt_valid [B, M]; "
            f"got {gt_boxes.shape} and {gt_valid.shape}"
        )
    batch, num_gt = gt_valid.shape
    num_anchors = len(anchors)
    if num_gt == 0:
        return Matches(
            np.full((batch, num_anchors), BELOW_LOW_THRESHOLD, np.int32),
            np.zeros((batch, num_anchors), np.float32),
        )
    # Padding rows become empty boxes: IoU 0 with every anchor, so they can only win
    # an anchor whose best IoU is 0, which is a negative anyway; they never force.
    gt_boxes = np.where(gt_valid[..., None], gt_boxes, 0.0)
    iou = pairwise_iou(gt_boxes, np.asarray(anchors, dtype=np.float64))  # [B, M, A]

    best_gt = iou.argmax(axis=1)  # [B, A], lowest box index on ties
    best_iou = np.take_along_axis(iou, best_gt[:, None, :], axis=1)[:, 0, :]
    indices = np.where(
        best_iou >= high,
        best_gt,
        np.where(best_iou < low, BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS),
    )

    best_anchor = iou.argmax(axis=2)  # [B, M], first anchor on ties
    forcing = iou.max(axis=2) > 0
    forced = np.zeros((batch, num_anchors), dtype=bool)
    forced_gt = np.zeros((batch, num_anchors), dtype=np.intp)
    for m in reversed(range(num_gt)):  # the lowest box index is written last and wins
        rows = np.flatnonzero(forcing[:, m])
        forced[rows, best_anchor[rows, m]] = True
        forced_gt[rows, best_anchor[rows, m]] = m
    indices = np.where(forced, forced_gt, indices).astype(np.int32)
    forced_iou = np.take_along_axis(iou, forced_gt[:, None, :], axis=1)[:, 0, :]
    return Matches(indices, np.where(forced, forced_iou, best_iou).astype(np.float32))
