"""Shared test helpers: stand-ins for the teacher models (so tests need not load
TensorFlow) and tiny package archives."""

import io
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class OneFace:
    """A stand-in teacher: one face in the middle of every image."""

    tag: str
    p: float = 0.9

    def detect(self, rgb):
        h, w = rgb.shape[:2]
        box = np.array([0.4 * w, 0.3 * h, 0.6 * w, 0.6 * h], np.float32)
        return [type("D", (), {"box": box, "raw_box": box, "score": 0.9})()]

    def p_happy(self, rgb, boxes):
        return np.full(len(boxes), self.p, np.float32)


def use_stand_in_teachers(monkeypatch, p_fer: float, p_facex: float) -> dict:
    """Make kindling load :class:`OneFace` teachers with the given P(happy); returns them."""
    from smilebot_tools import kindle

    fakes = {
        "blazeface": [OneFace("bf@0")],
        "mtcnn": OneFace("mt@0"),
        "fer": OneFace("fer@0", p_fer),
        "facex": OneFace("fx@0", p_facex),
    }
    monkeypatch.setattr(kindle, "_load_teachers", lambda config: kindle._TEACHERS.update(fakes))
    monkeypatch.setattr(kindle, "_smile_teachers", lambda: [fakes["fer"], fakes["facex"]])
    return fakes


def write_tgz(path: Path, members: dict[str, bytes]) -> Path:
    """A .tar.gz (an sdist or npm tarball) holding ``members`` (name -> bytes)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A .zip (a wheel) holding ``members`` (name -> bytes)."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path
