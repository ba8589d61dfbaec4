"""Tests of smilebot.daemon: one press at a time, the LED, the capture log, the watchdog.

The model is the shipped one (models/smilebot.tflite) behind a stand-in model store; the
camera is a fake; the LED records its patterns. The app-level promises (READY, signals,
exit codes) are in test_app.py, the 1,000-press soak in test_soak.py.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from smilebot.capture_log import CaptureLog, Retention
from smilebot.config import Config, DecisionConfig
from smilebot.daemon import Daemon, FatalError, PressResult
from smilebot.decision import Outcome
from smilebot.hardware import Pattern
from smilebot.systemd import Notifier
from tests.daemon_parts import (
    RecordingLed,
    StandInStore,
    consistent,
    sample_frames,
    short_dir,
)
from tests.fake_camera import FakeCamera, HangingCamera, RaisingCamera

pytest.importorskip("cv2")
pytest.importorskip("ai_edge_litert.interpreter")

__all__ = ["short_dir"]  # a fixture used below


class SlowCamera(FakeCamera):
    """A camera whose grab takes ``delay_s``: presses arrive while a capture is in flight."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(sample_frames())
        self.delay_s = delay_s

    def grab(self, timeout_s: float):
        time.sleep(self.delay_s)
        return super().grab(timeout_s)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[CaptureLog]:
    with CaptureLog.open(tmp_path / "captures", Retention(min_free_bytes=0)) as log:
        yield log


def make_daemon(log: CaptureLog | None, camera=None, **kw) -> tuple[Daemon, list[PressResult]]:
    results: list[PressResult] = []
    daemon = Daemon(
        kw.pop("config", Config()),
        camera=camera or FakeCamera(sample_frames()),
        store=kw.pop("store", None) or StandInStore(),
        log=log,
        led=kw.pop("led", None) or RecordingLed(),
        report=results.append,
        **kw,
    )
    return daemon, results


def test_a_press_gives_an_answer_a_capture_and_a_line(log: CaptureLog, caplog) -> None:
    daemon, results = make_daemon(log)
    assert daemon.press("button")
    with caplog.at_level("INFO", logger="smilebot.daemon"):
        result = daemon.serve(daemon_take(daemon))
    assert results == [result]
    assert result.decision is not None and result.seq == 1
    assert result.faces, "the shipped model finds a face in the sample photos"
    capture = log.get(1)
    assert capture.trigger == "button"
    assert capture.model_version == daemon.store.version
    assert capture.decision == result.decision.outcome.value
    assert len(capture.detections) == len(result.faces)
    assert set(capture.latency_ms) >= {"grab", "preprocess", "invoke", "decode", "nms", "to_led"}
    assert capture.image is not None and capture.image.read_bytes()[:2] == b"\xff\xd8"
    led = daemon.led
    assert led.patterns[0] is Pattern.THINKING
    assert (
        led.patterns[-1]
        is {
            Outcome.SMILE: Pattern.SMILE,
            Outcome.NO_SMILE: Pattern.OFF,
            Outcome.NO_FACE: Pattern.NO_FACE,
        }[result.decision.outcome]
    )
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("press #1 button: ")
    assert "ms to LED" in lines[0]


def daemon_take(daemon: Daemon):
    """The pending press, as the main loop takes it."""
    press, daemon._pending = daemon._pending, None
    assert press is not None
    return press


def test_smile_shows_the_led_for_smile_on_s(log: CaptureLog) -> None:
    config = Config(decision=DecisionConfig(smile_on_s=1.5))
    store = StandInStore(smile_threshold=0.0)  # everything with a face smiles
    daemon, _ = make_daemon(log, config=config, store=store)
    daemon.press("button")
    result = daemon.serve(daemon_take(daemon))
    assert result.decision.outcome is Outcome.SMILE
    assert daemon.led.shown[-1] == (Pattern.SMILE, 1.5)


def test_no_face_pattern_on_a_blank_frame(log: CaptureLog) -> None:
    blank = np.full((480, 640, 3), 128, np.uint8)
    daemon, _ = make_daemon(log, camera=FakeCamera([blank]))
    daemon.press("proximity")
    result = daemon.serve(daemon_take(daemon))
    assert result.decision.outcome is Outcome.NO_FACE
    assert daemon.led.patterns[-1] is Pattern.NO_FACE
    assert log.get(result.seq).trigger == "proximity"


def run_in_thread(daemon: Daemon) -> tuple[threading.Thread, threading.Event, list]:
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            daemon.run(stop)
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, stop, errors


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_press_during_a_capture_is_dropped_and_counted(log: CaptureLog) -> None:
    """RELIABILITY 3: never a second concurrent capture; sequence numbers increase."""
    daemon, results = make_daemon(log, camera=SlowCamera(0.3))
    thread, stop, errors = run_in_thread(daemon)
    try:
        for _ in range(3):
            assert daemon.press("button")
            wait_for(lambda: daemon._busy)
            assert not daemon.press("button")  # in flight: dropped
            assert not daemon.press("button")
            served = len(results) + 1
            wait_for(lambda served=served: len(results) == served and not daemon._busy)
    finally:
        stop.set()
        thread.join(10)
    assert not errors
    assert daemon.counters.accepted == 3 and daemon.counters.dropped == 6
    seqs = [r.seq for r in results]
    assert seqs == sorted(set(seqs)) and len(seqs) == 3
    assert daemon.camera.grabs == 3
    consistent(log, expected=3)


def test_camera_error_shows_error_stores_nothing_next_press_served(log: CaptureLog) -> None:
    """RELIABILITY 4."""
    camera = RaisingCamera()
    daemon, _results = make_daemon(log, camera=camera)
    daemon.press("button")
    failed = daemon.serve(daemon_take(daemon))
    assert failed.decision is None and "camera" in failed.error and failed.seq is None
    assert daemon.led.patterns[-1] is Pattern.ERROR
    assert log.stats().count == 0
    consistent(log, expected=0)
    daemon.camera = FakeCamera(sample_frames())
    daemon.press("button")
    assert daemon.serve(daemon_take(daemon)).seq is not None
    assert daemon.counters.failed == 1 and daemon.counters.served == 1


def test_hung_camera_is_fatal_and_leaves_no_file(log: CaptureLog) -> None:
    """RELIABILITY 5: the daemon exits (systemd restarts it); nothing partial is left."""
    config = Config()
    daemon, _ = make_daemon(log, camera=HangingCamera(), config=config)
    thread, _stop, errors = run_in_thread(daemon)
    daemon.press("button")
    thread.join(config.camera.timeout_s + 5)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], FatalError)
    assert daemon.led.patterns[-1] is Pattern.ERROR
    consistent(log, expected=0)


def test_disk_full_skips_the_capture_and_stays_up(tmp_path: Path) -> None:
    """RELIABILITY 9: a full disk with nothing to prune: logged, not stored, still serving."""
    free = [10**12]
    retention = Retention(min_free_bytes=10**6)
    with CaptureLog.open(tmp_path / "c", retention, free_bytes=lambda: free[0]) as log:
        daemon, _ = make_daemon(log)
        daemon.press("button")
        assert daemon.serve(daemon_take(daemon)).seq == 1
        free[0] = 0
        daemon.press("button")
        full = daemon.serve(daemon_take(daemon))
        assert full.decision is not None and full.seq is None and "disk" in full.error.lower()
        assert daemon.led.patterns[-1] is not Pattern.ERROR  # the answer was still given
        free[0] = 10**12
        daemon.press("button")
        assert daemon.serve(daemon_take(daemon)).seq is not None
        assert daemon.counters.not_stored == 1 and daemon.counters.stored == 2


def test_privacy_mode_stores_the_record_without_image(tmp_path: Path) -> None:
    """RELIABILITY 19."""
    retention = Retention(min_free_bytes=0, privacy=True)
    with CaptureLog.open(tmp_path / "c", retention) as log:
        daemon, _ = make_daemon(log)
        daemon.press("button")
        seq = daemon.serve(daemon_take(daemon)).seq
        assert log.get(seq).image is None
        assert not list((tmp_path / "c").glob("*.jpg"))


def test_inference_errors_go_to_the_store(log: CaptureLog) -> None:
    store = StandInStore()
    daemon, _ = make_daemon(log, store=store)
    daemon.press("button")
    daemon.serve(daemon_take(daemon))
    assert store.ok == 1 and store.failed == []

    def failing_invoke(frame, color="rgb"):
        raise RuntimeError("tflite invoke failed")

    store.detector.detect = failing_invoke
    daemon.press("button")
    result = daemon.serve(daemon_take(daemon))
    assert result.decision is None and "inference" in result.error
    assert [str(e) for e in store.failed] == ["tflite invoke failed"]
    assert daemon.led.patterns[-1] is Pattern.ERROR
    assert log.stats().count == 1


def test_a_swapped_model_is_used_with_the_config_thresholds(log: CaptureLog) -> None:
    """RELIABILITY 14: each capture records the model version that served it."""
    from smilebot.config import ModelConfig

    store = StandInStore()
    config = Config(model=ModelConfig(face_threshold=0.9, smile_threshold=0.2))
    daemon, _ = make_daemon(log, store=store, config=config)
    assert daemon.store.detector.thresholds.face == 0.9
    assert daemon.decider.smile_threshold == 0.2
    daemon.press("button")
    first = daemon.serve(daemon_take(daemon))
    store.swap_to_new_version("newversion12")
    daemon.tick()
    assert daemon.store.detector.thresholds.face == 0.9
    daemon.press("button")
    second = daemon.serve(daemon_take(daemon))
    assert log.get(first.seq).model_version != log.get(second.seq).model_version
    assert log.get(second.seq).model_version == "newversion12"


def test_watchdog_pings_from_the_loop_and_stop_when_it_blocks(
    log: CaptureLog, short_dir: Path
) -> None:
    """RELIABILITY 16: WATCHDOG=1 at least twice per WATCHDOG_USEC; none while blocked."""
    path = short_dir / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(0.05)
    usec = 400_000
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": str(usec)})
    camera = SlowCamera(1.2)  # a grab that blocks the loop for 3 watchdog periods
    daemon, results = make_daemon(log, camera=camera, notifier=notifier)
    thread, stop, _ = run_in_thread(daemon)
    stamps: list[tuple[float, bytes]] = []

    def collect(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                stamps.append((time.monotonic(), receiver.recv(64)))

    try:
        collect(1.2)
        pings = [t for t, m in stamps if m == b"WATCHDOG=1"]
        assert len(pings) >= 2 * 1.2 / (usec / 1e6) - 1
        gaps = np.diff(pings)
        assert gaps.max() < usec / 1e6 / 2  # at least twice per period, with margin
        stamps.clear()
        daemon.press("button")
        wait_for(lambda: daemon._busy)
        collect(0.9)  # inside the 1.2 s grab
        assert [m for _, m in stamps if m == b"WATCHDOG=1"] == []
        wait_for(lambda: results)
        stamps.clear()
        collect(0.5)
        assert [m for _, m in stamps if m == b"WATCHDOG=1"], "pings resume after the press"
    finally:
        stop.set()
        thread.join(10)
        receiver.close()
        notifier.close()


def test_retention_runs_without_presses(tmp_path: Path) -> None:
    """RELIABILITY 19: captures past the age limit go at start even if nobody presses."""
    now = [1_800_000_000.0]
    retention = Retention(min_free_bytes=0, max_age_days=1)
    with CaptureLog.open(tmp_path / "c", retention, clock=lambda: now[0]) as log:
        daemon, _ = make_daemon(log)
        daemon.press("button")
        old = daemon.serve(daemon_take(daemon)).seq
        now[0] += 2 * 86400
        daemon.tick()
        assert log.get(old) is None
        consistent(log, expected=0)
