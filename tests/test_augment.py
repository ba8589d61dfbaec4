from dataclasses import replace

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from smilebot_tools.augment import (  # noqa: E402
    KINDS,
    AugmentConfig,
    Window,
    apply_window,
    augment,
    degrade,
    hflip,
)

GREY = 128
COLOURS = ((255, 0, 0), (0, 0, 255), (0, 255, 0))  # one per painted face
# Three faces away from the edges of a 400x300 frame, off-centre so a bad flip shows.
FACES = np.array([[40, 50, 100, 120], [180, 60, 230, 110], [300, 180, 360, 250]], np.float32)
NO_SKEW = AugmentConfig(**{kind: 0.0 for kind in KINDS})
GEOMETRY = replace(NO_SKEW, flip=0.5, crop=1.0, zoom=(0.3, 2.0), min_face_input=0.0)


def painted(boxes=FACES, h=300, w=400):
    """Grey RGB frame with each box a solid colour of COLOURS."""
    frame = np.full((h, w, 3), GREY, np.uint8)
    for (x1, y1, x2, y2), colour in zip(boxes.astype(int), COLOURS, strict=False):
        frame[y1:y2, x1:x2] = colour
    return frame


def colour_box(frame, colour):
    """Bounding box (x1, y1, x2, y2) of pixels more than half this colour, or None."""
    c = int(np.argmax(colour))
    others = [k for k in range(3) if k != c]
    f = frame.astype(int)
    mask = f[..., c] - f[..., others].max(axis=2) > 127
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_hflip_mirrors_pixels_and_boxes():
    frame, boxes = hflip(painted(), FACES)
    for box, colour in zip(boxes, COLOURS, strict=True):
        np.testing.assert_allclose(colour_box(frame, colour), box, atol=1e-6)
    np.testing.assert_allclose(boxes[0], [300, 50, 360, 120])


@pytest.mark.parametrize("frame_width", [640, None])
def test_boxes_follow_the_painted_faces(frame_width):
    config = replace(GEOMETRY, focus=0.5, frame_width=frame_width)
    ignore = np.zeros(3, bool)
    cut_seen = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        frame, boxes, flags = augment(painted(), FACES, ignore, rng, config)
        if frame_width is not None:
            assert frame.shape[1] == frame_width
        for box, flag, colour in zip(boxes, flags, COLOURS, strict=True):
            seen = colour_box(frame, colour)
            if seen is None:  # cut out entirely: zero area, ignored
                assert flag and (box[2] <= box[0] or box[3] <= box[1])
                continue
            np.testing.assert_allclose(seen, box, atol=1.0, err_msg=f"seed {seed}")
            cut_seen += bool(flag)
    assert cut_seen > 0  # focus crops did cut some faces, and flagged them


def test_crop_keeps_every_face_whole_and_scales_them_alike():
    ignore = np.zeros(3, bool)
    sizes = set()
    for seed in range(40):
        frame, boxes, flags = augment(
            painted(), FACES, ignore, np.random.default_rng(seed), replace(GEOMETRY, focus=0.0)
        )
        assert not flags.any()
        h, w = frame.shape[:2]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        # Whole, not clipped: every box keeps its aspect ratio and all are scaled alike.
        scale = (boxes[:, 2] - boxes[:, 0]) / (FACES[:, 2] - FACES[:, 0])
        np.testing.assert_allclose(scale, scale[0], rtol=1e-5)
        np.testing.assert_allclose((boxes[:, 3] - boxes[:, 1]) / (FACES[:, 3] - FACES[:, 1]),
                                   scale, rtol=0.02)  # fmt: skip
        sizes.add(round(float(scale[0]), 2))
    # 640/400 = 1.6 at 1x; zoomed in at most to the faces' union (320 px wide): 2.0.
    assert min(sizes) < 1.3 and max(sizes) > 1.9


def test_window_cut_and_size_flags():
    config = replace(NO_SKEW, frame_width=None, min_face_input=0.0)
    frame, boxes = painted(), FACES
    ignore = np.zeros(3, bool)
    # x 70..400: face 0 (40..100) is half visible (50%, kept), face 1 and 2 whole.
    _, b, flags, keep = apply_window(frame, boxes, ignore, Window(70, 0, 330, 300), config)
    assert keep.all() and not flags.any()
    np.testing.assert_allclose(b[0], [0, 50, 30, 120])
    # x 80..400: face 0 is 1/3 visible -> ignore, clipped.
    _, b, flags, keep = apply_window(frame, boxes, ignore, Window(80, 0, 320, 300), config)
    assert keep.all() and flags.tolist() == [True, False, False]
    np.testing.assert_allclose(b[0], [0, 50, 20, 120])
    # x 150..400: face 0 gone -> not kept, zero area, ignore.
    _, b, flags, keep = apply_window(frame, boxes, ignore, Window(150, 0, 250, 300), config)
    assert keep.tolist() == [False, True, True] and flags.tolist() == [True, False, False]
    assert b[0, 2] - b[0, 0] == 0
    # Zoom out 6x: faces 50..60 px wide become 4..4.8 input px (x 192/2400) < 6 -> ignore.
    small = replace(config, min_face_input=6.0)
    window = Window(-1000, -750, 2400, 1800, fill=0)
    out, b, flags, keep = apply_window(frame, boxes, ignore, window, small)
    assert out.shape == (1800, 2400, 3) and out[0, 0].tolist() == [0, 0, 0]
    assert keep.all() and flags.all()
    np.testing.assert_allclose(b[0], FACES[0] + [1000, 750, 1000, 750])
    _, _, flags, _ = apply_window(frame, boxes, ignore, window, replace(small, min_face_input=4.5))
    assert flags.tolist() == [False, True, False]  # 4.8, 4.0, 4.8 input px
    # An ignore face stays ignore.
    _, _, flags, _ = apply_window(frame, boxes, np.array([True, False, False]),
                                  Window(0, 0, 400, 300), config)  # fmt: skip
    assert flags.tolist() == [True, False, False]


def test_zoom_out_border_is_edge_or_constant():
    frame = painted()
    frame[:, 0] = (10, 20, 30)
    config = replace(NO_SKEW, frame_width=None)
    edge, *_ = apply_window(frame, FACES, np.zeros(3, bool), Window(-5, 0, 405, 300), config)
    assert (edge[:, :6] == (10, 20, 30)).all()
    grey, *_ = apply_window(frame, FACES, np.zeros(3, bool), Window(-5, 0, 405, 300, 77), config)
    assert (grey[:, :5] == 77).all() and (grey[:, 5] == (10, 20, 30)).all()


def test_augment_is_deterministic_for_a_seed():
    frame, ignore = painted(), np.zeros(3, bool)
    config = replace(AugmentConfig(), **{kind: 1.0 for kind in KINDS})
    a = augment(frame, FACES, ignore, np.random.default_rng(7), config)
    b = augment(frame, FACES, ignore, np.random.default_rng(7), config)
    c = augment(frame, FACES, ignore, np.random.default_rng(8), config)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])
    assert (frame == painted()).all()  # the input is not changed


def test_augment_rows_stay_aligned_and_inputs_checked():
    frame, boxes, flags = augment(painted(), np.zeros((0, 4)), np.zeros(0, bool),
                                  np.random.default_rng(0))  # fmt: skip
    assert boxes.shape == (0, 4) and flags.shape == (0,) and frame.dtype == np.uint8
    with pytest.raises(ValueError, match="ignore"):
        augment(painted(), FACES, np.zeros(2, bool), np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        augment(painted().astype(np.float32), FACES, np.zeros(3, bool), np.random.default_rng(0))
    with pytest.raises(ValueError, match="flip"):
        AugmentConfig(flip=1.5)
    with pytest.raises(ValueError, match="zoom"):
        AugmentConfig(zoom=(2.0, 1.0))


# --- degradations ----------------------------------------------------------------------


def scene(h=240, w=320):
    """A smooth photo-like frame: gradients, a face-ish disc, some edges."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frame = np.stack([40 + 180 * xx / w, 60 + 120 * yy / h, 200 - 150 * xx / w], axis=2)
    cv2.circle(frame, (160, 110), 45, (210, 160, 140), -1)
    cv2.rectangle(frame, (20, 180), (120, 230), (20, 20, 20), -1)
    cv2.line(frame, (200, 30), (300, 200), (250, 250, 250), 3)
    return np.clip(frame, 0, 255).astype(np.uint8)


def high_frequency(frame):
    return float(np.mean(cv2.Laplacian(frame.astype(np.float32), cv2.CV_32F) ** 2))


def deg(kind, s, seed=0, frame=None, **kw):
    return degrade(scene() if frame is None else frame, kind, np.random.default_rng(seed), s, **kw)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "jpeg"])
def test_strength_zero_changes_nothing(kind):
    np.testing.assert_array_equal(deg(kind, 0.0), scene())


def test_low_contrast_flattens_and_crushes_shadows():
    for seed in range(5):
        weak, strong = (deg("low_contrast", s, seed).std() for s in (0.3, 1.0))
        assert strong < 0.8 * scene().std() and strong < weak < scene().std()
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    out = deg("low_contrast", 1.0, frame=ramp)[0, :, 0].astype(int)
    assert (np.diff(out) >= 0).all()  # a tone curve: order kept
    assert len(np.unique(out[:64])) < 24  # shadow detail lost: 64 levels -> few
    assert out.max() - out.min() < 0.7 * 255  # flat


def test_backlight_brightens_background_darkens_face():
    frame = np.full((240, 320, 3), 120, np.uint8)
    face = np.array([[140, 60, 180, 110]], np.float32)
    out = deg("backlight", 1.0, frame=frame, boxes=face).astype(float)
    assert out[70:100, 150:170].mean() < 0.6 * 120  # the face
    assert out[:, :40].mean() > 180 and out[:, -40:].mean() > 180  # the background
    centre = deg("backlight", 1.0, frame=frame).astype(float)  # no boxes: subject in the middle
    assert centre[100:130, 150:170].mean() < 80 < 180 < centre[:, :30].mean()


def test_noise_grows_with_strength_and_brightness():
    frame = np.zeros((200, 200, 3), np.uint8)
    frame[:, :100], frame[:, 100:] = 40, 200
    diffs = [deg("noise", s, frame=frame).astype(float) - frame for s in (0.3, 1.0)]
    assert 2 < diffs[0].std() < diffs[1].std() < 16
    dark, bright = diffs[1][:, :100].std(), diffs[1][:, 100:].std()
    assert bright > 1.2 * dark  # shot noise: more where it is brighter
    assert abs(diffs[1].mean()) < 1


def test_motion_blur_removes_high_frequencies():
    out = deg("motion_blur", 1.0)
    assert high_frequency(out) < 0.5 * high_frequency(scene())
    assert abs(out.astype(float).mean() - scene().mean()) < 2
    assert not np.array_equal(out, deg("motion_blur", 1.0, seed=1))  # random angle


def test_jpeg_differs_but_stays_close():
    out = deg("jpeg", 1.0)
    diff = out.astype(float) - scene()
    assert np.abs(diff).mean() > 0.5
    psnr = 10 * np.log10(255**2 / np.mean(diff**2))
    assert psnr > 25
    assert np.abs(deg("jpeg", 0.0).astype(float) - scene()).mean() < np.abs(diff).mean()


def test_color_cast_tints_grey_keeping_brightness():
    frame = np.full((50, 50, 3), 128, np.uint8)
    spreads = []
    for s in (0.3, 1.0):
        out = deg("color_cast", s, seed=3, frame=frame).astype(float)
        means = out.reshape(-1, 3).mean(axis=0)
        spreads.append(np.ptp(means))
        assert abs(means.mean() - 128) < 8
    assert 3 < spreads[0] < spreads[1]


def test_degrade_checks_its_arguments():
    with pytest.raises(ValueError, match="unknown degradation"):
        deg("fog", 0.5)
    with pytest.raises(ValueError, match="strength"):
        deg("noise", 1.5)
    assert deg("noise", 0.5).shape == scene().shape
