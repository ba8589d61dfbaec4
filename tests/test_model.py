import json
import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from smilebot.anchors import DEFAULT_SPEC, AnchorLevel, AnchorSpec  # noqa: E402
from smilebot.preprocess import InputSpec  # noqa: E402
from smilebot_tools.model import (  # noqa: E402
    FACE_PRIOR,
    ModelConfig,
    build_model,
    describe,
    export_model,
)

# 100 x 70 is not a multiple of any stride: every level's grid is rounded up.
ODD_SPEC = AnchorSpec(
    input_width=100,
    input_height=70,
    levels=(AnchorLevel(16, (24.0, 36.0)), AnchorLevel(32, (60.0,))),
    aspect_ratios=(1.0, 0.75),
)
ODD = ModelConfig(width=0.25, anchors=ODD_SPEC, input=InputSpec(100, 70, 1))


@pytest.fixture(scope="module")
def models():
    return {name: build_model(ModelConfig(backbone=name)) for name in ("mobile", "alexnet")}


def image(config, seed=0):
    inp = config.input
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (1, inp.height, inp.width, inp.channels)).astype(np.float32)


@pytest.mark.parametrize("name", ["mobile", "alexnet"])
def test_default_outputs_and_level_grids(models, name):
    model = models[name]
    out = model(image(ModelConfig()))
    assert tuple(out["logits"].shape) == (1, 1170, 2)
    assert tuple(out["boxes"].shape) == (1, 1170, 4)
    for i, level in enumerate(DEFAULT_SPEC.levels):
        k = DEFAULT_SPEC.anchors_per_cell(level)
        conv = model.get_layer(f"logits_{i}_conv").output
        assert tuple(conv.shape[1:]) == (*DEFAULT_SPEC.grid(level), k * 2)


@pytest.mark.parametrize(
    "name, low, high", [("mobile", 100_000, 200_000), ("alexnet", 100_000, 250_000)]
)
def test_size_in_budget(models, name, low, high):
    figures = describe(models[name])
    assert low <= figures["params"] <= high
    assert 5e6 <= figures["macs"] <= 80e6


def test_describe_counts_macs_from_shapes():
    x = keras.Input((8, 8, 1))
    y = keras.layers.Conv2D(4, 3, padding="same")(x)  # 8*8 * 3*3*1 * 4 = 2304
    y = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(y)  # 4*4 * 3*3 * 4 = 576
    y = keras.layers.Dense(5)(keras.layers.Flatten()(y))  # 64 * 5 = 320
    figures = describe(keras.Model(x, y))
    assert figures == {"macs": 2304 + 576 + 320, "params": (9 * 4 + 4) + (9 * 4 + 4) + (64 * 5 + 5)}


def test_face_bias_starts_at_the_prior(models):
    bias = models["mobile"].get_layer("logits_2_conv").bias.numpy()  # 3 anchors x 2 scores
    prior = math.log(FACE_PRIOR / (1 - FACE_PRIOR))
    assert bias == pytest.approx([prior, 0, prior, 0, prior, 0])


def test_rows_follow_level_row_col_anchor_order():
    model = build_model(ODD)
    heads = [model.get_layer(f"boxes_{i}_conv").output for i in range(2)]
    probe = keras.Model(model.input, [model.output["boxes"], *heads])
    boxes, *maps = probe(image(ODD))
    offset = 0
    for level, head in zip(ODD_SPEC.levels, maps, strict=True):
        rows, cols = ODD_SPEC.grid(level)
        k = ODD_SPEC.anchors_per_cell(level)
        assert tuple(head.shape[1:3]) == (rows, cols)
        r, c, a = rows - 1, 1, k - 1  # any cell and anchor
        row = offset + (r * cols + c) * k + a
        np.testing.assert_array_equal(boxes[0, row], head[0, r, c, a * 4 : (a + 1) * 4])
        offset += rows * cols * k
    assert boxes.shape[1] == offset == ODD_SPEC.num_anchors


def test_non_default_spec_and_quality_head_build_and_export():
    config = ModelConfig(
        backbone="alexnet",
        width=0.25,
        anchors=ODD_SPEC,
        input=InputSpec(100, 70, 1),
        quality_head=True,
    )
    model = build_model(config)
    exported = export_model(model, config)
    out = exported(image(config))
    assert tuple(out["scores"].shape) == (1, ODD_SPEC.num_anchors, 3)
    assert config.score_names == ("face", "smile", "quality")


def test_export_scores_are_sigmoid_of_logits(models):
    config = ModelConfig()
    x = image(config, seed=3)
    exported = export_model(models["mobile"], config)
    assert exported.input.shape[0] == 1
    out, train = exported(x), models["mobile"](x)
    scores = np.asarray(out["scores"])
    assert scores.shape == (1, 1170, 2) and scores.min() >= 0 and scores.max() <= 1
    np.testing.assert_allclose(scores, tf.sigmoid(train["logits"]).numpy(), atol=1e-6)
    np.testing.assert_allclose(out["boxes"], train["boxes"], atol=1e-6)


def test_mismatched_spec_raises_clearly():
    with pytest.raises(ValueError, match=r"stride-8 feature map is 15 x 20 .* wants 18 x 24"):
        build_model(ModelConfig(width=0.25, input=InputSpec(160, 120, 1)))
    # 190 x 140 gives the same grids as 192 x 144, but the anchors would be misplaced.
    with pytest.raises(ValueError, match="anchor spec is for a 192 x 144 input"):
        build_model(ModelConfig(width=0.25, input=InputSpec(190, 140, 1)))
    twelve = AnchorSpec(192, 144, (AnchorLevel(12, (20.0,)),))
    with pytest.raises(ValueError, match="power of two"):
        build_model(ModelConfig(width=0.25, anchors=twelve))


def test_config_json_round_trip_and_validation():
    assert ModelConfig.from_dict(json.loads(json.dumps(ODD.to_dict()))) == ODD
    assert ModelConfig.from_dict({}) == ModelConfig()
    with pytest.raises(ValueError, match="unknown key 'depth'"):
        ModelConfig.from_dict({"depth": 3})
    with pytest.raises(ValueError, match="backbone"):
        ModelConfig(backbone="resnet")


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
def test_mobile_converts_to_full_int8_tflite_under_300_kb(models):
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    config = ModelConfig()
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(3):
            yield [rng.integers(0, 256, (1, 144, 192, 1)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(export_model(models["mobile"], config))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    blob = converter.convert()
    assert len(blob) < 300_000
    interpreter = litert.Interpreter(model_content=blob)
    runner = interpreter.get_signature_runner()
    out = runner(image=rng.integers(0, 256, (1, 144, 192, 1), dtype=np.uint8))
    assert out["scores"].shape == (1, 1170, 2) and out["scores"].dtype == np.uint8
    assert out["boxes"].shape == (1, 1170, 4) and out["boxes"].dtype == np.uint8
