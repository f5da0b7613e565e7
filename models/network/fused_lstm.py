"""A Keras ``LSTM`` whose whole-sequence pass runs as TensorFlow's fused CPU kernel, ``BlockLSTMV2``.

Keras' LSTM on CPU walks the sequence in a ``tf.while_loop`` of a dozen small ops per step, and its
gradient is the loop's generic gradient (stacks of every intermediate).  ``BlockLSTMV2`` does a step's
matmul and all its gate arithmetic in one C++ kernel, and ``BlockLSTMGradV2`` does the backward pass the
same way: the same equations with far fewer op dispatches and memory passes.  Measured, a basic_rnn
training step (batch 128 × 512 steps, 2×128 units) costs 12% fewer CPU seconds; the matrix products,
which neither implementation can avoid, are most of what is left (docs/models.md, "Training speed").

The weights are Keras' own — ``kernel`` ``[input, 4·units]``, ``recurrent_kernel`` ``[units, 4·units]``,
``bias`` with the forget bias inside it (``unit_forget_bias`` only sets its initial value) — in Keras'
gate order ``i, f, c, o``, which is ``BlockLSTMV2``'s layout too (``BlockLSTM``, V1, has another gate
layout and a run-time forget bias).  So variables, checkpoints, bundles, imported Magenta weights and the one-step cell used
for generation are unchanged; only how a whole sequence is computed differs, within float rounding.

TensorFlow registers ``BlockLSTMV2``'s gradient as the V1 gradient op, which assumes V1's layout and
gives wrong gradients (``tests/test_fused_lstm.py`` shows it); :func:`block_lstm` therefore defines its own, with
``BlockLSTMGradV2``.  On a GPU the layer keeps Keras' cuDNN path, which is faster there.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def block_lstm(x_tm, h0, c0, kernel, recurrent_kernel, bias):
    """Time-major ``x_tm`` ``[T, B, I]`` → ``(h, c)``, each ``[T, B, units]``, by ``BlockLSTMV2``."""
    w = tf.concat([kernel, recurrent_kernel], axis=0)
    return _block_lstm(x_tm, h0, c0, w, tf.convert_to_tensor(bias))


@tf.custom_gradient
def _block_lstm(x_tm, h0, c0, w, b):
    units = tf.shape(b)[0] // 4
    no_peephole = tf.zeros([units], dtype=x_tm.dtype)
    steps = tf.cast(tf.shape(x_tm)[0], tf.int64)
    common = dict(seq_len_max=steps, x=x_tm, cs_prev=c0, h_prev=h0, w=w, wci=no_peephole, wcf=no_peephole,
                  wco=no_peephole, b=b, use_peephole=False)
    i, cs, f, o, ci, co, h = tf.raw_ops.BlockLSTMV2(**common, cell_clip=0.0)  # 0: no clipping

    def grad(dh, dcs):
        x_grad, c0_grad, h0_grad, w_grad, _, _, _, b_grad = tf.raw_ops.BlockLSTMGradV2(
            **common, i=i, cs=cs, f=f, o=o, ci=ci, co=co, h=h, cs_grad=dcs, h_grad=dh)
        return x_grad, h0_grad, c0_grad, w_grad, b_grad

    return (h, cs), grad


@keras.saving.register_keras_serializable(package="melodyflow")
class FusedLSTM(keras.layers.LSTM):
    """``keras.layers.LSTM`` (same arguments, weights and results) with the fused kernel on CPU."""

    def _fusable(self, sequences, mask) -> bool:
        cell = self.cell
        return (mask is None and not self.go_backwards and not self.unroll and cell.use_bias
                and not cell.dropout and not cell.recurrent_dropout
                and cell.activation is keras.activations.tanh
                and cell.recurrent_activation is keras.activations.sigmoid
                and sequences.dtype == tf.float32
                and not tf.config.list_logical_devices("GPU"))

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self._fusable(sequences, mask):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        h0, c0 = initial_state
        cell = self.cell
        h, c = block_lstm(tf.transpose(sequences, [1, 0, 2]), h0, c0, cell.kernel, cell.recurrent_kernel,
                          cell.bias)
        return h[-1], tf.transpose(h, [1, 0, 2]), [h[-1], c[-1]]

