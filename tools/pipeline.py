"""The tf.data input pipeline: manifest rows -> model input + padded ground truth -> targets.

One example (:func:`load_example`, NumPy + OpenCV): decode the image (BGR -> RGB), augment
it for training (:mod:`smilebot_tools.augment`), letterbox it with the SHARED
``smilebot.preprocess.preprocess`` (never a TF resize: the device does exactly this), map
the face boxes through the same :class:`~smilebot.preprocess.Letterbox`, clip them to the
input and pad them to ``max_faces`` rows.

The dataset (:func:`make_dataset`): a stream of ``(epoch, position, index)`` triples ->
examples loaded in parallel with ``tf.numpy_function`` -> batches -> the target function
(``features.targets_tf``: anchor matching and box coding, in the graph) -> prefetch. Every
example draws its randomness from ``SeedSequence(seed, spawn_key=(epoch, position))``
(position in the epoch's stream, not the record index, so that an image drawn twice in an
epoch is augmented twice differently), so a run is reproducible whatever the thread
timing. Training epochs sample images by :func:`sampling_weights` (smiling and
non-smiling faces about 1:1), a fresh seeded draw each epoch; evaluation is one pass in
manifest order, without augmentation.

Also here: the input/compute balance (:func:`balance_report`, :func:`predict_wait`,
:class:`WaitTimer`) and an optional TFRecord cache of un-augmented examples
(:func:`write_cache`, :func:`read_cache`) for when decoding is the bottleneck.

Not done here: anchor matching and coding (features.py), the model, losses, the training
loop, checking the manifest (manifest.validate; an unreadable image here is an error).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from smilebot.box_coder import BoxCoder
from smilebot.preprocess import DEFAULT_INPUT, InputSpec, preprocess
from smilebot_tools.augment import AugmentConfig, augment

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf

logger = logging.getLogger(__name__)

MAX_FACES = 24  # ground-truth rows per image; the data has at most 6 faces per image
EXAMPLE_KEYS = ("image", "gt_boxes", "gt_valid", "gt_smile", "gt_ignore")
DEFAULT_AUGMENT = AugmentConfig()
DEFAULT_CODER = BoxCoder()  # SSD variances (0.1, 0.1, 0.2, 0.2)
WEIGHT_CAP = 10.0
_SAMPLE, _EXAMPLE = 1, 2  # spawn-key tags: epoch sampling vs per-example randomness
_META = "cache.json"

TargetFn = Callable[..., dict[str, tf.Tensor]]


class ExampleError(Exception):
    """An image that cannot be turned into an example (unreadable, wrong size, too many
    faces); the message names the file."""


@dataclass(frozen=True, eq=False)
class Example:
    """One image of the manifest. ``path``: the file; ``width``, ``height``: its size as the
    manifest says (checked when decoded); ``boxes``: float32 ``[N, 4]`` face boxes in
    pixels ``(x1, y1, x2, y2)``; ``smile``: int32 ``[N]`` 1, 0 or -1 (unknown);
    ``ignore``: bool ``[N]``. ``N`` may be 0 (an image without faces)."""

    path: str
    width: int
    height: int
    boxes: np.ndarray
    smile: np.ndarray
    ignore: np.ndarray


def records_from_manifest(df: pd.DataFrame, root: Path | str) -> list[Example]:
    """One :class:`Example` per image of a manifest (``manifest.load``), in file order;
    paths are ``root / image``. Images with a face whose box is unknown (NA) are left out
    (their unlabeled face would be trained as background); how many is logged."""
    records, skipped = [], 0
    for image, rows in df.groupby("image", sort=False):
        faces = rows[rows["face"].notna()]
        box = faces[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float64)
        if np.isnan(box).any():
            skipped += 1
            continue
        records.append(
            Example(
                path=str(Path(root) / str(image)),
                width=int(rows["width"].iloc[0]),
                height=int(rows["height"].iloc[0]),
                boxes=box.astype(np.float32).reshape(-1, 4),
                smile=faces["smile"].fillna(-1).to_numpy(dtype=np.int32),
                ignore=faces["ignore"].to_numpy(dtype=bool),
            )
        )
    if skipped:
        logger.warning("left out %d images with a face of unknown box", skipped)
    return records


# --- one example -----------------------------------------------------------------------


def load_example(
    record: Example,
    rng: np.random.Generator,
    augment_config: AugmentConfig | None,
    input_spec: InputSpec = DEFAULT_INPUT,
    max_faces: int = MAX_FACES,
) -> dict[str, np.ndarray]:
    """Decode, augment (when ``augment_config`` is given), preprocess and pad one image.

    Returns ``image`` uint8 ``[H, W, C]`` (``input_spec``), ``gt_boxes`` float32
    ``[max_faces, 4]`` normalized input ``xyxy`` clipped to [0, 1], ``gt_valid`` bool
    ``[max_faces]`` (a real face with a non-empty box), ``gt_smile`` int32 (1/0/-1) and
    ``gt_ignore`` bool; padding rows are zero boxes, not valid, smile -1, not ignore.
    Raises :class:`ExampleError` naming the file if it cannot be read, its size is not
    the manifest's, or it has more than ``max_faces`` faces.
    """
    _check_face_count(record, max_faces)
    frame = _read_rgb(record)
    boxes, ignore = record.boxes, record.ignore
    if augment_config is not None:
        frame, boxes, ignore = augment(frame, boxes, ignore, rng, augment_config)
    image, letterbox = preprocess(frame, input_spec, color="rgb")
    norm = np.clip(letterbox.to_input(boxes), 0.0, 1.0).reshape(-1, 4)
    valid = (norm[:, 2] > norm[:, 0]) & (norm[:, 3] > norm[:, 1])
    n = len(norm)
    out = {
        "image": image,
        "gt_boxes": np.zeros((max_faces, 4), np.float32),
        "gt_valid": np.zeros(max_faces, bool),
        "gt_smile": np.full(max_faces, -1, np.int32),
        "gt_ignore": np.zeros(max_faces, bool),
    }
    out["gt_boxes"][:n] = np.where(valid[:, None], norm, 0.0)
    out["gt_valid"][:n] = valid
    out["gt_smile"][:n] = np.where(valid, record.smile, -1)
    out["gt_ignore"][:n] = ignore & valid
    return out


def _check_face_count(record: Example, max_faces: int) -> None:
    if len(record.boxes) > max_faces:
        raise ExampleError(
            f"{record.path}: {len(record.boxes)} faces, more than max_faces={max_faces}"
        )


def _read_rgb(record: Example) -> np.ndarray:
    """The image as uint8 RGB ``[H, W, 3]``; :class:`ExampleError` if unreadable or its size
    is not the manifest's."""
    bgr = cv2.imread(record.path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ExampleError(f"cannot read image {record.path} (missing, unreadable or not an image)")
    if bgr.shape[:2] != (record.height, record.width):
        raise ExampleError(
            f"{record.path}: decoded {bgr.shape[1]}x{bgr.shape[0]}, "
            f"the manifest says {record.width}x{record.height}"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --- balancing smiles ------------------------------------------------------------------


def sampling_weights(records: Sequence[Example], cap: float = WEIGHT_CAP) -> np.ndarray:
    """Per-image sampling weights (float64 ``[n]``; probability = weight / sum) that make
    labelled smiling and non-smiling faces about 1:1 in expectation.

    Counted over non-ignore faces with a known label: ``S_i`` smiling, ``N_i`` not, per
    image. Images where smiles outnumber the rest (``S_i > N_i``) get weight ``r``, all
    others 1, with ``r`` solving ``sum_i w_i (S_i - N_i) = 0``:
    ``r = sum_{S<=N} (N_i - S_i) / sum_{S>N} (S_i - N_i)``, clipped to ``[1/cap, cap]``
    (default cap 10: no image is drawn more than 10x as often as another, which keeps the
    face/no-face mix and overfitting to a few smiling images in check; with the cap hit
    the balance is only partial, see :func:`smile_balance`). Without smile-majority images
    all weights are 1.
    """
    smiling, plain = _smile_counts(records)
    surplus = smiling - plain
    have = float(surplus[surplus > 0].sum())
    need = float(-surplus[surplus < 0].sum())
    if have == 0:
        return np.ones(len(records))
    ratio = float(np.clip(need / have, 1 / cap, cap))
    if ratio in (cap, 1 / cap):
        logger.info(
            "sampling weights: smile ratio capped at %.3g (wanted %.3g)", ratio, need / have
        )
    return np.where(surplus > 0, ratio, 1.0)


def smile_balance(records: Sequence[Example], weights: np.ndarray | None = None) -> dict:
    """Expected labelled faces per epoch (``len(records)`` draws) under ``weights`` (None =
    uniform): ``{"smiling": float, "not_smiling": float, "ratio": smiling / not}``."""
    smiling, plain = _smile_counts(records)
    w = np.ones(len(records)) if weights is None else np.asarray(weights, np.float64)
    p = w / w.sum() * len(records)
    s, n = float(p @ smiling), float(p @ plain)
    return {"smiling": s, "not_smiling": n, "ratio": s / n if n else math.inf}


def _smile_counts(records: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
    """Non-ignore smiling and non-smiling faces per record, int64 ``[n]`` each."""
    smiling = [int(np.sum((r.smile == 1) & ~r.ignore)) for r in records]
    plain = [int(np.sum((r.smile == 0) & ~r.ignore)) for r in records]
    return np.array(smiling, np.int64), np.array(plain, np.int64)


def epoch_order(n: int, weights: np.ndarray | None, seed: int, epoch: int) -> np.ndarray:
    """Record indices of one training epoch, int64 ``[n]``: drawn with replacement by
    ``weights``, or a permutation when ``weights`` is None; seeded by ``(seed, epoch)``."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SAMPLE, epoch)))
    if weights is None:
        return rng.permutation(n).astype(np.int64)
    p = np.asarray(weights, np.float64)
    return rng.choice(n, size=n, p=p / p.sum()).astype(np.int64)


def example_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """The generator of the example at ``position`` of ``epoch``'s stream."""
    return np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(_EXAMPLE, epoch, position))
    )


# --- tf.data ---------------------------------------------------------------------------


def example_dataset(
    records: Sequence[Example],
    seed: int,
    train: bool,
    *,
    augment_config: AugmentConfig | None = DEFAULT_AUGMENT,
    input_spec: InputSpec = DEFAULT_INPUT,
    max_faces: int = MAX_FACES,
    balance: bool = True,
    epochs: int | None = 1,
    first_epoch: int = 0,
    deterministic: bool = True,
) -> tf.data.Dataset:
    """Unbatched examples (dicts of :data:`EXAMPLE_KEYS` as :func:`load_example` makes).

    ``train``: ``epochs`` epochs (None = forever) from ``first_epoch``, each ``len(records)``
    draws by :func:`sampling_weights` (``balance``) or a permutation, augmented with
    ``augment_config`` (None = not). Not ``train``: one pass in order, no augmentation.
    Examples load in parallel (AUTOTUNE); ``deterministic`` keeps their order.
    """
    if not records:
        raise ValueError("example_dataset: no records")
    for record in records:
        _check_face_count(record, max_faces)
    records = list(records)
    config = augment_config if train else None
    weights = sampling_weights(records) if train and balance else None
    stream = _stream(len(records), weights, seed, train, epochs, first_epoch)

    def load(epoch, position, index):
        rng = example_rng(seed, int(epoch), int(position))
        example = load_example(records[int(index)], rng, config, input_spec, max_faces)
        return [example[key] for key in EXAMPLE_KEYS]

    specs = _example_specs(input_spec, max_faces)

    def load_tf(epoch, position, index):
        dtypes = [spec.dtype for spec in specs.values()]
        tensors = tf.numpy_function(load, [epoch, position, index], dtypes, stateful=False)
        return {
            key: tf.ensure_shape(t, spec.shape)
            for (key, spec), t in zip(specs.items(), tensors, strict=True)
        }

    return stream.map(load_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def _stream(n, weights, seed, train, epochs, first_epoch) -> tf.data.Dataset:
    """``(epoch, position, index)`` int64 triples; see :func:`example_dataset`."""
    positions = tf.data.Dataset.range(n)
    if not train:
        epoch = tf.data.Dataset.from_tensors(np.int64(0)).repeat()
        return tf.data.Dataset.zip(epoch, positions, positions)
    if epochs is None:
        epoch_ids = tf.data.Dataset.counter(first_epoch)
    else:
        epoch_ids = tf.data.Dataset.range(first_epoch, first_epoch + epochs)

    def one_epoch(epoch):
        order = tf.numpy_function(
            lambda e: epoch_order(n, weights, seed, int(e)), [epoch], tf.int64, stateful=False
        )
        indices = tf.data.Dataset.from_tensor_slices(tf.ensure_shape(order, [n]))
        return tf.data.Dataset.zip(tf.data.Dataset.from_tensors(epoch).repeat(), positions, indices)

    return epoch_ids.flat_map(one_epoch)


def _example_specs(spec: InputSpec, max_faces: int) -> dict[str, tf.TensorSpec]:
    return {
        "image": tf.TensorSpec([spec.height, spec.width, spec.channels], tf.uint8),
        "gt_boxes": tf.TensorSpec([max_faces, 4], tf.float32),
        "gt_valid": tf.TensorSpec([max_faces], tf.bool),
        "gt_smile": tf.TensorSpec([max_faces], tf.int32),
        "gt_ignore": tf.TensorSpec([max_faces], tf.bool),
    }


def batch_targets(
    examples: tf.data.Dataset,
    batch_size: int,
    drop_remainder: bool,
    target_fn: TargetFn,
    anchors: np.ndarray,
    coder: BoxCoder = DEFAULT_CODER,
    high: float = 0.5,
    low: float = 0.4,
) -> tf.data.Dataset:
    """Batch example dicts and map ``target_fn`` (``features.targets_tf``'s signature) on
    each batch in the graph -> ``(image float32 [B, H, W, C] 0..255, targets dict)``,
    prefetched."""
    anchors_tf = tf.constant(np.asarray(anchors, np.float32))

    def to_pair(batch):
        targets = target_fn(
            batch["gt_boxes"],
            batch["gt_valid"],
            batch["gt_smile"],
            batch["gt_ignore"],
            anchors_tf,
            coder,
            high,
            low,
        )
        return tf.cast(batch["image"], tf.float32), targets

    batches = examples.batch(batch_size, drop_remainder=drop_remainder)
    return batches.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def make_dataset(
    records: Sequence[Example],
    batch_size: int,
    seed: int,
    train: bool,
    target_fn: TargetFn,
    anchors: np.ndarray,
    *,
    coder: BoxCoder = DEFAULT_CODER,
    high: float = 0.5,
    low: float = 0.4,
    **example_options: Any,
) -> tf.data.Dataset:
    """Batches ``(image float32 [B, H, W, C] 0..255, targets)`` for training or evaluation.

    :func:`example_dataset` (``example_options``: augment_config, input_spec, max_faces,
    balance, epochs, first_epoch, deterministic) -> :func:`batch_targets`. Training
    epochs follow each other in one stream, so a batch may straddle two; only a partial
    batch at the very end is dropped. ``target_fn(gt_boxes, gt_valid, gt_smile,
    gt_ignore, anchors, coder, high, low)`` is ``features.targets_tf`` or a stand-in.
    """
    examples = example_dataset(records, seed, train, **example_options)
    return batch_targets(examples, batch_size, train, target_fn, anchors, coder, high, low)


# --- input vs compute ------------------------------------------------------------------


def predict_wait(
    example_seconds: float, batch_size: int, cores: int, step_seconds: float
) -> dict[str, float]:
    """The balance equation (see :func:`balance_report`) for given timings.

    Returns ``example_seconds`` (T_g), ``batch_size`` (B), ``cores`` (C), ``step_seconds``
    (T_step), ``batch_seconds`` = B T_g / C, ``wait_seconds`` = max(0, B T_g / C - T_step),
    ``wait_share`` = wait / (wait + T_step) and ``cores_needed`` = ceil(B T_g / T_step),
    the cores that would make the wait 0.
    """
    if batch_size < 1 or cores < 1 or not step_seconds > 0 or example_seconds < 0:
        raise ValueError("need batch_size >= 1, cores >= 1, step_seconds > 0, T_g >= 0")
    batch_seconds = batch_size * example_seconds / cores
    wait = max(0.0, batch_seconds - step_seconds)
    return {
        "example_seconds": example_seconds,
        "batch_size": batch_size,
        "cores": cores,
        "step_seconds": step_seconds,
        "batch_seconds": batch_seconds,
        "wait_seconds": wait,
        "wait_share": wait / (wait + step_seconds),
        "cores_needed": math.ceil(batch_size * example_seconds / step_seconds),
    }


def balance_report(
    records: Sequence[Example],
    batch_size: int,
    cores: int,
    step_seconds: float,
    n: int = 50,
    *,
    seed: int = 0,
    augment_config: AugmentConfig | None = DEFAULT_AUGMENT,
    input_spec: InputSpec = DEFAULT_INPUT,
    load: Callable[..., object] = load_example,
) -> dict[str, float]:
    """Measure the input cost and predict the share of step time the trainer waits for it.

    T_g: seconds to make one training example (``load(record, rng, augment_config,
    input_spec)``: decode + augment + preprocess + pad), single-threaded (OpenCV held to
    one thread), the median over ``n`` records drawn at random (seeded). With C cores
    making examples in parallel, a batch of B takes ``B T_g / C``; the trainer's own step
    takes T_step (``step_seconds``: about 2 T_i, T_i the forward pass of a batch, or a
    measured step). With prefetching the two overlap, so the trainer waits

        wait = max(0, B T_g / C - T_step)   per step,   wait share = wait / (wait + T_step).

    Returns :func:`predict_wait`'s dict plus ``n``, ``example_seconds_mean`` and
    ``example_seconds_p90`` (augmentation makes the cost skewed, and throughput follows
    the mean: ``predict_wait(mean, ...)`` is the less optimistic prediction) and
    ``example_cpu_seconds`` (median CPU time of the same calls: well below T_g means the
    machine was busy with other work while measuring, and T_g is overstated). The
    equation assumes the C cores are free for input; cores shared with the training step
    itself make the real wait larger. The trainer measures it with :class:`WaitTimer`.
    """
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(records), size=min(n, len(records)), replace=False)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    wall, cpu = [], []
    try:
        for k, index in enumerate(chosen):
            start, start_cpu = time.perf_counter(), time.thread_time()
            load(records[index], example_rng(seed, 0, k), augment_config, input_spec)
            wall.append(time.perf_counter() - start)
            cpu.append(time.thread_time() - start_cpu)
    finally:
        cv2.setNumThreads(threads)
    report = predict_wait(float(np.median(wall)), batch_size, cores, step_seconds)
    report.update(
        n=len(wall),
        example_seconds_mean=float(np.mean(wall)),
        example_seconds_p90=float(np.percentile(wall, 90)),
        example_cpu_seconds=float(np.median(cpu)),
    )
    logger.info("input balance: %s", report)
    return report


class WaitTimer:
    """Wraps an iterable; ``seconds`` is the total time spent in ``next()`` (waiting for
    input), ``count`` the items it returned.

    Also a context manager that drops the wrapped iterator on leaving: an iterator over
    these datasets still alive when the interpreter exits can hang or abort the process
    (its worker threads call into Python while it shuts down; TensorFlow issue #21277),
    so ``with WaitTimer(dataset) as batches:`` is the safe way to consume one.
    """

    def __init__(self, iterable: Iterable) -> None:
        self._iterator = iter(iterable)
        self.seconds = 0.0
        self.count = 0

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        start = time.perf_counter()
        try:
            item = next(self._iterator)
        finally:
            self.seconds += time.perf_counter() - start
        self.count += 1
        return item

    def __enter__(self) -> WaitTimer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the wrapped iterator (and the dataset's worker threads with it)."""
        self._iterator = iter(())


# --- on-disk cache ---------------------------------------------------------------------


def write_cache(dataset: tf.data.Dataset, folder: Path | str, shards: int) -> int:
    """Write unbatched example dicts (e.g. ``example_dataset(records, seed, train=False)``,
    no augmentation) as ``shards`` TFRecord files in ``folder``, round-robin; returns the
    number written.

    The examples are made in parallel by the dataset's own parallel map; writing is
    cheap. ``cache.json`` (shapes, count, files) is written last, so a cache cut short
    has none and :func:`read_cache` refuses it.
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _META).unlink(missing_ok=True)
    files = [f"examples-{k:05d}-of-{shards:05d}.tfrecord" for k in range(shards)]
    writers = [tf.io.TFRecordWriter(str(folder / name)) for name in files]
    count = 0
    try:
        for example in dataset.as_numpy_iterator():
            writers[count % shards].write(_serialize(example))
            count += 1
    finally:
        for writer in writers:
            writer.close()
    shapes = {key: list(spec.shape) for key, spec in dataset.element_spec.items()}
    meta = {"count": count, "files": files, "shapes": shapes}
    (folder / _META).write_text(json.dumps(meta, indent=1))
    logger.info("cached %d examples in %d shards under %s", count, shards, folder)
    return count


def read_cache(folder: Path | str) -> tf.data.Dataset:
    """The examples :func:`write_cache` wrote, unbatched, in the order they were written."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / _META).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no complete example cache in {folder} ({_META} missing)"
        ) from None
    shapes = meta["shapes"]
    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "gt_boxes": tf.io.FixedLenFeature(shapes["gt_boxes"], tf.float32),
        **{key: tf.io.FixedLenFeature(shapes[key], tf.int64) for key in EXAMPLE_KEYS[2:]},
    }
    dtypes = {"gt_valid": tf.bool, "gt_smile": tf.int32, "gt_ignore": tf.bool}

    def parse(serialized):
        ex = tf.io.parse_single_example(serialized, features)
        image = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), shapes["image"])
        return {
            "image": image,
            "gt_boxes": ex["gt_boxes"],
            **{key: tf.cast(ex[key], dtype) for key, dtype in dtypes.items()},
        }

    files = tf.data.Dataset.from_tensor_slices([str(folder / name) for name in meta["files"]])
    records = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=len(meta["files"]),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def _serialize(example: dict[str, np.ndarray]) -> bytes:
    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values.astype(np.int64)))

    feature = {
        "image": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[example["image"].tobytes()])
        ),
        "gt_boxes": tf.train.Feature(
            float_list=tf.train.FloatList(value=example["gt_boxes"].reshape(-1))
        ),
        **{key: ints(example[key].reshape(-1)) for key in EXAMPLE_KEYS[2:]},
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
