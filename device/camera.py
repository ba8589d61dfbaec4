"""Frame sources: where the daemon's pictures come from.

A :class:`FrameSource` is opened once and then asked for the latest frame with
:meth:`~FrameSource.grab`, which never blocks much longer than its ``timeout_s``
(a camera that takes longer hangs: :class:`CameraTimeout`). :func:`open_source` picks
the source named by ``[camera] source`` in the config and retries a busy camera a bounded
number of times (:class:`CameraBusy`). The sources:

* ``"picamera2"``: the Raspberry Pi camera, in :mod:`smilebot.picam` (imported only for
  this source; it is the one module that imports picamera2);
* ``"opencv"``: :class:`OpenCVSource`, a webcam through ``cv2.VideoCapture``;
* ``"folder"``: :class:`FolderSource`, images replayed from a folder (the simulation, and
  tests).

Every grab returns a :class:`Frame`: the image for the detector (grey ``(H, W)`` or
``(H, W, 3)`` in the order named by ``color``) and, when the source has a better one,
a full-size BGR image for the capture log.

What this module does NOT do: decide when to grab, preprocess for the model, or store
anything. It never stops and restarts a camera per frame, and it does not recover a
hung camera: after :class:`CameraTimeout` the caller exits and systemd restarts it.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import cv2
import numpy as np

from smilebot.config import CameraConfig

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_VIDEO_NODE = "/dev/video{}"  # Linux device node of an OpenCV camera index
_READ_FAILURE_PAUSE_S = 0.05  # between failed webcam reads, so a dead camera does not spin
_CLOSE_WAIT_S = 2.0  # how long close() waits for a reader thread to finish

T = TypeVar("T")


class CameraError(Exception):
    """A frame source failed; the message is one line naming the source."""


class CameraTimeout(CameraError):  # noqa: N818 (the daemon's API name)
    """A grab took longer than its timeout: the camera hangs."""


class CameraBusy(CameraError):  # noqa: N818 (the daemon's API name)
    """The camera could not be opened (busy or absent)."""


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    ``image``: uint8 ``(H, W)`` grey or ``(H, W, 3)``, what the detector gets;
    ``color``: ``"rgb"`` or ``"bgr"``, the channel order of a 3-channel ``image``
    (``"rgb"`` for a grey one); ``full``: uint8 BGR ``(H, W, 3)`` full-size image for the
    capture log, or None to log ``image``; ``time``: ``time.monotonic()`` at capture;
    ``label``: where it came from (``"picamera2"``, ``"opencv:0"``, ``"folder:a.jpg"``).
    """

    image: np.ndarray
    color: str
    full: np.ndarray | None
    time: float
    label: str

    def __post_init__(self) -> None:
        if self.color not in ("rgb", "bgr"):
            raise ValueError(
                f"{self.label}: frame color must be 'rgb' or 'bgr', got {self.color!r}"
            )
        if not _is_image(self.image, allow_grey=True):
            raise ValueError(
                f"{self.label}: frame image must be uint8 (H, W) or (H, W, 3), got "
                f"{self.image.dtype} {self.image.shape}"
            )
        if self.full is not None and not _is_image(self.full, allow_grey=False):
            raise ValueError(
                f"{self.label}: frame full must be uint8 (H, W, 3), got "
                f"{self.full.dtype} {self.full.shape}"
            )

    def log_image(self) -> np.ndarray:
        """uint8 BGR ``(H, W, 3)`` to store: ``full`` if there is one, else ``image`` as BGR."""
        if self.full is not None:
            return self.full
        if self.image.ndim == 2:
            return cv2.cvtColor(self.image, cv2.COLOR_GRAY2BGR)
        if self.color == "rgb":
            return cv2.cvtColor(self.image, cv2.COLOR_RGB2BGR)
        return self.image


def _is_image(array: object, allow_grey: bool) -> bool:
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.size == 0:
        return False
    return (allow_grey and array.ndim == 2) or (array.ndim == 3 and array.shape[2] == 3)


class FrameSource(Protocol):
    """Something that gives the latest camera frame on demand."""

    label: str

    def grab(self, timeout_s: float) -> Frame:
        """The latest frame; :class:`CameraTimeout` after ``timeout_s``, :class:`CameraError`."""
        ...

    def close(self) -> None:
        """Release the camera; idempotent."""
        ...


class _Read:
    """One request to the worker of :class:`_TimedRead` and, once ``done``, its outcome."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: object = None
        self.error: Exception | None = None


class _TimedRead(Generic[T]):
    """Calls a read that can block forever, waiting at most ``timeout_s`` for it.

    The read runs in one daemon worker thread. If it has not returned within the timeout,
    :class:`CameraTimeout` is raised and the read is left running; while it is still hung,
    every call raises :class:`CameraTimeout` at once (no second read is started, so threads
    never pile up). An exception from the read becomes :class:`CameraError` with its message,
    and the next call reads again. One caller at a time.
    """

    def __init__(self, read: Callable[[], T], label: str) -> None:
        self._read = read
        self.label = label
        self._requests: queue.SimpleQueue[_Read | None] = queue.SimpleQueue()
        self._current: _Read | None = None
        self._worker = threading.Thread(target=self._serve, name=f"{label} read", daemon=True)
        self._worker.start()

    @property
    def hung(self) -> bool:
        """True while a read that timed out has still not returned."""
        return self._current is not None and not self._current.done.is_set()

    def __call__(self, timeout_s: float) -> T:
        if self.hung:
            raise CameraTimeout(f"{self.label}: an earlier read is still hung")
        request = self._current = _Read()
        self._requests.put(request)
        if not request.done.wait(timeout_s):
            raise CameraTimeout(f"{self.label}: no frame within {timeout_s:g} s: the camera hangs")
        if request.error is not None:
            message = str(request.error) or type(request.error).__name__
            raise CameraError(f"{self.label}: {message}") from request.error
        return request.value  # type: ignore[return-value]

    def close(self) -> None:
        """Let the worker end after any read in flight."""
        self._requests.put(None)

    def _serve(self) -> None:
        while (request := self._requests.get()) is not None:
            try:
                request.value = self._read()
            except Exception as e:  # handed to the caller as a CameraError
                request.error = e
            request.done.set()


class FolderSource:
    """Images replayed from a folder, in name order, cycling; for the simulation and tests.

    The ``.jpg``/``.jpeg``/``.png``/``.bmp`` files (any case) directly in ``folder`` are
    decoded once, at open, and resized to fit ``width x height`` keeping their aspect ratio
    when both are given. Unreadable files are skipped with a warning; a folder with no
    readable image raises :class:`CameraError`. Frames are BGR and read-only.
    """

    def __init__(self, folder: Path, width: int | None = None, height: int | None = None) -> None:
        if (width is None) != (height is None):
            raise ValueError(f"give both width and height or neither, got {width}x{height}")
        self.folder = Path(folder)
        self.label = f"folder:{self.folder}"
        if not self.folder.is_dir():
            raise CameraError(f"{self.folder}: not a folder of images")
        paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self._images: list[tuple[str, np.ndarray]] = []
        for path in paths:
            image = _decode(path)
            if image is None:
                logger.warning("%s: not a readable image, skipped", path)
                continue
            if width is not None and height is not None:
                image = _fit(image, width, height)
            image.setflags(write=False)
            self._images.append((path.name, image))
        if not self._images:
            raise CameraError(
                f"{self.folder}: no readable image ({', '.join(IMAGE_SUFFIXES)}) in the folder"
            )
        self._next = 0

    def grab(self, timeout_s: float) -> Frame:
        """The next image (after the last one, the first again); never blocks."""
        name, image = self._images[self._next % len(self._images)]
        self._next += 1
        return Frame(
            image=image, color="bgr", full=None, time=time.monotonic(), label=f"folder:{name}"
        )

    def close(self) -> None:
        """Nothing to release: the images were read at open."""


def _decode(path: Path) -> np.ndarray | None:
    """uint8 BGR ``(H, W, 3)`` of an image file, or None if it cannot be read or decoded."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to fit inside ``width x height`` pixels, aspect ratio kept."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return image
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


class OpenCVSource:
    """A webcam through ``cv2.VideoCapture``, BGR frames.

    A reader thread reads continuously and keeps only the latest frame, so a grab never
    returns a stale buffered one: it returns a frame newer than the previous grab's, or
    raises :class:`CameraTimeout` when none came within ``timeout_s``. A camera that cannot
    be opened raises :class:`CameraBusy`. ``width x height`` is a request the driver may
    round; frames come at the size the camera gives.
    """

    def __init__(self, device: int, width: int, height: int) -> None:
        self.label = f"opencv:{device}"
        capture = cv2.VideoCapture(device)
        if not capture.isOpened():
            capture.release()
            raise CameraBusy(f"{self.label}: cannot open camera {device} (busy or absent)")
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._capture = capture
        self._new_frame = threading.Condition()
        self._latest: tuple[np.ndarray, float] | None = None
        self._count = 0  # frames read so far
        self._taken = 0  # self._count at the last grab
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read_frames, name=self.label, daemon=True)
        self._reader.start()

    def grab(self, timeout_s: float) -> Frame:
        with self._new_frame:
            if not self._new_frame.wait_for(lambda: self._count > self._taken, timeout_s):
                raise CameraTimeout(
                    f"{self.label}: no new frame within {timeout_s:g} s: the camera hangs"
                )
            self._taken = self._count
            image, captured = self._latest  # type: ignore[misc]
        return Frame(image=image, color="bgr", full=None, time=captured, label=self.label)

    def close(self) -> None:
        """Stop the reader (it releases the camera); waits a bounded time for it."""
        self._stop.set()
        self._reader.join(_CLOSE_WAIT_S)
        if self._reader.is_alive():
            logger.warning("%s: the reader is stuck in a read; camera left open", self.label)

    def _read_frames(self) -> None:
        try:
            while not self._stop.is_set():
                ok, image = self._capture.read()
                captured = time.monotonic()
                if not ok or image is None:
                    self._stop.wait(_READ_FAILURE_PAUSE_S)
                    continue
                with self._new_frame:
                    self._latest = (image, captured)
                    self._count += 1
                    self._new_frame.notify_all()
        finally:
            self._capture.release()


def webcam_available(device: int = 0) -> bool:
    """True if OpenCV camera ``device`` opens and gives a frame (a quick probe, ~1 s at most
    on a real webcam; on Linux a missing ``/dev/videoN`` answers False without trying)."""
    if sys.platform.startswith("linux") and not Path(_VIDEO_NODE.format(device)).exists():
        return False
    capture = cv2.VideoCapture(device)
    try:
        return bool(capture.isOpened() and capture.read()[0])
    finally:
        capture.release()


def _open_picamera2(config: CameraConfig) -> FrameSource:
    from smilebot.picam import PicameraSource  # picamera2 exists only on the Pi

    return PicameraSource(config.width, config.height)


def _open_opencv(config: CameraConfig) -> FrameSource:
    return OpenCVSource(config.device, config.width, config.height)


def _open_folder(config: CameraConfig) -> FrameSource:
    return FolderSource(Path(config.folder), config.width, config.height)


# config.source -> opener; tests replace entries (monkeypatch.setitem) to inject fakes.
_OPENERS: dict[str, Callable[[CameraConfig], FrameSource]] = {
    "picamera2": _open_picamera2,
    "opencv": _open_opencv,
    "folder": _open_folder,
}


def open_source(
    config: CameraConfig, *, sleep: Callable[[float], None] = time.sleep
) -> FrameSource:
    """Opens the source named by ``config.source``.

    A busy camera (:class:`CameraBusy`) is tried again ``config.open_retries`` times,
    ``config.retry_s`` seconds apart, each retry logged; then :class:`CameraBusy`
    ``"... busy after N attempts"`` is raised. Any other :class:`CameraError` is raised at once.
    """
    opener = _OPENERS.get(config.source)
    if opener is None:
        raise CameraError(
            f"unknown camera source {config.source!r}; expected one of {', '.join(_OPENERS)}"
        )
    attempts = config.open_retries + 1
    for attempt in range(1, attempts):
        try:
            return opener(config)
        except CameraBusy as e:
            logger.warning(
                "camera busy (attempt %d of %d): %s; retrying in %g s",
                attempt,
                attempts,
                e,
                config.retry_s,
            )
            sleep(config.retry_s)
    try:
        return opener(config)
    except CameraBusy as e:
        raise CameraBusy(f"{e}; still busy after {attempts} attempts") from e
