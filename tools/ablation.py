"""The alpha_extra ablation: v1's confidence-gated box weight at 0, 1 and 9.

Each value is one training run with everything else the same (``make ablation`` trains
``runs/alpha0`` and ``runs/alpha9``; ``runs/smilebot`` is alpha_extra = 1, the default).
The table compares the validation figures of each run's last evaluation: face AP@0.5 and
the mean IoU of the top-scoring box per face, the figure the weight exists to raise.

Not the job of this module: training (train.py).
"""

from __future__ import annotations

import json
from pathlib import Path


def table(runs: list[Path]) -> str:
    """A Markdown table, one row per run folder (``config.json`` + ``history.json``)."""
    lines = [
        "| run | alpha_extra | steps | AP@0.5 | AP@[.5:.95] | mean top-box IoU | smile AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        last = json.loads((run / "history.json").read_text())[-1]
        faces, smiles = last["faces"], last["smiles"]
        lines.append(
            f"| {run} | {config['loss']['alpha_extra']:g} | {last['step']} | "
            f"{faces['ap50']:.3f} | {faces['ap50_95']:.3f} | {faces['mean_top_iou']:.3f} | "
            f"{smiles['auc']:.3f} |"
        )
    return "\n".join(lines)
