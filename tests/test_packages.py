"""Tests of smilebot_tools.packages on tiny fake archives and stand-in tools (never the network).

How rebuild reports these errors (with the fix advice) is tested in test_starter.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from smilebot_tools import packages
from smilebot_tools.packages import Archive, PackageError
from tests.fakes import write_tgz, write_zip


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fake_tool(folder: Path, name: str, script: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\n{script}\n")
    (folder / name).chmod(0o755)


def test_archives_table_is_consistent() -> None:
    for (package, version), archive in packages.ARCHIVES.items():
        assert (archive.package, archive.version) == (package, version)
        assert archive.kind in packages.KINDS
        assert archive.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", archive.sha256)


def test_command_and_fix(tmp_path: Path) -> None:
    dl = tmp_path / "dl"
    sdist = Archive("fakecv", "1.0", "pypi-sdist", None)
    assert sdist.spec == "fakecv 1.0"
    pip = ["pip", "download", "--no-deps", "--no-binary", "fakecv", "fakecv==1.0", "-d", str(dl)]
    assert sdist.command(dl) == pip
    wheel = Archive("fakewheel", "2.0", "pypi-wheel", None)
    assert wheel.command(dl)[3:5] == ["--only-binary", "fakewheel"]
    npm = Archive("fakenpm", "3.0", "npm", None)
    assert npm.command(dl) == ["npm", "pack", "fakenpm@3.0", "--pack-destination", str(dl)]
    assert npm.fix(dl) == f"run `npm pack fakenpm@3.0 --pack-destination {dl}`"
    deb = Archive("fakedeb", "1:2.0-1", "deb", None)
    assert deb.command(dl) == ["apt-get", "download", "fakedeb"]
    assert deb.fix(dl) == f"run `apt-get update && apt-get download fakedeb` in {dl}"


def test_find_download_by_file_name(tmp_path: Path) -> None:
    dl = tmp_path / "dl"
    sdist = Archive("Fake.CV", "1.0", "pypi-sdist", None)
    assert packages.find_download(sdist, dl) is None  # no folder yet
    dl.mkdir()
    for name in ("fake_cv-1.0.1.tar.gz", "fake_cv-1.0.tar.gz", "fake_cv-2.0.tar.gz"):
        (dl / name).write_bytes(b"")
    for name in ("fakewheel-2.0.1-py3-none-any.whl", "fakewheel-2.0-py3-none-any.whl"):
        (dl / name).write_bytes(b"")
    for name in ("scope-fakenpm-3.0.tgz", "fakedeb_1%3a2.0-1_all.deb", "fakedeb_2.0-1_all.deb"):
        (dl / name).write_bytes(b"")
    assert packages.find_download(sdist, dl) == dl / "fake_cv-1.0.tar.gz"
    wheel = Archive("fakewheel", "2.0", "pypi-wheel", None)
    assert packages.find_download(wheel, dl) == dl / "fakewheel-2.0-py3-none-any.whl"
    assert packages.find_download(Archive("fakewheel", "2.0", "pypi-sdist", None), dl) is None
    npm = Archive("@scope/fakenpm", "3.0", "npm", None)
    assert packages.find_download(npm, dl) == dl / "scope-fakenpm-3.0.tgz"
    deb = Archive("fakedeb", "1:2.0-1", "deb", None)
    assert packages.find_download(deb, dl) == dl / "fakedeb_1%3a2.0-1_all.deb"
    assert packages.find_download(Archive("fakedeb", "3.0", "deb", None), dl) is None


def test_check_download_names_both_hashes(tmp_path: Path) -> None:
    path = tmp_path / "fakenpm-3.0.tgz"
    path.write_bytes(b"archive bytes")
    packages.check_download(Archive("fakenpm", "3.0", "npm", _sha(b"archive bytes")), path)
    packages.check_download(Archive("fakenpm", "3.0", "npm", None), path)
    with pytest.raises(PackageError) as err:
        packages.check_download(Archive("fakenpm", "3.0", "npm", "f" * 64), path)
    assert str(err.value) == (
        f"{path} has sha256 {_sha(b'archive bytes')}, expected {'f' * 64}; delete it"
    )


def test_read_members_of_tar_andwrite_zip(tmp_path: Path) -> None:
    tgz = write_tgz(tmp_path / "a.tgz", {"./package/a.txt": b"A", "package/b.txt": b"B"})
    assert packages.read_members(tgz, "npm", ["package/a.txt", "./package/b.txt"]) == {
        "package/a.txt": b"A",
        "package/b.txt": b"B",
    }
    whl = write_zip(tmp_path / "w-1.0-py3-none-any.whl", {"w/data/c.txt": b"C"})
    assert packages.read_members(whl, "pypi-wheel", ["w/data/c.txt"]) == {"w/data/c.txt": b"C"}
    with pytest.raises(PackageError, match=r"^a\.tgz has no member package/x \(1 missing\)$"):
        packages.read_members(tgz, "npm", ["package/a.txt", "package/x"])
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(PackageError, match="is not a readable archive"):
        packages.read_members(junk, "pypi-sdist", ["x"])


def test_download_missing_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(PackageError, match=r"^npm not found on PATH \(install Node\.js"):
        packages.download(Archive("fakenpm", "3.0", "npm", None), tmp_path / "dl")
    with pytest.raises(PackageError, match=r"^apt-get not found on PATH"):
        packages.download(Archive("fakedeb", "1:2.0-1", "deb", None), tmp_path / "dl")


def test_download_runs_npm_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, dl = tmp_path / "bin", tmp_path / "dl"
    tgz = write_tgz(tmp_path / "fakenpm-3.0.tgz", {"package/a.txt": b"A"})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    archive = Archive("fakenpm", "3.0", "npm", _sha(tgz.read_bytes()))
    # A stand-in npm: `npm pack SPEC --pack-destination DIR` copies the tarball into DIR.
    _fake_tool(bin_dir, "npm", f'cp {tgz} "$4/"')
    assert packages.download(archive, dl) == dl / "fakenpm-3.0.tgz"
    _fake_tool(bin_dir, "npm", "echo 'npm ERR! 404 Not Found' >&2; exit 1")
    with pytest.raises(PackageError) as err:
        packages.download(archive, tmp_path / "dl2")
    assert str(err.value) == "npm pack failed (npm ERR! 404 Not Found)"
    _fake_tool(bin_dir, "npm", "true")
    with pytest.raises(PackageError, match=r"download gave no file for this version \(in .*: "):
        packages.download(archive, tmp_path / "dl3")


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_deb_members_and_version(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/fake").mkdir(parents=True)
    (root / "usr/share/fake/b.txt").write_bytes(b"B")
    control = "Package: fakedeb\nVersion: 1:2.0-1\nArchitecture: all\n"
    control += "Maintainer: t <t@example.org>\nDescription: test\n"
    (root / "DEBIAN/control").write_text(control)
    deb = tmp_path / "fakedeb_1%3a2.0-1_all.deb"
    build = ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)]
    subprocess.run(build, check=True, capture_output=True)
    assert packages.deb_version(deb) == "1:2.0-1"
    assert packages.read_members(deb, "deb", ["./usr/share/fake/b.txt"]) == {
        "usr/share/fake/b.txt": b"B"
    }
    with pytest.raises(PackageError, match="has no member usr/share/fake/x"):
        packages.read_members(deb, "deb", ["usr/share/fake/x"])
    packages.check_download(Archive("fakedeb", "1:2.0-1", "deb", None), deb)
    with pytest.raises(PackageError, match=f"^{re.escape(str(deb))} is version 1:2.0-1; delete"):
        packages.check_download(Archive("fakedeb", "1:2.0-2", "deb", None), deb)
    junk = tmp_path / "junk.deb"
    junk.write_bytes(b"not a deb")
    with pytest.raises(PackageError, match=r"is not a readable \.deb: "):
        packages.deb_version(junk)
