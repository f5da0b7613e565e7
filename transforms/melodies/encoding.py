"""Melody → model inputs/labels (note-seq's encoders) → a serialized training record.

Two record formats:
- ``sequence-example``: Magenta's ``tf.train.SequenceExample`` with feature lists ``inputs`` (one float
  list per step) and ``labels`` (one int64 per step), readable by Magenta's own trainer.
- ``compact`` (default): a ``tf.train.Example`` holding only what cannot be recomputed cheaply: the
  labels and, per step, the positions of non-zero inputs.  Every Melody RNN input vector has entries in
  {-1, 0, 1}, so a step is a handful of small varints instead of ``input_size`` floats; the training
  input pipeline expands it back to exactly the same dense vectors (see :func:`expand_compact`).

Compact features: ``labels`` [T], ``input_lengths`` [T] (non-zeros per step), ``input_codes``
[sum(input_lengths)] with ``code = 2 * index + (1 if value == -1 else 0)``, and ``input_size`` [1].

Two paths build the same bytes.  :func:`encode_melody` + :func:`to_record` run note-seq's own encoders
and stay as the reference.  :func:`encode_events` is what corpus building uses: note-seq computes each
step's dense input vector in Python (the key-melody encoder even re-scans the whole prefix per step),
which made encoding and serialization most of a corpus build, so it re-derives the same inputs with
array operations over the whole melody (``encoding_compiled``) and writes the varints with numpy;
tests pin it byte for byte to the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from melodyflow.transforms.io import example_wire

from melodyflow.transforms.melodies import encoding_compiled
from melodyflow.transforms.melodies.configs import MelodyConfig

FORMATS = ("compact", "sequence-example")


class EncodingError(ValueError):
    """A melody could not be encoded in the requested format."""


def encode_melody(melody, config: MelodyConfig) -> tuple[list[list[float]], list[int]]:
    """Squash into the config's range/key (in place, as Magenta does) and encode."""
    melody.squash(config.min_note, config.max_note, config.transpose_to_key)
    inputs, labels = config.encoder_decoder.encode(melody)
    return inputs, list(labels)


def compact_codes(inputs: Sequence[Sequence[float]]) -> tuple[list[int], list[int]]:
    lengths, codes = [], []
    for row in inputs:
        n = 0
        for index, value in enumerate(row):
            if value == 0.0:
                continue
            if value == 1.0:
                codes.append(2 * index)
            elif value == -1.0:
                codes.append(2 * index + 1)
            else:
                raise EncodingError(f"compact format needs inputs in {{-1, 0, 1}}, got {value}")
            n += 1
        lengths.append(n)
    return lengths, codes


def to_record(inputs: Sequence[Sequence[float]], labels: Sequence[int], fmt: str, input_size: int) -> bytes:
    if fmt == "sequence-example":
        return example_wire.sequence_example(inputs, labels)
    if fmt == "compact":
        lengths, codes = compact_codes(inputs)
        return example_wire.example({"labels": labels, "input_lengths": lengths, "input_codes": codes,
                                      "input_size": [input_size]})
    raise EncodingError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def encode_events(events: Sequence[int], config: MelodyConfig, fmt: str) -> tuple[bytes, list[int]]:
    """``(record, squashed_events)`` for a melody given as its event list (``list(note_seq.Melody)``).

    ``record`` equals ``to_record(*encode_melody(m, config), fmt, config.input_size)`` byte for byte and
    ``squashed_events`` equals ``list(m)`` afterwards, for ``m = note_seq.Melody(events)`` (whatever its
    steps_per_bar/steps_per_quarter: neither squash nor the encoders read them).  Raises ValueError for
    events outside -2..127 (as ``Melody`` does), for squashed notes outside the config's range
    (possible only for ranges under an octave), and EncodingError for an unknown ``fmt``.
    """
    if fmt not in FORMATS:
        raise EncodingError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    ev = encoding_compiled.squashed_events(events, config.min_note, config.max_note, config.transpose_to_key)
    cols, vals, labels = encoding_compiled.encode(ev, config)
    steps, width = labels.size, encoding_compiled.input_size(config)
    if fmt == "compact":
        if vals is None:  # every listed input is 1
            lengths = example_wire.packed_varints([cols.shape[1]]) * steps
            codes = 2 * cols
        else:
            present = vals != 0
            lengths = example_wire.packed_varints(present.sum(axis=1))
            codes = 2 * cols[present] + (vals[present] < 0)
        record = example_wire.example_packed({
            "input_codes": example_wire.packed_varints(codes),
            "input_lengths": lengths,
            "input_size": example_wire.packed_varints([width]),
            "labels": example_wire.packed_varints(labels),
        })
    else:
        if vals is None:
            rows, cols, negative = np.repeat(np.arange(steps), cols.shape[1]), cols.ravel(), False
        else:
            present = vals != 0
            rows, cols, negative = np.nonzero(present)[0], cols[present], vals[present] < 0
        record = example_wire.sequence_example_sparse(steps, width, rows, cols, negative, labels)
    return record, ev.tolist()


def expand_compact(lengths: Sequence[int], codes: Sequence[int], input_size: int) -> list[list[float]]:
    """Inverse of :func:`compact_codes` in plain Python (the tf.data version lives in ``models``)."""
    rows, pos = [], 0
    for n in lengths:
        row = [0.0] * input_size
        for code in codes[pos : pos + n]:
            row[code // 2] = -1.0 if code % 2 else 1.0
        rows.append(row)
        pos += n
    return rows
