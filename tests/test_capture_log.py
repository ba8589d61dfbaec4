"""Tests of smilebot.capture_log: durability, retention by sequence number, recovery."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from smilebot import capture_log
from smilebot.capture_log import (
    DB_NAME,
    CaptureLog,
    CaptureLogError,
    DiskFullError,
    Retention,
)

PLENTY = 10**12
NO_FLOOR = Retention(min_free_bytes=0)


def jpeg(size: int = 100, tag: int = 0) -> bytes:
    """A stand-in JPEG of exactly ``size`` bytes (SOI ... EOI)."""
    return b"\xff\xd8" + bytes([tag % 251]) * (size - 4) + b"\xff\xd9"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def open_log(folder: Path, retention: Retention = NO_FLOOR, **kw) -> CaptureLog:
    kw.setdefault("free_bytes", lambda: PLENTY)
    return CaptureLog.open(folder, retention, **kw)


def add(log: CaptureLog, data: bytes | None = None, **kw) -> int:
    record = {
        "trigger": "button",
        "model_version": "m1",
        "detections": [{"box": [0.1, 0.2, 0.3, 0.4], "score": 0.9}],
        "decision": "smile",
        "latency_ms": {"capture": 12.0, "infer": 30.5},
    }
    record.update(kw)
    if "frame" not in kw and data is None:
        data = jpeg()
    return log.add(jpeg=data, **record)


def images(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(".jpg")}


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".partial")]


def assert_consistent(log: CaptureLog) -> None:
    """integrity_check passes and the rows and image files agree exactly."""
    with sqlite3.connect(log.db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    rows = log.list(limit=10**6)
    assert {c.image.name for c in rows if c.image} == images(log.folder)
    assert all(c.image.stat().st_size == c.bytes for c in rows if c.image)
    assert partials(log.folder) == []


def test_round_trip_add_get_list_delete(tmp_path):
    clock = Clock()
    with open_log(tmp_path / "log", clock=clock) as log:
        a = add(log, jpeg(120, 1), detections=[{"score": np.float32(0.5)}], decision="none")
        frame = np.zeros((8, 8, 3), np.uint8)
        b = log.add(
            trigger="motion",
            model_version="m2",
            detections=[],
            decision="smile",
            latency_ms={"infer": np.float64(3.25)},
            frame=frame,
            time=5.0,
        )
        assert (a, b) == (1, 2)
        got = log.get(a)
        assert got.time == clock.now and got.trigger == "button" and got.model_version == "m1"
        assert got.detections == [{"score": 0.5}] and got.decision == "none"
        assert got.latency_ms == {"capture": 12.0, "infer": 30.5}
        assert got.image == log.folder / "00000001.jpg" and got.bytes == 120
        assert log.read_image(a) == jpeg(120, 1)
        second = log.get(b)
        assert second.time == 5.0 and second.latency_ms == {"infer": 3.25}
        assert log.read_image(b)[:2] == b"\xff\xd8" and second.image.stat().st_size == second.bytes
        assert [c.seq for c in log.list()] == [1, 2]
        assert [c.seq for c in log.list(limit=1, offset=1)] == [2]
        assert log.delete(a) is True
        assert log.get(a) is None and not (log.folder / "00000001.jpg").exists()
        assert log.delete(a) is False
        stats = log.stats()
        assert (stats.count, stats.oldest_seq, stats.newest_seq) == (1, 2, 2)
        assert_consistent(log)


def test_bad_input_stores_nothing(tmp_path):
    with open_log(tmp_path) as log:
        with pytest.raises(ValueError, match="not a complete JPEG"):
            add(log, b"\xff\xd8truncated")
        with pytest.raises(ValueError, match="detections"):
            add(log, detections=[object()])
        with pytest.raises(ValueError, match="latency_ms"):
            add(log, latency_ms={"infer": float("nan")})
        with pytest.raises(ValueError, match="frame"):
            add(log, frame=np.zeros((4, 4, 3), np.float32))
        assert log.stats().count == 0 and images(tmp_path) == set()
        assert partials(tmp_path) == []


def test_file_and_folder_modes_even_with_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        with open_log(tmp_path / "log") as log:
            add(log)
            folder = log.folder
            assert folder.stat().st_mode & 0o777 == 0o750
            names = ["00000001.jpg", DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", "capture.lock"]
            for name in names:
                assert (folder / name).stat().st_mode & 0o777 == 0o640, name
    finally:
        os.umask(old)


def test_existing_world_readable_folder_is_made_private(tmp_path):
    folder = tmp_path / "log"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    with open_log(folder):
        assert folder.stat().st_mode & 0o777 == 0o750


def test_sequence_numbers_increase_and_are_never_reused(tmp_path):
    with open_log(tmp_path) as log:
        seqs = [add(log) for _ in range(3)]
        assert seqs == [1, 2, 3]
        assert log.delete(3)
    with open_log(tmp_path) as log:
        assert add(log) == 4  # 3 was deleted, yet not reused
        assert log.stats().next_seq == 5
        assert [c.seq for c in log.list()] == [1, 2, 4]


def test_second_open_is_refused(tmp_path):
    with open_log(tmp_path), pytest.raises(CaptureLogError, match="another process"):
        open_log(tmp_path)


def _shuffle_mtimes_newest_to_1970(folder: Path) -> None:
    """The newest files get mtime 1970, the oldest a future one: mtime order is wrong."""
    for name in sorted(images(folder)):
        seq = int(name[:8])
        stamp = 0 if seq % 2 == 0 or seq > 3 else 4_000_000_000
        os.utime(folder / name, (stamp, stamp))


def test_retention_by_count_prunes_oldest_by_seq_not_mtime(tmp_path):
    with open_log(tmp_path, Retention(max_count=3, min_free_bytes=0)) as log:
        for _ in range(5):
            add(log)
            _shuffle_mtimes_newest_to_1970(tmp_path)
        assert [c.seq for c in log.list()] == [3, 4, 5]
        assert images(tmp_path) == {"00000003.jpg", "00000004.jpg", "00000005.jpg"}
        assert_consistent(log)


def test_retention_by_bytes_prunes_oldest_by_seq(tmp_path):
    with open_log(tmp_path, Retention(max_bytes=350, min_free_bytes=0)) as log:
        for _ in range(4):
            add(log, jpeg(100))
            _shuffle_mtimes_newest_to_1970(tmp_path)
        assert [c.seq for c in log.list()] == [2, 3, 4]
        add(log, jpeg(250))  # needs room for 250: only seq 4 (100) may stay
        assert [c.seq for c in log.list()] == [4, 5]
        assert log.stats().bytes == 350
        with pytest.raises(CaptureLogError, match="exceeds max_bytes"):
            add(log, jpeg(351))
        assert [c.seq for c in log.list()] == [4, 5]
        assert_consistent(log)


def test_age_purge_uses_the_record_time(tmp_path):
    clock = Clock(100 * 86400.0)
    with open_log(tmp_path, Retention(max_age_days=7, min_free_bytes=0), clock=clock) as log:
        old = add(log, time=clock.now - 8 * 86400)
        fresh = add(log, time=clock.now - 1 * 86400)  # this add prunes `old` first
        older_later_seq = add(log, time=clock.now - 30 * 86400)
        assert [c.seq for c in log.list()] == [fresh, older_later_seq]
        assert log.purge() == 1  # by record time, although it has the newest seq
        assert [c.seq for c in log.list()] == [fresh] and log.get(old) is None
        os.utime(tmp_path / f"{fresh:08d}.jpg", (0, 0))  # an mtime in 1970 is ignored
        assert log.purge() == 0 and log.get(fresh) is not None
        clock.now += 6 * 86400 + 1
        assert log.purge() == 1 and log.get(fresh) is None
        assert_consistent(log)


def test_privacy_mode_stores_no_image(tmp_path):
    with open_log(tmp_path, Retention(privacy=True, min_free_bytes=0)) as log:
        seq = add(log, jpeg(500))
        no_image = log.add(
            trigger="t", model_version="m", detections=[], decision="d", latency_ms={}
        )
        got = log.get(seq)
        assert got.image is None and got.bytes == 0 and got.decision == "smile"
        assert log.read_image(seq) is None and log.get(no_image).image is None
        assert images(tmp_path) == set() and partials(tmp_path) == []
        assert log.delete(seq) and log.get(seq) is None


def test_free_space_floor_prunes_then_reports_disk_full(tmp_path):
    free = {"bytes": PLENTY}
    retention = Retention(min_free_bytes=1000)
    with open_log(tmp_path, retention, free_bytes=lambda: free["bytes"]) as log:
        for _ in range(3):
            add(log)
        free["bytes"] = 500  # stays low whatever is pruned
        with pytest.raises(DiskFullError) as caught:
            add(log)
        assert caught.value.free_bytes == 500 and caught.value.needed_bytes == 100
        assert log.stats().count == 0  # everything prunable was pruned
        assert images(tmp_path) == set() and partials(tmp_path) == []
        assert log.purge() == 0  # purge logs, never raises
        free["bytes"] = PLENTY
        assert add(log) == 4  # still usable; nothing was written for the refused one
        assert_consistent(log)


def test_free_space_floor_prunes_only_what_is_needed(tmp_path):
    capacity = 1000

    def free() -> int:
        return capacity - sum(p.stat().st_size for p in tmp_path.glob("*.jpg"))

    with open_log(tmp_path, Retention(min_free_bytes=300), free_bytes=free) as log:
        for _ in range(10):
            add(log, jpeg(200))
        # before each add: free - 200 >= 300, so at most 2 stay, plus the new one
        assert [c.seq for c in log.list()] == [8, 9, 10]
        assert_consistent(log)


def test_enospc_during_the_write_leaves_nothing_and_prunes(tmp_path, monkeypatch):
    with open_log(tmp_path) as log:
        add(log)
        add(log)

        def full(fd, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(capture_log.os, "write", full)
        with pytest.raises(DiskFullError, match="disk full"):
            add(log)
        monkeypatch.undo()
        assert partials(tmp_path) == []
        assert [c.seq for c in log.list()] == [2]  # the oldest was pruned to make room
        assert log.get(3) is None
        assert add(log) == 4
        assert_consistent(log)


def test_recovery_after_a_crash(tmp_path):
    with open_log(tmp_path) as log:
        for _ in range(3):
            add(log)
    (tmp_path / "00000099.jpg.partial").write_bytes(b"\xff\xd8half")
    (tmp_path / "00000050.jpg").write_bytes(jpeg(77))  # an orphan without a row
    (tmp_path / "00000002.jpg").unlink()  # a row whose file is gone
    with open_log(tmp_path) as log:
        assert partials(tmp_path) == []
        quarantined = tmp_path / "quarantine" / "00000050.jpg"
        assert quarantined.read_bytes() == jpeg(77)
        assert (tmp_path / "quarantine").stat().st_mode & 0o777 == 0o750
        assert [c.seq for c in log.list()] == [1, 3]
        assert all(c.image.is_file() for c in log.list())
        assert_consistent(log)
        assert add(log) == 100  # past every seq seen on disk, the partial's included
    (tmp_path / "00000050.jpg").write_bytes(jpeg(78))  # the same name again
    with open_log(tmp_path) as log:
        assert (tmp_path / "quarantine" / "00000050.jpg.1").read_bytes() == jpeg(78)
        assert_consistent(log)


def test_corrupt_index_is_refused_naming_the_file(tmp_path):
    with open_log(tmp_path) as log:
        add(log)
    db = tmp_path / DB_NAME
    for extra in (DB_NAME + "-wal", DB_NAME + "-shm"):
        (tmp_path / extra).unlink(missing_ok=True)
    db.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(CaptureLogError, match=str(db)):
        open_log(tmp_path)
    assert images(tmp_path) == {"00000001.jpg"}  # nothing touched, nothing quarantined
    assert not (tmp_path / "quarantine").exists()


KILLER = """
import os, sys
from contextlib import contextmanager
from pathlib import Path
from smilebot import capture_log
from smilebot.capture_log import CaptureLog, Retention

folder, point = Path(sys.argv[1]), sys.argv[2]
log = CaptureLog.open(folder, Retention(min_free_bytes=0))
real_write, real_replace = os.write, os.replace

def write(fd, data):
    if point == "write":
        real_write(fd, bytes(data)[: len(data) // 2])
        os._exit(137)
    return real_write(fd, data)

def replace(a, b):
    real_replace(a, b)
    if point == "replace":
        os._exit(137)

@contextmanager
def transaction(self):
    db = self._conn()
    db.execute("BEGIN IMMEDIATE")
    yield
    if point == "before_commit":
        os._exit(137)
    db.execute("COMMIT")
    if point == "after_commit":
        os._exit(137)

capture_log.os.write, capture_log.os.replace = write, replace
CaptureLog._transaction = transaction
log.add(trigger="t", model_version="m", detections=[], decision="d", latency_ms={},
        jpeg=b"\\xff\\xd8" + b"x" * 1000 + b"\\xff\\xd9")
os._exit(0)
"""


@pytest.mark.parametrize("point", ["write", "replace", "before_commit", "after_commit"])
def test_sigkill_in_the_write_path(tmp_path, point):
    with open_log(tmp_path) as log:
        add(log)
        add(log)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLER), str(tmp_path), point],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 137, done.stderr.decode()
    with open_log(tmp_path) as log:
        assert_consistent(log)
        seqs = [c.seq for c in log.list()]
        assert seqs == ([1, 2, 3] if point == "after_commit" else [1, 2])
        quarantine = tmp_path / "quarantine"
        orphaned = point in ("replace", "before_commit")
        assert (quarantine / "00000003.jpg").is_file() == orphaned
        assert add(log) == 4


def test_thousand_adds_keep_exactly_the_newest_hundred(tmp_path):
    with open_log(tmp_path, Retention(max_count=100, min_free_bytes=0)) as log:
        for i in range(1000):
            add(log, jpeg(64, i))
        stats = log.stats()
        assert (stats.count, stats.oldest_seq, stats.newest_seq) == (100, 901, 1000)
        assert [c.seq for c in log.list(limit=1000)] == list(range(901, 1001))
        assert images(tmp_path) == {f"{s:08d}.jpg" for s in range(901, 1001)}
        assert stats.bytes == 100 * 64
        assert log.read_image(1000) == jpeg(64, 999)
        assert_consistent(log)


def test_retention_rejects_bad_limits():
    with pytest.raises(ValueError, match="max_count"):
        Retention(max_count=0)
    with pytest.raises(ValueError, match="min_free_bytes"):
        Retention(min_free_bytes=-1)


def test_closed_log_raises(tmp_path):
    log = open_log(tmp_path)
    log.close()
    log.close()  # idempotent
    with pytest.raises(CaptureLogError, match="closed"):
        log.stats()


def test_reader_reads_beside_the_writer_and_refuses_writes(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    with open_log(folder) as writer:
        seq = add(writer)
        reader = CaptureLog.reader(folder)  # the writer still holds the lock
        try:
            assert reader.read_only and not writer.read_only
            assert [c.seq for c in reader.list()] == [seq]
            assert reader.read_image(seq) == writer.read_image(seq)
            assert reader.stats().next_seq == seq + 1
            for write in (lambda: add(reader), lambda: reader.delete(seq), reader.purge):
                with pytest.raises(CaptureLogError, match="read-only"):
                    write()
            assert [c.seq for c in writer.list()] == [seq]
        finally:
            reader.close()
    with pytest.raises(CaptureLogError, match="no capture log"):
        CaptureLog.reader(tmp_path / "nothing")
