"""How likely a trained model finds given melodies: mean log-likelihood per step, in nats.

The melodies are encoded with the config's encoder (``transforms/melodies/encoding_compiled``, the
same inputs and labels training used) and run through the Keras model in one batch, at temperature 1
and without dropout. Step ``t``'s label is predicted from events ``0..t-1``; only steps from
``start_step`` on count (a primer's own steps are given, not generated), and never step 0, which
nothing predicts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from melodyflow.transforms.melodies import encoding_compiled
from melodyflow.transforms.melodies.configs import MelodyConfig


def dense_inputs(events: np.ndarray, config: MelodyConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs [T-1, input_size], labels [T-1])`` of an already squashed melody."""
    cols, vals, labels = encoding_compiled.encode(np.asarray(events, dtype=np.int64), config)
    inputs = np.zeros((labels.size, encoding_compiled.input_size(config)), dtype=np.float32)
    if labels.size:
        rows = np.repeat(np.arange(labels.size), cols.shape[1])
        values = np.ones(cols.size, np.float32) if vals is None else vals.ravel().astype(np.float32)
        np.add.at(inputs, (rows, cols.ravel()), values)  # padding columns carry value 0
    return inputs, labels


def mean_log_likelihoods(model, config: MelodyConfig, melodies: Sequence[np.ndarray],
                         start_steps: Sequence[int]) -> np.ndarray:
    """Per melody, the mean log-probability (nats) the model gives each event from ``start_step`` on;
    NaN for a melody with no such step."""
    import tensorflow as tf

    encoded = [dense_inputs(m, config) for m in melodies]
    longest = max((labels.size for _, labels in encoded), default=0)
    out = np.full(len(melodies), np.nan)
    if longest == 0:
        return out
    width = encoding_compiled.input_size(config)
    batch = np.zeros((len(encoded), longest, width), np.float32)
    targets = np.zeros((len(encoded), longest), np.int64)
    for i, (inputs, labels) in enumerate(encoded):
        batch[i, : labels.size] = inputs
        targets[i, : labels.size] = labels
    logits = model(batch, training=False)
    log_probs = np.asarray(tf.nn.log_softmax(logits, axis=-1), dtype=np.float64)
    picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    for i, (_, labels) in enumerate(encoded):
        first = max(int(start_steps[i]), 1) - 1  # label t-1 predicts event t
        if labels.size > first:
            out[i] = float(picked[i, first: labels.size].mean())
    return out
