"""The SSD network: a small backbone plus one convolutional head pair per anchor level.

:func:`build_model` makes the training model (Keras 3 functional API): it takes
``float32 [B, H, W, C]`` pixels in ``0..255`` (what :func:`smilebot.preprocess.preprocess`
returns, cast), rescales them inside (``x / 127.5 - 1``) and returns
``{"logits": float32 [B, A, S], "boxes": float32 [B, A, 4]}``: ``S`` pre-sigmoid scores per
anchor (face, smile and, with ``quality_head``, the predicted IoU of the box) and the SSD
codes ``(tx, ty, tw, th)`` to decode with :class:`smilebot.box_coder.BoxCoder`. ``A`` is
``spec.num_anchors`` and the rows follow the anchor order of :mod:`smilebot.anchors`
(level, row, column, scale, aspect ratio): each head's ``[rows, cols, k * D]`` map is
reshaped to ``[rows * cols * k, D]`` and the levels are concatenated.

:func:`export_model` wraps a trained model for int8 conversion: batch 1, outputs
``{"scores": sigmoid(logits), "boxes": boxes}``.

Backbones (only int8-friendly ops: Conv2D, DepthwiseConv2D, BatchNormalization (folded by
the converter), ReLU, Add, MaxPool, Reshape, Concatenate; no resize, no Lambda):

* ``"mobile"``: BlazeFace/MobileNet-like; a 3x3 stride-2 stem, then per stride 4, 8, ...
  a stride-2 depthwise-separable block followed by residual 5x5 depthwise + 1x1 pointwise
  blocks.
* ``"alexnet"``: v1's lineage; plain 5x5/3x3 convolutions, ReLU and 2x2 max-pooling.

Each stage halves the map with ``"same"`` padding, so the map of stride ``s`` is
``ceil(H / s) x ceil(W / s)``, the grid the anchor spec expects; :func:`build_model` checks
it and raises :class:`ValueError` on any mismatch. Strides must be powers of two.

Not the job of this module: losses (losses.py), target assignment, training, conversion to
TFLite, decoding or NMS.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

from smilebot.anchors import DEFAULT_SPEC, AnchorLevel, AnchorSpec
from smilebot.preprocess import DEFAULT_INPUT, InputSpec

BACKBONES = ("mobile", "alexnet")
FACE_PRIOR = 0.01
LOGIT_CLIP = 8.0  # exported logits are clipped to +-8 (sigmoid 0.0003 .. 0.9997)
"""Initial face probability of every anchor (focal-loss practice: keeps early loss sane)."""

# Per stride 2, 4, 8, 16, 32, 64 (deeper strides repeat the last entry), at width 1.0:
# (channels, residual blocks) for "mobile", (channels, convolutions) for "alexnet".
_MOBILE_STAGES = ((16, 1), (32, 1), (48, 2), (96, 2), (128, 2), (128, 1))
_ALEXNET_STAGES = ((16, 1), (32, 1), (48, 2), (64, 2), (96, 1), (96, 1))


@dataclass(frozen=True)
class ModelConfig:
    """What :func:`build_model` builds; stored in the model sidecar via :meth:`to_dict`.

    ``width`` multiplies every backbone channel count (rounded to a multiple of 8, at
    least 8). ``quality_head`` adds a third score channel whose sigmoid predicts the IoU of
    the anchor's box with its face.
    """

    backbone: str = "mobile"
    width: float = 1.0
    anchors: AnchorSpec = DEFAULT_SPEC
    input: InputSpec = DEFAULT_INPUT
    quality_head: bool = False

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"model config: backbone must be one of {BACKBONES}, got {self.backbone!r}"
            )
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)):
            raise ValueError(f"model config: width must be a number, got {self.width!r}")
        if not self.width > 0:
            raise ValueError(f"model config: width must be positive, got {self.width!r}")
        object.__setattr__(self, "width", float(self.width))
        if not isinstance(self.quality_head, bool):
            raise ValueError(
                f"model config: quality_head must be a bool, got {self.quality_head!r}"
            )

    @property
    def score_names(self) -> tuple[str, ...]:
        """Names of the score channels, in order: face, smile (and quality)."""
        return ("face", "smile", "quality") if self.quality_head else ("face", "smile")

    def to_dict(self) -> dict:
        """A JSON-ready dict (the ``model`` entry of a sidecar)."""
        return {
            "backbone": self.backbone,
            "width": self.width,
            "anchors": self.anchors.to_dict(),
            "input": self.input.to_dict(),
            "quality_head": self.quality_head,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError, missing ones default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"model config: unknown key {unknown[0]!r} (known: {sorted(known)})")
        values = dict(data)
        if "anchors" in values:
            values["anchors"] = AnchorSpec.from_dict(values["anchors"])
        if "input" in values:
            values["input"] = InputSpec.from_dict(values["input"])
        return cls(**values)


def build_model(config: ModelConfig = ModelConfig()) -> keras.Model:
    """The training model: ``float32 [B, H, W, C]`` (0..255) -> ``{"logits", "boxes"}``.

    ``logits`` is ``float32 [B, A, S]`` (``S = len(config.score_names)``), ``boxes`` is
    ``float32 [B, A, 4]``. Raises ValueError when a level's stride is not a power of two,
    its feature map is not the grid ``config.anchors.grid(level)``, or the anchor spec's
    input size is not the model input's (even where the grids happen to agree).
    """
    spec, inp = config.anchors, config.input
    image = keras.Input((inp.height, inp.width, inp.channels), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(image)
    strides = [_checked_stride(level) for level in spec.levels]
    backbone = _mobile if config.backbone == "mobile" else _alexnet
    features = backbone(x, config.width, max(strides))
    logits, boxes = [], []
    for index, level in enumerate(spec.levels):
        feature = features[level.stride]
        _check_grid(feature, spec, level)
        k = spec.anchors_per_cell(level)
        logits.append(_head(feature, k, len(config.score_names), f"logits_{index}", score=True))
        boxes.append(_head(feature, k, 4, f"boxes_{index}", score=False))
    if (spec.input_width, spec.input_height) != (inp.width, inp.height):
        raise ValueError(
            f"model: the anchor spec is for a {spec.input_width} x {spec.input_height} input but "
            f"the model input is {inp.width} x {inp.height}; anchors would be misplaced"
        )
    outputs = {"logits": _concat(logits, "logits"), "boxes": _concat(boxes, "boxes")}
    name = f"ssd_{config.backbone}_{config.width:g}"
    return keras.Model(image, outputs, name=name)


def export_model(model: keras.Model, config: ModelConfig) -> keras.Model:
    """``model`` (from :func:`build_model`) for conversion: batch 1, sigmoid scores.

    Input ``float32 [1, H, W, C]`` in 0..255; outputs ``{"scores": float32 [1, A, S]``
    probabilities in ``[0, 1]``, ``"boxes": float32 [1, A, 4]}`` SSD codes. The weights
    are shared with ``model``, not copied. Logits are clipped to +-``LOGIT_CLIP`` before
    the sigmoid: it changes no probability by more than 3e-4, and it keeps the int8
    logit tensor's range small, so scores keep a fine resolution after quantization
    (unclipped, background logits near -40 left 0.36-logit steps: about 20 distinct scores).
    """
    inp = config.input
    image = keras.Input((inp.height, inp.width, inp.channels), batch_size=1, name="image")
    out = model(image)
    logits = keras.layers.Lambda(
        lambda x: keras.ops.clip(x, -LOGIT_CLIP, LOGIT_CLIP), name="clip_logits"
    )(out["logits"])
    scores = keras.layers.Activation("sigmoid", name="scores")(logits)
    boxes = keras.layers.Identity(name="boxes")(out["boxes"])
    return keras.Model(image, {"scores": scores, "boxes": boxes}, name=f"{model.name}_export")


def describe(model: keras.Model) -> dict[str, int]:
    """``{"params": ..., "macs": ...}`` of ``model``: all weights, multiply-accumulates
    per image of its Conv2D, DepthwiseConv2D and Dense layers (from their output shapes;
    BatchNormalization counts as folded into the convolution, so adds no MACs).
    """
    return {
        "params": int(model.count_params()),
        "macs": sum(_macs(layer) for layer in _layers(model)),
    }


def summary_table(configs: list[ModelConfig]) -> str:
    """A text table of backbone, width, params and MACs of the models of ``configs``."""
    lines = [f"{'backbone':<8} {'width':>5} {'params':>9} {'MMACs':>7}"]
    for config in configs:
        figures = describe(build_model(config))
        lines.append(
            f"{config.backbone:<8} {config.width:>5g} {figures['params']:>9,} "
            f"{figures['macs'] / 1e6:>7.1f}"
        )
    return "\n".join(lines)


def _checked_stride(level: AnchorLevel) -> int:
    if level.stride < 2 or level.stride & (level.stride - 1):
        raise ValueError(
            f"model: anchor level stride {level.stride} is not a power of two >= 2; the "
            "backbone only has feature maps at strides 2, 4, 8, ..."
        )
    return level.stride


def _check_grid(feature: keras.KerasTensor, spec: AnchorSpec, level: AnchorLevel) -> None:
    got = tuple(feature.shape[1:3])
    want = spec.grid(level)
    if got != want:
        raise ValueError(
            f"model: the stride-{level.stride} feature map is {got[0]} x {got[1]} (rows x cols) "
            f"but the anchor spec wants {want[0]} x {want[1]} "
            f"(input {spec.input_width} x {spec.input_height}); the anchor spec and the "
            "model input must describe the same image size"
        )


def _channels(base: int, width: float) -> int:
    """``base * width`` rounded to a multiple of 8, at least 8."""
    return max(8, round(base * width / 8) * 8)


def _stage(table: tuple[tuple[int, int], ...], stride: int) -> tuple[int, int]:
    return table[min(int(math.log2(stride)) - 1, len(table) - 1)]


def _bn_relu(x: keras.KerasTensor, name: str, relu: bool = True) -> keras.KerasTensor:
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _separable(
    x: keras.KerasTensor, filters: int, strides: int, name: str, relu: bool = True
) -> keras.KerasTensor:
    """5x5 depthwise + BN, 1x1 pointwise + BN (+ ReLU), BlazeFace style."""
    x = keras.layers.DepthwiseConv2D(
        5, strides=strides, padding="same", use_bias=False, name=f"{name}_dw"
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    return _bn_relu(x, f"{name}_pw", relu)


def _mobile(x: keras.KerasTensor, width: float, max_stride: int) -> dict[int, keras.KerasTensor]:
    """Feature maps ``{stride: [B, ceil(H/stride), ceil(W/stride), channels]}`` up to
    ``max_stride``, from a stride-2 3x3 stem and depthwise-separable stages."""
    features, stride = {}, 2
    filters, blocks = _stage(_MOBILE_STAGES, stride)
    x = keras.layers.Conv2D(
        _channels(filters, width), 3, strides=2, padding="same", use_bias=False, name="stem"
    )(x)
    x = _bn_relu(x, "stem")
    while True:
        for b in range(blocks):
            shortcut = x
            y = _separable(x, x.shape[-1], 1, f"s{stride}_b{b}", relu=False)
            x = keras.layers.ReLU(name=f"s{stride}_b{b}_relu")(
                keras.layers.Add(name=f"s{stride}_b{b}_add")([shortcut, y])
            )
        features[stride] = x
        if stride >= max_stride:
            return features
        stride *= 2
        filters, blocks = _stage(_MOBILE_STAGES, stride)
        x = _separable(x, _channels(filters, width), 2, f"s{stride}_down")


def _alexnet(x: keras.KerasTensor, width: float, max_stride: int) -> dict[int, keras.KerasTensor]:
    """Feature maps ``{stride: [B, ceil(H/stride), ceil(W/stride), channels]}`` up to
    ``max_stride``, from a stride-2 5x5 conv then max-pool + 5x5/3x3 conv stages."""
    features, stride = {}, 2
    filters, convs = _stage(_ALEXNET_STAGES, stride)
    x = keras.layers.Conv2D(
        _channels(filters, width), 5, strides=2, padding="same", use_bias=False, name="conv1"
    )(x)
    x = _bn_relu(x, "conv1")
    while True:
        features[stride] = x
        if stride >= max_stride:
            return features
        stride *= 2
        filters, convs = _stage(_ALEXNET_STAGES, stride)
        x = keras.layers.MaxPooling2D(2, padding="same", name=f"s{stride}_pool")(x)
        kernel = 5 if stride <= 4 else 3
        for c in range(convs):
            name = f"s{stride}_conv{c}"
            x = keras.layers.Conv2D(
                _channels(filters, width), kernel, padding="same", use_bias=False, name=name
            )(x)
            x = _bn_relu(x, name)


def _head(
    feature: keras.KerasTensor, k: int, depth: int, name: str, score: bool
) -> keras.KerasTensor:
    """3x3 conv to ``k * depth`` channels, reshaped to ``[B, rows * cols * k, depth]``.

    Score heads start with the face channel's bias at logit(FACE_PRIOR), the others at 0.
    """
    conv = keras.layers.Conv2D(k * depth, 3, padding="same", name=f"{name}_conv")
    x = conv(feature)
    if score:
        bias = [0.0] * (k * depth)
        bias[::depth] = [math.log(FACE_PRIOR / (1 - FACE_PRIOR))] * k
        conv.bias.assign(bias)
    rows, cols = x.shape[1], x.shape[2]
    return keras.layers.Reshape((rows * cols * k, depth), name=name)(x)


def _concat(parts: list[keras.KerasTensor], name: str) -> keras.KerasTensor:
    if len(parts) == 1:
        return keras.layers.Identity(name=name)(parts[0])
    return keras.layers.Concatenate(axis=1, name=name)(parts)


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    """All leaf layers of ``model``, nested models expanded."""
    out = []
    for layer in model.layers:
        out.extend(_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def _macs(layer: keras.layers.Layer) -> int:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        _, h, w, _ = layer.output.shape
        kh, kw = layer.kernel_size
        return h * w * kh * kw * layer.input.shape[-1] * layer.depth_multiplier
    if isinstance(layer, keras.layers.Conv2D):
        _, h, w, c_out = layer.output.shape
        kh, kw = layer.kernel_size
        return h * w * kh * kw * layer.input.shape[-1] // layer.groups * c_out
    if isinstance(layer, keras.layers.Dense):
        return layer.input.shape[-1] * layer.units
    return 0


if __name__ == "__main__":
    print(summary_table([ModelConfig(backbone=name) for name in BACKBONES]))
