"""Tests of smilebot.detector, smilebot.runtime and ``smilebot detect``.

A tiny int8 model is built with Keras and converted once per module: a 32 x 24 gray
input and one stride-8 level with one scale of 8 px, so 4 x 3 = 12 anchors, each exactly
one cell. Its face and smile logits are ``GAIN`` and ``SMILE_GAIN`` times the cell's mean
rescaled pixel (-1 black, +1 white) and its box codes 0, so a white cell is a face
exactly at that cell's anchor. Tests that need the model skip without
TensorFlow; the runtime tests run everywhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import shutil
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from smilebot import cli
from smilebot.anchors import AnchorLevel, AnchorSpec
from smilebot.box_coder import BoxCoder
from smilebot.detector import Detector, ModelError, Quantization
from smilebot.runtime import RuntimeMissingError, load_interpreter

SPEC = AnchorSpec(input_width=32, input_height=24, levels=(AnchorLevel(8, (8.0,)),))
GAIN = 3.0
SMILE_GAIN = 1.0
# A 128 x 64 frame letterboxes into 32 x 24 at scale 1/4 with 4 rows of padding at the
# top, so the input cell of anchor (row 1, col 2), x 16..24 y 8..16, is frame x 64..96
# y 16..48, and the cell (row 1, col 0) is frame x 0..32 y 16..48.
FRAME_SIZE = (64, 128)  # rows, cols
WHITE_CELL = (64.0, 16.0, 96.0, 48.0)
GRAY_CELL = (0.0, 16.0, 32.0, 48.0)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _frame(white: bool = True, gray: int | None = None) -> np.ndarray:
    """A black BGR frame with a white and/or a ``gray`` cell (see FRAME_SIZE)."""
    frame = np.zeros((*FRAME_SIZE, 3), dtype=np.uint8)
    if white:
        frame[16:48, 64:96] = 255
    if gray is not None:
        frame[16:48, 0:32] = gray
    return frame


def _convert(tf) -> bytes:
    """The tiny Keras model of the module docstring as full-int8 TFLite, uint8 in/out."""
    keras = tf.keras
    rows, cols = SPEC.grid(SPEC.levels[0])
    image = keras.Input((SPEC.input_height, SPEC.input_width, 1), batch_size=1, name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(image)
    logits = keras.layers.Conv2D(2, 8, strides=8, padding="same", name="cls")(x)
    codes = keras.layers.Conv2D(4, 8, strides=8, padding="same", name="box")(x)
    scores = keras.layers.Activation("sigmoid")(keras.layers.Reshape((rows * cols, 2))(logits))
    boxes = keras.layers.Reshape((rows * cols, 4))(codes)
    model = keras.Model(image, {"scores": scores, "boxes": boxes})
    kernel = np.zeros((8, 8, 1, 2), np.float32)
    kernel[..., 0, :] = (GAIN / 64, SMILE_GAIN / 64)  # logit = gain * cell mean
    model.get_layer("cls").set_weights([kernel, np.zeros(2, np.float32)])
    model.get_layer("box").set_weights([np.zeros((8, 8, 1, 4), np.float32), np.zeros(4)])

    def representative():
        rng = np.random.default_rng(0)
        shape = (1, SPEC.input_height, SPEC.input_width, 1)
        yield [np.zeros(shape, np.float32)]  # black and white span 0..255: input scale 1
        yield [np.full(shape, 255, np.float32)]
        for _ in range(8):
            yield [rng.integers(0, 256, shape).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    with warnings.catch_warnings():  # about float input statistics; the input is uint8
        warnings.filterwarnings("ignore", "Statistics for quantized inputs")
        return converter.convert()


def _sidecar(model_path: Path) -> dict:
    """The sidecar of ``model_path``, quantization read from the model as a converter would."""
    interpreter, _ = load_interpreter(model_path)
    (details,) = interpreter.get_signature_list()
    outputs = interpreter.get_signature_runner(details).get_output_details()

    def tensor(detail: dict) -> dict:
        scale, zero_point = detail["quantization"]
        return {"dtype": np.dtype(detail["dtype"]).name, "scale": scale, "zero_point": zero_point}

    return {
        "format": 1,
        "model": model_path.name,
        "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "input": {"width": 32, "height": 24, "channels": 1}
        | tensor(interpreter.get_input_details()[0]),
        "outputs": {
            name: {"index_name": name, "shape": [1, 12, depth]} | tensor(outputs[name])
            for name, depth in (("scores", 2), ("boxes", 4))
        },
        "anchors": SPEC.to_dict(),
        "box_coder": BoxCoder().to_dict(),
        "labels": ["face", "smile"],
        "thresholds": {"face": 0.5, "smile": 0.5, "nms_iou": 0.45},
        "nms": {"method": "greedy"},
        "training": {"note": "tiny test model"},
        "data": {},
        "versions": {},
        "metrics": {},
    }


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """``tiny.tflite`` and ``tiny.json`` in a module-wide folder; the model's path."""
    tf = pytest.importorskip("tensorflow")
    if not any(importlib.util.find_spec(name) for name in ("ai_edge_litert", "tflite_runtime")):
        pytest.skip("no TFLite runtime")
    path = tmp_path_factory.mktemp("model") / "tiny.tflite"
    path.write_bytes(_convert(tf))
    path.with_suffix(".json").write_text(json.dumps(_sidecar(path), indent=1))
    return path


def _variant(model: Path, tmp_path: Path, change) -> Path:
    """A copy of the model whose sidecar went through ``change(dict)``; the model's path."""
    path = tmp_path / model.name
    shutil.copyfile(model, path)
    sidecar = json.loads(model.with_suffix(".json").read_text())
    change(sidecar)
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


# --- Detector -------------------------------------------------------------------------


def test_detects_the_white_cell_at_its_anchor_in_frame_pixels(model):
    detector = Detector.load(model)
    gray = 200 / 127.5 - 1  # the mean rescaled pixel of a cell of 200s
    result = detector.detect(_frame(gray=200), color="bgr")

    assert [face.box for face in result.faces] == [
        pytest.approx(WHITE_CELL, abs=1e-3),
        pytest.approx(GRAY_CELL, abs=1e-3),
    ]
    white, dim = result.faces
    assert white.score == pytest.approx(_sigmoid(GAIN), abs=0.01)
    assert dim.score == pytest.approx(_sigmoid(GAIN * gray), abs=0.02)
    assert white.score > dim.score
    assert white.smile == pytest.approx(_sigmoid(SMILE_GAIN), abs=0.01)
    assert dim.smile == pytest.approx(_sigmoid(SMILE_GAIN * gray), abs=0.02)
    timings = result.timings
    stages = (timings.preprocess_ms, timings.invoke_ms, timings.decode_ms, timings.nms_ms)
    assert all(ms >= 0 for ms in stages) and timings.total_ms == pytest.approx(sum(stages))
    assert timings.invoke_ms > 0


def test_load_reports_version_runtime_and_sidecar(model):
    detector = Detector.load(model)
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert detector.version == sidecar["sha256"][:12]
    assert detector.runtime.name in ("ai-edge-litert", "tflite-runtime")
    assert detector.sidecar.anchors == SPEC and detector.sidecar.thresholds.smile == 0.5
    assert detector.sidecar.info["training"] == {"note": "tiny test model"}


def test_black_frames_of_any_shape_have_no_faces(model):
    detector = Detector.load(model)
    assert detector.detect(np.zeros((50, 70), np.uint8)).faces == ()
    assert detector.detect(np.zeros((24, 32, 3), np.uint8)).faces == ()


def test_face_threshold_comes_from_the_sidecar(model, tmp_path):
    strict = _variant(model, tmp_path, lambda d: d["thresholds"].update(face=0.99))
    assert Detector.load(strict).detect(_frame(), color="bgr").faces == ()


def test_outputs_with_unknown_names_are_found_by_shape(model, tmp_path):
    def rename(d):
        d["outputs"]["scores"]["index_name"] = "StatefulPartitionedCall:7"
        d["outputs"]["boxes"]["index_name"] = "output_1"

    faces = Detector.load(_variant(model, tmp_path, rename)).detect(_frame(), "bgr").faces
    assert len(faces) == 1 and faces[0].box == pytest.approx(WHITE_CELL, abs=1e-3)


def _two_scales(d):
    d["anchors"]["levels"][0]["scales"] = [8.0, 16.0]


def _two_scales_and_shapes(d):
    _two_scales(d)
    d["outputs"]["scores"]["shape"] = [1, 24, 2]
    d["outputs"]["boxes"]["shape"] = [1, 24, 4]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d.update(sha256="0" * 64), "sha256"),
        (_two_scales, "anchors"),  # 24 anchors in the spec, 12 in the output shapes
        (_two_scales_and_shapes, "outputs.scores"),  # the model has 12
        (lambda d: d["input"].update(channels=3), "input"),
        (lambda d: d["input"].update(width=40), "anchors"),
        (lambda d: d["input"].update(scale=0.5), "input.scale"),
        (lambda d: d.update(extra=1), "'extra'"),
        (lambda d: d.pop("thresholds"), "'thresholds'"),
        (lambda d: d["outputs"]["boxes"].pop("zero_point"), "outputs.boxes: missing key"),
        (lambda d: d["outputs"]["scores"].update(scale=0.5), "outputs.scores"),
        (lambda d: d["outputs"]["boxes"].update(zero_point=127), "outputs.boxes"),
        (lambda d: d["outputs"]["boxes"].update(dtype="int8"), "outputs.boxes"),
        (lambda d: d["nms"].update(method="iou_rerank"), "nms.method"),
        (lambda d: d.update(format=2), "format"),
        (lambda d: d["anchors"].update(strides=[8]), "'strides'"),
    ],
)
def test_a_sidecar_that_disagrees_is_refused_naming_the_key(model, tmp_path, change, named):
    path = _variant(model, tmp_path, change)
    with pytest.raises(ModelError) as error:
        Detector.load(path)
    message = str(error.value)
    assert named in message and "\n" not in message
    assert "tiny.json" in message or "tiny.tflite" in message


def test_missing_sidecar_and_unreadable_model_are_model_errors(model, tmp_path):
    alone = tmp_path / "alone.tflite"
    shutil.copyfile(model, alone)
    with pytest.raises(ModelError, match=r"alone\.json: cannot read the sidecar"):
        Detector.load(alone)
    with pytest.raises(ModelError, match=r"nothing\.tflite: cannot read the model"):
        Detector.load(tmp_path / "nothing.tflite", sidecar_path=model.with_suffix(".json"))


def test_a_file_that_is_not_tflite_is_a_model_error(model, tmp_path):
    junk = b"not a flatbuffer at all" * 8

    def describe_junk(d):
        d["sha256"] = hashlib.sha256(junk).hexdigest()

    path = _variant(model, tmp_path, describe_junk)
    path.write_bytes(junk)
    with pytest.raises(ModelError, match=r"tiny\.tflite: the runtime cannot open it"):
        Detector.load(path)


@pytest.mark.parametrize(
    ("quantization", "stored", "real"),
    [
        (Quantization("uint8", 0.5, 10), np.array([10, 12, 255], np.uint8), [0.0, 1.0, 122.5]),
        (Quantization("int8", 0.25, -128), np.array([-128, 0, 127], np.int8), [0.0, 32.0, 63.75]),
        (Quantization("float32", 0.0, 0), np.array([0.5, -2.0], np.float32), [0.5, -2.0]),
    ],
)
def test_dequantize_subtracts_the_zero_point_then_scales(quantization, stored, real):
    values = quantization.dequantize(stored)
    assert values.dtype == np.float32 and values.tolist() == real


# --- runtime --------------------------------------------------------------------------


def test_without_any_runtime_the_error_names_both_installs(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(RuntimeMissingError) as error:
        load_interpreter(tmp_path / "any.tflite")
    message = str(error.value)
    assert "pip install ai-edge-litert" in message and "pip install tflite-runtime" in message
    assert "\n" not in message


def test_tflite_runtime_is_the_fallback(monkeypatch, tmp_path):
    opened = []

    class FakeInterpreter:
        def __init__(self, model_path: str, num_threads: int) -> None:
            opened.append((model_path, num_threads))

        def allocate_tensors(self) -> None:
            opened.append("allocated")

    package = types.ModuleType("tflite_runtime")
    package.__version__ = "2.14.0"
    module = types.ModuleType("tflite_runtime.interpreter")
    module.Interpreter = FakeInterpreter
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", package)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", module)

    interpreter, runtime = load_interpreter(tmp_path / "m.tflite", num_threads=3)
    assert isinstance(interpreter, FakeInterpreter)
    assert str(runtime) == "tflite-runtime 2.14.0"
    assert opened == [(str(tmp_path / "m.tflite"), 3), "allocated"]


# --- smilebot detect -------------------------------------------------------------------


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    """``face.png`` (one white cell), ``black.png``, ``broken.png`` and a missing file."""
    cv2 = pytest.importorskip("cv2")
    paths = {name: tmp_path / f"{name}.png" for name in ("face", "black", "broken", "missing")}
    cv2.imwrite(str(paths["face"]), _frame())
    cv2.imwrite(str(paths["black"]), _frame(white=False))
    paths["broken"].write_bytes(b"\x89PNG truncated")
    return paths


def test_detect_prints_faces_and_goes_on_past_unreadable_images(model, images, capsys):
    argv = ["detect", "--model", str(model)]
    argv += [str(images[name]) for name in ("face", "missing", "broken", "black")]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"{images['face']}: 1 face",
        "  box=(64.0, 16.0, 96.0, 48.0) score=0.95 smile=0.73",
        f"{images['black']}: 0 faces",
    ]
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2
    assert str(images["missing"]) in errors[0] and str(images["broken"]) in errors[1]


def test_detect_json_is_one_object_per_image(model, images, capsys):
    argv = ["detect", "--json", "--threads", "2", "--model", str(model)]
    assert cli.main([*argv, str(images["face"]), str(images["black"])]) == 0
    face, black = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert face["image"] == str(images["face"]) and face["latency_ms"] > 0
    (found,) = face["faces"]
    assert found["box"] == list(WHITE_CELL)
    assert found["score"] == pytest.approx(_sigmoid(GAIN), abs=0.01)
    assert found["smile"] == pytest.approx(_sigmoid(SMILE_GAIN), abs=0.01)
    assert black["faces"] == []


def test_detect_without_a_usable_model_exits_2(model, images, tmp_path, monkeypatch, capsys):
    face = str(images["face"])
    assert cli.main(["detect", "--model", str(tmp_path / "nope.tflite"), face]) == 2
    assert "nope.tflite" in capsys.readouterr().err
    monkeypatch.setattr(cli, "SHIPPED_MODEL", tmp_path / "models" / "smilebot.tflite")
    assert cli.main(["detect", face]) == 2
    err = capsys.readouterr().err
    assert "make convert" in err and err.count("\n") == 1
    bad = _variant(model, tmp_path, lambda d: d.update(sha256="f" * 64))
    assert cli.main(["detect", "--model", str(bad), face]) == 2
    err = capsys.readouterr().err
    assert "sha256" in err and err.count("\n") == 1


def test_suppress_drops_candidates_that_lie_in_the_letterbox_padding():
    """A wide 400x100 frame fills 192x48 of the 192x144 input, 48 rows of padding above it.
    A candidate wholly in that padding clips to a zero-height box: no face of the frame,
    and it must not suppress a real face it overlaps."""
    from smilebot.detector import Thresholds, suppress
    from smilebot.preprocess import Letterbox

    letterbox = Letterbox.fit(400, 100)
    assert (letterbox.pad_y, letterbox.content_height) == (48, 48)
    boxes = np.array(
        [
            [0.10, 0.05, 0.30, 0.30],  # rows 7..43 of the input: all padding
            [0.10, 0.05, 0.30, 1 / 3],  # rows 7..48: touches the frame (float: a sliver)
            [0.10, 0.10, 0.30, 0.50],  # rows 14..72: half in the frame, overlapping both
        ],
        np.float32,
    )
    faces = suppress(
        boxes,
        np.array([0.95, 0.9, 0.8], np.float32),
        np.array([0.2, 0.1, 0.7], np.float32),
        Thresholds(face=0.5, smile=0.5, nms_iou=0.3),
        "greedy",
        letterbox,
    )
    assert len(faces) == 1 and faces[0].score == pytest.approx(0.8)
    x1, y1, x2, y2 = faces[0].box
    assert y1 == 0.0 and y2 == pytest.approx((0.5 * 144 - 48) / letterbox.scale)
    assert x2 > x1 and faces[0].smile == pytest.approx(0.7)
