import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from smilebot_tools.losses import LossConfig, box_weights, detection_loss, focal_loss  # noqa: E402


def logit(p):
    return math.log(p / (1 - p))


def make(face, smile=None, box_error=None, face_logits=None, smile_logits=None, quality=None):
    """Targets and outputs for one image of len(face) anchors; targets' boxes are 0."""
    n = len(face)
    targets = {
        "face": tf.constant([face], tf.int32),
        "smile": tf.constant([smile if smile is not None else [-1] * n], tf.int32),
        "boxes": tf.zeros([1, n, 4]),
        "iou": tf.constant([[0.7 if f == 1 else 0.0 for f in face]], tf.float32),
    }
    channels = [
        face_logits if face_logits is not None else [0.0] * n,
        smile_logits if smile_logits is not None else [0.0] * n,
    ]
    if quality is not None:
        channels.append(quality)
    boxes = np.zeros([1, n, 4], np.float32)
    if box_error is not None:
        boxes[0, :, 0] = box_error
    outputs = {
        "logits": tf.constant([np.array(channels).T], tf.float32),
        "boxes": tf.constant(boxes),
    }
    return targets, outputs


def test_focal_loss_by_hand():
    # logit 0, target 1: p_t = 0.5, alpha_t = 0.25 -> 0.25 * 0.5**2 * ln 2 = 0.0433217.
    # logit 2, target 0: p = sigmoid(2), p_t = 1 - p, alpha_t = 0.75.
    p = 1 / (1 + math.exp(-2.0))
    by_hand = 0.25 * 0.25 * math.log(2) + 0.75 * p**2 * -math.log(1 - p)
    got = focal_loss(tf.constant([[1, 0]]), tf.constant([[0.0, 2.0]]), 0.25, 2.0)
    assert float(got) == pytest.approx(by_hand, rel=1e-5)
    assert by_hand == pytest.approx(0.0433217 + 1.2375657, rel=1e-5)


def test_face_loss_divided_by_positives_and_ignores_minus_one():
    targets, outputs = make([1, 0, -1, 1], face_logits=[0.0, 2.0, 5.0, 0.0])
    losses = detection_loss(targets, outputs)
    p = 1 / (1 + math.exp(-2.0))
    by_hand = (2 * 0.25 * 0.25 * math.log(2) + 0.75 * p**2 * -math.log(1 - p)) / 2
    assert float(losses["face"]) == pytest.approx(by_hand, rel=1e-5)


def test_ignored_anchors_contribute_nothing():
    base = make([1, 0, -1], smile=[1, -1, -1], box_error=[0.3, 0.0, 0.0])
    changed = make(
        [1, 0, -1],
        smile=[1, -1, -1],
        box_error=[0.3, 0.0, 7.0],
        face_logits=[0.0, 0.0, 9.0],
        smile_logits=[0.0, 0.0, -9.0],
    )
    a, b = detection_loss(*base), detection_loss(*changed)
    for key in a:
        assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-6), key


def test_gated_box_weights_by_hand():
    face_logits = tf.constant([[logit(0.9), logit(0.2)]])
    assert box_weights(face_logits, 1.0, 0.5).numpy().tolist() == [[2.0, 1.0]]
    assert box_weights(face_logits, 9.0, 0.5).numpy().tolist() == [[10.0, 1.0]]
    # Errors 0.5 (Huber 0.125) and 2.0 (Huber 2 - 0.5 = 1.5); 2 positives.
    targets, outputs = make([1, 1], box_error=[0.5, 2.0], face_logits=[logit(0.9), logit(0.2)])
    one = detection_loss(targets, outputs, LossConfig(alpha_extra=1.0))
    nine = detection_loss(targets, outputs, LossConfig(alpha_extra=9.0))
    assert float(one["box"]) == pytest.approx((2 * 0.125 + 1 * 1.5) / 2)
    assert float(nine["box"]) == pytest.approx((10 * 0.125 + 1 * 1.5) / 2)


def test_box_loss_passes_no_gradient_to_the_face_logit():
    targets, outputs = make([1, 1], box_error=[0.5, 2.0], face_logits=[logit(0.9), logit(0.2)])
    logits, boxes = tf.Variable(outputs["logits"]), tf.Variable(outputs["boxes"])
    with tf.GradientTape(persistent=True) as tape:
        losses = detection_loss(
            targets, {"logits": logits, "boxes": boxes}, LossConfig(alpha_extra=9)
        )
    zero = tf.UnconnectedGradients.ZERO
    assert not np.any(tape.gradient(losses["box"], logits, unconnected_gradients=zero).numpy())
    box_grad = tape.gradient(losses["box"], boxes).numpy()
    # d/dx of weight * Huber / 2: 10 * 0.5 / 2 for the confident box, 1 * 1 / 2 for the other.
    assert box_grad[0, :, 0].tolist() == pytest.approx([2.5, 0.5])
    face_grad = tape.gradient(losses["total"], logits).numpy()[0, :, 0]
    face_only = tape.gradient(losses["face"], logits).numpy()[0, :, 0]
    assert face_grad == pytest.approx(face_only)


def test_smile_loss_only_at_positives_with_known_labels():
    # Anchor 0: positive, smiling, logit 0 -> ln 2. Anchor 1: positive, unknown smile.
    # Anchor 2: negative with a (contract-breaking) label: still ignored.
    targets, outputs = make([1, 1, 0], smile=[1, -1, 0], smile_logits=[0.0, -8.0, 8.0])
    assert float(detection_loss(targets, outputs)["smile"]) == pytest.approx(math.log(2), rel=1e-6)
    changed = make([1, 1, 0], smile=[1, -1, 0], smile_logits=[0.0, 8.0, -8.0])
    assert float(detection_loss(*changed)["smile"]) == pytest.approx(math.log(2), rel=1e-6)


def test_smile_weight_zero_disables_smile():
    targets, outputs = make([1, 0], smile=[1, -1], smile_logits=[-5.0, 0.0], box_error=[1.0, 0])
    losses = detection_loss(targets, outputs, LossConfig(smile_weight=0.0))
    assert float(losses["smile"]) == 0.0
    assert float(losses["total"]) == pytest.approx(float(losses["face"] + losses["box"]))


def test_quality_term_is_bce_against_iou_at_positives():
    # Logit 0 against any soft target t: -(t ln .5 + (1 - t) ln .5) = ln 2; one positive.
    targets, outputs = make([1, 0], quality=[0.0, 5.0])
    losses = detection_loss(targets, outputs, LossConfig(quality_weight=2.0))
    assert float(losses["quality"]) == pytest.approx(2 * math.log(2), rel=1e-6)
    total = sum(float(losses[k]) for k in ("face", "box", "smile", "quality"))
    assert float(losses["total"]) == pytest.approx(total, rel=1e-6)
    assert "quality" not in detection_loss(*make([1, 0]))


def test_no_positives_gives_finite_losses():
    targets, outputs = make(
        [0, 0, -1], smile=[-1, -1, -1], box_error=[3.0, 3.0, 3.0], quality=[0, 0, 0]
    )
    losses = detection_loss(targets, outputs)
    assert all(np.isfinite(float(v)) for v in losses.values())
    assert float(losses["box"]) == float(losses["smile"]) == float(losses["quality"]) == 0.0
    assert float(losses["face"]) > 0


def test_batch_positives_counted_over_the_batch():
    targets = {
        "face": tf.constant([[1, 0], [1, 1]], tf.int32),
        "smile": tf.constant([[-1, -1], [-1, -1]], tf.int32),
        "boxes": tf.zeros([2, 2, 4]),
        "iou": tf.zeros([2, 2]),
    }
    boxes = np.zeros([2, 2, 4], np.float32)
    boxes[0, 0, 1] = 0.5  # Huber 0.125, weight 1 (face prob 0.5 >= 0.5 gives 2)
    outputs = {"logits": tf.fill([2, 2, 2], -1.0), "boxes": tf.constant(boxes)}
    assert float(detection_loss(targets, outputs)["box"]) == pytest.approx(0.125 / 3)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="alpha_extra"):
        LossConfig(alpha_extra=-1)
    with pytest.raises(ValueError, match="focal_alpha"):
        LossConfig(focal_alpha=2)
