"""Compiled training and evaluation steps over a ``tf.distribute`` strategy.

A training step never applies a non-finite update (the divergence guard restores and retries
instead).  A learning-rate warm-up, when the hparams have one, is applied inside the step from the
global step, so a resumed run continues the schedule where it stopped.
"""

from __future__ import annotations

from melodyflow.models.network.melody_rnn import masked_metrics
from melodyflow.models.training.summaries import SUM_KEYS


def schedule_factor(step, warmup_steps: int):
    """``min(s/w, sqrt(w/s))`` at 1-based step ``s`` (a tensor): linear warm-up, inverse-sqrt decay."""
    import tensorflow as tf

    s = tf.maximum(tf.cast(step, tf.float32), 1.0)
    w = float(warmup_steps)
    return tf.minimum(s / w, tf.sqrt(w / s))


def make_train_step(model, optimizer, strategy, *, clip_norm: float, no_event: int, warmup_steps: int,
                    step_var, lr_var):
    """``step(batch, inject_nan) -> (sums, loss)``: one distributed optimizer step, sums reduced over replicas."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def train_step(inputs, labels, lengths, inject_nan):
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)
            sums = masked_metrics(logits, labels, lengths, no_event)
            loss = sums["loss_sum"] / tf.maximum(sums["steps"], 1.0)
            loss = tf.where(inject_nan, tf.constant(float("nan")), loss)
        grads = tape.gradient(loss, model.trainable_variables)
        grads, _ = tf.clip_by_global_norm(grads, clip_norm)
        finite = tf.math.is_finite(loss)
        grads = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
        if warmup_steps:
            optimizer.learning_rate.assign(lr_var * schedule_factor(step_var + 1, warmup_steps))
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return sums, loss

    @tf.function(reduce_retracing=True)
    def distributed_step(batch, inject_nan):
        sums, loss = strategy.run(train_step, args=(*batch, inject_nan))
        sums = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, sums[k], axis=None) for k in SUM_KEYS}
        loss = strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
        return sums, loss

    return distributed_step


def make_evaluator(model, *, paths: list[str], fmt: str, input_size: int, batch_size: int, no_event: int):
    """``evaluate() -> metrics``: Magenta's metrics over the whole eval split (``{}`` when it is empty)."""
    import tensorflow as tf

    from melodyflow.models.network.melody_rnn import summarize_metrics
    from melodyflow.models.training.input_pipeline import make_dataset

    @tf.function(reduce_retracing=True)
    def eval_step(inputs, labels, lengths):
        return masked_metrics(model(inputs, training=False), labels, lengths, no_event)

    def evaluate() -> dict:
        if not paths:
            return {}
        ds = make_dataset(paths, fmt=fmt, input_size=input_size, batch_size=batch_size, training=False)
        total = {k: 0.0 for k in SUM_KEYS}
        for inputs, labels, lengths in ds:
            for k, v in eval_step(inputs, labels, lengths).items():
                total[k] += float(v)
        return summarize_metrics(total)

    return evaluate
