"""Encodings: sizes per config, Magenta-identical SequenceExamples, and a lossless compact format."""

from __future__ import annotations

import pytest

from sequences import add_notes, new_sequence, scale_run
from transforms import example_proto
from transforms.melody_configs import CONFIGS, get_config
from transforms.melody_encoding import compact_codes, encode_melody, expand_compact, to_record
from transforms.melody_extraction import MelodySettings, sequence_to_melodies

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
    parsed = tf.train.Example.FromString(example_proto.example({"a": [0, 1, 300, -5, 2**62], "b": []}))
    assert list(parsed.features.feature["a"].int64_list.value) == [0, 1, 300, -5, 2**62]
    assert list(parsed.features.feature["b"].int64_list.value) == []
