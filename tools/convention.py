"""The face box convention, and the measured corrections that map other boxes onto it.

ARCHITECTURE.md: "A face box runs from the top of the eyebrows to the bottom of the chin,
and across the cheek contours (left to right); coordinates are continuous, a box over a
whole W x H image is (0, 0, W, H)." Teachers and datasets do not follow it as their boxes
come, so each box source gets a :class:`BoxCorrection`, measured against FaceMesh landmarks
on ~340 real faces, and applied before a box becomes a label.

Boxes here are pixel ``(x1, y1, x2, y2)`` arrays ``[..., 4]``; a correction moves each side
by a fraction of the box's own width ``w = x2 - x1`` or height ``h = y2 - y1``.

Not the job of this module: clipping to the image, or measuring a correction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BoxCorrection:
    """Side offsets as fractions of the source box: ``x1 += dx1*w, y1 += dy1*h, x2 += dx2*w,
    y2 += dy2*h`` (``w``, ``h`` = the source box's width and height)."""

    dx1: float
    dy1: float
    dx2: float
    dy2: float

    def apply(self, boxes_xyxy_px: np.ndarray) -> np.ndarray:
        """Corrected copy of pixel boxes ``[..., 4]`` (float; integer input becomes float64)."""
        boxes = np.asarray(boxes_xyxy_px)
        if boxes.shape[-1:] != (4,):
            raise ValueError(f"boxes must have shape [..., 4], got {boxes.shape}")
        dtype = boxes.dtype if np.issubdtype(boxes.dtype, np.floating) else np.float64
        boxes = boxes.astype(dtype, copy=True)
        w = boxes[..., 2] - boxes[..., 0]
        h = boxes[..., 3] - boxes[..., 1]
        boxes[..., 0] += self.dx1 * w
        boxes[..., 1] += self.dy1 * h
        boxes[..., 2] += self.dx2 * w
        boxes[..., 3] += self.dy2 * h
        return boxes


#: MediaPipe BlazeFace full range (``model_selection=1``) -> brow-to-chin.
BLAZEFACE_FULL = BoxCorrection(dx1=0.068, dy1=0.136, dx2=-0.105, dy2=-0.007)
#: MediaPipe BlazeFace short range (``model_selection=0``) -> brow-to-chin.
BLAZEFACE_SHORT = BoxCorrection(dx1=0.068, dy1=0.089, dx2=-0.089, dy2=-0.023)
#: MTCNN (the ``mtcnn`` package) -> brow-to-chin.
MTCNN = BoxCorrection(dx1=0.012, dy1=0.242, dx2=0.026, dy2=-0.002)
