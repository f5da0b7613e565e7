"""One thread per TensorFlow op when a Melody RNN trains on CPU; the LSTM layers then use the cores by
splitting each batch's rows (:func:`melodyflow.models.network.fused_lstm.row_groups`).

TensorFlow's default gives every op all the cores.  An LSTM step's matrix products are too small to share
(``[128, 166|256] × [·, 512]``, one per time step), so the extra threads mostly spin; measured on two idle
cores, basic_rnn at Magenta's hparams trains about 1.7x faster with one thread per op and one row group
per core (docs/models.md, "Training speed").  The Music Transformer's larger products keep TensorFlow's
default, as does a run where the user set ``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS``, a GPU
machine (cuDNN), and a process whose TensorFlow runtime had already started (the thread pools are
fixed then).
"""

from __future__ import annotations

import os

USER_SETTINGS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def use_one_thread_per_op() -> str:
    """Set one intra-op thread and one inter-op thread per core if nothing above rules it out; return
    what the process runs with, in words (for the training summary)."""
    import tensorflow as tf

    from melodyflow.models.network.fused_lstm import usable_cores

    if any(name in os.environ for name in USER_SETTINGS):
        return describe_threads()
    if tf.config.list_physical_devices("GPU"):
        return "TensorFlow's default (GPU machine)"
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(usable_cores())
    except RuntimeError:  # the runtime has started: its thread pools are fixed for this process
        pass
    return describe_threads()


def describe_threads() -> str:
    """The thread settings this process' TensorFlow runs with, in words."""
    import tensorflow as tf

    if any(name in os.environ for name in USER_SETTINGS):
        return "as set by " + ", ".join(f"{n}={os.environ[n]}" for n in USER_SETTINGS if n in os.environ)
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    if not intra and not inter:
        return "TensorFlow's default"
    return f"{intra or 'default'} thread(s) per op, {inter or 'default'} ops at once"
