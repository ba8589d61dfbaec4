"""v1's naive per-box Python loops, kept as references for tests and benchmarks only.

Never used by training or serving: the vectorized versions live in the smilebot package.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from smilebot.anchors import AnchorSpec
from smilebot.matching import BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS


def naive_nms(
    boxes: Sequence[Sequence[float]], scores: Sequence[float], iou_threshold: float
) -> list[int]:
    """Greedy NMS one box at a time; the reference for ``smilebot.nms.nms(method="greedy")``.

    ``boxes`` are ``N`` rows of normalized ``(x1, y1, x2, y2)``, ``scores`` ``N`` numbers.
    Returns the kept indices, highest score first (ties keep input order). A box is kept
    unless its IoU with an already kept box is greater than ``iou_threshold``.
    """

    rows = [[float(v) for v in box] for box in boxes]
    values = [float(s) for s in scores]
    order = sorted(range(len(values)), key=lambda i: values[i], reverse=True)
    kept: list[int] = []
    for i in order:
        if all(_iou(rows[i], rows[j]) <= iou_threshold for j in kept):
            kept.append(i)
    return kept


def naive_match(
    gt_boxes: Sequence, gt_valid: Sequence, spec: AnchorSpec, high: float = 0.5, low: float = 0.4
) -> tuple[list[list[int]], list[list[float]]]:
    """v1's matcher: per image, per level, per location, per anchor, per box, in plain Python.

    Same contract as :func:`smilebot.matching.match` (which it must equal), except that it
    builds each anchor itself from ``spec`` inside the loop, as v1 did. Returns
    ``(indices, iou)`` as nested lists ``[B][A]``.
    """
    all_indices, all_iou = [], []
    for image_boxes, image_valid in zip(gt_boxes, gt_valid, strict=True):
        gts = [
            (m, [float(v) for v in box])
            for m, (box, ok) in enumerate(zip(image_boxes, image_valid, strict=True))
            if ok
        ]
        best_for_gt = {m: (0.0, -1) for m, _ in gts}  # IoU, anchor; only IoU > 0 counts
        indices, ious, rows_iou = [], [], []
        a = 0
        for level in spec.levels:
            rows, cols = spec.grid(level)
            for row in range(rows):
                for col in range(cols):
                    cx = (col + 0.5) * level.stride
                    cy = (row + 0.5) * level.stride
                    for scale in level.scales:
                        for ratio in spec.aspect_ratios:
                            w = scale * math.sqrt(ratio)
                            h = scale * (1 / math.sqrt(ratio))
                            anchor = (
                                _f32((cx - w / 2) / spec.input_width),
                                _f32((cy - h / 2) / spec.input_height),
                                _f32((cx + w / 2) / spec.input_width),
                                _f32((cy + h / 2) / spec.input_height),
                            )
                            best_iou, best_m = -1.0, BELOW_LOW_THRESHOLD
                            row_iou = {}
                            for m, box in gts:
                                iou = _iou(box, anchor)
                                row_iou[m] = iou
                                if iou > best_iou:
                                    best_iou, best_m = iou, m
                                if iou > best_for_gt[m][0]:
                                    best_for_gt[m] = (iou, a)
                            if best_iou >= high:
                                indices.append(best_m)
                            elif best_iou < low:
                                indices.append(BELOW_LOW_THRESHOLD)
                            else:
                                indices.append(BETWEEN_THRESHOLDS)
                            ious.append(max(best_iou, 0.0))
                            rows_iou.append(row_iou)
                            a += 1
        for m, _ in reversed(gts):  # lower box index wins: assign it last
            iou, anchor_index = best_for_gt[m]
            if anchor_index >= 0:
                indices[anchor_index] = m
                ious[anchor_index] = rows_iou[anchor_index][m]
        all_indices.append(indices)
        all_iou.append(ious)
    return all_indices, all_iou


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``(x1, y1, x2, y2)`` boxes, in the operation order of ``boxes.pairwise_iou``."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = (
        max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
        + max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
        - inter
    )
    return inter / union if union > 0 else 0.0


def _f32(x: float) -> float:
    """Round a Python float to float32 precision, as the stored anchors are."""
    return struct.unpack("f", struct.pack("f", x))[0]
