"""The Raspberry Pi camera through picamera2: the one module of smilebot that imports it.

:class:`PicameraSource` opens the camera once and keeps it streaming with a video
configuration of two streams from the same sensor frame:

* ``main``: ``RGB888`` at the configured ``width x height``, which picamera2 lays out as
  B, G, R bytes, so it is the BGR full-size image for the capture log (``Frame.full``);
* ``lores``: ``YUV420`` at :data:`LORES_WIDTH` pixels wide, with the main stream's aspect
  ratio (320x240 for 640x480), for the detector. The Pi 4 ISP gives the lores stream in
  YUV only; its array is ``(h * 3 // 2, stride)``, whose first ``h`` rows and ``w``
  columns are the Y (luma) plane: ``Frame.image`` is that grey ``(h, w)`` image.

Each grab takes the latest completed request with ``capture_arrays(["main", "lores"])``
through :class:`smilebot.camera._TimedRead`, so a hung camera raises
:class:`~smilebot.camera.CameraTimeout` instead of blocking the daemon.

What this module does NOT do: set exposure, focus or frame rate (picamera2's video
defaults), stop and restart the camera between grabs, or run without picamera2
(``sudo apt install python3-picamera2``; a venv needs ``--system-site-packages``).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from smilebot.camera import CameraBusy, CameraError, Frame, _TimedRead

logger = logging.getLogger(__name__)

LORES_WIDTH = 320  # pixels; the detector's input is smaller still
NOT_INSTALLED = (
    "picamera2 is not installed (on the Pi: sudo apt install python3-picamera2, "
    "and make the venv with --system-site-packages)"
)


def lores_size(width: int, height: int) -> tuple[int, int]:
    """``(w, h)`` of the lores stream for a ``width x height`` main stream: at most
    :data:`LORES_WIDTH` wide and no larger than main, same aspect, both even (YUV420)."""
    w = max(2, min(LORES_WIDTH, width) // 2 * 2)
    h = max(2, min(height, round(w * height / width)) // 2 * 2)
    return w, h


class PicameraSource:
    """The Pi camera, opened once and kept streaming; see the module docstring.

    Raises :class:`CameraBusy` if the camera cannot be acquired (busy or absent) and
    :class:`CameraError` if picamera2 is missing or the camera rejects the configuration.
    """

    label = "picamera2"

    def __init__(self, width: int, height: int) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as e:
            raise CameraError(f"{self.label}: {NOT_INSTALLED}") from e
        try:
            camera = Picamera2()
        except (RuntimeError, IndexError) as e:
            raise CameraBusy(f"{self.label}: cannot open the camera (busy or absent): {e}") from e
        try:
            config = camera.create_video_configuration(
                main={"size": (width, height), "format": "RGB888"},
                lores={"size": lores_size(width, height), "format": "YUV420"},
            )
            camera.configure(config)
            camera.start()
        except Exception as e:
            camera.close()
            raise CameraError(f"{self.label}: cannot start {width}x{height} streaming: {e}") from e
        # picamera2 may align the sizes asked for; the configuration holds the real ones.
        self.size: tuple[int, int] = tuple(config["main"]["size"])
        self.lores_size: tuple[int, int] = tuple(config["lores"]["size"])
        self._camera = camera
        self._read = _TimedRead(self._capture, self.label)
        logger.info("%s: streaming main %s, lores %s", self.label, self.size, self.lores_size)

    def grab(self, timeout_s: float) -> Frame:
        """The latest frame: grey lores ``image`` (h, w), BGR ``full`` (height, width, 3)."""
        if self._camera is None:
            raise CameraError(f"{self.label}: the camera is closed")
        main, lores, captured = self._read(timeout_s)
        width, height = self.size
        if main.shape != (height, width, 3):
            raise CameraError(
                f"{self.label}: main array of shape {main.shape}, expected {(height, width, 3)}"
            )
        w, h = self.lores_size
        if lores.ndim != 2 or lores.shape[0] != h * 3 // 2 or lores.shape[1] < w:
            raise CameraError(
                f"{self.label}: lores array of shape {lores.shape}, expected YUV420 "
                f"({h * 3 // 2}, >= {w})"
            )
        grey = np.ascontiguousarray(lores[:h, :w])
        return Frame(image=grey, color="rgb", full=main, time=captured, label=self.label)

    def close(self) -> None:
        """Stop and release the camera; idempotent. While a capture is hung the camera is
        left alone (closing it would hang too): the process exit releases it."""
        camera, self._camera = self._camera, None
        if camera is None:
            return
        hung = self._read.hung
        self._read.close()
        if hung:
            logger.warning(
                "%s: a capture is hung; leaving the camera to the process exit", self.label
            )
            return
        try:
            camera.close()  # stops it first
        except Exception as e:
            logger.warning("%s: closing the camera failed: %s", self.label, e)

    def _capture(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Blocking: main and lores arrays of the next completed request, and its time."""
        (main, lores), _metadata = self._camera.capture_arrays(["main", "lores"])
        return main, lores, time.monotonic()
