"""Anchor boxes for the SSD: a deterministic grid of boxes per feature map.

An :class:`AnchorSpec` says how big the model input is, which feature maps the
heads read (by stride) and which anchor sizes each one carries. It is serialised
into every model's sidecar, so the device rebuilds exactly the anchors the model
was trained with.

Count arithmetic. A level of stride ``s`` on a ``W x H`` input has a feature map
of ``ceil(H / s)`` rows by ``ceil(W / s)`` columns (what a chain of stride-2
"same" convolutions gives) and ``len(scales) * len(aspect_ratios)`` anchors per
cell. For :data:`DEFAULT_SPEC` (192 x 144 input, one aspect ratio)::

    stride  8: 18 x 24 cells x 2 scales = 864
    stride 16:  9 x 12 cells x 2 scales = 216
    stride 32:  5 x  6 cells x 3 scales =  90
                                   total 1170

Order of the anchors (it must equal the order of the model's output rows):
level, then row, then column, then scale, then aspect ratio; i.e. a head's
``[rows, cols, k * D]`` output reshaped to ``[rows * cols * k, D]``, levels
concatenated.

Geometry: the centre of cell ``(row, col)`` of stride ``s`` is the input pixel
``((col + 0.5) * s, (row + 0.5) * s)``; an anchor of scale ``S`` (input pixels)
and aspect ratio ``r`` (width / height) is ``S * sqrt(r)`` pixels wide and
``S / sqrt(r)`` high. Anchors are normalized ``(x1, y1, x2, y2)`` and are not
clipped to the image.

Not the job of this module: matching anchors to faces (matching.py) or coding
box offsets against them (box_coder.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, dataclass, fields

import numpy as np


@dataclass(frozen=True)
class AnchorLevel:
    """One feature map: ``stride`` in input pixels per cell, anchor ``scales`` in input pixels."""

    stride: int
    scales: tuple[float, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.stride, int) or self.stride <= 0:
            raise ValueError(
                f"anchor level: stride must be a positive integer, got {self.stride!r}"
            )
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.scales or any(not s > 0 for s in self.scales):
            raise ValueError(f"anchor level: scales must be positive numbers, got {self.scales!r}")


@dataclass(frozen=True)
class AnchorSpec:
    """The anchor layout of a model; see the module docstring for the arithmetic."""

    input_width: int
    input_height: int
    levels: tuple[AnchorLevel, ...]
    aspect_ratios: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        for name in ("input_width", "input_height"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"anchor spec: {name} must be a positive integer, got {value!r}")
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(self, "aspect_ratios", tuple(float(r) for r in self.aspect_ratios))
        if not self.levels:
            raise ValueError("anchor spec: levels must not be empty")
        if not self.aspect_ratios or any(not r > 0 for r in self.aspect_ratios):
            raise ValueError(
                f"anchor spec: aspect_ratios must be positive numbers, got {self.aspect_ratios!r}"
            )

    def grid(self, level: AnchorLevel) -> tuple[int, int]:
        """``(rows, cols)`` of the feature map of ``level``."""
        return math.ceil(self.input_height / level.stride), math.ceil(
            self.input_width / level.stride
        )

    def anchors_per_cell(self, level: AnchorLevel) -> int:
        """Anchors in each cell of ``level``: scales x aspect ratios."""
        return len(level.scales) * len(self.aspect_ratios)

    def level_counts(self) -> list[int]:
        """Anchors contributed by each level, in order."""
        return [math.prod(self.grid(lv)) * self.anchors_per_cell(lv) for lv in self.levels]

    @property
    def num_anchors(self) -> int:
        """Total anchors = sum over levels of rows * cols * scales * aspect ratios."""
        return sum(self.level_counts())

    def arithmetic(self) -> str:
        """The count arithmetic as text, one line per level and the total."""
        lines = []
        for level, count in zip(self.levels, self.level_counts(), strict=True):
            rows, cols = self.grid(level)
            lines.append(
                f"stride {level.stride:>2}: {rows:>2} x {cols:>2} cells x "
                f"{len(level.scales)} scales x {len(self.aspect_ratios)} ratios = {count}"
            )
        lines.append(f"total {self.num_anchors}")
        return "\n".join(lines)

    def generate(self) -> np.ndarray:
        """All anchors as ``float32[num_anchors, 4]`` normalized ``(x1, y1, x2, y2)``."""
        shapes = [(math.sqrt(r), 1 / math.sqrt(r)) for r in self.aspect_ratios]
        per_level = []
        for level in self.levels:
            rows, cols = self.grid(level)
            cy, cx = np.meshgrid(
                (np.arange(rows) + 0.5) * level.stride,
                (np.arange(cols) + 0.5) * level.stride,
                indexing="ij",
            )
            wh = np.array(
                [(s * rw, s * rh) for s in level.scales for rw, rh in shapes], dtype=np.float64
            )
            centres = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)
            boxes = np.concatenate([centres - wh / 2, centres + wh / 2], axis=-1)
            per_level.append(boxes.reshape(-1, 4))
        scale = np.array([self.input_width, self.input_height] * 2, dtype=np.float64)
        return (np.concatenate(per_level) / scale).astype(np.float32)

    def to_dict(self) -> dict:
        """A JSON-ready dict (the ``anchors`` entry of a model sidecar)."""
        return {
            "input_width": self.input_width,
            "input_height": self.input_height,
            "levels": [{"stride": lv.stride, "scales": list(lv.scales)} for lv in self.levels],
            "aspect_ratios": list(self.aspect_ratios),
        }

    @classmethod
    def from_dict(cls, data: dict) -> AnchorSpec:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ValueError naming them."""
        _check_keys(data, cls, "anchor spec")
        levels = []
        for i, level in enumerate(data["levels"]):
            _check_keys(level, AnchorLevel, f"anchor spec: levels[{i}]")
            levels.append(AnchorLevel(stride=level["stride"], scales=tuple(level["scales"])))
        return cls(
            input_width=data["input_width"],
            input_height=data["input_height"],
            levels=tuple(levels),
            aspect_ratios=tuple(data.get("aspect_ratios", (1.0,))),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AnchorSpec:
        return cls.from_dict(json.loads(text))


def _check_keys(data: object, cls: type, where: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is MISSING}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    missing = sorted(required - set(data))
    if missing:
        raise ValueError(f"{where}: missing key {missing[0]!r}")


DEFAULT_SPEC = AnchorSpec(
    input_width=192,
    input_height=144,
    levels=(
        AnchorLevel(stride=8, scales=(12.0, 20.0)),
        AnchorLevel(stride=16, scales=(32.0, 48.0)),
        AnchorLevel(stride=32, scales=(72.0, 104.0, 144.0)),
    ),
)
