from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from smilebot.boxes import area, pairwise_intersection, pairwise_iou  # noqa: E402
from smilebot_tools.synth import (  # noqa: E402
    FACES24_BOX,
    FaceCrop,
    SynthConfig,
    SynthError,
    compose,
    faces24_crops,
    make_scenes,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCHEMA = [
    "image", "width", "height", "source", "group", "face", "x1", "y1", "x2", "y2",
    "box_source", "ignore", "smile", "smile_source", "split",
]  # fmt: skip
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
# Exact colours: no brightness matching, tint, noise, blur or flip.
PLAIN = SynthConfig(
    width=160, height=120, min_face_width=0.15, max_face_width=0.6,
    match=(0.0, 0.0), tint=0.0, noise=0.0, blur=0.0, flip=0.0, zoom=1.0,
)  # fmt: skip
BOX = (6.0, 8.0, 30.0, 40.0)  # off-centre in a 40x48 crop, so a wrong flip shows


def red_crop(box=BOX, smile=None, source="t", smile_source=""):
    """40x48 (w x h) RGB crop: green margin, the face box solid red."""
    pixels = np.zeros((48, 40, 3), np.uint8)
    pixels[:] = GREEN
    x1, y1, x2, y2 = (int(v) for v in box)
    pixels[y1:y2, x1:x2] = RED
    return FaceCrop(pixels, box, smile, source, smile_source)


def blue_background(h=100, w=200):
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = BLUE
    return image


def test_faces24_box_hand_computed():
    # w = 24/1.25 = 19.2, h = 24/1.18 = 20.339, cy = 12 + 0.11*20.339 = 14.237
    # -> x 12 -/+ 9.6, y 14.237 -/+ 10.169 = 4.068 .. 24.407, clipped to 24.
    np.testing.assert_allclose(FACES24_BOX, (2.4, 4.0678, 21.6, 24.0), atol=1e-4)
    crops = faces24_crops(np.zeros((3, 24, 24), np.uint8))
    assert [c.box for c in crops] == [FACES24_BOX] * 3
    assert [c.smile for c in crops] == [None] * 3
    assert len({c.source for c in crops}) == 3
    with pytest.raises(SynthError, match="faces24"):
        faces24_crops(np.zeros((3, 24, 25), np.uint8))


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_box_lands_on_the_face_colour(flip):
    config = replace(PLAIN, flip=flip)
    for seed in range(6):
        scene = compose(blue_background(), [red_crop()], np.random.default_rng(seed), config)
        assert scene.image.shape == (120, 160, 3) and scene.image.dtype == np.uint8
        (x1, y1, x2, y2) = scene.boxes[0]
        image = scene.image.astype(int)
        red = (image[..., 0] > 127) & (image[..., 1] < 128) & (image[..., 2] < 128)
        ys, xs = np.nonzero(red)
        # Red pixels run from the box's first pixel to its last, within interpolation.
        np.testing.assert_allclose([xs.min(), ys.min()], [x1, y1], atol=1.0)
        np.testing.assert_allclose([xs.max() + 1, ys.max() + 1], [x2, y2], atol=1.0)
        centre = [(x1 + x2) / 2, (y1 + y2) / 2]
        np.testing.assert_allclose([xs.mean() + 0.5, ys.mean() + 0.5], centre, atol=0.5)
        # Sub-pixel: red summed across the box's middle row and column is its width and
        # height, centred on the box (linear interpolation keeps a step edge's position).
        r = image[..., 0] / 255
        row = r[round(centre[1]), max(0, round(x1) - 3) : round(x2) + 3]
        col = r[max(0, round(y1) - 3) : round(y2) + 3, round(centre[0])]
        np.testing.assert_allclose([row.sum(), col.sum()], [x2 - x1, y2 - y1], atol=0.25)
        inner = scene.image[
            round(y1 + (y2 - y1) / 4) : round(y2 - (y2 - y1) / 4),
            round(x1 + (x2 - x1) / 4) : round(x2 - (x2 - x1) / 4),
        ]
        np.testing.assert_allclose(inner.reshape(-1, 3).mean(0), RED, atol=2)


def test_flip_mirrors_the_box_inside_the_crop():
    # The red region is off-centre in the crop (6 px margin left, 10 right). Flipped, the
    # green margin around the returned box is wider on the LEFT; unflipped, on the right.
    for flip, wider in [(0.0, "right"), (1.0, "left")]:
        config = replace(PLAIN, flip=flip, max_face_width=0.3)
        scene = compose(blue_background(), [red_crop()], np.random.default_rng(3), config)
        x1, y1, x2, y2 = scene.boxes[0]
        row = scene.image[round((y1 + y2) / 2)].astype(int)
        green = np.nonzero((row[:, 1] > 127) & (row[:, 0] < 128))[0]
        left = x1 - green[green < x1].min()
        right = green[green > x2].max() + 1 - x2
        assert (left > right + 2) == (wider == "left"), (flip, left, right)


def test_boxes_inside_the_image_and_apart():
    crops = [red_crop(source=str(j)) for j in range(8)]
    for max_iou in (0.0, 0.3):
        config = replace(PLAIN, max_iou=max_iou, max_face_width=0.4)
        counts = []
        for seed in range(5):
            scene = compose(blue_background(), crops, np.random.default_rng(seed), config)
            b = scene.boxes
            assert b.dtype == np.float32 and b.shape[1] == 4
            assert (b[:, :2] >= 0).all() and (b[:, 2] <= 160).all() and (b[:, 3] <= 120).all()
            assert (b[:, 2:] > b[:, :2]).all()
            iou = pairwise_iou(b, b)
            np.fill_diagonal(iou, 0)
            assert iou.max() <= max_iou + 1e-6
            counts.append(len(b))
        assert max(counts) >= 3


def test_deterministic_for_a_seed():
    crops = [red_crop(), FaceCrop(np.full((24, 24), 90, np.uint8), FACES24_BOX)]
    background = np.random.default_rng(0).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    a, b, c = (
        compose(background, crops, np.random.default_rng(s), SynthConfig()) for s in (7, 7, 8)
    )
    assert a.image.tobytes() == b.image.tobytes() and np.array_equal(a.boxes, b.boxes)
    assert a.image.tobytes() != c.image.tobytes()


def test_soft_mask_leaves_crop_corners_background():
    checked = 0
    for seed in range(8):
        scene = compose(blue_background(), [red_crop()], np.random.default_rng(seed), PLAIN)
        x1, y1, x2, _ = scene.boxes[0]
        s = (x2 - x1) / (BOX[2] - BOX[0])  # crop pixels -> image pixels
        cx1, cy1 = x1 - BOX[0] * s, y1 - BOX[1] * s
        n = max(2, round(4 * s))  # a 4x4 crop-pixel square in each corner
        for gx in (cx1, cx1 + 40 * s - n):
            for gy in (cy1, cy1 + 48 * s - n):
                gx, gy = round(gx), round(gy)
                if gx < 0 or gy < 0 or gx + n > 160 or gy + n > 120:
                    continue
                corner = scene.image[gy : gy + n, gx : gx + n].reshape(-1, 3).mean(0)
                assert corner[2] > 200 and corner[1] < 60, corner  # mostly blue background
                checked += 1
    assert checked >= 8


def test_smiles_and_sources_carried_in_order():
    crops = [red_crop(smile=s, source=f"c{j}") for j, s in enumerate([1, 0, None])]
    config = replace(PLAIN, min_face_width=0.1, max_face_width=0.15)
    scene = compose(blue_background(), crops, np.random.default_rng(0), config)
    assert scene.indices == [0, 1, 2]
    assert scene.smiles == [1, 0, None]
    assert scene.sources == ["c0", "c1", "c2"]


def test_bad_inputs_raise():
    with pytest.raises(SynthError, match="max_faces"):
        SynthConfig(min_faces=3, max_faces=2)
    with pytest.raises(SynthError, match="not inside"):
        FaceCrop(np.zeros((24, 24), np.uint8), (0, 0, 25, 24))
    with pytest.raises(SynthError, match="background"):
        compose(np.zeros((9, 9), np.float32), [], np.random.default_rng(0), PLAIN)


def _backgrounds(tmp_path):
    paths = []
    for j, colour in enumerate([BLUE, (40, 120, 60)]):
        path = tmp_path / "bg" / f"bg{j}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), np.full((100, 150, 3), colour[::-1], np.uint8))
        paths.append(path)
    return paths


def test_make_scenes_writes_files_and_rows(tmp_path):
    root = tmp_path / "data"
    crops = [red_crop(smile=j % 2, smile_source="fer@1", source=f"c{j}") for j in range(4)]
    crops.append(red_crop(source="unlabeled"))
    config = replace(PLAIN, min_face_width=0.1, max_faces=3)
    rows = make_scenes(_backgrounds(tmp_path), crops, 4, 5, root / "synth", root, config)
    files = sorted(p.name for p in (root / "synth").iterdir())
    assert files == [f"synth_{i:06d}.jpg" for i in range(4)]
    assert cv2.imread(str(root / "synth" / files[0])).shape == (120, 160, 3)
    assert all(list(r) == SCHEMA for r in rows)
    assert {r["image"] for r in rows} == {f"synth/{f}" for f in files}
    for r in rows:
        assert (r["width"], r["height"], r["source"], r["box_source"]) == (
            160,
            120,
            "synth",
            "synth",
        )
        assert r["group"] in ("background:bg0.png", "background:bg1.png")
        assert r["split"] == "" and r["ignore"] == (r["x2"] - r["x1"] < 20)
        assert 0 <= r["x1"] < r["x2"] <= 160 and 0 <= r["y1"] < r["y2"] <= 120
        assert (r["smile"], r["smile_source"]) in [(0, "fer@1"), (1, "fer@1"), (None, "")]
    for f in files:
        faces = [r["face"] for r in rows if r["image"] == f"synth/{f}"]
        assert faces == list(range(len(faces))) and 1 <= len(faces) <= 3


def test_make_scenes_small_faces_are_ignored_and_empty_scenes_get_one_row(tmp_path):
    crops = [red_crop()]
    small = replace(PLAIN, min_face_width=0.05, max_face_width=0.1)
    rows = make_scenes(_backgrounds(tmp_path), crops, 2, 0, tmp_path / "s", tmp_path, small)
    assert rows and all(r["ignore"] for r in rows)
    none = replace(PLAIN, min_faces=0, max_faces=0)
    rows = make_scenes(_backgrounds(tmp_path), crops, 2, 0, tmp_path / "e", tmp_path, none)
    assert [r["face"] for r in rows] == [None, None]
    assert all(r["x1"] is None and r["box_source"] == "synth" for r in rows)


def test_make_scenes_is_deterministic_and_resumes_without_rewriting(tmp_path):
    backgrounds = _backgrounds(tmp_path)
    crops = [red_crop(smile=1, smile_source="rater:a"), red_crop(source="x")]
    config = replace(PLAIN, flip=0.5, noise=2.0, match=(0.2, 0.8))
    first = make_scenes(backgrounds, crops, 3, 9, tmp_path / "a", tmp_path, config)
    data = [(tmp_path / "a" / f"synth_{i:06d}.jpg").read_bytes() for i in range(3)]
    assert len(set(data)) == 3  # each scene has its own generator
    # Scenes 1..2 alone (as a parallel worker would make them) are the same bytes.
    make_scenes(backgrounds, crops, 2, 9, tmp_path / "b", tmp_path, config, start=1)
    assert [(tmp_path / "b" / f"synth_{i:06d}.jpg").read_bytes() for i in (1, 2)] == data[1:]
    (tmp_path / "a" / "synth_000001.jpg").write_bytes(b"kept")
    again = make_scenes(backgrounds, crops, 3, 9, tmp_path / "a", tmp_path, config, resume=True)
    assert again == first
    assert (tmp_path / "a" / "synth_000001.jpg").read_bytes() == b"kept"
    assert (tmp_path / "a" / "synth_000002.jpg").read_bytes() == data[2]
    assert first[0]["image"] == "a/synth_000000.jpg"
    with pytest.raises(SynthError, match="not inside root"):
        make_scenes(backgrounds, crops, 1, 9, tmp_path / "a", tmp_path / "elsewhere", config)


@pytest.mark.skipif(not SHARED.exists(), reason="shared data cache absent")
def test_real_faces24_on_a_real_background():
    faces = np.load(SHARED / "faces24" / "faces24.npy", mmap_mode="r")
    crops = faces24_crops(np.ascontiguousarray(faces[:50]))
    background = cv2.imread(str(SHARED / "backgrounds" / "plasma_Path.jpg"))[..., ::-1]
    config = SynthConfig()
    for seed in range(3):
        chosen = [crops[j] for j in np.random.default_rng(seed).choice(50, 6, replace=False)]
        scene = compose(background, chosen, np.random.default_rng(seed), config)
        # Same seed, no faces: the same background crop (it is drawn first).
        bare = compose(background, [], np.random.default_rng(seed), config).image.astype(int)
        assert scene.image.shape == (480, 640, 3) and scene.image.dtype == np.uint8
        b = scene.boxes
        assert 1 <= len(b) <= 6
        widths = b[:, 2] - b[:, 0]
        assert (widths >= 640 / 16 - 1).all() and (widths <= 0.7 * 480 + 1).all()
        assert (b[:, :2] >= 0).all() and (b[:, 2] <= 640).all() and (b[:, 3] <= 480).all()
        assert scene.sources == [chosen[j].source for j in scene.indices]
        # A face was pasted where each box is: the box centre differs from the bare scene.
        for box in b:
            (cx, cy), (qw, qh) = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 4
            centre = np.s_[round(cy - qh) : round(cy + qh), round(cx - qw) : round(cx + qw)]
            assert np.abs(scene.image[centre].astype(int) - bare[centre]).mean() > 8


def test_a_later_crop_never_hides_an_earlier_face():
    # An 80x80 crop whose face is only its middle 20x20: wide margins that could cover
    # faces pasted before it. Rebuild each crop's rectangle from its face box.
    pixels = np.zeros((80, 80, 3), np.uint8)
    pixels[:] = GREEN
    pixels[30:50, 30:50] = RED
    crop = FaceCrop(pixels, (30.0, 30.0, 50.0, 50.0))
    config = replace(PLAIN, min_face_width=0.08, max_face_width=0.3)

    def worst_cover(max_cover: float) -> float:
        worst = 0.0
        for seed in range(20):
            scene = compose(blue_background(), [crop] * 6, np.random.default_rng(seed),
                            replace(config, max_cover=max_cover))  # fmt: skip
            scale = (scene.boxes[:, 2] - scene.boxes[:, 0]) / 20
            left_top = scene.boxes[:, :2] - 30 * scale[:, None]
            rects = np.concatenate([left_top, left_top + 80 * scale[:, None]], axis=1)
            for later in range(1, len(rects)):
                earlier = scene.boxes[:later]
                cover = pairwise_intersection(rects[later : later + 1], earlier)[0]
                worst = max(worst, float((cover / area(earlier)).max()))
        return worst

    assert worst_cover(0.05) <= 0.05 + 1e-3
    assert worst_cover(1.0) > 0.2  # without the rule, crops do land on earlier faces
