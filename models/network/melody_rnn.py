"""The Melody RNN as a Keras 3 model: stacked LSTMs → linear logits over the config's classes.

LSTM layers keep Keras' cuDNN-eligible defaults (tanh/sigmoid, no recurrent dropout, not unrolled), and
on CPU run a whole sequence as TensorFlow's fused LSTM kernel (:class:`.fused_lstm.FusedLSTM`: Keras'
weights and results, a faster kernel); dropout is applied to each layer's outputs as Magenta's
``DropoutWrapper(output_keep_prob)`` does.
Padding is handled by masking the loss, not the LSTM, which keeps the fast kernel and costs nothing
because padding only ever follows the real steps.

attention_rnn: Magenta wraps the first LSTM in ``tf.contrib``'s ``AttentionCellWrapper``, which no longer
exists in TF 2.  We attend, at every step, over the previous ``attn_length`` outputs of the first layer
(scaled dot-product, causal window) and feed ``[output, context]`` to the next layer — the same window
and placement, computed for all steps in parallel instead of inside the cell.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from melodyflow.models.hparams import HParams
from melodyflow.models.network.fused_lstm import FusedLSTM


@keras.saving.register_keras_serializable(package="melodyflow")
class WindowedAttention(keras.layers.Layer):
    """Each step attends over the ``attn_length`` outputs before it (none at the first step)."""

    def __init__(self, attn_length: int, **kwargs):
        super().__init__(**kwargs)
        self.attn_length = attn_length

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.query = keras.layers.Dense(dim, use_bias=False, name="query")
        self.key = keras.layers.Dense(dim, use_bias=False, name="key")
        self.query.build(input_shape)
        self.key.build(input_shape)
        self.scale = 1.0 / (dim ** 0.5)

    def call(self, outputs):
        steps = tf.shape(outputs)[1]
        scores = tf.matmul(self.query(outputs), self.key(outputs), transpose_b=True) * self.scale
        i = tf.range(steps)[:, None]
        j = tf.range(steps)[None, :]
        window = tf.logical_and(j < i, j >= i - self.attn_length)  # strictly previous attn_length steps
        scores = tf.where(window[None], scores, tf.fill(tf.shape(scores), tf.constant(-1e9, scores.dtype)))
        weights = tf.nn.softmax(scores, axis=-1) * tf.cast(window[None], scores.dtype)
        context = tf.matmul(weights, outputs)
        return tf.concat([outputs, context], axis=-1)

    def get_config(self):
        return {**super().get_config(), "attn_length": self.attn_length}


def build_model(input_size: int, num_classes: int, hparams: HParams) -> keras.Model:
    inputs = keras.Input(shape=(None, input_size), dtype="float32", name="inputs")
    x = inputs
    rate = 1.0 - hparams.dropout_keep_prob
    for i, units in enumerate(hparams.rnn_layer_sizes):
        x = FusedLSTM(units, return_sequences=True, name=f"lstm_{i}")(x)
        if i == 0 and hparams.attn_length:
            x = WindowedAttention(hparams.attn_length, name="attention")(x)
        if rate > 0:
            x = keras.layers.Dropout(rate, name=f"dropout_{i}")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="melody_rnn")


def masked_metrics(logits, labels, lengths, no_event_label: int) -> dict:
    """Sums (not means) over non-padded steps, so batches and replicas add up exactly.

    Returns loss_sum, steps, correct, events, events_correct, no_events, no_events_correct.
    """
    labels = tf.cast(labels, tf.int32)
    mask = tf.sequence_mask(lengths, tf.shape(labels)[1], dtype=tf.float32)
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
    correct = tf.cast(tf.equal(predictions, labels), tf.float32) * mask
    event = tf.cast(tf.not_equal(labels, no_event_label), tf.float32) * mask
    no_event = mask - event
    return {
        "loss_sum": tf.reduce_sum(xent * mask),
        "steps": tf.reduce_sum(mask),
        "correct": tf.reduce_sum(correct),
        "events": tf.reduce_sum(event),
        "events_correct": tf.reduce_sum(correct * event),
        "no_events": tf.reduce_sum(no_event),
        "no_events_correct": tf.reduce_sum(correct * no_event),
    }


def summarize_metrics(sums: dict) -> dict:
    """Magenta's metric names from summed counts: loss, perplexity, accuracy, event/no-event accuracy."""
    import math

    steps = max(float(sums["steps"]), 1.0)
    loss = float(sums["loss_sum"]) / steps
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "accuracy": float(sums["correct"]) / steps,
        "event_accuracy": float(sums["events_correct"]) / max(float(sums["events"]), 1.0),
        "no_event_accuracy": float(sums["no_events_correct"]) / max(float(sums["no_events"]), 1.0),
    }
