"""The one box format of smilebot, and the geometry on it.

Inside the project every box is ``float32[..., 4]`` as ``(x1, y1, x2, y2)``,
normalized to the model input (0..1 across its width and height). Other formats
(pixels, ``xywh`` rows from a CSV, centre form for box coding) exist only at the
edges, through :func:`convert` and :func:`to_pixels` / :func:`from_pixels`.

Areas are continuous: a box from 0 to 1 has width 1; there is no "+1" pixel rule.
Degenerate boxes (zero or negative width or height) have area 0 and IoU 0 with
everything, never NaN.

Not the job of this module: matching boxes to anchors (matching.py) or mapping
boxes between a camera frame and the model input (preprocess.Letterbox).
"""

from __future__ import annotations

import numpy as np

FORMATS = ("xyxy", "xywh", "cxcywh")


def convert(boxes: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Convert boxes ``[..., 4]`` between ``"xyxy"``, ``"xywh"`` (corner + size) and ``"cxcywh"``.

    Units are kept (pixels stay pixels); the result has the input's float dtype
    (float32 for integer input).
    """
    for fmt in (src, dst):
        if fmt not in FORMATS:
            raise ValueError(f"unknown box format {fmt!r}; expected one of {FORMATS}")
    b = _as_float(boxes)
    if src == dst:
        return b.copy()
    if src == "xywh":
        b = np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)
    elif src == "cxcywh":
        half = b[..., 2:] / 2
        b = np.concatenate([b[..., :2] - half, b[..., :2] + half], axis=-1)
    if dst == "xywh":
        return np.concatenate([b[..., :2], b[..., 2:] - b[..., :2]], axis=-1)
    if dst == "cxcywh":
        return np.concatenate([(b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]], axis=-1)
    return b


def to_pixels(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Normalized ``xyxy [..., 4]`` -> pixel ``xyxy`` on a ``width x height`` image."""
    return _as_float(boxes) * np.array([width, height, width, height], dtype=np.float32)


def from_pixels(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixel ``xyxy [..., 4]`` on a ``width x height`` image -> normalized ``xyxy``."""
    return _as_float(boxes) / np.array([width, height, width, height], dtype=np.float32)


def clip(boxes: np.ndarray) -> np.ndarray:
    """Clip normalized ``xyxy [..., 4]`` to the unit square."""
    return np.clip(_as_float(boxes), 0.0, 1.0)


def area(boxes: np.ndarray) -> np.ndarray:
    """Area of ``xyxy [..., 4]`` boxes -> ``[...]``; degenerate boxes have area 0."""
    b = _as_float(boxes)
    return np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)


def pairwise_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection area of every box in ``a [..., N, 4]`` with every box in ``b [..., M, 4]``
    -> ``[..., N, M]``, in the inputs' common float dtype; leading dimensions broadcast."""
    a, b = _as_float(a), _as_float(b)
    dtype = np.result_type(a, b)
    ax1, ay1, ax2, ay2 = (_column(a, i, dtype)[..., :, None] for i in range(4))
    bx1, by1, bx2, by2 = (_column(b, i, dtype)[..., None, :] for i in range(4))
    inter = np.minimum(ax2, bx2)
    inter -= np.maximum(ax1, bx1)
    np.maximum(inter, 0, out=inter)
    ih = np.minimum(ay2, by2)
    ih -= np.maximum(ay1, by1)
    np.maximum(ih, 0, out=ih)
    inter *= ih
    return inter


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a [..., N, 4]`` with every box in ``b [..., M, 4]`` -> ``[..., N, M]``.

    Leading dimensions broadcast, so a batch of ground truth ``[B, M, 4]`` against
    one anchor set ``[A, 4]`` gives ``[B, M, A]``. Computed in the inputs' common
    float dtype; pairs whose union is empty have IoU 0.
    """
    a, b = _as_float(a), _as_float(b)
    inter = pairwise_intersection(a, b)
    union = area(a)[..., :, None] + area(b)[..., None, :]
    union -= inter
    # An empty union means two empty boxes (inter is 0 too): dividing by the smallest
    # normal number then gives 0 without a branch; no real union is that small.
    np.maximum(union, np.finfo(inter.dtype).tiny, out=union)
    inter /= union
    return inter


def _column(boxes: np.ndarray, i: int, dtype: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(boxes[..., i], dtype=dtype)


def _as_float(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes)
    if b.shape[-1:] != (4,):
        raise ValueError(f"boxes must have shape [..., 4], got {b.shape}")
    return b if np.issubdtype(b.dtype, np.floating) else b.astype(np.float32)
