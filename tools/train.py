"""``make train``: the face + smile SSD, trained on the manifests from ``make data``.

Two stages, as v1 planned its transfer learning: ``face_steps`` with the smile loss off
(the backbone learns faces and boxes), then ``joint_steps`` with every loss on (the
smile head is fine-tuned together with the backbone). AdamW with a linear warm-up and a
cosine decay over all steps. Defaults reach a useful model in about half an hour on a
2-core CPU.

A run lives in one folder (``--out``, default ``runs/smilebot``): ``config.json`` (this
config), ``checkpoints/`` (resumed automatically when the config is the same),
``logs/`` (TensorBoard), ``history.json`` (validation figures by step),
``model.weights.h5`` (the final weights) and ``balance.json`` (the input/compute
balance, predicted and measured).

Not the job of this module: the data (datasets.py), the network (model.py), the losses
(losses.py), conversion to int8 (convert.py).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import tensorflow as tf
from tqdm import tqdm

from smilebot.box_coder import BoxCoder
from smilebot_tools import manifest, pipeline
from smilebot_tools.augment import AugmentConfig
from smilebot_tools.evaluate import face_metrics, smile_metrics, smile_pairs
from smilebot_tools.features import targets_tf
from smilebot_tools.losses import LossConfig, detection_loss
from smilebot_tools.model import ModelConfig, build_model
from smilebot_tools.predict import FloatDetector, truths_and_founds

log = logging.getLogger(__name__)

COMMANDS = "commands.txt"  # in the run folder: the command line of every training session


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; saved as ``config.json`` and in the model sidecar."""

    data: str = "data"  # manifests' image paths are relative to this folder
    train_manifest: str = "data/manifests/train.csv"
    val_manifest: str = "data/manifests/val.csv"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 32
    face_steps: int = 1000  # stage 1: faces and boxes only
    joint_steps: int = 1500  # stage 2: faces, boxes and smiles
    learning_rate: float = 3e-3
    warmup_steps: int = 200
    weight_decay: float = 1e-4
    seed: int = 0
    eval_every: int = 500
    checkpoint_every: int = 250
    log_every: int = 25

    @property
    def steps(self) -> int:
        return self.face_steps + self.joint_steps

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up to ``learning_rate``, then cosine decay to 1% of it at the last step."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(config: TrainConfig, out: Path) -> dict:
    """Train (or resume) the run in ``out``; returns the final validation figures."""
    out.mkdir(parents=True, exist_ok=True)
    _check_same_config(out, config)
    with (out / COMMANDS).open("a") as commands:
        commands.write(shlex.join(sys.argv) + "\n")
    keras.utils.set_random_seed(config.seed)
    root = Path(config.data)
    train_records = pipeline.records_from_manifest(manifest.load(config.train_manifest), root)
    val_records = pipeline.records_from_manifest(manifest.load(config.val_manifest), root)
    anchors = config.model.anchors.generate()

    model = build_model(config.model)
    optimizer = keras.optimizers.AdamW(
        learning_rate=config.learning_rate, weight_decay=config.weight_decay
    )
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, out / "checkpoints", max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).expect_partial()
        log.info("resumed %s at step %d", manager.latest_checkpoint, int(step))

    first_epoch = int(step) * config.batch_size // len(train_records)
    dataset = pipeline.make_dataset(
        train_records,
        config.batch_size,
        config.seed,
        True,
        targets_tf,
        anchors,
        augment_config=config.augment,
        input_spec=config.model.input,
        epochs=None,
        first_epoch=first_epoch,
    )
    steps = {
        "face": _train_step(model, optimizer, replace(config.loss, smile_weight=0.0)),
        "joint": _train_step(model, optimizer, config.loss),
    }
    writer = tf.summary.create_file_writer(str(out / "logs"))
    history = _read_json(out / "history.json", [])
    started, compute, trained = time.perf_counter(), 0.0, 0
    progress = tqdm(total=config.steps, initial=int(step), desc="train", unit="step")
    with writer.as_default(), pipeline.WaitTimer(dataset) as batches:
        for images, targets in batches:
            if int(step) >= config.steps:
                break
            stage = "face" if int(step) < config.face_steps else "joint"
            optimizer.learning_rate.assign(learning_rate(int(step), config))
            tick = time.perf_counter()
            losses = steps[stage](images, targets)
            compute += time.perf_counter() - tick
            trained += 1
            step.assign_add(1)
            progress.update(1)
            n = int(step)
            if n % config.log_every == 0:
                scalars = {k: float(v) for k, v in losses.items()}
                progress.set_postfix(stage=stage, loss=f"{scalars['total']:.3f}")
                for name, value in scalars.items():
                    tf.summary.scalar(f"loss/{name}", value, step=n)
                tf.summary.scalar("learning_rate", learning_rate(n, config), step=n)
            if n % config.checkpoint_every == 0 or n == config.steps:
                manager.save(checkpoint_number=n)
            if n % config.eval_every == 0 or n == config.steps:
                figures = validate(model, config, val_records)
                history.append({"step": n, "stage": stage, **figures})
                _write_json(out / "history.json", history)
                for name, value in _flat(figures).items():
                    tf.summary.scalar(f"val/{name}", value, step=n)
                log.info("step %d: %s", n, json.dumps(_flat(figures)))
    progress.close()
    if trained:  # a resumed, finished run keeps the figures of the session that trained
        model.save_weights(out / "model.weights.h5")
        balance = _balance(config, train_records, batches, trained, compute, started)
        _write_json(out / "balance.json", balance)
    return history[-1] if history else {}


def _train_step(model: keras.Model, optimizer, loss_config: LossConfig):
    @tf.function(reduce_retracing=True)
    def step(images: tf.Tensor, targets: dict) -> dict:
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            losses = detection_loss(targets, outputs, loss_config)
        grads = tape.gradient(losses["total"], model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return losses

    return step


def validate(model: keras.Model, config: TrainConfig, records: list) -> dict:
    """Face and smile figures of the float model on ``records`` (the device's post-processing)."""
    detector = FloatDetector(model, config.model, BoxCoder())
    truths, founds = truths_and_founds(detector, records)
    labels, probs = smile_pairs(truths, founds)
    return {"faces": face_metrics(truths, founds), "smiles": smile_metrics(labels, probs)}


def _balance(config, records, batches, steps: int, compute: float, started: float) -> dict:
    """The balance equation, predicted from a measured T_g and the measured step time,
    next to the measured share of time the loop waited for input."""
    step_seconds = compute / steps
    report = pipeline.balance_report(
        records,
        config.batch_size,
        os.cpu_count() or 1,
        step_seconds,
        n=30,
        seed=config.seed,
        augment_config=config.augment,
        input_spec=config.model.input,
    )
    report["measured_wait_share"] = batches.seconds / max(1e-9, batches.seconds + compute)
    report["measured_seconds"] = time.perf_counter() - started
    log.info(
        "input wait: predicted %.1f%%, measured %.1f%% of step time",
        100 * report["wait_share"],
        100 * report["measured_wait_share"],
    )
    return report


def _flat(figures: dict) -> dict[str, float]:
    return {
        f"{group}/{key}": float(value)
        for group, values in figures.items()
        for key, value in values.items()
        if isinstance(value, (int, float)) and np.isfinite(value)
    }


def _check_same_config(out: Path, config: TrainConfig) -> None:
    """Write ``config.json``, or refuse to resume a run made with another config."""
    path = out / "config.json"
    wanted = json.loads(json.dumps(config.to_dict()))
    if path.exists():
        saved = json.loads(path.read_text())
        differ = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        if differ:
            raise ValueError(
                f"{path}: this run was made with another {differ[0]!r}; use another --out"
            )
    else:
        _write_json(path, wanted)


def _read_json(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)
