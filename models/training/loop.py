"""Training loop: checkpoints and TensorBoard in RUN_DIR, resume, divergence guard, time budget, bundle export.

A custom loop rather than ``Model.fit`` because the loop must restore a checkpoint and lower the learning
rate in the middle of a run, and count padded steps exactly for Magenta's metrics.  Its parts live
beside it: :mod:`.divergence` (when a step must not count), :mod:`.checkpoints` (save, restore, push),
:mod:`.summaries` (metric windows, TensorBoard, history), :mod:`.steps` (the compiled steps) and
:mod:`.fine_tune` (starting from a parent bundle).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from melodyflow.models.hparams import AnyHParams, HParams
from melodyflow.models.training.fine_tune import Parent
from melodyflow.models.training.checkpoints import CHECKPOINTS
from melodyflow.models.training.cluster import cluster_role, remove_scratch, scratch_run_dir
from melodyflow.models.training.cpu_threads import describe_threads, use_one_thread_per_op
from melodyflow.models.training.divergence import DivergenceError, DivergenceGuard
from melodyflow.transforms.io import storage

__all__ = ["CHECKPOINTS", "DivergenceError", "TrainResult", "TrainSettings", "Trainer", "train"]

STOP_STEPS = "num_training_steps"
STOP_TIME = "time_budget"
STOP_EVAL_LOSS = "eval_loss_reached"


@dataclass(frozen=True)
class TrainSettings:
    config: str
    num_training_steps: int | None = 20000  # None: no step limit (then a time budget is required)
    eval_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 5
    summary_every: int = 10
    seed: int = 0
    resume: bool = True
    max_divergence_recoveries: int = 3
    spike_factor: float = 10.0
    lr_decay_on_divergence: float = 0.5
    time_budget_s: float | None = None  # wall-clock seconds of this call's run, start-up included
    init_from: str | None = None  # a parent bundle (or RUN_DIR) whose weights start a new run
    # Stop at the first evaluation (every eval_every steps) whose held-out loss is at most this: train "to a
    # quality" rather than for a number of steps or seconds. The step and time limits still apply.
    stop_at_eval_loss: float | None = None
    inject_nan_at_step: int | None = None  # fault injection for tests of the guard

    def __post_init__(self) -> None:
        for name in ("eval_every", "checkpoint_every", "keep_checkpoints", "summary_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.num_training_steps is None and self.time_budget_s is None:
            raise ValueError("without num_training_steps a time budget is required")
        if self.num_training_steps is not None and self.num_training_steps < 1:
            raise ValueError("num_training_steps must be at least 1")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError("the time budget must be a positive number of seconds")
        if self.stop_at_eval_loss is not None and not 0 < self.stop_at_eval_loss < float("inf"):
            raise ValueError("the eval loss to stop at must be a positive number (nats per step)")
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
    stop_reason: str = STOP_STEPS  # or "time_budget", "eval_loss_reached"
    time_budget_s: float | None = None
    parent: dict | None = None  # the bundle this run was fine-tuned from
    role: str = "single process"  # in a multi-worker cluster: which task, and whether it is the chief
    threads: str = "TensorFlow's default"  # the CPU thread settings it trained with (cpu_threads)
    writes_run: bool = True  # False on a non-chief worker: the chief alone writes the run directory

    def to_dict(self) -> dict:
        return asdict(self)


def choose_strategy():
    """Multi-worker when TF_CONFIG names a cluster, mirrored over all GPUs when >1, else default."""
    import tensorflow as tf

    if cluster_role().workers > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def no_event_label(info: dict) -> int:
    from melodyflow.transforms.melodies.configs import get_config

    return int(get_config(info["config"]).encoder_decoder.default_event_label)


def open_training_data(data_root: str, config: str) -> tuple[dict, dict[str, list[str]]]:
    """The dataset's info (``config``'s records, shared ones for an alias) and local shard paths per split."""
    from melodyflow.models.training.input_pipeline import stage_locally
    from melodyflow.transforms.melodies.configs import get_config
    from melodyflow.transforms.melodies.dataset import open_dataset

    info = open_dataset(data_root, get_config(config).name)
    if info["counts"]["train"] == 0:
        raise ValueError(f"the {config} dataset in {data_root} has no training examples")
    local = {split: [stage_locally(storage.join(info["url"], n)) for n in info["shards"][split]]
             for split in ("train", "eval")}
    if info["counts"]["eval"] == 0:
        local["eval"] = []
    return info, local


class Trainer:
    """One training run of ``settings.config`` on ``DATA_ROOT/melodies/<config>`` into ``run_dir``."""

    def __init__(self, data_root: str, run_dir: str, settings: TrainSettings, hparams: AnyHParams,
                 progress: Callable[[dict], None] = lambda event: None,
                 clock: Callable[[], float] = time.monotonic):
        """``clock`` measures the time budget: wall-clock seconds; a benchmark on a shared machine may
        pass ``time.process_time`` (this process' CPU seconds) instead."""
        self.clock = clock
        self.started = time.monotonic()
        self.budget_started = clock()
        self.data_root, self.run_dir, self.settings, self.hparams = data_root, run_dir, settings, hparams
        self.progress = progress
        self.stop_reason = STOP_STEPS
        self.parent: Parent | None = None

    def run(self) -> TrainResult:
        try:
            self._set_up()
            step = self._train_until_stopped()
            return self._finish(step)
        finally:
            if getattr(self, "write_rd", None) is not None and self.write_rd is not self.rd:
                remove_scratch(self.write_rd.local)

    def _set_up(self) -> None:
        import tensorflow as tf

        from melodyflow.models.network.registry import build_network
        from melodyflow.models.training.run_dir import RunDir

        s = self.settings
        if isinstance(self.hparams, HParams):  # before any TensorFlow op starts the runtime
            self.threads = use_one_thread_per_op()
        else:
            self.threads = describe_threads()
        self.strategy = choose_strategy()  # first: a multi-worker strategy must precede other TensorFlow ops
        self.role = cluster_role()
        self.info, self.local = open_training_data(self.data_root, s.config)
        if s.stop_at_eval_loss is not None and not self.local["eval"]:
            raise ValueError(f"the {s.config} dataset in {self.data_root} has an empty eval split: no eval loss "
                             "to stop at")
        self.no_event = no_event_label(self.info)
        if s.init_from:
            self._open_parent()
        tf.keras.utils.set_random_seed(s.seed)
        self.rd = RunDir(self.run_dir)
        self.write_rd = self.rd if self.role.is_chief else RunDir(scratch_run_dir())
        with self.strategy.scope():
            self.model = build_network(self.info["input_size"], self.info["num_classes"], self.hparams)
            self.optimizer = tf.keras.optimizers.Adam(learning_rate=self.hparams.learning_rate)
            self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            self.lr_var = tf.Variable(self.hparams.learning_rate, dtype=tf.float32, trainable=False,
                                      name="learning_rate")
            self.optimizer.build(self.model.trainable_variables)
        self._restore_or_initialize()
        self.start_step = int(self.step_var.numpy())
        self.guard = DivergenceGuard(max_recoveries=s.max_divergence_recoveries, spike_factor=s.spike_factor,
                                     lr_decay=s.lr_decay_on_divergence, start_step=self.start_step)
        self._build_steps()

    def _open_parent(self) -> None:
        from melodyflow.models.training.fine_tune import FineTuneError, check_compatible, open_parent

        parent = open_parent(str(self.settings.init_from))
        own_bundles = storage.join(self.run_dir, "bundles")
        if parent.url.rstrip("/").startswith(own_bundles.rstrip("/") + "/"):
            raise FineTuneError(f"--init-from {self.settings.init_from} is a bundle of RUN_DIR itself; "
                                "fine-tuning writes a new run: choose another RUN_DIR")
        check_compatible(parent, self.settings.config, self.info, self.hparams)
        self.parent = parent

    def _restore_or_initialize(self) -> None:
        """Resume from RUN_DIR's checkpoint, or start at step 0 (from the parent's weights when fine-tuning)."""
        from melodyflow.models.training.checkpoints import Checkpoints

        s = self.settings
        self.checkpoints = Checkpoints(self.write_rd, model=self.model, optimizer=self.optimizer,
                                       step_var=self.step_var, lr_var=self.lr_var, keep=s.keep_checkpoints,
                                       resume=s.resume, progress=self.progress,
                                       resume_from=None if self.role.is_chief else self.rd)
        restored = self.checkpoints.restore_latest(partial=True) if s.resume else None
        if restored:
            self.progress({"event": "resumed", "step": int(self.step_var.numpy()), "checkpoint": restored})
        elif self.parent is not None:
            from melodyflow.models.training.fine_tune import load_parent_weights

            load_parent_weights(self.parent, self.model)
            self.progress({"event": "initialized", "parent": self.parent.url})
        self.optimizer.learning_rate.assign(self.lr_var)

    def _build_steps(self) -> None:
        from melodyflow.models.training.input_pipeline import make_dataset
        from melodyflow.models.training.steps import make_evaluator, make_train_step
        from melodyflow.models.training.summaries import Summaries

        info, hp = self.info, self.hparams
        global_batch = hp.batch_size * self.strategy.num_replicas_in_sync
        self.train_ds = make_dataset(self.local["train"], fmt=info["format"], input_size=info["input_size"],
                                     batch_size=global_batch, training=True, seed=self.settings.seed,
                                     skip_batches=self.start_step)
        if self.role.workers > 1:  # each worker takes its own slices of every global batch
            import tensorflow as tf

            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            self.train_ds = self.train_ds.with_options(options)
        if self.checkpoints.latest is None:
            self.checkpoints.save()  # the guard always has a good state to return to
        self.summaries = Summaries(self.write_rd, self.progress)
        self.step_fn = make_train_step(self.model, self.optimizer, self.strategy, clip_norm=hp.clip_norm,
                                       no_event=self.no_event, warmup_steps=getattr(hp, "warmup_steps", 0),
                                       step_var=self.step_var, lr_var=self.lr_var)
        self.evaluate = make_evaluator(self.model, paths=self.local["eval"], fmt=info["format"],
                                       input_size=info["input_size"], batch_size=hp.batch_size,
                                       no_event=self.no_event)

    def _out_of_time(self) -> bool:
        budget = self.settings.time_budget_s
        return budget is not None and self.clock() - self.budget_started >= budget

    def _learning_rate(self, step: int) -> float:
        """The rate the optimizer used at ``step``: the (possibly lowered) base times the schedule."""
        return float(self.lr_var.numpy()) * self.hparams.learning_rate_factor(step)

    def _train_until_stopped(self) -> int:
        import tensorflow as tf

        total = self.settings.num_training_steps
        iterator = iter(self.strategy.experimental_distribute_dataset(self.train_ds))
        nan_pending = self.settings.inject_nan_at_step
        step = self.start_step
        while total is None or step < total:
            if self._out_of_time():
                self.stop_reason = STOP_TIME
                break
            batch = next(iterator)
            inject = nan_pending is not None and step + 1 >= nan_pending
            sums, loss = self.step_fn(batch, tf.constant(inject))
            event = self.guard.check(step, float(loss), float(self.lr_var.numpy()))
            if event is not None:
                if inject:
                    nan_pending = None  # the injected fault fires once
                step = self._recover(event)
                continue
            step += 1
            self.step_var.assign(step)
            self.summaries.add(sums)
            self._at_step_end(step, last=step == total)
            if self.stop_reason == STOP_EVAL_LOSS:
                break
        return step

    def _recover(self, event: dict) -> int:
        """Back to the last checkpoint (its learning rate too), then a lowered learning rate."""
        lowered = self.guard.lowered(float(self.lr_var.numpy()))
        self.checkpoints.restore_latest()
        self.lr_var.assign(lowered)
        self.optimizer.learning_rate.assign(self.lr_var)
        step = int(self.step_var.numpy())
        self.progress({"event": "divergence", **self.guard.recovered(event, step, float(self.lr_var.numpy()))})
        return step

    def _at_step_end(self, step: int, last: bool) -> None:
        s = self.settings
        if step % s.summary_every == 0 or last:
            self._write_train(step)
        if step % s.eval_every == 0 or last:
            metrics = self.evaluate()
            self.summaries.write_eval(step, metrics)
            target = s.stop_at_eval_loss
            if target is not None and metrics and metrics["loss"] <= target and not last:
                self.stop_reason = STOP_EVAL_LOSS
        if step % s.checkpoint_every == 0 or last:
            self.checkpoints.save()

    def _write_train(self, step: int) -> None:
        extra = {"elapsed_s": round(self.clock() - self.budget_started, 3),
                 "time_budget_s": self.settings.time_budget_s}
        self.summaries.write_train(step, self.settings.num_training_steps, self._learning_rate(step), extra)

    def _finish(self, step: int) -> TrainResult:
        """After a stop before the step limit (time budget, eval loss reached): the last summary, eval and
        checkpoint; then the bundle."""
        summaries = self.summaries
        if self.stop_reason != STOP_STEPS:
            if summaries.window_steps:
                self._write_train(step)
            if summaries.evaluated_at != step:
                summaries.write_eval(step, self.evaluate())
            if self.checkpoints.saved_at != step:
                self.checkpoints.save()
        if not summaries.eval_metrics and step > self.start_step:
            summaries.eval_metrics = self.evaluate()
        summaries.flush()
        bundle = self._export(step)
        return TrainResult(run_dir=self.run_dir, bundle=bundle, step=step, start_step=self.start_step,
                           train_metrics=summaries.train_metrics, eval_metrics=summaries.eval_metrics,
                           history=summaries.history, divergence_events=self.guard.events,
                           elapsed_s=round(time.monotonic() - self.started, 3), stop_reason=self.stop_reason,
                           time_budget_s=self.settings.time_budget_s,
                           parent=self.parent.record() if self.parent else None,
                           role=self.role.describe(), writes_run=self.role.is_chief,
                           threads=self.threads)

    def _export(self, step: int) -> str:
        """The bundle's URL; a non-chief worker writes none and returns an empty string."""
        from melodyflow.models.bundles.bundle import export_bundle

        if not self.role.is_chief:
            return ""

        info, s = self.info, self.settings
        metadata = {
            "config": s.config, "encoding": info["encoding"], "input_size": info["input_size"],
            "num_classes": info["num_classes"], "min_note": info["min_note"], "max_note": info["max_note"],
            "transpose_to_key": info["transpose_to_key"], "steps_per_quarter": info["steps_per_quarter"],
            "hparams": self.hparams.to_dict(), "step": step, "eval_metrics": self.summaries.eval_metrics,
            "train_metrics": self.summaries.train_metrics, "learning_rate": float(self.lr_var.numpy()),
            "dataset": {"url": storage.absolute(info["url"]), "counts": info["counts"], "format": info["format"],
                        "fingerprint": info["fingerprint"], "source_batches": info["source_batches"]},
            "divergence_events": self.guard.events, "seed": s.seed, "stop_reason": self.stop_reason,
        }
        if s.time_budget_s is not None:
            metadata["time_budget_s"] = s.time_budget_s
        if s.stop_at_eval_loss is not None:
            metadata["stop_at_eval_loss"] = s.stop_at_eval_loss
        if self.parent is not None:
            metadata["parent"] = self.parent.record()
            metadata["lineage"] = self.parent.lineage()
        return export_bundle(self.model, self.run_dir, metadata)


def train(data_root: str, run_dir: str, settings: TrainSettings, hparams: AnyHParams,
          progress: Callable[[dict], None] = lambda event: None,
          clock: Callable[[], float] = time.monotonic) -> TrainResult:
    """Train ``settings.config`` on ``DATA_ROOT/melodies/<config>``; write everything under ``run_dir``.

    ``progress`` receives dicts: ``{"event": "step", "step", "total", "metrics", "elapsed_s",
    "time_budget_s"}``, ``"eval"``, ``"checkpoint"``, ``"divergence"``, ``"resumed"``, ``"initialized"``.
    """
    return Trainer(data_root, run_dir, settings, hparams, progress, clock).run()
