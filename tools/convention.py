"""The face box convention, and the measured corrections that map other boxes onto it.

ARCHITECTURE.md: "A face box runs from the top of the eyebrows to the bottom of the chin,
and across the cheek contours (left to right); coordinates are continuous, a box over a
whole W x H image is (0, 0, W, H)." Teachers and datasets do not follow it as their boxes
come, so each box source gets a :class:`BoxCorrection`, measured (the teachers' against
FaceMesh landmarks on ~340 real faces, Haar's against the labelled training boxes) and
applied before a box becomes a label or is scored.

Boxes here are pixel ``(x1, y1, x2, y2)`` arrays ``[..., 4]``; a correction moves each side
by a fraction of the box's own width ``w = x2 - x1`` or height ``h = y2 - y1``.

:func:`measure_correction` turns matched (source, target) box pairs into a correction: the
median of each side's offset; finding and matching the boxes is the caller's job.

Not the job of this module: clipping to the image, running detectors.
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


def measure_correction(pairs: list[tuple[np.ndarray, np.ndarray]]) -> BoxCorrection:
    """The correction that maps source boxes onto target boxes: per side, the median offset
    ``(target - source)`` as a fraction of the source box's width (x sides) or height (y sides).

    ``pairs``: per image, ``(source, target)`` pixel boxes float[N, 4], row i of one matched
    to row i of the other. Raises ``ValueError`` for mismatched shapes, no pairs at all, or a
    source box without positive width and height.
    """
    sources, targets = [], []
    for i, (source, target) in enumerate(pairs):
        source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
        if source.shape != target.shape or source.shape[-1:] != (4,) or source.ndim != 2:
            raise ValueError(
                f"pair {i}: source and target must both be [N, 4], got "
                f"{source.shape} and {target.shape}"
            )
        sources.append(source)
        targets.append(target)
    source = np.concatenate(sources) if sources else np.zeros((0, 4))
    target = np.concatenate(targets) if targets else np.zeros((0, 4))
    if len(source) == 0:
        raise ValueError("no matched boxes to measure a correction from")
    size = np.tile(source[:, 2:] - source[:, :2], 2)  # w, h, w, h
    if not (size > 0).all():
        raise ValueError("every source box needs a positive width and height")
    dx1, dy1, dx2, dy2 = np.median((target - source) / size, axis=0)
    return BoxCorrection(float(dx1), float(dy1), float(dx2), float(dy2))


#: MediaPipe BlazeFace full range (``model_selection=1``) -> brow-to-chin.
BLAZEFACE_FULL = BoxCorrection(dx1=0.068, dy1=0.136, dx2=-0.105, dy2=-0.007)
#: MediaPipe BlazeFace short range (``model_selection=0``) -> brow-to-chin.
BLAZEFACE_SHORT = BoxCorrection(dx1=0.068, dy1=0.089, dx2=-0.089, dy2=-0.023)
#: MTCNN (the ``mtcnn`` package) -> brow-to-chin.
MTCNN = BoxCorrection(dx1=0.012, dy1=0.242, dx2=0.026, dy2=-0.002)
#: OpenCV Haar ``haarcascade_frontalface_default.xml`` (v1's settings) -> brow-to-chin.
#: Measured 2026-11-30 on the train split (data/manifests/train.csv, synthetic scenes left
#: out): 383 faces matched at IoU >= 0.3 to the labelled (teacher-kindled, brow-to-chin)
#: boxes, 378 of them video frames of three clips (268 from one); mean IoU of the pairs
#: 0.522 raw -> 0.896 corrected. Reproduce with
#: ``smilebot_tools.baselines.measure_haar_correction(Path("data/manifests/train.csv"))``.
HAAR_FRONTAL = BoxCorrection(dx1=0.124, dy1=0.273, dx2=-0.142, dy2=0.039)
