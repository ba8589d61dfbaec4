"""The results store: benchmark figures as JSON files, one file per run, and comparisons.

Each figure is ``{"name", "value", "unit", "commit", "machine"}`` so that runs from
different commits and machines can be compared later. Files are named
``<UTC time>-<commit>.json`` under a results folder (``results/`` by default,
git-ignored) and hold ``{"created", "figures"}``. The commit and machine helpers are the
device package's (:mod:`smilebot.provenance`), so ``smilebot bench --json`` on a Pi
writes the same records. :func:`compare` sets two runs side by side.

Not the job of this module: measuring anything (bench.py does that).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from smilebot.provenance import git_commit, machine_info, stamp, write_figures

__all__ = ["compare", "git_commit", "machine_info", "newest_runs", "read_run", "write_run"]


def write_run(figures: list[dict], folder: Path) -> Path:
    """Write ``{"name", "value", "unit"}`` figures, stamped with commit and machine (a
    figure merged from another run keeps its own), as a new run file in ``folder``."""
    stamp_time = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    commit = git_commit()
    return write_figures(figures, folder / f"{stamp_time}-{commit.replace('+', '_')}.json")


def read_run(path: Path) -> list[dict]:
    """The figures of a run file; ValueError naming the file and the first bad record."""
    try:
        figures = json.loads(path.read_text())["figures"]
        stamp(figures)  # raises on a figure without name, value or unit
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a results file ({err!r})") from None
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return figures


def newest_runs(folder: Path, n: int = 2) -> list[Path]:
    """The ``n`` newest run files in ``folder``, oldest first (names start with the time);
    ValueError when there are fewer."""
    runs = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    if len(runs) < n:
        raise ValueError(f"{folder}: {len(runs)} results file(s), need {n}; run `make bench`")
    return runs[-n:]


def compare(a: list[dict], b: list[dict], labels: tuple[str, str] = ("A", "B")) -> str:
    """Runs ``a`` and ``b`` side by side: one row per figure name (in ``a``'s order, then
    ``b``'s new ones) with A, B, B/A and the unit; a figure in only one run shows ``-``
    for the other and is marked ``only A``/``only B``. Commit and machine of each on top.
    """
    by_a, by_b = {f["name"]: f for f in a}, {f["name"]: f for f in b}
    names = list(by_a) + [name for name in by_b if name not in by_a]
    width = max([len(n) for n in names] + [6])
    lines = [_provenance(label, run) for label, run in zip(labels, (a, b), strict=True)]
    lines.append(f"{'figure':<{width}} {labels[0]:>12} {labels[1]:>12} {'B/A':>8}  unit")
    for name in names:
        fa, fb = by_a.get(name), by_b.get(name)
        unit = (fa or fb)["unit"]
        if fa is not None and fb is not None and fa["unit"] != fb["unit"]:
            unit = f"{fa['unit']} vs {fb['unit']}"
        ratio = _ratio(fa, fb)
        note = "  only A" if fb is None else "  only B" if fa is None else ""
        lines.append(f"{name:<{width}} {_value(fa):>12} {_value(fb):>12} {ratio:>8}  {unit}{note}")
    return "\n".join(lines)


def _provenance(label: str, run: list[dict]) -> str:
    if not run:
        return f"{label}: no figures"
    commits = sorted({f["commit"] for f in run})
    machines = []
    for f in run:
        m = f["machine"]
        text = f"{m.get('host')} ({m.get('cpu')}, {m.get('cores')} cores, numpy {m.get('numpy')})"
        if text not in machines:
            machines.append(text)
    return f"{label}: commit {', '.join(commits)} on {'; '.join(machines)}"


def _value(figure: dict | None) -> str:
    return "-" if figure is None else f"{figure['value']:.4g}"


def _ratio(fa: dict | None, fb: dict | None) -> str:
    if fa is None or fb is None or fa["unit"] != fb["unit"] or fa["value"] == 0:
        return "-"
    ratio = fb["value"] / fa["value"]
    return f"{ratio:.3f}" if math.isfinite(ratio) else "-"
