"""Training losses of the SSD (TensorFlow): focal face loss, gated box loss, smile, quality.

:func:`detection_loss` takes the per-anchor targets of the model contract and the outputs of
:func:`smilebot_tools.model.build_model` and returns scalar losses:

* ``face``: sigmoid focal loss (Lin et al. 2017) over every anchor whose face target is 0
  or 1 (ignored anchors, -1, add nothing), summed and divided by ``max(1, positives)``;
* ``box``: Huber (smooth-L1) loss on the 4 SSD codes at positive anchors, summed over the
  codes, each anchor weighted ``1 + alpha_extra * gate`` with
  ``gate = stop_gradient(1[sigmoid(face_logit) >= gate_threshold])``, divided by
  ``max(1, positives)``. v1's fix: the boxes the model is already confident about, the
  ones that survive NMS, are pulled hardest. The gate passes no gradient to the face score;
* ``smile``: sigmoid binary cross-entropy at positives whose face has a known smile label
  (target 0 or 1; -1 adds nothing), divided by ``max(1, such anchors)``;
* ``quality`` (only when the logits have a third channel): binary cross-entropy of that
  channel against the target IoU (a soft label in ``[0, 1]``) at positives, divided by
  ``max(1, positives)``;
* ``total``: the sum of the above.

Every returned term already carries its weight from :class:`LossConfig` (so ``smile`` is 0
when ``smile_weight`` is 0). Positives are counted over the whole batch.

Not the job of this module: assigning targets (matching), the model, or the optimiser.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf


@dataclass(frozen=True)
class LossConfig:
    """Weights and shapes of the loss terms; stored in the model sidecar's training config."""

    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    box_weight: float = 1.0
    smile_weight: float = 1.0
    alpha_extra: float = 1.0
    gate_threshold: float = 0.5
    quality_weight: float = 1.0
    huber_delta: float = 1.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"loss config: {name} must be a number >= 0, got {value!r}")
        if not 0 <= self.focal_alpha <= 1 or not 0 <= self.gate_threshold <= 1:
            raise ValueError("loss config: focal_alpha and gate_threshold must lie in [0, 1]")
        if not self.huber_delta > 0:
            raise ValueError("loss config: huber_delta must be positive")


def detection_loss(
    targets: dict[str, tf.Tensor], outputs: dict[str, tf.Tensor], config: LossConfig = LossConfig()
) -> dict[str, tf.Tensor]:
    """Scalar float32 losses ``face``, ``box``, ``smile``, (``quality``,) ``total``.

    ``targets``: ``face`` int32 [B, A] (1 / 0 / -1 ignored), ``smile`` int32 [B, A]
    (1 / 0 / -1 unknown), ``boxes`` float32 [B, A, 4] SSD codes, ``iou`` float32 [B, A].
    ``outputs``: ``logits`` float [B, A, 2 or 3] (face, smile, quality), ``boxes`` float
    [B, A, 4]. With no positive anchor in the batch every term is finite (box, smile and
    quality are 0).
    """
    logits = tf.cast(outputs["logits"], tf.float32)
    face_target = tf.cast(targets["face"], tf.int32)
    positive = tf.cast(face_target == 1, tf.float32)
    num_positive = tf.maximum(1.0, tf.reduce_sum(positive))

    face = focal_loss(face_target, logits[..., 0], config.focal_alpha, config.focal_gamma)
    losses = {
        "face": face / num_positive,
        "box": config.box_weight
        * _box_loss(targets, outputs, logits[..., 0], positive, config)
        / num_positive,
        "smile": config.smile_weight * _smile_loss(targets["smile"], logits[..., 1], positive),
    }
    if logits.shape[-1] == 3:
        iou = tf.cast(targets["iou"], tf.float32)
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=iou, logits=logits[..., 2])
        losses["quality"] = config.quality_weight * tf.reduce_sum(bce * positive) / num_positive
    losses["total"] = tf.add_n(list(losses.values()))
    return losses


def focal_loss(target: tf.Tensor, logit: tf.Tensor, alpha: float, gamma: float) -> tf.Tensor:
    """Sum of the sigmoid focal loss over anchors with ``target`` 0 or 1 (others add 0).

    ``target`` int [B, A], ``logit`` float32 [B, A]. Per anchor, with ``p = sigmoid(logit)``,
    ``p_t = p`` for target 1 and ``1 - p`` for target 0, and ``alpha_t = alpha`` /
    ``1 - alpha``: ``-alpha_t * (1 - p_t) ** gamma * log(p_t)``.
    """
    valid = tf.cast(target >= 0, tf.float32)
    label = tf.cast(target == 1, tf.float32)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=label, logits=logit)
    p = tf.sigmoid(logit)
    p_t = label * p + (1 - label) * (1 - p)
    alpha_t = label * alpha + (1 - label) * (1 - alpha)
    return tf.reduce_sum(valid * alpha_t * (1 - p_t) ** gamma * cross_entropy)


def box_weights(face_logit: tf.Tensor, alpha_extra: float, threshold: float) -> tf.Tensor:
    """``1 + alpha_extra * gate`` per anchor, ``gate = 1[sigmoid(face_logit) >= threshold]``.

    ``face_logit`` float32 [B, A] -> float32 [B, A]; no gradient flows through it.
    """
    gate = tf.stop_gradient(tf.cast(tf.sigmoid(face_logit) >= threshold, tf.float32))
    return 1.0 + alpha_extra * gate


def _box_loss(
    targets: dict[str, tf.Tensor],
    outputs: dict[str, tf.Tensor],
    face_logit: tf.Tensor,
    positive: tf.Tensor,
    config: LossConfig,
) -> tf.Tensor:
    """Sum over positives of gate-weighted Huber loss, summed over the 4 codes."""
    error = tf.cast(outputs["boxes"], tf.float32) - tf.cast(targets["boxes"], tf.float32)
    absolute = tf.abs(error)
    delta = config.huber_delta
    huber = tf.where(absolute <= delta, 0.5 * error**2, delta * (absolute - 0.5 * delta))
    weight = box_weights(face_logit, config.alpha_extra, config.gate_threshold)
    return tf.reduce_sum(weight * positive * tf.reduce_sum(huber, axis=-1))


def _smile_loss(target: tf.Tensor, logit: tf.Tensor, positive: tf.Tensor) -> tf.Tensor:
    """Mean sigmoid BCE over positive anchors with a known smile label (0 or 1)."""
    target = tf.cast(target, tf.int32)
    known = positive * tf.cast(target >= 0, tf.float32)
    label = tf.cast(target == 1, tf.float32)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=label, logits=logit)
    return tf.reduce_sum(bce * known) / tf.maximum(1.0, tf.reduce_sum(known))
