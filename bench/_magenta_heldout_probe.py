"""Runs inside Magenta's own venv (through ../shared/tools/magenta-reference/run): held-out loss in Magenta's session.

Loads a ``.mag`` exactly as ``melody_rnn_generate`` does (see ``_magenta_probe.py``), feeds every
SequenceExample of the given TFRecord files (``inputs`` float lists, ``labels`` int64, the records
``melody_rnn_create_dataset`` and ``melodyflow dataset --format sequence-example`` both write) through the
graph in one call per melody at temperature 1, and writes Magenta's metrics as JSON: ``loss`` (mean
cross-entropy per step over every step of every melody, the definition of Magenta's ``--eval`` mode and of
melodyflow's evaluator), ``accuracy``, ``steps`` and ``melodies``.

Why not ``melody_rnn_train --eval``: it reads through a 4-thread queue in whole batches, drops the last
partial batch, and then waits for new checkpoints; this reads every record exactly once and exits.  It works
for every config, attention_rnn included, which ``melodyflow import-magenta`` refuses.

    PYTHONPATH=bench VENV/bin/python ../shared/tools/magenta-reference/run _magenta_heldout_probe \
        BUNDLE.mag OUT.json EVAL.tfrecord...
"""

import json
import sys

import numpy as np
import tensorflow.compat.v1 as tf
from _magenta_probe import load_model


def records(paths: list):
    for path in paths:
        for raw in tf.io.tf_record_iterator(path):
            example = tf.train.SequenceExample.FromString(raw)
            lists = example.feature_lists.feature_list
            inputs = np.asarray([list(f.float_list.value) for f in lists["inputs"].feature], np.float32)
            labels = np.asarray([f.int64_list.value[0] for f in lists["labels"].feature], np.int64)
            yield inputs, labels


def heldout(model, paths: list) -> dict:
    graph = model._session.graph  # noqa: SLF001 - the probe reads Magenta's own session and graph
    batch = model._batch_size()  # noqa: SLF001 - the graph's batch size is fixed; fill it with copies
    inputs_t, temperature_t = graph.get_collection("inputs")[0], graph.get_collection("temperature")[0]
    softmax_t = graph.get_collection("softmax")[0]
    loss_sum, correct, steps, melodies = 0.0, 0, 0, 0
    for inputs, labels in records(paths):
        feed = {inputs_t: [inputs] * batch, temperature_t: 1.0}
        probs = np.asarray(model._session.run(softmax_t, feed)[0], np.float64)  # noqa: SLF001
        picked = probs[np.arange(len(labels)), labels]
        loss_sum += float(-np.log(np.maximum(picked, 1e-30)).sum())
        correct += int((probs.argmax(axis=-1) == labels).sum())
        steps += len(labels)
        melodies += 1
    return {"loss": loss_sum / steps, "accuracy": correct / steps, "steps": steps, "melodies": melodies}


if __name__ == "__main__":
    tf.disable_v2_behavior()
    model, _ = load_model(sys.argv[1])
    with open(sys.argv[2], "w") as fh:
        json.dump(heldout(model, sys.argv[3:]), fh)
