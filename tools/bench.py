"""Benchmarks of the shared detection core, as ratios measured in one run.

These machines are shared and noisy, so every speed target is a ratio of two
timings taken side by side (vectorized vs v1's naive loop), or a median of many
repeats. Correctness is checked in the same run: a fast wrong answer fails.

The ``model`` benchmark times the shipped ``models/smilebot.tflite`` stage by stage.

Not the job of this module: storing figures (results.py).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from smilebot.anchors import DEFAULT_SPEC
from smilebot.matching import match
from smilebot.nms import nms
from smilebot.preprocess import DEFAULT_INPUT, preprocess
from smilebot_tools.naive import naive_match, naive_nms


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def random_faces(rng: np.random.Generator, batch: int, max_boxes: int) -> tuple[np.ndarray, ...]:
    """A padded batch: ``boxes float32[B, M, 4]`` and ``valid bool[B, M]``, 1..M faces each."""
    centre = rng.uniform(0.05, 0.95, (batch, max_boxes, 2))
    size = np.exp(rng.uniform(np.log(0.06), np.log(0.9), (batch, max_boxes, 1))) * [1, 1.2]
    boxes = np.clip(np.concatenate([centre - size / 2, centre + size / 2], -1), 0, 1)
    counts = rng.integers(1, max_boxes + 1, batch)
    return boxes.astype(np.float32), np.arange(max_boxes) < counts[:, None]


def bench_matching(rng: np.random.Generator, batch: int = 32, repeats: int = 3) -> list[dict]:
    """Vectorized matching vs v1's naive loop: a batch of images with 1-10 faces each."""
    boxes, valid = random_faces(rng, batch, 10)
    anchors = DEFAULT_SPEC.generate()
    fast = match(boxes, valid, anchors)
    indices, iou = naive_match(boxes, valid, DEFAULT_SPEC)
    same = np.array_equal(fast.indices, indices) and np.array_equal(fast.iou, np.float32(iou))
    if not same:
        raise AssertionError("vectorized matching disagrees with the naive loop")
    naive = median_ms(lambda: naive_match(boxes, valid, DEFAULT_SPEC), repeats)
    vectorized = median_ms(lambda: match(boxes, valid, anchors), 20 * repeats)
    return [
        {"name": "matching.naive_per_image", "value": naive / batch, "unit": "ms"},
        {"name": "matching.vectorized_per_image", "value": vectorized / batch, "unit": "ms"},
        {"name": "matching.speedup", "value": naive / vectorized, "unit": "x"},
    ]


def clustered_candidates(rng: np.random.Generator, faces: int, per_face: int) -> tuple:
    """Detector-like NMS input: ``faces`` true boxes, each with ``per_face`` jittered copies."""
    centre = rng.uniform(0.1, 0.9, (faces, 1, 2))
    size = rng.uniform(0.05, 0.3, (faces, 1, 2))
    jitter = rng.normal(0, 0.1, (faces, per_face, 4)) * np.concatenate([size, size], -1)
    boxes = np.concatenate([centre - size / 2, centre + size / 2], -1) + jitter
    scores = rng.uniform(0.05, 1.0, faces * per_face)
    return boxes.reshape(-1, 4).astype(np.float32), scores.astype(np.float32)


def bench_nms(rng: np.random.Generator, repeats: int = 50) -> list[dict]:
    """Greedy and voting NMS over 1,000 candidates (20 faces x 50), and the naive loop."""
    boxes, scores = clustered_candidates(rng, 20, 50)
    kept = nms(boxes, scores, max_detections=1000)
    if kept.indices.tolist() != naive_nms(boxes, scores, 0.45):
        raise AssertionError("greedy NMS disagrees with the naive loop")
    greedy = median_ms(lambda: nms(boxes, scores, max_detections=1000), repeats)
    voting = median_ms(lambda: nms(boxes, scores, method="voting", max_detections=1000), repeats)
    naive = median_ms(lambda: naive_nms(boxes, scores, 0.45), max(3, repeats // 10))
    return [
        {"name": "nms.greedy_1000", "value": greedy, "unit": "ms"},
        {"name": "nms.voting_1000", "value": voting, "unit": "ms"},
        {"name": "nms.naive_1000", "value": naive, "unit": "ms"},
        {"name": "nms.speedup", "value": naive / greedy, "unit": "x"},
    ]


def bench_preprocess(rng: np.random.Generator, repeats: int = 50) -> list[dict]:
    """``preprocess()`` of camera-sized RGB frames to the default model input."""
    figures = []
    for width, height in ((640, 480), (1920, 1080)):
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        ms = median_ms(lambda f=frame: preprocess(f, DEFAULT_INPUT), repeats)
        figures.append({"name": f"preprocess.{width}x{height}", "value": ms, "unit": "ms"})
    return figures


MODEL = Path(__file__).resolve().parents[1] / "models" / "smilebot.tflite"


def bench_model(rng: np.random.Generator, threads: tuple[int, ...] = (1, 2, 4)) -> list[dict]:
    """The shipped model on 640x480 frames (Grace Hopper's public-domain portrait, shifted
    and scaled): per-stage median milliseconds at 1, 2 and 4 threads."""
    if not MODEL.exists():
        print(f"  no {MODEL}: run `make convert` first; skipped")
        return []
    from smilebot_tools.modelcard import latency  # needs the runtime and OpenCV

    frames = _portrait_frames(rng, 8)
    figures = []
    for n in threads:
        for stage, ms in latency(MODEL, frames, threads=n).items():
            figures.append({"name": f"model.{stage}.{n}_threads", "value": ms, "unit": "ms"})
    return figures


def _portrait_frames(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """``n`` 640x480 BGR frames with the portrait at random scales and positions."""
    import cv2
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        portrait = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
    frames = []
    for _ in range(n):
        frame = np.full((480, 640, 3), int(rng.integers(40, 200)), np.uint8)
        side = int(rng.integers(160, 480))
        face = cv2.resize(portrait, (side * portrait.shape[1] // portrait.shape[0], side))
        x = int(rng.integers(0, max(1, 640 - face.shape[1])))
        frame[480 - side :, x : x + face.shape[1]] = face[:, : 640 - x]
        frames.append(frame)
    return frames


BENCHMARKS = {
    "matching": bench_matching,
    "nms": bench_nms,
    "preprocess": bench_preprocess,
    "model": bench_model,
}


def run(names: list[str], seed: int = 0) -> list[dict]:
    """Run the named benchmarks, printing each figure as it comes; return all figures."""
    figures = []
    for name in names:
        print(f"[{name}] running...", flush=True)
        for figure in BENCHMARKS[name](np.random.default_rng(seed)):
            print(f"  {figure['name']:<32} {figure['value']:>10.3f} {figure['unit']}", flush=True)
            figures.append(figure)
    return figures
