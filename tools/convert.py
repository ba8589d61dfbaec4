"""``make convert``: a trained run -> the shipped int8 TFLite model, its sidecar and parity.

Full-integer quantization with uint8 input (the bytes ``preprocess()`` returns) and uint8
outputs, calibrated on training images made by the same ``preprocess()`` the device runs
(no augmentation). The sidecar (schema in ``smilebot.detector``) records the tensors'
quantization, the anchor spec, the box coder, thresholds, the training config, the sha256
of the data manifests, package versions and metrics. The face threshold is the one with
the best F1 of detections on the by-eye part of the validation set (``BY_EYE_SOURCES``:
human-checked faces and face-free backgrounds; the teacher-labelled video frames are found
at every threshold, so pooled in they only dilute the choice); the smile threshold is the
lowest one that reaches the target precision on the whole validation set (else 0.5).

Parity: the float model and the int8 model are scored on the same validation images with
the same post-processing; face AP@0.5 and smile accuracy may each drop by at most
``MAX_DROP`` (1 point).

:func:`convert_random` makes the control for the seed's question (do trained weights run
faster than random ones on the device?): the shipped model's architecture with freshly
initialized weights, quantized by the same :func:`quantize` on the same calibration
images, with its own sidecar.

Not the job of this module: training (train.py), the device runtime (smilebot.detector).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import shlex
import sys
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import tensorflow as tf

from smilebot.box_coder import BoxCoder
from smilebot.detector import LABELS, Detector, Thresholds
from smilebot.runtime import load_interpreter
from smilebot_tools import manifest, modelcard, pipeline
from smilebot_tools.evaluate import (
    face_metrics,
    smile_metrics,
    smile_pairs,
    threshold_for_precision,
)
from smilebot_tools.model import ModelConfig, build_model, export_model
from smilebot_tools.predict import FloatDetector, int8_detector, truths_and_founds
from smilebot_tools.train import COMMANDS

log = logging.getLogger(__name__)

MAX_DROP = 0.01  # allowed float -> int8 drop of face AP@0.5 and of smile accuracy
TARGET_PRECISION = 0.9  # the smile threshold is chosen to reach this on validation
FACE_THRESHOLD = 0.5
NMS_IOU = 0.45
BY_EYE_SOURCES = ("photos2", "backgrounds")  # as `make eval`'s by-eye evaluation
CAMERA = (640, 480)  # frame size for the latency figures
PACKAGES = ("tensorflow-cpu", "keras", "numpy", "ai-edge-litert", "opencv-python-headless")


def convert(run: Path, out: Path, calibration: int = 300) -> dict:
    """Convert the run in ``run`` to ``out`` (``.tflite`` + ``.json``); returns the sidecar."""
    config = json.loads((run / "config.json").read_text())
    model_config = ModelConfig.from_dict(config["model"])
    model = build_model(model_config)
    model.load_weights(run / "model.weights.h5")
    root = Path(config["data"])
    calibrate = pipeline.records_from_manifest(manifest.load(config["train_manifest"]), root)
    val_rows = manifest.load(config["val_manifest"])
    val = pipeline.records_from_manifest(val_rows, root)
    by_eye_rows = val_rows[val_rows["source"].isin(BY_EYE_SOURCES)]
    by_eye_paths = {str(root / image) for image in by_eye_rows["image"]}
    by_eye = [i for i, record in enumerate(val) if record.path in by_eye_paths]
    by_eye = by_eye or list(range(len(val)))  # no by-eye part: the whole val split

    tflite = quantize(export_model(model, model_config), calibrate, model_config, calibration)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write(out, tflite)
    float_detector = FloatDetector(model, model_config, BoxCoder())
    float_found = truths_and_founds(float_detector, val)
    sidecar = describe(out, model_config, Thresholds(FACE_THRESHOLD, 0.5, NMS_IOU))
    _write(out.with_suffix(".json"), json.dumps(sidecar, indent=1).encode())

    int8_found = truths_and_founds(int8_detector(out), val)
    face_threshold = best_face_threshold(*([part[i] for i in by_eye] for part in int8_found))
    chosen = threshold_for_precision(*smile_pairs(*int8_found), TARGET_PRECISION)[0]
    smile_threshold = float(chosen) if np.isfinite(chosen) else 0.5
    float_figures = _score(*float_found, face_threshold, smile_threshold)
    int8_figures = _score(*int8_found, face_threshold, smile_threshold)
    sidecar["thresholds"]["face"] = face_threshold
    sidecar["thresholds"]["smile"] = smile_threshold
    commands = run / COMMANDS
    sidecar["training"] = {
        "train_commands": commands.read_text().splitlines() if commands.exists() else [],
        "convert_command": shlex.join(sys.argv),
        "run": str(run),
        "config": config,
    }
    sidecar["data"] = {
        name: {
            "path": config[key],
            "sha256": _sha256(Path(config[key]).read_bytes()),
            "images_sha256": manifest.images_sha256(manifest.load(config[key]), root),
        }
        for name, key in (("train", "train_manifest"), ("val", "val_manifest"))
    }
    sidecar["versions"] = _versions()
    frames = [_camera_frame(record.path) for record in val[:20]]
    timing = modelcard.latency(out, frames)
    sidecar["metrics"] = {
        "val_float": float_figures,
        "val_int8": int8_figures,
        "parity": parity(float_figures, int8_figures),
        "size_bytes": len(tflite),
        "latency_ms_1_thread": timing,
        "face_threshold_sources": sorted(set(by_eye_rows["source"])) if len(by_eye_rows) else [],
    }
    _write(out.with_suffix(".json"), (json.dumps(sidecar, indent=1) + "\n").encode())
    modelcard.write_card(out)  # with the failure cases on the samples; `make eval` adds more
    return sidecar


def convert_random(
    reference: Path, out: Path, calibration: int = 300, seed: int = 0, data: Path | None = None
) -> dict:
    """The model of ``reference`` (a ``.tflite`` with its sidecar) with random weights.

    Builds ``reference``'s training config's model with Keras' initializers under
    ``seed``, quantizes it with :func:`quantize` on ``calibration`` images of that
    config's train manifest (or of ``data``/manifests/train.csv, paths relative to
    ``data``, when given: for a reference trained elsewhere), and writes ``out`` and its
    sidecar (thresholds copied from ``reference``; ``training.random_weights`` true, the
    seed; ``data.calibration`` the manifest's path, sha256 and whether it is the one the
    reference was calibrated on). Returns the sidecar; ``Detector.load(out)`` accepts it.
    """
    sidecar_path = reference.with_suffix(".json")
    try:
        ref = json.loads(sidecar_path.read_text())
        config = ref["training"]["config"]
        model_config = ModelConfig.from_dict(config["model"])
        root = Path(data if data is not None else config["data"])
        calibration_manifest = (
            root / "manifests" / "train.csv" if data is not None else Path(config["train_manifest"])
        )
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{sidecar_path}: no training config with a model and data ({err!r})"
        ) from None
    digest = _sha256(calibration_manifest.read_bytes())
    same = digest == ref.get("data", {}).get("train", {}).get("sha256")
    if not same:
        log.warning("%s is not the manifest %s was calibrated on", calibration_manifest, reference)
    keras.utils.set_random_seed(seed)
    model = build_model(model_config)
    records = pipeline.records_from_manifest(manifest.load(calibration_manifest), root)
    tflite = quantize(export_model(model, model_config), records, model_config, calibration)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write(out, tflite)
    sidecar = describe(out, model_config, Thresholds(**ref["thresholds"]))
    sidecar["training"] = {
        "random_weights": True,
        "seed": seed,
        "reference": {"model": reference.name, "sha256": ref["sha256"]},
        "convert_command": shlex.join(sys.argv),
        "config": config,
    }
    sidecar["data"] = {
        "calibration": {
            "path": str(calibration_manifest),
            "sha256": digest,
            "images": min(calibration, len(records)),
            "same_as_reference": same,
        }
    }
    sidecar["versions"] = _versions()
    sidecar["metrics"] = {"size_bytes": len(tflite)}
    _write(out.with_suffix(".json"), (json.dumps(sidecar, indent=1) + "\n").encode())
    Detector.load(out)  # the sidecar is valid and describes the model
    return sidecar


def _camera_frame(path: str) -> np.ndarray:
    """An image as the bot's camera would give it: BGR, ``CAMERA`` pixels (stretched)."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"{path}: cannot read image")
    return cv2.resize(bgr, CAMERA, interpolation=cv2.INTER_AREA)


def quantize(exported, records: list, config: ModelConfig, calibration: int) -> bytes:
    """Full-int8 TFLite bytes (uint8 in and out), calibrated on ``calibration`` records."""
    chosen = np.random.default_rng(0).choice(len(records), min(calibration, len(records)), False)

    def representative():
        ramp = np.linspace(0, 255, config.input.width * config.input.height, dtype=np.float32)
        shape = (1, config.input.height, config.input.width, config.input.channels)
        yield [np.resize(ramp, shape)]  # the whole 0..255 range: input scale 1, zero point 0
        for index in chosen:
            example = pipeline.load_example(records[index], None, None, config.input)
            yield [example["image"][np.newaxis].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(exported)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    return converter.convert()


def describe(path: Path, config: ModelConfig, thresholds: Thresholds) -> dict:
    """The sidecar of the model at ``path`` (schema: ``smilebot.detector``), from its tensors."""
    interpreter, _ = load_interpreter(path)
    (inp,) = interpreter.get_input_details()
    outputs = {}
    for key in interpreter.get_signature_list():
        outputs.update(interpreter.get_signature_runner(key).get_output_details())
    return {
        "format": 1,
        "model": path.name,
        "sha256": _sha256(path.read_bytes()),
        "input": {
            "width": config.input.width,
            "height": config.input.height,
            "channels": config.input.channels,
            **_quantization(inp),
        },
        "outputs": {
            name: {
                "index_name": name,
                "shape": [int(n) for n in outputs[name]["shape"]],
                **_quantization(outputs[name]),
            }
            for name in ("scores", "boxes")
        },
        "anchors": config.anchors.to_dict(),
        "box_coder": BoxCoder().to_dict(),
        "labels": list(LABELS),
        "thresholds": {
            "face": thresholds.face,
            "smile": thresholds.smile,
            "nms_iou": thresholds.nms_iou,
        },
        "nms": {"method": "greedy"},
        "training": {},
        "data": {},
        "versions": {},
        "metrics": {},
    }


def parity(float_figures: dict, int8_figures: dict) -> dict:
    """Drops of face AP@0.5 and smile accuracy from float to int8, and whether they pass."""
    drops = {
        "ap50_drop": float_figures["faces"]["ap50"] - int8_figures["faces"]["ap50"],
        "smile_accuracy_drop": float_figures["smile_accuracy"] - int8_figures["smile_accuracy"],
    }
    drops["ok"] = all(v <= MAX_DROP for v in drops.values())
    return drops


def best_face_threshold(truths: list, founds: list) -> float:
    """The face score threshold (0.1 .. 0.9 by 0.05) with the best F1 of detections."""
    best, best_f1 = FACE_THRESHOLD, -1.0
    for threshold in np.round(np.arange(0.1, 0.91, 0.05), 2):
        m = face_metrics(truths, founds, operating_threshold=float(threshold))
        hits = m["recall_at_threshold"] * m["faces"]
        false = m["fp_per_image_at_threshold"] * len(truths)
        f1 = 2 * hits / max(1e-9, m["faces"] + hits + false)
        if f1 > best_f1:
            best, best_f1 = float(threshold), f1
    return best


def _score(truths: list, founds: list, face_threshold: float, smile_threshold: float) -> dict:
    """Face figures (overall and at ``face_threshold``), smile figures at ``smile_threshold``."""
    labels, probs = smile_pairs(truths, founds)
    accuracy = float(np.mean((probs >= smile_threshold) == (labels == 1))) if len(labels) else 0.0
    return {
        "faces": face_metrics(truths, founds, operating_threshold=face_threshold),
        "smiles": smile_metrics(labels, probs, smile_threshold, TARGET_PRECISION),
        "smile_accuracy": accuracy,
    }


def _quantization(detail: dict) -> dict:
    scale, zero_point = detail["quantization"]
    return {
        "dtype": np.dtype(detail["dtype"]).name,
        "scale": float(scale),
        "zero_point": int(zero_point),
    }


def _versions() -> dict:
    versions = {"python": platform.python_version()}
    for package in (*PACKAGES, "smilebot"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)
