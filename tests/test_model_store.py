"""Tests of smilebot.model_store (RELIABILITY.md items 11-15 and the model half of 17).

Models are copies of the shipped ``models/smilebot.tflite``; a distinct valid model is
the shipped bytes plus a tag appended (TFLite ignores trailing bytes) with its sidecar's
sha256 recomputed. Validation children are real ``python -m smilebot.model_store``
processes, or tiny shell scripts standing in for a crashing or hanging one.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from smilebot.detector import Detections, Detector, Face, ModelError, Timings
from smilebot.model_store import ModelStore, ModelStoreError, Swap, main, smoke_test

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "smilebot.tflite"
SHIPPED_SIDECAR = SHIPPED.with_suffix(".json")
SHIPPED_VERSION = json.loads(SHIPPED_SIDECAR.read_text())["sha256"][:12]
DEADLINE_S = 30.0  # generous: validation children on a loaded 2-core machine
FAST_POLL_S = 0.2


def _variant(tag: str) -> bytes:
    """The shipped model with ``tag`` appended: a distinct model that still loads."""
    return SHIPPED.read_bytes() + b"\0" * 16 + tag.encode()


def _version(model: bytes) -> str:
    return hashlib.sha256(model).hexdigest()[:12]


def _write_pair(folder: Path, name: str, model: bytes, edit=None, sha256: str | None = None):
    """``folder/NAME.tflite`` + ``NAME.json`` (the shipped sidecar, sha256 of ``model``)."""
    sidecar = json.loads(SHIPPED_SIDECAR.read_text())
    sidecar["model"] = f"{name}.tflite"
    sidecar["sha256"] = sha256 or hashlib.sha256(model).hexdigest()
    if edit is not None:
        edit(sidecar)
    (folder / f"{name}.tflite").write_bytes(model)
    (folder / f"{name}.json").write_text(json.dumps(sidecar))
    return folder / f"{name}.tflite"


def _poll(store: ModelStore, until, *, max_poll_s: float | None = None) -> list[Swap]:
    """Poll until ``until()`` holds; the swaps seen. Each poll must take < ``max_poll_s``."""
    swaps = []
    deadline = time.monotonic() + DEADLINE_S
    while True:
        started = time.perf_counter()
        swap = store.poll()
        took = time.perf_counter() - started
        if max_poll_s is not None:
            assert took < max_poll_s, f"poll() took {took:.3f} s"
        if swap is not None:
            swaps.append(swap)
        if until():
            return swaps
        assert time.monotonic() < deadline, "timed out polling the model store"
        time.sleep(0.02)


def _state(root: Path) -> dict:
    return json.loads((root / "state.json").read_text())


def _reason(root: Path, name: str) -> str:
    return (root / "rejected" / f"{name}.reason.txt").read_text()


def _fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for the validator's python."""
    path = tmp_path / "fake-python"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    folder = tmp_path / "seed"
    folder.mkdir()
    shutil.copy(SHIPPED_SIDECAR, folder / "smilebot.json")
    return Path(shutil.copy(SHIPPED, folder / "smilebot.tflite"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def store(root: Path, seed: Path):
    store = ModelStore.open(root, seed=seed, settle_s=0)
    yield store
    store.close()


def _deploy(store: ModelStore, root: Path, name: str, model: bytes) -> Swap:
    _write_pair(root / "incoming", name, model)
    swaps = _poll(store, lambda: not any((root / "incoming").iterdir()))
    assert len(swaps) == 1
    return swaps[0]


# --- opening -----------------------------------------------------------------------------


def test_seed_is_installed_into_an_empty_store(store: ModelStore, root: Path) -> None:
    assert store.version == SHIPPED_VERSION == store.detector.version
    for name in ("", "incoming", "versions", "rejected"):
        assert stat.S_IMODE((root / name).stat().st_mode) == 0o750
    for suffix in (".tflite", ".json"):
        copy = root / "versions" / f"{SHIPPED_VERSION}{suffix}"
        assert stat.S_IMODE(copy.stat().st_mode) == 0o640
    assert sorted(p.name for p in (root / "versions").iterdir()) == [
        f"{SHIPPED_VERSION}.json",
        f"{SHIPPED_VERSION}.tflite",
    ]
    assert _state(root) == {"format": 1, "current": SHIPPED_VERSION, "history": [], "bad": []}
    assert stat.S_IMODE((root / "state.json").stat().st_mode) == 0o640


def test_an_empty_store_without_a_seed_refuses_to_start(root: Path) -> None:
    with pytest.raises(ModelStoreError, match=r"no usable model in .*incoming \(make deploy\)"):
        ModelStore.open(root)


def test_a_broken_seed_is_refused(root: Path, tmp_path: Path) -> None:
    bad = _write_pair(tmp_path, "bad", SHIPPED.read_bytes()[:1000])
    with pytest.raises(ModelStoreError, match=r"the seed model is unusable: .*cannot open"):
        ModelStore.open(root, seed=bad)


def test_state_survives_reopen(store: ModelStore, root: Path) -> None:
    v2 = _variant("v2")
    _deploy(store, root, "v2", v2)
    store.close()
    reopened = ModelStore.open(root)  # no seed needed any more
    try:
        assert reopened.version == _version(v2)
    finally:
        reopened.close()
    state = _state(root)
    assert (state["current"], state["history"]) == (_version(v2), [SHIPPED_VERSION])
    assert not (root / "state.json.partial").exists()


def test_a_broken_current_model_boots_the_last_good_one(
    store: ModelStore, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    v2 = _variant("v2")
    _deploy(store, root, "v2", v2)
    store.close()
    (root / "versions" / f"{_version(v2)}.tflite").write_bytes(v2[:5000])
    reopened = ModelStore.open(root)
    try:
        assert reopened.version == SHIPPED_VERSION
        assert reopened.detector.detect(np.zeros((144, 192), np.uint8)).faces == ()
    finally:
        reopened.close()
    assert _state(root) == {
        "format": 1,
        "current": SHIPPED_VERSION,
        "history": [],
        "bad": [_version(v2)],
    }
    assert any(_version(v2) in r.message and r.levelname == "WARNING" for r in caplog.records)


def test_with_no_loadable_version_the_seed_is_installed_again(
    store: ModelStore, root: Path, seed: Path
) -> None:
    store.close()
    (root / "versions" / f"{SHIPPED_VERSION}.tflite").write_bytes(b"not a model")
    with pytest.raises(ModelStoreError, match="no usable model"):
        ModelStore.open(root)
    reopened = ModelStore.open(root, seed=seed)
    try:
        assert reopened.version == SHIPPED_VERSION
    finally:
        reopened.close()
    assert _state(root)["bad"] == []


# --- the drop folder ---------------------------------------------------------------------


def test_a_valid_model_is_swapped_in(store: ModelStore, root: Path) -> None:
    v2 = _variant("v2")
    swap = _deploy(store, root, "v2", v2)
    assert swap == Swap(SHIPPED_VERSION, _version(v2), "deployed v2.tflite")
    assert store.version == store.detector.version == _version(v2)
    assert store.detector.detect(np.zeros((144, 192), np.uint8)).faces == ()
    assert list((root / "incoming").iterdir()) == []
    assert list((root / "rejected").iterdir()) == []
    assert sorted(p.name for p in (root / "versions").iterdir()) == sorted(
        f"{v}{s}" for v in (SHIPPED_VERSION, _version(v2)) for s in (".tflite", ".json")
    )


def test_partial_and_dot_files_are_ignored(store: ModelStore, root: Path) -> None:
    incoming = root / "incoming"
    _write_pair(incoming, ".hidden", _variant("hidden"))  # sorts before "v2"
    _write_pair(incoming, "v2", _variant("v2"))
    (incoming / "v2.json").rename(incoming / "v2.json.partial")
    _write_pair(incoming, "v3", _variant("v3"))
    (incoming / "v3.tflite").rename(incoming / "v3.tflite.partial")
    for _ in range(5):
        assert store.poll() is None
    assert not any(p.name.endswith(".partial") for p in (root / "versions").iterdir())
    (incoming / "v2.json.partial").rename(incoming / "v2.json")  # the upload completes
    swaps = _poll(store, lambda: not (incoming / "v2.tflite").exists())
    assert [s.new_version for s in swaps] == [_version(_variant("v2"))]
    assert sorted(p.name for p in incoming.iterdir()) == [
        ".hidden.json",
        ".hidden.tflite",
        "v3.json",
        "v3.tflite.partial",
    ]
    assert list((root / "rejected").iterdir()) == []


def test_a_pair_waits_until_it_has_settled(root: Path, seed: Path) -> None:
    store = ModelStore.open(root, seed=seed, settle_s=1.0)
    try:
        _write_pair(root / "incoming", "v2", _variant("v2"))
        dropped = time.monotonic()
        swaps = _poll(store, lambda: not (root / "incoming" / "v2.tflite").exists())
        assert time.monotonic() - dropped >= 1.0
        assert [s.new_version for s in swaps] == [_version(_variant("v2"))]
    finally:
        store.close()


def test_a_drop_of_the_current_model_is_removed(store: ModelStore, root: Path) -> None:
    _write_pair(root / "incoming", "again", SHIPPED.read_bytes())
    swaps = _poll(store, lambda: not any((root / "incoming").iterdir()))
    assert swaps == []
    assert store.version == SHIPPED_VERSION
    assert list((root / "rejected").iterdir()) == []


def test_a_corrupt_model_is_rejected_and_the_old_one_keeps_serving(
    store: ModelStore, root: Path
) -> None:
    _write_pair(root / "incoming", "bad", SHIPPED.read_bytes()[:1000])  # its own sha256
    swaps = _poll(store, lambda: (root / "rejected" / "bad.reason.txt").exists())
    assert swaps == []
    reason = _reason(root, "bad")
    assert "cannot open" in reason and reason.count("\n") == 1
    assert sorted(p.name for p in (root / "rejected").iterdir()) == [
        "bad.json",
        "bad.reason.txt",
        "bad.tflite",
    ]
    assert list((root / "incoming").iterdir()) == []
    assert not any(p.name.endswith(".partial") for p in (root / "versions").iterdir())
    assert store.version == SHIPPED_VERSION
    assert store.detector.detect(np.zeros((144, 192), np.uint8)).faces == ()


def _drop_anchor(sidecar: dict) -> None:
    sidecar["anchors"]["levels"][2]["scales"] = [72.0, 104.0]


def _three_channels(sidecar: dict) -> None:
    sidecar["input"]["channels"] = 3


def _box_zero_point(sidecar: dict) -> None:
    sidecar["outputs"]["boxes"]["zero_point"] = 128


@pytest.mark.parametrize(
    ("edit", "sha256", "expected"),
    [
        (None, json.loads(SHIPPED_SIDECAR.read_text())["sha256"], "sha256"),
        (_drop_anchor, None, "anchors: the spec has"),
        (_three_channels, None, "input: the model's tensor has shape"),
        (_box_zero_point, None, "outputs.boxes: the model's tensor is uint8"),
    ],
    ids=["sha256", "anchor-count", "input-shape", "quantization"],
)
def test_a_model_that_disagrees_with_its_sidecar_is_rejected(
    store: ModelStore, root: Path, edit, sha256: str | None, expected: str
) -> None:
    _write_pair(root / "incoming", "v2", _variant("v2"), edit=edit, sha256=sha256)
    swaps = _poll(store, lambda: (root / "rejected" / "v2.reason.txt").exists())
    assert swaps == []
    assert expected in _reason(root, "v2")
    assert store.version == SHIPPED_VERSION


@pytest.mark.parametrize(
    ("body", "timeout_s", "expected"),
    [
        ("kill -SEGV $$", 30.0, "validation crashed (signal 11, SIGSEGV)"),
        ("exec sleep 60", 1.0, "validation timed out after 1 s"),
    ],
    ids=["crash", "hang"],
)
def test_a_crashing_or_hanging_validation_is_rejected_without_blocking(
    store: ModelStore, root: Path, tmp_path: Path, body: str, timeout_s: float, expected: str
) -> None:
    store.close()
    store = ModelStore.open(
        root, python=_fake_python(tmp_path, body), validate_timeout_s=timeout_s, settle_s=0
    )
    try:
        _write_pair(root / "incoming", "v2", _variant("v2"))
        dropped = time.monotonic()
        swaps = _poll(
            store,
            lambda: (root / "rejected" / "v2.reason.txt").exists(),
            max_poll_s=FAST_POLL_S,
        )
        assert time.monotonic() - dropped >= (timeout_s if "sleep" in body else 0)
        assert swaps == []
        assert _reason(root, "v2") == expected + "\n"
        assert store.version == SHIPPED_VERSION
    finally:
        store.close()


# --- safety (item 17) --------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["", "incoming", "versions"])
def test_a_world_writable_folder_is_refused_at_open(
    store: ModelStore, root: Path, folder: str
) -> None:
    store.close()
    (root / folder).chmod(0o777)
    with pytest.raises(ModelStoreError, match="world-writable") as raised:
        ModelStore.open(root)
    assert str(root / folder) in str(raised.value) and "\n" not in str(raised.value)


def test_a_world_writable_version_file_is_refused_at_open(store: ModelStore, root: Path) -> None:
    store.close()
    model = root / "versions" / f"{SHIPPED_VERSION}.tflite"
    model.chmod(0o666)
    with pytest.raises(ModelStoreError, match=re.escape(f"{model} is world-writable")):
        ModelStore.open(root)


def test_a_world_writable_drop_is_rejected(store: ModelStore, root: Path) -> None:
    _write_pair(root / "incoming", "v2", _variant("v2")).chmod(0o666)
    _poll(store, lambda: (root / "rejected" / "v2.reason.txt").exists())
    assert "v2.tflite is world-writable" in _reason(root, "v2")
    assert store.version == SHIPPED_VERSION


def test_a_drop_is_refused_while_the_drop_folder_is_world_writable(
    store: ModelStore, root: Path
) -> None:
    (root / "incoming").chmod(0o777)
    _write_pair(root / "incoming", "v2", _variant("v2"))
    _poll(store, lambda: (root / "rejected" / "v2.reason.txt").exists())
    assert f"{root / 'incoming'} is world-writable" in _reason(root, "v2")
    assert store.version == SHIPPED_VERSION


def test_a_symlink_escaping_the_store_is_rejected(
    store: ModelStore, root: Path, tmp_path: Path
) -> None:
    outside = _write_pair(tmp_path, "outside", _variant("outside"))
    (root / "incoming" / "evil.tflite").symlink_to(outside)
    shutil.copy(outside.with_suffix(".json"), root / "incoming" / "evil.json")
    _poll(store, lambda: (root / "rejected" / "evil.reason.txt").exists())
    assert f"resolves to {outside}, outside {root}" in _reason(root, "evil")
    assert (root / "rejected" / "evil.tflite").is_symlink()  # the link moved, not its target
    assert outside.read_bytes() == _variant("outside")
    assert store.version == SHIPPED_VERSION


# --- rollback (item 14) ------------------------------------------------------------------


def test_consecutive_inference_errors_roll_back(store: ModelStore, root: Path) -> None:
    v2 = _version(_variant("v2"))
    _deploy(store, root, "v2", _variant("v2"))
    error = RuntimeError("invoke failed")
    assert [store.inference_failed(error) for _ in range(2)] == [None, None]
    store.inference_ok()  # the count starts again
    assert [store.inference_failed(error) for _ in range(2)] == [None, None]
    swap = store.inference_failed(error)
    assert swap == Swap(v2, SHIPPED_VERSION, "rollback after 3 inference errors")
    assert store.version == store.detector.version == SHIPPED_VERSION
    assert _state(root) == {"format": 1, "current": SHIPPED_VERSION, "history": [], "bad": [v2]}
    assert not (root / "versions" / f"{v2}.tflite").exists()
    store.close()
    reopened = ModelStore.open(root)
    try:
        assert reopened.version == SHIPPED_VERSION
    finally:
        reopened.close()


def test_without_an_earlier_version_errors_keep_counting(store: ModelStore) -> None:
    error = RuntimeError("invoke failed")
    assert [store.inference_failed(error) for _ in range(5)] == [None] * 5
    assert store.version == SHIPPED_VERSION


def test_history_keeps_the_last_three_versions(store: ModelStore, root: Path) -> None:
    tags = ["v2", "v3", "v4", "v5"]
    for tag in tags:
        _deploy(store, root, tag, _variant(tag))
    versions = [_version(_variant(tag)) for tag in tags]
    state = _state(root)
    assert (state["current"], state["history"]) == (versions[3], versions[2::-1])
    stored = {p.name.split(".")[0] for p in (root / "versions").iterdir()}
    assert stored == set(versions)  # the seed's files were deleted


# --- the validation child ----------------------------------------------------------------


def test_validate_accepts_the_shipped_model(capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", str(SHIPPED), str(SHIPPED_SIDECAR)]) == 0
    smoke_test(Detector.load(SHIPPED))


def test_validate_refuses_a_broken_model_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = _write_pair(tmp_path, "bad", SHIPPED.read_bytes()[:1000])
    assert main(["validate", str(bad), str(bad.with_suffix(".json"))]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}: the runtime cannot open it" in err
    assert main(["check", str(bad)]) == 2


def test_smoke_test_refuses_a_score_out_of_range() -> None:
    def detect(frame: np.ndarray) -> Detections:
        assert frame.shape == (6, 8, 3)
        face = Face(box=(0.0, 0.0, 4.0, 3.0), score=float("nan"), smile=0.5)
        return Detections(faces=(face,), timings=Timings(0.0, 0.0, 0.0, 0.0))

    sidecar = Detector.load(SHIPPED).sidecar
    fake = SimpleNamespace(
        sidecar=SimpleNamespace(
            input=SimpleNamespace(width=8, height=6), thresholds=sidecar.thresholds
        ),
        model_path=Path("fake.tflite"),
        detect=detect,
    )
    expected = r"fake\.tflite: smoke test on a mid-grey frame: score nan "
    with pytest.raises(ModelError, match=expected):
        smoke_test(fake)


def test_open_rejects_bad_arguments(root: Path) -> None:
    with pytest.raises(ValueError, match="rollback_after >= 1"):
        ModelStore.open(root, rollback_after=0)
    assert not root.exists()


def test_a_relative_root_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The validation child runs with cwd=root; paths given to it must not be relative."""
    monkeypatch.chdir(tmp_path)
    store = ModelStore.open(Path("store"), seed=SHIPPED, settle_s=0.0)
    try:
        assert store.version == SHIPPED_VERSION
    finally:
        store.close()
