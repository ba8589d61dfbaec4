"""The manifest: smilebot's labeled-data table, one CSV file, one row per face.

Columns, in this order (dtype in brackets):

- ``image`` [string]: POSIX path of the image file, relative to the data root.
- ``width``, ``height`` [int64]: the image size in pixels (as ``cv2.imread`` sees it).
- ``source`` [string]: dataset name (faces24, photos, photos2, video, backgrounds, synth,
  wider, genki, celeba, folder, captures).
- ``group`` [string]: leak key; all rows of one group go to the same split
  (e.g. ``video:cap12_edit``, ``folder:photos/SeanConnery.jpg``).
- ``face`` [Int64, nullable]: face index 0..n-1 within the image; NA on a no-face row
  (an image with no face has exactly one row, whose face columns are empty).
- ``x1``, ``y1``, ``x2``, ``y2`` [float64, NaN = NA]: the face box in pixels, continuous
  coordinates (a box over a whole W x H image is (0, 0, W, H)), brow-to-chin convention
  (ARCHITECTURE.md); NA when there is no face or nobody knows the box yet.
- ``box_source`` [string]: who says where the face is: ``name@version`` of a teacher
  (several joined by ``+``), ``rater:<id>``, ``synth``, a dataset name, or ``""`` (nobody
  yet). On a no-face row: who asserted "no face" (``""`` = unlabeled, not yet kindled).
- ``ignore`` [bool]: the face is neither a hit nor a miss (smaller than ~20 px, profile,
  heavily occluded).
- ``smile`` [Int8, nullable]: 1 smiling, 0 not smiling, NA unknown.
- ``smile_source`` [string]: ``name@version`` of the teacher(s) joined by ``+``,
  ``rater:<id>``, or ``""`` if unknown.
- ``split`` [string]: ``train``, ``val``, ``test`` or ``""`` (unassigned).

In the CSV file an NA is an empty cell and ``ignore`` is ``True``/``False``; rows are sorted
by image, then face. :func:`save` validates and writes atomically; :func:`load` parses and
checks types but does not run :func:`validate` (so a broken file can be loaded and fixed).

Not the job of this module: reading datasets (importers.py), labelling (kindle.py), or
training input pipelines.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

DTYPES: Mapping[str, str] = MappingProxyType(
    {
        "image": "string",
        "width": "int64",
        "height": "int64",
        "source": "string",
        "group": "string",
        "face": "Int64",
        "x1": "float64",
        "y1": "float64",
        "x2": "float64",
        "y2": "float64",
        "box_source": "string",
        "ignore": "bool",
        "smile": "Int8",
        "smile_source": "string",
        "split": "string",
    }
)
COLUMNS: tuple[str, ...] = tuple(DTYPES)
BOX = ["x1", "y1", "x2", "y2"]
REQUIRED = ("image", "width", "height", "source", "group")
DEFAULTS: Mapping[str, object] = MappingProxyType(
    {"box_source": "", "ignore": False, "smile_source": "", "split": ""}
)
SPLITS = ("train", "val", "test", "")
DEFAULT_FRACTIONS: Mapping[str, float] = MappingProxyType({"train": 0.8, "val": 0.2})
#: A box may stick out of its image by this many pixels (rounding in box sources).
TOLERANCE_PX = 1.0


class ManifestError(ValueError):
    """A manifest that breaks the schema: the message names the file or row and the column."""


# --- building and typing -------------------------------------------------------------


def new(rows: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """A manifest from dicts keyed by column name; ``None`` means NA.

    ``image, width, height, source, group`` are required; ``box_source``,
    ``smile_source`` and ``split`` default to ``""``, ``ignore`` to False, and ``face``,
    the box and ``smile`` to NA. An unknown key is a :class:`ManifestError`.
    """
    rows = list(rows)
    for i, row in enumerate(rows):
        unknown = [key for key in row if key not in DTYPES]
        missing = [key for key in REQUIRED if row.get(key) is None]
        if unknown:
            raise ManifestError(f"row {i}: unknown column {unknown[0]!r}")
        if missing:
            raise ManifestError(f"row {i}: missing required column {missing[0]!r}")
    df = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    for column, default in DEFAULTS.items():
        df[column] = df[column].astype(object).where(df[column].notna(), default)
    return _typed(df, "new manifest")


def _typed(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """``df`` with exactly the manifest columns, in order, with the manifest dtypes."""
    _check_columns(df.columns, where)
    out = {}
    for column, dtype in DTYPES.items():
        values = df[column]
        if dtype == "string":
            values = values.astype("string").fillna("")
        if dtype == "bool" and values.dtype != bool and not values.isin([True, False]).all():
            raise ManifestError(f"{where}: column {column!r} must be True/False")
        try:
            out[column] = values.astype(dtype)
        except (TypeError, ValueError) as err:
            raise ManifestError(f"{where}: column {column!r}: {err}") from None
    return pd.DataFrame(out).reset_index(drop=True)


def _check_columns(columns: Iterable[str], where: str) -> None:
    columns = list(columns)
    missing = [c for c in COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in DTYPES]
    if missing or unknown:
        what = f"missing column {missing[0]!r}" if missing else f"unknown column {unknown[0]!r}"
        raise ManifestError(f"{where}: {what}")


# --- files ---------------------------------------------------------------------------


def load(path: Path | str) -> pd.DataFrame:
    """Read a manifest CSV; wrong columns or a bad cell is a :class:`ManifestError`."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ManifestError(f"{path}: not a manifest CSV ({err})") from None
    _check_columns(raw.columns, str(path))
    out = {}
    for column, dtype in DTYPES.items():
        try:
            out[column] = _parse(raw[column], dtype, required=column in REQUIRED)
        except _BadCellError as bad:
            raise ManifestError(
                f"{path}: line {bad.row + 2}, column {column!r}: "
                f"{raw[column].iloc[bad.row]!r} is not {bad.expected}"
            ) from None
    return pd.DataFrame(out)


class _BadCellError(Exception):
    def __init__(self, row: int, expected: str):
        super().__init__(row, expected)
        self.row, self.expected = row, expected


def _parse(text: pd.Series, dtype: str, required: bool) -> pd.Series:
    """CSV cells -> typed values; the first bad cell raises :class:`_BadCellError`."""
    if dtype == "string":
        return text.astype("string")
    stripped = text.str.strip()
    if dtype == "bool":
        values = stripped.str.lower().map({"true": True, "false": False, "1": True, "0": False})
        _raise_first(values.isna(), "True or False")
        return values.astype(bool)
    blank = stripped == ""
    numbers = pd.to_numeric(stripped.where(~blank), errors="coerce")
    if dtype == "float64":
        _raise_first(~blank & numbers.isna(), "a number or empty")
        return numbers.astype("float64")
    info = np.iinfo(dtype.lower())
    whole = (numbers == numbers.round()) & (numbers >= info.min) & (numbers <= info.max)
    if required:
        _raise_first(~whole, "an integer")
    _raise_first(~blank & ~whole, "an integer or empty")
    return numbers.astype(dtype)


def _raise_first(bad: pd.Series, expected: str) -> None:
    if bad.any():
        raise _BadCellError(int(np.flatnonzero(bad.to_numpy(dtype=bool))[0]), expected)


def save(df: pd.DataFrame, path: Path | str) -> None:
    """Validate ``df`` and write it to ``path`` atomically (temp file + ``os.replace``)."""
    path = Path(path)
    df = _sorted(_typed(df, str(path)))
    validate(df)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("x", newline="") as f:  # a new file, with the usual permissions
            df.to_csv(f, index=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("saved %d rows to %s", len(df), path)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["image", "face"], na_position="first", kind="stable").reset_index(
        drop=True
    )


# --- validation ----------------------------------------------------------------------


def validate(df: pd.DataFrame, root: Path | None = None) -> None:
    """Raise a :class:`ManifestError` naming the first bad row (image + face), if any.

    Checks: types; a box outside its image (by more than ``TOLERANCE_PX``), empty
    (``x2 <= x1`` or ``y2 <= y1``) or partly missing; a box or smile on a no-face row;
    smile not in {0, 1, NA}; split not in ``SPLITS``; a negative face index; duplicate
    (image, face); a no-face row next to face rows of the same image; one image with
    several sizes or groups; one group in several splits (a leak); and with ``root``,
    image files that do not exist. The first 20 problems are logged; the error names the
    first and counts the rest.
    """
    df = _typed(df, "manifest")
    found = _problems(df, root)
    problems = [
        f"{_row_name(df, i)}: {what(i) if callable(what) else what}" for i, what in found[:20]
    ]
    if problems:
        for problem in problems:
            log.error("manifest: %s", problem)
        more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
        raise ManifestError(f"manifest: {problems[0]}{more}")


def _row_name(df: pd.DataFrame, i: int) -> str:
    face = df["face"].iloc[i]
    return f"{df['image'].iloc[i]} " + ("(no-face row)" if pd.isna(face) else f"face {face}")


def _problems(df: pd.DataFrame, root: Path | None) -> list[tuple[int, Any]]:
    """(row position, problem) for every rule broken, in row order; a problem is a string
    or a function of the row position that makes one (formatted only when reported)."""
    found: list[tuple[int, Any]] = []

    def flag(mask: pd.Series, what) -> None:
        for i in np.flatnonzero(np.asarray(mask, dtype=bool)):
            found.append((int(i), what))

    box = df[BOX].to_numpy()
    has_box = ~np.isnan(box).any(axis=1)
    no_face = df["face"].isna().to_numpy()
    x1, y1, x2, y2 = box.T
    w, h = df["width"].to_numpy(), df["height"].to_numpy()
    flag(df["image"] == "", "empty image path")
    flag(df["group"] == "", "empty group")
    flag(df["source"] == "", "empty source")
    flag((w <= 0) | (h <= 0), lambda i: f"bad image size {w[i]}x{h[i]}")
    flag(df["face"].fillna(0) < 0, "negative face index")
    flag(np.isnan(box).any(axis=1) & ~np.isnan(box).all(axis=1), "box partly missing")
    flag(has_box & ((x2 <= x1) | (y2 <= y1)), lambda i: f"empty box {tuple(box[i])}")
    t = TOLERANCE_PX
    outside = has_box & ((x1 < -t) | (y1 < -t) | (x2 > w + t) | (y2 > h + t))
    flag(outside, lambda i: f"box {tuple(box[i])} outside the {w[i]}x{h[i]} image")
    flag(no_face & (has_box | df["smile"].notna()), "box or smile on a no-face row")
    flag(df["smile"].notna() & ~df["smile"].isin([0, 1]), "smile not in {0, 1, NA}")
    flag(~df["split"].isin(SPLITS), lambda i: f"split {df['split'].iloc[i]!r} not in {SPLITS}")
    flag(df.duplicated(["image", "face"]), "duplicate (image, face)")
    mixed = no_face & (~df["face"].isna()).groupby(df["image"]).transform("any")
    flag(mixed, "no-face row for an image that has faces")
    for column in ("width", "height", "group"):
        flag(_odd_ones(df, "image", column), f"one image with several values of {column}")
    assigned = df["split"] != ""
    leak = _odd_ones(df[assigned], "group", "split").reindex(df.index, fill_value=False)
    flag(leak, lambda i: f"group {df['group'].iloc[i]!r} is in several splits (a leak)")
    if root is not None:
        exists = {image: (Path(root) / image).is_file() for image in df["image"].unique()}
        flag(~df["image"].map(exists).astype(bool), f"image file missing under {root}")
    return sorted(found, key=lambda item: item[0])


def _odd_ones(df: pd.DataFrame, key: str, column: str) -> pd.Series:
    """Mask: first row of each ``column`` value that differs from its ``key`` group's first."""
    first = df.groupby(key)[column].transform("first")
    return (df[column] != first) & ~df.duplicated([key, column])


# --- combining -----------------------------------------------------------------------


def merge(*frames: pd.DataFrame, prefer: str = "last") -> pd.DataFrame:
    """Union of manifests; for rows with the same (image, face) the preferred frame wins.

    ``prefer="last"``: later frames win; ``"first"``: earlier ones. Per image, face rows
    and a no-face row are exclusive: the preferred frame's kind wins, except that an
    unlabeled no-face row (``box_source == ""``) never replaces anything (it only adds
    images that are not labeled elsewhere). How many rows were overridden is logged.
    The result is sorted by image, then face.
    """
    if prefer not in ("first", "last"):
        raise ValueError(f"prefer must be 'first' or 'last', got {prefer!r}")
    typed = [_typed(frame, f"merge frame {k}") for k, frame in enumerate(frames)]
    if prefer == "first":
        typed.reverse()
    if not typed:
        return new([])
    rank = np.concatenate([np.full(len(f), k) for k, f in enumerate(typed)])
    allrows = pd.concat(typed, ignore_index=True).assign(_rank=rank)
    no_face = allrows["face"].isna()
    unlabeled = no_face & (allrows["box_source"] == "")
    labeled_images = set(allrows.loc[~unlabeled, "image"])
    keep = ~(unlabeled & allrows["image"].isin(labeled_images))
    said = allrows[keep]
    # Face rows vs a labeled no-face row of one image: the preferred (latest) kind wins.
    last_face = said[said["face"].notna()].groupby("image")["_rank"].max()
    last_none = said[said["face"].isna()].groupby("image")["_rank"].max()
    faces_win = (
        last_face.reindex(said["image"]).to_numpy()
        >= last_none.reindex(said["image"]).fillna(-1).to_numpy()
    )
    keep.loc[said.index] = np.where(said["face"].isna(), ~faces_win, faces_win)
    merged = allrows[keep].drop_duplicates(["image", "face"], keep="last")
    overridden = len(allrows) - len(merged)
    log.info(
        "merge: %d rows from %d frames -> %d rows (%d overridden)",
        len(allrows),
        len(typed),
        len(merged),
        overridden,
    )
    return _sorted(merged.drop(columns="_rank"))


def join_labels(
    df: pd.DataFrame,
    labels: pd.DataFrame,
    on: Sequence[str] = ("image", "face"),
    columns: Sequence[str] = ("smile", "smile_source"),
) -> pd.DataFrame:
    """``df`` with ``columns`` taken from the matching row of ``labels`` (matched on ``on``).

    A ``labels`` row is used only where all its ``columns`` are known (not NA, not ``""``),
    so NA in ``labels`` never overwrites a known label. Rows of ``labels`` that match no
    row of ``df`` are counted in the log; duplicate keys in ``labels`` are an error.
    """
    df = _typed(df, "join_labels df")
    on, columns = list(on), list(columns)
    missing = [c for c in on + columns if c not in labels.columns or c not in DTYPES]
    if missing:
        raise ManifestError(f"join_labels: column {missing[0]!r} not in labels or the manifest")
    lab = labels[on + columns]
    if lab.duplicated(on).any():
        raise ManifestError(f"join_labels: duplicate {tuple(on)} keys in labels")
    known = pd.Series(True, index=lab.index)
    for column in columns:
        values = lab[column]
        known &= values.notna() & ~values.astype(object).isin([""])
    lab = lab[known].astype({c: df[c].dtype for c in on + columns})
    joined = df[on].merge(lab, on=on, how="left", indicator=True)
    hit = (joined["_merge"] == "both").to_numpy()
    out = df.copy()
    for column in columns:
        out.loc[hit, column] = joined.loc[hit, column].to_numpy()
    log.info("join_labels: %d of %d known labels matched a row", int(hit.sum()), int(known.sum()))
    return _typed(out, "join_labels result")


# --- splits and statistics -----------------------------------------------------------


def assign_splits(
    df: pd.DataFrame, fractions: Mapping[str, float] = DEFAULT_FRACTIONS, seed: int = 0
) -> pd.DataFrame:
    """Fill empty splits per group, by hashing (seed, group); existing splits are kept.

    A group that already has a split anywhere gets it on all its rows. Otherwise the split
    comes from sha256 of ``"<seed>:<group>"`` as a number u in [0, 1), cut at the
    cumulative ``fractions`` (in their given order): the same group always lands in the
    same split, whatever other rows exist, so adding data never moves an old group.
    """
    df = _typed(df, "assign_splits")
    if any(name not in SPLITS or not name for name in fractions):
        raise ManifestError(f"assign_splits: fractions keys must be in {SPLITS[:3]}")
    if any(f <= 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-6:
        raise ManifestError(f"assign_splits: fractions must be positive and sum to 1: {fractions}")
    assigned = df[df["split"] != ""]
    existing = assigned.groupby("group")["split"].unique()
    leaks = existing[existing.map(len) > 1]
    if len(leaks):
        raise ManifestError(f"assign_splits: group {leaks.index[0]!r} is in several splits")
    kept = {group: splits[0] for group, splits in existing.items()}
    choice = {g: kept.get(g) or _hash_split(g, fractions, seed) for g in df["group"].unique()}
    return df.assign(split=df["group"].map(choice).astype("string"))


def _hash_split(group: str, fractions: Mapping[str, float], seed: int) -> str:
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        if u < cumulative:
            return name
    return list(fractions)[-1]  # u within rounding of 1.0


def images_sha256(df: pd.DataFrame, root: Path | str) -> str:
    """One sha256 over every image the manifest names: its path and its bytes' sha256, one
    line each, sorted by path. A manifest's own hash fixes labels, not pixels (``make data``
    keeps existing scene files), so a model's sidecar records both."""
    lines = []
    for image in sorted(set(df["image"])):
        try:
            digest = hashlib.sha256(Path(root, image).read_bytes()).hexdigest()
        except OSError as err:
            raise ManifestError(f"{Path(root, image)}: {err.strerror or err}") from err
        lines.append(f"{digest}  {image}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def stats(df: pd.DataFrame) -> pd.DataFrame:
    """Counts per (source, split): images, faces, ignored faces, smile 1 / 0 / unknown.

    Smile counts are over faces (ignored ones included); no-face rows count as images only.
    """
    df = _typed(df, "stats")
    face = df["face"].notna()
    smile = df["smile"]
    counts = pd.DataFrame(
        {
            "source": df["source"],
            "split": df["split"],
            "image": df["image"],
            "faces": face,
            "ignored": face & df["ignore"],
            "smile_1": face & smile.eq(1).fillna(False),
            "smile_0": face & smile.eq(0).fillna(False),
            "smile_unknown": face & smile.isna(),
        }
    )
    out = counts.groupby(["source", "split"], sort=True).agg(
        images=("image", "nunique"),
        faces=("faces", "sum"),
        ignored=("ignored", "sum"),
        smile_1=("smile_1", "sum"),
        smile_0=("smile_0", "sum"),
        smile_unknown=("smile_unknown", "sum"),
    )
    return out.reset_index()
