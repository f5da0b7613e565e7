"""Magenta's outputs scored by melodyflow's ranking formula (``docs/evaluation.md``), under Magenta's own model.

``generate`` scores its candidates as ``log_likelihood + closeness - 2 copy - repetition``, the likelihood under
the model that generated them.  Here Magenta's output MIDI files get the same score: the likelihood under
Magenta's model (its ``.mag`` imported by ``melodyflow import-magenta``, numerically Magenta's), closeness,
copies and repetition against the same training dataset.  A file's melody is read by ``generate``'s primer rule
and quantized at 4 steps per quarter; the generated part starts where ``melody_rnn_generate`` starts it, one
step after the primer's last note ends (``magenta_equality.magenta_effective_primer``).

    .venv/bin/python bench/_score_outputs.py IMPORTED_BUNDLE DATA_ROOT CONFIG PRIMER.mid:OUT1.mid,OUT2.mid ...

prints ``{"scores": [...]}`` (one per output, in order).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _melody(path: str) -> list[int]:
    from melodyflow.models.generation.primers import primer_from_midi

    with open(path, "rb") as fh:
        return [int(e) for e in primer_from_midi(fh.read()).melody]


def score(bundle: str, data_root: str, config_name: str, groups: list[tuple[str, list[str]]]) -> list[float]:
    from magenta_equality import magenta_effective_primer
    from note_seq.melodies_lib import Melody

    from melodyflow.models.bundles.bundle import load_bundle
    from melodyflow.models.evaluation.corpus import load_corpus
    from melodyflow.models.evaluation.likelihood import mean_log_likelihoods
    from melodyflow.models.evaluation.ranking import RankingReference, score_candidate
    from melodyflow.transforms.melodies.configs import get_config

    model, _ = load_bundle(bundle)
    config = get_config(config_name)
    reference = RankingReference.of_corpus(load_corpus(os.path.join(data_root, "melodies", config_name)))
    scores = []
    for primer, outputs in groups:
        start = len(magenta_effective_primer(_melody(primer)))
        melodies = [np.asarray(_melody(path), np.int64) for path in outputs]
        squashed = []
        for events in melodies:
            melody = Melody([int(e) for e in events])
            melody.squash(config.min_note, config.max_note, config.transpose_to_key)
            squashed.append(np.asarray(list(melody), np.int64))
        lls = mean_log_likelihoods(model, config, squashed, [start] * len(squashed))
        scores += [score_candidate(m, start, ll, reference).score for m, ll in zip(melodies, lls)]
    return scores


if __name__ == "__main__":
    bundle_dir, root, name = sys.argv[1:4]
    pairs = [(arg.split(":", 1)[0], arg.split(":", 1)[1].split(",")) for arg in sys.argv[4:]]
    print(json.dumps({"scores": score(bundle_dir, root, name, pairs)}))
