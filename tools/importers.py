"""Importers: image folders and public face datasets -> manifest rows (manifest.py).

Each importer returns :class:`Imported` ``(manifest, skipped)``: a manifest DataFrame whose
``image`` paths are POSIX paths relative to the data ``root`` you give, and the list of
entries it left out as :class:`Skipped` ``(file, line, reason)``, also logged. One bad
line or image never stops an import; a missing annotation file or an images folder
outside ``root`` does (``OSError`` / :class:`ImporterError`).

Image sizes come from decoding the file with OpenCV (``cv2.imdecode``, which applies the
EXIF orientation, as ``cv2.imread`` does); an unreadable or truncated image (a JPEG without
its end-of-image marker) is skipped. Boxes become pixel ``(x1, y1, x2, y2)`` in continuous
coordinates; a :class:`~smilebot_tools.convention.BoxCorrection`, when given, maps them to
the brow-to-chin convention; then they are clipped to the image. Faces whose final box is
narrower or shorter than ``MIN_FACE_PX`` are ``ignore`` regions.

Not the job of this module: finding faces (kindle.py), splits (manifest.assign_splits),
or reading the bot's capture log itself (``smilebot captures export`` writes what
:func:`captures` reads).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import posixpath
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pandas as pd

from smilebot_tools import manifest
from smilebot_tools.convention import BoxCorrection

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")
#: Faces whose box is narrower or shorter than this (pixels) are ignore regions.
MIN_FACE_PX = 20.0
GENKI_SMILE_SOURCE = "rater:genki4k"
CELEBA_SMILE_SOURCE = "rater:celeba"
CELEBA_SPLITS = {"0": "train", "1": "val", "2": "test"}
SMILE_BY_EYE = {"yes": 1, "no": 0, "slight": None}
RATER_COLUMNS = ("file", "face", "x", "y", "w", "h", "smile_by_eye")


class ImporterError(ValueError):
    """An input that cannot be imported at all (wrong header, images outside the root)."""


class Skipped(NamedTuple):
    """One entry left out: its file, 1-based line (0: no single line, e.g. an image), why."""

    file: str
    line: int
    reason: str


class Imported(NamedTuple):
    """What an importer returns: the manifest rows and the entries left out."""

    manifest: pd.DataFrame
    skipped: list[Skipped]


class UnreadableImageError(Exception):
    """An image file that is missing, cannot be decoded, or is truncated."""


# --- shared helpers ------------------------------------------------------------------


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` in pixels of an image file, as ``cv2.imread`` would load it.

    Raises :class:`UnreadableImageError` with the reason for a missing, undecodable or
    truncated file (OpenCV decodes a truncated JPEG without complaint, so JPEGs are also
    checked for their end-of-image marker after the last start-of-scan).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise UnreadableImageError(f"cannot read: {err.strerror or err}") from None
    if data[:2] == b"\xff\xd8":
        last_scan = data.rfind(b"\xff\xda")
        if last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0:
            raise UnreadableImageError("truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImageError("not a decodable image (corrupt, truncated or unknown)")
    return int(image.shape[1]), int(image.shape[0])


def relative_to_root(path: Path, root: Path) -> str:
    """POSIX path of ``path`` relative to ``root`` (symlinks not resolved)."""
    absolute, base = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError:
        raise ImporterError(f"{path}: not under the data root {root}") from None


def _face_box(
    xywh: Iterable[float], width: int, height: int, correction: BoxCorrection | None
) -> tuple[list[float] | None, bool]:
    """Pixel ``x, y, w, h`` -> (corrected, clipped ``[x1, y1, x2, y2]`` or None if empty,
    ignore for size)."""
    x, y, w, h = (float(v) for v in xywh)
    box = np.array([x, y, x + w, y + h], np.float64)
    if correction is not None:
        box = correction.apply(box)
    box = np.clip(box, 0.0, [width, height, width, height])
    bw, bh = box[2] - box[0], box[3] - box[1]
    if not (bw > 0 and bh > 0):
        return None, False
    return box.tolist(), bool(min(bw, bh) < MIN_FACE_PX)


def _done(name: str, rows: list[dict], skipped: list[Skipped]) -> Imported:
    df = manifest.new(rows)
    log.info(
        "%s: %d rows, %d images, %d entries skipped",
        name,
        len(df),
        df["image"].nunique(),
        len(skipped),
    )
    for entry in skipped[:20]:
        log.warning("%s: skipped %s line %d: %s", name, *entry)
    if len(skipped) > 20:
        log.warning("%s: ... and %d more skipped entries", name, len(skipped) - 20)
    return Imported(df, skipped)


def _warn_raw(name: str, correction: BoxCorrection | None) -> None:
    if correction is None:
        log.warning(
            "%s: boxes imported raw: they do not follow the brow-to-chin convention "
            "(box_source ends in ':raw'); pass a measured correction",
            name,
        )


def _lines(path: Path) -> list[str]:
    return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()


# --- image folder --------------------------------------------------------------------


def image_folder(
    folder: Path, root: Path, source: str = "folder", group_by_dir: bool = False
) -> Imported:
    """Every image file under ``folder`` (recursive) as one unlabeled no-face row.

    ``box_source`` is ``""`` (faces unknown, for kindling); ``group`` is ``folder:`` plus
    the image path relative to ``root`` (each photo its own group), or plus its folder's
    path with ``group_by_dir``.
    """
    relative_to_root(folder, root)
    rows, skipped = [], []
    files = sorted(
        p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    for path in files:
        image = relative_to_root(path, root)
        try:
            width, height = image_size(path)
        except UnreadableImageError as err:
            skipped.append(Skipped(str(path), 0, str(err)))
            continue
        group = (posixpath.dirname(image) or ".") if group_by_dir else image
        rows.append(
            {"image": image, "width": width, "height": height, "source": source}
            | {"group": f"folder:{group}"}
        )
    return _done("image_folder", rows, skipped)


# --- the bot's captures ----------------------------------------------------------------

CAPTURES_JSONL = "captures.jsonl"


def captures(export: Path, root: Path, bot: str = "bot") -> Imported:
    """A ``smilebot captures export`` folder (images + ``captures.jsonl``) as unlabeled rows.

    One no-face row per capture with an image (for kindling or rating), ``source``
    ``"captures"``; ``group`` ``capture:<bot>:<UTC day>``, so a day's captures (often the same
    people, minutes apart) stay in one split. Privacy-mode records (no image), bad JSON lines
    and unreadable images are skipped with the line number. The bot's own detections are not
    imported as labels: a model must not be trained on its own opinions.
    """
    relative_to_root(export, root)
    path = Path(export) / CAPTURES_JSONL
    rows, skipped = [], []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            name, when = record["image"], float(record["time"])
        except (ValueError, KeyError, TypeError) as err:
            skipped.append(Skipped(str(path), number, f"not a capture record: {err}"))
            continue
        if not name:
            skipped.append(Skipped(str(path), number, "no image (privacy mode)"))
            continue
        image_path = Path(export) / name
        try:
            width, height = image_size(image_path)
        except UnreadableImageError as err:
            skipped.append(Skipped(str(image_path), number, str(err)))
            continue
        day = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d")
        rows.append(
            {
                "image": relative_to_root(image_path, root),
                "width": width,
                "height": height,
                "source": "captures",
                "group": f"capture:{bot}:{day}",
            }
        )
    return _done("captures", rows, skipped)


# --- WIDER FACE ----------------------------------------------------------------------


class _BadLineError(Exception):
    def __init__(self, index: int, reason: str):
        super().__init__(index, reason)
        self.index, self.reason = index, reason


def _is_image_name(line: str) -> bool:
    return line.strip().lower().endswith(IMAGE_EXTENSIONS)


def _wider_faces(lines: list[str], j: int) -> tuple[list[tuple[int, list[int]]], int]:
    """Count line at index ``j`` and its face lines -> ([(line number, 10 ints)], next index)."""
    try:
        count = int(lines[j])
    except (IndexError, ValueError):
        raise _BadLineError(j, "expected a face count") from None
    if count < 0:
        raise _BadLineError(j, f"negative face count {count}")
    if count == 0 and (j + 1 >= len(lines) or _is_image_name(lines[j + 1])):
        return [], j + 1  # a 0-face entry without its line of zeros
    faces = []
    for k in range(j + 1, j + 1 + max(count, 1)):
        try:
            values = [int(v) for v in lines[k].split()]
        except (IndexError, ValueError):
            raise _BadLineError(k, "expected a face line of 10 integers") from None
        if len(values) != 10:
            raise _BadLineError(k, f"expected 10 integers, got {len(values)}")
        faces.append((k + 1, values))
    return faces if count else [], j + 1 + max(count, 1)


def _parse_wider(path: Path) -> tuple[list[tuple[int, str, list]], list[Skipped]]:
    """bbx_gt file -> ([(name line number, image name, faces)], skipped)."""
    lines, entries, skipped = _lines(path), [], []
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
        elif not _is_image_name(name):
            skipped.append(Skipped(str(path), i + 1, f"expected an image name, got {name[:60]!r}"))
            i += 1
        else:
            try:
                faces, next_i = _wider_faces(lines, i + 1)
            except _BadLineError as err:
                skipped.append(Skipped(str(path), err.index + 1, f"{name}: {err.reason}"))
                next_i = err.index  # resync on the next image name
                while next_i < len(lines) and not _is_image_name(lines[next_i]):
                    next_i += 1
            else:
                entries.append((i + 1, name, faces))
            i = next_i
    return entries, skipped


def wider_face(
    annotation_txt: Path,
    images_dir: Path,
    root: Path,
    correction: BoxCorrection | None = None,
    source: str = "wider",
) -> Imported:
    """WIDER FACE ``wider_face_*_bbx_gt.txt`` -> manifest rows (each image its own group).

    Face lines are ``x1 y1 w h blur expression illumination invalid occlusion pose``;
    ``invalid == 1``, heavy occlusion (2) or a final box under ``MIN_FACE_PX`` makes a face
    ``ignore``. An image with 0 faces becomes a no-face row asserted by ``"wider"``. Boxes
    get ``box_source`` ``"wider"`` when ``correction`` maps them to the convention and
    ``"wider:raw"`` otherwise (none has been measured yet). Empty boxes are dropped and
    listed; an image whose file is missing or whose lines are malformed is skipped whole.
    """
    relative_to_root(images_dir, root)
    _warn_raw("wider_face", correction)
    box_source = "wider" if correction is not None else "wider:raw"
    entries, skipped = _parse_wider(annotation_txt)
    rows = []
    for line, name, faces in entries:
        path = Path(images_dir) / name
        image = relative_to_root(path, root)
        try:
            width, height = image_size(path)
        except UnreadableImageError as err:
            skipped.append(Skipped(str(annotation_txt), line, f"{name}: {err}"))
            continue
        common = {"image": image, "width": width, "height": height, "source": source}
        common["group"] = f"wider:{image}"
        face_rows = []
        for face_line, values in faces:
            box, small = _face_box(values[:4], width, height, correction)
            if box is None:
                skipped.append(Skipped(str(annotation_txt), face_line, f"{name}: empty box"))
                continue
            invalid, occlusion = values[7], values[8]
            face_rows.append(
                common
                | dict(zip(manifest.BOX, box, strict=True))
                | {"face": len(face_rows), "box_source": box_source}
                | {"ignore": small or invalid == 1 or occlusion == 2}
            )
        if faces and not face_rows:
            skipped.append(Skipped(str(annotation_txt), line, f"{name}: no usable face box"))
            continue
        rows.extend(face_rows or [common | {"box_source": "wider"}])
    return _done("wider_face", rows, skipped)


# --- GENKI-4K ------------------------------------------------------------------------


def genki4k(labels_txt: Path, files_dir: Path, root: Path, source: str = "genki") -> Imported:
    """GENKI-4K ``labels.txt`` (line n: ``smile yaw pitch roll`` of ``file<nnnn>.jpg``).

    One face per image (face 0), box unknown (NA, ``box_source ""``), smile 0/1 from the
    label with ``smile_source "rater:genki4k"``; each image is its own group.
    """
    relative_to_root(files_dir, root)
    lines = _lines(labels_txt)
    while lines and not lines[-1].strip():
        lines.pop()
    rows, skipped = [], []
    for number, line in enumerate(lines, start=1):
        path = Path(files_dir) / f"file{number:04d}.jpg"
        try:
            smile = _genki_smile(line)
            width, height = image_size(path)
        except (ValueError, UnreadableImageError) as err:
            skipped.append(Skipped(str(labels_txt), number, f"{path.name}: {err}"))
            continue
        image = relative_to_root(path, root)
        rows.append(
            {"image": image, "width": width, "height": height, "source": source}
            | {"group": f"genki:{image}", "face": 0, "smile": smile}
            | {"smile_source": GENKI_SMILE_SOURCE}
        )
    return _done("genki4k", rows, skipped)


def _genki_smile(line: str) -> int:
    fields = line.split()
    if len(fields) != 4 or fields[0] not in ("0", "1"):
        raise ValueError(f"expected 'smile(0|1) yaw pitch roll', got {line[:60]!r}")
    for value in fields[1:]:
        float(value)  # a ValueError names the bad pose value
    return int(fields[0])


# --- CelebA --------------------------------------------------------------------------


def _celeba_table(
    path: Path, header: bool
) -> tuple[list[str], dict[str, tuple[int, list[str]]], list[Skipped]]:
    """A CelebA list file -> (value names, {image: (line number, values)}, skipped).

    With ``header`` the file is ``count / names / rows`` (the names may or may not start
    with ``image_id``); without, rows are ``image value``.
    """
    lines, table, skipped = _lines(path), {}, []
    names, start = ["value"], 0
    if header:
        if len(lines) < 2:
            raise ImporterError(f"{path}: expected a count line and a header line")
        names = lines[1].split()
        names, start = names[1:] if names[:1] == ["image_id"] else names, 2
    for index in range(start, len(lines)):
        fields = lines[index].split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            reason = f"expected {len(names) + 1} fields, got {len(fields)}"
            skipped.append(Skipped(str(path), index + 1, reason))
        else:
            table[fields[0]] = (index + 1, fields[1:])
    rows = sum(1 for line in lines[start:] if line.strip())
    if header and lines[0].strip() != str(rows):
        log.warning("%s: count line says %r, the file has %d rows", path, lines[0].strip(), rows)
    return names, table, skipped


def celeba(
    attr_txt: Path,
    bbox_txt: Path | None,
    partition_txt: Path | None,
    images_dir: Path,
    root: Path,
    correction: BoxCorrection | None = None,
    source: str = "celeba",
) -> Imported:
    """CelebA ``list_attr_celeba.txt`` (+ ``list_bbox_celeba.txt``, ``list_eval_partition``).

    One face per image: smile from ``Smiling`` (1 -> 1, -1 -> 0, ``"rater:celeba"``); the
    box from the bbox file (``box_source`` ``"celeba"`` with a correction, ``"celeba:raw"``
    without; ``bbox_txt=None`` for the aligned crops: box unknown); split 0/1/2 ->
    train/val/test from the partition file (``""`` without it). An image missing from the
    bbox file, with a bad line, or without a readable file is skipped.
    """
    relative_to_root(images_dir, root)
    names, attrs, skipped = _celeba_table(attr_txt, header=True)
    if "Smiling" not in names:
        raise ImporterError(f"{attr_txt}: no 'Smiling' column in the header line")
    smiling = names.index("Smiling")
    boxes = None
    if bbox_txt is not None:
        _warn_raw("celeba", correction)
        box_names, boxes, bad = _celeba_table(bbox_txt, header=True)
        if box_names != ["x_1", "y_1", "width", "height"]:
            raise ImporterError(f"{bbox_txt}: expected header 'image_id x_1 y_1 width height'")
        skipped += bad
    splits: dict[str, str] = {}
    if partition_txt is not None:
        _, partition, bad = _celeba_table(partition_txt, header=False)
        skipped += bad
        for name, (line, (value,)) in partition.items():
            if value in CELEBA_SPLITS:
                splits[name] = CELEBA_SPLITS[value]
            else:
                reason = f"{name}: partition {value!r} is not 0, 1 or 2"
                skipped.append(Skipped(str(partition_txt), line, reason))
    rows = []
    for name, (line, values) in attrs.items():
        path = Path(images_dir) / name
        try:
            row = _celeba_row(path, values[smiling], boxes, correction)
        except (ValueError, UnreadableImageError) as err:
            skipped.append(Skipped(str(attr_txt), line, f"{name}: {err}"))
            continue
        image = relative_to_root(path, root)
        rows.append(
            row
            | {"image": image, "source": source, "group": f"celeba:{image}"}
            | {"split": splits.get(name, "")}
        )
    return _done("celeba", rows, skipped)


def _celeba_row(
    path: Path, smiling: str, boxes: dict | None, correction: BoxCorrection | None
) -> dict:
    """One CelebA image's size, face, box and smile; a ValueError says why it is unusable."""
    if smiling not in ("1", "-1"):
        raise ValueError(f"Smiling is {smiling!r}, not 1 or -1")
    width, height = image_size(path)
    row = {"width": width, "height": height, "face": 0}
    row |= {"smile": int(smiling == "1"), "smile_source": CELEBA_SMILE_SOURCE}
    if boxes is not None:
        if path.name not in boxes:
            raise ValueError("no usable line in the bbox file")
        box, small = _face_box(boxes[path.name][1], width, height, correction)
        if box is None:
            raise ValueError("empty box")
        row |= dict(zip(manifest.BOX, box, strict=True)) | {"ignore": small}
        row["box_source"] = "celeba" if correction is not None else "celeba:raw"
    return row


# --- a human rater's CSV -------------------------------------------------------------


def rater_csv(
    csv_path: Path,
    root: Path,
    rater_id: str,
    box_source: str,
    correction: BoxCorrection | None = None,
    source: str = "folder",
    images_dir: Path | None = None,
    group_by_dir: bool = False,
) -> Imported:
    """A rater's CSV ``file,face,x,y,w,h,smile_by_eye`` (more columns are ignored).

    ``file`` is relative to ``images_dir`` (default: the CSV's folder); ``x, y, w, h`` are
    pixels; ``smile_by_eye`` yes/no/slight -> 1/0/NA with ``smile_source "rater:<id>"``.
    ``box_source`` is stored as given (say who drew the boxes, e.g. a teacher tag; end it in
    ``:raw`` if they are not brow-to-chin and no ``correction`` is given). Groups are as in
    :func:`image_folder`. A bad row, or a missing image file, skips that whole image (a
    face left out would otherwise count as background).
    """
    csv_path = Path(csv_path)
    images_dir = csv_path.parent if images_dir is None else Path(images_dir)
    relative_to_root(images_dir, root)
    rows, skipped, bad_files, sizes = [], [], set(), {}
    with csv_path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        missing = [c for c in RATER_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ImporterError(f"{csv_path}: missing column {missing[0]!r}")
        for record in reader:
            file = record["file"] or ""
            try:
                row = _rater_row(record, images_dir, root, sizes, correction)
            except (ValueError, UnreadableImageError) as err:
                skipped.append(Skipped(str(csv_path), reader.line_num, f"{file}: {err}"))
                bad_files.add(file)
                continue
            group = (posixpath.dirname(row["image"]) or ".") if group_by_dir else row["image"]
            row |= {"source": source, "group": f"folder:{group}", "box_source": box_source}
            rows.append((file, row | {"smile_source": f"rater:{rater_id}"}))
    counts = Counter((row["image"], row["face"]) for _, row in rows)
    twice = {image for (image, _), n in counts.items() if n > 1}
    for (image, face), n in sorted(counts.items()):
        if n > 1:
            skipped.append(Skipped(str(csv_path), 0, f"{image}: face {face} listed {n} times"))
    kept = [row for file, row in rows if file not in bad_files and row["image"] not in twice]
    return _done("rater_csv", kept, skipped)


def _rater_row(
    record: dict, images_dir: Path, root: Path, sizes: dict, correction: BoxCorrection | None
) -> dict:
    """One CSV record -> manifest fields; a ValueError says why it cannot be used."""
    if None in record or any(record[c] is None for c in RATER_COLUMNS):
        raise ValueError("wrong number of fields")
    if not record["file"]:
        raise ValueError("empty file name")
    path = images_dir / record["file"]
    image = relative_to_root(path, root)
    if path not in sizes:
        try:
            sizes[path] = image_size(path)
        except UnreadableImageError as err:
            sizes[path] = err
    if isinstance(sizes[path], Exception):
        raise sizes[path]
    width, height = sizes[path]
    face = int(record["face"])
    if face < 0:
        raise ValueError(f"negative face index {face}")
    smile_by_eye = record["smile_by_eye"].strip().lower()
    if smile_by_eye not in SMILE_BY_EYE:
        raise ValueError(f"smile_by_eye {record['smile_by_eye']!r} not in {tuple(SMILE_BY_EYE)}")
    xywh = [record["x"], record["y"], record["w"], record["h"]]
    box, small = _face_box(xywh, width, height, correction)
    if box is None:
        raise ValueError("empty box")
    return (
        {"image": image, "width": width, "height": height, "face": face}
        | dict(zip(manifest.BOX, box, strict=True))
        | {"ignore": small, "smile": SMILE_BY_EYE[smile_by_eye]}
    )
