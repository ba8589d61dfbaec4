"""Tests of smilebot_tools.modelcard.write_card: the card from sidecar, eval and samples."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")  # the desktop tools (not in the Pi-like venv)
pytest.importorskip("ai_edge_litert.interpreter")

from smilebot.detector import Detector
from smilebot_tools import failures, report
from smilebot_tools.modelcard import SAMPLES, write_card
from tests.test_report import Blind, Oracle, write_records

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    for suffix in (".tflite", ".json"):
        shutil.copyfile(MODELS / f"smilebot{suffix}", folder / f"smilebot{suffix}")
    return folder / "smilebot.tflite"


def linked_pictures(text: str) -> list[str]:
    return re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)


def test_card_with_an_evaluation(model: Path, tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    records = write_records(tmp_path / "images")
    results, runs = report.evaluate(
        records,
        [Oracle(records), Blind(), Oracle(records, name="BlazeFace + fer")],
        conditions=("clean", "jpeg"),
    )
    evaluation = tmp_path / "eval"
    report.write_report(results, evaluation, runs)
    path = write_card(model, [evaluation, evaluation])
    text = path.read_text()
    assert path == model.with_name("MODEL_CARD.md")
    assert text.count("## Against the baselines") == 2  # two evaluations, plots once
    assert "| v1 Haar |" in text and "| smilebot |" in text
    assert "| target (issue 6) | measured | met |" in text
    pictures = linked_pictures(text)
    plots = [p for p in pictures if not p.startswith("card/failure_")]
    assert sorted(plots) == sorted(f"card/{name}.png" for name in report.PLOTS)
    for picture in pictures:
        assert (path.parent / picture).read_bytes()[:4] == b"\x89PNG"
    assert "## Known failure cases" in text
    shipped = failures.find_failures(
        Detector.load(model), SAMPLES, failures.read_labels(SAMPLES / "LABELS.csv")
    )
    assert shipped  # the shipped model's false face on the astronaut's suit patch
    for i, failure in enumerate(shipped):
        assert f"- {failure.caption()}" in text and f"card/failure_{i}.png" in pictures


def test_card_without_an_evaluation_says_so(model: Path) -> None:
    text = write_card(model).read_text()
    assert "Not measured for this card: run `make eval`." in text
    assert not any(p for p in linked_pictures(text) if not p.startswith("card/failure_"))
    assert sorted(p.name for p in (model.parent / "card").iterdir()) == sorted(
        Path(p).name for p in linked_pictures(text)
    )


def test_card_names_the_image_hashes_when_the_sidecar_has_them(model: Path) -> None:
    sidecar = json.loads(model.with_suffix(".json").read_text())
    sidecar["data"]["train"]["images_sha256"] = "ab" * 32
    model.with_suffix(".json").write_text(json.dumps(sidecar))
    assert f"train images `{'ab' * 6}`" in write_card(model).read_text()
