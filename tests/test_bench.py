"""Tests of the benchmarks: ``smilebot bench`` (runtimes, trained vs random, ``--json``),
the figures of a :class:`smilebot.bench.Report`, the desktop run's summary, and the
random-weights model (``smilebot-tools convert --random-weights``; needs TensorFlow).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from smilebot.bench import RANDOM, TRAINED, EndToEnd, OpsRate, Report, Summary
from smilebot.cli import main
from smilebot.detector import Detector
from smilebot.opcount import macs
from smilebot.provenance import git_commit
from smilebot.runtime import available_runtimes, load_interpreter
from tests.daemon_parts import MODEL

pytest.importorskip("cv2")


def _model_pair(folder: Path) -> Path:
    """The shipped model in ``folder`` with a copy of it as its ``-random`` partner."""
    for stem in ("smilebot", "smilebot-random"):
        for suffix in (".tflite", ".json"):
            shutil.copyfile(MODEL.with_suffix(suffix), folder / f"{stem}{suffix}")
    return folder / "smilebot.tflite"


def test_report_figures_are_named_valued_and_united():
    s = Summary(median=2.0, p95=3.0)
    report = Report(
        stages={"tflite-runtime": {2: {"invoke": s}}},
        end_to_end=EndToEnd(3, 3, s, {"grab": s}, Summary(5.0, 6.0), 80.0, 81.5),
        ops={"tflite-runtime": {TRAINED: OpsRate(100, Summary(1.0, 1.0)), RANDOM: OpsRate(100, s)}},
    )
    figures = {f["name"]: (f["value"], f["unit"]) for f in report.figures("dev")}
    assert figures["dev.stages.tflite-runtime.2_threads.invoke.median"] == (2.0, "ms")
    assert figures["dev.stages.tflite-runtime.2_threads.invoke.p95"] == (3.0, "ms")
    assert figures["dev.e2e.capture_write.p95"] == (6.0, "ms")
    assert figures["dev.e2e.split.grab.median"] == (2.0, "ms")
    assert figures["dev.rss.after_presses"] == (81.5, "MiB")
    assert figures["dev.ops.tflite-runtime.trained.ops_per_s"] == (2e5, "op/s")  # 2*100 / 1 ms
    assert figures["dev.ops.tflite-runtime.random.ops_per_s"] == (1e5, "op/s")
    assert figures["dev.ops.tflite-runtime.trained_over_random"] == (2.0, "x")
    assert figures["dev.ops.tflite-runtime.random.macs"] == (100.0, "MAC")
    assert len(figures) == len(report.figures("dev"))  # no name twice


def test_bench_json_writes_records_with_commit_and_machine(tmp_path, capsys):
    model = _model_pair(tmp_path)
    out = tmp_path / "device.json"
    argv = ["bench", "--model", str(model), "-n", "2", "--threads", "1", "--presses", "2"]
    assert main([*argv, "--compare-random", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "trained/random ops/s" in printed and f"wrote {out}" not in printed
    figures = json.loads(out.read_text())["figures"]
    assert f"wrote {len(figures)} figures to {out}" in printed
    runtimes = available_runtimes()
    names = {f["name"] for f in figures}
    for runtime in runtimes:
        assert f"device.stages.{runtime}.1_threads.invoke.median" in names
        assert f"device.ops.{runtime}.trained_over_random" in names
    assert "device.e2e.press_to_led.p95" in names and "device.rss.after_presses" in names
    for f in figures:
        assert set(f) == {"name", "value", "unit", "commit", "machine"}, f
        assert np.isfinite(f["value"]) and f["commit"] == git_commit()
        assert f["machine"]["cores"] >= 1
    by_name = {f["name"]: f["value"] for f in figures}
    assert by_name[f"device.ops.{runtimes[0]}.trained.macs"] == 23_027_328


def test_bench_compare_random_without_the_model_says_how_to_make_it(tmp_path, capsys):
    model = tmp_path / "smilebot.tflite"
    shutil.copyfile(MODEL, model)
    assert main(["bench", "--model", str(model), "--presses", "0", "--compare-random"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'smilebot-random.tflite'}: no such model" in err
    assert "smilebot-tools convert --random-weights" in err


def test_bench_with_a_runtime_that_is_not_installed(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    argv = ["bench", "-n", "1", "--threads", "1", "--presses", "0", "--runtime", "tflite-runtime"]
    assert main(argv) == 2
    assert "pip install tflite-runtime" in capsys.readouterr().err


def test_the_summary_computes_its_ratios():
    from smilebot_tools.bench import summary

    stage = "device.stages.{}.{}_threads.invoke.median"
    figures = [
        {"name": stage.format(r, t), "value": v * t, "unit": "ms"}
        for r, v in (("ai-edge-litert", 0.5), ("tflite-runtime", 13.0))
        for t in (1, 2, 4)
    ]
    figures.append({"name": "balance.wait_ms", "value": 12.0, "unit": "ms"})
    lines = summary(figures).splitlines()
    assert "26.0x the invoke time at 1 thread" in lines[2]
    assert lines[0].endswith("0.50 / 1.00 / 2.00 ms at 1 / 2 / 4 threads")
    assert len(lines) == 3  # the balance line needs all of its figures


# --- the random-weights model -------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A tiny 'shipped' model's sidecar (only what convert_random reads), its training
    config pointing at four made-up images; the reference model's path."""
    pytest.importorskip("tensorflow")
    import cv2

    from smilebot.anchors import AnchorLevel, AnchorSpec
    from smilebot.preprocess import InputSpec
    from smilebot_tools import manifest
    from smilebot_tools.model import ModelConfig

    root = tmp_path_factory.mktemp("random")
    (root / "manifests").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        cv2.imwrite(str(root / f"{i}.jpg"), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
        rows.append(
            {"image": f"{i}.jpg", "width": 64, "height": 48, "source": "test", "group": str(i)}
            | {"face": 0, "x1": 10, "y1": 10, "x2": 30, "y2": 34, "smile": 1}
            | {"smile_source": "test", "split": "train"}
        )
    manifest.save(manifest.new(rows), root / "manifests" / "train.csv")
    spec = AnchorSpec(64, 48, (AnchorLevel(8, (12.0,)), AnchorLevel(16, (24.0,))))
    model = ModelConfig(width=0.25, anchors=spec, input=InputSpec(64, 48, 1))
    digest = hashlib.sha256((root / "manifests" / "train.csv").read_bytes())
    config = {"data": "elsewhere", "train_manifest": "elsewhere/manifests/train.csv"}
    sidecar = {
        "sha256": "0" * 64,
        "thresholds": {"face": 0.4, "smile": 0.6, "nms_iou": 0.45},
        "training": {"config": config | {"model": model.to_dict()}},
        "data": {"train": {"sha256": digest.hexdigest()}},
    }
    path = root / "tiny.tflite"
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")  # the input is uint8
def test_the_random_model_converts_loads_and_records_its_seed(reference, tmp_path):
    from smilebot_tools.convert import convert_random
    from smilebot_tools.model import ModelConfig, build_model, describe

    data = reference.parent
    out = tmp_path / "tiny-random.tflite"
    sidecar = convert_random(reference, out, calibration=3, seed=7, data=data)
    detector = Detector.load(out)  # its sidecar is valid: sha256, tensors, anchors
    assert detector.thresholds.face == 0.4 and detector.thresholds.smile == 0.6
    assert sidecar["training"]["random_weights"] is True and sidecar["training"]["seed"] == 7
    assert sidecar["data"]["calibration"] | {"sha256": None} == {
        "path": str(data / "manifests" / "train.csv"),
        "sha256": None,
        "images": 3,
        "same_as_reference": True,
    }
    config = json.loads(reference.with_suffix(".json").read_text())["training"]["config"]
    keras_macs = describe(build_model(ModelConfig.from_dict(config["model"])))["macs"]
    assert macs(load_interpreter(out)[0]) == keras_macs > 0

    other = tmp_path / "tiny-random-8.tflite"
    convert_random(reference, other, calibration=3, seed=8, data=data)
    assert out.read_bytes() != other.read_bytes()  # the seed is the weights'


def test_the_random_model_needs_its_calibration_manifest(reference, tmp_path):
    from smilebot_tools.convert import convert_random

    with pytest.raises(OSError, match=r"elsewhere/manifests/train\.csv"):
        convert_random(reference, tmp_path / "r.tflite", calibration=3)
    broken = tmp_path / "broken.tflite"
    broken.with_suffix(".json").write_text('{"training": {}}')
    with pytest.raises(ValueError, match=r"broken\.json: no training config .*'config'"):
        convert_random(broken, tmp_path / "r.tflite", calibration=3)


def test_the_committed_random_model_is_the_shipped_network():
    random_model = MODEL.with_name("smilebot-random.tflite")
    if not random_model.exists():
        pytest.skip("no models/smilebot-random.tflite")
    sidecar = json.loads(random_model.with_suffix(".json").read_text())
    shipped = json.loads(MODEL.with_suffix(".json").read_text())
    assert sidecar["training"]["random_weights"] is True
    assert sidecar["training"]["config"]["model"] == shipped["training"]["config"]["model"]
    assert sidecar["anchors"] == shipped["anchors"] and sidecar["input"] == shipped["input"]
    Detector.load(random_model)
    assert macs(load_interpreter(random_model)[0]) == macs(load_interpreter(MODEL)[0])
