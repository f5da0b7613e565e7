"""Dataset records read back to events (both formats, all configs), and the model inputs for likelihoods."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from melodyflow.models.evaluation.likelihood import dense_inputs
from melodyflow.models.evaluation.records import READERS, RecordError, read_compact
from melodyflow.models.evaluation.reference import decoder_for
from melodyflow.transforms.io import example_wire
from melodyflow.transforms.melodies.configs import CONFIGS
from melodyflow.transforms.melodies.encoding import encode_events


def _random_melody(rng: np.random.Generator, steps: int) -> list[int]:
    events, pitch = [], 60
    while len(events) < steps:
        r = rng.random()
        if r < 0.55:
            pitch = int(np.clip(pitch + rng.integers(-7, 8), 30, 100))
            events.append(pitch)
        elif r < 0.65:
            events.append(-1)
        else:
            events.append(-2)
    return events


def _melodies(seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(60):
        m = _random_melody(rng, int(rng.integers(2, 150)))
        if i % 4 == 0:
            m = [-2] * int(rng.integers(1, 20)) + m  # a bar-aligned start with rests
        if i % 5 == 0:
            m = (m[:16] + [-2] * 16) * 5  # exact bar repeats: the lookback classes
        out.append(m)
    return out


@pytest.mark.parametrize("fmt", sorted(READERS))
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_records_decode_to_the_squashed_melody(config, fmt):
    cfg = CONFIGS[config]
    decoder = decoder_for(cfg)
    for melody in _melodies(zlib.crc32(f"{config}/{fmt}".encode())):
        record, squashed = encode_events(melody, cfg, fmt)
        labels, columns = READERS[fmt](record)
        assert decoder.events(labels, columns).tolist() == squashed


def test_unpacked_int64_fields_read_the_same():
    labels, lengths, codes = [3, 1, 4, 1, 5], [1, 1, 1, 1, 1, 1], [2 * 7, 2, 4, 6, 8, 10]

    def unpacked(values):  # Int64List.value (1) as one varint field per value, wire type 0
        return example_wire._field(3, b"".join(example_wire._varint(8) + example_wire._varint(v) for v in values))

    features = b"".join(example_wire._field(1, example_wire._map_entry(k, unpacked(v)))
                        for k, v in (("labels", labels), ("input_lengths", lengths), ("input_codes", codes)))
    got_labels, got_columns = read_compact(example_wire._field(1, features))
    assert got_labels.tolist() == labels and got_columns.tolist() == [7]


def test_bad_records_raise_a_record_error():
    with pytest.raises(RecordError):
        read_compact(b"\x0a\x05\x0a")  # truncated
    with pytest.raises(RecordError, match="without labels"):
        read_compact(example_wire.example({"input_size": [38]}))
    decoder = decoder_for(CONFIGS["basic_rnn"])
    with pytest.raises(RecordError, match="outside"):
        decoder.events(np.array([99]), np.array([2]))


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_dense_inputs_equal_note_seq_encoder(config):
    from note_seq.melodies_lib import Melody

    cfg = CONFIGS[config]
    rng = np.random.default_rng(1)
    for _ in range(5):
        _, squashed = encode_events(_random_melody(rng, 70), cfg, "compact")
        inputs, labels = dense_inputs(np.array(squashed), cfg)
        want_inputs, want_labels = cfg.encoder_decoder.encode(Melody(squashed))
        assert labels.tolist() == list(want_labels)
        np.testing.assert_array_equal(inputs, np.array(want_inputs, dtype=np.float32))
