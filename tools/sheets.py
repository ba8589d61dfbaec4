"""Contact sheets: labelled face crops on one PNG, so a person can check labels by eye.

Each tile is a face crop (the box grown by 25% a side, resized to ``tile`` pixels)
with a coloured frame (green = smiling, red = not smiling, grey = unknown,
blue = ignore region) and a caption line under it (e.g. the teachers' P(happy)).

Not the job of this module: deciding labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

GREEN, RED, GREY, BLUE = (40, 170, 40), (30, 30, 210), (150, 150, 150), (200, 120, 30)  # BGR


@dataclass(frozen=True)
class Tile:
    """One face: ``image`` path, ``box`` pixels (x1, y1, x2, y2), ``smile`` 1/0/None, caption."""

    image: Path
    box: tuple[float, float, float, float]
    smile: int | None
    caption: str
    ignore: bool = False


def manifest_tiles(faces: pd.DataFrame, root: Path) -> list[Tile]:
    """One tile per face row of a manifest (paths relative to ``root``), captioned
    with the face width in pixels and the source."""
    return [
        Tile(
            root / row.image,
            (row.x1, row.y1, row.x2, row.y2),
            None if pd.isna(row.smile) else int(row.smile),
            f"{row.x2 - row.x1:.0f}px {row.source}",
            bool(row.ignore),
        )
        for row in faces[faces["face"].notna()].itertuples()
    ]


def face_crop(bgr: np.ndarray, box: Sequence[float], tile: int, grow: float = 0.25) -> np.ndarray:
    """The box grown by ``grow`` of its size on each side, padded at the edges, ``tile``^2 BGR."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    side = max(w, h) * (1 + 2 * grow)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    size = max(1, round(side))
    pad = size
    padded = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    crop = padded[top + pad : top + pad + size, left + pad : left + pad + size]
    crop = cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_AREA)
    # Draw the box itself, in tile coordinates.
    s = tile / size
    p1 = (round((x1 - left) * s), round((y1 - top) * s))
    p2 = (round((x2 - left) * s), round((y2 - top) * s))
    cv2.rectangle(crop, p1, p2, (255, 255, 255), 1)
    return crop


def contact_sheet(tiles: Sequence[Tile], out: Path, columns: int = 10, tile: int = 96) -> Path:
    """Write a PNG grid of ``tiles``; returns ``out``. Unreadable images become black tiles."""
    caption_h = 14
    rows = max(1, -(-len(tiles) // columns))
    sheet = np.full((rows * (tile + caption_h + 6), columns * (tile + 6), 3), 255, np.uint8)
    cache: dict[Path, np.ndarray | None] = {}
    for n, t in enumerate(tiles):
        if t.image not in cache:
            cache[t.image] = cv2.imread(str(t.image), cv2.IMREAD_COLOR)
        bgr = cache[t.image]
        crop = (
            face_crop(bgr, t.box, tile) if bgr is not None else np.zeros((tile, tile, 3), np.uint8)
        )
        colour = BLUE if t.ignore else {1: GREEN, 0: RED}.get(t.smile, GREY)
        y, x = (n // columns) * (tile + caption_h + 6), (n % columns) * (tile + 6)
        sheet[y : y + tile + 6, x : x + tile + 6] = colour
        sheet[y + 3 : y + 3 + tile, x + 3 : x + 3 + tile] = crop
        cv2.putText(
            sheet,
            t.caption[:18],
            (x + 2, y + tile + 6 + caption_h - 3),
            cv2.FONT_HERSHEY_PLAIN,
            0.8,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), sheet):
        raise OSError(f"{out}: could not write PNG")
    return out
