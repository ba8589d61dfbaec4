"""Training augmentations: geometry that keeps face boxes honest, and the device's skew.

Every function works on an RGB ``uint8 [H, W, 3]`` frame and its face boxes, ``float32
[N, 4]`` pixels ``(x1, y1, x2, y2)`` in continuous coordinates (a box over the whole frame
is ``(0, 0, W, H)``), with an ``ignore`` flag per face (``bool [N]``). Randomness comes
only from the ``np.random.Generator`` passed in, so a seed fixes the result.

Geometry (:func:`hflip`, :func:`random_window`, :func:`apply_window`):

* a horizontal flip;
* scale jitter + crop: a window of random size and aspect is cut from the frame (zoom in)
  or laid around it (zoom out, the new border filled with the frame's edge pixels or a
  constant grey). The window always holds every non-ignore face whole, except in
  "focus" crops, which hold one random face whole and may cut the others;
* the window is resized to ``frame_width`` pixels wide (the bot's camera frame), so the
  degradations below have the same strength whatever the source resolution;
* after it, each face is clipped to the frame; a face less than ``min_visible`` visible,
  or narrower than ``min_face_input`` pixels once letterboxed into the model input, is
  flagged ignore (neither a positive nor a negative); a face cut out entirely comes back
  as a zero-area box, flagged ignore. Rows are never dropped, so they stay aligned with
  the caller's labels (smile).

Production skew the v1 bot met on the device (:func:`degrade`, one ``kind`` at a time,
``strength`` 0..1, 0 = unchanged except ``"jpeg"``): ``low_contrast`` (levels: black
point raised and gamma > 1, crushed shadows; output range narrowed, flat), ``backlight`` (a
bright gradient over the background, the subject's face region darker), ``noise``
(Gaussian read noise plus Poisson-like shot noise, variance growing with brightness),
``motion_blur`` (a line kernel at a random angle), ``jpeg`` (re-encoded at low quality)
and ``color_cast`` (per-channel gains, brightness kept). :func:`augment` applies them in
the physical order of :data:`KINDS`, each with its own probability.

Not done here: reading images, letterboxing into the model input (that is
``smilebot.preprocess``, shared with the device), labels other than ``ignore``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields

import cv2
import numpy as np

from smilebot.preprocess import DEFAULT_INPUT

logger = logging.getLogger(__name__)

# Physical order: scene light, optics/motion, white balance, exposure/levels, sensor, codec.
KINDS = ("backlight", "motion_blur", "color_cast", "low_contrast", "noise", "jpeg")


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and strengths of :func:`augment`. Defaults in brackets.

    Geometry. ``flip``: probability of a horizontal flip [0.5]. ``crop``: probability of
    scale jitter + crop [0.8]; without it the whole frame is the window. ``zoom``: range of
    the window's side as a multiple of the frame's, log-uniform; < 1 zooms in, > 1 zooms
    out [0.4..1.6]. ``aspect``: the window's aspect is the frame's times a log-uniform
    factor in ``[1/aspect, aspect]`` [1.25]. ``focus``: probability that a crop must keep
    only one random non-ignore face whole instead of all [0.2]. ``pad_constant``:
    probability that a zoom-out border is a constant grey rather than the edge pixels
    [0.5]. ``frame_width``: width in pixels of the augmented frame, None = the window's
    own pixels [640, the bot's camera]. ``min_visible``: a face with a smaller visible
    fraction of its box is flagged ignore [0.5]. ``min_face_input``: a face narrower than
    this, in model input pixels (letterboxed into ``input_size``), is flagged ignore
    [6.0, ~20 pixels of a 640-pixel frame, the manifest's ignore size]. ``input_size``:
    model input ``(width, height)`` [DEFAULT_INPUT's].

    Skew: the probability of each kind of :func:`degrade` [backlight 0.1, motion_blur
    0.15, color_cast 0.3, low_contrast 0.25, noise 0.3, jpeg 0.3]; each applied kind
    draws its strength uniformly from ``strength`` [0.2..1.0].
    """

    flip: float = 0.5
    crop: float = 0.8
    zoom: tuple[float, float] = (0.4, 1.6)
    aspect: float = 1.25
    focus: float = 0.2
    pad_constant: float = 0.5
    frame_width: int | None = 640
    min_visible: float = 0.5
    min_face_input: float = 6.0
    input_size: tuple[int, int] = (DEFAULT_INPUT.width, DEFAULT_INPUT.height)
    backlight: float = 0.1
    motion_blur: float = 0.15
    color_cast: float = 0.3
    low_contrast: float = 0.25
    noise: float = 0.3
    jpeg: float = 0.3
    strength: tuple[float, float] = (0.2, 1.0)

    def __post_init__(self) -> None:
        probabilities = ["flip", "crop", "focus", "pad_constant", "min_visible", *KINDS]
        for f in fields(self):
            if f.name in probabilities and not 0 <= getattr(self, f.name) <= 1:
                raise ValueError(f"AugmentConfig.{f.name} must be in [0, 1], got {self}")
        checks = {
            "zoom": 0 < self.zoom[0] <= self.zoom[1],
            "aspect": self.aspect >= 1,
            "frame_width": self.frame_width is None or self.frame_width > 0,
            "min_face_input": self.min_face_input >= 0,
            "input_size": min(self.input_size) > 0,
            "strength": 0 <= self.strength[0] <= self.strength[1] <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"AugmentConfig: bad {name} in {self}")


@dataclass(frozen=True)
class Window:
    """A crop window in frame pixels: integer corner ``(x0, y0)`` and size ``w x h``;
    it may reach outside the frame (zoom out). ``fill`` is the border: None = the frame's
    edge pixels, else a constant grey level 0..255."""

    x0: int
    y0: int
    w: int
    h: int
    fill: int | None = None


def augment(
    frame: np.ndarray,
    boxes: np.ndarray,
    ignore: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig = AugmentConfig(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flip, crop/scale and degrade one frame with its faces.

    ``frame`` uint8 RGB ``[H, W, 3]``; ``boxes`` float32 ``[N, 4]`` pixels; ``ignore``
    bool ``[N]``. Returns the new frame (uint8 RGB, ``config.frame_width`` wide), boxes
    (float32 ``[N, 4]`` pixels of the new frame, clipped to it; zero area for a face cut
    out) and ignore flags (bool ``[N]``), rows in the input order.
    """
    frame, boxes, ignore = _check(frame, boxes, ignore)
    if rng.random() < config.flip:
        frame, boxes = hflip(frame, boxes)
    if rng.random() < config.crop:
        window = random_window(frame.shape, boxes, ignore, rng, config)
    else:
        window = Window(0, 0, frame.shape[1], frame.shape[0])
    frame, boxes, ignore, keep = apply_window(frame, boxes, ignore, window, config)
    faces = boxes[keep & ~ignore]
    for kind in KINDS:
        if rng.random() < getattr(config, kind):
            frame = degrade(frame, kind, rng, rng.uniform(*config.strength), boxes=faces)
    return frame, boxes, ignore


def _check(frame, boxes, ignore) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate the shapes and dtypes of :func:`augment`'s inputs; boxes as float32."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3:
        raise ValueError(f"frame must be uint8 [H, W, 3], got {getattr(frame, 'shape', frame)}")
    if frame.shape[2] != 3 or frame.size == 0:
        raise ValueError(f"frame must be uint8 [H, W, 3], got shape {frame.shape}")
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    ignore = np.asarray(ignore, dtype=bool)
    if ignore.shape != (len(boxes),):
        raise ValueError(f"ignore must be bool [{len(boxes)}], got shape {ignore.shape}")
    return frame, boxes, ignore


# --- geometry --------------------------------------------------------------------------


def hflip(frame: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right: frame ``[H, W, C]`` and pixel boxes ``[N, 4]`` (x -> W - x)."""
    w = frame.shape[1]
    b = np.asarray(boxes, dtype=np.float32)
    flipped = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1)
    return np.ascontiguousarray(frame[:, ::-1]), flipped.astype(np.float32)


def random_window(
    shape: tuple[int, ...],
    boxes: np.ndarray,
    ignore: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig,
) -> Window:
    """A random crop window for a frame of ``shape`` ``(H, W, ...)`` (see the module doc).

    Its side is ``zoom`` times the frame's (aspect jittered), grown where needed to hold
    the faces it must keep whole (all non-ignore faces, or one in a focus crop); it lies
    inside the frame when smaller than it and around it when larger.
    """
    h, w = shape[:2]
    side = math.exp(rng.uniform(math.log(config.zoom[0]), math.log(config.zoom[1])))
    stretch = math.exp(rng.uniform(-math.log(config.aspect), math.log(config.aspect)))
    ww, wh = w * side * math.sqrt(stretch), h * side / math.sqrt(stretch)
    must = _must_keep(w, h, boxes, ignore, rng, config)
    if must is not None:
        grow = max(1.0, (must[2] - must[0]) / ww, (must[3] - must[1]) / wh)
        ww, wh = ww * grow, wh * grow
    ww, wh = max(1, math.ceil(ww - 1e-6)), max(1, math.ceil(wh - 1e-6))
    x0 = _place(w, ww, must[0::2] if must is not None else None, rng)
    y0 = _place(h, wh, must[1::2] if must is not None else None, rng)
    fill = None
    if (x0 < 0 or y0 < 0 or x0 + ww > w or y0 + wh > h) and rng.random() < config.pad_constant:
        fill = int(rng.integers(256))
    return Window(x0, y0, ww, wh, fill)


def _must_keep(w, h, boxes, ignore, rng, config) -> np.ndarray | None:
    """Integer box ``(x1, y1, x2, y2)`` the window must hold: the union of the non-ignore
    faces (or one of them in a focus crop), widened to whole pixels and clipped to the
    frame; None when there is no such face."""
    faces = boxes[~ignore]
    if len(faces) == 0:
        return None
    if rng.random() < config.focus:
        faces = faces[int(rng.integers(len(faces)))][None]
    lo = np.floor(np.clip(faces[:, :2].min(axis=0), 0, [w, h]))
    hi = np.ceil(np.clip(faces[:, 2:].max(axis=0), 0, [w, h]))
    return np.concatenate([lo, np.maximum(hi, lo)])


def _place(size: int, window: int, must: np.ndarray | None, rng: np.random.Generator) -> int:
    """Random integer start of a ``window``-long span over a ``size``-long frame axis:
    inside the frame if shorter, around it if longer, holding ``must = (lo, hi)`` if given."""
    lo, hi = min(0, size - window), max(0, size - window)
    if must is not None:
        lo, hi = max(lo, int(must[1]) - window), min(hi, int(must[0]))
    return int(rng.integers(lo, hi + 1))


def apply_window(
    frame: np.ndarray,
    boxes: np.ndarray,
    ignore: np.ndarray,
    window: Window,
    config: AugmentConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut ``window`` out of ``frame`` (padding outside it), resize it to
    ``config.frame_width`` and map the faces.

    Returns the frame (uint8 ``[h, w, 3]``), boxes (float32 ``[N, 4]`` pixels of it,
    clipped; zero area where cut out), ignore (bool ``[N]``: the input flags, plus faces
    less than ``min_visible`` visible or narrower than ``min_face_input`` input pixels)
    and keep (bool ``[N]``: False for faces with no visible part).
    """
    out = _cut(frame, window)
    scale_x = scale_y = 1.0
    if config.frame_width is not None and config.frame_width != window.w:
        out_h = max(1, round(config.frame_width * window.h / window.w))
        shrink = config.frame_width < window.w
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        out = cv2.resize(out, (config.frame_width, out_h), interpolation=interpolation)
        scale_x, scale_y = config.frame_width / window.w, out_h / window.h
    offset = np.array([window.x0, window.y0] * 2, dtype=np.float64)
    scale = np.array([scale_x, scale_y] * 2, dtype=np.float64)
    mapped = (np.asarray(boxes, dtype=np.float64) - offset) * scale
    oh, ow = out.shape[:2]
    clipped = np.clip(mapped, 0.0, [ow, oh, ow, oh])
    visible = _area(clipped) / np.maximum(_area(mapped), 1e-12)
    keep = _area(clipped) > 0
    in_w, in_h = config.input_size
    width_input = (mapped[:, 2] - mapped[:, 0]) * min(in_w / ow, in_h / oh)
    small = width_input < config.min_face_input
    new_ignore = ignore | ~keep | (visible < config.min_visible) | small
    return out, clipped.astype(np.float32), new_ignore, keep


def _cut(frame: np.ndarray, window: Window) -> np.ndarray:
    """The window's pixels: the part inside the frame, bordered as ``window.fill`` says."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = window.x0, window.y0, window.x0 + window.w, window.y0 + window.h
    inner = frame[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
    pad = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))
    if not any(pad):
        return np.ascontiguousarray(inner)
    if window.fill is None:
        return cv2.copyMakeBorder(inner, *pad, cv2.BORDER_REPLICATE)
    return cv2.copyMakeBorder(inner, *pad, cv2.BORDER_CONSTANT, value=(window.fill,) * 3)


def _area(b: np.ndarray) -> np.ndarray:
    return np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)


# --- production skew -------------------------------------------------------------------


def degrade(
    frame: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    strength: float,
    boxes: np.ndarray | None = None,
) -> np.ndarray:
    """One kind of device skew (see :data:`KINDS`) on a uint8 RGB ``[H, W, 3]`` frame.

    ``strength`` in 0..1 (0 leaves the frame as it is, except ``"jpeg"``, which still
    re-encodes at quality 60). ``boxes`` (float32 ``[N, 4]`` pixels) are the subject's
    faces, used only by ``"backlight"``; None assumes one subject in the middle of the
    frame. Returns a new uint8 RGB frame of the same shape; the input is not changed.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown degradation {kind!r}; expected one of {KINDS}")
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    frame, _, _ = _check(frame, np.zeros((0, 4)), np.zeros(0, bool))
    if kind == "backlight":
        return _backlight(frame, rng, strength, boxes)
    return _DEGRADATIONS[kind](frame, rng, strength)


def _low_contrast(frame: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """A tone curve (levels): input below a black point of up to 20% crushed to the
    output's floor, gamma up to 1.5 deepening the shadows, and the output range narrowed
    by up to 60% (its floor lifted a little): flat, dim, shadow detail gone."""
    u = rng.uniform(0.5, 1.0, 3)
    black, gamma, squeeze = 0.2 * s * u[0], 1 + 0.5 * s * u[1], 0.6 * s * u[2]
    floor = squeeze * rng.uniform(0.2, 0.6)
    x = np.arange(256, dtype=np.float64) / 255
    y = np.clip((x - black) / (1 - black), 0, 1) ** gamma
    return cv2.LUT(frame, _to_uint8((floor + (1 - squeeze) * y) * 255))


def _backlight(
    frame: np.ndarray, rng: np.random.Generator, s: float, boxes: np.ndarray | None
) -> np.ndarray:
    """A bright window behind the subject, exposure set for it: the background lifted
    towards white along a random-direction gradient (50..90% of the way at s = 1), the
    subject (head and shoulders under each face) darkened by up to 55%."""
    h, w = frame.shape[:2]
    theta = rng.uniform(0, 2 * math.pi)
    xs = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    ys = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
    ramp = xs[None, :] * math.cos(theta) + ys[:, None] * math.sin(theta)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    subject = _subject_mask(h, w, boxes)
    lift = (s * (0.5 + 0.4 * ramp) * (1 - subject))[..., None]
    x = frame.astype(np.float32)
    x += (255 - x) * lift
    x *= (1 - 0.55 * s * subject)[..., None]
    return _to_uint8(x)


_MASK_STEP = 8  # the subject mask is drawn at 1/8 resolution, blurred, then resized


def _subject_mask(h: int, w: int, boxes: np.ndarray | None) -> np.ndarray:
    """float32 ``[h, w]`` in 0..1, soft-edged: per face an ellipse over the head (1.25x its
    box) and shoulders down to the bottom of the frame (2.4x its width). ``None`` stands
    for one face in the middle of the frame, 30% of its width."""
    if boxes is None:
        boxes = np.array([[0.35 * w, 0.3 * h, 0.65 * w, 0.3 * h + 0.3 * w]], np.float32)
    b = np.asarray(boxes, np.float32).reshape(-1, 4) / _MASK_STEP
    small = np.zeros((max(1, h // _MASK_STEP), max(1, w // _MASK_STEP)), np.float32)
    for x1, y1, x2, y2 in b:
        cx, cy, bw, bh = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        head = (round(cx), round(cy)), (round(0.62 * bw), round(0.7 * bh))
        cv2.ellipse(small, *head, 0, 0, 360, 1.0, -1)
        shoulders = (round(cx), round(cy + 1.3 * bh)), (round(1.2 * bw), round(0.6 * bh))
        cv2.ellipse(small, *shoulders, 0, 0, 360, 1.0, -1)
        top_left = (round(cx - 1.2 * bw), round(cy + 1.3 * bh))
        cv2.rectangle(small, top_left, (round(cx + 1.2 * bw), small.shape[0]), 1.0, -1)
    small = cv2.GaussianBlur(small, (0, 0), 1.5)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _noise(frame: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """Sensor noise per pixel and channel: variance ``(8 s)^2 + 0.5 s * value``
    (Gaussian read noise + Poisson-like shot noise; std ~11 on mid-grey at s = 1)."""
    std = np.sqrt((8 * s) ** 2 + 0.5 * s * np.arange(256, dtype=np.float32))  # per level
    x = rng.standard_normal(frame.shape, dtype=np.float32)
    x *= std[frame]
    x += frame
    return _to_uint8(x)


def _motion_blur(frame: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """A line kernel at a random angle, up to 3% of the frame width long (19 px at 640)."""
    length = s * 0.03 * frame.shape[1]
    if length < 1.5:
        return frame.copy()
    size = 2 * math.ceil(length / 2) + 1
    theta = rng.uniform(0, math.pi)
    dx, dy = length / 2 * math.cos(theta), length / 2 * math.sin(theta)
    c = size // 2
    kernel = np.zeros((size, size), np.float32)
    shift = 4  # sub-pixel end points, in 1/16 pixel
    ends = [round((c + sign * d) * 2**shift) for sign in (-1, 1) for d in (dx, dy)]
    cv2.line(kernel, ends[0:2], ends[2:4], 1.0, 1, cv2.LINE_AA, shift)
    kernel /= kernel.sum()
    return cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT)


def _jpeg(frame: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """Re-encoded as JPEG at quality ``60 - 50 s`` (60..10), with OpenCV."""
    quality = round(60 - 50 * s)
    ok, data = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"cv2.imencode failed for a {frame.shape} frame")
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])


def _color_cast(frame: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """Per-channel gains ``exp(0.35 s u)``, ``u`` uniform in [-1, 1] per channel less its
    mean, so the cast tints without changing the overall brightness much."""
    u = rng.uniform(-1, 1, 3)
    gains = np.exp(0.35 * s * (u - u.mean()))
    table = np.arange(256, dtype=np.float64)[:, None] * gains  # [256, 3]
    return cv2.LUT(frame, _to_uint8(table)[:, None, :])


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


_DEGRADATIONS = {  # all but "backlight", which also takes the boxes
    "motion_blur": _motion_blur,
    "color_cast": _color_cast,
    "low_contrast": _low_contrast,
    "noise": _noise,
    "jpeg": _jpeg,
}
