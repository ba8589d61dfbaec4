"""The capture log: every capture's image and record, kept so the next model trains on
what the bot really sees.

On-disk layout (one folder, mode 0o750; every file mode 0o640)::

    <folder>/
        captures.sqlite3          the index (SQLite, WAL mode; -wal and -shm beside it)
        capture.lock              flock()ed while a CaptureLog is open: one writer only
        00000001.jpg              the image of capture 1 (seq zero-padded to 8 digits)
        00000002.jpg.partial      an image being written (never seen after a clean add)
        quarantine/               images found without a row at start (kept, never indexed)

The index has one row per capture (``captures``: seq, time, trigger, model_version,
detections JSON, decision, latency_ms JSON, image file name or NULL, image bytes) and
a ``meta`` row ``next_seq``, the high-water mark that makes sequence numbers never reused,
even after the newest capture is deleted or pruned.

Write order of :meth:`CaptureLog.add`, and why:

1. Retention first (oldest by sequence number, never by mtime: a Pi without an RTC boots
   in 1970), so the new image has room; below the free-space floor with nothing left to
   prune, :class:`DiskFullError` is raised and nothing is written.
2. The image goes to ``<seq>.jpg.partial`` (O_EXCL, 0o640), is fsynced, renamed to
   ``<seq>.jpg`` and the folder is fsynced: the name ``<seq>.jpg`` only ever refers to a
   complete, durable image.
3. Only then is the row inserted, together with ``next_seq``, in one transaction
   (``synchronous=FULL``, so a committed row survives a power cut).

A crash at any point therefore leaves either nothing (a ``.partial``, deleted at the next
start), an orphan ``<seq>.jpg`` without a row (moved to ``quarantine/`` at the next start:
its record is lost and is not guessed), or a complete capture. There is never a row without
its image file. Sequence numbers of stored captures never repeat: ``next_seq`` is kept in
the index and, at start, raised past every number seen on disk (orphans, partials,
quarantine). A number whose add failed before its row was committed may be used again.

Deletion (by :meth:`CaptureLog.delete` or retention) goes the other way: unlink the files,
fsync the folder, then delete the rows. A crash between leaves rows whose file is missing;
at the next start such rows are DELETED (logged): they can only be an interrupted deletion
or an image removed behind our back, and a deleted image must not come back (privacy), so
the start never leaves a row without its file.

What this module does NOT do: drive the camera, decide anything about a capture, or
define an export format for training (the rows and JPEGs are the interface). It needs the
standard library, plus OpenCV only when given a frame to encode.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import math
import os
import re
import shutil
import sqlite3
import threading
import time as _time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smilebot.fsync import fsync_dir

logger = logging.getLogger(__name__)

DB_NAME = "captures.sqlite3"
LOCK_NAME = "capture.lock"
QUARANTINE = "quarantine"
PARTIAL_SUFFIX = ".partial"
FILE_MODE = 0o640
DIR_MODE = 0o750
SCHEMA_VERSION = 1
JPEG_QUALITY = 90

_IMAGE_NAME = re.compile(r"^(\d+)\.jpg$")
_SEQ_PREFIX = re.compile(r"^(\d+)\.jpg")
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS captures (
    seq INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    trigger TEXT NOT NULL,
    model_version TEXT NOT NULL,
    detections TEXT NOT NULL,
    decision TEXT NOT NULL,
    latency_ms TEXT NOT NULL,
    image TEXT,
    bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS captures_time ON captures (time);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class CaptureLogError(Exception):
    """The capture log cannot do what was asked; the message names the file."""


class DiskFullError(CaptureLogError):
    """Not enough room for a capture even after pruning: nothing was stored.

    The caller logs it and stays up; the next capture tries again.
    """

    def __init__(self, message: str, free_bytes: int, needed_bytes: int) -> None:
        super().__init__(message)
        self.free_bytes = free_bytes
        self.needed_bytes = needed_bytes


@dataclass(frozen=True)
class Retention:
    """How much the log keeps. ``None`` means no limit for that one.

    ``min_free_bytes`` is a floor on the free space of the filesystem holding the log
    (after the new image is written); ``privacy`` stores the row only, never an image.
    """

    max_bytes: int | None = None
    max_count: int | None = None
    max_age_days: float | None = None
    min_free_bytes: int = 64 * 1024 * 1024
    privacy: bool = False

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_count", "max_age_days"):
            value = getattr(self, name)
            if value is not None and not (value > 0):
                raise ValueError(f"retention {name} must be > 0 or None, got {value!r}")
        if not self.min_free_bytes >= 0:
            raise ValueError(f"retention min_free_bytes must be >= 0, got {self.min_free_bytes!r}")


@dataclass(frozen=True)
class Capture:
    """One stored capture. ``image`` is the JPEG's path, or None in privacy mode."""

    seq: int
    time: float
    trigger: str
    model_version: str
    detections: list
    decision: str
    latency_ms: dict[str, float]
    image: Path | None
    bytes: int


@dataclass(frozen=True)
class Stats:
    """What the log holds now: image ``bytes`` is the sum of the JPEG sizes."""

    count: int
    bytes: int
    oldest_seq: int | None
    newest_seq: int | None
    next_seq: int


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays (without importing numpy): to plain Python."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _looks_like_jpeg(data: bytes) -> bool:
    """SOI at the start and an EOI marker: catches empty and most truncated images."""
    return data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9") > 1


class CaptureLog:
    """An open capture log; use :meth:`open`, and close it (or use ``with``)."""

    def __init__(
        self,
        folder: Path,
        retention: Retention,
        db: sqlite3.Connection,
        lock_fd: int,
        free_bytes: Callable[[], int],
        clock: Callable[[], float],
    ) -> None:
        self.folder = folder
        self.retention = retention
        self._db: sqlite3.Connection | None = db
        self._lock_fd = lock_fd
        self._free_bytes = free_bytes
        self._clock = clock
        self._mutex = threading.RLock()
        self._next_seq = 1

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        folder: Path | str,
        retention: Retention | None = None,
        *,
        free_bytes: Callable[[], int] | None = None,
        clock: Callable[[], float] = _time.time,
    ) -> CaptureLog:
        """Open (or create) the log in ``folder`` and recover from any earlier crash.

        Raises :class:`CaptureLogError` naming the file when the folder cannot be made
        private, another process holds the log, or the index fails ``integrity_check``
        (then nothing in the folder is touched).
        """
        folder = Path(folder)
        retention = retention or Retention()
        try:
            folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            if (folder.stat().st_mode & 0o7777) != DIR_MODE:
                folder.chmod(DIR_MODE)
        except OSError as e:
            raise CaptureLogError(f"{folder}: cannot create the capture folder: {e}") from e
        lock_path = folder / LOCK_NAME
        try:
            lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as e:
            raise CaptureLogError(f"{lock_path}: cannot open: {e}") from e
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(lock_fd)
            raise CaptureLogError(f"{lock_path}: the capture log is open in another process") from e
        try:
            db = cls._open_db(folder / DB_NAME)
        except BaseException:
            os.close(lock_fd)
            raise
        if free_bytes is None:

            def free_bytes() -> int:
                return shutil.disk_usage(folder).free

        log = cls(folder, retention, db, lock_fd, free_bytes, clock)
        try:
            log._recover()
        except BaseException:
            log.close()
            raise
        return log

    @classmethod
    def reader(cls, folder: Path | str) -> CaptureLog:
        """Open the log in ``folder`` read-only, beside a running daemon that holds it.

        No lock and no recovery; :meth:`add`, :meth:`delete` and :meth:`purge` raise
        :class:`CaptureLogError`. Raises it too, naming the file, when there is no log.
        """
        folder = Path(folder)
        path = folder / DB_NAME
        if not path.is_file():
            raise CaptureLogError(f"{path}: no capture log here")
        try:
            db = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
            db.execute("SELECT 1 FROM captures LIMIT 1").fetchall()
            stored = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        except sqlite3.Error as e:
            raise CaptureLogError(f"{path}: cannot read the capture index: {e}") from e
        log = cls(folder, Retention(), db, -1, lambda: 0, _time.time)
        log._next_seq = stored[0] if stored else 1
        return log

    @property
    def read_only(self) -> bool:
        """True for a log opened with :meth:`reader`."""
        return self._lock_fd < 0

    def _check_writable(self) -> None:
        if self.read_only:
            raise CaptureLogError(f"{self.folder / DB_NAME}: opened read-only")

    @staticmethod
    def _open_db(path: Path) -> sqlite3.Connection:
        try:
            # Create it 0o640 ourselves: SQLite would use 0o644 & ~umask, and gives the
            # -wal and -shm files the mode of the database file.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
            if (path.stat().st_mode & 0o7777) != FILE_MODE:
                path.chmod(FILE_MODE)
        except OSError as e:
            raise CaptureLogError(f"{path}: cannot create the capture index: {e}") from e
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        try:
            rows = db.execute("PRAGMA integrity_check").fetchall()
            if [tuple(r) for r in rows] != [("ok",)]:
                problems = "; ".join(str(r[0]) for r in rows[:3])
                raise CaptureLogError(f"{path}: integrity_check failed: {problems}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CaptureLogError(
                    f"{path}: schema version {version} is newer than {SCHEMA_VERSION}"
                )
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise CaptureLogError(f"{path}: cannot switch to WAL mode (got {mode})")
            # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on a power
            # cut, which would turn a capture the bot reported as stored into a quarantined
            # orphan. One extra fsync per capture is nothing at capture rates.
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as e:
            db.close()
            raise CaptureLogError(f"{path}: not a usable capture index: {e}") from e
        except BaseException:
            db.close()
            raise
        return db

    def _recover(self) -> None:
        """Sweep partials, quarantine orphans, drop rows without files, restore next_seq."""
        seen: list[int] = []
        on_disk: dict[str, int] = {}
        partials = 0
        for entry in os.scandir(self.folder):
            if entry.name.endswith(PARTIAL_SUFFIX) and entry.is_file(follow_symlinks=False):
                logger.warning("capture log: removing unfinished image %s", entry.path)
                _unlink(Path(entry.path))
                partials += 1
            elif (m := _IMAGE_NAME.match(entry.name)) and entry.is_file(follow_symlinks=False):
                on_disk[entry.name] = int(m.group(1))
            else:
                continue
            if m := _SEQ_PREFIX.match(entry.name):
                seen.append(int(m.group(1)))
        quarantine = self.folder / QUARANTINE
        if quarantine.is_dir():
            seen += [int(m.group(1)) for n in os.listdir(quarantine) if (m := _SEQ_PREFIX.match(n))]

        db = self._conn()
        rows = db.execute("SELECT seq, image FROM captures WHERE image IS NOT NULL").fetchall()
        indexed = {image for _, image in rows}
        orphans = sorted(name for name in on_disk if name not in indexed)
        if orphans:
            quarantine.mkdir(mode=DIR_MODE, exist_ok=True)
            for name in orphans:
                target = quarantine / name
                n = 0
                while target.exists():
                    n += 1
                    target = quarantine / f"{name}.{n}"
                logger.warning("capture log: %s has no row; moved to %s", name, target)
                os.replace(self.folder / name, target)
            fsync_dir(quarantine)
            fsync_dir(self.folder)
        missing = [seq for seq, image in rows if image not in on_disk]
        for seq in missing:
            logger.warning("capture log: capture %d has no image file; deleting its row", seq)

        high = db.execute("SELECT MAX(seq) FROM captures").fetchone()[0]
        stored = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        self._next_seq = max(
            [1, (high or 0) + 1, stored[0] if stored else 1] + [s + 1 for s in seen]
        )
        with self._transaction():
            db.executemany("DELETE FROM captures WHERE seq = ?", [(s,) for s in missing])
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?)",
                (self._next_seq,),
            )
        logger.info(
            "capture log %s: %d partial(s) swept, %d orphan(s) quarantined, "
            "%d row(s) without image dropped, next seq %d",
            self.folder,
            partials,
            len(orphans),
            len(missing),
            self._next_seq,
        )

    # ----------------------------------------------------------------- writing

    def add(
        self,
        *,
        trigger: str,
        model_version: str,
        detections: list,
        decision: str,
        latency_ms: dict[str, float],
        jpeg: bytes | None = None,
        frame: Any = None,
        time: float | None = None,
    ) -> int:
        """Store one capture; returns its sequence number.

        Give the image as ``jpeg`` bytes or as a uint8 BGR ``frame`` (encoded with
        cv2.imencode); in privacy mode the image is ignored and only the row is stored.
        ``time`` defaults to the clock (wall clock seconds). Raises :class:`DiskFullError`
        when there is no room even after pruning (nothing stored), ``ValueError`` for a bad
        record or image, :class:`CaptureLogError` for other failures (nothing stored).
        """
        self._check_writable()
        with self._mutex:
            when = self._clock() if time is None else time
            row = self._record(trigger, model_version, detections, decision, latency_ms, when)
            data = None if self.retention.privacy else self._image_bytes(jpeg, frame)
            needed = len(data) if data is not None else 0
            limit = self.retention.max_bytes
            if limit is not None and needed > limit:
                raise CaptureLogError(
                    f"{self.folder}: image of {needed} bytes exceeds max_bytes {limit}"
                )
            self._make_room(needed, adding=1, must_fit=True)
            seq = self._next_seq
            self._next_seq += 1  # consumed even if this add fails: never reused
            name = None
            if data is not None:
                name = f"{seq:08d}.jpg"
                self._write_image(name, data)
            try:
                with self._transaction():
                    self._conn().execute(
                        "INSERT INTO captures (seq, time, trigger, model_version, detections,"
                        " decision, latency_ms, image, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (seq, *row, name, needed),
                    )
                    self._conn().execute(
                        "UPDATE meta SET value = ? WHERE key = 'next_seq'", (self._next_seq,)
                    )
            except sqlite3.Error as e:
                if name is not None:
                    _unlink(self.folder / name)
                    fsync_dir(self.folder)
                if isinstance(e, sqlite3.OperationalError) and "full" in str(e).lower():
                    raise DiskFullError(
                        f"{self.folder / DB_NAME}: disk full, capture {seq} not stored: {e}",
                        self._free(),
                        needed,
                    ) from e
                raise CaptureLogError(
                    f"{self.folder / DB_NAME}: cannot store capture {seq}: {e}"
                ) from e
            logger.debug("capture %d stored (%d bytes)", seq, needed)
            return seq

    @staticmethod
    def _record(
        trigger: str,
        model_version: str,
        detections: list,
        decision: str,
        latency_ms: dict[str, float],
        time: float,
    ) -> tuple:
        for field, value in (
            ("trigger", trigger),
            ("model_version", model_version),
            ("decision", decision),
        ):
            if not isinstance(value, str):
                raise ValueError(f"capture {field} must be a str, got {type(value).__name__}")
        if not isinstance(detections, list):
            raise ValueError(f"capture detections must be a list, got {type(detections).__name__}")
        if not isinstance(latency_ms, dict):
            raise ValueError(f"capture latency_ms must be a dict, got {type(latency_ms).__name__}")
        try:
            detections_json = json.dumps(detections, default=_json_default, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"capture detections are not JSON-able: {e}") from e
        try:
            latency = {str(k): float(v) for k, v in latency_ms.items()}
            latency_json = json.dumps(latency, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"capture latency_ms must map stage -> finite ms: {e}") from e
        try:
            time = float(time)
        except (TypeError, ValueError) as e:
            raise ValueError(f"capture time must be seconds (a float), got {time!r}") from e
        if not math.isfinite(time):
            raise ValueError(f"capture time must be finite, got {time!r}")
        return (time, trigger, model_version, detections_json, decision, latency_json)

    def _image_bytes(self, jpeg: bytes | None, frame: Any) -> bytes:
        if (jpeg is None) == (frame is None):
            raise ValueError("give exactly one of jpeg or frame (or use privacy mode)")
        if frame is not None:
            import cv2  # only needed for frames; jpeg bytes need no OpenCV

            if getattr(frame, "dtype", None) != "uint8" or getattr(frame, "ndim", 0) not in (2, 3):
                raise ValueError(
                    f"capture frame must be a uint8 HxW or HxWx3 array, got "
                    f"{getattr(frame, 'dtype', type(frame).__name__)} "
                    f"{getattr(frame, 'shape', '')}"
                )
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise ValueError(f"cv2.imencode failed for a frame of shape {frame.shape}")
            return buf.tobytes()
        data = bytes(jpeg)
        if not _looks_like_jpeg(data):
            raise ValueError(f"capture jpeg is not a complete JPEG ({len(data)} bytes)")
        return data

    def _write_image(self, name: str, data: bytes) -> None:
        """partial (O_EXCL, 0o640) -> fsync -> rename -> fsync folder; nothing left on error."""
        final = self.folder / name
        partial = self.folder / (name + PARTIAL_SUFFIX)
        renamed = False
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            try:
                os.fchmod(fd, FILE_MODE)  # the umask may only narrow it; make it exact
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(partial, final)
            renamed = True
            fsync_dir(self.folder)
        except OSError as e:
            _unlink(partial)
            if renamed:
                _unlink(final)
            if e.errno in _DISK_FULL_ERRNOS:
                pruned = self._prune_for(len(data))
                free = self._free()
                logger.error(
                    "capture log: disk full writing %s; pruned %d capture(s)", final, pruned
                )
                raise DiskFullError(
                    f"{final}: disk full ({os.strerror(e.errno)}); capture not stored, "
                    f"{pruned} oldest pruned",
                    free,
                    len(data),
                ) from e
            raise CaptureLogError(f"{final}: cannot write the image: {e}") from e

    # ---------------------------------------------------------------- retention

    def purge(self) -> int:
        """Apply the retention now (age by the record's time); returns how many were pruned.

        Never raises for low free space: it logs an error if the floor cannot be met.
        """
        self._check_writable()
        with self._mutex:
            return self._make_room(0, adding=0, must_fit=False)

    def _make_room(self, needed: int, adding: int, must_fit: bool) -> int:
        """Prune oldest by seq to meet every limit with ``adding`` more captures of
        ``needed`` bytes; raise DiskFullError (if ``must_fit``) when the floor stays unmet."""
        r = self.retention
        db = self._conn()
        victims: list[int] = []
        if r.max_age_days is not None:
            cutoff = self._clock() - r.max_age_days * 86400.0
            victims += [
                s for (s,) in db.execute("SELECT seq FROM captures WHERE time < ?", (cutoff,))
            ]
        pruned = self._prune(victims)
        count, total = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM captures"
        ).fetchone()
        victims = []
        if r.max_count is not None or r.max_bytes is not None:
            max_count = math.inf if r.max_count is None else r.max_count
            max_bytes = math.inf if r.max_bytes is None else r.max_bytes
            cursor = db.execute("SELECT seq, bytes FROM captures ORDER BY seq")
            try:
                for seq, size in cursor:
                    if count + adding <= max_count and total + needed <= max_bytes:
                        break
                    victims.append(seq)
                    count -= 1
                    total -= size
            finally:
                cursor.close()
        pruned += self._prune(victims)
        # The free-space floor: re-measured after each batch, as only the filesystem knows.
        while (free := self._free()) - needed < r.min_free_bytes:
            batch = self._oldest_covering(r.min_free_bytes + needed - free)
            if not batch:
                message = (
                    f"{self.folder}: {free} bytes free, under the floor of "
                    f"{r.min_free_bytes} + {needed} needed, with nothing left to prune"
                )
                if must_fit:
                    logger.error("capture log: %s; capture skipped", message)
                    raise DiskFullError(message, free, needed)
                logger.error("capture log: %s", message)
                break
            logger.warning(
                "capture log: %d bytes free, under the floor; pruning %d capture(s)",
                free,
                len(batch),
            )
            pruned += self._prune(batch)
        return pruned

    def _prune_for(self, needed: int) -> int:
        """After ENOSPC: prune the oldest captures holding at least ``needed`` bytes."""
        try:
            return self._prune(self._oldest_covering(max(needed, 1)))
        except (OSError, sqlite3.Error, CaptureLogError) as e:
            logger.error("capture log: pruning after disk full failed: %s", e)
            return 0

    def _oldest_covering(self, nbytes: int) -> list[int]:
        """The oldest captures (by seq) whose images add up to ``nbytes``, at least one."""
        batch: list[int] = []
        covered = 0
        cursor = self._conn().execute("SELECT seq, bytes FROM captures ORDER BY seq")
        try:
            for seq, size in cursor:
                batch.append(seq)
                covered += size
                if covered >= nbytes:
                    break
        finally:
            cursor.close()
        return batch

    def _prune(self, seqs: list[int]) -> int:
        """Delete captures: files first (then fsync the folder), rows after."""
        if not seqs:
            return 0
        db = self._conn()
        for seq in seqs:
            row = db.execute("SELECT image FROM captures WHERE seq = ?", (seq,)).fetchone()
            if row and row[0]:
                _unlink(self.folder / row[0])
        fsync_dir(self.folder)
        with self._transaction():
            db.executemany("DELETE FROM captures WHERE seq = ?", [(s,) for s in seqs])
        logger.debug("capture log: pruned %d capture(s), seq %d..%d", len(seqs), seqs[0], seqs[-1])
        return len(seqs)

    # ------------------------------------------------------------------ reading

    def get(self, seq: int) -> Capture | None:
        """The capture ``seq``, or None if there is none."""
        with self._mutex:
            row = self._conn().execute(_SELECT + " WHERE seq = ?", (seq,)).fetchone()
            return self._capture(row) if row else None

    def list(self, limit: int = 100, offset: int = 0) -> list[Capture]:
        """Captures in ascending sequence order, ``limit`` of them from ``offset``."""
        with self._mutex:
            rows = self._conn().execute(
                _SELECT + " ORDER BY seq LIMIT ? OFFSET ?", (int(limit), int(offset))
            )
            return [self._capture(row) for row in rows]

    def read_image(self, seq: int) -> bytes | None:
        """The JPEG bytes of capture ``seq``; None if there is no such capture or image."""
        capture = self.get(seq)
        if capture is None or capture.image is None:
            return None
        return capture.image.read_bytes()

    def delete(self, seq: int) -> bool:
        """Delete capture ``seq``, its image file and its row; False if there was none."""
        self._check_writable()
        with self._mutex:
            if self._conn().execute("SELECT 1 FROM captures WHERE seq = ?", (seq,)).fetchone():
                return self._prune([seq]) == 1
            return False

    def stats(self) -> Stats:
        with self._mutex:
            count, total, oldest, newest = (
                self._conn()
                .execute(
                    "SELECT COUNT(*), COALESCE(SUM(bytes), 0), MIN(seq), MAX(seq) FROM captures"
                )
                .fetchone()
            )
            return Stats(count, total, oldest, newest, self._next_seq)

    @property
    def db_path(self) -> Path:
        return self.folder / DB_NAME

    # ---------------------------------------------------------------- plumbing

    def close(self) -> None:
        """Close the index (checkpointing the WAL) and release the lock; idempotent."""
        with self._mutex:
            if self._db is not None:
                self._db.close()
                self._db = None
                if self._lock_fd >= 0:
                    os.close(self._lock_fd)

    def __enter__(self) -> CaptureLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise CaptureLogError(f"{self.folder / DB_NAME}: the capture log is closed")
        return self._db

    def _free(self) -> int:
        try:
            return int(self._free_bytes())
        except OSError as e:
            raise CaptureLogError(f"{self.folder}: cannot measure free space: {e}") from e

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (e.g. SQLITE_FULL)
                db.execute("ROLLBACK")
            raise

    def _capture(self, row: tuple) -> Capture:
        seq, t, trigger, version, detections, decision, latency, image, size = row
        return Capture(
            seq=seq,
            time=t,
            trigger=trigger,
            model_version=version,
            detections=json.loads(detections),
            decision=decision,
            latency_ms=json.loads(latency),
            image=self.folder / image if image else None,
            bytes=size,
        )


_SELECT = (
    "SELECT seq, time, trigger, model_version, detections, decision, latency_ms, image, bytes"
    " FROM captures"
)
