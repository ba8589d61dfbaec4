"""Stand-ins for the teacher models, for tests that must not load TensorFlow."""

from dataclasses import dataclass

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
