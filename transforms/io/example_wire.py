"""Serialize ``tf.train.SequenceExample`` / ``tf.train.Example`` without TensorFlow.

Dataset workers write millions of examples; importing TensorFlow costs seconds and ~1 GB per worker just
to reach two proto classes.  These encoders emit the protobuf wire format of ``example.proto`` and
``feature.proto`` directly (keys sorted, packed repeated fields), which TensorFlow parses into protos
equal to those Magenta builds; a test checks that with TensorFlow itself.

:func:`packed_varints` / :func:`example_packed` / :func:`sequence_example_sparse` emit the same bytes
from numpy arrays with a few array operations per record instead of a Python call per value, which
would otherwise be the largest cost of building a corpus.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import numpy as np
from numba import njit


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


def _sequence_example(inputs_list: bytes, labels_list: bytes) -> bytes:
    feature_lists = _field(1, _map_entry("inputs", inputs_list)) + _field(1, _map_entry("labels", labels_list))
    return _field(2, feature_lists)


def sequence_example(inputs: Sequence[Sequence[float]], labels: Sequence[int]) -> bytes:
    """Magenta's ``make_sequence_example``: feature lists ``inputs`` (floats) and ``labels`` (int64)."""
    inputs_list = b"".join(_field(1, _float_feature(row)) for row in inputs)
    labels_list = b"".join(_field(1, _int64_feature([label])) for label in labels)
    return _sequence_example(inputs_list, labels_list)


def example(int64_features: Mapping[str, Iterable[int]]) -> bytes:
    """A ``tf.train.Example`` whose features are all int64 lists."""
    features = b"".join(_field(1, _map_entry(key, _int64_feature(int64_features[key])))
                        for key in sorted(int64_features))
    return _field(1, features)


_LENGTH_BYTES = [bytes((n,)) for n in range(0x80)]


def _length(n: int) -> bytes:
    """``_varint(n)`` for a length (non-negative), without the loop for the usual sizes."""
    if n < 0x80:
        return _LENGTH_BYTES[n]
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    return _varint(n)


_LOW7 = np.uint64(0x7F)
_MORE = np.uint64(0x80)
_SEVEN = np.uint64(7)


@njit(cache=True)
def _put_varint(out, j, x):
    """Write the varint of uint64 ``x`` at ``out[j]``; returns the index after it."""
    while x >= _MORE:
        out[j] = np.uint8((x & _LOW7) | _MORE)
        j += 1
        x >>= _SEVEN
    out[j] = np.uint8(x)
    return j + 1


@njit(cache=True)
def _varints(u):
    """Varint bytes of each of the uint64 values ``u`` (int64 two's complement for negatives)."""
    out = np.empty(u.size * 10, dtype=np.uint8)
    j = 0
    for i in range(u.size):
        j = _put_varint(out, j, u[i])
    return out[:j]


@njit(cache=True)
def _label_feature_entries(u):
    """Per uint64 label, a FeatureList.feature (1) → Feature.int64_list (3) → Int64List.value (1)
    holding its n-byte varint: 0x0a, n+4, 0x1a, n+2, 0x0a, n, varint."""
    out = np.empty(u.size * 16, dtype=np.uint8)
    j = 0
    for i in range(u.size):
        end = _put_varint(out, j + 6, u[i])
        n = end - j - 6
        out[j] = np.uint8(0x0A)
        out[j + 1] = np.uint8(n + 4)
        out[j + 2] = np.uint8(0x1A)
        out[j + 3] = np.uint8(n + 2)
        out[j + 4] = np.uint8(0x0A)
        out[j + 5] = np.uint8(n)
        j = end
    return out[:j]


def _as_uint64(values) -> np.ndarray:
    """int64 ``values`` as their two's-complement uint64 bits, the way protobuf writes negative int64s."""
    return np.ascontiguousarray(values, dtype=np.int64).ravel().view(np.uint64)


def packed_varints(values) -> bytes:
    """The concatenated varints of int64 ``values`` (a packed repeated field's payload).

    Same bytes as ``b"".join(_varint(int(v)) for v in values)``, negatives included.  One compiled
    loop: a record packs four short arrays, where numpy's per-call costs outweighed the work.
    """
    u = _as_uint64(values)
    return _varints(u).tobytes() if u.size else b""


def _ld(tag: bytes, payload: bytes) -> bytes:
    """:func:`_field` with the tag byte given (field numbers < 16)."""
    return tag + _length(len(payload)) + payload


def example_packed(packed_features: Mapping[str, bytes]) -> bytes:
    """:func:`example` for features already encoded with :func:`packed_varints`."""
    pieces: list[bytes] = []
    for key in sorted(packed_features):
        packed = packed_features[key]
        # Features.feature map entry (1) {key (1), value (2): Feature.int64_list (3) → value (1) packed}.
        key_field = _ld(b"\x0a", key.encode("utf-8"))
        values = b"\x0a" + _length(len(packed)) if packed else b""
        int64_list = b"\x1a" + _length(len(values) + len(packed))
        feature = b"\x12" + _length(len(int64_list) + len(values) + len(packed))
        entry_length = len(key_field) + len(feature) + len(int64_list) + len(values) + len(packed)
        pieces += (b"\x0a", _length(entry_length), key_field, feature, int64_list, values, packed)
    body = b"".join(pieces)
    return b"\x0a" + _length(len(body)) + body


@lru_cache(maxsize=64)
def _float_row_prefix(width: int) -> bytes:
    return _field(1, _float_feature([0.0] * width))[: -4 * width]


def sequence_example_sparse(steps: int, width: int, rows, cols, negative, labels) -> bytes:
    """:func:`sequence_example` from the non-zero inputs: ``inputs[rows[i]][cols[i]]`` is -1.0 where
    ``negative[i]`` else 1.0, every other entry of the ``[steps, width]`` inputs is 0.0; ``labels`` [steps].

    Every row is the same length, so each is a fixed header followed by ``width`` little-endian
    float32s, written straight into one byte matrix (±1.0 is 00 00 80 3f/bf).
    """
    inputs_list: bytes | memoryview
    if width == 0:
        inputs_list = _field(1, _float_feature([])) * steps
    else:
        prefix = np.frombuffer(_float_row_prefix(width), dtype=np.uint8)
        matrix = np.zeros((steps, prefix.size + 4 * width), dtype=np.uint8)
        matrix[:, : prefix.size] = prefix
        at = prefix.size + 4 * np.asarray(cols)
        matrix[rows, at + 2] = 0x80
        matrix[rows, at + 3] = np.where(negative, 0xBF, 0x3F)
        inputs_list = matrix.reshape(-1).data
    return _sequence_example_joined(inputs_list, _label_entries(labels))


def _label_entries(labels) -> bytes:
    """``b"".join(_field(1, _int64_feature([label])) for label in labels)``, in one compiled loop."""
    u = _as_uint64(labels)
    return _label_feature_entries(u).tobytes() if u.size else b""


_INPUTS_KEY, _LABELS_KEY = _field(1, b"inputs"), _field(1, b"labels")


def _sequence_example_joined(inputs_list: bytes | memoryview, labels_list: bytes) -> bytes:
    """:func:`_sequence_example` with one copy of the (large) payloads instead of one per nesting level."""
    inputs_value = _length(len(inputs_list))  # (a memoryview of bytes: its len is the byte count)
    labels_value = _length(len(labels_list))
    inputs_entry = len(_INPUTS_KEY) + 1 + len(inputs_value) + len(inputs_list)
    labels_entry = len(_LABELS_KEY) + 1 + len(labels_value) + len(labels_list)
    inputs_len, labels_len = _length(inputs_entry), _length(labels_entry)
    feature_lists = 1 + len(inputs_len) + inputs_entry + 1 + len(labels_len) + labels_entry
    return b"".join((b"\x12", _length(feature_lists),
                     b"\x0a", inputs_len, _INPUTS_KEY, b"\x12", inputs_value, inputs_list,
                     b"\x0a", labels_len, _LABELS_KEY, b"\x12", labels_value, labels_list))
