import json
from dataclasses import dataclass

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
cv2 = pytest.importorskip("cv2")

from smilebot_tools import kindle  # noqa: E402
from smilebot_tools.kindle import KindleConfig, agree  # noqa: E402


@dataclass
class FakeDetection:
    box: np.ndarray
    raw_box: np.ndarray
    score: float


class FakeDetector:
    def __init__(self, boxes, tag):
        self.tag = tag
        self.boxes = [np.array(b, np.float32) for b in boxes]

    def detect(self, rgb):
        return [FakeDetection(b, b + np.array([-5, -10, 5, 0]), 0.9) for b in self.boxes]


class FakeSmile:
    def __init__(self, p, tag):
        self.tag = tag
        self.p = p

    def p_happy(self, rgb, boxes):
        return np.array(self.p[: len(boxes)], np.float32)


@pytest.fixture
def fake_teachers(monkeypatch):
    """BlazeFace short finds A, B, C; full finds A again (merged away) and E; MTCNN finds A
    (shifted), B and D. fer and facex vote on A and B."""
    teachers = {
        "blazeface": [
            FakeDetector([[10, 10, 50, 50], [100, 10, 140, 50], [200, 200, 230, 230]], "bf@1"),
            FakeDetector([[11, 11, 51, 51], [300, 300, 320, 320]], "bf-full@1"),
        ],
        "mtcnn": FakeDetector([[12, 12, 52, 52], [100, 10, 140, 50], [300, 10, 340, 50]], "mt@2"),
        "fer": FakeSmile([0.9, 0.2], "fer@3"),
        "facex": FakeSmile([0.8, 0.7], "fx@4"),
    }
    monkeypatch.setattr(kindle, "_load_teachers", lambda config: kindle._TEACHERS.update(teachers))
    return teachers


def test_agree_is_greedy_one_to_one_by_iou():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]], np.float32)
    b = np.array([[0, 0, 10, 11], [100, 100, 110, 110]], np.float32)
    pairs, only_a, only_b = agree(a, b, 0.5)
    assert pairs == [(1, 0)]  # IoU 1 beats IoU 10/11 for b[0]
    assert only_a == [0, 2] and only_b == [1]
    assert agree(np.zeros((0, 4)), b, 0.5) == ([], [], [0, 1])


def write_images(root, names):
    for name in names:
        cv2.imwrite(str(root / name), np.full((240, 360, 3), 128, np.uint8))


def test_run_labels_records_and_resumes(tmp_path, fake_teachers):
    write_images(tmp_path, ["a.jpg", "b.jpg"])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    journal = tmp_path / "kindle.jsonl"
    config = KindleConfig(workers=1)
    records = kindle.run(["a.jpg", "broken.jpg"], tmp_path, journal, config)
    assert records["broken.jpg"]["error"].startswith("unreadable")
    faces = records["a.jpg"]["faces"]
    assert len(faces) == 2  # A and B agree; C, D and E are disagreements
    np.testing.assert_allclose(faces[0]["box"], [11, 11, 51, 51])  # mean of both teachers
    teachers = sorted(d["teacher"] for d in records["a.jpg"]["disagreements"])
    assert teachers == ["bf-full@1", "bf@1", "mt@2"]
    # Interrupted run: a torn last line is ignored and finished images are not redone.
    with journal.open("a") as out:
        out.write('{"image": "b.jp')
    calls = []
    fake_teachers["mtcnn"].detect = lambda rgb: calls.append(1) or []
    again = kindle.run(["a.jpg", "broken.jpg", "b.jpg"], tmp_path, journal, config)
    assert len(calls) == 1 and set(again) == {"a.jpg", "broken.jpg", "b.jpg"}
    assert again["a.jpg"] == records["a.jpg"]


def test_to_manifest_applies_the_second_opinion_rule(tmp_path, fake_teachers):
    write_images(tmp_path, ["a.jpg"])
    records = kindle.run(["a.jpg"], tmp_path, tmp_path / "j.jsonl", KindleConfig(workers=1))
    base = pd.DataFrame({"image": ["a.jpg"], "source": ["photos"], "group": ["photo:a"]})
    rows, disagreements = kindle.to_manifest(records, base, KindleConfig())
    # Face A: fer 0.9 and facex 0.8 both say smiling -> 1; face B: 0.2 vs 0.7 -> unknown.
    assert rows["smile"].tolist()[0] == 1 and pd.isna(rows["smile"].tolist()[1])
    assert rows["box_source"].unique().tolist() == ["bf@1+mt@2"]
    assert rows["smile_source"].tolist() == ["fer@3+fx@4", ""]
    assert sorted(disagreements["teacher"]) == ["bf-full@1", "bf@1", "mt@2"]
    stats = kindle.smile_agreement(records, 0.5)
    assert stats == {
        "faces": 2,
        "both_smiling": 1,
        "both_not_smiling": 0,
        "disagree": 1,
        "agreement_rate": 0.5,
    }


def test_journal_lines_are_json(tmp_path, fake_teachers):
    write_images(tmp_path, ["a.jpg"])
    journal = tmp_path / "j.jsonl"
    kindle.run(["a.jpg"], tmp_path, journal, KindleConfig(workers=1))
    assert [json.loads(line)["image"] for line in journal.read_text().splitlines()] == ["a.jpg"]


class BrightnessSmile:
    """P(happy) = the crop's mean brightness / 255; checks the crop is upscaled and whole."""

    def __init__(self, tag, gain=1.0):
        self.tag, self.gain, self.calls = tag, gain, 0

    def p_happy(self, gray, boxes):
        self.calls += 1
        side = kindle.CROP_TEACHER_SIDE
        assert gray.shape == (side, side) and boxes.tolist() == [[0, 0, side, side]]
        return np.array([min(1.0, gray.mean() / 255 * self.gain)], np.float32)


def test_second_opinion_rule():
    assert kindle.second_opinion(0.9, 0.6, 0.5) == 1
    assert kindle.second_opinion(0.1, 0.5, 0.5) == 0  # "> happy", so 0.5 is not happy
    assert kindle.second_opinion(0.9, 0.2, 0.5) is None


def test_crop_smiles_labels_caches_and_notices_other_crops(tmp_path):
    crops = np.stack([np.full((24, 24), v, np.uint8) for v in (30, 140, 230)])
    # fer: 0.12, 0.55, 0.9; facex (x0.8): 0.09, 0.44, 0.72 -> not, disagree, smiling
    teachers = [BrightnessSmile("fer@1"), BrightnessSmile("facex@2", gain=0.8)]
    cache = tmp_path / "kindle" / "crops.npz"
    labels, source = kindle.crop_smiles(crops, cache, 0.5, teachers)
    assert (labels, source) == ([0, None, 1], "fer@1+facex@2")
    assert teachers[0].calls == 3 and cache.exists()
    again = kindle.crop_smiles(crops, cache, 0.5, teachers)
    assert again == (labels, source) and teachers[0].calls == 3  # from the cache
    assert kindle.crop_smiles(crops, cache, 0.4, teachers)[0] == [0, 1, 1]  # rule re-applied
    kindle.crop_smiles(crops[::-1].copy(), cache, 0.5, teachers)
    assert teachers[0].calls == 6  # other crops: judged again
    cache.write_bytes(b"torn")
    assert kindle.crop_smiles(crops, cache, 0.5, teachers) == (labels, source)
