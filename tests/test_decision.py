"""Tests of smilebot.decision: the main face, the smile threshold and its hysteresis."""

from __future__ import annotations

import pytest

from smilebot.decision import Decider, Outcome, main_face
from smilebot.detector import Face

BIG_EDGE = Face(box=(0, 0, 200, 200), score=0.6, smile=0.1)
SMALL_CENTRE = Face(box=(290, 210, 350, 270), score=0.9, smile=0.9)


def test_main_face_largest_and_centre() -> None:
    faces = (SMALL_CENTRE, BIG_EDGE)
    assert main_face(faces, 640, 480, "largest") is BIG_EDGE
    assert main_face(faces, 640, 480, "centre") is SMALL_CENTRE
    assert main_face((), 640, 480) is None
    with pytest.raises(ValueError, match="middle"):
        main_face(faces, 640, 480, "middle")


def test_ties_go_to_the_higher_score() -> None:
    low = Face(box=(0, 0, 10, 10), score=0.5, smile=0.0)
    high = Face(box=(20, 0, 30, 10), score=0.8, smile=1.0)
    assert main_face((low, high), 100, 100, "largest") is high


def test_outcomes() -> None:
    decider = Decider(0.5, smile_on_s=0)
    assert decider.decide((), 640, 480, 0).outcome is Outcome.NO_FACE
    assert decider.decide((BIG_EDGE,), 640, 480, 1).outcome is Outcome.NO_SMILE
    smile = decider.decide((SMALL_CENTRE,), 640, 480, 2)
    assert smile.outcome is Outcome.SMILE and smile.face is SMALL_CENTRE
    at_threshold = Face(box=(0, 0, 10, 10), score=0.9, smile=0.5)
    assert decider.decide((at_threshold,), 640, 480, 3).outcome is Outcome.SMILE


def test_hysteresis_only_while_the_led_smiles() -> None:
    decider = Decider(0.6, hysteresis=0.1, smile_on_s=3.0)
    borderline = (Face(box=(0, 0, 10, 10), score=0.9, smile=0.55),)
    clear = (Face(box=(0, 0, 10, 10), score=0.9, smile=0.7),)
    assert decider.decide(borderline, 64, 48, 0.0).outcome is Outcome.NO_SMILE
    assert decider.decide(clear, 64, 48, 1.0).outcome is Outcome.SMILE
    kept = decider.decide(borderline, 64, 48, 2.0)  # LED still smiling: threshold 0.5
    assert kept.outcome is Outcome.SMILE and kept.threshold == pytest.approx(0.5)
    later = decider.decide(borderline, 64, 48, 10.0)  # LED off again: back to 0.6
    assert later.outcome is Outcome.NO_SMILE and later.threshold == pytest.approx(0.6)
    assert decider.decide(borderline, 64, 48, 10.5).outcome is Outcome.NO_SMILE
