"""Camera frame -> model input: the one preprocessing of smilebot.

Training, evaluation, int8 calibration and the on-device daemon all call
:func:`preprocess`, so the model sees the same pixels everywhere.

What it does, for a ``uint8`` frame ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or
``(H, W, 4)`` (alpha dropped; ``color`` names the order of 3/4-channel frames,
``"rgb"`` or ``"bgr"``):

* letterboxes it into the model input of :class:`InputSpec` (``width x height``
  pixels, 1 channel = BT.601 luma or 3 channels = RGB): the aspect ratio is kept,
  the content is centred and the padding is 0;
* resizes with NumPy only: an integer box-filter reduction (exact integer block
  sums) followed by bilinear interpolation with half-pixel centres, whose
  coordinates come from the original source geometry so that the returned
  :class:`Letterbox` maps boxes exactly;
* returns ``uint8 (height, width, channels)`` and the :class:`Letterbox`, which
  maps pixel boxes of the frame to normalized boxes of the input and back.

Boxes are ``float32 [..., 4]`` ``(x1, y1, x2, y2)`` in continuous coordinates: a
box over a whole ``W x H`` image is ``(0, 0, W, H)``.

What it does NOT do: no normalization to float, no mean/std, no augmentation.
The model input is ``uint8``; the model's first layer does the scaling. The
result is deterministic: integer sums plus elementwise float32 arithmetic, no
order-dependent float reductions.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np

COLORS = ("rgb", "bgr")
_LUMA_RGB = (0.299, 0.587, 0.114)  # ITU-R BT.601


@dataclass(frozen=True)
class InputSpec:
    """The model input: ``width x height`` pixels, ``channels`` 1 (luma) or 3 (RGB), uint8."""

    width: int
    height: int
    channels: int

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"InputSpec.{f.name} must be an int, got {value!r}")
            object.__setattr__(self, f.name, int(value))
        for name in ("width", "height"):
            if getattr(self, name) <= 0:
                raise ValueError(f"InputSpec.{name} must be positive, got {getattr(self, name)}")
        if self.channels not in (1, 3):
            raise ValueError(f"InputSpec.channels must be 1 or 3, got {self.channels}")

    def to_dict(self) -> dict[str, int]:
        """``{"width": ..., "height": ..., "channels": ...}`` for the model's JSON sidecar."""
        return {"width": self.width, "height": self.height, "channels": self.channels}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InputSpec:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ``ValueError``."""
        names = [f.name for f in fields(cls)]
        for key in d:
            if key not in names:
                raise ValueError(f"unknown InputSpec key {key!r}; expected {names}")
        for key in names:
            if key not in d:
                raise ValueError(f"missing InputSpec key {key!r}")
        return cls(**{key: d[key] for key in names})


DEFAULT_INPUT = InputSpec(192, 144, 1)


@dataclass(frozen=True)
class Letterbox:
    """Geometry between a source frame and the model input.

    An input pixel coordinate is ``source * scale + pad`` (``scale`` in input
    pixels per source pixel, ``pad_x``/``pad_y`` in input pixels at left/top).
    """

    scale: float
    pad_x: int
    pad_y: int
    src_width: int
    src_height: int
    input_width: int
    input_height: int

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"Letterbox.scale must be positive, got {self.scale}")

    @classmethod
    def fit(cls, src_width: int, src_height: int, spec: InputSpec = DEFAULT_INPUT) -> Letterbox:
        """The letterbox :func:`preprocess` uses for a ``src_width x src_height`` frame."""
        for name, value in (("src_width", src_width), ("src_height", src_height)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        return _plan(int(src_width), int(src_height), spec.width, spec.height).letterbox

    @property
    def content_width(self) -> int:
        """Width in input pixels of the resized frame, ``round(src_width * scale)``."""
        return _content_size(self.src_width, self.scale, self.input_width)

    @property
    def content_height(self) -> int:
        """Height in input pixels of the resized frame, ``round(src_height * scale)``."""
        return _content_size(self.src_height, self.scale, self.input_height)

    def to_input(self, boxes_px: np.ndarray) -> np.ndarray:
        """Pixel ``xyxy [..., 4]`` on the source frame -> normalized ``xyxy`` on the input.

        Not clipped. Returns float32 (computed in float64).
        """
        offset, size = self._offset_size()
        return ((_boxes64(boxes_px) * self.scale + offset) / size).astype(np.float32)

    def to_source(self, boxes_norm: np.ndarray) -> np.ndarray:
        """Normalized ``xyxy [..., 4]`` on the input -> pixel ``xyxy`` on the source frame.

        Clipped to the frame (``0..src_width``, ``0..src_height``). Returns float32.
        """
        offset, size = self._offset_size()
        px = (_boxes64(boxes_norm) * size - offset) / self.scale
        limit = np.array([self.src_width, self.src_height] * 2, dtype=np.float64)
        return np.clip(px, 0.0, limit).astype(np.float32)

    def _offset_size(self) -> tuple[np.ndarray, np.ndarray]:
        """Padding and input size as ``xyxy`` float64 vectors (input pixels)."""
        offset = np.array([self.pad_x, self.pad_y] * 2, dtype=np.float64)
        size = np.array([self.input_width, self.input_height] * 2, dtype=np.float64)
        return offset, size


def _boxes64(boxes: np.ndarray) -> np.ndarray:
    """Boxes ``[..., 4]`` as float64; any other last dimension raises ``ValueError``."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.shape[-1:] != (4,):
        raise ValueError(f"boxes must have shape [..., 4], got {b.shape}")
    return b


def preprocess(
    frame: np.ndarray, spec: InputSpec = DEFAULT_INPUT, color: str = "rgb"
) -> tuple[np.ndarray, Letterbox]:
    """Letterbox a camera frame into the model input.

    ``frame``: uint8 ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``;
    ``color``: channel order of 3/4-channel frames, ``"rgb"`` or ``"bgr"``.
    Returns uint8 ``(spec.height, spec.width, spec.channels)`` (RGB order, or
    BT.601 luma for 1 channel; padding 0) and the :class:`Letterbox` used.
    Raises ``ValueError`` for any other dtype, shape or ``color``.
    """
    image = _validate(frame, color)
    src_h, src_w = image.shape[:2]
    plan = _plan(src_w, src_h, spec.width, spec.height)
    sums = _block_sums(image, plan.kx, plan.ky)
    reduced = _to_channels(sums, 1.0 / (plan.kx * plan.ky), spec.channels, color)
    content = _bilinear(reduced, plan)
    np.rint(content, out=content)
    np.clip(content, 0, 255, out=content)
    lb = plan.letterbox
    out = np.zeros((spec.height, spec.width, spec.channels), dtype=np.uint8)
    rows, _, cols = content.shape
    window = out[lb.pad_y : lb.pad_y + rows, lb.pad_x : lb.pad_x + cols]
    window[...] = content.transpose(0, 2, 1)
    return out, lb


def _validate(frame: np.ndarray, color: str) -> np.ndarray:
    """Check ``frame`` and ``color``; return a view ``(H, W, 1)`` or ``(H, W, 3)``."""
    if color not in COLORS:
        raise ValueError(f"unknown color {color!r}; expected one of {COLORS}")
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got dtype {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] in (1, 3, 4):
        image = frame[:, :, :3]
    elif frame.ndim == 2:
        image = frame[:, :, None]
    else:
        raise ValueError(f"frame must be (H, W) or (H, W, 1|3|4), got shape {frame.shape}")
    if image.size == 0:
        raise ValueError(f"frame is empty, shape {frame.shape}")
    return image


def _content_size(src: int, scale: float, limit: int) -> int:
    """``round(src * scale)`` (half up), kept within ``1..limit``."""
    return min(limit, max(1, math.floor(src * scale + 0.5)))


class _Plan(NamedTuple):
    """Everything about a resize that depends only on the sizes (read-only tables)."""

    letterbox: Letterbox
    kx: int
    ky: int
    x0: np.ndarray
    x1: np.ndarray
    wx: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    wy: np.ndarray


@functools.lru_cache(maxsize=16)
def _plan(src_w: int, src_h: int, in_w: int, in_h: int) -> _Plan:
    """Letterbox geometry, box-filter factors and bilinear tables for one size pair."""
    scale = min(in_w / src_w, in_h / src_h)
    content_w = _content_size(src_w, scale, in_w)
    content_h = _content_size(src_h, scale, in_h)
    lb = Letterbox(
        scale=scale,
        pad_x=(in_w - content_w) // 2,
        pad_y=(in_h - content_h) // 2,
        src_width=src_w,
        src_height=src_h,
        input_width=in_w,
        input_height=in_h,
    )
    kx = max(1, src_w // content_w)
    ky = max(1, src_h // content_h)
    x0, x1, wx = _axis_table(content_w, scale, kx, src_w // kx)
    y0, y1, wy = _axis_table(content_h, scale, ky, src_h // ky)
    return _Plan(lb, kx, ky, x0, x1, wx, y0, y1, wy)


def _axis_table(
    n_out: int, scale: float, k: int, n_reduced: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis: output pixel ``i`` -> ``(i0, i1, weight of i1)``.

    The centre of output pixel ``i`` is source coordinate ``(i + 0.5) / scale``;
    in the ``k``-reduced image that is index position ``source / k - 0.5``,
    clamped to ``0..n_reduced - 1``.
    """
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) / scale / k - 0.5
    pos = np.clip(pos, 0.0, n_reduced - 1)
    i0 = np.floor(pos).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_reduced - 1)
    w = (pos - i0).astype(np.float32)
    for a in (i0, i1, w):
        a.setflags(write=False)
    return i0, i1, w


def _block_sums(image: np.ndarray, kx: int, ky: int) -> np.ndarray:
    """Exact integer sums over ``ky x kx`` blocks of ``(H, W, c)`` -> ``(H // ky, c, W // kx)``.

    The result is row-planar (each row holds ``c`` planes) so that every inner loop
    runs along a row; incomplete blocks at the right and bottom edges are dropped.
    """
    if kx == 1 and ky == 1:
        return image.transpose(0, 2, 1)
    rows = image.shape[0] // ky * ky
    cols = image.shape[1] // kx * kx
    dtype = np.uint16 if kx * ky * 255 <= np.iinfo(np.uint16).max else np.uint32
    acc = image[0:rows:ky, :cols].astype(dtype)
    for j in range(1, ky):
        np.add(acc, image[j:rows:ky, :cols], out=acc)
    planes = acc.transpose(0, 2, 1)
    sums = planes[:, :, 0::kx].copy()
    for i in range(1, kx):
        np.add(sums, planes[:, :, i::kx], out=sums)
    return sums


def _to_channels(sums: np.ndarray, norm: float, channels: int, color: str) -> np.ndarray:
    """Block sums ``(h, c, w)`` -> float32 block means ``(h, 1, w)`` (luma) or ``(h, 3, w)`` RGB.

    ``norm`` is ``1 / block area``. Gray input stays ``(h, 1, w)`` whatever ``channels``
    is; it is replicated when the output is written.
    """
    if sums.shape[1] == 1:
        return np.multiply(sums, norm, dtype=np.float32)
    order = [0, 1, 2] if color == "rgb" else [2, 1, 0]
    if channels == 3:
        return np.multiply(sums[:, order], norm, dtype=np.float32)
    luma = np.zeros((sums.shape[0], 1, sums.shape[2]), dtype=np.float32)
    for channel, weight in zip(order, _LUMA_RGB, strict=True):
        luma += np.multiply(sums[:, channel : channel + 1], weight * norm, dtype=np.float32)
    return luma


def _bilinear(image: np.ndarray, plan: _Plan) -> np.ndarray:
    """Resample float32 ``(h, c, w)`` to the content size ``(len(y0), c, len(x0))``.

    Computed as ``a + (b - a) * weight`` in place, so a zero weight returns ``a``
    exactly and a constant image stays constant.
    """
    top = image[plan.y0]
    rows = image[plan.y1]
    rows -= top
    rows *= plan.wy[:, None, None]
    rows += top
    left = rows[:, :, plan.x0]
    content = rows[:, :, plan.x1]
    content -= left
    content *= plan.wx
    content += left
    return content
