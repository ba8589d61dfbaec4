import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
cv2 = pytest.importorskip("cv2")

from smilebot.anchors import DEFAULT_SPEC  # noqa: E402
from smilebot.preprocess import InputSpec  # noqa: E402
from smilebot_tools import manifest  # noqa: E402
from smilebot_tools.augment import AugmentConfig  # noqa: E402
from smilebot_tools.pipeline import (  # noqa: E402
    EXAMPLE_KEYS,
    Example,
    ExampleError,
    WaitTimer,
    balance_report,
    epoch_order,
    example_dataset,
    load_example,
    make_dataset,
    predict_wait,
    read_cache,
    records_from_manifest,
    sampling_weights,
    smile_balance,
    write_cache,
)

ANCHORS = DEFAULT_SPEC.generate()
SMALL = AugmentConfig(frame_width=160)  # keep the augmented frames small in tests


def stand_in(gt_boxes, gt_valid, gt_smile, gt_ignore, anchors, coder, high, low):
    """Targets of the right shapes carrying per-image counts: valid and smiling faces."""
    shape = tf.stack([tf.shape(gt_boxes)[0], tf.shape(anchors)[0]])
    valid = tf.reduce_sum(tf.cast(gt_valid, tf.int32), axis=1)
    smiling = tf.reduce_sum(tf.cast(gt_valid & (gt_smile == 1), tf.int32), axis=1)
    return {
        "face": tf.zeros(shape, tf.int32) + valid[:, None],
        "smile": tf.zeros(shape, tf.int32) + smiling[:, None],
        "boxes": tf.zeros(tf.concat([shape, [4]], 0)),
    }


def write_image(path, w, h, boxes=(), colour=(255, 255, 255)):
    """A black RGB image with the boxes filled with ``colour``, saved losslessly (PNG)."""
    rgb = np.zeros((h, w, 3), np.uint8)
    for x1, y1, x2, y2 in boxes:
        rgb[int(y1) : int(y2), int(x1) : int(x2)] = colour
    assert cv2.imwrite(str(path), rgb[..., ::-1])
    return str(path)


def record(path, w, h, boxes=(), smile=None, ignore=None):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return Example(
        path,
        w,
        h,
        boxes,
        np.array(smile if smile is not None else [-1] * n, np.int32),
        np.array(ignore if ignore is not None else [False] * n, bool),
    )


@pytest.fixture
def toy(tmp_path):
    """Five small images with 0..2 faces (box x1 differs per image, so order shows)."""
    out = []
    for i in range(5):
        boxes = [(10 + 4 * i, 20, 50 + 4 * i, 60), (100, 30, 140, 75)][: i % 3]
        path = write_image(tmp_path / f"im{i}.png", 160, 120, boxes)
        out.append(record(path, 160, 120, boxes, smile=[1, 0][: len(boxes)]))
    return out


# --- one example -----------------------------------------------------------------------


def test_load_example_maps_boxes_through_the_letterbox(tmp_path):
    # 400x100 into 192x144: scale min(0.48, 1.44) = 0.48, content 192x48, pad_y = 48.
    face, edge = (100, 20, 140, 60), (380, 50, 401, 90)  # the second pokes out by 1 px
    path = write_image(tmp_path / "wide.png", 400, 100, [face], colour=(255, 0, 0))
    rec = record(path, 400, 100, [face, edge], smile=[1, -1], ignore=[False, True])
    ex = load_example(rec, np.random.default_rng(0), None)
    assert {k: (v.dtype.name, v.shape) for k, v in ex.items()} == {
        "image": ("uint8", (144, 192, 1)),
        "gt_boxes": ("float32", (24, 4)),
        "gt_valid": ("bool", (24,)),
        "gt_smile": ("int32", (24,)),
        "gt_ignore": ("bool", (24,)),
    }
    # x * 0.48 / 192, (y * 0.48 + 48) / 144:
    want = [[0.25, 57.6 / 144, 0.35, 76.8 / 144], [0.95, 0.5, 1.0, 91.2 / 144]]  # x2 clipped
    np.testing.assert_allclose(ex["gt_boxes"][:2], want, atol=1e-6)
    assert not ex["gt_boxes"][2:].any()
    assert ex["gt_valid"].tolist() == [True, True] + [False] * 22
    assert ex["gt_smile"].tolist() == [1, -1] + [-1] * 22
    assert ex["gt_ignore"].tolist() == [False, True] + [False] * 22
    image = ex["image"][..., 0]
    assert (image[:48] == 0).all() and (image[96:] == 0).all()  # letterbox padding
    assert (image[60:75, 50:65] == round(0.299 * 255)).all()  # red face, BT.601 luma
    rgb = load_example(rec, np.random.default_rng(0), None, InputSpec(192, 144, 3))["image"]
    assert rgb[65, 55].tolist() == [255, 0, 0]  # BGR file -> RGB input


def test_load_example_augmented_stays_consistent(toy):
    rec = toy[2]  # two faces
    a = load_example(rec, np.random.default_rng(1), SMALL)
    b = load_example(rec, np.random.default_rng(1), SMALL)
    for key in EXAMPLE_KEYS:
        np.testing.assert_array_equal(a[key], b[key])
    boxes = a["gt_boxes"][a["gt_valid"]]
    assert len(boxes) >= 1 and (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()


def test_load_example_errors_name_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ExampleError, match=r"broken\.jpg"):
        load_example(record(str(bad), 10, 10), np.random.default_rng(0), None)
    path = write_image(tmp_path / "small.png", 40, 30)
    with pytest.raises(ExampleError, match=r"small\.png: decoded 40x30, the manifest says 30x40"):
        load_example(record(path, 30, 40), np.random.default_rng(0), None)
    many = record(path, 40, 30, [(0, 0, 5, 5)] * 3)
    with pytest.raises(ExampleError, match="3 faces, more than max_faces=2"):
        load_example(many, np.random.default_rng(0), None, max_faces=2)


def test_records_from_manifest(tmp_path):
    base = {"width": 160, "height": 120, "source": "t", "group": "g"}
    df = manifest.new(
        [
            {**base, "image": "a.png", "face": 0, "x1": 1, "y1": 2, "x2": 30, "y2": 40, "smile": 1},
            {**base, "image": "a.png", "face": 1, "x1": 50, "y1": 2, "x2": 80, "y2": 40,
             "ignore": True},
            {**base, "image": "b.png"},
            {**base, "image": "c.png", "face": 0},  # box unknown: the image is left out
        ]
    )  # fmt: skip
    records = records_from_manifest(df, tmp_path)
    assert [r.path for r in records] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    a, b = records
    np.testing.assert_array_equal(a.boxes, [[1, 2, 30, 40], [50, 2, 80, 40]])
    assert a.smile.tolist() == [1, -1] and a.ignore.tolist() == [False, True]
    assert (a.width, a.height) == (160, 120)
    assert b.boxes.shape == (0, 4) and b.smile.shape == (0,)


# --- datasets --------------------------------------------------------------------------


def batches(ds):
    return [(image.numpy(), {k: v.numpy() for k, v in t.items()}) for image, t in ds]


def test_eval_dataset_is_the_examples_in_order(toy):
    ds = make_dataset(toy, 2, seed=0, train=False, target_fn=stand_in, anchors=ANCHORS)
    out = batches(ds)
    assert [image.shape for image, _ in out] == [(2, 144, 192, 1)] * 2 + [(1, 144, 192, 1)]
    images = np.concatenate([image for image, _ in out])
    assert images.dtype == np.float32
    for i, rec in enumerate(toy):
        ex = load_example(rec, np.random.default_rng(0), None)
        np.testing.assert_array_equal(images[i], ex["image"].astype(np.float32))
    faces = np.concatenate([t["face"][:, 0] for _, t in out])
    assert faces.tolist() == [0, 1, 2, 0, 1]
    assert out[0][1]["face"].shape == (2, len(ANCHORS))


def test_train_dataset_is_reproducible_and_changes_per_epoch(toy):
    def run(seed):
        ds = make_dataset(toy, 2, seed, True, stand_in, ANCHORS, augment_config=SMALL, epochs=2)
        return batches(ds)

    a, b, c = run(3), run(3), run(4)
    assert len(a) == 5  # 2 epochs of 5 draws in one stream: 10 draws, batches of 2
    assert all(image.shape == (2, 144, 192, 1) for image, _ in a)
    for (ia, ta), (ib, tb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ta["face"], tb["face"])
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c, strict=True))
    images = np.concatenate([image for image, _ in a])
    assert not np.array_equal(images[:5], images[5:])  # epoch 1 is not epoch 0 again


def test_train_dataset_samples_smiles_up(tmp_path):
    # One image with a smiling face, ten with a non-smiling one: weights 10 vs 1.
    path = write_image(tmp_path / "one.png", 32, 24, [(4, 4, 20, 20)])
    toy = [record(path, 32, 24, [(4, 4, 20, 20)], smile=[1])]
    toy += [record(path, 32, 24, [(4, 4, 20, 20)], smile=[0]) for _ in range(10)]
    assert sampling_weights(toy).tolist() == [10.0] + [1.0] * 10
    ds = make_dataset(toy, 11, 0, True, stand_in, ANCHORS, augment_config=None, epochs=4)
    smiles = sum(int(t["smile"][:, 0].sum()) for _, t in batches(ds))
    assert smiles > 12  # ~22 of 44 draws expected; 4 without the weights


def test_make_dataset_with_the_real_targets(toy):
    features = pytest.importorskip("smilebot_tools.features")
    ds = make_dataset(toy[:3], 3, 0, False, features.targets_tf, ANCHORS)
    image, targets = next(iter(ds))
    want = features.targets_numpy(
        *(np.stack([load_example(r, None, None)[k] for r in toy[:3]]) for k in EXAMPLE_KEYS[1:]),
        ANCHORS,
    )
    assert image.shape == (3, 144, 192, 1)
    for key, value in want.items():
        np.testing.assert_allclose(targets[key].numpy(), value, atol=1e-6, err_msg=key)
    positives = (targets["face"].numpy() == 1).sum(axis=1)
    assert positives[0] == 0 and positives[1] >= 1 and positives[2] >= 2


def test_dataset_errors_name_the_file(tmp_path, toy):
    bad = tmp_path / "gone.png"
    ds = example_dataset([*toy, record(str(bad), 160, 120)], 0, train=False)
    with pytest.raises(tf.errors.OpError, match=r"gone\.png"):
        list(ds)
    with pytest.raises(ExampleError, match="max_faces=1"):
        example_dataset(toy, 0, train=False, max_faces=1)


# --- balancing -------------------------------------------------------------------------


def test_sampling_weights_balance_a_toy_set(tmp_path):
    path = str(tmp_path / "x.png")
    toy = [
        record(path, 9, 9, [(0, 0, 1, 1)] * 2, smile=[1, 1]),  # S 2, N 0: weight r
        record(path, 9, 9, [(0, 0, 1, 1)] * 3, smile=[0, 0, 0]),  # S 0, N 3
        record(path, 9, 9, [(0, 0, 1, 1)] * 2, smile=[1, 0]),  # neutral
        record(path, 9, 9, [(0, 0, 1, 1)] * 2, smile=[0, 1], ignore=[False, True]),  # N 1
        record(path, 9, 9),  # no face
    ]
    w = sampling_weights(toy)
    np.testing.assert_allclose(w, [2, 1, 1, 1, 1])  # r = (3 + 1) / 2
    before, after = smile_balance(toy), smile_balance(toy, w)
    assert before["ratio"] == 3 / 5
    np.testing.assert_allclose(after["ratio"], 1.0)
    np.testing.assert_allclose(sampling_weights(toy, cap=1.5), [1.5, 1, 1, 1, 1])
    assert sampling_weights(toy[1:]).tolist() == [1.0] * 4  # nothing to up-weight


def test_epoch_order_follows_the_weights_and_the_seed():
    w = np.array([2.0, 1.0, 1.0, 0.0])
    draws = np.concatenate([epoch_order(4, w, 0, e) for e in range(500)])
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / len(draws),
                               [0.5, 0.25, 0.25, 0], atol=0.03)  # fmt: skip
    np.testing.assert_array_equal(epoch_order(4, w, 0, 1), epoch_order(4, w, 0, 1))
    assert sorted(epoch_order(6, None, 0, 0).tolist()) == list(range(6))
    assert len({tuple(epoch_order(6, None, 0, e)) for e in range(5)}) > 1


# --- input vs compute ------------------------------------------------------------------


def test_predict_wait_is_the_equation():
    r = predict_wait(0.02, 32, 2, 0.25)
    assert r["batch_seconds"] == pytest.approx(0.32)  # 32 * 0.02 / 2
    assert r["wait_seconds"] == pytest.approx(0.07)  # 0.32 - 0.25
    assert r["wait_share"] == pytest.approx(0.07 / 0.32)
    assert r["cores_needed"] == 3  # ceil(32 * 0.02 / 0.25) = ceil(2.56)
    fast = predict_wait(0.01, 32, 2, 0.25)
    assert fast["wait_seconds"] == 0 and fast["wait_share"] == 0
    with pytest.raises(ValueError):
        predict_wait(0.01, 32, 0, 0.25)


def test_balance_report_times_a_stand_in(toy):
    calls = []

    def slow(record, rng, config, spec):
        calls.append(record)
        time.sleep(0.004)

    r = balance_report(toy, 32, 2, 0.05, n=4, load=slow)
    assert r["n"] == 4 and len(calls) == 4 and len({id(c) for c in calls}) == 4
    assert 0.004 <= r["example_seconds"] < 0.05
    want = predict_wait(r["example_seconds"], 32, 2, 0.05)
    assert {k: r[k] for k in want} == want
    assert r["wait_share"] > 0  # 32 * >=4 ms / 2 = >=64 ms > 50 ms
    assert r["example_cpu_seconds"] < 0.004  # sleeping is not computing


def test_wait_timer_measures_time_in_next():
    def slow():
        for i in range(3):
            time.sleep(0.01)
            yield i

    timer = WaitTimer(slow())
    assert list(timer) == [0, 1, 2]
    assert timer.count == 3 and 0.03 <= timer.seconds < 0.5
    with WaitTimer(slow()) as timer:
        assert next(timer) == 0
    assert list(timer) == [] and timer.count == 1  # closed: the iterator is dropped


# --- cache -----------------------------------------------------------------------------


def test_cache_round_trip(tmp_path, toy):
    folder = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match=r"cache\.json"):
        read_cache(folder)
    assert write_cache(example_dataset(toy, 0, train=False), folder, shards=2) == 5
    assert len(list(folder.glob("*.tfrecord"))) == 2
    back = list(read_cache(folder).as_numpy_iterator())
    assert len(back) == 5
    for rec, got in zip(toy, back, strict=True):
        want = load_example(rec, None, None)
        for key in EXAMPLE_KEYS:
            assert got[key].dtype == want[key].dtype, key
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
