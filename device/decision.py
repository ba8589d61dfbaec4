"""What the bot answers to one frame's detections: smile, no smile, or no face.

The main face is the largest one (by box area) or the one whose centre is nearest the
frame's centre (``[decision] main_face``). It smiles when its smile probability reaches
the smile threshold. While the LED is still smiling from an earlier press (for
``smile_on_s`` seconds), the threshold is ``smile_hysteresis`` lower, so that a smile
whose score wobbles around the threshold does not flicker the LED from press to press.

Not the job of this module: drawing the LED or timing it (:mod:`smilebot.hardware`),
finding faces (:mod:`smilebot.detector`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from smilebot.detector import Face


class Outcome(Enum):
    """The answer to one press."""

    SMILE = "smile"
    NO_SMILE = "no_smile"
    NO_FACE = "no_face"


@dataclass(frozen=True)
class Decision:
    """The answer, the face it is about (None without faces) and the threshold used."""

    outcome: Outcome
    face: Face | None
    threshold: float


def main_face(faces: Sequence[Face], width: int, height: int, rule: str = "largest") -> Face | None:
    """The face the bot answers: ``rule`` "largest" (box area) or "centre" (nearest the
    centre of the ``width`` x ``height`` pixel frame); ties go to the higher score.
    """
    if not faces:
        return None
    if rule == "largest":

        def key(face: Face) -> tuple[float, float]:
            x1, y1, x2, y2 = face.box
            return (-(x2 - x1) * (y2 - y1), -face.score)

    elif rule == "centre":

        def key(face: Face) -> tuple[float, float]:
            x1, y1, x2, y2 = face.box
            dx, dy = (x1 + x2 - width) / 2, (y1 + y2 - height) / 2
            return (dx * dx + dy * dy, -face.score)

    else:
        raise ValueError(f"main_face: expected 'largest' or 'centre', got {rule!r}")
    return min(faces, key=key)


class Decider:
    """Turns faces into a :class:`Decision`, remembering how long the LED smiles.

    ``smile_threshold`` is a probability (0..1); ``smile_on_s`` and the ``now`` given to
    :meth:`decide` are seconds on one monotonic clock.
    """

    def __init__(
        self,
        smile_threshold: float,
        *,
        hysteresis: float = 0.0,
        rule: str = "largest",
        smile_on_s: float = 3.0,
    ) -> None:
        self.smile_threshold = smile_threshold
        self.hysteresis = hysteresis
        self.rule = rule
        self.smile_on_s = smile_on_s
        self._smiling_until = float("-inf")

    def decide(self, faces: Sequence[Face], width: int, height: int, now: float) -> Decision:
        """The answer for ``faces`` found in a ``width`` x ``height`` frame at time ``now``."""
        threshold = self.smile_threshold
        if now < self._smiling_until:
            threshold = max(0.0, threshold - self.hysteresis)
        face = main_face(faces, width, height, self.rule)
        if face is None:
            outcome = Outcome.NO_FACE
        elif face.smile >= threshold:
            outcome = Outcome.SMILE
        else:
            outcome = Outcome.NO_SMILE
        self._smiling_until = now + self.smile_on_s if outcome is Outcome.SMILE else float("-inf")
        return Decision(outcome=outcome, face=face, threshold=threshold)
