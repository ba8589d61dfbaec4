"""Tests of smilebot.runtime: choosing, forcing and listing the TFLite runtimes.

Fake runtime packages stand in for the real ones (``sys.modules`` entries; ``None`` makes
an import fail), so the choice is tested whatever is installed; the last tests open the
shipped model with each runtime that is really installed.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from smilebot.detector import Detector
from smilebot.runtime import RuntimeMissingError, available_runtimes, load_interpreter
from tests.daemon_parts import MODEL

PACKAGES = {"ai-edge-litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime"}


def _fake(monkeypatch, installed: dict[str, str]) -> list[tuple[str, str, int]]:
    """Make only the runtimes in ``installed`` (pip name -> version) importable, as fakes
    whose ``Interpreter`` records ``(runtime, model_path, num_threads)`` when opened."""
    opened: list[tuple[str, str, int]] = []
    for name, package in PACKAGES.items():
        if name not in installed:
            monkeypatch.setitem(sys.modules, f"{package}.interpreter", None)
            continue

        class Interpreter:
            def __init__(self, model_path: str, num_threads: int, _name: str = name) -> None:
                opened.append((_name, model_path, num_threads))

            def allocate_tensors(self) -> None:
                pass

        root = types.ModuleType(package)
        root.__version__ = installed[name]
        module = types.ModuleType(f"{package}.interpreter")
        module.Interpreter = Interpreter
        monkeypatch.setitem(sys.modules, package, root)
        monkeypatch.setitem(sys.modules, f"{package}.interpreter", module)
    return opened


def test_the_preferred_runtime_is_ai_edge_litert(monkeypatch, tmp_path):
    opened = _fake(monkeypatch, {"ai-edge-litert": "2.3.0", "tflite-runtime": "2.14.0"})
    _, runtime = load_interpreter(tmp_path / "m.tflite", num_threads=2)
    assert str(runtime) == "ai-edge-litert 2.3.0"
    assert opened == [("ai-edge-litert", str(tmp_path / "m.tflite"), 2)]


def test_a_named_runtime_is_used_even_when_the_preferred_one_is_installed(monkeypatch, tmp_path):
    opened = _fake(monkeypatch, {"ai-edge-litert": "2.3.0", "tflite-runtime": "2.14.0"})
    _, runtime = load_interpreter(tmp_path / "m.tflite", 4, runtime="tflite-runtime")
    assert str(runtime) == "tflite-runtime 2.14.0"
    assert opened == [("tflite-runtime", str(tmp_path / "m.tflite"), 4)]


def test_a_named_runtime_that_is_missing_is_not_replaced_by_the_other(monkeypatch, tmp_path):
    opened = _fake(monkeypatch, {"tflite-runtime": "2.14.0"})
    with pytest.raises(RuntimeMissingError) as error:
        load_interpreter(tmp_path / "m.tflite", runtime="ai-edge-litert")
    assert str(error.value) == "runtime ai-edge-litert is not installed: pip install ai-edge-litert"
    assert opened == []


def test_an_unknown_runtime_name_lists_the_known_ones(monkeypatch, tmp_path):
    _fake(monkeypatch, {"ai-edge-litert": "2.3.0"})
    with pytest.raises(RuntimeMissingError, match="'tflite'; choose from ai-edge-litert, tflite"):
        load_interpreter(tmp_path / "m.tflite", runtime="tflite")


@pytest.mark.parametrize(
    ("installed", "listed"),
    [
        (
            {"ai-edge-litert": "2.3.0", "tflite-runtime": "2.14.0"},
            ["ai-edge-litert", "tflite-runtime"],
        ),
        ({"tflite-runtime": "2.14.0"}, ["tflite-runtime"]),
        ({}, []),
    ],
)
def test_available_runtimes_lists_the_importable_ones_in_order(monkeypatch, installed, listed):
    _fake(monkeypatch, installed)
    assert available_runtimes() == listed


def test_detector_load_passes_the_runtime_through(monkeypatch):
    _fake(monkeypatch, {"ai-edge-litert": "2.3.0"})
    with pytest.raises(RuntimeMissingError, match="pip install tflite-runtime"):
        Detector.load(MODEL, runtime="tflite-runtime")


@pytest.mark.parametrize("name", list(PACKAGES))
def test_the_shipped_model_opens_with_each_installed_runtime(name):
    if importlib.util.find_spec(PACKAGES[name]) is None:
        pytest.skip(f"{name} is not installed here")
    detector = Detector.load(MODEL, num_threads=2, runtime=name)
    assert detector.runtime.name == name
    assert name in available_runtimes()
