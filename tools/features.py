"""Training targets for the SSD: anchor matching and box coding inside the TensorFlow graph.

:func:`targets_tf` turns a batch of padded ground truth into per-anchor targets with plain
TensorFlow ops (no ``numpy_function``), so it runs in ``tf.data.Dataset.map`` on batches
and in ``tf.function``. It mirrors the NumPy reference exactly: :func:`targets_numpy`,
which is built only from :func:`smilebot.matching.match` and
:meth:`smilebot.box_coder.BoxCoder.encode`; a parity test holds the two together.

Matching (see smilebot/matching.py): IoU in float64 with the operations of
:func:`smilebot.boxes.pairwise_iou`, padding rows as empty boxes, the best face per anchor
(lowest face index on ties) decides positive (IoU >= ``high``) / negative (< ``low``) /
ignored; then every valid face whose best IoU is > 0 is forced onto its best anchor (first
anchor on ties), the lowest face index winning an anchor that several faces force.
``tf.argmax`` does not promise which index it returns on ties, so ties are broken
explicitly (the smallest index among the maxima).

Targets (the model contract), per image of the batch, A anchors:

- ``face`` ``int32[B, A]``: 1 positive, 0 negative, -1 ignored (between the thresholds,
  or matched to an ignore face);
- ``smile`` ``int32[B, A]``: the matched face's label (1/0) at positives whose face has a
  known label, else -1;
- ``boxes`` ``float32[B, A, 4]``: the SSD codes of the matched face at positives, else 0;
- ``iou`` ``float32[B, A]``: IoU with the matched face at positives, else 0.

Not done here: reading images or manifests, augmentation, padding the ground truth, or
choosing hard negatives (the loss does that).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from smilebot.box_coder import MIN_SIZE, BoxCoder
from smilebot.matching import BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS, match

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf

logger = logging.getLogger(__name__)

TARGET_KEYS = ("face", "smile", "boxes", "iou")
DEFAULT_CODER = BoxCoder()  # SSD variances (0.1, 0.1, 0.2, 0.2)
_TINY64 = float(np.finfo(np.float64).tiny)  # pairwise_iou's floor for an empty union


def targets_numpy(
    gt_boxes: np.ndarray,
    gt_valid: np.ndarray,
    gt_smile: np.ndarray,
    gt_ignore: np.ndarray,
    anchors: np.ndarray,
    coder: BoxCoder = DEFAULT_CODER,
    high: float = 0.5,
    low: float = 0.4,
) -> dict[str, np.ndarray]:
    """The reference targets, from :func:`smilebot.matching.match` and ``coder.encode``.

    gt_boxes: ``float32[B, M, 4]`` normalized ``(x1, y1, x2, y2)``; gt_valid, gt_ignore:
    ``bool[B, M]``; gt_smile: ``int32[B, M]`` in {1, 0, -1 = unknown}; anchors:
    ``float32[A, 4]``. Returns the dict of the module docstring.
    """
    matches = match(gt_boxes, gt_valid, anchors, high=high, low=low)
    boxes = np.asarray(gt_boxes, dtype=np.float32)
    batch, num_gt = boxes.shape[:2]
    # One extra padding row (box 0, not ignore, smile unknown) that unmatched anchors read.
    row = np.where(matches.indices >= 0, matches.indices, num_gt)

    def take(values: np.ndarray, fill: object) -> np.ndarray:
        pad = np.full((batch, 1, *values.shape[2:]), fill, dtype=values.dtype)
        padded = np.concatenate([values, pad], axis=1)
        index = row.reshape(row.shape + (1,) * (values.ndim - 2))
        return np.take_along_axis(padded, index, axis=1)

    ignore = take(np.asarray(gt_ignore, dtype=bool), False)
    smile = take(np.asarray(gt_smile, dtype=np.int32), -1)
    face = np.where(
        matches.indices >= 0,
        np.where(ignore, -1, 1),
        np.where(matches.indices == BELOW_LOW_THRESHOLD, 0, -1),
    ).astype(np.int32)
    positive = face == 1
    codes = coder.encode(take(boxes, 0.0), anchors)
    return {
        "face": face,
        "smile": np.where(positive & ((smile == 0) | (smile == 1)), smile, -1).astype(np.int32),
        "boxes": np.where(positive[..., None], codes, np.float32(0)),
        "iou": np.where(positive, matches.iou, np.float32(0)),
    }


def targets_tf(
    gt_boxes: tf.Tensor,
    gt_valid: tf.Tensor,
    gt_smile: tf.Tensor,
    gt_ignore: tf.Tensor,
    anchors: np.ndarray | tf.Tensor,
    coder: BoxCoder = DEFAULT_CODER,
    high: float = 0.5,
    low: float = 0.4,
) -> dict[str, tf.Tensor]:
    """:func:`targets_numpy` in TensorFlow ops, batched; same arguments, tensors out.

    Shapes may be dynamic (``[None, None, 4]`` from ``padded_batch``); M may be 0.
    """
    _check_thresholds(high, low)
    gt_boxes = tf.convert_to_tensor(gt_boxes)
    indices, iou = match_tf(gt_boxes, gt_valid, anchors, high=high, low=low)
    num_gt = tf.shape(gt_boxes)[1]
    row = tf.where(indices >= 0, indices, num_gt)

    def take(values: tf.Tensor, fill: tf.Tensor) -> tf.Tensor:
        pad_shape = tf.concat([tf.shape(values)[:1], [1], tf.shape(values)[2:]], axis=0)
        padded = tf.concat([values, tf.fill(pad_shape, fill)], axis=1)
        return tf.gather(padded, row, axis=1, batch_dims=1)

    ignore = take(tf.cast(gt_ignore, tf.bool), tf.constant(False))
    smile = take(tf.cast(gt_smile, tf.int32), tf.constant(-1, tf.int32))
    face = tf.where(
        indices >= 0,
        tf.where(ignore, -1, 1),
        tf.where(indices == BELOW_LOW_THRESHOLD, 0, -1),
    )
    positive = face == 1
    codes = encode_tf(take(tf.cast(gt_boxes, tf.float32), tf.constant(0.0)), anchors, coder)
    return {
        "face": face,
        "smile": tf.where(positive & ((smile == 0) | (smile == 1)), smile, -1),
        "boxes": tf.where(positive[..., None], codes, tf.zeros_like(codes)),
        "iou": tf.where(positive, iou, tf.zeros_like(iou)),
    }


def match_tf(
    gt_boxes: tf.Tensor,
    gt_valid: tf.Tensor,
    anchors: np.ndarray | tf.Tensor,
    high: float = 0.5,
    low: float = 0.4,
) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`smilebot.matching.match` in TensorFlow ops.

    gt_boxes ``[B, M, 4]`` (any float dtype), gt_valid ``bool[B, M]``, anchors ``[A, 4]``
    -> ``(indices int32[B, A], iou float32[B, A])`` with the same sentinels and values.
    """
    _check_thresholds(high, low)
    boxes = tf.cast(gt_boxes, tf.float64)
    valid = tf.cast(gt_valid, tf.bool)
    boxes = tf.where(valid[..., None], boxes, tf.zeros_like(boxes))
    iou = _pairwise_iou(boxes, tf.cast(anchors, tf.float64))  # [B, M, A]
    num_gt = tf.shape(iou)[1]

    # With M = 0 the reductions over faces give -inf and the largest int, so every
    # anchor is BELOW_LOW_THRESHOLD and nothing is forced, as in match().
    best_iou = tf.reduce_max(iou, axis=1)  # [B, A]
    best_gt = _first_argmax(iou, axis=1)
    indices = tf.where(
        best_iou >= high,
        best_gt,
        tf.where(best_iou < low, BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS),
    )

    best_anchor = _first_argmax(iou, axis=2)  # [B, M]
    forcing = tf.reduce_max(iou, axis=2) > 0
    hits = _positions(tf.shape(iou)[2], axis=2, rank=3) == best_anchor[..., None]
    hits &= forcing[..., None]  # [B, M, A] one-hot rows of the faces that force
    gt_ids = _positions(num_gt, axis=1, rank=3)
    forced_gt = tf.reduce_min(tf.where(hits, gt_ids, num_gt), axis=1)  # lowest face wins
    forced = forced_gt < num_gt
    forced_iou = tf.reduce_max(
        tf.where(gt_ids == forced_gt[:, None, :], iou, tf.zeros_like(iou)), axis=1
    )
    indices = tf.where(forced, forced_gt, indices)
    iou_out = tf.where(forced, forced_iou, tf.maximum(best_iou, 0.0))  # 0 when M = 0
    return indices, tf.cast(iou_out, tf.float32)


def encode_tf(
    boxes: tf.Tensor, anchors: np.ndarray | tf.Tensor, coder: BoxCoder = DEFAULT_CODER
) -> tf.Tensor:
    """``coder.encode`` in TensorFlow ops: boxes ``[..., A, 4]``, anchors ``[A, 4]`` -> codes.

    float32 throughout, the same formulas, variances and ``MIN_SIZE`` floor.
    """
    b = _centre_form(tf.cast(boxes, tf.float32))
    a = _centre_form(tf.cast(anchors, tf.float32))
    v = tf.constant(coder.variances, tf.float32)
    txy = _divide(_divide(b[..., :2] - a[..., :2], a[..., 2:]), v[:2])
    twh = _divide(tf.math.log(_divide(b[..., 2:], a[..., 2:])), v[2:])
    return tf.concat([txy, twh], axis=-1)


def _check_thresholds(high: float, low: float) -> None:
    """The same rule as match(), checked while tracing rather than at run time."""
    if not 0 <= low <= high <= 1 or high == 0:
        raise ValueError(
            "matching thresholds need 0 <= low <= high <= 1 and high > 0; "
            f"got low={low}, high={high}"
        )


def _pairwise_iou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """smilebot.boxes.pairwise_iou, operation for operation: ``[B, M, 4]``, ``[A, 4]`` ->
    ``[B, M, A]`` in the inputs' dtype (float64 here, so results are bit-identical)."""
    ax1, ay1, ax2, ay2 = (a[..., i, None] for i in range(4))  # [B, M, 1]
    bx1, by1, bx2, by2 = (b[..., i] for i in range(4))  # [A]
    inter = tf.maximum(tf.minimum(ax2, bx2) - tf.maximum(ax1, bx1), 0.0)
    ih = tf.maximum(tf.minimum(ay2, by2) - tf.maximum(ay1, by1), 0.0)
    inter = inter * ih
    union = (_area(a)[..., None] + _area(b)) - inter
    return inter / tf.maximum(union, _TINY64)


def _area(boxes: tf.Tensor) -> tf.Tensor:
    """smilebot.boxes.area: ``[..., 4]`` -> ``[...]``, degenerate boxes 0."""
    width = tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    return width * tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)


def _centre_form(boxes: tf.Tensor) -> tf.Tensor:
    """As box_coder._centre_form: xyxy -> (cx, cy, w, h), w and h raised to MIN_SIZE."""
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    size = tf.maximum(boxes[..., 2:] - boxes[..., :2], MIN_SIZE)
    return tf.concat([centre, size], axis=-1)


def _divide(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """``x / y`` for positive ``y``, rounded exactly as NumPy rounds it.

    In a graph, Grappler's constant folding rewrites chains of RealDiv by constants (here
    the anchors and the variances), which changes the float32 rounding (tx, ty differed
    by an ulp until constant folding was switched off); it leaves DivNoNan alone, and for
    ``y != 0`` DivNoNan is the plain IEEE division.
    """
    return tf.math.divide_no_nan(x, y)


def _positions(n: tf.Tensor, axis: int, rank: int) -> tf.Tensor:
    """``0..n-1`` as int32, shaped to broadcast along ``axis`` of a rank-``rank`` tensor."""
    shape = [1] * rank
    shape[axis] = -1
    return tf.reshape(tf.range(n, dtype=tf.int32), shape)


def _first_argmax(values: tf.Tensor, axis: int) -> tf.Tensor:
    """Index of the maximum along ``axis``, the smallest index on ties (int32)."""
    n = tf.shape(values)[axis]
    is_max = values == tf.reduce_max(values, axis=axis, keepdims=True)
    positions = _positions(n, axis=axis, rank=len(values.shape))
    return tf.reduce_min(tf.where(is_max, positions, n), axis=axis)
