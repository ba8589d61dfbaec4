"""Tests of smilebot_tools.predict: the int8 model as the evaluation sees it."""

from pathlib import Path

import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("tensorflow")  # predict imports the training model code

from smilebot.detector import SHIPPED_MODEL, Detector  # noqa: E402
from smilebot_tools.predict import EVAL_THRESHOLDS, int8_detector  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def test_int8_detector_keeps_the_faces_below_the_operating_threshold():
    """AP needs the whole PR curve: faces down to 0.05, not the sidecar's face threshold."""
    bgr = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))
    operating = Detector.load(SHIPPED_MODEL)
    scores = [f.score for f in int8_detector(SHIPPED_MODEL).detect(bgr, color="bgr").faces]
    assert min(scores) >= EVAL_THRESHOLDS.face
    assert any(s < operating.thresholds.face for s in scores)
    assert len(scores) > len(operating.detect(bgr, color="bgr").faces)
