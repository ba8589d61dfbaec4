"""Synthetic detection scenes: face crops pasted onto face-free background photos.

:func:`compose` makes one scene: the background is resized to cover the output size
(aspect kept) and cropped at random; each face crop is flipped at random, scaled so its
face box is ``min_face_width * W`` to ``max_face_width * H`` pixels wide (log-uniform),
placed so its face box lies inside the image and overlaps no earlier face box above
``max_iou``, brightness/contrast-matched part-way to the background under it and blended
through a feathered, ellipse-ish alpha mask. The returned boxes are exact: the crop's
brow-to-chin box through the very scale and integer offset used to paste it.

:func:`make_scenes` writes ``n`` such scenes as JPEGs and returns manifest rows. Scene
``i`` draws everything from its own generator, ``SeedSequence([seed, i])``, so scenes can
be made in parallel (``start``) or resumed, with identical bytes for a seed.

Boxes are ``float32 (x1, y1, x2, y2)`` pixels, continuous coordinates (the whole image
is ``(0, 0, W, H)``). Not done here: splitting (rows carry the leak ``group``), reading
crops from photos (callers build :class:`FaceCrop` with the face box inside the crop;
crops should have a modest margin, like faces24, since the mask is inscribed in the crop).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from smilebot.boxes import area, pairwise_intersection, pairwise_iou

logger = logging.getLogger(__name__)

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601
_MASK_POWER = 2.5  # superellipse exponent of the alpha mask: 2 = ellipse, larger = boxier
_IGNORE_BELOW = 20.0  # face boxes narrower than this (pixels) are manifest "ignore" faces
COLUMNS = (  # the manifest schema, in order
    "image", "width", "height", "source", "group", "face", "x1", "y1", "x2", "y2",
    "box_source", "ignore", "smile", "smile_source", "split",
)  # fmt: skip

# OpenCV's 24x24 crops are looser than brow-to-chin. A detector trained on whole crops
# predicted boxes 25% wider, 18% taller and centred 11% of a face height higher than
# brow-to-chin boxes (ARCHITECTURE.md), so inside a crop the face box is
# w = 24 / 1.25 = 19.2, h = 24 / 1.18 = 20.34, centre (12, 12 + 0.11 h) = (12, 14.24):
# x 2.4..21.6, y 4.07..24.41, the bottom clipped to the crop: (2.4, 4.068, 21.6, 24.0).
_F24_W, _F24_H = 24 / 1.25, 24 / 1.18
_F24_CY = 12 + 0.11 * _F24_H
FACES24_BOX = (
    12 - _F24_W / 2,
    max(_F24_CY - _F24_H / 2, 0.0),
    12 + _F24_W / 2,
    min(_F24_CY + _F24_H / 2, 24.0),
)


class SynthError(Exception):
    """Bad input to the synthesizer (crop, config, background, output folder)."""


@dataclass(frozen=True)
class FaceCrop:
    """A face to paste: ``pixels`` uint8 ``[h, w]`` gray or ``[h, w, 3]`` RGB; ``box`` the
    brow-to-chin face box inside the crop, crop pixels; ``smile`` 1, 0 or None (unknown);
    ``source`` where it came from (e.g. ``"faces24:17"``); ``smile_source`` who said so."""

    pixels: np.ndarray
    box: tuple[float, float, float, float]
    smile: int | None = None
    source: str = ""
    smile_source: str = ""

    def __post_init__(self) -> None:
        p = self.pixels
        if p.dtype != np.uint8 or not (p.ndim == 2 or (p.ndim == 3 and p.shape[2] == 3)):
            raise SynthError(f"crop {self.source}: pixels must be uint8 [h,w] or [h,w,3]")
        x1, y1, x2, y2 = self.box
        if not (0 <= x1 < x2 <= p.shape[1] and 0 <= y1 < y2 <= p.shape[0]):
            raise SynthError(f"crop {self.source}: box {self.box} not inside {p.shape[:2]}")
        if self.smile not in (0, 1, None):
            raise SynthError(f"crop {self.source}: smile must be 1, 0 or None, got {self.smile}")


@dataclass(frozen=True)
class SynthConfig:
    """How scenes are made. Defaults in brackets.

    width, height: output size in pixels [640 x 480]. min_faces, max_faces: faces drawn
    per scene by :func:`make_scenes` [1..6]. min_face_width: smallest face box width as a
    fraction of the image width [1/16]; max_face_width: largest, as a fraction of the image
    HEIGHT [0.7]. max_iou: largest IoU allowed between face boxes [0.0: none overlap].
    max_cover: largest fraction of an earlier face box that a later crop (its whole
    rectangle, margins included) may cover, since it is pasted on top [0.05]. tries:
    placements tried per face before it is dropped [30]. feather: fraction of the crop
    half-size over which the mask fades [0.15].
    match: range of the random fraction by which the crop's luma mean and std move toward
    the background's under it [0.2..0.8]. tint: largest warm cast given to gray crops,
    gains (1+t, 1, 1-t) with t uniform in [-tint/3, tint] [0.12]. flip: probability of a
    horizontal flip of each crop and of the background [0.5]. blur: Gaussian sigma per unit
    of upscaling, so upscaled crops are not blocky [0.25]. noise: std of gray-level noise
    added to pasted faces [2.0]. zoom: largest extra background zoom beyond cover [1.3].
    """

    width: int = 640
    height: int = 480
    min_faces: int = 1
    max_faces: int = 6
    min_face_width: float = 1 / 16
    max_face_width: float = 0.7
    max_iou: float = 0.0
    max_cover: float = 0.05
    tries: int = 30
    feather: float = 0.15
    match: tuple[float, float] = (0.2, 0.8)
    tint: float = 0.12
    flip: float = 0.5
    blur: float = 0.25
    noise: float = 2.0
    zoom: float = 1.3

    def __post_init__(self) -> None:
        checks = {
            "width/height": self.width > 0 and self.height > 0,
            "min_faces/max_faces": 0 <= self.min_faces <= self.max_faces,
            "min_face_width/max_face_width": 0
            < self.min_face_width * self.width
            <= self.max_face_width * self.height,
            "max_iou": 0 <= self.max_iou < 1,
            "max_cover": 0 <= self.max_cover <= 1,
            "tries": self.tries >= 1,
            "feather": 0 < self.feather <= 1,
            "match": 0 <= self.match[0] <= self.match[1] <= 1,
            "tint/blur/noise": min(self.tint, self.blur, self.noise) >= 0,
            "flip": 0 <= self.flip <= 1,
            "zoom": self.zoom >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise SynthError(f"SynthConfig: bad {name} in {self}")


@dataclass(frozen=True)
class Scene:
    """One composed scene: ``image`` uint8 RGB ``[H, W, 3]``; ``boxes`` float32 ``[K, 4]``
    pixels, brow-to-chin; per box its crop's ``smiles``, ``sources`` and ``indices`` (the
    position in the ``faces`` given to :func:`compose`; faces that found no room are left out)."""

    image: np.ndarray
    boxes: np.ndarray
    smiles: list[int | None]
    sources: list[str]
    indices: list[int]


def faces24_crops(faces: np.ndarray) -> list[FaceCrop]:
    """OpenCV's 24x24 gray crops, uint8 ``[N, 24, 24]`` -> unlabeled crops with FACES24_BOX."""
    if faces.dtype != np.uint8 or faces.ndim != 3 or faces.shape[1:] != (24, 24):
        raise SynthError(f"faces24: expected uint8 [N,24,24], got {faces.dtype} {faces.shape}")
    return [FaceCrop(f, FACES24_BOX, None, f"faces24:{j}") for j, f in enumerate(faces)]


def compose(
    background: np.ndarray, faces: Sequence[FaceCrop], rng: np.random.Generator, config: SynthConfig
) -> Scene:
    """Paste every face of ``faces`` (in order; one that finds no room is skipped) onto
    ``background`` (uint8 ``[H, W]``, ``[H, W, 3]`` RGB or ``[H, W, 4]`` RGBA)."""
    canvas = _fit_background(_as_rgb(background), rng, config)
    boxes: list[np.ndarray] = []
    indices = []
    for j, face in enumerate(faces):
        pixels, box = face.pixels, np.asarray(face.box, np.float64)
        if rng.random() < config.flip:
            pixels = pixels[:, ::-1]
            box = np.array([pixels.shape[1] - box[2], box[1], pixels.shape[1] - box[0], box[3]])
        placed = _place(pixels.shape[:2], box, np.array(boxes).reshape(-1, 4), rng, config)
        if placed is None:
            logger.debug("no room for face %d (%s)", j, face.source)
            continue
        size, offset, face_box = placed
        _paste(canvas, pixels, size, offset, rng, config)
        boxes.append(face_box)
        indices.append(j)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return Scene(
        image,
        np.array(boxes, np.float32).reshape(-1, 4),
        [faces[j].smile for j in indices],
        [faces[j].source for j in indices],
        indices,
    )


def make_scenes(
    backgrounds: Sequence[Path | str | np.ndarray],
    crops: Sequence[FaceCrop],
    n: int,
    seed: int,
    out_dir: Path,
    root: Path,
    config: SynthConfig | None = None,
    *,
    start: int = 0,
    resume: bool = False,
) -> list[dict]:
    """Write scenes ``start .. start+n-1`` as ``out_dir/synth_{i:06d}.jpg`` (JPEG quality 90,
    atomically) and return their manifest rows, one per face (a face-free scene gets one
    row with empty face columns). Each scene takes one background and
    ``min_faces..max_faces`` distinct crops at random. ``group`` is
    ``"background:<name>"`` (file name, or ``array<j>`` for arrays) so that one background
    never feeds two splits; the crops are NOT grouped: give train and val scenes disjoint
    crop pools if faces must not leak. With ``resume`` an existing file is kept (trusted to
    come from the same inputs) and its rows recomputed: the scene is composed, not encoded."""
    config = config or SynthConfig()
    out_dir, root = Path(out_dir), Path(root)
    if not backgrounds or not crops:
        raise SynthError("make_scenes: need at least one background and one crop")
    try:
        rel_dir = out_dir.resolve().relative_to(root.resolve())
    except ValueError:
        raise SynthError(f"make_scenes: out_dir {out_dir} is not inside root {root}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    cache: dict[int, np.ndarray] = {}
    rows: list[dict] = []
    written = 0
    for i in range(start, start + n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, i]))
        b = int(rng.integers(len(backgrounds)))
        if b not in cache:
            cache[b] = _load(backgrounds[b])
        k = min(int(rng.integers(config.min_faces, config.max_faces + 1)), len(crops))
        chosen = [crops[j] for j in rng.choice(len(crops), k, replace=False)]
        scene = compose(cache[b], chosen, rng, config)
        name = f"synth_{i:06d}.jpg"
        path = out_dir / name
        if not (resume and path.exists()):
            _write_jpeg(path, scene.image)
            written += 1
        group = f"background:{_name(backgrounds[b], b)}"
        rows += _rows((rel_dir / name).as_posix(), group, scene, chosen, config)
    logger.info("synth: %d scenes (%d written) in %s", n, written, out_dir)
    return rows


def _place(shape, box, taken, rng, config):
    """Scale and integer offset putting ``box`` inside the image clear of ``taken`` boxes."""
    h, w = shape
    lo = math.log(config.min_face_width * config.width)
    hi = math.log(config.max_face_width * config.height)
    for _ in range(config.tries):
        scale = math.exp(rng.uniform(lo, hi)) / (box[2] - box[0])
        pw, ph = max(1, round(w * scale)), max(1, round(h * scale))
        b = box * np.array([pw / w, ph / h, pw / w, ph / h])  # cv2.resize's exact mapping
        x_lo, x_hi = math.ceil(-b[0]), math.floor(config.width - b[2])
        y_lo, y_hi = math.ceil(-b[1]), math.floor(config.height - b[3])
        if x_lo > x_hi or y_lo > y_hi:
            continue
        ox, oy = int(rng.integers(x_lo, x_hi + 1)), int(rng.integers(y_lo, y_hi + 1))
        placed = b + np.array([ox, oy, ox, oy])
        if len(taken) and pairwise_iou(placed[None], taken).max() > config.max_iou:
            continue
        crop = np.array([[ox, oy, ox + pw, oy + ph]], np.float64)
        if len(taken) and (pairwise_intersection(crop, taken)[0] / area(taken)).max() > (
            config.max_cover
        ):
            continue  # the new crop, pasted on top, would hide part of an earlier face
        return (pw, ph), (ox, oy), placed
    return None


def _paste(canvas, pixels, size, offset, rng, config) -> None:
    """Resize, match, tint and blend ``pixels`` into ``canvas`` (float32 RGB) in place."""
    (pw, ph), (ox, oy) = size, offset
    up = pw / pixels.shape[1]
    face = cv2.resize(
        np.ascontiguousarray(pixels),
        (pw, ph),
        interpolation=cv2.INTER_LINEAR if up > 1 else cv2.INTER_AREA,
    ).astype(np.float32)
    if up > 1 and config.blur > 0:
        face = cv2.GaussianBlur(face, (0, 0), config.blur * up)
    gray = face.ndim == 2
    face = np.repeat(face[..., None], 3, axis=2) if gray else face
    alpha = _mask(pw, ph, config.feather)
    # Only the part of the crop inside the image is pasted.
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + pw, canvas.shape[1]), min(oy + ph, canvas.shape[0])
    face = face[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    alpha = alpha[y0 - oy : y1 - oy, x0 - ox : x1 - ox, None]
    under = canvas[y0:y1, x0:x1]
    t = rng.uniform(*config.match)
    weights = alpha[..., 0] + 1e-6
    fm, fs = _stats(face @ _LUMA, weights)
    bm, bs = _stats(under @ _LUMA, weights)
    gain = float(np.clip((bs / max(fs, 1.0)) ** t, 0.6, 1.5))
    face = (face - fm) * gain + fm + t * (bm - fm)
    tint = rng.uniform(-config.tint / 3, config.tint)
    if gray:
        face *= np.array([1 + tint, 1, 1 - tint], np.float32)
    face += rng.normal(0, config.noise, (*face.shape[:2], 1)).astype(np.float32)
    under += alpha * (np.clip(face, 0, 255) - under)


def _mask(w: int, h: int, feather: float) -> np.ndarray:
    """Alpha float32 ``[h, w]``: 1 inside a superellipse inscribed in the crop, fading to 0
    over its outer ``feather`` fraction (smoothstep), so crop corners stay background."""
    u = np.abs((np.arange(w, dtype=np.float32) + 0.5) / w * 2 - 1)
    v = np.abs((np.arange(h, dtype=np.float32) + 0.5) / h * 2 - 1)
    r = (u[None, :] ** _MASK_POWER + v[:, None] ** _MASK_POWER) ** (1 / _MASK_POWER)
    a = np.clip((1 - r) / feather, 0, 1)
    return a * a * (3 - 2 * a)


def _stats(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Weighted mean and standard deviation."""
    mean = float(np.average(values, weights=weights))
    return mean, float(np.sqrt(np.average((values - mean) ** 2, weights=weights)))


def _fit_background(image: np.ndarray, rng: np.random.Generator, config: SynthConfig):
    """Cover-resize (aspect kept, random extra zoom), random crop and flip -> float32 RGB."""
    h, w = image.shape[:2]
    scale = max(config.width / w, config.height / h) * rng.uniform(1, config.zoom)
    nw, nh = max(config.width, math.ceil(w * scale)), max(config.height, math.ceil(h * scale))
    image = cv2.resize(
        image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    x0 = int(rng.integers(nw - config.width + 1))
    y0 = int(rng.integers(nh - config.height + 1))
    image = image[y0 : y0 + config.height, x0 : x0 + config.width]
    if rng.random() < config.flip:
        image = image[:, ::-1]
    return image.astype(np.float32)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise SynthError(f"background must be uint8 [H,W(,C)], got {image.dtype} {image.shape}")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] not in (3, 4):
        raise SynthError(f"background must have 1, 3 or 4 channels, got {image.shape}")
    return image[..., :3]


def _load(background: Path | str | np.ndarray) -> np.ndarray:
    if isinstance(background, np.ndarray):
        return _as_rgb(background)
    bgr = cv2.imread(str(background), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SynthError(f"cannot read background {background}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _name(background: Path | str | np.ndarray, j: int) -> str:
    return f"array{j}" if isinstance(background, np.ndarray) else Path(background).name


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise SynthError(f"cannot encode {path}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)


def _rows(image: str, group: str, scene: Scene, chosen, config: SynthConfig) -> list[dict]:
    """Manifest rows of one scene (coordinates rounded to 1e-4 px, below float32's step)."""
    base = (image, config.width, config.height, "synth", group)
    if not len(scene.boxes):  # backgrounds are face-free, so synth asserts "no face"
        return [dict(zip(COLUMNS, (*base, *[None] * 5, "synth", False, None, "", ""), strict=True))]
    rows = []
    for k, (box, j) in enumerate(zip(scene.boxes.tolist(), scene.indices, strict=True)):
        crop = chosen[j]
        said = crop.smile_source if crop.smile is not None else ""
        ignore = box[2] - box[0] < _IGNORE_BELOW
        values = (*base, k, *(round(v, 4) for v in box), "synth", ignore, crop.smile, said, "")
        rows.append(dict(zip(COLUMNS, values, strict=True)))
    return rows
