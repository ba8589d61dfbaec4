"""Run a model over manifest records and collect what evaluation needs.

:class:`FloatDetector` runs the float Keras model with the device's own pre- and
post-processing (``smilebot.preprocess`` and ``smilebot.detector.postprocess``), so a
float model, the int8 TFLite model and the bot are scored the same way.
:func:`truths_and_founds` pairs each record's labelled faces with a detector's output.

Not the job of this module: metrics (evaluate.py), training.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import cv2
import numpy as np

from smilebot.box_coder import BoxCoder
from smilebot.detector import Detections, Detector, Thresholds, Timings, decode, suppress
from smilebot.preprocess import preprocess
from smilebot_tools.evaluate import Found, Truth
from smilebot_tools.model import ModelConfig
from smilebot_tools.pipeline import Example

# Evaluation keeps low-scoring faces so that AP sees the whole precision-recall curve.
EVAL_THRESHOLDS = Thresholds(face=0.05, smile=0.5, nms_iou=0.45)


class FloatDetector:
    """The float Keras model (``build_model``'s outputs) behind the device's interface."""

    def __init__(
        self,
        model,
        config: ModelConfig,
        coder: BoxCoder,
        thresholds: Thresholds = EVAL_THRESHOLDS,
        nms_method: str = "greedy",
    ) -> None:
        self.model, self.config, self.coder = model, config, coder
        self.thresholds, self.nms_method = thresholds, nms_method
        self.anchors = config.anchors.generate()

    def detect(self, frame: np.ndarray, color: str = "rgb") -> Detections:
        """Faces in ``frame`` (uint8, any size), boxes in its pixels."""
        start = time.perf_counter()
        image, letterbox = preprocess(frame, self.config.input, color)
        outputs = self.model(image[np.newaxis].astype(np.float32), training=False)
        invoked = time.perf_counter()
        scores = 0.5 * (1 + np.tanh(outputs["logits"].numpy()[0, :, :2] / 2))  # sigmoid
        codes = outputs["boxes"].numpy()[0]
        found = decode(scores, codes, self.anchors, self.coder, self.thresholds)
        decoded = time.perf_counter()
        faces = suppress(*found, self.thresholds, self.nms_method, letterbox)
        done = time.perf_counter()
        ms = ((invoked - start) * 1e3, (decoded - invoked) * 1e3, (done - decoded) * 1e3)
        return Detections(faces, Timings(0.0, *ms))


def int8_detector(path) -> Detector:
    """The int8 model at ``path`` through the device's Detector, keeping every face down to
    ``EVAL_THRESHOLDS.face`` (the sidecar's operating thresholds would cut the PR curve)."""
    detector = Detector.load(path)
    detector.thresholds = EVAL_THRESHOLDS
    return detector


def truths_and_founds(detector, records: Sequence[Example]) -> tuple[list[Truth], list[Found]]:
    """Each record's faces (``Truth``) and ``detector.detect``'s faces (``Found``), in order."""
    truths, founds = [], []
    for record in records:
        bgr = cv2.imread(record.path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"{record.path}: cannot read image")
        faces = detector.detect(bgr, color="bgr").faces
        truths.append(Truth(record.boxes, record.ignore, record.smile))
        founds.append(
            Found(
                np.array([f.box for f in faces], np.float64).reshape(-1, 4),
                np.array([f.score for f in faces], np.float64),
                np.array([f.smile for f in faces], np.float64),
            )
        )
    return truths, founds
