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

The rows of a batch are independent sequences, so the layer splits them into groups, one fused kernel
each, which TensorFlow's inter-op threads run at the same time on different cores (the weight gradients
of the groups add up).  One group per core when each op runs on one thread
(:func:`melodyflow.models.training.cpu_threads.use_one_thread_per_op`); one group, as before, under
TensorFlow's default of every core for each op.  An LSTM step's products (``[rows, 166|256] × [·, 512]``)
are too small for two threads to share, while two kernels on two cores share nothing but the weights.

TensorFlow registers ``BlockLSTMV2``'s gradient as the V1 gradient op, which assumes V1's layout and
gives wrong gradients (``tests/test_fused_lstm.py`` shows it); :func:`block_lstm` therefore defines its own, with
``BlockLSTMGradV2``.  On a GPU the layer keeps Keras' cuDNN path, which is faster there.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

MIN_ROWS_PER_GROUP = 8  # below this a group's products are matrix-vector work: not worth a core


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, as ``taskset`` or a container sets it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def row_groups(rows: int | None, cores: int, threads_per_op: int) -> int:
    """How many groups of rows a batch is split into: one per ``threads_per_op`` cores, and at most one per
    ``MIN_ROWS_PER_GROUP`` rows when ``rows`` is known."""
    groups = max(1, cores // max(1, threads_per_op))
    if rows is not None:
        groups = min(groups, max(1, rows // MIN_ROWS_PER_GROUP))
    return groups


def row_groups_here(rows: int | None) -> int:
    """:func:`row_groups` under this process' TensorFlow thread settings: the configured threads per op,
    else ``TF_NUM_INTRAOP_THREADS`` (which TensorFlow reads but does not report), else all cores."""
    cores = usable_cores()
    per_op = (tf.config.threading.get_intra_op_parallelism_threads()
              or int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or cores)
    return row_groups(rows, cores, per_op)


def block_lstm(x_tm, h0, c0, kernel, recurrent_kernel, bias, groups: int = 1):
    """Time-major ``x_tm`` ``[T, B, I]`` → ``(h, c)``, each ``[T, B, units]``, by ``BlockLSTMV2``; the
    batch's rows in ``groups`` near-equal groups, each its own kernel (a group may be empty)."""
    w = tf.concat([kernel, recurrent_kernel], axis=0)
    b = tf.convert_to_tensor(bias)
    if groups == 1:
        return _block_lstm(x_tm, h0, c0, w, b)
    rows = tf.shape(x_tm)[1]
    sizes = rows // groups + tf.cast(tf.range(groups) < rows % groups, tf.int32)
    parts = [_block_lstm(x, h, c, w, b) for x, h, c in zip(tf.split(x_tm, sizes, axis=1), tf.split(h0, sizes),
                                                          tf.split(c0, sizes))]
    return tf.concat([h for h, _ in parts], axis=1), tf.concat([c for _, c in parts], axis=1)


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
        # Over zero rows the kernel leaves its weight gradients unwritten (garbage): they are zeros.
        rows = tf.shape(x_tm)[1]
        w_grad, b_grad = (tf.where(rows > 0, g, tf.zeros_like(g)) for g in (w_grad, b_grad))
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
                          cell.bias, groups=row_groups_here(sequences.shape[0]))
        return h[-1], tf.transpose(h, [1, 0, 2]), [h[-1], c[-1]]

