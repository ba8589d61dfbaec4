"""Tests of smilebot.systemd against real unix datagram sockets."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from smilebot.systemd import Notifier


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # tmp_path can exceed the ~107-byte limit on unix socket paths.
    path = Path(tempfile.mkdtemp(dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def receiver(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A SOCK_DGRAM socket bound to a path that NOTIFY_SOCKET points at."""
    path = short_dir / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(1.0)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def test_messages_arrive_with_exact_bytes(receiver: socket.socket) -> None:
    with Notifier() as notifier:
        assert notifier.enabled
        assert notifier.ready()
        assert notifier.status("3 captures")
        assert notifier.watchdog()
        assert notifier.stopping()
        assert notifier.notify("STATUS=busy", "WATCHDOG=1")
    got = [receiver.recv(4096) for _ in range(5)]
    assert got == [
        b"READY=1",
        b"STATUS=3 captures",
        b"WATCHDOG=1",
        b"STOPPING=1",
        b"STATUS=busy\nWATCHDOG=1",
    ]


def test_status_cannot_inject_other_assignments(receiver: socket.socket) -> None:
    with Notifier() as notifier:
        notifier.status("camera up\nREADY=1")
    assert receiver.recv(4096) == b"STATUS=camera up READY=1"


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"smilebot-test-{os.getpid()}-{id(monkeypatch)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(1.0)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        with Notifier() as notifier:
            assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"


def test_no_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    with Notifier() as notifier:
        assert not notifier.enabled
        assert not notifier.ready()
        assert not notifier.watchdog()
        assert not notifier.status("idle")
        assert not notifier.stopping()


def test_environ_argument_overrides_os_environ(receiver: socket.socket) -> None:
    notifier = Notifier(environ={})
    assert not notifier.enabled
    assert not notifier.ready()


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert Notifier().watchdog_interval == 1.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier().watchdog_interval == 1.0


def test_watchdog_for_another_process_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier().watchdog_interval is None


@pytest.mark.parametrize("usec", [None, "", "0", "-5", "soon"])
def test_no_or_bad_watchdog_usec_means_no_watchdog(
    monkeypatch: pytest.MonkeyPatch, usec: str | None
) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    if usec is None:
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    assert Notifier().watchdog_interval is None


def test_removed_socket_logs_once_and_does_not_raise(
    receiver: socket.socket, short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.close()
    (short_dir / "notify").unlink()
    caplog.set_level(logging.WARNING, logger="smilebot.systemd")
    with Notifier() as notifier:
        assert not notifier.ready()
        assert not notifier.watchdog()
        assert not notifier.watchdog()
    records = [r for r in caplog.records if r.name == "smilebot.systemd"]
    assert len(records) == 1
    assert "notify" in records[0].getMessage()


def test_close_is_idempotent_and_later_calls_are_no_ops(receiver: socket.socket) -> None:
    notifier = Notifier()
    notifier.close()
    notifier.close()
    assert not notifier.enabled
    assert not notifier.ready()
