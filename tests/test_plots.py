"""The evaluation's curves (hand-computed) and PNGs (valid, small, drawn from the data)."""

import cv2
import numpy as np
import pytest

pytest.importorskip("matplotlib")  # the desktop tools (not in the Pi-like venv)

from smilebot_tools import plots
from smilebot_tools.evaluate import Found, Truth
from smilebot_tools.report import Run

PNG = b"\x89PNG\r\n\x1a\n"


def run(name="a", found_boxes=((0, 0, 10, 10), (50, 50, 60, 60), (20, 0, 30, 10), (80, 0, 90, 10))):
    # Faces 0 and 1 (smiling, not), face 2 an ignore region. Detections, by score:
    # 0.9 on face 0 (hit), 0.8 nowhere (FP), 0.7 on face 1 (hit), 0.6 on the ignore region.
    truth = Truth(
        np.array([[0, 0, 10, 10], [20, 0, 30, 10], [80, 0, 90, 10]], float),
        np.array([False, False, True]),
        np.array([1, 0, -1]),
    )
    k = len(found_boxes)
    found = Found(
        np.array(found_boxes, float).reshape(-1, 4),
        np.array([0.9, 0.8, 0.7, 0.6][:k]),
        np.array([0.8, 0.5, 0.3, 0.9][:k]),
    )
    return Run(name, "clean", [truth], [found], np.array([1.0]))


def test_face_pr_curve_hand_computed():
    recall, precision, ap = plots.face_pr_curve(run())
    # The ignore-region detection is left out: hits T, F, T over 2 faces.
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)
    empty = plots.face_pr_curve(run(found_boxes=()))
    assert (len(empty[0]), empty[2]) == (0, 0.0)


def test_smile_curves_hand_computed():
    c = plots.smile_curves(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.8, 0.1]))
    np.testing.assert_allclose(c["threshold"], [0.9, 0.8, 0.1])  # the 0.8 tie is one step
    np.testing.assert_allclose(c["tpr"], [0.5, 1.0, 1.0])
    np.testing.assert_allclose(c["fpr"], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(c["precision"], [1.0, 2 / 3, 0.5])
    assert np.isnan(plots.smile_curves(np.array([1]), np.array([0.5]))["fpr"]).all()
    assert len(plots.smile_curves(np.zeros(0, int), np.zeros(0))["tpr"]) == 0


def bins(recalls):
    edges = [(0, 24), (24, 48), (48, 96), (96, 192), (192, None)]
    return [
        {"min_px": lo, "max_px": hi, "faces": 0 if r != r else 4, "found": 0, "recall": r}
        for (lo, hi), r in zip(edges, recalls, strict=True)
    ]


def results(drop):
    names = {"smilebot": [1.0, 1.0, 0.75, 0.5, 1.0], "v1 Haar": [0.0, 0.25, float("nan"), 1, 1]}
    return {
        "baselines": {
            n: {"conditions": {"clean": {"recall_by_size": bins(r)}}} for n, r in names.items()
        },
        "drops": {
            n: {k: {"ap50": drop, "smile_f1": -drop} for k in ("noise", "jpeg")} for n in names
        },
        "conditions": ["clean", "noise", "jpeg"],
        "strength": 0.6,
    }


def check_png(path, size=(576, 768)):
    data = path.read_bytes()
    assert data[:8] == PNG
    assert 10_000 < len(data) < 100_000  # drawn, and small enough to commit
    assert cv2.imread(str(path)).shape[:2] == size
    return data


def test_curve_plots_are_small_valid_pngs_drawn_from_the_runs(tmp_path):
    runs = {"good": run("good"), "blind": run("blind", found_boxes=())}
    drawn = {}
    for draw in (plots.face_pr, plots.smile_roc, plots.smile_pr):
        path = draw(runs, tmp_path / f"{draw.__name__}.png")
        blind_only = draw({"blind": runs["blind"]}, tmp_path / f"{draw.__name__}_blind.png")
        drawn[draw.__name__] = check_png(path)
        assert check_png(blind_only) != drawn[draw.__name__]
    with_dot = plots.smile_pr(runs, tmp_path / "dot.png", {"good": 0.5})
    assert check_png(with_dot) != drawn["smile_pr"]


def test_bar_plots_are_small_valid_pngs_drawn_from_the_results(tmp_path):
    by_size = check_png(plots.recall_by_size(results(0.1), tmp_path / "size.png"))
    drops = check_png(plots.degradation_drops(results(0.1), tmp_path / "drops.png"), (576, 1152))
    other = plots.degradation_drops(results(0.4), tmp_path / "drops2.png")
    assert check_png(other, (576, 1152)) != drops
    assert by_size != drops


def test_bin_labels():
    assert [plots.bin_label(b) for b in bins([0] * 5)] == [
        "0-24 px",
        "24-48 px",
        "48-96 px",
        "96-192 px",
        ">= 192 px",
    ]
