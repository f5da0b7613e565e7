"""Encodings: sizes per config, Magenta-identical SequenceExamples, and a lossless compact format."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sequences import add_notes, new_sequence, scale_run
from melodyflow.transforms.io import example_wire
from melodyflow.transforms.melodies.configs import CONFIGS, MelodyConfig, get_config
from melodyflow.transforms.melodies.encoding import (FORMATS, EncodingError, compact_codes, encode_events, encode_melody,
                                       expand_compact, to_record)
from melodyflow.transforms.melodies.extraction_reference import MelodySettings, sequence_to_melodies

SIZES = {"basic_rnn": (38, 38), "mono_rnn": (130, 130), "lookback_rnn": (121, 40), "attention_rnn": (74, 40)}


def _melody(pitches=(55, 60, 62, 64, 67, 71, 90)):
    seq = add_notes(new_sequence(), 0, scale_run(9, pitches=pitches, step_len=3))
    (found,), _, _ = sequence_to_melodies(seq, MelodySettings())
    return found.melody


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_sizes_match_magenta(name):
    assert (get_config(name).input_size, get_config(name).num_classes) == SIZES[name]


def test_unknown_config_is_a_clear_error():
    with pytest.raises(ValueError, match="choose one of"):
        get_config("jazz_rnn")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_squash_and_encode_then_compact_roundtrip(name):
    config = get_config(name)
    inputs, labels = encode_melody(_melody(), config)
    assert len(inputs) == len(labels) and all(len(row) == config.input_size for row in inputs)
    assert all(0 <= label < config.num_classes for label in labels)
    lengths, codes = compact_codes(inputs)
    assert expand_compact(lengths, codes, config.input_size) == [list(map(float, r)) for r in inputs]


def test_squash_transposes_into_range_and_key_like_magenta():
    melody = _melody()
    encode_melody(melody, get_config("basic_rnn"))
    notes = [e for e in melody if e >= 0]
    assert min(notes) >= 48 and max(notes) < 84
    mono = _melody()
    encode_melody(mono, get_config("mono_rnn"))  # no range squash, no key transposition
    assert [e for e in mono if e >= 0] == [e for e in _melody() if e >= 0]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_records_parse_in_tensorflow_as_magenta_builds_them(name):
    tf = pytest.importorskip("tensorflow")
    config = get_config(name)
    inputs, labels = encode_melody(_melody(), config)
    expected = tf.train.SequenceExample(feature_lists=tf.train.FeatureLists(feature_list={
        "inputs": tf.train.FeatureList(feature=[tf.train.Feature(float_list=tf.train.FloatList(value=r))
                                                for r in inputs]),
        "labels": tf.train.FeatureList(feature=[tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
                                                for v in labels])}))
    got = tf.train.SequenceExample.FromString(to_record(inputs, labels, "sequence-example", config.input_size))
    assert got == expected
    compact = tf.train.Example.FromString(to_record(inputs, labels, "compact", config.input_size))
    feature = compact.features.feature
    assert list(feature["labels"].int64_list.value) == labels
    assert list(feature["input_size"].int64_list.value) == [config.input_size]
    dense = expand_compact(list(feature["input_lengths"].int64_list.value),
                           list(feature["input_codes"].int64_list.value), config.input_size)
    assert dense == [list(map(float, r)) for r in inputs]
    compact_size = len(to_record(inputs, labels, "compact", config.input_size))
    assert compact_size * 5 < len(got.SerializeToString())


def test_negative_int64_and_empty_lists_encode_like_protobuf():
    tf = pytest.importorskip("tensorflow")
    parsed = tf.train.Example.FromString(example_wire.example({"a": [0, 1, 300, -5, 2**62], "b": []}))
    assert list(parsed.features.feature["a"].int64_list.value) == [0, 1, 300, -5, 2**62]
    assert list(parsed.features.feature["b"].int64_list.value) == []


# --- encode_events: the vectorized path, pinned byte for byte to note-seq's encoders ------------------

def _oracle(events, config):
    """Records in both formats and the squashed events, exactly as note-seq builds them."""
    import note_seq

    melody = note_seq.Melody(list(events))
    inputs, labels = encode_melody(melody, config)
    return {fmt: to_record(inputs, labels, fmt, config.input_size) for fmt in FORMATS}, list(melody)


def _random_events(rng):
    """Event lists shaped to hit squash/encoder corner cases (see the kinds below)."""
    length = rng.choice([rng.randint(1, 40), rng.randint(1, 70), rng.randint(60, 200), rng.randint(1, 600)]
                        if rng.random() < 0.1 else [rng.randint(1, 40), rng.randint(1, 70), rng.randint(60, 160)])
    kind = rng.choice(["wide", "narrow_low", "narrow_high", "edges", "rests_only", "repeats", "few_notes",
                       "lookback_period", "scale"])
    if kind == "rests_only":
        return [rng.choice([-2, -2, -1]) for _ in range(length)]
    if kind == "wide":  # needs octave folding into every config's range
        pitches = list(range(0, 128))
    elif kind == "narrow_low":
        pitches = list(range(0, rng.randint(1, 12)))
    elif kind == "narrow_high":
        pitches = list(range(rng.randint(116, 127), 128))
    elif kind == "edges":  # the range edges of the configs and just outside them
        pitches = [0, 47, 48, 49, 83, 84, 85, 127]
    elif kind == "few_notes":  # key-histogram ties
        pitches = rng.sample(range(40, 90), rng.randint(1, 3))
    else:
        root = rng.randint(30, 90)
        pitches = [root + s for s in (0, 2, 4, 5, 7, 9, 11, 12)]
    p_rest, p_off = rng.choice([(0.1, 0.05), (0.4, 0.15), (0.7, 0.2), (0.0, 0.0)])
    events = []
    for _ in range(length):
        x = rng.random()
        events.append(-2 if x < p_rest else -1 if x < p_rest + p_off else rng.choice(pitches))
    if kind == "repeats":  # the same pitch over and over, with runs of -2/-1 in between
        pitch = rng.choice(pitches)
        events = [pitch if e >= 0 and rng.random() < 0.7 else e for e in events]
    if kind == "lookback_period":  # bar and two-bar repetition, so lookback labels/inputs fire
        period = rng.choice([16, 32])
        events = [events[i % period] if rng.random() < 0.85 else events[i] for i in range(length)]
    if rng.random() < 0.3:  # leading note-offs/no-events, which Melody() turns into no-events
        events = [rng.choice([-1, -2]) for _ in range(rng.randint(1, 20))] + events
    return events


RANDOM_MELODIES = [_random_events(random.Random(seed)) for seed in range(300)]
EDGE_MELODIES = [[], [-2], [-1], [60], [-1, -1, 60], [-2, -1, -2], [0, -2, 127, -1], [84, 83, 48, 47],
                 [-1] * 40, [-2] * 33, [60] * 50, [60, 72] * 20, [60, 72, 84, 72, 60] * 10, list(range(128)),
                 list(range(127, -1, -1)), [47, -2, -1, -2, 84] * 13,
                 [random.Random(1).choice([-2, -2, -1, 60, 62, 64, 65, 67, 69, 71, 72]) for _ in range(600)]]


# Not Magenta configs, but legal ones that reach corners the four cannot: pitch 0 in a key-melody range
# (note-seq treats a sounding pitch 0 as silence there), full-range lookback, no key transposition.
EXTRA_CONFIGS = {
    "key_melody_0_128": MelodyConfig("k", "key_melody", min_note=0, max_note=128, transpose_to_key=None),
    "lookback_0_128": MelodyConfig("l", "lookback", min_note=0, max_note=128, transpose_to_key=None),
    "one_hot_key_7": MelodyConfig("o", "one_hot", min_note=30, max_note=43, transpose_to_key=7),
}


def _check_against_oracle(melodies, configs=CONFIGS):
    mismatches = []
    for events in melodies:
        for name, config in configs.items():
            records, squashed = _oracle(events, config)
            for fmt in FORMATS:
                record, got_squashed = encode_events(events, config, fmt)
                if record != records[fmt] or got_squashed != squashed:
                    mismatches.append((name, fmt, events))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[0]}"


def test_encode_events_matches_note_seq_on_edge_melodies():
    _check_against_oracle(EDGE_MELODIES)


def test_encode_events_matches_note_seq_on_random_melodies():
    assert any(len(m) > 300 for m in RANDOM_MELODIES) and any(not any(e >= 0 for e in m) for m in RANDOM_MELODIES)
    _check_against_oracle(RANDOM_MELODIES)


def test_encode_events_matches_note_seq_in_other_legal_configs():
    _check_against_oracle(EDGE_MELODIES + RANDOM_MELODIES[:80], EXTRA_CONFIGS)


def test_encode_events_matches_note_seq_on_extracted_melodies():
    import midi_factory
    from note_seq import midi_io

    sequences = [add_notes(new_sequence(), 0, scale_run(9, pitches=(55, 60, 62, 64, 67, 71, 90), step_len=3)),
                 add_notes(new_sequence(), 0, scale_run(12, pitches=(21, 40, 64, 100, 108), step_len=1))]
    sequences += [midi_io.midi_to_note_sequence(midi_factory.melodic_midi(seed)) for seed in range(12)]
    melodies = []
    for seq in sequences:
        found, _, _ = sequence_to_melodies(seq, MelodySettings(transpositions=(0, 5, -7)))
        melodies += [list(f.melody) for f in found]
    assert len(melodies) >= 20
    _check_against_oracle(melodies)


def test_encode_events_keeps_the_callers_events_and_takes_any_int_sequence():
    events = [-1, 30, -2, 100, -1, 64]
    config = get_config("basic_rnn")
    record, squashed = encode_events(events, config, "compact")
    assert events == [-1, 30, -2, 100, -1, 64]
    assert encode_events(tuple(events), config, "compact") == (record, squashed)
    assert encode_events(np.array(events, dtype=np.int8), config, "compact") == (record, squashed)
    assert all(type(e) is int for e in squashed)


def test_encode_events_rejects_what_note_seq_rejects():
    config = get_config("basic_rnn")
    for bad in ([60, -3], [128], [60, 200, -2]):
        with pytest.raises(ValueError, match="out of range"):
            encode_events(bad, config, "compact")
    with pytest.raises(EncodingError, match="choose one of"):
        encode_events([60, 62], config, "tfrecord")
    narrow = MelodyConfig("narrow", "one_hot", min_note=60, max_note=65)  # narrower than an octave
    for events in ([40, 64, 70], [64, 70, 40], [70, -2]):
        with pytest.raises(ValueError) as expected:
            encode_melody(note_seq_melody(events), narrow)
        with pytest.raises(ValueError, match=str(expected.value)):
            encode_events(events, narrow, "compact")
    assert encode_events([70], narrow, "compact")[0] == to_record(*encode_melody(note_seq_melody([70]), narrow),
                                                                   "compact", narrow.input_size)


def note_seq_melody(events):
    import note_seq

    return note_seq.Melody(events)


def test_fast_encoder_constants_are_note_seqs():
    from note_seq import constants, encoder_decoder

    from melodyflow.transforms.melodies import encoding_compiled as fast

    assert [list(k) for k in fast.NOTE_KEYS] == constants.NOTE_KEYS
    assert list(fast.LOOKBACK_DISTANCES) == encoder_decoder.DEFAULT_LOOKBACK_DISTANCES
    assert fast.STEPS_PER_BAR == constants.DEFAULT_STEPS_PER_BAR
    for config in [*CONFIGS.values(), *EXTRA_CONFIGS.values(), MelodyConfig("k", "key_melody", 10, 100)]:
        assert fast.input_size(config) == config.input_size


def test_label_entries_match_the_scalar_encoder_for_any_int64():
    """Magenta's labels are small class indices, but a wide custom note range (or a bad caller) must
    still get protobuf's bytes: multi-byte and ten-byte (negative) varints included."""
    rng = random.Random(11)
    for _ in range(200):
        labels = [rng.choice([rng.randrange(128), rng.randrange(1 << 14), rng.randrange(1 << 40),
                              rng.randrange(-2**63, 0), 2**63 - 1, 0])
                  for _ in range(rng.choice([0, 1, 7, 120]))]
        expected = b"".join(example_wire._field(1, example_wire._int64_feature([v])) for v in labels)
        assert example_wire._label_entries(np.array(labels, dtype=np.int64)) == expected


def test_vectorized_varints_match_the_scalar_encoder():
    rng = random.Random(7)
    for _ in range(300):
        values = [rng.choice([rng.randrange(128), rng.randrange(1 << 14), rng.randrange(1 << 35),
                              rng.randrange(-300, 0), rng.randrange(-2**63, 2**63), 2**63 - 1, -2**63, 0])
                  for _ in range(rng.choice([0, 1, 3, 50]))]
        packed = example_wire.packed_varints(np.array(values, dtype=np.int64))
        assert packed == b"".join(example_wire._varint(v) for v in values)
        features = {"b": values, "a": values[:2], "empty": [], "k" * 150: values}
        assert example_wire.example_packed({k: example_wire.packed_varints(np.array(v, dtype=np.int64))
                                             for k, v in features.items()}) == example_wire.example(features)
