"""Training summaries: metric sums per window, TensorBoard event files, the in-memory history.

Metrics are kept as sums over non-padded steps (see ``masked_metrics``) and turned into Magenta's
metrics only when written, so a window of several batches weighs every step equally.
"""

from __future__ import annotations

from collections.abc import Callable

from melodyflow.models.training.run_dir import RunDir

SUM_KEYS = ("loss_sum", "steps", "correct", "events", "events_correct", "no_events", "no_events_correct")
SPLITS = ("train", "eval")


def zero_sums() -> dict:
    return {k: 0.0 for k in SUM_KEYS}


class Summaries:
    def __init__(self, run_dir: RunDir, progress: Callable[[dict], None]):
        import tensorflow as tf

        self.run_dir = run_dir
        self.progress = progress
        self.writers = {s: tf.summary.create_file_writer(run_dir.local_path(s)) for s in SPLITS}
        self.window = zero_sums()
        self.window_steps = 0
        self.history: list[dict] = []
        self.train_metrics: dict = {}
        self.eval_metrics: dict = {}
        self.evaluated_at: int | None = None

    def add(self, sums: dict) -> None:
        for k in SUM_KEYS:
            self.window[k] += float(sums[k])
        self.window_steps += 1

    def write_train(self, step: int, total: int | None, learning_rate: float, extra: dict | None = None) -> dict:
        """Close the window: its metrics go to TensorBoard, the history and ``progress``."""
        import tensorflow as tf

        from melodyflow.models.network.melody_rnn import summarize_metrics

        self.train_metrics = summarize_metrics(self.window)
        self.window, self.window_steps = zero_sums(), 0
        with self.writers["train"].as_default(step=step):
            for k, v in self.train_metrics.items():
                tf.summary.scalar(f"metrics/{k}", v)
            tf.summary.scalar("learning_rate", learning_rate)
        self.history.append({"step": step, "split": "train", **self.train_metrics})
        self.progress({"event": "step", "step": step, "total": total, "metrics": self.train_metrics,
                       **(extra or {})})
        return self.train_metrics

    def write_eval(self, step: int, metrics: dict) -> None:
        import tensorflow as tf

        self.eval_metrics = metrics
        self.evaluated_at = step
        if metrics:
            with self.writers["eval"].as_default(step=step):
                for k, v in metrics.items():
                    tf.summary.scalar(f"metrics/{k}", v)
            self.history.append({"step": step, "split": "eval", **metrics})
            self.progress({"event": "eval", "step": step, "metrics": metrics})
        self.flush()

    def flush(self) -> None:
        for s in SPLITS:
            self.writers[s].flush()
            self.run_dir.push(s)
