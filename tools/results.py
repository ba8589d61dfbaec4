"""The results store: benchmark figures as JSON files, one file per run.

Each figure is ``{"name", "value", "unit", "commit", "machine"}`` so that runs from
different commits and machines can be compared later. Files are named
``<UTC time>-<commit>.json`` under a results folder (``results/`` by default,
git-ignored).

Not the job of this module: measuring anything (bench.py does that).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np


def git_commit(repo: Path | None = None) -> str:
    """Short hash of HEAD, with ``+dirty`` when the tree has changes; ``unknown`` outside git."""
    cwd = repo or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict:
    """Where a figure was measured: host, CPU model, cores, Python and NumPy versions."""
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
    }


def write_run(figures: list[dict], folder: Path) -> Path:
    """Write ``{"name", "value", "unit"}`` figures, stamped with commit and machine."""
    commit, machine = git_commit(), machine_info()
    records = [dict(f, commit=commit, machine=machine) for f in figures]
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = folder / f"{stamp}-{commit.replace('+', '_')}.json"
    path.write_text(json.dumps({"created": stamp, "figures": records}, indent=1) + "\n")
    return path
