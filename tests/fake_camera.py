"""Stand-in frame sources for daemon tests: a working camera, one that raises, one that
hangs, and a busy camera behind :func:`smilebot.camera.open_source`.

Inject them by replacing the openers that ``open_source`` uses::

    patch_openers(monkeypatch, lambda config: FakeCamera())
    patch_openers(monkeypatch, busy_opener(2))   # busy twice, then a FakeCamera
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from smilebot import camera
from smilebot.camera import CameraBusy, CameraError, CameraTimeout, Frame, FrameSource
from smilebot.config import CameraConfig


class FakeCamera:
    """Gives ``frames`` in turn, cycling (default: one mid-grey 480x640x3 frame);
    counts ``grabs``."""

    label = "fake"

    def __init__(self, frames: list[np.ndarray] | None = None, color: str = "bgr") -> None:
        self.frames = frames if frames is not None else [np.full((480, 640, 3), 128, np.uint8)]
        self.color = color
        self.grabs = 0
        self.closed = False

    def grab(self, timeout_s: float) -> Frame:
        image = self.frames[self.grabs % len(self.frames)]
        self.grabs += 1
        return Frame(
            image=image, color=self.color, full=None, time=time.monotonic(), label=self.label
        )

    def close(self) -> None:
        self.closed = True


class RaisingCamera:
    """Every grab raises :class:`CameraError` at once; counts ``grabs``."""

    label = "raising"

    def __init__(self) -> None:
        self.grabs = 0
        self.closed = False

    def grab(self, timeout_s: float) -> Frame:
        self.grabs += 1
        raise CameraError(f"{self.label}: the camera raised")

    def close(self) -> None:
        self.closed = True


class HangingCamera:
    """Every grab blocks ``timeout_s`` then raises :class:`CameraTimeout`, as a hung camera
    does; counts ``grabs``."""

    label = "hanging"

    def __init__(self) -> None:
        self.grabs = 0
        self.closed = False

    def grab(self, timeout_s: float) -> Frame:
        self.grabs += 1
        time.sleep(timeout_s)
        raise CameraTimeout(f"{self.label}: no frame within {timeout_s:g} s: the camera hangs")

    def close(self) -> None:
        self.closed = True


class BusyOpener:
    """An opener whose first ``n_busy`` calls raise :class:`CameraBusy`, then return
    ``camera``; ``attempts`` counts the calls."""

    def __init__(self, n_busy: int, camera: FrameSource) -> None:
        self.n_busy = n_busy
        self.camera = camera
        self.attempts = 0

    def __call__(self, config: CameraConfig) -> FrameSource:
        self.attempts += 1
        if self.attempts <= self.n_busy:
            raise CameraBusy(f"fake: camera busy (attempt {self.attempts})")
        return self.camera


def busy_opener(n_busy: int, camera: FrameSource | None = None) -> BusyOpener:
    """An opener busy ``n_busy`` times, then giving ``camera`` (default a :class:`FakeCamera`)."""
    return BusyOpener(n_busy, camera if camera is not None else FakeCamera())


def patch_openers(
    monkeypatch: pytest.MonkeyPatch, opener: Callable[[CameraConfig], FrameSource]
) -> None:
    """Make ``open_source`` use ``opener`` whatever ``config.source`` says."""
    for source in camera._OPENERS:
        monkeypatch.setitem(camera._OPENERS, source, opener)
