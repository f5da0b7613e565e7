"""Runs inside Magenta's own venv (through ../shared/tools/magenta-reference/run): Magenta's softmax for melodies.

Loads a ``.mag`` with Magenta's generator classes exactly as ``melody_rnn_generate`` does (metagraph import +
checkpoint restore), squashes each melody with the config's range and key, runs it through the graph in one
call at temperature 1, and writes one ``[steps, classes]`` probability list per melody as JSON.

    PYTHONPATH=bench VENV/bin/python ../shared/tools/magenta-reference/run _magenta_probe BUNDLE.mag MELODIES.json OUT.json

``MELODIES.json`` is a list of event lists.
"""

import json
import sys

import note_seq
import numpy as np
import tensorflow.compat.v1 as tf
from magenta.models.melody_rnn import melody_rnn_model, melody_rnn_sequence_generator
from magenta.models.shared import sequence_generator_bundle


def load_model(bundle_file: str):
    bundle = sequence_generator_bundle.read_bundle_file(bundle_file)
    config = melody_rnn_model.default_configs[bundle.generator_details.id]
    generator = melody_rnn_sequence_generator.MelodyRnnSequenceGenerator(
        model=melody_rnn_model.MelodyRnnModel(config), details=config.details,
        steps_per_quarter=config.steps_per_quarter, bundle=bundle)
    generator.initialize()
    return generator._model, config  # noqa: SLF001 - the probe reads Magenta's own session and graph


def magenta_softmax(model, config, events: list) -> np.ndarray:
    melody = note_seq.Melody(events)
    melody.squash(config.min_note, config.max_note, config.transpose_to_key)
    inputs = config.encoder_decoder.get_inputs_batch([melody], full_length=True)
    graph = model._session.graph  # noqa: SLF001
    batch = model._batch_size()  # noqa: SLF001 - the graph's batch size is fixed; fill it with copies
    feed = {graph.get_collection("inputs")[0]: inputs * batch, graph.get_collection("temperature")[0]: 1.0}
    softmax = model._session.run(graph.get_collection("softmax")[0], feed)  # noqa: SLF001
    return np.asarray(softmax[0], np.float64)


if __name__ == "__main__":
    tf.disable_v2_behavior()
    model, config = load_model(sys.argv[1])
    with open(sys.argv[2]) as fh:
        melodies = json.load(fh)
    with open(sys.argv[3], "w") as fh:
        json.dump([magenta_softmax(model, config, events).tolist() for events in melodies], fh)
