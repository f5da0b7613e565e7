"""Training loop: checkpoints and TensorBoard in RUN_DIR, resume, divergence guard, bundle export.

A custom loop rather than ``Model.fit`` because the loop must restore a checkpoint and lower the learning
rate in the middle of a run, and count padded steps exactly for Magenta's metrics.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from melodyflow.models.hparams import HParams
from melodyflow.transforms.io import storage

CHECKPOINTS = "checkpoints"


class DivergenceError(RuntimeError):
    """Training kept diverging after the allowed number of recoveries."""


@dataclass(frozen=True)
class TrainSettings:
    config: str
    num_training_steps: int = 20000
    eval_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 5
    summary_every: int = 10
    seed: int = 0
    resume: bool = True
    max_divergence_recoveries: int = 3
    spike_factor: float = 10.0
    lr_decay_on_divergence: float = 0.5
    inject_nan_at_step: int | None = None  # fault injection for tests of the guard

    def __post_init__(self) -> None:
        for name in ("num_training_steps", "eval_every", "checkpoint_every", "keep_checkpoints", "summary_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_divergence_recoveries < 0 or self.spike_factor <= 1 or not 0 < self.lr_decay_on_divergence < 1:
            raise ValueError("need max_divergence_recoveries >= 0, spike_factor > 1, 0 < lr_decay < 1")


@dataclass
class TrainResult:
    run_dir: str
    bundle: str
    step: int
    start_step: int
    train_metrics: dict
    eval_metrics: dict
    history: list[dict] = field(default_factory=list)
    divergence_events: list[dict] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def choose_strategy():
    """Multi-worker when TF_CONFIG names a cluster, mirrored over all GPUs when >1, else default."""
    import tensorflow as tf

    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    if tf_config.get("cluster", {}).get("worker"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _no_event_label(info: dict) -> int:
    from melodyflow.transforms.melodies.configs import get_config

    return int(get_config(info["config"]).encoder_decoder.default_event_label)


def train(data_root: str, run_dir: str, settings: TrainSettings, hparams: HParams,
          progress: Callable[[dict], None] = lambda event: None) -> TrainResult:
    """Train ``settings.config`` on ``DATA_ROOT/melodies/<config>``; write everything under ``run_dir``.

    ``progress`` receives dicts: ``{"event": "step", "step", "total", "metrics"}``, ``"eval"``,
    ``"checkpoint"``, ``"divergence"``, ``"resumed"``.
    """
    import tensorflow as tf

    from melodyflow.models.bundles.bundle import export_bundle
    from melodyflow.models.training.input_pipeline import make_dataset, stage_locally
    from melodyflow.models.network.melody_rnn import build_model, masked_metrics, summarize_metrics
    from melodyflow.models.training.run_dir import RunDir
    from melodyflow.transforms.melodies.dataset import open_dataset

    started = time.monotonic()
    info = open_dataset(data_root, settings.config)
    urls = {split: [storage.join(info["url"], n) for n in info["shards"][split]] for split in ("train", "eval")}
    if info["counts"]["train"] == 0:
        raise ValueError(f"the {settings.config} dataset in {data_root} has no training examples")
    local = {split: [stage_locally(u) for u in urls[split]] for split in urls}
    no_event = _no_event_label(info)
    tf.keras.utils.set_random_seed(settings.seed)

    rd = RunDir(run_dir)
    strategy = choose_strategy()
    replicas = strategy.num_replicas_in_sync
    global_batch = hparams.batch_size * replicas
    with strategy.scope():
        model = build_model(info["input_size"], info["num_classes"], hparams)
        optimizer = tf.keras.optimizers.Adam(learning_rate=hparams.learning_rate)
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        lr_var = tf.Variable(hparams.learning_rate, dtype=tf.float32, trainable=False, name="learning_rate")
        optimizer.build(model.trainable_variables)
    # Dropout's random-stream state is checkpointed too: a resumed run then draws the same masks as one
    # that never stopped, which (with the replayed batches) makes kill-and-resume reproducible.
    rng_states = {layer.name: layer.seed_generator.state for layer in model.layers
                  if getattr(layer, "seed_generator", None) is not None}
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var, learning_rate=lr_var,
                               rng=rng_states)
    if settings.resume:
        rd.pull(CHECKPOINTS)
    elif os.path.isdir(rd.local_path(CHECKPOINTS)) and os.listdir(rd.local_path(CHECKPOINTS)) or (
            rd.remote and storage.list_dir(rd.remote_url(CHECKPOINTS))):
        raise ValueError(f"{run_dir} already holds checkpoints; resume it or choose a new RUN_DIR")
    manager = tf.train.CheckpointManager(ckpt, rd.local_path(CHECKPOINTS), max_to_keep=settings.keep_checkpoints)
    if settings.resume and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        progress({"event": "resumed", "step": int(step_var.numpy()), "checkpoint": manager.latest_checkpoint})
    optimizer.learning_rate.assign(lr_var)
    start_step = int(step_var.numpy())
    train_ds = make_dataset(local["train"], fmt=info["format"], input_size=info["input_size"],
                            batch_size=global_batch, training=True, seed=settings.seed, skip_batches=start_step)

    def save_checkpoint():
        path = manager.save(checkpoint_number=int(step_var.numpy()))
        rd.push(CHECKPOINTS, last=("checkpoint",))
        progress({"event": "checkpoint", "step": int(step_var.numpy()), "path": path})

    if manager.latest_checkpoint is None:
        save_checkpoint()  # the guard always has a good state to return to

    writers = {s: tf.summary.create_file_writer(rd.local_path(s)) for s in ("train", "eval")}
    sum_keys = ("loss_sum", "steps", "correct", "events", "events_correct", "no_events", "no_events_correct")

    @tf.function(reduce_retracing=True)
    def train_step(inputs, labels, lengths, inject_nan):
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)
            sums = masked_metrics(logits, labels, lengths, no_event)
            loss = sums["loss_sum"] / tf.maximum(sums["steps"], 1.0)
            loss = tf.where(inject_nan, tf.constant(float("nan")), loss)
        grads = tape.gradient(loss, model.trainable_variables)
        grads, _ = tf.clip_by_global_norm(grads, hparams.clip_norm)
        finite = tf.math.is_finite(loss)
        # Never apply a non-finite update: the guard restores and retries instead.
        grads = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return sums, loss

    @tf.function(reduce_retracing=True)
    def distributed_step(batch, inject_nan):
        sums, loss = strategy.run(train_step, args=(*batch, inject_nan))
        sums = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, sums[k], axis=None) for k in sum_keys}
        loss = strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
        return sums, loss

    @tf.function(reduce_retracing=True)
    def eval_step(inputs, labels, lengths):
        return masked_metrics(model(inputs, training=False), labels, lengths, no_event)

    def evaluate() -> dict:
        if info["counts"]["eval"] == 0:
            return {}
        ds = make_dataset(local["eval"], fmt=info["format"], input_size=info["input_size"],
                          batch_size=hparams.batch_size, training=False)
        total = {k: 0.0 for k in sum_keys}
        for inputs, labels, lengths in ds:
            for k, v in eval_step(inputs, labels, lengths).items():
                total[k] += float(v)
        return summarize_metrics(total)

    history: list[dict] = []
    divergences: list[dict] = []
    recoveries = 0
    ema = None
    window = {k: 0.0 for k in sum_keys}
    train_metrics: dict = {}
    eval_metrics: dict = {}
    iterator = iter(strategy.experimental_distribute_dataset(train_ds))
    nan_pending = settings.inject_nan_at_step
    step = start_step
    while step < settings.num_training_steps:
        batch = next(iterator)
        inject = nan_pending is not None and step + 1 >= nan_pending
        sums, loss = distributed_step(batch, tf.constant(inject))
        loss_value = float(loss)
        spiked = ema is not None and step > start_step + 20 and loss_value > settings.spike_factor * ema
        if not math.isfinite(loss_value) or spiked:
            if inject:
                nan_pending = None  # the injected fault fires once
            recoveries += 1
            reason = "non-finite loss" if not math.isfinite(loss_value) else "loss spike"
            event = {"step": step + 1, "loss": loss_value, "reason": reason, "recovery": recoveries}
            if recoveries > settings.max_divergence_recoveries:
                raise DivergenceError(
                    f"training diverged at step {step + 1} ({event['reason']}, loss {loss_value}) after "
                    f"{settings.max_divergence_recoveries} recoveries; lower the learning rate "
                    f"(now {float(lr_var.numpy()):g}) or check the dataset")
            lowered = float(lr_var.numpy()) * settings.lr_decay_on_divergence
            ckpt.restore(manager.latest_checkpoint)  # also restores the checkpoint's learning rate
            lr_var.assign(lowered)
            optimizer.learning_rate.assign(lr_var)
            step = int(step_var.numpy())
            event.update(restored_step=step, learning_rate=float(lr_var.numpy()))
            divergences.append(event)
            progress({"event": "divergence", **event})
            ema = None
            continue
        step += 1
        step_var.assign(step)
        ema = loss_value if ema is None else 0.95 * ema + 0.05 * loss_value
        for k in sum_keys:
            window[k] += float(sums[k])
        if step % settings.summary_every == 0 or step == settings.num_training_steps:
            train_metrics = summarize_metrics(window)
            window = {k: 0.0 for k in sum_keys}
            with writers["train"].as_default(step=step):
                for k, v in train_metrics.items():
                    tf.summary.scalar(f"metrics/{k}", v)
                tf.summary.scalar("learning_rate", float(lr_var.numpy()))
            history.append({"step": step, "split": "train", **train_metrics})
            progress({"event": "step", "step": step, "total": settings.num_training_steps, "metrics": train_metrics})
        if step % settings.eval_every == 0 or step == settings.num_training_steps:
            eval_metrics = evaluate()
            if eval_metrics:
                with writers["eval"].as_default(step=step):
                    for k, v in eval_metrics.items():
                        tf.summary.scalar(f"metrics/{k}", v)
                history.append({"step": step, "split": "eval", **eval_metrics})
                progress({"event": "eval", "step": step, "metrics": eval_metrics})
            for s in ("train", "eval"):
                writers[s].flush()
                rd.push(s)
        if step % settings.checkpoint_every == 0 or step == settings.num_training_steps:
            save_checkpoint()
    if not eval_metrics and step > start_step:
        eval_metrics = evaluate()
    for s in ("train", "eval"):
        writers[s].flush()
        rd.push(s)
    metadata = {
        "config": settings.config, "encoding": info["encoding"], "input_size": info["input_size"],
        "num_classes": info["num_classes"], "min_note": info["min_note"], "max_note": info["max_note"],
        "transpose_to_key": info["transpose_to_key"], "steps_per_quarter": info["steps_per_quarter"],
        "hparams": hparams.to_dict(), "step": step, "eval_metrics": eval_metrics,
        "train_metrics": train_metrics, "learning_rate": float(lr_var.numpy()),
        "dataset": {"url": info["url"], "counts": info["counts"], "format": info["format"],
                    "fingerprint": info["fingerprint"], "source_batches": info["source_batches"]},
        "divergence_events": divergences, "seed": settings.seed,
    }
    bundle = export_bundle(model, run_dir, metadata)
    return TrainResult(run_dir=run_dir, bundle=bundle, step=step, start_step=start_step,
                       train_metrics=train_metrics, eval_metrics=eval_metrics, history=history,
                       divergence_events=divergences, elapsed_s=round(time.monotonic() - started, 3))

