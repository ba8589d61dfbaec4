"""The on-device detector: an int8 TFLite SSD plus its JSON sidecar -> faces with smiles.

A model is two files side by side: ``NAME.tflite`` and its sidecar ``NAME.json``.
:meth:`Detector.load` reads and validates the sidecar, checks the model's sha256, opens
the model once (:mod:`smilebot.runtime`) and refuses, with a one-line :class:`ModelError`
naming the file and the key, any model whose tensors disagree with its sidecar.
:meth:`Detector.detect` runs one frame through the shared pipeline: :func:`preprocess`
-> the model -> dequantize -> :class:`BoxCoder` decode against the sidecar's anchors ->
face threshold -> :func:`nms` -> :meth:`Letterbox.to_source` (frame pixels).

The sidecar schema (format 1). Every key below is required and no other key is allowed,
at the top level and inside ``input``, ``outputs``, ``box_coder``, ``thresholds`` and
``nms``; the conversion tool writes exactly this::

    {
      "format": 1,
      "model": "smilebot.tflite",             # the model's file name (informative)
      "sha256": "<64 hex digits>",            # of the .tflite file
      "input": {"width": 192, "height": 144, "channels": 1,
                "dtype": "uint8", "scale": 1.0, "zero_point": 0},
      "outputs": {
        "scores": {"index_name": "scores", "shape": [1, A, 2],
                   "dtype": "uint8", "scale": 0.00390625, "zero_point": 0},
        "boxes":  {"index_name": "boxes", "shape": [1, A, 4],
                   "dtype": "uint8", "scale": ..., "zero_point": ...}
      },
      "anchors": AnchorSpec.to_dict(),        # A == AnchorSpec.num_anchors
      "box_coder": BoxCoder.to_dict(),        # {"variances": [0.1, 0.1, 0.2, 0.2]}
      "labels": ["face", "smile"],            # the channels of "scores", in order
      "thresholds": {"face": 0.5, "smile": 0.5, "nms_iou": 0.45},
      "nms": {"method": "greedy"},            # "greedy" or "voting"
      "training": {...}, "data": {...}, "versions": {...}, "metrics": {...}  # free-form
    }

``input``: the model takes ``uint8 [1, height, width, channels]`` exactly as
:func:`preprocess` returns it, so its quantization must be ``scale`` 1, ``zero_point`` 0
(real pixel value = stored value). ``input.width``/``height`` must equal the anchor
spec's ``input_width``/``input_height``.

``outputs``: ``scores`` are sigmoid probabilities (face, smile) per anchor and ``boxes``
SSD codes ``(tx, ty, tw, th)`` per anchor; real value = ``(q - zero_point) * scale``;
``dtype`` is ``"uint8"`` or ``"int8"`` (or ``"float32"`` with ``scale`` 0 and
``zero_point`` 0, TFLite's mark of a float tensor). ``index_name`` is the output's name
in the model's signature (the Keras output key). The TFLite converter mangles the tensors'
own names (``StatefulPartitionedCall_1:0``) but keeps signature names, so the detector
looks an output up by signature name, then by tensor name, and failing both takes the one
output of the sidecar's shape.

Not the job of this module: deciding whether to light the LED (the smile threshold is
read here but applied by the caller), reading cameras or image files, choosing which
model file is current (the model store). One :class:`Detector` per thread: a TFLite
interpreter is not thread-safe. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smilebot.anchors import AnchorSpec
from smilebot.box_coder import BoxCoder
from smilebot.nms import nms
from smilebot.preprocess import InputSpec, Letterbox, preprocess
from smilebot.runtime import Runtime, load_interpreter

logger = logging.getLogger(__name__)

FORMAT = 1
LABELS = ("face", "smile")
NMS_METHODS = ("greedy", "voting")  # "iou_rerank" needs a predicted IoU the model lacks
SIDECAR_KEYS = (
    "format",
    "model",
    "sha256",
    "input",
    "outputs",
    "anchors",
    "box_coder",
    "labels",
    "thresholds",
    "nms",
    "training",
    "data",
    "versions",
    "metrics",
)
FREE_FORM_KEYS = ("training", "data", "versions", "metrics")
INPUT_KEYS = ("width", "height", "channels", "dtype", "scale", "zero_point")
OUTPUT_KEYS = ("index_name", "shape", "dtype", "scale", "zero_point")
OUTPUT_DEPTHS = {"scores": len(LABELS), "boxes": 4}  # last dimension of each output
THRESHOLD_KEYS = ("face", "smile", "nms_iou")
QUANTIZED_DTYPES = ("uint8", "int8")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# The model `make convert` writes, in the checkout this package runs from.
SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "models" / "smilebot.tflite"


class ModelError(Exception):
    """A model or its sidecar is missing, unreadable or inconsistent (one-line message)."""


@dataclass(frozen=True)
class Quantization:
    """A tensor's element type and affine map: ``real = (q - zero_point) * scale``.

    ``scale == 0`` (with ``zero_point == 0``) marks a float tensor, as in TFLite.
    """

    dtype: str
    scale: float
    zero_point: int

    def matches(self, detail: dict[str, Any]) -> bool:
        """Whether an interpreter tensor ``detail`` has this dtype, scale and zero point."""
        scale, zero_point = detail["quantization"]
        return (
            np.dtype(detail["dtype"]) == np.dtype(self.dtype)
            and math.isclose(scale, self.scale, rel_tol=1e-6)
            and zero_point == self.zero_point
        )

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Stored values -> real values, float32 of the same shape."""
        if self.scale == 0:
            return q.astype(np.float32)
        return (q.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)

    def __str__(self) -> str:
        return f"{self.dtype} scale={self.scale:g} zero_point={self.zero_point}"


@dataclass(frozen=True)
class OutputSpec:
    """One model output as the sidecar records it: signature name, shape, quantization."""

    index_name: str
    shape: tuple[int, ...]
    quantization: Quantization


@dataclass(frozen=True)
class Thresholds:
    """Face score to report a face, smile probability to call it smiling, NMS IoU; 0..1."""

    face: float
    smile: float
    nms_iou: float


@dataclass(frozen=True, eq=False)
class Sidecar:
    """A parsed, self-consistent sidecar (see the module docstring for the schema)."""

    path: Path
    model: str
    sha256: str
    input: InputSpec
    input_quantization: Quantization
    scores: OutputSpec
    boxes: OutputSpec
    anchors: AnchorSpec
    box_coder: BoxCoder
    thresholds: Thresholds
    nms_method: str
    info: dict[str, dict]  # the free-form training, data, versions and metrics

    @classmethod
    def read(cls, path: Path) -> Sidecar:
        """Read and validate the sidecar at ``path``; :class:`ModelError` on any problem."""
        try:
            data = json.loads(Path(path).read_text())
        except OSError as err:
            raise ModelError(f"{path}: cannot read the sidecar ({err.strerror or err})") from None
        except ValueError as err:
            raise ModelError(f"{path}: not JSON ({err})") from None
        try:
            return cls._parse(Path(path), data)
        except ValueError as err:
            raise ModelError(f"{path}: {err}") from None

    @classmethod
    def _parse(cls, path: Path, data: object) -> Sidecar:
        """Build a :class:`Sidecar`; ``ValueError("<key>: <problem>")`` on any problem."""
        _check_keys(data, SIDECAR_KEYS, "")
        if _integer(data["format"], "format") != FORMAT:
            raise ValueError(f"format: unsupported format {data['format']!r}; expected {FORMAT}")
        if data["labels"] != list(LABELS):
            raise ValueError(
                f"labels: expected {list(LABELS)} (the scores channels), got {data['labels']!r}"
            )
        for key in FREE_FORM_KEYS:
            if not isinstance(data[key], dict):
                raise ValueError(f"{key}: expected an object, got {type(data[key]).__name__}")
        input_spec, input_quantization = _parse_input(data["input"])
        scores, boxes = _parse_outputs(data["outputs"])
        sidecar = cls(
            path=path,
            model=_string(data["model"], "model"),
            sha256=_parse_sha256(data["sha256"]),
            input=input_spec,
            input_quantization=input_quantization,
            scores=scores,
            boxes=boxes,
            anchors=_nested("anchors", lambda: AnchorSpec.from_dict(data["anchors"])),
            box_coder=_parse_box_coder(data["box_coder"]),
            thresholds=_parse_thresholds(data["thresholds"]),
            nms_method=_parse_nms(data["nms"]),
            info={key: data[key] for key in FREE_FORM_KEYS},
        )
        sidecar._check_consistent()
        return sidecar

    def _check_consistent(self) -> None:
        """The anchors must fit the input and the output shapes; ``ValueError`` if not."""
        spec, size = self.anchors, (self.input.width, self.input.height)
        if (spec.input_width, spec.input_height) != size:
            raise ValueError(
                f"anchors: input_width x input_height {spec.input_width} x {spec.input_height}"
                f" differs from input width x height {size[0]} x {size[1]}"
            )
        for name, output in (("scores", self.scores), ("boxes", self.boxes)):
            expected = (1, spec.num_anchors, OUTPUT_DEPTHS[name])
            if output.shape != expected:
                raise ValueError(
                    f"anchors: the spec has {spec.num_anchors} anchors, so outputs.{name}.shape "
                    f"should be {list(expected)}, got {list(output.shape)}"
                )


@dataclass(frozen=True)
class Face:
    """One detected face.

    ``box``: ``(x1, y1, x2, y2)`` float pixels of the original frame (clipped to it);
    ``score``: face probability; ``smile``: smile probability, both 0..1.
    """

    box: tuple[float, float, float, float]
    score: float
    smile: float


@dataclass(frozen=True)
class Timings:
    """Wall-clock milliseconds of each stage of one :meth:`Detector.detect`."""

    preprocess_ms: float
    invoke_ms: float
    decode_ms: float  # dequantize, face threshold, box decoding
    nms_ms: float  # suppression and mapping to frame pixels

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.invoke_ms + self.decode_ms + self.nms_ms


@dataclass(frozen=True)
class Detections:
    """The faces of one frame, highest score first, and how long each stage took."""

    faces: tuple[Face, ...]
    timings: Timings


class Detector:
    """An opened, validated model. Make one with :meth:`Detector.load`."""

    def __init__(
        self,
        model_path: Path,
        sidecar: Sidecar,
        interpreter: Any,
        runtime: Runtime,
        tensor_indices: tuple[int, int, int],
    ) -> None:
        self.model_path = model_path
        self.sidecar = sidecar
        self.runtime = runtime
        self.version = sidecar.sha256[:12]
        # The face, smile and NMS thresholds in use: the sidecar's, unless the caller
        # (the daemon's config) replaces them.
        self.thresholds = sidecar.thresholds
        self._interpreter = interpreter
        self._input_index, self._scores_index, self._boxes_index = tensor_indices
        self._anchors = sidecar.anchors.generate()

    @classmethod
    def load(
        cls,
        model_path: Path,
        sidecar_path: Path | None = None,
        num_threads: int = 1,
        runtime: str | None = None,
    ) -> Detector:
        """Open ``model_path`` (``.tflite``) with its sidecar (default: same stem, ``.json``),
        with ``runtime`` (None: the preferred one; see :func:`~smilebot.runtime.load_interpreter`).

        Raises :class:`ModelError` when the sidecar is invalid, the sha256 differs, the
        runtime cannot open the model or a tensor disagrees with the sidecar; the
        runtime's :class:`~smilebot.runtime.RuntimeMissingError` when no runtime is installed.
        """
        model_path = Path(model_path)
        digest = _file_sha256(model_path)
        sidecar = Sidecar.read(Path(sidecar_path or model_path.with_suffix(".json")))
        if digest != sidecar.sha256:
            raise ModelError(
                f"{model_path}: sha256 {digest[:12]}... differs from the sidecar's sha256 "
                f"{sidecar.sha256[:12]}... ({sidecar.path.name}): not the model it describes"
            )
        try:
            interpreter, found = load_interpreter(model_path, num_threads, runtime)
        except (ValueError, RuntimeError) as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ModelError(f"{model_path}: the runtime cannot open it ({reason})") from None
        indices = _check_model(model_path, interpreter, sidecar)
        logger.info(
            "loaded %s (version %s, %d anchors) with %s",
            model_path,
            sidecar.sha256[:12],
            sidecar.anchors.num_anchors,
            found,
        )
        return cls(model_path, sidecar, interpreter, found, indices)

    def detect(self, frame: np.ndarray, color: str = "rgb") -> Detections:
        """Faces in ``frame``: uint8 ``(H, W)`` or ``(H, W, 1|3|4)``, ``color`` ``"rgb"|"bgr"``.

        Returns the faces scoring at least ``thresholds.face`` that survive NMS, highest
        score first, with boxes in pixels of ``frame``. Raises ``ValueError`` for a frame
        :func:`preprocess` does not take.
        """
        start = time.perf_counter()
        image, letterbox = preprocess(frame, self.sidecar.input, color)
        preprocessed = time.perf_counter()
        self._interpreter.set_tensor(self._input_index, image[np.newaxis])
        self._interpreter.invoke()
        invoked = time.perf_counter()
        sidecar = self.sidecar
        scores = sidecar.scores.quantization.dequantize(
            self._interpreter.get_tensor(self._scores_index)[0]
        )
        codes = sidecar.boxes.quantization.dequantize(
            self._interpreter.get_tensor(self._boxes_index)[0]
        )
        found = decode(scores, codes, self._anchors, sidecar.box_coder, self.thresholds)
        decoded = time.perf_counter()
        faces = suppress(*found, self.thresholds, sidecar.nms_method, letterbox)
        done = time.perf_counter()
        timings = Timings(
            preprocess_ms=(preprocessed - start) * 1e3,
            invoke_ms=(invoked - preprocessed) * 1e3,
            decode_ms=(decoded - invoked) * 1e3,
            nms_ms=(done - decoded) * 1e3,
        )
        return Detections(faces=faces, timings=timings)


def postprocess(
    scores: np.ndarray,
    codes: np.ndarray,
    anchors: np.ndarray,
    coder: BoxCoder,
    thresholds: Thresholds,
    nms_method: str,
    letterbox: Letterbox,
) -> tuple[Face, ...]:
    """One image's model outputs -> faces, highest score first, boxes in frame pixels:
    :func:`decode` then :func:`suppress`. Shared by the device and by the desktop's
    evaluation of float models, so both are scored the same way.
    """
    return suppress(
        *decode(scores, codes, anchors, coder, thresholds), thresholds, nms_method, letterbox
    )


def decode(
    scores: np.ndarray,
    codes: np.ndarray,
    anchors: np.ndarray,
    coder: BoxCoder,
    thresholds: Thresholds,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates: anchors whose face score reaches ``thresholds.face``, decoded.

    ``scores`` float [A, 2] probabilities (face, smile), ``codes`` float [A, 4] SSD codes,
    ``anchors`` float32 [A, 4]. Returns boxes float [K, 4] (normalized input coordinates),
    face scores [K] and smile probabilities [K].
    """
    candidates = np.flatnonzero(scores[:, 0] >= thresholds.face)
    boxes = coder.decode(codes[candidates], anchors[candidates])
    return boxes, scores[candidates, 0], scores[candidates, 1]


def suppress(
    boxes: np.ndarray,
    face_scores: np.ndarray,
    smiles: np.ndarray,
    thresholds: Thresholds,
    nms_method: str,
    letterbox: Letterbox,
) -> tuple[Face, ...]:
    """:func:`nms` over the candidates of :func:`decode`, boxes mapped to frame pixels
    through ``letterbox``; highest score first. A candidate less than a frame pixel wide or
    tall once clipped to the frame (it lies in the letterbox's padding) is no face of the
    frame and is left out first."""
    clipped = letterbox.to_source(boxes)
    inside = np.flatnonzero(np.all(clipped[:, 2:] - clipped[:, :2] >= 1.0, axis=1))
    boxes, face_scores, smiles = boxes[inside], face_scores[inside], smiles[inside]
    kept = nms(boxes, face_scores, iou_threshold=thresholds.nms_iou, method=nms_method)
    pixels = letterbox.to_source(kept.boxes)
    smiles = smiles[kept.indices]
    return tuple(
        Face(box=tuple(float(v) for v in box), score=float(score), smile=float(smile))
        for box, score, smile in zip(pixels, kept.scores, smiles, strict=True)
    )


# --- sidecar parsing: each helper raises ValueError("<key>: <problem>") ----------------


def _check_keys(data: object, expected: tuple[str, ...], where: str) -> None:
    """``data`` must be an object with exactly the ``expected`` keys."""
    prefix = f"{where}: " if where else ""
    if not isinstance(data, dict):
        raise ValueError(f"{prefix or 'top level: '}expected an object, got {type(data).__name__}")
    unknown = [key for key in data if key not in expected]
    if unknown:
        raise ValueError(f"{prefix}unknown key {unknown[0]!r} (known: {', '.join(expected)})")
    missing = [key for key in expected if key not in data]
    if missing:
        raise ValueError(f"{prefix}missing key {missing[0]!r}")


def _nested(key: str, build: Any) -> Any:
    """``build()``, prefixing any ``ValueError`` with ``key``."""
    try:
        return build()
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{key}: {err}") from None


def _string(value: object, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _integer(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    return int(value)


def _parse_sha256(value: object) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ValueError(f"sha256: expected 64 lowercase hex digits, got {value!r}")
    return value


def _parse_quantization(d: dict, key: str, dtypes: tuple[str, ...]) -> Quantization:
    """``dtype``/``scale``/``zero_point`` of an already key-checked object at ``key``."""
    if d["dtype"] not in dtypes:
        raise ValueError(f"{key}.dtype: expected one of {list(dtypes)}, got {d['dtype']!r}")
    q = Quantization(
        dtype=d["dtype"],
        scale=_number(d["scale"], f"{key}.scale"),
        zero_point=_integer(d["zero_point"], f"{key}.zero_point"),
    )
    if q.dtype in QUANTIZED_DTYPES and not q.scale > 0:
        raise ValueError(f"{key}.scale: a {q.dtype} tensor needs scale > 0, got {q.scale}")
    if q.dtype not in QUANTIZED_DTYPES and (q.scale, q.zero_point) != (0, 0):
        raise ValueError(f"{key}.scale: a {q.dtype} tensor has scale 0 and zero_point 0")
    return q


def _parse_input(d: object) -> tuple[InputSpec, Quantization]:
    _check_keys(d, INPUT_KEYS, "input")
    spec = _nested("input", lambda: InputSpec(d["width"], d["height"], d["channels"]))
    q = _parse_quantization(d, "input", ("uint8",))
    if (q.scale, q.zero_point) != (1.0, 0):
        raise ValueError(
            f"input.scale: the model must take preprocess() pixels as they are (scale 1, "
            f"zero_point 0), got scale {q.scale:g} zero_point {q.zero_point}"
        )
    return spec, q


def _parse_outputs(d: object) -> tuple[OutputSpec, OutputSpec]:
    """``(scores, boxes)``."""
    _check_keys(d, tuple(OUTPUT_DEPTHS), "outputs")
    return _parse_output(d["scores"], "outputs.scores"), _parse_output(d["boxes"], "outputs.boxes")


def _parse_output(d: object, key: str) -> OutputSpec:
    _check_keys(d, OUTPUT_KEYS, key)
    shape = d["shape"]
    if not isinstance(shape, list):
        raise ValueError(f"{key}.shape: expected a list of integers, got {shape!r}")
    return OutputSpec(
        index_name=_string(d["index_name"], f"{key}.index_name"),
        shape=tuple(_integer(n, f"{key}.shape") for n in shape),
        quantization=_parse_quantization(d, key, (*QUANTIZED_DTYPES, "float32")),
    )


def _parse_box_coder(d: object) -> BoxCoder:
    _check_keys(d, ("variances",), "box_coder")
    variances = d["variances"]
    if not isinstance(variances, list):
        raise ValueError(f"box_coder.variances: expected a list of 4 numbers, got {variances!r}")
    numbers_ = tuple(_number(v, "box_coder.variances") for v in variances)
    return _nested("box_coder", lambda: BoxCoder(variances=numbers_))


def _parse_thresholds(d: object) -> Thresholds:
    _check_keys(d, THRESHOLD_KEYS, "thresholds")
    values = {key: _number(d[key], f"thresholds.{key}") for key in THRESHOLD_KEYS}
    for key, value in values.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"thresholds.{key}: expected a value in 0..1, got {value}")
    return Thresholds(**values)


def _parse_nms(d: object) -> str:
    _check_keys(d, ("method",), "nms")
    if d["method"] not in NMS_METHODS:
        raise ValueError(f"nms.method: expected one of {list(NMS_METHODS)}, got {d['method']!r}")
    return d["method"]


# --- the model against its sidecar -----------------------------------------------------


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:
        raise ModelError(f"{path}: cannot read the model ({err.strerror or err})") from None
    return digest.hexdigest()


def _check_model(path: Path, interpreter: Any, sidecar: Sidecar) -> tuple[int, int, int]:
    """Tensor indices ``(input, scores, boxes)``; :class:`ModelError` on any mismatch."""
    inputs = interpreter.get_input_details()
    if len(inputs) != 1:
        raise ModelError(f"{path}: input: the model has {len(inputs)} inputs; expected 1")
    spec = sidecar.input
    shape = (1, spec.height, spec.width, spec.channels)
    _check_tensor(path, "input", inputs[0], shape, sidecar.input_quantization)
    named = _named_outputs(interpreter)
    indices = [inputs[0]["index"]]
    for name, output in (("scores", sidecar.scores), ("boxes", sidecar.boxes)):
        detail = _find_output(path, interpreter, named, name, output)
        _check_tensor(path, f"outputs.{name}", detail, output.shape, output.quantization)
        indices.append(detail["index"])
    return indices[0], indices[1], indices[2]


def _check_tensor(
    path: Path, key: str, detail: dict, shape: tuple[int, ...], quantization: Quantization
) -> None:
    """One tensor's shape, dtype and quantization against the sidecar's ``key``."""
    model_shape = tuple(int(n) for n in detail["shape"])
    if model_shape != shape:
        raise ModelError(
            f"{path}: {key}: the model's tensor has shape {list(model_shape)}, the sidecar "
            f"says {list(shape)}"
        )
    if not quantization.matches(detail):
        scale, zero_point = detail["quantization"]
        found = Quantization(np.dtype(detail["dtype"]).name, float(scale), int(zero_point))
        raise ModelError(
            f"{path}: {key}: the model's tensor is {found}, the sidecar says {quantization}"
        )


def _named_outputs(interpreter: Any) -> dict[str, dict]:
    """Output details by tensor name, overridden by signature output names."""
    named = {detail["name"]: detail for detail in interpreter.get_output_details()}
    for key in interpreter.get_signature_list():
        named.update(interpreter.get_signature_runner(key).get_output_details())
    return named


def _find_output(
    path: Path, interpreter: Any, named: dict[str, dict], name: str, output: OutputSpec
) -> dict:
    """The output called ``output.index_name``, else the only one of ``output.shape``."""
    if output.index_name in named:
        return named[output.index_name]
    same_shape = [
        detail
        for detail in interpreter.get_output_details()
        if tuple(int(n) for n in detail["shape"]) == output.shape
    ]
    if len(same_shape) != 1:
        raise ModelError(
            f"{path}: outputs.{name}.index_name: no output named {output.index_name!r} "
            f"(names: {', '.join(sorted(named))}) and {len(same_shape)} of shape "
            f"{list(output.shape)}"
        )
    logger.info(
        "%s: no output named %r; using %r, the only one of shape %s",
        path,
        output.index_name,
        same_shape[0]["name"],
        list(output.shape),
    )
    return same_shape[0]
