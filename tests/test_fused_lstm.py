"""The fused LSTM kernel computes what Keras' LSTM computes: outputs, final state and every gradient."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from melodyflow.models.hparams import default_hparams
from melodyflow.models.network.fused_lstm import FusedLSTM, block_lstm, row_groups
from melodyflow.models.network.melody_rnn import build_model, masked_metrics

TOL = 1e-5
# The fused kernel is the CPU path; where TensorFlow sees a GPU the layer is Keras' own (cuDNN) LSTM.
cpu_only = pytest.mark.skipif(bool(tf.config.list_logical_devices("GPU")), reason="fused kernel is CPU only")


def _pair(units: int, inputs: int, seed: int) -> tuple[keras.layers.LSTM, FusedLSTM]:
    """A Keras LSTM and a FusedLSTM holding the same random (not initial: bias far from 0/1) weights."""
    rng = np.random.default_rng(seed)
    ref = keras.layers.LSTM(units, return_sequences=True, return_state=True)
    fused = FusedLSTM(units, return_sequences=True, return_state=True)
    for layer in (ref, fused):
        layer.build((None, None, inputs))
    weights = [rng.normal(scale=0.5, size=w.shape).astype(np.float32) for w in ref.get_weights()]
    ref.set_weights(weights)
    fused.set_weights(weights)
    return ref, fused


def _loss(outputs):
    """A loss that weights every output and state element differently (a plain sum hides gate mix-ups)."""
    return sum(tf.reduce_sum(t * tf.sin(3.0 * t + float(k))) for k, t in enumerate(outputs))


@cpu_only
@pytest.mark.parametrize(("batch", "steps", "inputs", "units"), [(3, 7, 5, 4), (2, 33, 38, 16), (1, 1, 4, 3)])
def test_outputs_states_and_gradients_equal_keras(batch, steps, inputs, units):
    ref, fused = _pair(units, inputs, seed=steps)
    x = tf.constant(np.random.default_rng(1).normal(size=(batch, steps, inputs)).astype(np.float32))
    rng = np.random.default_rng(2)
    h0, c0 = (tf.constant(rng.normal(size=(batch, units)).astype(np.float32)) for _ in range(2))
    assert fused._fusable(x, None)
    results = []
    for layer in (ref, fused):
        with tf.GradientTape() as tape:
            tape.watch([x, h0, c0])
            outputs = layer(x, initial_state=[h0, c0])
            loss = _loss(outputs)
        grads = tape.gradient(loss, [x, h0, c0, *layer.trainable_weights])
        results.append(([o.numpy() for o in outputs], [g.numpy() for g in grads]))
    (ref_out, ref_grads), (got_out, got_grads) = results
    for want, got in zip(ref_out, got_out):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)
    names = ["x", "h0", "c0", "kernel", "recurrent_kernel", "bias"]
    for name, want, got in zip(names, ref_grads, got_grads):
        assert np.abs(want).max() > 1e-3, name  # the check below is not vacuous
        np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL, err_msg=name)


def test_tensorflows_registered_gradient_would_be_wrong():
    """Why block_lstm defines its own gradient: TF maps BlockLSTMV2 to the V1 gradient op (other gate order)."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(4, 2, 3)).astype(np.float32))
    w = tf.constant(rng.normal(size=(3 + 2, 8)).astype(np.float32))
    b = tf.constant(rng.normal(size=(8,)).astype(np.float32))
    zeros, state = tf.zeros([2]), tf.zeros([2, 2])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([w])
        raw = tf.raw_ops.BlockLSTMV2(seq_len_max=tf.constant(4, tf.int64), x=x, cs_prev=state, h_prev=state, w=w,
                                     wci=zeros, wcf=zeros, wco=zeros, b=b, cell_clip=0.0, use_peephole=False)[6]
        from melodyflow.models.network.fused_lstm import block_lstm

        ours = block_lstm(x, state, state, w[:3], w[3:], b)[0]
        raw_loss, our_loss = _loss([raw]), _loss([ours])
    np.testing.assert_allclose(ours.numpy(), raw.numpy(), atol=1e-6)
    assert not np.allclose(tape.gradient(raw_loss, w).numpy(), tape.gradient(our_loss, w).numpy(), atol=1e-3)


@cpu_only
def test_melody_rnn_training_loss_and_gradients_equal_keras_lstm():
    """The whole basic_rnn model, dropout included (same seed), on a padded batch: same loss and gradients."""
    hp = default_hparams("basic_rnn").override({"rnn_layer_sizes": [24, 16]})
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 38, size=(4, 20))
    x = tf.constant(np.eye(38, dtype=np.float32)[labels])
    lengths = tf.constant([20, 13, 5, 1])
    keras.utils.set_random_seed(0)
    fused = build_model(38, 38, hp)
    keras.utils.set_random_seed(0)
    plain = build_model(38, 38, hp)
    for layer in plain.layers:
        if isinstance(layer, FusedLSTM):
            layer._fusable = lambda *args: False  # this instance takes Keras' own loop
    plain.set_weights(fused.get_weights())
    assert fused.get_layer("lstm_0")._fusable(x, None)
    results = []
    for model in (plain, fused):
        keras.utils.set_random_seed(7)  # the same dropout masks
        with tf.GradientTape() as tape:
            sums = masked_metrics(model(x, training=True), labels, lengths, 0)
            loss = sums["loss_sum"] / sums["steps"]
        results.append((float(loss), [g.numpy() for g in tape.gradient(loss, model.trainable_weights)]))
    (want_loss, want_grads), (got_loss, got_grads) = results
    assert got_loss == pytest.approx(want_loss, abs=TOL)
    for want, got in zip(want_grads, got_grads):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)


def test_keras_path_is_kept_where_the_kernel_does_not_apply():
    layer = FusedLSTM(3, return_sequences=True, go_backwards=True)
    ref = keras.layers.LSTM(3, return_sequences=True, go_backwards=True)
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 5, 4)).astype(np.float32))
    layer.build(x.shape)
    ref.build(x.shape)
    ref.set_weights(layer.get_weights())
    assert not layer._fusable(x, None)
    np.testing.assert_allclose(layer(x).numpy(), ref(x).numpy(), atol=1e-6)


@cpu_only
@pytest.mark.parametrize(("batch", "groups"), [(7, 3), (2, 3), (16, 2)])
def test_row_groups_give_the_same_outputs_and_gradients(batch, groups):
    """Rows split into groups (uneven, or more groups than rows) compute what one kernel computes."""
    rng = np.random.default_rng(batch)
    steps, inputs, units = 9, 6, 5
    x, h0, c0 = (tf.constant(rng.normal(size=shape).astype(np.float32))
                 for shape in ((steps, batch, inputs), (batch, units), (batch, units)))
    weights = [tf.constant(rng.normal(scale=0.5, size=shape).astype(np.float32))
               for shape in ((inputs, 4 * units), (units, 4 * units), (4 * units,))]
    results = []
    for g in (1, groups):
        with tf.GradientTape() as tape:
            tape.watch([x, h0, c0, *weights])
            outputs = block_lstm(x, h0, c0, *weights, groups=g)
            loss = _loss(outputs)
        results.append(([o.numpy() for o in outputs], [t.numpy() for t in tape.gradient(loss, [x, h0, c0, *weights])]))
    (want_out, want_grads), (got_out, got_grads) = results
    for want, got in zip(want_out + want_grads, got_out + got_grads):
        assert np.abs(want).max() > 1e-3
        np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)


@pytest.mark.parametrize(("rows", "cores", "threads_per_op", "groups"),
                         [(128, 2, 1, 2), (128, 2, 2, 1), (128, 16, 1, 16), (64, 16, 1, 8), (None, 4, 1, 4),
                          (5, 4, 1, 1), (128, 16, 4, 4), (128, 1, 1, 1)])
def test_row_groups_one_per_core_a_thread_each_and_enough_rows(rows, cores, threads_per_op, groups):
    assert row_groups(rows, cores, threads_per_op) == groups
