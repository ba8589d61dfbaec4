"""Evaluation runs and the report, with fake baselines on a tiny set of written images."""

import copy
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("matplotlib")  # the desktop tools (not in the Pi-like venv)

from smilebot_tools import report
from smilebot_tools.augment import KINDS
from smilebot_tools.evaluate import Found
from smilebot_tools.report import (
    DEGRADATIONS,
    evaluate,
    figures,
    load_frame,
    run_baseline,
    table,
    write_report,
)

# (width, height, boxes px, ignore, smile): every image has its own size, so a fake baseline
# can tell them apart. Non-ignore face heights 40, 80 | 120 | 210 | 20 | 24, one per size bin
# except [24, 48), which holds two (40 and 24: a bin includes its lower edge).
IMAGES = [
    (200, 160, [[10, 10, 40, 50], [100, 20, 160, 100]], [False, False], [1, 0]),
    (220, 160, [[20, 20, 30, 32], [50, 10, 150, 130]], [True, False], [-1, 1]),
    (240, 220, [[10, 0, 210, 210]], [False], [-1]),
    (260, 160, [[200, 100, 216, 120]], [False], [0]),
    (280, 160, [[100, 50, 130, 74]], [False], [1]),
    (300, 160, [], [], []),
]


@dataclass(frozen=True)
class Record:
    """The fields of ``pipeline.Example`` that evaluation reads."""

    path: str
    boxes: np.ndarray
    ignore: np.ndarray
    smile: np.ndarray


def write_records(folder: Path) -> list[Record]:
    rng = np.random.default_rng(7)
    records = []
    for i, (w, h, boxes, ignore, smile) in enumerate(IMAGES):
        path = folder / f"image{i}.png"
        cv2.imwrite(str(path), rng.integers(40, 216, (h, w, 3), dtype=np.uint8))
        records.append(
            Record(
                str(path),
                np.array(boxes, np.float32).reshape(-1, 4),
                np.array(ignore, bool),
                np.array(smile, np.int32),
            )
        )
    return records


class Oracle:
    """The labelled boxes (ignore regions too) at score 1, moved right by ``shift`` of each
    box's width; smile = the label (unknown: 0), or the constant ``smile``."""

    size_bytes = 1000

    def __init__(self, records, name="smilebot", shift=0.0, smile=None, operating_smile=0.5):
        self.name, self.shift, self.smile = name, shift, smile
        self.operating_face, self.operating_smile = 0.5, operating_smile
        self.by_size = {(IMAGES[i][1], IMAGES[i][0]): r for i, r in enumerate(records)}

    def detect(self, bgr):
        record = self.by_size[bgr.shape[:2]]
        boxes = record.boxes.astype(np.float64)
        boxes[:, [0, 2]] += self.shift * (boxes[:, 2:3] - boxes[:, 0:1])
        n = len(boxes)
        smiles = np.clip(record.smile, 0, 1) if self.smile is None else np.full(n, self.smile)
        return Found(boxes, np.ones(n), smiles.astype(np.float64))


class Blind:
    """Finds nothing."""

    size_bytes, operating_face, operating_smile = 10, 0.5, 0.5

    def __init__(self, name="v1 Haar"):
        self.name = name

    def detect(self, bgr):
        return Found(np.zeros((0, 4)), np.zeros(0), np.zeros(0))


class Fragile(Oracle):
    """An :class:`Oracle` on the clean images, blind on any other pixels."""

    def __init__(self, records, name):
        super().__init__(records, name)
        self.clean = {
            (IMAGES[i][1], IMAGES[i][0]): cv2.imread(r.path) for i, r in enumerate(records)
        }

    def detect(self, bgr):
        if np.array_equal(bgr, self.clean[bgr.shape[:2]]):
            return super().detect(bgr)
        return Blind().detect(bgr)


class Recorder(Blind):
    """Blind, and keeps a digest of every frame it is given."""

    def __init__(self):
        super().__init__("recorder")
        self.seen = []

    def detect(self, bgr):
        self.seen.append(hashlib.sha256(bgr.tobytes()).hexdigest())
        return super().detect(bgr)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def evaluated(records):
    baselines = [Oracle(records), Blind(), Fragile(records, "BlazeFace + fer")]
    return evaluate(records, baselines, conditions=("clean", "noise", "jpeg"))


def test_degradations_are_the_issues_list_in_augments_names():
    assert set(DEGRADATIONS) <= set(KINDS)
    assert sorted(DEGRADATIONS) == ["backlight", "jpeg", "low_contrast", "motion_blur", "noise"]


def test_perfect_baseline_scores_one(records):
    run = run_baseline(Oracle(records), records)
    f = figures(run, 0.5, 0.5)
    faces, smiles = f["faces"], f["smiles"]
    assert (faces["faces"], faces["ap50"], faces["ap50_95"]) == (6, 1.0, 1.0)
    assert faces["mean_top_iou"] == pytest.approx(1.0)
    assert faces["fp_per_image_at_threshold"] == 0.0
    assert (smiles["faces"], smiles["smiling"]) == (5, 3)  # ignore and unknown smiles left out
    assert (smiles["precision"], smiles["recall"], smiles["f1"], smiles["auc"]) == (1, 1, 1, 1)
    assert [b["faces"] for b in f["recall_by_size"]] == [1, 2, 1, 1, 1]
    assert [b["found"] for b in f["recall_by_size"]] == [1, 2, 1, 1, 1]
    assert [b["max_px"] for b in f["recall_by_size"]] == [24, 48, 96, 192, None]
    assert f["images"] == 6 and len(run.latencies_ms) == 6


def test_blind_baseline_scores_zero(records):
    f = figures(run_baseline(Blind(), records), 0.5, 0.5)
    assert (f["faces"]["ap50"], f["faces"]["ap50_95"], f["faces"]["recall"]) == (0, 0, 0)
    assert [b["found"] for b in f["recall_by_size"]] == [0] * 5
    assert [b["recall"] for b in f["recall_by_size"]] == [0.0] * 5
    assert (f["smiles"]["faces"], f["smiles"]["f1"]) == (0, 0)


def test_shifted_boxes_hand_computed(records):
    # Every box moved right by 0.2 of its width: IoU 0.8 / 1.2 = 2/3 with its face. It is a hit
    # at IoU 0.50..0.65 and a miss at 0.70..0.95: AP@[.5:.95] = 4/10. Smile 0.7 everywhere:
    # all 5 labelled faces called smiling, 3 are: P 3/5, R 1, F1 0.75.
    run = run_baseline(Oracle(records, shift=0.2, smile=0.7), records)
    f = figures(run, 0.5, 0.5)
    assert f["faces"]["ap50"] == 1.0
    assert f["faces"]["ap50_95"] == pytest.approx(0.4)
    assert f["faces"]["mean_top_iou"] == pytest.approx(2 / 3)
    s = f["smiles"]
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((0.6, 1.0, 0.75))
    above = figures(run, 0.5, operating_smile=0.8)["smiles"]  # nobody called smiling
    assert (above["precision"], above["recall"]) == (0, 0)


def test_degraded_pixels_are_seeded_and_the_same_for_every_baseline(records):
    first, second, other_seed, clean = Recorder(), Recorder(), Recorder(), Recorder()
    run_baseline(first, records, "noise", seed=3)
    run_baseline(second, records, "noise", seed=3)
    run_baseline(other_seed, records, "noise", seed=4)
    run_baseline(clean, records, "clean")
    assert first.seen == second.seen
    assert not set(first.seen) & set(other_seed.seen)
    assert not set(first.seen) & set(clean.seen)
    np.testing.assert_array_equal(
        load_frame(records[0], "clean", 0, 0), cv2.imread(records[0].path)
    )
    assert load_frame(records[0], "backlight", 0, 0).shape == cv2.imread(records[0].path).shape


def test_unknown_condition_is_refused(records):
    with pytest.raises(ValueError, match="'fog'"):
        run_baseline(Blind(), records, "fog")


def test_latency_is_the_detect_wall_time(records):
    class Slow(Blind):
        calls = 0

        def detect(self, bgr):
            Slow.calls += 1
            time.sleep(0.003)
            return super().detect(bgr)

    run = run_baseline(Slow("slow"), records)
    assert len(run.latencies_ms) == 6 and Slow.calls == 7  # one untimed warm-up call
    f = figures(run, 0.5, 0.5)
    assert 3.0 <= f["latency_ms"]["median"] <= f["latency_ms"]["p95"]


def test_evaluate_collects_every_baseline_and_condition(evaluated):
    results, runs = evaluated
    assert len(runs) == 9 and {(r.baseline, r.condition) for r in runs} >= {("v1 Haar", "jpeg")}
    assert (results["images"], results["faces"], results["smile_labelled"]) == (6, 6, 5)
    assert results["smiling"] == 3
    assert list(results["baselines"]) == ["smilebot", "v1 Haar", "BlazeFace + fer"]
    smilebot = results["baselines"]["smilebot"]
    assert smilebot["size_bytes"] == 1000 and smilebot["operating"] == {"face": 0.5, "smile": 0.5}
    assert set(smilebot["conditions"]) == {"clean", "noise", "jpeg"}
    # The perfect baseline loses nothing; the fragile one loses everything under degradation.
    assert results["drops"]["smilebot"]["noise"] == {"ap50": 0.0, "smile_f1": 0.0, "smile_auc": 0.0}
    fragile = results["drops"]["BlazeFace + fer"]["jpeg"]
    assert (fragile["ap50"], fragile["smile_f1"]) == (1.0, 1.0)
    assert set(results["drops"]["v1 Haar"]) == {"noise", "jpeg"}


def test_evaluate_refuses_bad_input(records):
    with pytest.raises(ValueError, match="no images"):
        evaluate([], [Blind()])
    with pytest.raises(ValueError, match="unique"):
        evaluate(records, [Blind(), Blind()])
    with pytest.raises(ValueError, match="clean"):
        evaluate(records, [Blind()], conditions=("noise",))


def with_latencies(results, **ms):
    out = copy.deepcopy(results)
    for name, value in ms.items():
        out["baselines"][name]["conditions"]["clean"]["latency_ms"]["median"] = value
    return out


def test_table_rows_drops_and_speed_line(evaluated):
    results = with_latencies(
        evaluated[0], smilebot=2.0, **{"v1 Haar": 50.0, "BlazeFace + fer": 1.5}
    )
    text = table(results)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[1].startswith(
        "| smilebot | 1.000 | 1.000 | 1.000 | 0.00 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 (1.00) |"
    )
    assert rows[2].startswith("| v1 Haar | 0.000 | 0.000 | n/a |")
    assert rows[3].startswith("| BlazeFace + fer | 1.000 |")
    assert "| smilebot | +0.000 / +0.000 / +0.000 | +0.000 / +0.000 / +0.000 |" in text
    assert "| BlazeFace + fer | +1.000 / +1.000 / n/a |" in text  # no AUC without smiles found
    assert "smilebot is 25.0x faster than v1 Haar, 1.3x BlazeFace + fer's latency" in text


def test_targets_met_and_not_met(evaluated):
    met = report.targets(
        with_latencies(evaluated[0], smilebot=2.0, **{"v1 Haar": 50.0, "BlazeFace + fer": 1.5})
    )
    assert [t["met"] for t in met] == [True, True, True, True, True]
    assert met[3]["measured"] == "25.0x"
    slow = report.targets(
        with_latencies(evaluated[0], smilebot=2.0, **{"v1 Haar": 30.0, "BlazeFace + fer": 1.0})
    )
    assert [t["met"] for t in slow] == [True, True, True, False, False]  # 15x, 2x the peer's


def test_smiles_compared_at_v1_precision(records):
    """v1 calls every face smiling (P 0.6, R 1); smilebot ranks them perfectly but runs at a
    strict operating point (R 0 at 1.01): at equal precision it finds every smile too, so
    neither F1 at the operating points nor recall at v1's precision puts it above v1."""
    v1 = Oracle(records, name="v1 Haar", smile=0.7)
    ours = Oracle(records, name="smilebot", operating_smile=1.01)
    results, _ = evaluate(records, [v1, ours], conditions=("clean",))
    smiles = results["baselines"]["smilebot"]["conditions"]["clean"]["smiles"]
    assert smiles["v1_precision"] == pytest.approx(0.6)
    assert smiles["recall_at_v1_precision"] == 1.0
    assert smiles["threshold_at_v1_precision"] == 0.0  # the lowest threshold reaching 0.6
    rows = report.targets(results)
    recall_row = next(t for t in rows if "recall at" in t["target"])
    assert recall_row["measured"] == "1.000 vs 1.000" and not recall_row["met"]
    assert "(0.60)" in recall_row["target"] and len(rows) == 5


def test_write_report(evaluated, tmp_path):
    results, runs = evaluated
    path = write_report(results, tmp_path / "eval", runs)
    assert path == tmp_path / "eval" / "EVAL.md"
    text = path.read_text()
    pngs = ["face_pr", "smile_roc", "smile_pr", "recall_by_size", "degradation_drops"]
    for name in pngs:
        assert f"]({name}.png)" in text
        assert (tmp_path / "eval" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert table(results) in text and "| met |" in text and "NOT met" in text

    def no_nan(token):
        raise AssertionError(f"eval.json is not strict JSON: {token}")

    saved = json.loads((tmp_path / "eval" / "eval.json").read_text(), parse_constant=no_nan)
    assert saved["baselines"] == report._jsonable(results["baselines"])
    assert saved["drops"] == report._jsonable(results["drops"])
    assert saved["baselines"]["v1 Haar"]["conditions"]["clean"]["smiles"]["auc"] is None
    assert [t["met"] for t in saved["targets"]] == [t["met"] for t in report.targets(results)]


def test_run_eval_reads_a_manifest(tmp_path):
    from smilebot_tools import manifest

    records = write_records(tmp_path)
    rows = []
    for i, (w, h, boxes, ignore, smile) in enumerate(IMAGES):
        base = {"image": f"image{i}.png", "width": w, "height": h, "source": "x", "group": f"{i}"}
        if not boxes:
            rows.append(base)
        for face, (box, ig, sm) in enumerate(zip(boxes, ignore, smile, strict=True)):
            xy = dict(zip(("x1", "y1", "x2", "y2"), box, strict=True))
            rows.append({**base, "face": face, **xy, "ignore": ig, "smile": None if sm < 0 else sm})
    manifest.save(manifest.new(rows), tmp_path / "val.csv")
    path = report.run_eval(
        tmp_path / "val.csv",
        tmp_path,
        tmp_path / "out",
        conditions=("clean",),
        baselines=[Oracle(records)],
    )
    saved = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert saved["images"] == 6 and saved["manifest"] == str(tmp_path / "val.csv")
    assert saved["baselines"]["smilebot"]["conditions"]["clean"]["faces"]["ap50"] == 1.0
    assert "Robustness" not in path.read_text()  # no degraded condition was asked for
    assert not (tmp_path / "out" / "degradation_drops.png").exists()
