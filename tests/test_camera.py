"""Tests of smilebot.camera and smilebot.picam, with fake picamera2 and cv2.VideoCapture."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from smilebot import camera
from smilebot.camera import (
    CameraBusy,
    CameraError,
    CameraTimeout,
    FolderSource,
    Frame,
    OpenCVSource,
    _TimedRead,
    open_source,
    webcam_available,
)
from smilebot.config import CameraConfig
from tests.fake_camera import (
    FakeCamera,
    HangingCamera,
    RaisingCamera,
    busy_opener,
    patch_openers,
)

REPO = Path(__file__).resolve().parents[1]
SLACK_S = 1.5  # scheduling slack on a loaded machine; every bound below is far from it


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def solid(h: int, w: int, bgr: tuple[int, int, int]) -> np.ndarray:
    return np.full((h, w, 3), bgr, np.uint8)


# ---------------------------------------------------------------- Frame


def test_log_image_of_grey_repeats_it_in_every_channel() -> None:
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    log = Frame(image=grey, color="rgb", full=None, time=0.0, label="t").log_image()
    assert log.shape == (2, 3, 3)
    for channel in range(3):
        np.testing.assert_array_equal(log[:, :, channel], grey)


def test_log_image_of_rgb_is_bgr() -> None:
    rgb = solid(2, 2, (10, 20, 200))  # R=10, G=20, B=200
    log = Frame(image=rgb, color="rgb", full=None, time=0.0, label="t").log_image()
    np.testing.assert_array_equal(log[0, 0], [200, 20, 10])


def test_log_image_of_bgr_is_the_image_and_full_wins() -> None:
    bgr = solid(2, 2, (1, 2, 3))
    assert Frame(image=bgr, color="bgr", full=None, time=0.0, label="t").log_image() is bgr
    full = solid(4, 4, (9, 9, 9))
    grey = np.zeros((2, 2), np.uint8)
    assert Frame(image=grey, color="rgb", full=full, time=0.0, label="t").log_image() is full


@pytest.mark.parametrize(
    ("image", "color", "full"),
    [
        (np.zeros((2, 2), np.uint8), "yuv", None),
        (np.zeros((2, 2), np.float32), "rgb", None),
        (np.zeros((2, 2, 4), np.uint8), "bgr", None),
        (np.zeros((2, 2), np.uint8), "rgb", np.zeros((2, 2), np.uint8)),
    ],
)
def test_frame_rejects_what_the_detector_cannot_take(image, color, full) -> None:
    with pytest.raises(ValueError, match="src"):
        Frame(image=image, color=color, full=full, time=0.0, label="src")


# ---------------------------------------------------------------- FolderSource


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """a.png (blue), b.bmp (green), c.jpg (red), d.PNG (white), a broken png, a text file."""
    cv2.imwrite(str(tmp_path / "a.png"), solid(20, 40, (255, 0, 0)))
    cv2.imwrite(str(tmp_path / "b.bmp"), solid(20, 40, (0, 255, 0)))
    cv2.imwrite(str(tmp_path / "c.jpg"), solid(20, 40, (0, 0, 255)))
    cv2.imwrite(str(tmp_path / "d.PNG"), solid(20, 40, (255, 255, 255)))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_cycles_in_name_order_skipping_unreadable(folder: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="smilebot.camera"):
        source = FolderSource(folder)
    assert "broken.png" in caplog.text
    frames = [source.grab(1.0) for _ in range(5)]
    assert [f.label for f in frames] == [
        "folder:a.png",
        "folder:b.bmp",
        "folder:c.jpg",
        "folder:d.PNG",
        "folder:a.png",
    ]
    expected = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (255, 0, 0)]
    for frame, bgr in zip(frames, expected, strict=True):
        assert frame.color == "bgr" and frame.full is None and frame.image.shape == (20, 40, 3)
        np.testing.assert_allclose(frame.image[10, 20], bgr, atol=3)  # c.jpg is lossy
    assert frames[0].time <= frames[-1].time
    assert not frames[0].image.flags.writeable  # shared between grabs: read-only


def test_folder_resizes_to_fit_keeping_aspect(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "wide.png"), solid(100, 200, (0, 0, 0)))
    cv2.imwrite(str(tmp_path / "zsmall.png"), solid(30, 40, (0, 0, 0)))
    source = FolderSource(tmp_path, width=100, height=100)
    assert source.grab(1.0).image.shape == (50, 100, 3)  # 200x100 shrunk by 1/2
    assert source.grab(1.0).image.shape == (75, 100, 3)  # 40x30 grown by 5/2
    with pytest.raises(ValueError, match="both width and height"):
        FolderSource(tmp_path, width=100)


@pytest.mark.parametrize("content", ["empty", "broken", "missing"])
def test_folder_without_a_readable_image_names_the_folder(tmp_path: Path, content: str) -> None:
    target = tmp_path / "imgs"
    if content != "missing":
        target.mkdir()
    if content == "broken":
        (target / "x.jpg").write_bytes(b"")
        (target / "y.png").write_bytes(b"garbage")
    with pytest.raises(CameraError, match=re.escape(str(target))):
        FolderSource(target)


def test_sample_images_replay_for_the_simulation() -> None:
    source = FolderSource(REPO / "samples", 640, 480)
    frames = [source.grab(1.0) for _ in range(2)]
    assert [f.label for f in frames] == ["folder:astronaut.png", "folder:grace_hopper.jpg"]
    assert frames[0].image.shape == (480, 480, 3)  # 512x512 fitted into 640x480
    assert frames[1].image.shape == (480, 410, 3)  # 512x600 scaled by 0.8


# ---------------------------------------------------------------- the timeout helper


class Blocking:
    """A read that blocks until ``release`` is set, then returns its call number."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        self.release.wait()
        return self.calls


@pytest.fixture
def blocking() -> Iterator[Blocking]:
    read = Blocking()
    yield read
    read.release.set()  # let any hung worker finish


def test_hung_read_times_out_then_fails_fast_then_recovers(blocking: Blocking) -> None:
    timed = _TimedRead(blocking, "cam")
    start = time.monotonic()
    with pytest.raises(CameraTimeout, match=r"cam: no frame within 0\.3 s"):
        timed(0.3)
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 0.3 + SLACK_S
    start = time.monotonic()
    for _ in range(5):
        with pytest.raises(CameraTimeout, match="still hung"):
            timed(30.0)
    assert time.monotonic() - start < SLACK_S  # at once, not 30 s each
    assert blocking.calls == 1  # no second read while the first hangs
    workers = [t for t in threading.enumerate() if t.name == "cam read"]
    assert len(workers) == 1
    blocking.release.set()
    wait_until(lambda: not timed.hung)
    assert timed(5.0) == 2  # a fresh read, not the stale result
    timed.close()
    workers[0].join(5.0)
    assert not workers[0].is_alive()


def test_read_error_becomes_camera_error_and_the_next_read_works() -> None:
    outcomes: list[object] = [OSError("sensor on fire"), RuntimeError(), 7]

    def read() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    timed = _TimedRead(read, "cam")
    with pytest.raises(CameraError, match="cam: sensor on fire") as info:
        timed(5.0)
    assert not isinstance(info.value, CameraTimeout)
    with pytest.raises(CameraError, match="cam: RuntimeError"):
        timed(5.0)
    assert timed(5.0) == 7
    timed.close()


# ---------------------------------------------------------------- open_source


def folder_config(**kw) -> CameraConfig:
    return CameraConfig(source="folder", folder="/nowhere", **kw)


def test_open_source_retries_a_busy_camera_then_succeeds(monkeypatch, caplog) -> None:
    opener = busy_opener(2)
    patch_openers(monkeypatch, opener)
    sleeps: list[float] = []
    with caplog.at_level(logging.WARNING, logger="smilebot.camera"):
        source = open_source(folder_config(open_retries=5, retry_s=0.5), sleep=sleeps.append)
    assert source is opener.camera
    assert opener.attempts == 3
    assert sleeps == [0.5, 0.5]
    assert len([r for r in caplog.records if "busy" in r.getMessage()]) == 2


@pytest.mark.parametrize("retries", [0, 3])
def test_open_source_gives_up_after_open_retries_plus_one(monkeypatch, retries: int) -> None:
    opener = busy_opener(100)
    patch_openers(monkeypatch, opener)
    sleeps: list[float] = []
    config = folder_config(open_retries=retries, retry_s=2.0)
    with pytest.raises(CameraBusy, match=f"busy after {retries + 1} attempts"):
        open_source(config, sleep=sleeps.append)
    assert opener.attempts == retries + 1
    assert sleeps == [2.0] * retries


def test_open_source_does_not_retry_other_errors(monkeypatch, tmp_path: Path) -> None:
    sleeps: list[float] = []
    config = CameraConfig(source="folder", folder=str(tmp_path), open_retries=3)
    with pytest.raises(CameraError, match="no readable image") as info:
        open_source(config, sleep=sleeps.append)
    assert not isinstance(info.value, CameraBusy)
    assert sleeps == []


def test_open_source_opens_a_folder_at_the_configured_size(folder: Path) -> None:
    config = CameraConfig(source="folder", folder=str(folder), width=20, height=20)
    frame = open_source(config).grab(1.0)
    assert frame.label == "folder:a.png" and frame.image.shape == (10, 20, 3)


def test_fakes_keep_the_frame_source_contract() -> None:
    frames = [solid(2, 2, (1, 1, 1)), solid(2, 2, (2, 2, 2))]
    fake = FakeCamera(frames)
    assert [fake.grab(1.0).image[0, 0, 0] for _ in range(3)] == [1, 2, 1]
    assert fake.grabs == 3
    assert FakeCamera().grab(1.0).image.shape == (480, 640, 3)
    with pytest.raises(CameraError):
        RaisingCamera().grab(1.0)
    start = time.monotonic()
    with pytest.raises(CameraTimeout):
        HangingCamera().grab(0.2)
    assert 0.2 <= time.monotonic() - start < 0.2 + SLACK_S


# ---------------------------------------------------------------- picamera2 (faked)


class FakePicamera2:
    """The part of picamera2.Picamera2 that smilebot.picam calls. Subclassed per test."""

    busy = False
    fail_configure = False
    hang: threading.Event | None = None
    capture_errors: list[Exception]
    opened: list[FakePicamera2]

    def __init__(self) -> None:
        if self.busy:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.requested: dict = {}
        self.config: dict | None = None
        self.started = False
        self.closed = False
        self.opened.append(self)

    def create_video_configuration(self, main: dict, lores: dict) -> dict:
        self.requested = {"main": dict(main), "lores": dict(lores)}
        return {"use_case": "video", "main": dict(main), "lores": dict(lores)}

    def configure(self, config: dict) -> None:
        if self.fail_configure:
            raise RuntimeError("lores stream dimensions may not exceed main stream")
        self.config = config

    def start(self) -> None:
        self.started = True

    def capture_arrays(self, names: list[str]) -> tuple[list[np.ndarray], dict]:
        assert names == ["main", "lores"]
        if self.hang is not None:
            self.hang.wait()
        if self.capture_errors:
            raise self.capture_errors.pop(0)
        assert self.config is not None and self.started
        w, h = self.config["main"]["size"]
        main = np.zeros((h, w, 3), np.uint8)
        main[:, :, 0] = 255  # RGB888 is B, G, R in memory: a blue frame
        lw, lh = self.config["lores"]["size"]
        lores = np.full((lh * 3 // 2, lw + 64), 99, np.uint8)  # U, V and stride padding: 99
        lores[:lh, :lw] = luma(lw, lh)
        return [main, lores], {"SensorTimestamp": 0}

    def close(self) -> None:
        self.closed = True


def luma(w: int, h: int) -> np.ndarray:
    return (np.arange(h * w) % 97).astype(np.uint8).reshape(h, w)


@pytest.fixture
def picamera2(monkeypatch) -> Iterator[type[FakePicamera2]]:
    fake = type("Picamera2", (FakePicamera2,), {"opened": [], "capture_errors": []})
    module = types.ModuleType("picamera2")
    module.Picamera2 = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    yield fake
    if fake.hang is not None:
        fake.hang.set()


def test_picamera2_streams_bgr_main_and_grey_lores(picamera2) -> None:
    source = open_source(CameraConfig(source="picamera2", width=640, height=480))
    (cam,) = picamera2.opened
    assert cam.requested == {
        "main": {"size": (640, 480), "format": "RGB888"},
        "lores": {"size": (320, 240), "format": "YUV420"},
    }
    assert cam.started
    frame = source.grab(5.0)
    assert frame.label == "picamera2" and frame.color == "rgb"
    np.testing.assert_array_equal(frame.image, luma(320, 240))  # Y plane, no padding, no UV
    assert frame.full is not None and frame.full.shape == (480, 640, 3)
    np.testing.assert_array_equal(frame.log_image()[0, 0], [255, 0, 0])  # blue stays blue
    source.grab(5.0)
    source.close()
    assert cam.closed
    source.close()  # idempotent
    with pytest.raises(CameraError, match="closed"):
        source.grab(1.0)


def test_lores_keeps_the_aspect_within_main() -> None:
    from smilebot.picam import lores_size

    assert lores_size(640, 480) == (320, 240)
    assert lores_size(1280, 720) == (320, 180)
    assert lores_size(160, 120) == (160, 120)
    assert lores_size(100, 75) == (100, 74)  # even, never above main


def test_picamera2_busy_is_camera_busy_and_retried(picamera2) -> None:
    picamera2.busy = True
    sleeps: list[float] = []
    config = CameraConfig(source="picamera2", open_retries=2, retry_s=1.0)
    with pytest.raises(CameraBusy, match=r"picamera2: cannot open .* busy after 3 attempts"):
        open_source(config, sleep=sleeps.append)
    assert sleeps == [1.0, 1.0]


def test_picamera2_missing_says_how_to_install_and_is_not_retried(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    sleeps: list[float] = []
    config = CameraConfig(source="picamera2", open_retries=3)
    with pytest.raises(CameraError, match="sudo apt install python3-picamera2") as info:
        open_source(config, sleep=sleeps.append)
    assert not isinstance(info.value, CameraBusy)
    assert sleeps == []


def test_picamera2_rejected_configuration_closes_the_camera(picamera2) -> None:
    picamera2.fail_configure = True
    with pytest.raises(CameraError, match="cannot start 640x480"):
        open_source(CameraConfig(source="picamera2"))
    assert picamera2.opened[0].closed


def test_picamera2_hang_times_out_and_leaves_the_camera_alone(picamera2) -> None:
    source = open_source(CameraConfig(source="picamera2"))
    picamera2.hang = threading.Event()
    start = time.monotonic()
    with pytest.raises(CameraTimeout, match=r"picamera2: no frame within 0\.2 s"):
        source.grab(0.2)
    assert time.monotonic() - start < 0.2 + SLACK_S
    start = time.monotonic()
    with pytest.raises(CameraTimeout, match="still hung"):
        source.grab(30.0)
    assert time.monotonic() - start < SLACK_S
    source.close()
    assert not picamera2.opened[0].closed  # closing a hung camera would hang too


def test_picamera2_capture_error_then_recovery(picamera2) -> None:
    source = open_source(CameraConfig(source="picamera2"))
    picamera2.capture_errors.append(RuntimeError("dequeue failed"))
    with pytest.raises(CameraError, match="picamera2: dequeue failed"):
        source.grab(5.0)
    assert source.grab(5.0).image.shape == (240, 320)
    source.close()


def test_only_picam_imports_picamera2_and_only_on_demand() -> None:
    importers = [
        path.name
        for path in sorted((REPO / "device").glob("*.py"))
        if re.search(r"^\s*(import|from)\s+picamera2\b", path.read_text(), re.MULTILINE)
    ]
    assert importers == ["picam.py"]
    code = (
        "import sys, smilebot.camera; "
        "assert 'smilebot.picam' not in sys.modules and 'picamera2' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------- OpenCV (faked)


class FakeCapture:
    """cv2.VideoCapture whose read() gives frame n (all pixels n) once the test releases it."""

    def __init__(self, device: int, opened: bool = True) -> None:
        self.device = device
        self.opened = opened
        self.props: dict[int, float] = {}
        self.gate = threading.Semaphore(0)
        self.delivered = 0
        self.reads = 0
        self.released = threading.Event()

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.opened

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reads += 1
        if not self.gate.acquire(timeout=0.02):
            return False, None
        self.delivered += 1
        return True, solid(4, 6, (self.delivered,) * 3)

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def captures(monkeypatch) -> list[FakeCapture]:
    """Every cv2.VideoCapture made during the test; ``opened`` False for device 9."""
    made: list[FakeCapture] = []

    def video_capture(device: int) -> FakeCapture:
        made.append(FakeCapture(device, opened=device != 9))
        return made[-1]

    monkeypatch.setattr(camera.cv2, "VideoCapture", video_capture)
    return made


def test_opencv_grab_gives_the_latest_frame_never_an_old_one(captures) -> None:
    source = OpenCVSource(0, 640, 480)
    (cap,) = captures
    assert cap.props == {cv2.CAP_PROP_FRAME_WIDTH: 640, cv2.CAP_PROP_FRAME_HEIGHT: 480}
    cap.gate.release(3)
    wait_until(lambda: cap.delivered == 3)
    reads = cap.reads
    wait_until(lambda: cap.reads > reads)  # the reader has stored frame 3 and reads again
    first = source.grab(5.0)
    assert first.image[0, 0, 0] == 3  # frames 1 and 2 were dropped
    assert first.label == "opencv:0" and first.color == "bgr"
    with pytest.raises(CameraTimeout, match=r"opencv:0: no new frame within 0\.2 s"):
        source.grab(0.2)  # frame 3 again would be stale
    cap.gate.release()
    second = source.grab(5.0)
    assert second.image[0, 0, 0] == 4 and second.time > first.time
    source.close()
    assert cap.released.is_set()


def test_opencv_camera_that_does_not_open_is_busy(captures) -> None:
    with pytest.raises(CameraBusy, match="opencv:9"):
        open_source(CameraConfig(source="opencv", device=9, open_retries=1), sleep=lambda s: None)
    assert len(captures) == 2 and all(c.released.is_set() for c in captures)


def test_webcam_probe(monkeypatch, tmp_path: Path, captures) -> None:
    monkeypatch.setattr(camera, "_VIDEO_NODE", str(tmp_path / "video{}"))
    assert not webcam_available(0)  # no device node: OpenCV is not even asked
    assert captures == []
    for device in (0, 9):
        (tmp_path / f"video{device}").touch()
    assert not webcam_available(9)  # does not open
    captures.clear()

    def opened_with_a_frame(device: int) -> FakeCapture:
        capture = FakeCapture(device)
        capture.gate.release()
        captures.append(capture)
        return capture

    monkeypatch.setattr(camera.cv2, "VideoCapture", opened_with_a_frame)
    assert webcam_available(0)
    assert captures[0].released.is_set()
