"""``make eval``: every baseline on the same images, clean and degraded, and the report.

:func:`run_baseline` runs one :class:`~smilebot_tools.baselines.Baseline` over manifest
records (each image read with OpenCV as BGR; for a degraded condition, one
:func:`smilebot_tools.augment.degrade` kind at :data:`STRENGTH` on an RGB copy, seeded per
image from ``(seed, index)`` so that every baseline sees the same pixels) and times each
``detect()`` call. :func:`figures` turns a :class:`Run` into the face and smile metrics of
:mod:`smilebot_tools.evaluate`, recall by face size and latency; :func:`evaluate` does it
for every baseline and condition and adds the drops under degradation; :func:`table` and
:func:`write_report` write ``eval.json``, ``EVAL.md`` and the plots (:mod:`.plots`).

Smile figures are computed, as in ``convert.py``, on each baseline's own found faces (a
detection at IoU >= 0.5 with a labelled face, whatever its face score), so a detector that
finds only easy faces is judged on easy smiles.

Not the job of this module: running models (baselines.py), metric definitions
(evaluate.py), drawing (plots.py), the command line (cli.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from smilebot.provenance import git_commit, machine_info
from smilebot_tools import plots
from smilebot_tools.augment import KINDS, degrade
from smilebot_tools.baselines import BlazeFaceFer, HaarV1
from smilebot_tools.evaluate import (
    Found,
    Truth,
    face_metrics,
    match,
    smile_metrics,
    smile_pairs,
    threshold_for_precision,
)

if TYPE_CHECKING:
    from smilebot_tools.baselines import Baseline
    from smilebot_tools.pipeline import Example

logger = logging.getLogger(__name__)

# The issue's production skew (low contrast, backlit, noise, blur, JPEG), in augment's
# names and physical order; augment's color_cast is not in the issue's list.
DEGRADATIONS = tuple(k for k in KINDS if k != "color_cast")
STRENGTH = 0.6  # degrade() strength 0..1: a clearly bad but usable frame (JPEG quality 30)
SIZE_BINS = (0.0, 24.0, 48.0, 96.0, 192.0, math.inf)  # face height in px, [lo, hi)
TARGET_PRECISION = 0.9
OURS, V1, PEER = "smilebot", HaarV1.name, BlazeFaceFer.name
SPEEDUP_TARGET = 20.0  # smilebot >= 20x faster than v1
PEER_LATENCY_TARGET = 1.5  # smilebot's latency <= 1.5x the peer's
PLOTS = {
    "face_pr": "Faces: precision-recall at IoU 0.5",
    "smile_roc": "Smiles: ROC on found faces",
    "smile_pr": "Smiles: precision-recall on found faces",
    "recall_by_size": "Faces: recall by face height",
    "degradation_drops": "Drops under degradation",
}


@dataclass(frozen=True, eq=False)
class Run:
    """One baseline on one version of the images: per image its ``Truth``, the baseline's
    ``Found`` and ``latencies_ms`` float64[N], the wall time of ``detect()``. ``condition``
    is ``"clean"`` or a degradation kind."""

    baseline: str
    condition: str
    truths: list[Truth]
    founds: list[Found]
    latencies_ms: np.ndarray


def load_frame(
    record: Example, condition: str, seed: int, index: int, strength: float = STRENGTH
) -> np.ndarray:
    """The BGR uint8 [H, W, 3] image of ``record`` as ``condition`` makes it; a degradation
    draws from ``default_rng((seed, index))`` and uses the non-ignore faces as its subject."""
    bgr = cv2.imread(str(record.path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"{record.path}: cannot read image")
    if condition == "clean":
        return bgr
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    faces = np.asarray(record.boxes, np.float32).reshape(-1, 4)[~np.asarray(record.ignore, bool)]
    degraded = degrade(rgb, condition, np.random.default_rng((seed, index)), strength, faces)
    return cv2.cvtColor(degraded, cv2.COLOR_RGB2BGR)


def run_baseline(
    baseline: Baseline,
    records: Sequence[Example],
    condition: str = "clean",
    seed: int = 0,
    strength: float = STRENGTH,
) -> Run:
    """``baseline.detect`` on every record's image under ``condition``; one untimed warm-up
    call on the first image, then each call timed with ``time.perf_counter``."""
    if condition != "clean" and condition not in KINDS:
        raise ValueError(f"unknown condition {condition!r}; expected 'clean' or one of {KINDS}")
    truths, founds, latencies = [], [], []
    progress = tqdm(records, desc=f"{baseline.name} / {condition}", unit="image", leave=False)
    for index, record in enumerate(progress):
        bgr = load_frame(record, condition, seed, index, strength)
        if index == 0:
            baseline.detect(bgr.copy())
        start = time.perf_counter()
        found = baseline.detect(bgr)
        latencies.append((time.perf_counter() - start) * 1e3)
        boxes = np.asarray(record.boxes, np.float64).reshape(-1, 4)
        truths.append(Truth(boxes, np.asarray(record.ignore, bool), np.asarray(record.smile)))
        founds.append(found)
    return Run(baseline.name, condition, truths, founds, np.array(latencies, np.float64))


def recall_by_size(run: Run) -> list[dict]:
    """Per :data:`SIZE_BINS` bin of non-ignore face height (px): faces, found (hit at IoU
    0.5 by any detection, greedy as :func:`~smilebot_tools.evaluate.match`), recall."""
    heights, hit = [], []
    for truth, found in zip(run.truths, run.founds, strict=True):
        faces = np.flatnonzero(~truth.ignore)
        matched = match(truth, found, 0.5)
        seen = np.zeros(len(truth.boxes), bool)
        seen[matched[matched >= 0]] = True
        heights.append(truth.boxes[faces, 3] - truth.boxes[faces, 1])
        hit.append(seen[faces])
    heights = np.concatenate(heights) if heights else np.zeros(0)
    hit = np.concatenate(hit) if hit else np.zeros(0, bool)
    bins = []
    for lo, hi in itertools.pairwise(SIZE_BINS):
        inside = (heights >= lo) & (heights < hi)
        n, k = int(inside.sum()), int(hit[inside].sum())
        bins.append(
            {
                "min_px": lo,
                "max_px": None if math.isinf(hi) else hi,
                "faces": n,
                "found": k,
                "recall": k / n if n else float("nan"),
            }
        )
    return bins


def figures(
    run: Run,
    operating_face: float,
    operating_smile: float,
    target_precision: float = TARGET_PRECISION,
) -> dict:
    """Faces (``face_metrics`` at ``operating_face``), smiles (``smile_metrics`` at
    ``operating_smile``), recall by size, latency median/p95 in ms, image count."""
    labels, probs = smile_pairs(run.truths, run.founds)
    return {
        "faces": face_metrics(run.truths, run.founds, operating_threshold=operating_face),
        "smiles": smile_metrics(labels, probs, operating_smile, target_precision),
        "recall_by_size": recall_by_size(run),
        "latency_ms": {
            "median": float(np.median(run.latencies_ms)),
            "p95": float(np.percentile(run.latencies_ms, 95)),
        },
        "images": len(run.truths),
    }


def evaluate(
    records: Sequence[Example],
    baselines: Sequence[Baseline],
    conditions: Sequence[str] = ("clean", *DEGRADATIONS),
    seed: int = 0,
    strength: float = STRENGTH,
) -> tuple[dict, list[Run]]:
    """Every baseline on every condition of the same images. Returns the results
    (``{"baselines": {name: {"size_bytes", "operating", "conditions": {condition:
    figures}}}, "drops": {name: {kind: {"ap50", "smile_f1", "smile_auc"}}}, "images",
    "faces", ...}``, drops = clean minus degraded) and the runs, for the plots."""
    names = [b.name for b in baselines]
    if not records:
        raise ValueError("no images to evaluate")
    if len(set(names)) != len(names):
        raise ValueError(f"baseline names must be unique, got {names}")
    if "clean" not in conditions:
        raise ValueError(f"conditions must include 'clean' (the drops need it), got {conditions}")
    runs = [run_baseline(b, records, c, seed, strength) for c in conditions for b in baselines]
    per = {}
    for b in baselines:
        by_condition = {
            r.condition: figures(r, b.operating_face, b.operating_smile)
            for r in runs
            if r.baseline == b.name
        }
        per[b.name] = {
            "size_bytes": int(b.size_bytes),
            "operating": {"face": b.operating_face, "smile": b.operating_smile},
            "conditions": by_condition,
        }
    _at_v1_precision(per, [r for r in runs if r.condition == "clean"])
    faces = [(~np.asarray(r.ignore, bool)) for r in records]
    labelled = np.concatenate([np.asarray(r.smile)[f] for r, f in zip(records, faces, strict=True)])
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine_info(),
        "images": len(records),
        "faces": int(sum(f.sum() for f in faces)),
        "smile_labelled": int(np.isin(labelled, (0, 1)).sum()),
        "smiling": int((labelled == 1).sum()),
        "conditions": list(conditions),
        "seed": seed,
        "strength": strength,
        "target_precision": TARGET_PRECISION,
        "baselines": per,
        "drops": {name: _drops(per[name]["conditions"]) for name in names},
    }, runs


def _at_v1_precision(per: dict, clean_runs: list[Run]) -> None:
    """Add to each baseline's clean smile figures the recall (and threshold) at v1's
    precision at v1's operating point: the smile comparison at equal precision, which does
    not depend on where each baseline's operating threshold sits."""
    if V1 not in per:
        return
    precision = per[V1]["conditions"]["clean"]["smiles"]["precision"]
    for run in clean_runs:
        threshold, recall = threshold_for_precision(*smile_pairs(run.truths, run.founds), precision)
        smiles = per[run.baseline]["conditions"]["clean"]["smiles"]
        smiles["v1_precision"] = precision
        smiles["recall_at_v1_precision"] = recall
        smiles["threshold_at_v1_precision"] = threshold


def _drops(by_condition: dict) -> dict:
    """Clean minus degraded AP@0.5, smile F1 and smile AUC, per degraded condition."""
    clean = by_condition["clean"]
    keys = {"ap50": ("faces", "ap50"), "smile_f1": ("smiles", "f1"), "smile_auc": ("smiles", "auc")}
    return {
        condition: {k: clean[a][b] - figs[a][b] for k, (a, b) in keys.items()}
        for condition, figs in by_condition.items()
        if condition != "clean"
    }


# --- the report --------------------------------------------------------------------------


def speed(results: dict) -> dict:
    """Median clean latencies (ms/image) of smilebot, v1 and the peer and the ratios
    ``faster_than_v1`` (v1 / smilebot) and ``of_peer`` (smilebot / peer); NaN where a
    baseline is missing from the run."""
    ms = {
        role: results["baselines"][name]["conditions"]["clean"]["latency_ms"]["median"]
        if name in results["baselines"]
        else float("nan")
        for role, name in (("smilebot", OURS), ("v1", V1), ("peer", PEER))
    }
    return {
        "median_ms": ms,
        "faster_than_v1": _ratio(ms["v1"], ms["smilebot"]),
        "of_peer": _ratio(ms["smilebot"], ms["peer"]),
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def speed_line(results: dict) -> str:
    """The issue's sentence, with this run's numbers."""
    s = speed(results)
    ms = s["median_ms"]
    return (
        f"{OURS} is {_num(s['faster_than_v1'], '.1f')}x faster than {V1}, "
        f"{_num(s['of_peer'], '.1f')}x {PEER}'s latency (median ms/image: "
        f"{OURS} {_num(ms['smilebot'], '.2f')}, {V1} {_num(ms['v1'], '.2f')}, "
        f"{PEER} {_num(ms['peer'], '.2f')})."
    )


def targets(results: dict) -> list[dict]:
    """The issue's targets: ``{"target", "measured", "met"}`` each, from the clean run."""
    clean = {
        name: b["conditions"]["clean"]
        for name, b in results["baselines"].items()
        if name in (OURS, V1)
    }

    def get(name: str, a: str, b: str) -> float:
        return clean[name][a].get(b, float("nan")) if name in clean else float("nan")

    ap, v1_ap = get(OURS, "faces", "ap50"), get(V1, "faces", "ap50")
    f1, v1_f1 = get(OURS, "smiles", "f1"), get(V1, "smiles", "f1")
    recall = get(OURS, "smiles", "recall_at_v1_precision")
    v1_recall = get(V1, "smiles", "recall")
    v1_precision = get(V1, "smiles", "precision")
    s = speed(results)
    return [
        {
            "target": f"faces: {OURS} AP@0.5 above {V1}'s",
            "measured": f"{_num(ap, '.3f')} vs {_num(v1_ap, '.3f')}",
            "met": bool(ap > v1_ap),
        },
        {
            "target": f"smiles: {OURS} F1 at its operating point above {V1}'s",
            "measured": f"{_num(f1, '.3f')} vs {_num(v1_f1, '.3f')}",
            "met": bool(f1 > v1_f1),
        },
        {
            "target": f"smiles: {OURS} recall at {V1}'s precision "
            f"({_num(v1_precision, '.2f')}) above {V1}'s recall",
            "measured": f"{_num(recall, '.3f')} vs {_num(v1_recall, '.3f')}",
            "met": bool(recall > v1_recall),
        },
        {
            "target": f">= {SPEEDUP_TARGET:.0f}x faster than {V1} (median latency)",
            "measured": f"{_num(s['faster_than_v1'], '.1f')}x",
            "met": bool(s["faster_than_v1"] >= SPEEDUP_TARGET),
        },
        {
            "target": f"latency within {PEER_LATENCY_TARGET}x of {PEER}'s",
            "measured": f"{_num(s['of_peer'], '.2f')}x",
            "met": bool(s["of_peer"] <= PEER_LATENCY_TARGET),
        },
    ]


def table(results: dict) -> str:
    """Markdown: the clean table (one row per baseline), the drops table, the speed line."""
    rows = [
        "| baseline | face AP@0.5 | AP@[.5:.95] | top-box IoU | FP/image @op | smile P | smile R "
        "| smile F1 | smile AUC | smile threshold @ P target (R) | ms/image (median) | size "
        "| operating face / smile |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, b in results["baselines"].items():
        c = b["conditions"]["clean"]
        f, s = c["faces"], c["smiles"]
        cells = [
            *(_num(f[k], ".3f") for k in ("ap50", "ap50_95", "mean_top_iou")),
            _num(f["fp_per_image_at_threshold"], ".2f"),
            *(_num(s[k], ".3f") for k in ("precision", "recall", "f1", "auc")),
            f"{_num(s['threshold_at_target'], '.3f')} ({_num(s['recall_at_target'], '.2f')})",
            _num(c["latency_ms"]["median"], ".2f"),
            _size(b["size_bytes"]),
            f"{b['operating']['face']:.2f} / {b['operating']['smile']:.2f}",
        ]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    kinds = [c for c in results["conditions"] if c != "clean"]
    drops = [
        "Drop (clean minus degraded; positive = worse) of face AP@0.5 / smile F1 / smile AUC:",
        "",
        "| baseline | " + " | ".join(kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for name, by_kind in results["drops"].items():
        cells = [
            " / ".join(_num(by_kind[k][key], "+.3f") for key in ("ap50", "smile_f1", "smile_auc"))
            for k in kinds
        ]
        drops.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join([*rows, "", *(drops if kinds else []), "", speed_line(results)]) + "\n"


def _num(x: float | None, spec: str) -> str:
    """``x`` formatted; NaN (or None, NaN read back from eval.json) as "n/a"."""
    return "n/a" if x is None or math.isnan(x) else format(x, spec)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def _size_table(results: dict) -> str:
    """Markdown: recall (faces) per face-height bin, one row per baseline, clean images."""
    first = next(iter(results["baselines"].values()))["conditions"]["clean"]["recall_by_size"]
    heads = [plots.bin_label(b) for b in first]
    rows = ["| baseline | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for name, b in results["baselines"].items():
        bins = b["conditions"]["clean"]["recall_by_size"]
        rows.append(
            f"| {name} | "
            + " | ".join(f"{_num(x['recall'], '.2f')} ({x['faces']})" for x in bins)
            + " |"
        )
    return "\n".join(rows) + "\n"


def write_report(results: dict, out: Path, runs: list[Run]) -> Path:
    """``out/eval.json`` (the results, the speed ratios and the targets; NaN as null),
    ``out/EVAL.md`` and the PNGs of :data:`PLOTS`; returns the path of ``EVAL.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    full = {**results, "speed": speed(results), "targets": targets(results)}
    (out / "eval.json").write_text(json.dumps(_jsonable(full), indent=1) + "\n")
    clean = {r.baseline: r for r in runs if r.condition == "clean"}
    operating = {name: b["operating"]["smile"] for name, b in results["baselines"].items()}
    drawn = [
        plots.face_pr(clean, out / "face_pr.png"),
        plots.smile_roc(clean, out / "smile_roc.png"),
        plots.smile_pr(clean, out / "smile_pr.png", operating),
        plots.recall_by_size(results, out / "recall_by_size.png"),
    ]
    if any(c != "clean" for c in results["conditions"]):
        drawn.append(plots.degradation_drops(results, out / "degradation_drops.png"))
    path = out / "EVAL.md"
    path.write_text(_markdown(full, [p.name for p in drawn]))
    return path


def _markdown(full: dict, pngs: list[str]) -> str:
    m = full["machine"]
    kinds = [c for c in full["conditions"] if c != "clean"]
    lines = [
        "# smilebot: evaluation against the baselines",
        "",
        "Generated by `smilebot-tools eval` (smilebot_tools.report); do not edit by hand. "
        f"Commit `{full['commit']}`, {full['created']}, {m['cpu']} ({m['cores']} cores), "
        f"Python {m['python']}.",
        "",
        f"{describe_data(full)}.",
        "",
        "## All baselines on the same clean images",
        "",
        "Faces: AP at IoU 0.5 and averaged over 0.5:0.95 (every detection each baseline "
        "returns), mean IoU of the top-scoring box per face, false positives per image at the "
        "operating face threshold. Smiles, on the faces each baseline found (IoU >= 0.5) that "
        "carry a smile label: precision, recall, F1 at the operating smile threshold, ROC AUC, "
        f"and the lowest threshold whose precision reaches {full['target_precision']} (the "
        "recall there). "
        "Latency: median wall time of one `detect()` call per image (after one warm-up call), "
        "1 thread, this machine. Size: the model files each baseline reads.",
        "",
        table(full),
        "## Targets (issue 6)",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *(
            f"| {t['target']} | {t['measured']} | {'met' if t['met'] else 'NOT met'} |"
            for t in full["targets"]
        ),
        "",
        "## Recall by face height (clean; recall at IoU 0.5, faces in brackets)",
        "",
        _size_table(full),
    ]
    if kinds:
        lines += [
            "## Robustness",
            "",
            f"Degradations ({', '.join(kinds)}) by `smilebot_tools.augment.degrade` at strength "
            f"{full['strength']}, seeded per image (seed {full['seed']}): every baseline sees "
            "the same degraded pixels. Their drops are in the second table above.",
            "",
        ]
    lines += ["## Plots", ""]
    for name in pngs:
        lines += [f"![{PLOTS[Path(name).stem]}]({name})", ""]
    return "\n".join(lines)


def describe_data(results: dict) -> str:
    """What was evaluated, e.g. ``data/manifests/val.csv (sources photos2): 30 images, ...``."""
    where = results.get("manifest", "the given records")
    if results.get("sources"):
        where += f" (sources {', '.join(results['sources'])})"
    return (
        f"{where}: {results['images']} images, {results['faces']} faces (ignore regions left "
        f"out), {results['smile_labelled']} with a smile label ({results['smiling']} smiling)"
    )


def _jsonable(x):
    """``x`` with NaN/inf floats as None and NumPy scalars as Python ones (strict JSON)."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def run_eval(
    manifest_path: Path,
    root: Path,
    out: Path,
    model: Path | None = None,
    conditions: Sequence[str] = ("clean", *DEGRADATIONS),
    seed: int = 0,
    baselines: Sequence[Baseline] | None = None,
    sources: Sequence[str] | None = None,
) -> Path:
    """``make eval``: the records of ``manifest_path`` (images under ``root``), every
    baseline (default: :func:`~smilebot_tools.baselines.load_baselines` plus smilebot with
    voting NMS) on every condition, OpenCV at 1 thread; writes the report to ``out`` and
    returns the path of ``EVAL.md``. ``sources``: only the manifest rows of these sources
    (e.g. the by-eye ``photos2`` and the face-free ``backgrounds``)."""
    from smilebot_tools import manifest, pipeline  # pipeline imports TensorFlow
    from smilebot_tools.baselines import MODEL, SmilebotModel, load_baselines

    df = manifest.load(manifest_path)
    if sources:
        unknown = sorted(set(sources) - set(df["source"]))
        if unknown:
            raise ValueError(
                f"{manifest_path}: no rows with source {unknown[0]!r} "
                f"(sources: {', '.join(sorted(set(df['source'])))})"
            )
        df = df[df["source"].isin(sources)]
    records = pipeline.records_from_manifest(df, root)
    if baselines is None:
        voting = SmilebotModel(model or MODEL, nms_method="voting")
        baselines = [*load_baselines(model), voting]
    cv2.setNumThreads(1)
    logger.info("%d images from %s, %d baselines", len(records), manifest_path, len(baselines))
    results, runs = evaluate(records, baselines, conditions, seed)
    results["manifest"] = str(manifest_path)
    results["sources"] = sorted(set(sources)) if sources else None
    return write_report(results, out, runs)
