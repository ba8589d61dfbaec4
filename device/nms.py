"""Non-maximum suppression (NMS) for smilebot's detector, in NumPy only.

Takes candidate boxes that are already decoded (``float32[N, 4]``, normalized
``(x1, y1, x2, y2)``, see :mod:`smilebot.boxes`) with their face scores, and keeps the
best box of each group of overlapping boxes. The device decoder and the evaluation
code both call :func:`nms`, so a model is scored with the same post-processing it
runs with. Three methods, chosen by name (:data:`METHODS`):

- ``"greedy"``: classic greedy NMS. A box is suppressed when its IoU with an
  already kept box is greater than ``iou_threshold`` (strictly, as torchvision).
- ``"voting"``: the same keep decisions as greedy, but each kept box is replaced
  by the weighted mean of itself and the boxes it suppresses, with weights
  ``score * IoU`` (weighted box voting).
- ``"iou_rerank"``: greedy, but ranked by ``score * predicted_iou``, a model's own
  estimate of how well each box is localized (IoU-aware ranking).

IoU is computed in float64 from the float32 inputs, so a keep decision does not hinge
on float32 rounding at the threshold and matches the plain-Python reference
(``smilebot_tools.naive.naive_nms``) exactly.

Not the job of this module: decoding anchor offsets into boxes (the box coder), turning
logits into probabilities (no sigmoid here: scores must already be probabilities in
0..1), clipping boxes, or batching several images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smilebot.boxes import pairwise_iou

METHODS = ("greedy", "voting", "iou_rerank")


@dataclass(frozen=True, eq=False)
class Kept:
    """The result of :func:`nms`, in output order (descending ranking score).

    ``indices: int64[K]`` into the input; ``boxes: float32[K, 4]`` (refined by
    ``"voting"``, else the input boxes); ``scores: float32[K]``, the input face scores.
    """

    indices: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    iou_threshold: float = 0.45,
    method: str = "greedy",
    predicted_iou: np.ndarray | None = None,
    max_detections: int = 100,
    score_threshold: float = 0.0,
) -> Kept:
    """Suppress overlapping boxes ``float32[N, 4]`` given face scores ``float32[N]``.

    Candidates with ``score < score_threshold`` are dropped first. The rest are ranked
    by a stable descending sort (ties keep input order) of the score, or of
    ``score * predicted_iou`` for ``method="iou_rerank"`` (``predicted_iou:
    float32[N]``, required there and ignored by the other methods). At most
    ``max_detections`` boxes are kept.
    """
    if method not in METHODS:
        raise ValueError(f"unknown NMS method {method!r}; expected one of {METHODS}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if max_detections < 0:
        raise ValueError(f"max_detections must be >= 0, got {max_detections}")
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {boxes.shape}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(
            f"scores must have shape [N] matching boxes {boxes.shape}, got {scores.shape}"
        )
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")

    rank = scores
    if method == "iou_rerank":
        if predicted_iou is None:
            raise ValueError("method 'iou_rerank' needs predicted_iou, float32[N]")
        predicted_iou = np.asarray(predicted_iou, dtype=np.float32)
        if predicted_iou.shape != scores.shape:
            raise ValueError(
                f"predicted_iou must have the shape of scores {scores.shape}, "
                f"got {predicted_iou.shape}"
            )
        if np.isnan(predicted_iou).any():
            raise ValueError("predicted_iou contains NaN")
        rank = scores * predicted_iou

    candidates = np.flatnonzero(scores >= score_threshold)
    remaining = candidates[np.argsort(-rank[candidates], kind="stable")]
    boxes64 = boxes.astype(np.float64)
    voting = method == "voting"
    keep: list[int] = []
    voted: list[np.ndarray] = []
    while remaining.size and len(keep) < max_detections:
        top = remaining[0]
        iou = pairwise_iou(boxes64[top : top + 1], boxes64[remaining])[0]
        iou[0] = 1.0  # the kept box is in its own cluster, even when degenerate (IoU 0)
        cluster = iou > iou_threshold
        keep.append(int(top))
        if voting:
            members = remaining[cluster]
            weights = scores[members].astype(np.float64) * iou[cluster]
            total = weights.sum()
            voted.append(weights @ boxes64[members] / total if total > 0 else boxes64[top])
        remaining = remaining[~cluster]

    indices = np.asarray(keep, dtype=np.int64)
    kept_boxes = np.array(voted, dtype=np.float32).reshape(-1, 4) if voting else boxes[indices]
    return Kept(indices=indices, boxes=kept_boxes, scores=scores[indices])
