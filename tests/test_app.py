"""Tests of smilebot.app: start order, READY=1, refusals, exit codes, SIGTERM.

Everything is real except the pins (gpiozero's MockFactory) and, where a test says so,
the camera: the model store is seeded with the shipped model, frames come from samples/.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smilebot import app
from smilebot.app import EX_SOFTWARE, EX_UNAVAILABLE, Hooks, serve
from smilebot.camera import CameraBusy
from smilebot.capture_log import CaptureLog
from smilebot.config import CameraConfig, CapturesConfig, Config, ModelConfig
from smilebot.systemd import Notifier
from tests.daemon_parts import MODEL, REPO, SAMPLES, consistent, short_dir
from tests.fake_camera import HangingCamera

pytest.importorskip("cv2")
pytest.importorskip("ai_edge_litert.interpreter")

__all__ = ["short_dir"]  # a fixture used below


def sim_config(tmp_path: Path, **camera) -> Config:
    return Config(
        camera=CameraConfig(source="folder", folder=str(SAMPLES), retry_s=0.0, **camera),
        model=ModelConfig(dir=str(tmp_path / "models"), seed=str(MODEL)),
        captures=CapturesConfig(folder=str(tmp_path / "captures"), min_free_mb=0),
    )


class Recorder(Notifier):
    """A notifier that records what it would send, with what was open at the time."""

    def __init__(self) -> None:
        super().__init__({})
        self.sent: list[str] = []

    def notify(self, *lines: str) -> bool:
        self.sent.extend(lines)
        return True


def serve_until(config: Config, presses: int, tmp_path: Path, **kw) -> tuple[int, Recorder, list]:
    """serve() in simulation; press the mock nose ``presses`` times, then stop it."""
    notifier, results, stop = Recorder(), [], threading.Event()
    events: list[str] = []

    def started(trigger, daemon, stop_event) -> None:
        events.append(f"started with camera {daemon.camera.label}, model {daemon.store.version}")
        assert not any(m.startswith("READY") for m in notifier.sent)

        def press_then_stop() -> None:
            for _ in range(presses):
                n = len(results)
                time.sleep(0.1)  # past the button's debounce (bounce_ms 50)
                trigger.press(0.01)
                deadline = time.monotonic() + 20
                while len(results) == n and time.monotonic() < deadline:
                    time.sleep(0.005)
            stop_event.set()

        threading.Thread(target=press_then_stop, daemon=True).start()

    hooks = Hooks(simulate=True, report=results.append, started=started)
    code = serve(config, hooks, stop=stop, notifier=notifier, handle_signals=False, **kw)
    return code, notifier, results + events


def test_start_ready_serve_stop(tmp_path: Path) -> None:
    """RELIABILITY 16: READY=1 once, after camera, model and pins; STOPPING=1 at the end."""
    code, notifier, results = serve_until(sim_config(tmp_path), 3, tmp_path)
    assert code == 0
    assert results[-1].startswith("started with camera folder")
    assert notifier.sent.count("READY=1") == 1
    assert notifier.sent[-1] == "STOPPING=1"
    assert notifier.sent.index("READY=1") < notifier.sent.index("STOPPING=1")
    assert len([r for r in results[:-1] if r.seq is not None]) == 3
    with CaptureLog.open(tmp_path / "captures") as log:
        consistent(log, expected=3)


def test_root_is_refused(tmp_path: Path, caplog) -> None:
    """RELIABILITY 17: not as root (outside the simulation)."""
    notifier = Recorder()
    code = serve(
        sim_config(tmp_path), Hooks(), notifier=notifier, euid=lambda: 0, handle_signals=False
    )
    assert code == EX_UNAVAILABLE
    assert "root" in caplog.text and notifier.sent == []


def test_busy_camera_never_sends_ready(tmp_path: Path, monkeypatch, caplog) -> None:
    """RELIABILITY 6: bounded retries, then a non-zero exit, READY=1 never sent."""
    attempts = []

    def busy(config):
        attempts.append(1)
        raise CameraBusy("folder: busy (test)")

    monkeypatch.setattr(app, "open_source", lambda config: _retrying(config, busy))
    notifier = Recorder()
    config = sim_config(tmp_path, open_retries=2)
    code = serve(config, Hooks(simulate=True), notifier=notifier, handle_signals=False)
    assert code == EX_UNAVAILABLE
    assert len(attempts) == 3
    assert "READY=1" not in notifier.sent
    assert "cannot start" in caplog.text and "busy" in caplog.text


def _retrying(config: CameraConfig, opener):
    """What open_source does with a busy camera: 1 + open_retries attempts."""
    for attempt in range(config.open_retries + 1):
        try:
            return opener(config)
        except CameraBusy:
            if attempt == config.open_retries:
                raise
    raise AssertionError("unreachable")


def test_a_broken_seed_model_fails_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(MODEL.read_bytes()[:1000])
    (tmp_path / "bad.json").write_text(MODEL.with_suffix(".json").read_text())
    config = sim_config(tmp_path)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, seed=str(bad)))
    notifier = Recorder()
    code = serve(config, Hooks(simulate=True), notifier=notifier, handle_signals=False)
    assert code == EX_UNAVAILABLE and "READY=1" not in notifier.sent


def test_a_hung_camera_exits_non_zero(tmp_path: Path, monkeypatch) -> None:
    """RELIABILITY 5: the press's grab times out; exit EX_SOFTWARE; nothing partial."""
    monkeypatch.setattr(app, "open_source", lambda config: HangingCamera())
    config = sim_config(tmp_path, timeout_s=0.5)
    start = time.monotonic()
    code, _notifier, _ = serve_until(config, 1, tmp_path)
    assert code == EX_SOFTWARE
    assert time.monotonic() - start < 30
    with CaptureLog.open(tmp_path / "captures") as log:
        consistent(log, expected=0)


def _read_until(stream, needle: str, timeout_s: float, seen: list[str]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"{needle!r} not seen in: {''.join(seen)[-2000:]}")


def test_sigterm_mid_run_stops_cleanly(tmp_path: Path, short_dir: Path) -> None:
    """RELIABILITY 7: STOPPING=1, exit 0 within TimeoutStopSec, LED off, log consistent."""
    path = short_dir / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(0.1)
    env = dict(os.environ, NOTIFY_SOCKET=str(path), PYTHONUNBUFFERED="1")
    command = [
        sys.executable,
        "-m",
        "smilebot.cli",
        "run",
        "--simulate",
        "--no-webcam",
        "--frames",
        str(SAMPLES),
        "--auto-press",
        "0.05",
        "--state",
        str(tmp_path / "state"),
        "--model",
        str(MODEL),
    ]
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    try:
        for _ in range(3):
            _read_until(proc.stdout, "sees ", 60, seen)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        rest, _ = proc.communicate(timeout=10)  # the unit's TimeoutStopSec
        stopped_in = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    messages = []
    while True:
        try:
            messages.append(receiver.recv(256).decode())
        except TimeoutError:
            break
    receiver.close()
    assert proc.returncode == 0, "".join(seen) + rest
    assert stopped_in < 10
    assert "READY=1" in messages and "STOPPING=1" in messages
    led_lines = [line for line in (seen + rest.splitlines()) if line.startswith("LED")]
    assert led_lines and "OFF" in led_lines[-1]
    with CaptureLog.open(tmp_path / "state" / "captures") as log:
        consistent(log, expected=log.stats().count)
        assert log.stats().count >= 3


def test_an_unwritable_working_directory_is_refused(tmp_path: Path, monkeypatch, caplog) -> None:
    """RELIABILITY 18 (root can write anywhere, so os.access is what the test controls)."""
    monkeypatch.setattr(app.os, "access", lambda path, mode: False)
    notifier = Recorder()
    code = serve(
        sim_config(tmp_path), Hooks(), notifier=notifier, euid=lambda: 1000, handle_signals=False
    )
    assert code == EX_UNAVAILABLE
    assert "working directory" in caplog.text and notifier.sent == []
