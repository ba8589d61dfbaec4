"""Known failure cases of a model, shown on images that may be committed.

The public-domain photos in ``samples/`` carry by-eye labels (``samples/LABELS.csv``: a
brow-to-chin face box in pixels and a smile label 1/0/-1). :func:`find_failures` runs a
:class:`~smilebot.detector.Detector` at its operating thresholds over them and lists
what it gets wrong: a labelled face it misses (no detection at IoU >= 0.5), a detection
on no labelled face (a false face), and a labelled smile (1 or 0) it judges the other
way. :func:`save_crop` draws one case as a small PNG (the truth in green, the detection
in red) for the model card.

Not the job of this module: metrics over a whole manifest (:mod:`smilebot_tools.report`);
the validation images cannot be committed, so their failures stay in ``results/``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from smilebot.boxes import pairwise_iou
from smilebot.detector import Detector

HIT_IOU = 0.5
CROP_HEIGHT = 160  # px of a saved crop
CROP_MARGIN = 0.35  # of the larger box side, on every side


@dataclass(frozen=True)
class Label:
    """One by-eye face: ``box`` (x1, y1, x2, y2) px of ``image``; ``smile`` 1, 0 or -1."""

    image: str
    box: tuple[float, float, float, float]
    smile: int
    note: str


@dataclass(frozen=True)
class Failure:
    """One mistake: ``kind`` "missed face" | "false face" | "missed smile" | "false smile"."""

    kind: str
    image: str
    truth: tuple[float, float, float, float] | None
    found: tuple[float, float, float, float] | None
    score: float | None  # the detection's face score
    smile: float | None  # the detection's smile probability
    threshold: float  # the threshold the decision was made at

    def caption(self) -> str:
        """One line for the card, e.g. ``astronaut.png: missed smile (0.29 < 0.74)``."""
        if self.kind == "missed face":
            return f"{self.image}: missed face (no detection at IoU >= {HIT_IOU})"
        if self.kind == "false face":
            return (
                f"{self.image}: false face (score {self.score:.2f} >= {self.threshold:.2f}, "
                f"smile {self.smile:.2f})"
            )
        sign = "<" if self.kind == "missed smile" else ">="
        return f"{self.image}: {self.kind} ({self.smile:.2f} {sign} {self.threshold:.2f})"


def read_labels(path: Path) -> list[Label]:
    """``LABELS.csv`` rows; ``ValueError`` naming the file, row and column when one is bad."""
    labels = []
    with path.open(newline="") as f:
        for row_number, row in enumerate(csv.DictReader(f), start=2):
            try:
                box = tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))
                smile = int(row["smile"])
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{path}: row {row_number}: {err}") from None
            if smile not in (-1, 0, 1) or not (box[0] < box[2] and box[1] < box[3]):
                raise ValueError(f"{path}: row {row_number}: bad box {box} or smile {smile}")
            labels.append(Label(row["image"], box, smile, row.get("note") or ""))
    return labels


def find_failures(detector: Detector, folder: Path, labels: list[Label]) -> list[Failure]:
    """Every mistake of ``detector`` (at its own thresholds) on the labelled images."""
    face_threshold, smile_threshold = detector.thresholds.face, detector.thresholds.smile
    failures = []
    for image in sorted({label.image for label in labels}):
        frame = cv2.imread(str(folder / image), cv2.IMREAD_COLOR)
        if frame is None:
            raise OSError(f"{folder / image}: cannot read the image")
        truths = [label for label in labels if label.image == image]
        faces = [f for f in detector.detect(frame, color="bgr").faces if f.score >= face_threshold]
        iou = pairwise_iou(
            np.array([t.box for t in truths], np.float64).reshape(-1, 4),
            np.array([f.box for f in faces], np.float64).reshape(-1, 4),
        )
        matched = set()
        for t, truth in enumerate(truths):
            best = int(iou[t].argmax()) if faces else -1
            if best < 0 or iou[t, best] < HIT_IOU:
                failures.append(
                    Failure("missed face", image, truth.box, None, None, None, face_threshold)
                )
                continue
            matched.add(best)
            face = faces[best]
            said_smile = face.smile >= smile_threshold
            if truth.smile in (0, 1) and said_smile != bool(truth.smile):
                kind = "false smile" if said_smile else "missed smile"
                failures.append(
                    Failure(
                        kind, image, truth.box, face.box, face.score, face.smile, smile_threshold
                    )
                )
        for d, face in enumerate(faces):
            if d not in matched and not (iou[:, d] >= HIT_IOU).any():
                failures.append(
                    Failure(
                        "false face", image, None, face.box, face.score, face.smile, face_threshold
                    )
                )
    return failures


def save_crop(failure: Failure, folder: Path, path: Path) -> Path:
    """A PNG of ``failure`` (``CROP_HEIGHT`` px high): truth green, detection red."""
    frame = cv2.imread(str(folder / failure.image), cv2.IMREAD_COLOR)
    if frame is None:
        raise OSError(f"{folder / failure.image}: cannot read the image")
    boxes = [b for b in (failure.truth, failure.found) if b is not None]
    x1, y1 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x2, y2 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    margin = CROP_MARGIN * max(x2 - x1, y2 - y1)
    h, w = frame.shape[:2]
    left, top = int(max(0, x1 - margin)), int(max(0, y1 - margin))
    right, bottom = int(min(w, x2 + margin)), int(min(h, y2 + margin))
    crop = frame[top:bottom, left:right].copy()
    scale = CROP_HEIGHT / crop.shape[0]
    crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), CROP_HEIGHT))
    for box, color in ((failure.truth, (0, 200, 0)), (failure.found, (0, 0, 230))):
        if box is not None:
            p1 = (round((box[0] - left) * scale), round((box[1] - top) * scale))
            p2 = (round((box[2] - left) * scale), round((box[3] - top) * scale))
            cv2.rectangle(crop, p1, p2, color, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), crop):
        raise OSError(f"{path}: cannot write the crop")
    return path
