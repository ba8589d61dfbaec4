import numpy as np
import pytest

from smilebot.anchors import DEFAULT_SPEC, AnchorLevel, AnchorSpec

TINY = AnchorSpec(input_width=32, input_height=16, levels=(AnchorLevel(16, (16,)),))


def test_default_count_arithmetic():
    # Stated in the module docstring: 18 x 24 x 2 + 9 x 12 x 2 + 5 x 6 x 3.
    assert DEFAULT_SPEC.level_counts() == [864, 216, 90]
    assert DEFAULT_SPEC.num_anchors == 18 * 24 * 2 + 9 * 12 * 2 + 5 * 6 * 3 == 1170
    assert DEFAULT_SPEC.generate().shape == (1170, 4)
    assert "total 1170" in DEFAULT_SPEC.arithmetic()


def test_grid_rounds_up_like_same_padding():
    assert DEFAULT_SPEC.grid(DEFAULT_SPEC.levels[2]) == (5, 6)  # 144 / 32 = 4.5 -> 5 rows


def test_tiny_spec_hand_computed():
    anchors = TINY.generate()
    assert anchors.dtype == np.float32
    # One row, two columns; centres at (8, 8) and (24, 8) px; 16 x 16 px anchors.
    assert anchors.tolist() == [[0, 0, 0.5, 1], [0.5, 0, 1, 1]]


def test_order_is_level_row_col_scale_ratio():
    spec = AnchorSpec(64, 32, (AnchorLevel(32, (8, 16)),), aspect_ratios=(1.0, 4.0))
    px = spec.generate() * np.array([64, 32, 64, 32], np.float32)
    assert spec.num_anchors == 1 * 2 * 2 * 2
    # Cell (0, 0) centred at (16, 16): scale 8 ratio 1, scale 8 ratio 4 (16 x 4), scale 16 ...
    np.testing.assert_allclose(px[0], [12, 12, 20, 20])
    np.testing.assert_allclose(px[1], [8, 14, 24, 18])
    np.testing.assert_allclose(px[2], [8, 8, 24, 24])
    np.testing.assert_allclose(px[3], [0, 12, 32, 20])
    np.testing.assert_allclose(px[4], [44, 12, 52, 20])  # next column, centre (48, 16)


def test_generation_is_deterministic():
    assert np.array_equal(DEFAULT_SPEC.generate(), DEFAULT_SPEC.generate())


def test_json_round_trip():
    text = DEFAULT_SPEC.to_json()
    assert AnchorSpec.from_json(text) == DEFAULT_SPEC
    assert np.array_equal(AnchorSpec.from_json(text).generate(), DEFAULT_SPEC.generate())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strides": [8]}, "unknown key 'strides'"),
        ({"input_width": 0}, "input_width"),
        ({"levels": []}, "levels"),
        ({"levels": [{"stride": 8, "scales": [12], "ratio": 1}]}, r"levels\[0\]: unknown key"),
        ({"levels": [{"stride": 8, "scales": [-1]}]}, "scales"),
        ({"aspect_ratios": [0]}, "aspect_ratios"),
    ],
)
def test_bad_spec_names_the_key(change, message):
    data = DEFAULT_SPEC.to_dict() | change
    with pytest.raises(ValueError, match=message):
        AnchorSpec.from_dict(data)


def test_missing_key_is_named():
    data = DEFAULT_SPEC.to_dict()
    del data["input_height"]
    with pytest.raises(ValueError, match="missing key 'input_height'"):
        AnchorSpec.from_dict(data)
