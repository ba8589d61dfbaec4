"""Durability on disk: fsync a file or a folder by path (POSIX).

A rename is only durable once the folder holding it is fsynced; the capture log and the
model store both write temp file -> fsync -> rename -> fsync folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_file(path: Path) -> None:
    """Flush the file at ``path`` to the device."""
    _fsync(path, os.O_RDONLY)


def fsync_dir(path: Path) -> None:
    """Flush the folder at ``path`` (its entries: creations, renames, unlinks)."""
    _fsync(path, os.O_RDONLY | os.O_DIRECTORY)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
