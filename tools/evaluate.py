"""Detection and smile metrics on a labelled manifest, for any model that yields faces.

Faces: a detection is a true positive when its best unmatched face (greedy, highest
score first) overlaps it at IoU >= the threshold; a detection whose best face is an
ignore region is neither a hit nor a miss, and ignore faces are not counted as faces.
AP is the area under the all-point interpolated precision-recall curve (VOC 2010+).
``mean_top_iou`` answers v1's complaint ("the most confident box fits the face
poorly"): for every face that some detection overlaps (IoU >= 0.1), the IoU of the
highest-scoring such detection, averaged.

Smiles are scored on the faces that were found (true positives at IoU 0.5) and carry a
known smile label: precision, recall and F1 at a threshold, the precision-recall curve,
and the lowest threshold that reaches a target precision.

Boxes are pixels ``(x1, y1, x2, y2)`` of the original image. Not the job of this module:
running models (callers pass detections), plots (the evaluation issue adds them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smilebot.boxes import pairwise_iou

FOUND_IOU = 0.1  # a face "seen" by a detection, for mean_top_iou


@dataclass(frozen=True)
class Truth:
    """One image's faces: ``boxes`` float[N, 4] px, ``ignore`` bool[N], ``smile`` int[N] 1/0/-1."""

    boxes: np.ndarray
    ignore: np.ndarray
    smile: np.ndarray


@dataclass(frozen=True)
class Found:
    """One image's detections: ``boxes`` float[K, 4] px, ``scores``, ``smiles`` float[K]."""

    boxes: np.ndarray
    scores: np.ndarray
    smiles: np.ndarray


def match(truth: Truth, found: Found, iou_threshold: float) -> np.ndarray:
    """Per detection: the face index it hits, -1 (false positive) or -2 (on an ignore face)."""
    result = np.full(len(found.scores), -1, np.int64)
    if len(found.scores) == 0 or len(truth.boxes) == 0:
        return result
    iou = pairwise_iou(found.boxes.astype(np.float64), truth.boxes.astype(np.float64))
    taken = np.zeros(len(truth.boxes), bool)
    for d in np.argsort(-found.scores, kind="stable"):
        overlaps = np.where(taken & ~truth.ignore, -1.0, iou[d])
        best = int(overlaps.argmax())
        if overlaps[best] >= iou_threshold:
            if truth.ignore[best]:
                result[d] = -2
            else:
                result[d] = best
                taken[best] = True
    return result


def average_precision(hits: np.ndarray, scores: np.ndarray, num_faces: int) -> float:
    """All-point interpolated AP from per-detection hits (bool) and scores, over all images."""
    if num_faces == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(hits[order])
    fp = np.cumsum(~hits[order])
    recall = tp / num_faces
    precision = tp / np.maximum(tp + fp, 1)
    envelope = np.maximum.accumulate(np.concatenate([precision, [0.0]])[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope[:-1]))


def face_metrics(
    truths: list[Truth],
    founds: list[Found],
    iou_threshold: float = 0.5,
    operating_threshold: float = 0.5,
) -> dict:
    """AP at ``iou_threshold``, AP@[.5:.95], recall and false positives per image (over all
    detections, and over those scoring >= ``operating_threshold``), mean_top_iou."""
    num_faces = sum(int((~t.ignore).sum()) for t in truths)
    scores = np.concatenate([f.scores for f in founds]) if founds else np.zeros(0)

    def hits_at(threshold: float) -> tuple[np.ndarray, np.ndarray]:
        matched = [match(t, f, threshold) for t, f in zip(truths, founds, strict=True)]
        flat = np.concatenate(matched) if matched else np.zeros(0, np.int64)
        counted = flat != -2
        return flat[counted] >= 0, scores[counted]

    hits, counted_scores = hits_at(iou_threshold)
    kept = counted_scores >= operating_threshold
    ap_range = [average_precision(*hits_at(t), num_faces) for t in np.arange(0.5, 0.96, 0.05)]
    top_ious = [iou for t, f in zip(truths, founds, strict=True) for iou in _top_ious(t, f)]
    return {
        "faces": num_faces,
        "detections": len(scores),
        "ap50": average_precision(hits, counted_scores, num_faces),
        "ap50_95": float(np.mean(ap_range)),
        "recall": float(hits.sum() / num_faces) if num_faces else float("nan"),
        "fp_per_image": float((~hits).sum() / max(1, len(truths))),
        "operating_threshold": operating_threshold,
        "recall_at_threshold": float(hits[kept].sum() / num_faces) if num_faces else float("nan"),
        "fp_per_image_at_threshold": float((~hits[kept]).sum() / max(1, len(truths))),
        "mean_top_iou": float(np.mean(top_ious)) if top_ious else float("nan"),
        "faces_seen": len(top_ious),
    }


def _top_ious(truth: Truth, found: Found) -> list[float]:
    """For each non-ignore face, the IoU of the highest-scoring detection that sees it."""
    if len(found.scores) == 0 or len(truth.boxes) == 0:
        return []
    iou = pairwise_iou(truth.boxes.astype(np.float64), found.boxes.astype(np.float64))
    out = []
    for face in np.flatnonzero(~truth.ignore):
        seen = np.flatnonzero(iou[face] >= FOUND_IOU)
        if len(seen):
            out.append(float(iou[face, seen[np.argmax(found.scores[seen])]]))
    return out


def smile_pairs(truths: list[Truth], founds: list[Found]) -> tuple[np.ndarray, np.ndarray]:
    """(labels int[P], predicted smile probability float[P]) of found faces with known labels."""
    labels, probs = [], []
    for truth, found in zip(truths, founds, strict=True):
        for d, face in enumerate(match(truth, found, 0.5)):
            if face >= 0 and truth.smile[face] in (0, 1):
                labels.append(int(truth.smile[face]))
                probs.append(float(found.smiles[d]))
    return np.array(labels, np.int64), np.array(probs, np.float64)


def smile_metrics(
    labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5, target_precision: float = 0.9
) -> dict:
    """Precision, recall, F1 at ``threshold``; ROC AUC; the lowest threshold whose precision
    reaches ``target_precision`` and the recall there."""
    predicted = probs >= threshold
    tp = int((predicted & (labels == 1)).sum())
    precision = tp / max(1, int(predicted.sum()))
    recall = tp / max(1, int((labels == 1).sum()))
    at_target = threshold_for_precision(labels, probs, target_precision)
    return {
        "faces": len(labels),
        "smiling": int((labels == 1).sum()),
        "threshold": threshold,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(precision + recall, 1e-12),
        "auc": roc_auc(labels, probs),
        "target_precision": target_precision,
        "threshold_at_target": at_target[0],
        "recall_at_target": at_target[1],
    }


def threshold_for_precision(labels: np.ndarray, probs: np.ndarray, target: float) -> tuple:
    """(threshold, recall) of the lowest threshold whose predictions (prob >= threshold)
    have precision >= ``target``, i.e. the most recall at that precision; (nan, 0.0) if none."""
    if len(probs) == 0:
        return float("nan"), 0.0
    order = np.argsort(-probs, kind="stable")
    sorted_probs = probs[order]
    tp = np.cumsum(labels[order] == 1)
    ends = np.flatnonzero(np.append(sorted_probs[1:] != sorted_probs[:-1], True))  # tie groups
    precision = tp[ends] / (ends + 1)
    ok = ends[precision >= target]
    if len(ok) == 0:
        return float("nan"), 0.0
    return float(sorted_probs[ok[-1]]), float(tp[ok[-1]] / max(1, int((labels == 1).sum())))


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    positives, negatives = int((labels == 1).sum()), int((labels == 0).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(probs, kind="stable")
    ranks = np.empty(len(probs))
    sorted_probs = probs[order]
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and sorted_probs[j + 1] == sorted_probs[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[labels == 1].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))
