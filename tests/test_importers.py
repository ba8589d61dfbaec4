import logging
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
cv2 = pytest.importorskip("cv2")

from smilebot_tools import importers, manifest  # noqa: E402
from smilebot_tools.convention import (  # noqa: E402
    BLAZEFACE_FULL,
    BLAZEFACE_SHORT,
    MTCNN,
    BoxCorrection,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def reasons(skipped):
    return {(Path(s.file).name, s.line): s.reason for s in skipped}


# --- the box convention --------------------------------------------------------------


def test_box_correction_hand_computed():
    box = np.array([[10, 20, 110, 220]])  # w = 100, h = 200; integers become float64
    got = BLAZEFACE_FULL.apply(box)
    np.testing.assert_allclose(got, [[10 + 6.8, 20 + 27.2, 110 - 10.5, 220 - 1.4]])
    assert got.dtype == np.float64 and box.tolist() == [[10, 20, 110, 220]]
    assert BoxCorrection(0.068, 0.136, -0.105, -0.007) == BLAZEFACE_FULL
    assert BoxCorrection(0.068, 0.089, -0.089, -0.023) == BLAZEFACE_SHORT
    assert BoxCorrection(0.012, 0.242, 0.026, -0.002) == MTCNN
    batch = np.tile(np.array([0, 0, 10, 10], np.float32), (2, 3, 1))
    assert MTCNN.apply(batch).shape == (2, 3, 4) and MTCNN.apply(batch).dtype == np.float32
    with pytest.raises(ValueError, match="shape"):
        MTCNN.apply(np.zeros((2, 3)))


# --- image folder --------------------------------------------------------------------


def test_image_folder_lists_images_and_skips_broken_ones(tmp_path):
    root = tmp_path / "data"
    write_image(root / "pics" / "a.jpg", 40, 30)
    write_image(root / "pics" / "sub" / "B.PNG", 20, 10)
    good = write_image(root / "pics" / "sub" / "c.jpeg", 64, 48).read_bytes()
    (root / "pics" / "cut.jpg").write_bytes(good[: len(good) // 2])
    (root / "pics" / "junk.png").write_bytes(b"not an image")
    (root / "pics" / "notes.txt").write_text("hello")
    df, skipped = importers.image_folder(root / "pics", root, source="photos")
    assert df["image"].tolist() == ["pics/a.jpg", "pics/sub/B.PNG", "pics/sub/c.jpeg"]
    assert df["width"].tolist() == [40, 20, 64] and df["height"].tolist() == [30, 10, 48]
    assert df["group"].tolist() == [
        "folder:pics/a.jpg",
        "folder:pics/sub/B.PNG",
        "folder:pics/sub/c.jpeg",
    ]
    assert df["face"].isna().all() and (df["box_source"] == "").all()
    assert (df["source"] == "photos").all()
    why = reasons(skipped)
    assert set(why) == {("cut.jpg", 0), ("junk.png", 0)}
    assert "truncated" in why[("cut.jpg", 0)]
    manifest.validate(df, root)
    by_dir = importers.image_folder(root / "pics", root, group_by_dir=True).manifest
    assert by_dir["group"].tolist() == ["folder:pics", "folder:pics/sub", "folder:pics/sub"]


def test_image_folder_outside_the_root_is_an_error(tmp_path):
    write_image(tmp_path / "pics" / "a.jpg", 8, 8)
    with pytest.raises(importers.ImporterError, match="not under the data root"):
        importers.image_folder(tmp_path / "pics", tmp_path / "elsewhere")


# --- WIDER FACE ----------------------------------------------------------------------

WIDER = """\
0--Parade/p1.jpg
3
10 10 40 50 0 0 0 0 0 0
5 5 30 30 0 0 0 1 0 0
60 20 10 10 0 0 0 0 0 0
0--Parade/p2.jpg
0
0 0 0 0 0 0 0 0 0 0
0--Parade/missing.jpg
1
1 1 30 30 0 0 0 0 0 0
0--Parade/p3.jpg
two
0--Parade/p4.jpg
2
1 2 30 30 0 0 0 0 0 0
0--Parade/p5.jpg
2
0 0 50 60 0 0 0 0 2 0
70 10 0 30 0 0 0 0 0 0
"""


def test_wider_face(tmp_path, caplog):
    root = tmp_path / "data"
    for name in ("p1", "p2", "p3", "p4", "p5"):
        write_image(root / "wider" / "images" / "0--Parade" / f"{name}.jpg", 100, 80)
    txt = write_text(root / "wider" / "wider_face_train_bbx_gt.txt", WIDER)
    with caplog.at_level(logging.WARNING, logger="smilebot_tools.importers"):
        df, skipped = importers.wider_face(txt, root / "wider" / "images", root)
    assert "brow-to-chin" in caplog.text
    manifest.validate(df, root)
    rows = df.set_index(["image", "face"])
    p1 = rows.loc["wider/images/0--Parade/p1.jpg"]
    assert p1[manifest.BOX].to_numpy().tolist() == [
        [10, 10, 50, 60],
        [5, 5, 35, 35],
        [60, 20, 70, 30],
    ]
    assert p1["ignore"].tolist() == [False, True, True]  # invalid; smaller than 20 px
    assert (p1["box_source"] == "wider:raw").all()
    p2 = df[df["image"].str.endswith("p2.jpg")]
    assert len(p2) == 1 and p2["face"].isna().all() and p2["box_source"].tolist() == ["wider"]
    p5 = rows.loc["wider/images/0--Parade/p5.jpg"]  # heavy occlusion; the empty box dropped
    assert p5["ignore"].tolist() == [True] and p5["x2"].tolist() == [50]
    assert df["group"].nunique() == df["image"].nunique() == 3
    why = reasons(skipped)
    assert set(why) == {("wider_face_train_bbx_gt.txt", n) for n in (9, 13, 17, 20)}
    assert "missing.jpg" in why[("wider_face_train_bbx_gt.txt", 9)]
    assert "face count" in why[("wider_face_train_bbx_gt.txt", 13)]
    assert "p4.jpg" in why[("wider_face_train_bbx_gt.txt", 17)]
    assert "empty box" in why[("wider_face_train_bbx_gt.txt", 20)]


def test_wider_face_with_a_correction(tmp_path):
    root = tmp_path
    write_image(root / "img" / "a.jpg", 200, 200)
    txt = write_text(root / "gt.txt", "a.jpg\n1\n10 20 100 100 0 0 0 0 0 0\n")
    fix = BoxCorrection(0.1, 0.2, -0.1, 0.0)
    df, skipped = importers.wider_face(txt, root / "img", root, correction=fix)
    assert not skipped
    assert df[manifest.BOX].to_numpy().tolist() == [[20, 40, 100, 120]]
    assert df["box_source"].tolist() == ["wider"]


# --- GENKI-4K ------------------------------------------------------------------------


def test_genki4k(tmp_path):
    root = tmp_path
    for n in (1, 2, 3):
        write_image(root / "genki" / "files" / f"file{n:04d}.jpg", 64, 48)
    txt = write_text(root / "genki" / "labels.txt", "1 0.1 -0.2 0.0\n0 0 0 0\nx 0 0\n\n")
    df, skipped = importers.genki4k(txt, root / "genki" / "files", root)
    assert df["image"].tolist() == ["genki/files/file0001.jpg", "genki/files/file0002.jpg"]
    assert df["smile"].tolist() == [1, 0] and df["face"].tolist() == [0, 0]
    assert (df["smile_source"] == "rater:genki4k").all() and (df["box_source"] == "").all()
    assert df["x1"].isna().all() and df["width"].tolist() == [64, 64]
    assert [(Path(s.file).name, s.line) for s in skipped] == [("labels.txt", 3)]
    manifest.validate(df, root)


# --- CelebA --------------------------------------------------------------------------


def celeba_files(root: Path) -> dict:
    for n in (1, 2, 3):
        write_image(root / "celeba" / "img" / f"00000{n}.jpg", 60, 80)
    attr = "3\n5_o_Clock_Shadow Smiling Young\n"
    attr += "000001.jpg -1  1  1\n000002.jpg  1 -1  1\n000003.jpg -1  1 -1\n"
    bbox = "3\nimage_id x_1 y_1 width height\n"
    bbox += "000001.jpg 10 5 40 50\n000002.jpg 0 0 30 30\n000003.jpg 20 30 50 60\n"
    part = "000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n"
    return {
        "attr_txt": write_text(root / "celeba" / "list_attr_celeba.txt", attr),
        "bbox_txt": write_text(root / "celeba" / "list_bbox_celeba.txt", bbox),
        "partition_txt": write_text(root / "celeba" / "list_eval_partition.txt", part),
        "images_dir": root / "celeba" / "img",
        "root": root,
    }


def test_celeba(tmp_path):
    df, skipped = importers.celeba(**celeba_files(tmp_path))
    assert not skipped
    manifest.validate(df, tmp_path)
    assert df["smile"].tolist() == [1, 0, 1]
    assert (df["smile_source"] == "rater:celeba").all()
    assert df["split"].tolist() == ["train", "val", "test"]
    assert df[manifest.BOX].to_numpy().tolist() == [
        [10, 5, 50, 55],
        [0, 0, 30, 30],
        [20, 30, 60, 80],
    ]
    assert (df["box_source"] == "celeba:raw").all()  # the third box is clipped to the image


def test_celeba_without_boxes_or_partition(tmp_path):
    files = celeba_files(tmp_path) | {"bbox_txt": None, "partition_txt": None}
    (tmp_path / "celeba" / "img" / "000002.jpg").unlink()
    df, skipped = importers.celeba(**files)
    assert df["image"].tolist() == ["celeba/img/000001.jpg", "celeba/img/000003.jpg"]
    assert df["x1"].isna().all() and (df["box_source"] == "").all() and (df["split"] == "").all()
    assert [(Path(s.file).name, s.line) for s in skipped] == [("list_attr_celeba.txt", 4)]


# --- rater CSV -----------------------------------------------------------------------


def test_rater_csv(tmp_path):
    write_image(tmp_path / "set" / "a.jpg", 100, 80)
    write_image(tmp_path / "set" / "b.png", 50, 50)
    write_image(tmp_path / "set" / "c.jpg", 50, 50)
    csv = write_text(
        tmp_path / "set" / "FACES.csv",
        "file,face,x,y,w,h,blazeface_score,smile_by_eye\n"
        "a.jpg,0,10,10,40,40,0.9,yes\n"
        "a.jpg,1,70,50,40,40,0.8,slight\n"
        "b.png,0,5,5,30,30,0.9,no\n"
        "missing.jpg,0,5,5,30,30,0.9,yes\n"
        "c.jpg,0,5,5,30,30,0.9,yes\n"
        "c.jpg,1,5,5,30,30,0.9,maybe\n"
        "b.png,1,5,5,30,30\n"
        "../../outside.jpg,0,5,5,30,30,0.9,yes\n",
    )
    df, skipped = importers.rater_csv(csv, tmp_path, "me", box_source="blazeface@1:raw")
    manifest.validate(df, tmp_path)
    assert df["image"].tolist() == ["set/a.jpg", "set/a.jpg"]
    assert df["smile"].fillna(-1).tolist() == [1, -1]
    assert (df["smile_source"] == "rater:me").all()
    assert (df["box_source"] == "blazeface@1:raw").all()
    assert df[manifest.BOX].to_numpy().tolist()[1] == [70, 50, 100, 80]  # clipped
    assert df["group"].tolist() == ["folder:set/a.jpg", "folder:set/a.jpg"]
    why = {s.line: s.reason for s in skipped}
    assert set(why) == {5, 7, 8, 9}  # missing file; bad smile; short row; outside the root
    assert "smile_by_eye 'maybe'" in why[7] and "fields" in why[8] and "root" in why[9]
    fixed = importers.rater_csv(csv, tmp_path, "me", "blazeface@1", correction=BLAZEFACE_FULL)
    np.testing.assert_allclose(
        fixed.manifest[manifest.BOX].to_numpy()[0], BLAZEFACE_FULL.apply(np.array([10, 10, 50, 50]))
    )


@pytest.mark.skipif(not (SHARED / "photos2" / "FACES.csv").exists(), reason="no shared data")
def test_rater_csv_on_the_photos2_faces():
    df, skipped = importers.rater_csv(
        SHARED / "photos2" / "FACES.csv", SHARED, "eye", "blazeface", source="photos2"
    )
    assert not skipped
    assert len(df) == 80 and df["image"].nunique() == 30
    assert (df["smile"] == 1).sum() == 28 and df["smile"].isna().sum() == 9
    manifest.validate(df, SHARED)


# --- the bot's captures ------------------------------------------------------------------


def test_captures_export_round_trip(tmp_path):
    """What `smilebot captures export` writes is what importers.captures reads."""
    from smilebot.capture_log import CaptureLog
    from smilebot.cli import main as smilebot

    frame = np.full((48, 64, 3), 120, np.uint8)
    days = (1_700_000_000.0, 1_700_000_060.0, 1_700_090_000.0)  # two on one day, one the next
    with CaptureLog.open(tmp_path / "log") as log:
        for when in days:
            log.add(
                trigger="button",
                model_version="abc",
                detections=[],
                decision="no_face",
                latency_ms={},
                frame=frame,
                time=when,
            )
    root = tmp_path / "data"
    export = root / "captures" / "kitchen"
    assert smilebot(["captures", "--folder", str(tmp_path / "log"), "export", str(export)]) == 0
    with (export / "captures.jsonl").open("a") as jsonl:
        jsonl.write('{"seq": 9, "time": 1700000100.0, "image": null}\n')  # privacy mode
        jsonl.write("not json\n")
    df, skipped = importers.captures(export, root, bot="kitchen")
    assert df["image"].tolist() == [f"captures/kitchen/{n:08d}.jpg" for n in (1, 2, 3)]
    assert df["group"].tolist() == [
        "capture:kitchen:2023-11-14",
        "capture:kitchen:2023-11-14",
        "capture:kitchen:2023-11-15",
    ]
    assert (df["width"] == 64).all() and (df["height"] == 48).all()
    assert df["face"].isna().all() and (df["source"] == "captures").all()
    assert reasons(skipped).keys() == {("captures.jsonl", 4), ("captures.jsonl", 5)}
    manifest.validate(df, root)
