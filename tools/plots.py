"""The evaluation's PNGs, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Curves come from a clean :class:`~smilebot_tools.report.Run` per baseline (``runs_by_name``:
baseline name -> run, in table order, which also fixes each baseline's colour); bar charts
from the results of :func:`smilebot_tools.report.evaluate`. Each function writes one PNG at
:data:`DPI` and returns its path.

Not the job of this module: the metrics themselves (evaluate.py; AP, AUC and the matching
come from there), running baselines or writing the report (report.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from smilebot_tools.evaluate import average_precision, match, roc_auc, smile_pairs

if TYPE_CHECKING:
    from smilebot_tools.report import Run

DPI = 120
SIZE = (6.4, 4.8)  # inches: 768 x 576 px at DPI


def face_pr_curve(run: Run) -> tuple[np.ndarray, np.ndarray, float]:
    """Faces at IoU 0.5: recall and precision float64[D] after each detection in descending
    score order (detections on ignore regions left out), and AP@0.5 from
    :func:`~smilebot_tools.evaluate.average_precision` on the same hits."""
    matched = [match(t, f, 0.5) for t, f in zip(run.truths, run.founds, strict=True)]
    flat = np.concatenate(matched) if matched else np.zeros(0, np.int64)
    scores = np.concatenate([f.scores for f in run.founds]) if run.founds else np.zeros(0)
    counted = flat != -2
    hits, scores = flat[counted] >= 0, scores[counted]
    num_faces = sum(int((~t.ignore).sum()) for t in run.truths)
    ap = average_precision(hits, scores, num_faces)
    tp = np.cumsum(hits[np.argsort(-scores, kind="stable")])
    return tp / max(num_faces, 1), tp / np.arange(1, len(tp) + 1), ap


def smile_curves(labels: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """At each distinct threshold, highest first (predicted smiling: prob >= threshold):
    ``threshold``, ``tpr`` (= recall), ``fpr`` and ``precision``, float64[T] each; rates
    are NaN when there are no smiling (tpr) or no non-smiling (fpr) faces."""
    order = np.argsort(-probs, kind="stable")
    sorted_probs, positive = probs[order], labels[order] == 1
    ends = np.flatnonzero(np.append(sorted_probs[1:] != sorted_probs[:-1], len(probs) > 0))
    tp, fp = np.cumsum(positive)[ends], np.cumsum(~positive)[ends]
    p, n = int(positive.sum()), int((~positive).sum())
    return {
        "threshold": sorted_probs[ends],
        "tpr": tp / p if p else np.full(len(ends), np.nan),
        "fpr": fp / n if n else np.full(len(ends), np.nan),
        "precision": tp / (ends + 1),
    }


def face_pr(runs_by_name: Mapping[str, Run], path: Path) -> Path:
    """Precision-recall of faces at IoU 0.5, one line per baseline, AP in the legend."""
    fig, ax = _figure()
    for i, (name, run) in enumerate(runs_by_name.items()):
        recall, precision, ap = face_pr_curve(run)
        ax.step(recall, precision, where="post", color=f"C{i}", label=f"{name} (AP {ap:.3f})")
    _unit_axes(ax, "recall (found / labelled faces)", "precision (hits / detections)")
    ax.set_title("Faces: precision-recall at IoU 0.5 (clean images)")
    return _save(fig, ax, path)


def smile_roc(runs_by_name: Mapping[str, Run], path: Path) -> Path:
    """ROC of the smile score on each baseline's found faces with a label, AUC in the legend."""
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", label="chance")
    for i, (name, run) in enumerate(runs_by_name.items()):
        labels, probs = smile_pairs(run.truths, run.founds)
        c = smile_curves(labels, probs)
        label = f"{name} (AUC {roc_auc(labels, probs):.3f}, {len(labels)} faces)"
        ax.plot(np.r_[0.0, c["fpr"]], np.r_[0.0, c["tpr"]], color=f"C{i}", label=label)
    _unit_axes(ax, "false positive rate (non-smiles called smiling)", "true positive rate")
    ax.set_title("Smiles: ROC on found faces (clean images)")
    return _save(fig, ax, path)


def smile_pr(
    runs_by_name: Mapping[str, Run], path: Path, operating: Mapping[str, float] | None = None
) -> Path:
    """Precision-recall of the smile score on found faces with a label; a dot marks each
    baseline's operating threshold (``operating``: name -> smile threshold) when given."""
    fig, ax = _figure()
    for i, (name, run) in enumerate(runs_by_name.items()):
        labels, probs = smile_pairs(run.truths, run.founds)
        c = smile_curves(labels, probs)
        ax.step(c["tpr"], c["precision"], where="post", color=f"C{i}", label=name)
        if operating and name in operating and (labels == 1).any():
            said = probs >= operating[name]
            tp = int((said & (labels == 1)).sum())
            point = (tp / int((labels == 1).sum()), tp / max(1, int(said.sum())))
            ax.plot(*point, "o", color=f"C{i}", markersize=7)
    _unit_axes(ax, "recall (smiles called smiling / smiles)", "precision")
    ax.set_title("Smiles: precision-recall on found faces (dot: operating point)")
    return _save(fig, ax, path)


def recall_by_size(results: dict, path: Path) -> Path:
    """Grouped bars: recall at IoU 0.5 per face-height bin, one bar per baseline (clean)."""
    fig, ax = _figure()
    names = list(results["baselines"])
    bins = results["baselines"][names[0]]["conditions"]["clean"]["recall_by_size"]
    x, width = np.arange(len(bins)), 0.8 / len(names)
    for i, name in enumerate(names):
        recall = [
            b["recall"] for b in results["baselines"][name]["conditions"]["clean"]["recall_by_size"]
        ]
        ax.bar(
            x + (i - (len(names) - 1) / 2) * width,
            np.nan_to_num(recall),
            width,
            color=f"C{i}",
            label=name,
        )
    ax.set_xticks(x, [f"{bin_label(b)}\n({b['faces']} faces)" for b in bins])
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("face height, brow to chin")
    ax.set_ylabel("recall at IoU 0.5 (found / labelled)")
    ax.set_title("Faces: recall by face size (clean images)")
    fig.legend(loc="outside lower center", ncols=min(len(names), 4), fontsize="small")
    fig.savefig(path, dpi=DPI)
    return Path(path)


def degradation_drops(results: dict, path: Path) -> Path:
    """Grouped bars per degradation: the drop (clean minus degraded) of face AP@0.5 (left)
    and smile F1 (right), one bar per baseline."""
    fig = Figure(figsize=(SIZE[0] * 1.5, SIZE[1]), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    names = list(results["drops"])
    kinds = [c for c in results["conditions"] if c != "clean"]
    x, width = np.arange(len(kinds)), 0.8 / len(names)
    for ax, key, title in zip(axes, ("ap50", "smile_f1"), ("face AP@0.5", "smile F1"), strict=True):
        for i, name in enumerate(names):
            drop = [results["drops"][name][k][key] for k in kinds]
            offset = (i - (len(names) - 1) / 2) * width
            ax.bar(x + offset, np.nan_to_num(drop), width, color=f"C{i}", label=name)
        ax.axhline(0, color="0.3", linewidth=0.8)
        ax.set_xticks(x, [k.replace("_", "\n") for k in kinds])
        ax.set_xlabel(f"degradation (strength {results['strength']})")
        ax.set_title(f"{title}: drop under degradation")
    axes[0].set_ylabel("clean minus degraded (positive = worse)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="outside lower center", ncols=min(len(names), 4), fontsize="small"
    )
    fig.savefig(path, dpi=DPI)
    return Path(path)


def _figure():
    fig = Figure(figsize=SIZE, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _unit_axes(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _save(fig: Figure, ax, path: Path) -> Path:
    ax.legend(fontsize="small", loc="best")
    fig.savefig(path, dpi=DPI)
    return Path(path)


def bin_label(b: dict) -> str:
    """``"24-48 px"`` or ``">= 192 px"`` for a ``recall_by_size`` bin."""
    return (
        f">= {b['min_px']:.0f} px"
        if b["max_px"] is None
        else f"{b['min_px']:.0f}-{b['max_px']:.0f} px"
    )
