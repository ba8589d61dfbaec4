"""Tests of smilebot_tools.failures: by-eye labels, the failure kinds, the crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smilebot.detector import Detections, Face, Thresholds, Timings
from smilebot_tools.failures import (
    CROP_HEIGHT,
    Failure,
    Label,
    find_failures,
    read_labels,
    save_crop,
)

cv2 = pytest.importorskip("cv2")
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


class Scripted:
    """A detector stand-in that returns the given faces for every frame."""

    def __init__(self, faces: list[Face]) -> None:
        self.faces = tuple(faces)
        self.thresholds = Thresholds(face=0.5, smile=0.6, nms_iou=0.45)

    def detect(self, frame: np.ndarray, color: str = "rgb") -> Detections:
        return Detections(self.faces, Timings(0.0, 0.0, 0.0, 0.0))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    cv2.imwrite(str(tmp_path / "a.png"), np.full((200, 300, 3), 90, np.uint8))
    return tmp_path


def test_the_committed_labels_read_and_fit_their_images() -> None:
    labels = read_labels(SAMPLES / "LABELS.csv")
    assert {label.image for label in labels} == {"astronaut.png", "grace_hopper.jpg"}
    for label in labels:
        h, w = cv2.imread(str(SAMPLES / label.image)).shape[:2]
        x1, y1, x2, y2 = label.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h


def test_bad_labels_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "LABELS.csv"
    path.write_text("image,x1,y1,x2,y2,smile,note\na.png,1,2,3,4,1,\nb.png,5,5,1,9,0,\n")
    with pytest.raises(ValueError, match=r"LABELS.csv: row 3: bad box"):
        read_labels(path)
    path.write_text("image,x1,y1,x2,y2,smile,note\na.png,1,2,x,4,1,\n")
    with pytest.raises(ValueError, match="row 2"):
        read_labels(path)


def test_each_kind_of_failure(folder: Path) -> None:
    labels = [
        Label("a.png", (10, 10, 60, 70), 1, "smiles"),  # found, smile missed
        Label("a.png", (100, 10, 150, 70), 0, "neutral"),  # found, smile wrongly seen
        Label("a.png", (200, 100, 250, 160), -1, "unsure"),  # missed
        Label("a.png", (200, 10, 250, 70), -1, "unsure smile: never a smile failure"),
    ]
    faces = [
        Face(box=(12, 12, 60, 70), score=0.9, smile=0.3),
        Face(box=(100, 12, 150, 70), score=0.8, smile=0.7),
        Face(box=(200, 10, 250, 70), score=0.8, smile=0.99),
        Face(box=(0, 150, 40, 195), score=0.7, smile=0.1),  # on nothing
        Face(box=(200, 100, 250, 160), score=0.3, smile=0.1),  # below the face threshold
    ]
    failures = find_failures(Scripted(faces), folder, labels)
    kinds = [(f.kind, f.truth or f.found) for f in failures]
    assert kinds == [
        ("missed smile", (10, 10, 60, 70)),
        ("false smile", (100, 10, 150, 70)),
        ("missed face", (200, 100, 250, 160)),
        ("false face", (0, 150, 40, 195)),
    ]
    assert failures[0].caption() == "a.png: missed smile (0.30 < 0.60)"
    assert failures[3].caption().startswith("a.png: false face (score 0.70 >= 0.50")


def test_a_perfect_detector_has_no_failures(folder: Path) -> None:
    labels = [Label("a.png", (10, 10, 60, 70), 1, ""), Label("a.png", (100, 10, 150, 70), 0, "")]
    faces = [
        Face(box=(10, 10, 60, 70), score=0.9, smile=0.9),
        Face(box=(100, 10, 150, 70), score=0.9, smile=0.1),
    ]
    assert find_failures(Scripted(faces), folder, labels) == []


def test_crop_shows_both_boxes(folder: Path, tmp_path: Path) -> None:
    failure = Failure("missed smile", "a.png", (10, 10, 60, 70), (20, 20, 70, 80), 0.9, 0.2, 0.6)
    path = save_crop(failure, folder, tmp_path / "out" / "crop.png")
    crop = cv2.imread(str(path))
    assert crop.shape[0] == CROP_HEIGHT
    green = (crop[..., 1] > 150) & (crop[..., 2] < 80)
    red = (crop[..., 2] > 150) & (crop[..., 1] < 80)
    assert green.any() and red.any()
