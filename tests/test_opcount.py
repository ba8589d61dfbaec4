"""Tests of smilebot.opcount: MACs from the interpreter's op and tensor details.

A tiny float model is built with Keras and converted with TensorFlow (skipped without
it); its MACs are counted by hand in ``HAND_MACS``. The shipped model's count is checked
against ``smilebot_tools.model.describe`` of the Keras model its sidecar describes.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from smilebot.bench import OpsRate, Summary
from smilebot.opcount import macs, macs_by_op
from smilebot.runtime import load_interpreter
from tests.daemon_parts import MODEL

# Input [1, 8, 8, 2]:
#   Conv2D(4, 3x3, same)          -> [1, 8, 8, 4]: 8*8*4 * 3*3*2 = 4608
#   Conv2D(6, 3x3, stride 2, same) -> [1, 4, 4, 6]: 4*4*6 * 3*3*4 = 3456
#   DepthwiseConv2D(3x3, valid)   -> [1, 2, 2, 6]: 2*2*6 * 3*3   =  216
#   Reshape                       -> [1, 4, 6]
#   Dense(5) on each of 4 rows    -> [1, 4, 5]:  4 * 5 * 6       =  120
HAND_MACS = {"CONV_2D": 4608 + 3456, "DEPTHWISE_CONV_2D": 216, "FULLY_CONNECTED": 120}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tf = pytest.importorskip("tensorflow")
    keras = tf.keras
    image = keras.Input((8, 8, 2), batch_size=1)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(image)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="valid")(x)
    x = keras.layers.Reshape((4, 6))(x)
    out = keras.layers.Dense(5)(x)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(image, out))
    path = tmp_path_factory.mktemp("opcount") / "tiny.tflite"
    path.write_bytes(converter.convert())
    return path


def test_macs_of_a_tiny_model_are_the_hand_count(tiny):
    interpreter, _ = load_interpreter(tiny)
    by_op = macs_by_op(interpreter)
    assert {name: by_op[name] for name in HAND_MACS} == HAND_MACS
    assert macs(interpreter) == sum(HAND_MACS.values()) == 8400
    assert all(v == 0 for name, v in by_op.items() if name not in HAND_MACS)


def test_the_shipped_model_counts_what_keras_counts():
    pytest.importorskip("tensorflow")
    from smilebot_tools.model import ModelConfig, build_model, describe

    sidecar = json.loads(MODEL.with_suffix(".json").read_text())
    keras_model = build_model(ModelConfig.from_dict(sidecar["training"]["config"]["model"]))
    interpreter, _ = load_interpreter(MODEL)
    assert macs(interpreter) == describe(keras_model)["macs"] == 23_027_328


def test_the_shipped_model_counts_only_convolutions():
    interpreter, _ = load_interpreter(MODEL)
    by_op = macs_by_op(interpreter)
    assert by_op["CONV_2D"] > 0 and by_op["DEPTHWISE_CONV_2D"] > 0
    assert {name for name, v in by_op.items() if v} == {"CONV_2D", "DEPTHWISE_CONV_2D"}
    assert by_op["ADD"] == by_op["LOGISTIC"] == 0  # present, and counted as no MACs


def test_both_runtimes_count_the_same():
    if importlib.util.find_spec("tflite_runtime") is None:
        pytest.skip("tflite-runtime is not installed here")
    counts = {
        macs(load_interpreter(MODEL, runtime=r)[0]) for r in ("ai-edge-litert", "tflite-runtime")
    }
    assert counts == {23_027_328}


def test_ops_per_second_is_two_ops_per_mac_over_the_median_invoke():
    rate = OpsRate(macs=1_000_000, invoke=Summary(median=0.5, p95=9.0))
    assert rate.ops_per_s == pytest.approx(4e9)  # 2 * 1e6 ops / 0.0005 s; the p95 plays no part
