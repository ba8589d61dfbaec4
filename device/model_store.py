"""The model store: which model the daemon serves, and swapping in new ones safely.

On-disk layout (every folder mode 0o750, every file the store writes 0o640)::

    <root>/
        state.json                {"format": 1, "current": "<v>", "history": [...], "bad": [...]}
        versions/<v>.tflite       the store's own copy of each kept version, <v> = the
        versions/<v>.json         model's sha256[:12] (= Detector.version), and its sidecar
        versions/NAME.tflite.partial  a drop being validated (NAME.json.partial beside it)
        incoming/NAME.tflite      the drop folder: ``make deploy`` copies pairs here
        incoming/NAME.json
        rejected/NAME.tflite      refused drops, moved here with
        rejected/NAME.reason.txt  a one-line reason

``state.json`` names the ``current`` version, the ``history`` of earlier good versions
(newest first, at most :data:`KEEP_PREVIOUS`) and the versions found ``bad`` (never booted
or rolled back to again). It is written atomically (temp file, fsync, rename, fsync of
the folder), so switching model is one rename; files in ``versions/`` that state.json no
longer names are then deleted. A version's files are only ever replaced by a redeploy of
the same model.

:meth:`ModelStore.open` creates the folders, refuses world-writable folders or version
files and symlinks escaping ``root`` (:class:`ModelStoreError`), then loads ``current``.
If it is broken it boots the newest version of the history that loads, marking the broken
ones bad; if none loads it installs ``seed`` (a ``.tflite`` with its ``.json`` beside it)
when given, else refuses to start.

:meth:`ModelStore.poll` (non-blocking, called between captures) picks up a pair from
``incoming/``: dot-files and ``*.partial`` names are ignored, and a pair is ready once
both files exist and neither has changed for ``settle_s`` seconds, as seen by the polls
themselves (monotonic time: a Pi without an RTC may boot in 1970, and ``scp -p`` sets old
mtimes). A ready pair is checked (folders not world-writable, files regular, not
world-writable, inside ``root``), copied to ``versions/NAME.*.partial`` and validated in
one child process, ``python -m smilebot.model_store validate MODEL SIDECAR``
(:func:`main`: :meth:`Detector.load` and :func:`smoke_test`), so a model that crashes or
hangs the runtime costs the daemon nothing. Later polls look at the child: exit 0 -> the
copies are fsynced, renamed to ``versions/<v>.*``, loaded in-process and made current,
and the drop is deleted; any other exit, a signal or running past ``validate_timeout_s``
(killed) -> the drop goes to ``rejected/`` and the old model keeps serving. A drop of the
model already serving is just deleted. Exactly the validated bytes are installed.

:meth:`ModelStore.inference_failed` counts consecutive errors (reset by
:meth:`ModelStore.inference_ok`); at ``rollback_after`` the newest version of the history
that loads becomes current and the failing one is marked bad.

What this module does NOT do: decide what an inference error is (the daemon does), check
that the daemon runs as root, or apply threshold overrides to the detector. It is not
thread-safe: call it from the daemon's main loop only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from smilebot.detector import Detector, ModelError
from smilebot.fsync import fsync_dir, fsync_file

logger = logging.getLogger(__name__)

STATE_NAME = "state.json"
VERSIONS = "versions"
INCOMING = "incoming"
REJECTED = "rejected"
MODEL_SUFFIX = ".tflite"
SIDECAR_SUFFIX = ".json"
PARTIAL_SUFFIX = ".partial"
REASON_SUFFIX = ".reason.txt"
FILE_MODE = 0o640
DIR_MODE = 0o750
STATE_FORMAT = 1
KEEP_PREVIOUS = 3  # earlier good versions kept for rollback and boot fallback
KEEP_BAD = 16  # bad versions remembered in state.json
SMOKE_GREY = 128
SMOKE_SEED = 0
_VERSION = re.compile(r"[0-9a-f]{12}")
_TAIL_BYTES = 4096  # how much of the validator's output is read for its last line


class ModelStoreError(Exception):
    """The store cannot serve or refuses a model; the one-line message names the path."""


@dataclass(frozen=True)
class Swap:
    """A change of the model being served, for the daemon's log line."""

    old_version: str | None
    new_version: str
    reason: str  # "deployed NAME.tflite" | "rollback after N inference errors"


@dataclass(frozen=True)
class _State:
    """What state.json holds: the current version, earlier good ones (newest first), bad ones."""

    current: str | None = None
    history: tuple[str, ...] = ()
    bad: tuple[str, ...] = ()

    @property
    def candidates(self) -> tuple[str, ...]:
        """Versions to boot on, in order of preference."""
        return tuple(v for v in (self.current, *self.history) if v is not None)

    def deployed(self, version: str) -> _State:
        """``version`` becomes current; the old current becomes the newest history entry."""
        earlier = (self.current, *self.history)
        history = tuple(v for v in earlier if v is not None and v != version)
        bad = tuple(v for v in self.bad if v != version)
        return _State(version, history[:KEEP_PREVIOUS], bad)

    def marked_bad(self, versions: list[str]) -> _State:
        """``versions`` leave current and history and are remembered as bad."""
        if not versions:
            return self
        current = None if self.current in versions else self.current
        history = tuple(v for v in self.history if v not in versions)
        bad = (*versions, *(v for v in self.bad if v not in versions))
        return _State(current, history, bad[:KEEP_BAD])

    def keeps(self) -> set[str]:
        """Versions whose files must stay in versions/."""
        return set(self.candidates)


@dataclass(frozen=True)
class _Drop:
    """A ready pair in incoming/ and the (size, mtime_ns, inode) of both files."""

    name: str
    model: Path
    sidecar: Path
    signature: tuple


@dataclass(frozen=True)
class _Staged:
    """A pair copied into versions/ as ``.partial`` files; ``sha256`` of the model file."""

    model: Path
    sidecar: Path
    sha256: str

    def discard(self) -> None:
        self.model.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)


@dataclass
class _Validation:
    """A running validation child and what it validates."""

    drop: _Drop
    staged: _Staged
    process: subprocess.Popen
    output: IO[bytes]
    started: float  # time.monotonic()


class ModelStore:
    """The served model and its store at ``root``; make one with :meth:`open`."""

    def __init__(
        self,
        root: Path,
        *,
        threads: int,
        validate_timeout_s: float,
        rollback_after: int,
        python: str,
        settle_s: float,
    ) -> None:
        self.root = root
        self.versions = root / VERSIONS
        self.incoming = root / INCOMING
        self.rejected = root / REJECTED
        self._threads = threads
        self._validate_timeout_s = validate_timeout_s
        self._rollback_after = rollback_after
        self._python = python
        self._settle_s = settle_s
        self._state = _State()
        self._detector: Detector | None = None
        self._failures = 0
        self._validation: _Validation | None = None
        self._settling: dict[str, tuple[tuple, float]] = {}  # name -> (signature, first seen)
        self._killed: list[subprocess.Popen] = []  # timed-out children not yet reaped
        self._scan_error: str | None = None

    @classmethod
    def open(
        cls,
        root: Path,
        *,
        threads: int = 1,
        seed: Path | None = None,
        validate_timeout_s: float = 30.0,
        rollback_after: int = 3,
        python: str = sys.executable,
        settle_s: float = 2.0,
    ) -> ModelStore:
        """Open (creating if needed) the store at ``root`` and load its current model.

        ``threads``: CPU threads of the served model; ``seed``: a ``.tflite`` (sidecar
        beside it) installed when no stored version loads; ``python``: the interpreter
        that runs the validation child. Raises :class:`ModelStoreError` when the store is
        unsafe or has no usable model, ``ValueError`` for a bad argument.
        """
        if validate_timeout_s <= 0 or rollback_after < 1 or settle_s < 0:
            raise ValueError(
                f"model store: need validate_timeout_s > 0, rollback_after >= 1, settle_s >= 0;"
                f" got {validate_timeout_s}, {rollback_after}, {settle_s}"
            )
        store = cls(
            Path(root).absolute(),  # the validation child runs in root: no relative paths
            threads=threads,
            validate_timeout_s=validate_timeout_s,
            rollback_after=rollback_after,
            python=python,
            settle_s=settle_s,
        )
        store._prepare()
        store._boot(Path(seed) if seed is not None else None)
        return store

    @property
    def detector(self) -> Detector:
        """The model being served."""
        if self._detector is None:
            raise ModelStoreError(f"{self.root}: the model store is closed")
        return self._detector

    @property
    def version(self) -> str:
        """The served model's version (its sha256[:12])."""
        return self.detector.version

    # ------------------------------------------------------------------ opening

    def _prepare(self) -> None:
        """Create the folders; refuse unsafe ones; sweep partials; read state.json."""
        for folder in (self.root, self.incoming, self.versions, self.rejected):
            try:
                folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            except OSError as err:
                reason = err.strerror or err
                raise ModelStoreError(f"{folder}: cannot create it ({reason})") from None
        problem = self._folders_problem()
        if problem:
            raise ModelStoreError(f"{problem}; refusing to serve models from it")
        for path in sorted(self.versions.iterdir()):
            if path.name.endswith(PARTIAL_SUFFIX):
                logger.info("model store: removing %s, left by an interrupted validation", path)
                path.unlink()
                continue
            problem = self._file_problem(path)
            if problem:
                raise ModelStoreError(f"{problem}; refusing to serve models from {self.root}")
        self._state = _read_state(self.root / STATE_NAME)

    def _boot(self, seed: Path | None) -> None:
        """Load current, else the newest history version that loads, else the seed."""
        broken = []
        detector = None
        for version in self._state.candidates:
            try:
                detector = self._load(version)
                break
            except ModelError as err:
                logger.warning("model store: version %s does not load: %s", version, err)
                broken.append(version)
        state = self._state.marked_bad(broken)
        if detector is None:
            if seed is None:
                raise ModelStoreError(
                    f"no usable model in {self.root}: deploy one to {self.incoming} (make deploy)"
                )
            detector = self._install_seed(seed)
        elif broken:
            logger.warning(
                "model store: booting on version %s, the last good one (bad: %s)",
                detector.version,
                ", ".join(broken),
            )
        state = state.deployed(detector.version)
        if state != self._state:
            self._switch(state)
        self._detector = detector

    def _install_seed(self, seed: Path) -> Detector:
        """Copy, validate (child process, waited for) and load the seed pair."""
        sidecar = seed.with_suffix(SIDECAR_SUFFIX)
        for path in (seed, sidecar):
            problem = _mode_problem(path)
            if problem:
                raise ModelStoreError(f"{problem}; refusing it as the seed model")
        try:
            staged = self._stage(seed, sidecar, seed.stem)
        except OSError as err:
            raise ModelStoreError(f"{seed}: cannot copy the seed model ({err})") from None
        reason = self._validate_now(staged)
        if reason is None:
            try:
                detector = self._commit(staged)
            except ModelError as err:
                reason = str(err)
        if reason is not None:
            staged.discard()
            raise ModelStoreError(f"{seed}: the seed model is unusable: {reason}")
        logger.info("model store: installed the seed %s as version %s", seed, detector.version)
        return detector

    def _validate_now(self, staged: _Staged) -> str | None:
        """Run the validation child to its end; the reason it fails, or None."""
        with tempfile.TemporaryFile(dir=self.root) as output:
            try:
                process = self._spawn(staged, output)
            except OSError as err:
                return f"cannot start the validator {self._python} ({err.strerror or err})"
            try:
                code = process.wait(self._validate_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                return f"validation timed out after {self._validate_timeout_s:g} s"
            return _exit_reason(code, _last_line(output))

    # ------------------------------------------------------------------ polling

    def poll(self) -> Swap | None:
        """Between captures: advance the deployment of a dropped model; never waits.

        Returns the :class:`Swap` when a validated model has just become current.
        """
        self._killed = [p for p in self._killed if p.poll() is None]
        if self._validation is not None:
            return self._check_validation()
        drop = self._next_drop()
        if drop is not None:
            self._begin(drop)
        return None

    def _next_drop(self) -> _Drop | None:
        """The first pair in incoming/ that is complete and has settled, or None."""
        now = time.monotonic()
        try:
            names = {entry.name for entry in os.scandir(self.incoming)}
        except OSError as err:
            message = f"{self.incoming}: cannot list it ({err.strerror or err})"
            if message != self._scan_error:
                logger.error("model store: %s", message)
                self._scan_error = message
            return None
        self._scan_error = None
        pairs = {}
        for name in sorted(names):
            stem = name[: -len(MODEL_SUFFIX)]
            if name.startswith(".") or not name.endswith(MODEL_SUFFIX) or not stem:
                continue  # dot-files, *.partial, sidecars and anything else
            if stem + SIDECAR_SUFFIX in names:
                pairs[stem] = (self.incoming / name, self.incoming / (stem + SIDECAR_SUFFIX))
        self._settling = {k: v for k, v in self._settling.items() if k in pairs}
        for stem, (model, sidecar) in pairs.items():
            try:
                signature = (_signature(model), _signature(sidecar))
            except OSError:
                continue  # removed while we looked
            seen = self._settling.get(stem)
            if seen is None or seen[0] != signature:
                seen = self._settling[stem] = (signature, now)
            if now - seen[1] >= self._settle_s:
                return _Drop(stem, model, sidecar, signature)
        return None

    def _begin(self, drop: _Drop) -> None:
        """Check and copy a ready drop, then start its validation child."""
        self._settling.pop(drop.name, None)
        problem = self._folders_problem() or self._drop_problem(drop)
        if problem:
            self._reject(drop, problem)
            return
        try:
            staged = self._stage(drop.model, drop.sidecar, drop.name)
        except OSError as err:
            self._reject(drop, f"cannot copy it into {self.versions} ({err.strerror or err})")
            return
        if staged.sha256 == self.detector.sidecar.sha256:
            staged.discard()
            _remove(drop)
            logger.info(
                "model store: %s is version %s, already serving; removed it",
                drop.model,
                self.version,
            )
            return
        # Not a with-block: the file outlives this call; _check_validation or close closes it.
        output = tempfile.TemporaryFile(dir=self.root)  # noqa: SIM115
        try:
            process = self._spawn(staged, output)
        except OSError as err:
            output.close()
            staged.discard()
            self._reject(drop, f"cannot start the validator {self._python} ({err.strerror or err})")
            return
        logger.info("model store: validating %s (pid %d)", drop.model, process.pid)
        self._validation = _Validation(drop, staged, process, output, time.monotonic())

    def _check_validation(self) -> Swap | None:
        """Look at the running child once: still running, timed out, failed or passed."""
        validation = self._validation
        code = validation.process.poll()
        if code is None:
            if time.monotonic() - validation.started < self._validate_timeout_s:
                return None
            validation.process.kill()
            self._killed.append(validation.process)  # reaped by later polls
            reason = f"validation timed out after {self._validate_timeout_s:g} s"
        else:
            reason = _exit_reason(code, _last_line(validation.output))
        validation.output.close()
        self._validation = None
        if reason is not None:
            validation.staged.discard()
            self._reject(validation.drop, reason)
            return None
        return self._finish(validation.drop, validation.staged)

    def _finish(self, drop: _Drop, staged: _Staged) -> Swap | None:
        """Install a validated drop and make it current; reject it if that fails."""
        try:
            detector = self._commit(staged)
            self._switch(self._state.deployed(detector.version))
        except (ModelError, ModelStoreError) as err:
            staged.discard()
            self._reject(drop, str(err))
            return None
        swap = Swap(self.version, detector.version, f"deployed {drop.model.name}")
        self._detector = detector
        self._failures = 0
        try:
            unchanged = (_signature(drop.model), _signature(drop.sidecar)) == drop.signature
        except OSError:
            unchanged = False
        if unchanged:
            _remove(drop)
        else:
            logger.info("model store: %s changed while it was validated; kept", drop.model)
        logger.info("model store: %s -> %s (%s)", swap.old_version, swap.new_version, swap.reason)
        return swap

    def _reject(self, drop: _Drop, reason: str) -> None:
        """Move the drop to rejected/ beside a one-line ``NAME.reason.txt``."""
        reason = " ".join(reason.split())
        try:
            for path in (drop.model, drop.sidecar):
                if path.is_symlink() or path.exists():
                    os.replace(path, self.rejected / path.name)
            _write_atomic(self.rejected / (drop.name + REASON_SUFFIX), reason + "\n")
        except OSError as err:
            logger.error("model store: cannot move %s to %s: %s", drop.model, self.rejected, err)
        logger.warning("model store: rejected %s: %s", drop.model, reason)

    # ------------------------------------------------------------- inference

    def inference_failed(self, error: BaseException) -> Swap | None:
        """Count an inference error; at ``rollback_after`` in a row, roll back.

        Returns the :class:`Swap` of a rollback, or None (also when there is no earlier
        version to go back to: the count then keeps growing).
        """
        self._failures += 1
        failures = self._failures
        logger.warning(
            "model store: inference error %d/%d on version %s: %s",
            failures,
            self._rollback_after,
            self.version,
            _one_line(error),
        )
        if failures < self._rollback_after:
            return None
        return self._roll_back(failures)

    def inference_ok(self) -> None:
        """A successful inference: the error count starts again from 0."""
        self._failures = 0

    def _roll_back(self, failures: int) -> Swap | None:
        """Serve the newest history version that loads; mark the failing one bad."""
        failing = self.version
        broken = []
        for version in self._state.history:
            try:
                detector = self._load(version)
            except ModelError as err:
                logger.warning("model store: version %s does not load: %s", version, err)
                broken.append(version)
                continue
            try:
                self._switch(self._state.marked_bad([failing, *broken]).deployed(version))
            except ModelStoreError as err:
                logger.error("model store: %s; rolling back in memory only", err)
            self._detector = detector
            self._failures = 0
            swap = Swap(failing, version, f"rollback after {failures} inference errors")
            logger.warning("model store: %s -> %s (%s)", failing, version, swap.reason)
            return swap
        logger.error(
            "model store: %d inference errors in a row on version %s, and no earlier version"
            " to roll back to; still serving it",
            failures,
            failing,
        )
        if broken:
            try:
                self._switch(self._state.marked_bad(broken))
            except ModelStoreError as err:
                logger.error("model store: %s", err)
        return None

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Stop a running validation (the drop stays in incoming/) and reap children."""
        validation, self._validation = self._validation, None
        if validation is not None:
            validation.process.kill()
            validation.process.wait()
            validation.output.close()
            validation.staged.discard()
        for process in self._killed:
            process.wait()
        self._killed = []
        self._detector = None

    # ------------------------------------------------------------------ plumbing

    def _paths(self, version: str) -> tuple[Path, Path]:
        return (
            self.versions / (version + MODEL_SUFFIX),
            self.versions / (version + SIDECAR_SUFFIX),
        )

    def _load(self, version: str) -> Detector:
        """The stored ``version``; :class:`ModelError` if it does not load or is misnamed."""
        model, sidecar = self._paths(version)
        detector = Detector.load(model, sidecar, self._threads)
        if detector.version != version:
            raise ModelError(f"{sidecar}: describes version {detector.version}, not {version}")
        return detector

    def _stage(self, model: Path, sidecar: Path, name: str) -> _Staged:
        """Copy a pair into versions/ as ``NAME.tflite.partial`` + ``NAME.json.partial``."""
        staged_model = self.versions / (name + MODEL_SUFFIX + PARTIAL_SUFFIX)
        staged_sidecar = self.versions / (name + SIDECAR_SUFFIX + PARTIAL_SUFFIX)
        try:
            sha256 = _copy(model, staged_model)
            _copy(sidecar, staged_sidecar)
        except OSError:
            staged_model.unlink(missing_ok=True)
            staged_sidecar.unlink(missing_ok=True)
            raise
        return _Staged(staged_model, staged_sidecar, sha256)

    def _spawn(self, staged: _Staged, output: IO[bytes]) -> subprocess.Popen:
        """Start the validation child, its stdout and stderr going to ``output``."""
        command = [
            self._python,
            "-m",
            "smilebot.model_store",
            "validate",
            str(staged.model),
            str(staged.sidecar),
        ]
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=output, cwd=self.root
        )

    def _commit(self, staged: _Staged) -> Detector:
        """fsync the validated copies, rename them to ``versions/<v>.*`` and load them."""
        version = staged.sha256[:12]
        model, sidecar = self._paths(version)
        try:
            for path in (staged.model, staged.sidecar):
                fsync_file(path)
            os.replace(staged.sidecar, sidecar)
            os.replace(staged.model, model)
            fsync_dir(self.versions)
        except OSError as err:
            raise ModelError(f"{model}: cannot install it ({err.strerror or err})") from None
        return self._load(version)

    def _switch(self, state: _State) -> None:
        """Write state.json, then delete version files it no longer names."""
        path = self.root / STATE_NAME
        try:
            _write_atomic(path, _state_json(state))
        except OSError as err:
            raise ModelStoreError(f"{path}: cannot write it ({err.strerror or err})") from None
        self._state = state
        keep = state.keeps()
        for path in self.versions.iterdir():
            stem, suffix = os.path.splitext(path.name)
            is_version_file = suffix in (MODEL_SUFFIX, SIDECAR_SUFFIX) and _VERSION.fullmatch(stem)
            if is_version_file and stem not in keep:
                logger.debug("model store: deleting %s (no longer kept)", path)
                path.unlink(missing_ok=True)

    def _folders_problem(self) -> str | None:
        """Why the store's folders are unsafe (world-writable), or None."""
        for folder in (self.root, self.incoming, self.versions, self.rejected):
            problem = _mode_problem(folder)
            if problem:
                return problem
        return None

    def _file_problem(self, path: Path) -> str | None:
        """Why ``path`` (in versions/) is unsafe: escaping ``root`` or world-writable."""
        try:
            real = path.resolve()
        except (OSError, RuntimeError) as err:
            return f"{path}: cannot resolve it ({err})"
        if not real.is_relative_to(self.root.resolve()):
            return f"{path} resolves to {real}, outside {self.root}"
        return _mode_problem(real)

    def _drop_problem(self, drop: _Drop) -> str | None:
        """Why a drop is refused: a file unsafe (see :meth:`_file_problem`) or not regular."""
        for path in (drop.model, drop.sidecar):
            problem = self._file_problem(path)
            if problem:
                return problem
            if not path.resolve().is_file():
                return f"{path} is not a regular file"
        return None


# --- the validation child ----------------------------------------------------------------


def smoke_test(detector: Detector) -> None:
    """Run a mid-grey and a seeded-noise frame of the input size through ``detector``.

    With the face threshold at 0, every candidate face is checked: scores and smiles
    finite and in 0..1, boxes finite. Raises :class:`ModelError` (one line) otherwise.
    Changes the detector's thresholds: use it on a detector that serves nothing.
    """
    spec = detector.sidecar.input
    shape = (spec.height, spec.width, 3)
    frames = {
        "mid-grey": np.full(shape, SMOKE_GREY, dtype=np.uint8),
        "noise": np.random.default_rng(SMOKE_SEED).integers(0, 256, shape, dtype=np.uint8),
    }
    detector.thresholds = dataclasses.replace(detector.sidecar.thresholds, face=0.0)
    for label, frame in frames.items():
        for face in detector.detect(frame).faces:
            values = (face.score, face.smile)
            if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
                raise ModelError(
                    f"{detector.model_path}: smoke test on a {label} frame: score {face.score}"
                    f" and smile {face.smile} should be in 0..1"
                )
            if not all(math.isfinite(v) for v in face.box):
                raise ModelError(
                    f"{detector.model_path}: smoke test on a {label} frame: box {face.box}"
                    " is not finite"
                )


def main(argv: list[str] | None = None) -> int:
    """``python -m smilebot.model_store validate MODEL.tflite MODEL.json``: 0 if usable.

    Otherwise prints one line to stderr and returns 1 (2 for a usage error).
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "validate":
        print(
            "usage: python -m smilebot.model_store validate MODEL.tflite MODEL.json",
            file=sys.stderr,
        )
        return 2
    try:
        smoke_test(Detector.load(Path(args[1]), Path(args[2])))
    except Exception as err:  # any failure refuses the model; say why in one line
        print(_one_line(err), file=sys.stderr)
        return 1
    return 0


# --- helpers -----------------------------------------------------------------------------


def _read_state(path: Path) -> _State:
    """state.json, or an empty state when there is none."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return _State()
    except (OSError, ValueError) as err:
        raise ModelStoreError(f"{path}: unreadable ({err}); fix or delete it") from None
    try:
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {STATE_FORMAT}")
        current = data["current"]
        lists = {key: data[key] for key in ("history", "bad")}
        if current is not None and not (isinstance(current, str) and _VERSION.fullmatch(current)):
            raise ValueError(f"current: not a version: {current!r}")
        for key, versions in lists.items():
            if not isinstance(versions, list) or not all(
                isinstance(v, str) and _VERSION.fullmatch(v) for v in versions
            ):
                raise ValueError(f"{key}: expected a list of versions, got {versions!r}")
    except (AttributeError, KeyError, ValueError) as err:
        message = f"{path}: not a model store state ({err}); fix or delete it"
        raise ModelStoreError(message) from None
    return _State(current, tuple(lists["history"]), tuple(lists["bad"]))


def _state_json(state: _State) -> str:
    data = {
        "format": STATE_FORMAT,
        "current": state.current,
        "history": list(state.history),
        "bad": list(state.bad),
    }
    return json.dumps(data, indent=1) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file, fsync, rename and fsync of the folder."""
    temp = path.with_name(path.name + PARTIAL_SUFFIX)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    fsync_dir(path.parent)


def _copy(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` (mode 0o640, not fsynced); the sha256 of the bytes."""
    digest = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    with source.open("rb") as reader, os.fdopen(fd, "wb") as writer:
        os.fchmod(fd, FILE_MODE)
        for block in iter(lambda: reader.read(1 << 20), b""):
            digest.update(block)
            writer.write(block)
    return digest.hexdigest()


def _mode_problem(path: Path) -> str | None:
    """Why ``path`` is unsafe to trust (world-writable, unreadable), or None."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        return f"{path}: cannot stat it ({err.strerror or err})"
    if mode & stat.S_IWOTH:
        return f"{path} is world-writable (mode {stat.S_IMODE(mode):o})"
    return None


def _signature(path: Path) -> tuple[int, int, int]:
    """(size, mtime_ns, inode) of ``path`` itself (a symlink is not followed)."""
    st = path.lstat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def _remove(drop: _Drop) -> None:
    drop.model.unlink(missing_ok=True)
    drop.sidecar.unlink(missing_ok=True)


def _exit_reason(code: int, last_line: str) -> str | None:
    """Why a validation child with exit status ``code`` refused the model, or None."""
    if code == 0:
        return None
    if code < 0:
        try:
            name = f", {signal.Signals(-code).name}"
        except ValueError:
            name = ""
        return f"validation crashed (signal {-code}{name})"
    return f"validation failed: {last_line}" if last_line else f"validation failed (exit {code})"


def _last_line(output: IO[bytes]) -> str:
    """The last non-empty line of a child's output file."""
    output.seek(0, os.SEEK_END)
    output.seek(max(0, output.tell() - _TAIL_BYTES))
    lines = output.read().decode(errors="replace").splitlines()
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if isinstance(error, ModelError) else f"{type(error).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
