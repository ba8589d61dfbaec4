"""A tiny end-to-end run: train a few steps on made-up data, convert to int8, detect."""

import json
from dataclasses import replace

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
cv2 = pytest.importorskip("cv2")

from smilebot.anchors import AnchorLevel, AnchorSpec  # noqa: E402
from smilebot.detector import Detector  # noqa: E402
from smilebot.preprocess import InputSpec  # noqa: E402
from smilebot_tools import convert, manifest, train  # noqa: E402
from smilebot_tools.model import ModelConfig  # noqa: E402

SPEC = AnchorSpec(64, 48, (AnchorLevel(8, (12.0,)), AnchorLevel(16, (24.0, 40.0))))
MODEL = ModelConfig(width=0.5, anchors=SPEC, input=InputSpec(64, 48, 1))


def make_data(root):
    """Six 128x96 images with one bright 'face' square each (two of them 'smiling')."""
    rows = []
    rng = np.random.default_rng(0)
    for i in range(6):
        image = rng.integers(0, 60, (96, 128, 3), dtype=np.uint8)
        x, y, s = 20 + 10 * i, 20, 40
        image[y : y + s, x : x + s] = 220
        cv2.imwrite(str(root / f"{i}.jpg"), image)
        split = "val" if i >= 4 else "train"
        rows.append(
            {"image": f"{i}.jpg", "width": 128, "height": 96, "source": "test", "group": str(i)}
            | {"face": 0, "x1": x, "y1": y, "x2": x + s, "y2": y + s, "smile": int(i % 3 == 0)}
            | {"smile_source": "test", "split": split}
        )
    df = manifest.new(rows)
    manifest.save(df[df["split"] == "train"], root / "train.csv")
    manifest.save(df[df["split"] == "val"], root / "val.csv")


def test_train_convert_detect(tmp_path):
    make_data(tmp_path)
    config = train.TrainConfig(
        data=str(tmp_path),
        train_manifest=str(tmp_path / "train.csv"),
        val_manifest=str(tmp_path / "val.csv"),
        model=MODEL,
        batch_size=2,
        face_steps=2,
        joint_steps=2,
        warmup_steps=1,
        eval_every=4,
        checkpoint_every=2,
        log_every=1,
    )
    run = tmp_path / "run"
    figures = train.train(config, run)
    assert figures["step"] == 4 and figures["faces"]["faces"] == 2
    history = json.loads((run / "history.json").read_text())
    assert [h["stage"] for h in history] == ["joint"]
    balance = json.loads((run / "balance.json").read_text())
    assert {"wait_share", "measured_wait_share", "example_seconds"} <= set(balance)

    # Resuming the finished run trains nothing more; another config is refused.
    assert train.train(config, run)["step"] == 4
    with pytest.raises(ValueError, match="another 'batch_size'"):
        train.train(replace(config, batch_size=3), run)

    model_path = tmp_path / "model" / "tiny.tflite"
    sidecar = convert.convert(run, model_path, calibration=4)
    assert sidecar["input"] == {
        "width": 64,
        "height": 48,
        "channels": 1,
        "dtype": "uint8",
        "scale": 1.0,
        "zero_point": 0,
    }
    assert set(sidecar["metrics"]["parity"]) == {"ap50_drop", "smile_accuracy_drop", "ok"}
    assert len(sidecar["data"]["train"]["sha256"]) == 64
    detector = Detector.load(model_path)
    frame = cv2.imread(str(tmp_path / "0.jpg"))
    detections = detector.detect(frame, color="bgr")
    assert detections.timings.invoke_ms > 0
    for face in detections.faces:
        assert 0 <= face.box[0] < face.box[2] <= 128 and 0 <= face.smile <= 1
