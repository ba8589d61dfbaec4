"""Stand-ins for the daemon's tests: an LED that records, a model store over the shipped
model, the sample frames, and the capture log's consistency check.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from smilebot.capture_log import CaptureLog
from smilebot.detector import Detector
from smilebot.hardware import Pattern
from smilebot.model_store import Swap
from tests.test_capture_log import assert_consistent

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "models" / "smilebot.tflite"
SAMPLES = REPO / "samples"


class RecordingLed:
    """Records every ``show(pattern, seconds)``; the daemon's view of an LED."""

    def __init__(self) -> None:
        self.shown: list[tuple[Pattern, float | None]] = []

    def show(self, pattern: Pattern, seconds: float | None = None) -> None:
        self.shown.append((pattern, seconds))

    @property
    def patterns(self) -> list[Pattern]:
        return [pattern for pattern, _ in self.shown]

    def close(self) -> None:
        self.shown.append((Pattern.OFF, None))


def load_model(smile_threshold: float | None = None, version: str | None = None) -> Detector:
    """The shipped model; its sidecar's smile threshold and version replaced if given."""
    detector = Detector.load(MODEL)
    if smile_threshold is not None:
        thresholds = dataclasses.replace(detector.sidecar.thresholds, smile=smile_threshold)
        detector.sidecar = dataclasses.replace(detector.sidecar, thresholds=thresholds)
        detector.thresholds = thresholds
    if version is not None:
        detector.version = version
    return detector


class StandInStore:
    """The model store's interface over the shipped model; counts what the daemon reports."""

    def __init__(self, smile_threshold: float | None = None) -> None:
        self.detector = load_model(smile_threshold)
        self.ok = 0
        self.failed: list[BaseException] = []
        self._swap: Swap | None = None

    @property
    def version(self) -> str:
        return self.detector.version

    def swap_to_new_version(self, version: str) -> None:
        old = self.version
        self.detector = load_model(version=version)
        self._swap = Swap(old_version=old, new_version=version, reason="test")

    def poll(self) -> Swap | None:
        swap, self._swap = self._swap, None
        return swap

    def inference_failed(self, error: BaseException) -> Swap | None:
        self.failed.append(error)
        return None

    def inference_ok(self) -> None:
        self.ok += 1

    def close(self) -> None:
        pass


def sample_frames() -> list[np.ndarray]:
    """The committed public-domain samples as BGR frames (the astronaut, Grace Hopper)."""
    cv2 = pytest.importorskip("cv2")
    frames = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sorted(SAMPLES.iterdir())]
    frames = [f for f in frames if f is not None]
    assert frames, f"no sample images in {SAMPLES}"
    return frames


def consistent(log: CaptureLog, expected: int) -> None:
    """``expected`` captures; integrity_check passes; rows and image files agree exactly."""
    assert_consistent(log)
    assert log.stats().count == expected


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path (unix socket paths must stay under ~107 bytes)."""
    path = Path(tempfile.mkdtemp(dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
