import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from smilebot.anchors import DEFAULT_SPEC, AnchorLevel, AnchorSpec  # noqa: E402
from smilebot.box_coder import BoxCoder  # noqa: E402
from smilebot.matching import BETWEEN_THRESHOLDS, match  # noqa: E402
from smilebot_tools.features import (  # noqa: E402
    TARGET_KEYS,
    match_tf,
    targets_numpy,
    targets_tf,
)

ANCHORS = DEFAULT_SPEC.generate()
TINY = AnchorSpec(input_width=32, input_height=16, levels=(AnchorLevel(16, (16,)),))
TINY_ANCHORS = TINY.generate()  # [[0, 0, 0.5, 1], [0.5, 0, 1, 1]]


def random_batch(rng, batch, max_faces):
    """Faces of 2% to 90% of the input, some off the edge, some degenerate, some duplicated
    (ties between faces), random smile labels and ignore flags; padded to max_faces."""
    centre = rng.uniform(-0.05, 1.05, (batch, max_faces, 2))
    size = np.exp(rng.uniform(np.log(0.02), np.log(0.9), (batch, max_faces, 1)))
    size = size * rng.uniform(0.7, 1.4, (batch, max_faces, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], -1).astype(np.float32)
    flat = boxes.reshape(-1, 4)
    odd = rng.uniform(size=len(flat))
    flat[odd < 0.05, 2] = flat[odd < 0.05, 0]  # zero width
    flipped = (odd >= 0.05) & (odd < 0.08)
    flat[np.ix_(flipped, [1, 3])] = flat[np.ix_(flipped, [3, 1])]  # y2 < y1
    if max_faces > 1:
        twins = rng.uniform(size=batch) < 0.3
        boxes[twins, 1] = boxes[twins, 0]
    valid = rng.uniform(size=(batch, max_faces)) < rng.uniform(0.1, 1.0, (batch, 1))
    smile = rng.integers(-1, 2, (batch, max_faces)).astype(np.int32)
    ignore = rng.uniform(size=(batch, max_faces)) < 0.15
    return boxes, valid, smile, ignore


def traced(signature, high, low):
    def targets(boxes, valid, smile, ignore):
        return targets_tf(boxes, valid, smile, ignore, ANCHORS, high=high, low=low)

    return tf.function(targets, input_signature=signature)


def assert_targets_equal(got, want):
    assert set(got) == set(TARGET_KEYS) == set(want)
    for key in ("face", "smile", "iou"):
        assert got[key].dtype == want[key].dtype
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    # tx, ty are exact; tw, th go through log, which differs by an ulp or so between
    # TensorFlow's and NumPy's float32 implementations.
    assert got["boxes"].dtype == np.float32
    np.testing.assert_array_equal(got["boxes"][..., :2], want["boxes"][..., :2])
    np.testing.assert_allclose(got["boxes"], want["boxes"], rtol=1e-6, atol=1e-6)


def test_parity_with_numpy_reference_on_random_batches():
    rng = np.random.default_rng(7)
    signature = [
        tf.TensorSpec([None, None, 4], tf.float32),
        tf.TensorSpec([None, None], tf.bool),
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, None], tf.bool),
    ]
    functions = {}
    counts = np.zeros(3, int)
    forced_below = smile_known = 0
    for case in range(25):  # 25 batches x 8 images = 200 images
        batch = random_batch(rng, 8, int(rng.integers(0, 11)))
        high, low = (0.5, 0.4) if case % 3 else sorted(rng.choice([0.3, 0.4, 0.5, 0.6], 2))[::-1]
        if (high, low) not in functions:
            functions[high, low] = traced(signature, high, low)
        got = {k: v.numpy() for k, v in functions[high, low](*batch).items()}
        want = targets_numpy(*batch, ANCHORS, high=high, low=low)
        assert_targets_equal(got, want)
        indices, iou = match_tf(batch[0], batch[1], ANCHORS, high=high, low=low)
        reference = match(batch[0], batch[1], ANCHORS, high=high, low=low)
        np.testing.assert_array_equal(indices.numpy(), reference.indices)
        np.testing.assert_array_equal(iou.numpy(), reference.iou)
        counts += [(want["face"] == v).sum() for v in (1, 0, -1)]
        forced_below += ((want["face"] == 1) & (want["iou"] < high)).sum()
        smile_known += (want["smile"] >= 0).sum()
    assert len(functions) > 1  # several threshold pairs
    assert counts.min() > 100 and forced_below > 0 and smile_known > 100  # every rule is hit


def test_hand_computed_tiny_spec():
    pad = [0, 0, 0, 0]
    boxes = np.array(
        [
            [[0.25, 0, 0.75, 1], pad],  # IoU 1/3 with both: forced onto anchor 0
            [[0, 0, 0.5, 1], [0.55, 0.1, 0.95, 0.9]],  # ignore face on a0, IoU 0.64 on a1
            [[0.6, 0, 1, 1], [0.5, 0, 1, 1]],  # both force a1: face 0 (IoU 0.8) wins it
            [[0, 0, 0.5, 1], [0.1, 0, 0.9, 1]],  # a0 taken; a1 4/9 is between thresholds
            [[0, 0, 0.5, 1], [0.5, 0, 1, 1]],  # padding rows only
        ],
        np.float32,
    )
    valid = np.array([[1, 0], [1, 1], [1, 1], [1, 1], [0, 0]], bool)
    smile = np.array([[-1, 1], [1, 0], [1, 0], [1, -1], [1, 1]], np.int32)
    ignore = np.array([[0, 0], [1, 0], [0, 0], [0, 0], [0, 0]], bool)
    got = {k: v.numpy() for k, v in targets_tf(boxes, valid, smile, ignore, TINY_ANCHORS).items()}
    assert got["face"].tolist() == [[1, 0], [-1, 1], [0, 1], [1, -1], [0, 0]]
    assert got["smile"].tolist() == [[-1, -1], [-1, 0], [-1, 1], [1, -1], [-1, -1]]
    np.testing.assert_allclose(
        got["iou"], [[1 / 3, 0], [0, 0.64], [0, 0.8], [1, 0], [0, 0]], rtol=1e-6
    )
    log8 = math.log(0.8) / 0.2
    codes = np.zeros((5, 2, 4), np.float32)
    codes[0, 0] = [(0.5 - 0.25) / 0.5 / 0.1, 0, 0, 0]
    codes[1, 1] = [0, 0, log8, log8]
    codes[2, 1] = [(0.8 - 0.75) / 0.5 / 0.1, 0, log8, 0]
    np.testing.assert_allclose(got["boxes"], codes, atol=1e-5)
    assert_targets_equal(got, targets_numpy(boxes, valid, smile, ignore, TINY_ANCHORS))


def test_no_faces_at_all():
    empty = (np.zeros((2, 0, 4), np.float32), np.zeros((2, 0), bool))
    labels = (np.zeros((2, 0), np.int32), np.zeros((2, 0), bool))
    for low in (0.0, 0.4):  # low = 0 still makes every anchor a negative, as match() does
        got = {k: v.numpy() for k, v in targets_tf(*empty, *labels, ANCHORS, low=low).items()}
        assert_targets_equal(got, targets_numpy(*empty, *labels, ANCHORS, low=low))
        assert (got["face"] == 0).all()


def test_ties_go_to_the_first_index():
    # The box has IoU 1/3 with both anchors (forced onto anchor 0, the first); its twin
    # ties with it everywhere and loses (the lower face index wins).
    boxes = np.array([[[0.25, 0, 0.75, 1], [0.25, 0, 0.75, 1]]], np.float32)
    valid = np.ones((1, 2), bool)
    indices, _ = match_tf(boxes, valid, TINY_ANCHORS, high=0.5, low=0.2)
    assert indices.numpy().tolist() == [[0, BETWEEN_THRESHOLDS]]
    np.testing.assert_array_equal(indices, match(boxes, valid, TINY_ANCHORS, 0.5, 0.2).indices)


def test_runs_in_dataset_map_with_pure_graph_ops():
    rng = np.random.default_rng(3)
    boxes, valid, smile, ignore = random_batch(rng, 6, 4)
    images = rng.integers(0, 256, (6, 16, 32, 1), dtype=np.uint8)
    data = {"image": images, "gt_boxes": boxes, "gt_valid": valid}
    data |= {"gt_smile": smile, "gt_ignore": ignore}

    def encoder(batch):
        targets = targets_tf(
            batch["gt_boxes"], batch["gt_valid"], batch["gt_smile"], batch["gt_ignore"],
            TINY_ANCHORS, BoxCoder(), high=0.5, low=0.3,
        )  # fmt: skip
        return batch["image"], targets

    dataset = tf.data.Dataset.from_tensor_slices(data).batch(4).map(encoder)
    seen = 0
    for image, targets in dataset:
        rows = slice(seen, seen + len(image))
        np.testing.assert_array_equal(image.numpy(), images[rows])
        want = targets_numpy(
            boxes[rows], valid[rows], smile[rows], ignore[rows], TINY_ANCHORS, high=0.5, low=0.3
        )
        assert_targets_equal({k: v.numpy() for k, v in targets.items()}, want)
        seen += len(image)
    assert seen == 6

    graph = tf.function(encoder).get_concrete_function(
        {k: tf.TensorSpec([None, *v.shape[1:]], tf.as_dtype(v.dtype)) for k, v in data.items()}
    )
    ops = {op.type for op in graph.graph.get_operations()}
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}


def test_bad_thresholds():
    with pytest.raises(ValueError, match=r"low=0\.6, high=0\.5"):
        targets_tf(*random_batch(np.random.default_rng(0), 1, 1), TINY_ANCHORS, high=0.5, low=0.6)
