"""Where and from what a figure was measured: the commit and the machine.

A benchmark figure is ``{"name", "value", "unit"}``; :func:`stamp` adds ``"commit"``
(:func:`git_commit`) and ``"machine"`` (:func:`machine_info`), so that runs from different
commits and machines can be compared. :func:`write_figures` writes a run file, ``{"created":
UTC stamp, "figures": [records]}``: the format of the desktop's results store
(``smilebot_tools.results``), which reuses these helpers. Standard library and NumPy only,
so ``smilebot bench --json`` works on the Pi.

Not the job of this module: measuring anything (``smilebot.bench``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from smilebot.runtime import RUNTIME_NAMES

RECORD_KEYS = ("name", "value", "unit", "commit", "machine")


def git_commit(repo: Path | None = None) -> str:
    """Short hash of HEAD, with ``+dirty`` when the tree has changes; ``unknown`` outside git."""
    cwd = repo or Path(__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict:
    """Where a figure was measured: host, CPU model, cores, Python, NumPy and the TFLite
    runtimes' versions (None: not installed)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "runtimes": {name: _version(name) for name in RUNTIME_NAMES},
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def stamp(figures: Iterable[dict]) -> list[dict]:
    """``{"name", "value", "unit"}`` figures -> records with this commit and machine.

    A figure that already carries a commit and machine (measured elsewhere and merged)
    keeps its own. Raises ValueError naming a figure without a name, value or unit.
    """
    commit, machine = git_commit(), machine_info()
    records = []
    for figure in figures:
        missing = [key for key in RECORD_KEYS[:3] if key not in figure]
        if missing:
            raise ValueError(f"figure {figure.get('name', figure)!r} has no {missing[0]!r}")
        record = dict(figure)
        record.setdefault("commit", commit)
        record.setdefault("machine", machine)
        records.append(record)
    return records


def write_figures(figures: Iterable[dict], path: Path) -> Path:
    """Write ``figures`` (:func:`stamp`-ed) as a run file at ``path``; returns ``path``."""
    created = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    records = stamp(figures)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps({"created": created, "figures": records}, indent=1) + "\n")
    os.replace(tmp, path)
    return path
