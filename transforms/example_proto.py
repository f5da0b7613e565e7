"""Serialize ``tf.train.SequenceExample`` / ``tf.train.Example`` without TensorFlow.

Dataset workers write millions of examples; importing TensorFlow costs seconds and ~1 GB per worker just
to reach two proto classes.  These encoders emit the protobuf wire format of ``example.proto`` and
``feature.proto`` directly (keys sorted, packed repeated fields), which TensorFlow parses into protos
equal to those Magenta builds; a test checks that with TensorFlow itself.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 two's complement, as protobuf encodes negative int64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _float_feature(values: Sequence[float]) -> bytes:
    # Feature.float_list (2) → FloatList.value (1), packed little-endian float32.
    packed = struct.pack(f"<{len(values)}f", *values)
    return _field(2, _field(1, packed) if values else b"")


def _int64_feature(values: Iterable[int]) -> bytes:
    # Feature.int64_list (3) → Int64List.value (1), packed varints.
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, packed) if packed else b"")


def _map_entry(key: str, value: bytes) -> bytes:
    return _field(1, key.encode("utf-8")) + _field(2, value)


def sequence_example(inputs: Sequence[Sequence[float]], labels: Sequence[int]) -> bytes:
    """Magenta's ``make_sequence_example``: feature lists ``inputs`` (floats) and ``labels`` (int64)."""
    inputs_list = b"".join(_field(1, _float_feature(row)) for row in inputs)
    labels_list = b"".join(_field(1, _int64_feature([label])) for label in labels)
    feature_lists = _field(1, _map_entry("inputs", inputs_list)) + _field(1, _map_entry("labels", labels_list))
    return _field(2, feature_lists)


def example(int64_features: Mapping[str, Iterable[int]]) -> bytes:
    """A ``tf.train.Example`` whose features are all int64 lists."""
    features = b"".join(_field(1, _map_entry(key, _int64_feature(int64_features[key])))
                        for key in sorted(int64_features))
    return _field(1, features)
