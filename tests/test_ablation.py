import json

from smilebot_tools.ablation import table


def test_table_reads_the_last_evaluation_of_each_run(tmp_path):
    for alpha, iou in ((0, 0.70), (9, 0.78)):
        run = tmp_path / f"alpha{alpha}"
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"loss": {"alpha_extra": alpha}}))
        history = [
            {"step": 10, "faces": {"ap50": 0.1, "ap50_95": 0.1, "mean_top_iou": 0.1},
             "smiles": {"auc": 0.5}},
            {"step": 20, "faces": {"ap50": 0.9, "ap50_95": 0.6, "mean_top_iou": iou},
             "smiles": {"auc": 0.8}},
        ]  # fmt: skip
        (run / "history.json").write_text(json.dumps(history))
    rows = table([tmp_path / "alpha0", tmp_path / "alpha9"]).splitlines()
    assert rows[2].endswith("| 0 | 20 | 0.900 | 0.600 | 0.700 | 0.800 |")
    assert rows[3].endswith("| 9 | 20 | 0.900 | 0.600 | 0.780 | 0.800 |")
