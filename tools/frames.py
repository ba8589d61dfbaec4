"""Video -> still frames on disk, so that every manifest row is an image file.

Frames are written as JPEG (quality 95) to ``out_dir/<video stem>/frame_<index>.jpg``
(index = frame number in the video, 6 digits); all frames of one video share the
manifest group ``video:<video stem>`` so that they never straddle two splits.

Not the job of this module: labelling the frames (kindle.py) or choosing splits
(manifest.py).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2

log = logging.getLogger(__name__)


class VideoError(RuntimeError):
    """A video that cannot be opened or read."""


def extract_frames(video: Path, out_dir: Path, every: int = 5) -> list[Path]:
    """Write every ``every``-th frame of ``video``; existing frames are kept, not re-encoded.

    Returns the paths of all selected frames (old and new), in frame order.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise VideoError(f"{video}: cannot open video (missing file or unsupported codec)")
    folder = out_dir / video.stem
    folder.mkdir(parents=True, exist_ok=True)
    paths, index = [], 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                path = folder / f"frame_{index:06d}.jpg"
                if not path.exists():
                    _write_jpeg(path, frame)
                paths.append(path)
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise VideoError(f"{video}: no frame could be decoded")
    log.info("%s: %d frames, kept %d (every %d)", video.name, index, len(paths), every)
    return paths


def _write_jpeg(path: Path, bgr) -> None:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise VideoError(f"{path}: JPEG encoding failed")
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)
