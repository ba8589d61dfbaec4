"""Benchmarks of the shared detection core, as ratios measured in one run.

These machines are shared and noisy, so every speed target is a ratio of two
timings taken side by side (vectorized vs v1's naive loop), or a median of many
repeats. Correctness is checked in the same run: a fast wrong answer fails.

The ``model`` benchmark times the shipped ``models/smilebot.tflite`` stage by stage;
``daemon`` runs the device's own benchmark (:func:`smilebot.bench.measure`: the stage table
at 1, 2 and 4 threads, end-to-end press to LED through the daemon, its RSS); ``balance``
evaluates the training balance equation (:func:`smilebot_tools.pipeline.balance_report`)
for the default training config on this machine (its daemon RSS is this whole process's,
TensorFlow aside). The TFLite runtime comparison, trained vs random weights and a
device-only process's press to LED and RSS run in the Pi-like venv (``smilebot bench
--json``: numpy 1.24 and tflite-runtime 2.14 there, figures ``device.*``) and are merged
into the same run (``make bench``); :func:`summary` prints the headlines of both.

Not the job of this module: storing figures (results.py).
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from smilebot.anchors import DEFAULT_SPEC
from smilebot.detector import SHIPPED_MODEL
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


MODEL = SHIPPED_MODEL
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


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


def bench_daemon(
    rng: np.random.Generator, threads: tuple[int, ...] = (1, 2, 4), n: int = 100, presses: int = 100
) -> list[dict]:
    """``smilebot bench`` of the shipped model on ``samples/`` with the preferred runtime:
    per-stage latency at ``threads`` over ``n`` frames, ``presses`` end-to-end presses
    through the daemon on mock pins, and its RSS; figures named ``daemon.*``. ``rng`` is
    unused (the frames are the samples)."""
    if not MODEL.exists():
        print(f"  no {MODEL}: run `make convert` first; skipped")
        return []
    from smilebot.bench import measure
    from smilebot.camera import FolderSource
    from smilebot.config import Config
    from smilebot.runtime import available_runtimes

    config = Config()
    source = FolderSource(SAMPLES, config.camera.width, config.camera.height)
    quiet = logging.getLogger("smilebot")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # not a line per press
    try:
        report = measure(
            MODEL,
            source,
            config,
            runtimes=available_runtimes()[:1],
            threads=threads,
            n=n,
            presses=presses,
            echo=lambda text: print(text, flush=True),
        )
    finally:
        quiet.setLevel(level)
        source.close()
    return report.figures("daemon")


def bench_balance(rng: np.random.Generator, examples: int = 30, steps: int = 5) -> list[dict]:
    """The training balance equation for the default :class:`TrainConfig` on this machine.

    T_g: :func:`pipeline.balance_report`'s median seconds to make one training example
    (decode + augment + preprocess) over ``examples`` records of the default train
    manifest; T_step: the median of ``steps`` real training steps (the trainer's own step
    function: forward, losses, gradients, AdamW) of the default model on one batch of that
    manifest; C: this machine's cores. The predicted input wait is
    ``max(0, B T_g / C - T_step)`` per step. Skipped without the manifest. ``rng`` is unused
    (the records are drawn with the config's seed).
    """
    import keras

    from smilebot_tools import manifest, pipeline
    from smilebot_tools.features import targets_tf
    from smilebot_tools.model import build_model
    from smilebot_tools.train import TrainConfig, _train_step

    config = TrainConfig()
    if not Path(config.train_manifest).exists():
        print(f"  no {config.train_manifest}: run `make data` first; skipped")
        return []
    records = pipeline.records_from_manifest(manifest.load(config.train_manifest), config.data)
    spec, batch_size, cores = config.model.input, config.batch_size, os.cpu_count() or 1
    dataset = pipeline.make_dataset(
        records,
        batch_size,
        config.seed,
        True,
        targets_tf,
        config.model.anchors.generate(),
        augment_config=config.augment,
        input_spec=spec,
    )
    images, targets = next(iter(dataset))
    model = build_model(config.model)
    optimizer = keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay)
    step = _train_step(model, optimizer, config.loss)
    step(images, targets)  # trace
    step_s = median_ms(lambda: float(step(images, targets)["total"]), steps) / 1e3
    report = pipeline.balance_report(
        records,
        batch_size,
        cores,
        step_s,
        n=examples,
        seed=config.seed,
        augment_config=config.augment,
        input_spec=spec,
    )
    by_mean = pipeline.predict_wait(report["example_seconds_mean"], batch_size, cores, step_s)
    return [
        {"name": "balance.example_ms", "value": 1e3 * report["example_seconds"], "unit": "ms"},
        {
            "name": "balance.example_mean_ms",
            "value": 1e3 * by_mean["example_seconds"],
            "unit": "ms",
        },
        {"name": "balance.step_ms", "value": 1e3 * step_s, "unit": "ms"},
        {"name": "balance.batch_input_ms", "value": 1e3 * report["batch_seconds"], "unit": "ms"},
        {"name": "balance.wait_ms", "value": 1e3 * report["wait_seconds"], "unit": "ms"},
        {"name": "balance.wait_share", "value": 100 * report["wait_share"], "unit": "%"},
        {"name": "balance.wait_share_mean", "value": 100 * by_mean["wait_share"], "unit": "%"},
        {"name": "balance.cores_needed", "value": report["cores_needed"], "unit": "cores"},
        {"name": "balance.batch_size", "value": batch_size, "unit": "images"},
        {"name": "balance.cores", "value": cores, "unit": "cores"},
    ]


BENCHMARKS = {
    "matching": bench_matching,
    "nms": bench_nms,
    "preprocess": bench_preprocess,
    "model": bench_model,
    "daemon": bench_daemon,
    "balance": bench_balance,
}
TABULATED = ("daemon",)  # benchmarks that print their own tables


def run(names: list[str], seed: int = 0) -> list[dict]:
    """Run the named benchmarks, printing each figure (or table) as it comes; return all
    figures."""
    figures = []
    for name in names:
        print(f"[{name}] running...", flush=True)
        for figure in BENCHMARKS[name](np.random.default_rng(seed)):
            if name not in TABULATED:
                print(
                    f"  {figure['name']:<32} {figure['value']:>10.3f} {figure['unit']}", flush=True
                )
            figures.append(figure)
    return figures


def summary(figures: list[dict]) -> str:
    """The headline figures of a run, a line each (those present)."""
    value = {f["name"]: f["value"] for f in figures}
    lines = []

    def line(label: str, text: str, *names: str, scale: float = 1.0) -> None:
        if all(n in value for n in names):
            numbers = [value[n] * scale for n in names]
            lines.append(f"  {label:<40} " + text.format(*numbers))

    line("matching, vectorized vs naive", "{:.1f}x faster", "matching.speedup")
    line("NMS of 1000, greedy vs naive", "{:.1f}x faster", "nms.speedup")
    runtimes = ("ai-edge-litert", "tflite-runtime")
    for prefix, where in (("daemon", "smilebot-tools"), ("device", "Pi-like venv")):
        invoke = f"{prefix}.stages.{{}}.{{}}_threads.invoke.median"
        for runtime in runtimes:
            line(
                f"{prefix}: invoke, {runtime}",
                "{:.2f} / {:.2f} / {:.2f} ms at 1 / 2 / 4 threads",
                *(invoke.format(runtime, t) for t in (1, 2, 4)),
            )
        if all(invoke.format(r, 1) in value for r in runtimes):
            ratio = value[invoke.format(runtimes[1], 1)] / value[invoke.format(runtimes[0], 1)]
            lines.append(
                f"  {prefix + ': tflite-runtime / ai-edge-litert':<40} {ratio:.1f}x "
                "the invoke time at 1 thread"
            )
        line(
            f"{prefix}: press to LED",
            "median {:.2f} ms, p95 {:.2f} ms",
            f"{prefix}.e2e.press_to_led.median",
            f"{prefix}.e2e.press_to_led.p95",
        )
        line(
            f"{prefix}: RSS",
            "{:.1f} MiB after the presses (the whole " + where + " process)",
            f"{prefix}.rss.after_presses",
        )
        for runtime in runtimes:
            ops = f"{prefix}.ops.{runtime}"
            line(
                f"{prefix}: trained / random, {runtime}",
                "{:.2f} / {:.2f} Gop/s at 1 thread (ops = 2 x MACs)",
                f"{ops}.trained.ops_per_s",
                f"{ops}.random.ops_per_s",
                scale=1e-9,
            )
            line(
                f"{prefix}: trained / random ops/s, {runtime}",
                "{:.3f}",
                f"{ops}.trained_over_random",
            )
    line(
        "training balance, default config",
        "input {:.0f} ms per batch (B T_g / C) vs step {:.0f} ms: predicted wait {:.1f} ms "
        "({:.1f}% of the step; {:.1f}% with the mean T_g)",
        "balance.batch_input_ms",
        "balance.step_ms",
        "balance.wait_ms",
        "balance.wait_share",
        "balance.wait_share_mean",
    )
    return "\n".join(lines)
