from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")
cv2 = pytest.importorskip("cv2")

from smilebot_tools import datacard, datasets, manifest  # noqa: E402
from smilebot_tools.kindle import KindleConfig  # noqa: E402
from tests.fakes import use_stand_in_teachers  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def rows(image, boxes, smiles, source="photos2"):
    return [
        {"image": image, "width": 100, "height": 100, "source": source, "group": image}
        | {"face": k, "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3], "smile": s}
        for k, (b, s) in enumerate(zip(boxes, smiles, strict=True))
    ]


def test_compare_with_rater_counts_by_hand():
    person = manifest.new(
        rows("a.jpg", [[0, 0, 10, 10], [50, 50, 60, 60], [80, 80, 90, 90]], [1, 0, None])
    )
    teachers = manifest.new(
        rows("a.jpg", [[1, 0, 11, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [1, None, 0])
    )
    figures = datasets.compare_with_rater(teachers, person)
    # Faces 0 and 1 are found (IoU 0.82 and 1), face 2 is missed, one teacher face is extra.
    # Smiles: face 0 both 1 (agree); face 1 teachers unknown; face 2 not paired.
    assert figures == {
        "rater_faces": 3,
        "found_by_teachers": 2,
        "missed_by_teachers": 1,
        "extra_teacher_faces": 1,
        "smile_labelled": 1,
        "smile_agree": 1,
        "rater_smiles_found": 1,
        "rater_smiles_labelled_smiling": 1,
    }


def test_split_keeps_groups_whole_and_follows_the_policy():
    frames = [
        {"image": f"frames/{v}/{i}.jpg", "source": "video", "group": f"video:{v}"}
        for v in ("cap12_edit", "cap13_edit2")
        for i in range(3)
    ]
    others = [
        {"image": "p2/x.jpg", "source": "photos2", "group": "photo:x.jpg"},
        {"image": "p/y.jpg", "source": "photos", "group": "photo:y.jpg"},
    ] + [
        {"image": f"bg/{i}.jpg", "source": "backgrounds", "group": f"background:{i}.jpg"}
        for i in range(40)
    ]
    df = manifest.new([r | {"width": 10, "height": 10} for r in frames + others])
    out = datasets.split(df, seed=0)
    assert (out.groupby("group")["split"].nunique() == 1).all()
    split_of = dict(zip(out["group"], out["split"], strict=True))
    assert split_of["video:cap13_edit2"] == "val" and split_of["video:cap12_edit"] == "train"
    assert split_of["photo:x.jpg"] == "val" and split_of["photo:y.jpg"] == "train"
    val_backgrounds = sum(split_of[f"background:{i}.jpg"] == "val" for i in range(40))
    assert 2 <= val_backgrounds <= 16  # ~20% of 40
    assert out.equals(datasets.split(df, seed=0))


@pytest.mark.skipif(not SHARED.exists(), reason="needs the shared data pack")
def test_build_end_to_end_with_stand_in_teachers(tmp_path, monkeypatch):
    use_stand_in_teachers(monkeypatch, p_fer=0.9, p_facex=0.2)
    config = datasets.BuildConfig(frame_step=50, synth_scenes=6, kindle=KindleConfig(workers=1))
    result = datasets.build(tmp_path, SHARED, config)
    df = result.all
    manifest.validate(df, root=tmp_path)
    assert (df.groupby("group")["split"].nunique() == 1).all()
    photos2 = df[df["source"] == "photos2"]
    assert set(photos2["split"]) == {"val"} and photos2["face"].notna().sum() == 80
    assert (photos2["smile_source"].isin(["rater:shared-data-eye", ""])).all()
    assert set(df.loc[df["source"] == "synth", "split"]) == {"train"}
    backgrounds = df[df["source"] == "backgrounds"]
    assert len(backgrounds) == 60 and backgrounds["face"].isna().all()
    kindled = df[df["source"] == "video"]
    assert (kindled["box_source"] == "bf@0+mt@0").all()
    assert kindled["smile"].isna().all()  # fer says 0.9, facex 0.2: the opinions differ
    assert result.smile_agreement["disagree"] == result.smile_agreement["faces"] > 0
    # faces24 crops get the same rule (cached in kindle/): here every one is a disagreement
    assert result.faces24_smiles["disagree"] == result.faces24_smiles["crops"] > 10_000
    assert (tmp_path / "kindle" / "faces24_smiles.npz").exists()

    paths = datacard.write_outputs(result, tmp_path, config)
    assert all(p.exists() for p in paths)
    assert manifest.load(tmp_path / "manifests" / "val.csv")["split"].eq("val").all()
    assert "photos2" in (tmp_path / "DATA_CARD.md").read_text()
    assert "- faces24 smiles (the same rule" in (tmp_path / "DATA_CARD.md").read_text()
    before = (tmp_path / "manifests" / "all.csv").read_bytes()
    again = datasets.build(tmp_path, SHARED, config)  # resumable: same result, nothing redone
    manifest.save(again.all, tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_bytes() == before
