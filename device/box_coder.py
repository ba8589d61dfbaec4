"""SSD box coding: boxes <-> offsets relative to anchors, with variances.

For a box with centre ``(cx, cy)`` and size ``(w, h)`` and an anchor with
``(acx, acy, aw, ah)``, the code is::

    tx = (cx - acx) / aw / vx        tw = log(w / aw) / vw
    ty = (cy - acy) / ah / vy        th = log(h / ah) / vh

with variances ``(vx, vy, vw, vh) = (0.1, 0.1, 0.2, 0.2)`` by default, so codes of
well-matched boxes are of order 1. Boxes and anchors are normalized
``(x1, y1, x2, y2)``; widths and heights below :data:`MIN_SIZE` are raised to it
before the log, so degenerate boxes give finite codes, and decoding clamps
``tw, th`` so that no code overflows.

Not the job of a box coder: matching boxes to anchors (matching.py), choosing
which codes enter the loss, or NMS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from smilebot.boxes import convert

MIN_SIZE = 1e-6
MAX_LOG_SCALE = math.log(1000.0 / 16)  # as torchvision's bbox_xform_clip


@dataclass(frozen=True)
class BoxCoder:
    """Encode/decode with SSD variances ``(vx, vy, vw, vh)``; stored in the model sidecar."""

    variances: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)

    def __post_init__(self) -> None:
        v = tuple(float(x) for x in self.variances)
        if len(v) != 4 or any(not x > 0 for x in v):
            raise ValueError(f"box coder: variances must be 4 positive numbers, got {v!r}")
        object.__setattr__(self, "variances", v)

    def encode(self, boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """Boxes ``float32[..., A, 4]`` against anchors ``[A, 4]`` -> codes ``[..., A, 4]``."""
        b = _centre_form(boxes)
        a = _centre_form(anchors)
        v = np.asarray(self.variances, dtype=np.float32)
        txy = (b[..., :2] - a[..., :2]) / a[..., 2:] / v[:2]
        twh = np.log(b[..., 2:] / a[..., 2:]) / v[2:]
        return np.concatenate([txy, twh], axis=-1).astype(np.float32)

    def decode(self, codes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """Codes ``float32[..., A, 4]`` against anchors ``[A, 4]`` -> boxes ``float32[..., A, 4]``.

        The boxes are not clipped to the image; clip at the edge that needs it.
        """
        c = np.asarray(codes, dtype=np.float32)
        a = _centre_form(anchors)
        v = np.asarray(self.variances, dtype=np.float32)
        cxy = c[..., :2] * v[:2] * a[..., 2:] + a[..., :2]
        wh = np.exp(np.minimum(c[..., 2:] * v[2:], MAX_LOG_SCALE)) * a[..., 2:]
        return convert(np.concatenate([cxy, wh], axis=-1), "cxcywh", "xyxy").astype(np.float32)

    def to_dict(self) -> dict:
        return {"variances": list(self.variances)}


def _centre_form(boxes: np.ndarray) -> np.ndarray:
    b = convert(np.asarray(boxes, dtype=np.float32), "xyxy", "cxcywh")
    b[..., 2:] = np.maximum(b[..., 2:], MIN_SIZE)
    return b
