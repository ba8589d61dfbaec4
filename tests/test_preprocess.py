"""Tests of smilebot.preprocess: frame -> model input, and the Letterbox box geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smilebot.preprocess import DEFAULT_INPUT, InputSpec, Letterbox, preprocess

GRAY = InputSpec(192, 144, 1)
RGB = InputSpec(192, 144, 3)


def _random_frame(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# --- InputSpec ---------------------------------------------------------------------------


def test_default_input_is_4_to_3_gray() -> None:
    assert InputSpec(width=192, height=144, channels=1) == DEFAULT_INPUT


def test_input_spec_json_round_trip() -> None:
    spec = InputSpec(160, 120, 3)
    d = json.loads(json.dumps(spec.to_dict()))
    assert d == {"width": 160, "height": 120, "channels": 3}
    assert InputSpec.from_dict(d) == spec


def test_input_spec_accepts_numpy_ints_as_plain_ints() -> None:
    spec = InputSpec(np.int64(64), np.int32(48), np.uint8(1))
    assert spec == InputSpec(64, 48, 1)
    assert all(type(v) is int for v in spec.to_dict().values())


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"width": 0, "height": 144, "channels": 1}, "width.*0"),
        ({"width": 192, "height": -1, "channels": 1}, "height.*-1"),
        ({"width": 192, "height": 144, "channels": 2}, "channels.*2"),
        ({"width": 192.0, "height": 144, "channels": 1}, "width.*192.0"),
        ({"width": 192, "height": 144, "channels": True}, "channels.*True"),
    ],
)
def test_input_spec_rejects_bad_fields(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        InputSpec(**kwargs)


def test_input_spec_from_dict_rejects_unknown_and_missing_keys() -> None:
    with pytest.raises(ValueError, match="'depth'"):
        InputSpec.from_dict({"width": 192, "height": 144, "channels": 1, "depth": 8})
    with pytest.raises(ValueError, match="'channels'"):
        InputSpec.from_dict({"width": 192, "height": 144})


# --- shapes, dtype, determinism ----------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "color"),
    [
        ((120, 160), "rgb"),
        ((120, 160, 1), "rgb"),
        ((120, 160, 3), "rgb"),
        ((120, 160, 3), "bgr"),
        ((120, 160, 4), "rgb"),
        ((120, 160, 4), "bgr"),
        ((480, 640, 3), "bgr"),
        ((37, 301, 3), "rgb"),
    ],
)
@pytest.mark.parametrize("spec", [GRAY, RGB, InputSpec(96, 96, 3)])
def test_output_shape_dtype_and_determinism(
    shape: tuple[int, ...], color: str, spec: InputSpec
) -> None:
    frame = _random_frame(shape)
    out, lb = preprocess(frame, spec, color)
    assert out.shape == (spec.height, spec.width, spec.channels)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous
    assert (lb.src_width, lb.src_height) == (shape[1], shape[0])
    assert (lb.input_width, lb.input_height) == (spec.width, spec.height)
    again, lb_again = preprocess(frame.copy(), spec, color)
    assert again.tobytes() == out.tobytes()
    assert lb_again == lb


def test_default_spec_is_used() -> None:
    out, _ = preprocess(_random_frame((48, 64, 3)))
    assert out.shape == (144, 192, 1)


def test_frame_is_not_modified() -> None:
    frame = _random_frame((100, 130, 4))
    before = frame.copy()
    preprocess(frame, RGB, "bgr")
    np.testing.assert_array_equal(frame, before)


def test_gray_shapes_agree_and_gray_is_replicated_to_rgb() -> None:
    gray = _random_frame((90, 200))
    out2d, _ = preprocess(gray, GRAY)
    out3d, _ = preprocess(gray[:, :, None], GRAY)
    np.testing.assert_array_equal(out2d, out3d)
    rgb, _ = preprocess(gray, RGB)
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], out2d[:, :, 0])


def test_alpha_is_dropped() -> None:
    rgb = _random_frame((75, 110, 3), seed=1)
    alpha = _random_frame((75, 110, 1), seed=2)
    rgba = np.concatenate([rgb, alpha], axis=2)
    for spec in (GRAY, RGB):
        for color in ("rgb", "bgr"):
            np.testing.assert_array_equal(
                preprocess(rgba, spec, color)[0], preprocess(rgb, spec, color)[0]
            )


def test_strided_frame_equals_its_contiguous_copy() -> None:
    # Like a camera buffer whose rows are padded to a stride wider than the image.
    padded = _random_frame((120, 176, 3))
    view = padded[:, :160]
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(
        preprocess(view, GRAY, "bgr")[0], preprocess(view.copy(), GRAY, "bgr")[0]
    )


# --- colour ------------------------------------------------------------------------------


def test_red_as_rgb_vs_bgr_gives_bt601_luma() -> None:
    red = np.zeros((144, 192, 3), dtype=np.uint8)
    red[:, :, 0] = 255
    as_rgb, _ = preprocess(red, GRAY, "rgb")  # red: 0.299 * 255 = 76.2
    as_bgr, _ = preprocess(red, GRAY, "bgr")  # channel 0 read as blue: 0.114 * 255 = 29.1
    assert np.all(as_rgb == 76)
    assert np.all(as_bgr == 29)


def test_green_luma_and_white_stays_white() -> None:
    green = np.zeros((30, 40, 3), dtype=np.uint8)
    green[:, :, 1] = 255
    white = np.full((30, 40, 3), 255, dtype=np.uint8)
    spec = InputSpec(40, 30, 1)
    assert np.all(preprocess(green, spec)[0] == 150)  # 0.587 * 255 = 149.7
    assert np.all(preprocess(white, spec)[0] == 255)


def test_bgr_frame_comes_out_in_rgb_order() -> None:
    bgr = np.zeros((60, 80, 3), dtype=np.uint8)
    bgr[:, :] = (10, 20, 30)  # B, G, R
    out, _ = preprocess(bgr, InputSpec(40, 30, 3), "bgr")
    assert np.all(out == np.array([30, 20, 10], dtype=np.uint8))


# --- letterbox placement -----------------------------------------------------------------


def test_wide_constant_frame_content_and_padding() -> None:
    # 400x100 into 192x144: scale 0.48, content 192x48, pad_y (144 - 48) // 2 = 48.
    frame = np.zeros((100, 400, 3), dtype=np.uint8)
    frame[:, :] = (10, 200, 30)
    out, lb = preprocess(frame, RGB, "rgb")
    assert lb == Letterbox(0.48, 0, 48, 400, 100, 192, 144)
    assert (lb.content_width, lb.content_height) == (192, 48)
    assert np.all(out[48:96] == np.array([10, 200, 30], dtype=np.uint8))
    assert not out[:48].any()
    assert not out[96:].any()


def test_tall_constant_frame_content_and_padding() -> None:
    # 100x400 into 192x144: scale 0.36, content 36x144, pad_x (192 - 36) // 2 = 78.
    frame = np.full((400, 100), 77, dtype=np.uint8)
    out, lb = preprocess(frame, GRAY)
    assert (lb.pad_x, lb.pad_y, lb.content_width, lb.content_height) == (78, 0, 36, 144)
    assert lb.scale == pytest.approx(0.36)
    assert np.all(out[:, 78:114] == 77)
    assert not out[:, :78].any()
    assert not out[:, 114:].any()


def test_constant_frame_survives_upscaling() -> None:
    frame = np.full((50, 70, 3), 201, dtype=np.uint8)
    out, lb = preprocess(frame, RGB)
    # 70x50 into 192x144: scale min(2.743, 2.88) = 2.743, content 192x137, pad_y 3.
    assert (lb.content_width, lb.content_height, lb.pad_x, lb.pad_y) == (192, 137, 0, 3)
    assert np.all(out[3:140] == 201)
    assert not out[:3].any()
    assert not out[140:].any()


def test_fit_matches_preprocess() -> None:
    for shape in [(480, 640, 3), (1080, 1920, 3), (100, 400), (333, 17)]:
        _, lb = preprocess(_random_frame(shape), GRAY)
        assert Letterbox.fit(shape[1], shape[0], GRAY) == lb


def test_fit_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match=r"src_width.*0"):
        Letterbox.fit(0, 480)
    with pytest.raises(ValueError, match=r"src_height.*480\.5"):
        Letterbox.fit(640, 480.5)


# --- resampling --------------------------------------------------------------------------


def test_frame_of_input_size_is_unchanged() -> None:
    frame = _random_frame((144, 192, 3))
    out, lb = preprocess(frame, RGB, "rgb")
    assert lb == Letterbox(1.0, 0, 0, 192, 144, 192, 144)
    np.testing.assert_array_equal(out, frame)
    gray = _random_frame((144, 192))
    np.testing.assert_array_equal(preprocess(gray, GRAY)[0][:, :, 0], gray)


def test_integer_2x_downscale_is_the_block_mean() -> None:
    # 8x6 -> 4x3. Pixel (y, x) = 4 * (8y + x); the 2x2 block at (r, c) holds
    # 4 * (16r + 2c) + {0, 4, 32, 36}, whose mean is 64r + 8c + 18.
    frame = (4 * np.arange(48).reshape(6, 8)).astype(np.uint8)
    expected = np.array([[18, 26, 34, 42], [82, 90, 98, 106], [146, 154, 162, 170]])
    out, lb = preprocess(frame, InputSpec(4, 3, 1))
    assert (lb.scale, lb.pad_x, lb.pad_y) == (0.5, 0, 0)
    np.testing.assert_array_equal(out[:, :, 0], expected)
    # The same pattern per channel (+0, +1, +2) read as BGR comes out reversed.
    bgr = np.stack([frame, frame + 1, frame + 2], axis=2)
    out3, _ = preprocess(bgr, InputSpec(4, 3, 3), "bgr")
    np.testing.assert_array_equal(out3, np.stack([expected + 2, expected + 1, expected], axis=2))


def test_upscale_uses_half_pixel_centres() -> None:
    # 64x48 ramp v(x) = 3x into 192x144 (scale 3). Output pixel i has its centre at
    # source (i + 0.5) / 3, i.e. source index (i + 0.5) / 3 - 0.5 = (i - 1) / 3, so
    # v = i - 1, clamped to the first/last source pixel: 0, 0, 1, 2, ..., 189, 189.
    frame = np.tile((3 * np.arange(64)).astype(np.uint8), (48, 1))
    out, lb = preprocess(frame, GRAY)
    assert (lb.scale, lb.pad_x, lb.pad_y) == (3.0, 0, 0)
    expected = np.clip(np.arange(192) - 1, 0, 189)
    for row in (0, 77, 143):
        np.testing.assert_array_equal(out[row, :, 0], expected)


def test_downscale_samples_the_original_source_geometry() -> None:
    # 501x376 into 192x144: scale 144/376, box filter kx = 2 (the last column is cropped).
    # v(x) = x // 2 has block means j at block centres 2j + 1, i.e. v(x_src) = (x_src - 1) / 2
    # in continuous source coordinates, so output pixel i, centred at source (i + 0.5) / scale,
    # must hold ((i + 0.5) / scale - 1) / 2 (clamped to the last block, 249) up to rounding.
    frame = np.tile((np.arange(501) // 2).astype(np.uint8), (376, 1))
    out, lb = preprocess(frame, GRAY)
    assert (lb.content_width, lb.content_height, lb.pad_x, lb.pad_y) == (192, 144, 0, 0)
    expected = np.clip(((np.arange(192) + 0.5) / lb.scale - 1) / 2, 0, 249)
    assert np.abs(out[60, :, 0] - expected).max() <= 0.5 + 1e-3


def test_bright_square_lands_where_letterbox_says() -> None:
    frame = np.zeros((720, 1280), dtype=np.uint8)
    frame[200:280, 400:480] = 255  # source box (400, 200, 480, 280)
    out, lb = preprocess(frame, GRAY)
    # 1280x720 into 192x144: scale 0.15, content 192x108, pad_y 18.
    assert (lb.scale, lb.pad_x, lb.pad_y) == (pytest.approx(0.15), 0, 18)
    box = lb.to_input(np.array([400, 200, 480, 280], dtype=np.float32))
    box_px = box * np.array([192, 144, 192, 144])
    np.testing.assert_allclose(box_px, [60, 48, 72, 60], atol=1e-4)
    weights = out[:, :, 0].astype(np.float64)
    ys, xs = np.mgrid[0:144, 0:192] + 0.5  # pixel centres, continuous coordinates
    centroid = (np.sum(xs * weights) / weights.sum(), np.sum(ys * weights) / weights.sum())
    assert abs(centroid[0] - 66.0) < 1.0
    assert abs(centroid[1] - 54.0) < 1.0
    assert np.all(out[50:58, 62:70] == 255)  # the square's core is fully bright


def test_large_reduction_factor_does_not_overflow() -> None:
    # 4000x2000 into 192x144: 20x20 blocks, sums up to 400 * 255 (more than uint16 holds).
    frame = np.full((2000, 4000), 255, dtype=np.uint8)
    frame[:, :2000] = 254
    out, lb = preprocess(frame, GRAY)
    assert (lb.content_width, lb.content_height, lb.pad_y) == (192, 96, 24)
    assert np.all(out[24:120, :95] == 254)
    assert np.all(out[24:120, 97:] == 255)


def test_block_filter_smooths_a_fine_pattern() -> None:
    # 1-px stripes (0/255) averaged by the 3x3 box filter of 640 -> 192 stay near mid-grey
    # instead of aliasing into full-contrast bands.
    frame = np.zeros((480, 640), dtype=np.uint8)
    frame[:, ::2] = 255
    out, _ = preprocess(frame, GRAY)
    assert out.min() >= 60 and out.max() <= 200


# --- box geometry ------------------------------------------------------------------------


def test_whole_source_box_maps_to_the_content_rectangle() -> None:
    # 640x360 into 192x144: scale 0.3, content 192x108, pad_y (144 - 108) // 2 = 18.
    lb = Letterbox.fit(640, 360, GRAY)
    assert lb.scale == pytest.approx(0.3)
    assert (lb.pad_x, lb.pad_y, lb.content_width, lb.content_height) == (0, 18, 192, 108)
    whole = lb.to_input(np.array([0, 0, 640, 360], dtype=np.float32))
    assert whole.dtype == np.float32
    np.testing.assert_allclose(whole, [0, 18 / 144, 1, 126 / 144], atol=1e-6)


def test_letterbox_round_trip() -> None:
    rng = np.random.default_rng(3)
    for width, height in [(640, 360), (640, 480), (301, 37), (100, 400), (80, 60)]:
        lb = Letterbox.fit(width, height, RGB)
        xy1 = rng.uniform(0, 1, (5, 7, 2)) * [width, height]
        xy2 = xy1 + rng.uniform(0, 1, (5, 7, 2)) * ([width, height] - xy1)
        boxes = np.concatenate([xy1, xy2], axis=-1).astype(np.float32)
        back = lb.to_source(lb.to_input(boxes))
        assert back.shape == boxes.shape
        assert back.dtype == np.float32
        np.testing.assert_allclose(back, boxes, atol=1e-4, rtol=0)


def test_to_source_clips_to_the_frame() -> None:
    lb = Letterbox.fit(640, 360, GRAY)
    back = lb.to_source(np.array([[0.0, 0.0, 1.0, 1.0]], dtype=np.float32))
    np.testing.assert_allclose(back, [[0, 0, 640, 360]])


def test_boxes_must_have_four_coordinates() -> None:
    lb = Letterbox.fit(640, 480)
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        lb.to_input(np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        lb.to_source(np.zeros(3, dtype=np.float32))


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "color", "pattern"),
    [
        (np.zeros((10, 10, 3), dtype=np.float32), "rgb", "uint8.*float32"),
        (np.zeros((10, 10, 3), dtype=np.uint16), "rgb", "uint8.*uint16"),
        (np.zeros(100, dtype=np.uint8), "rgb", r"shape \(100,\)"),
        (np.zeros((2, 10, 10, 3), dtype=np.uint8), "rgb", r"shape \(2, 10, 10, 3\)"),
        (np.zeros((0, 10), dtype=np.uint8), "rgb", r"empty.*\(0, 10\)"),
        (np.zeros((10, 0, 3), dtype=np.uint8), "rgb", r"empty.*\(10, 0, 3\)"),
        (np.zeros((10, 10, 5), dtype=np.uint8), "rgb", r"shape \(10, 10, 5\)"),
        (np.zeros((10, 10, 3), dtype=np.uint8), "yuv", "color 'yuv'"),
        (np.zeros((10, 10), dtype=np.uint8), "RGB", "color 'RGB'"),
        ([[0, 1], [2, 3]], "rgb", "numpy array.*list"),
    ],
)
def test_bad_input_raises_value_error(frame: np.ndarray, color: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        preprocess(frame, GRAY, color)
