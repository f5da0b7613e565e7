"""Serialize ``tf.train.SequenceExample`` / ``tf.train.Example`` without TensorFlow.

Dataset workers write millions of examples; importing TensorFlow costs seconds and ~1 GB per worker just
to reach two proto classes.  These encoders emit the protobuf wire format of ``example.proto`` and
``feature.proto`` directly (keys sorted, packed repeated fields), which TensorFlow parses into protos
equal to those Magenta builds; a test checks that with TensorFlow itself.

:func:`packed_varints` / :func:`example_packed` / :func:`sequence_example_sparse` emit the same bytes
from numpy arrays with a few array operations per record instead of a Python call per value: per-value
``_varint`` calls and per-row float packing were the largest cost of building a corpus.
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


# _POW7[j] = 2**(7*j): a non-negative value needs varint byte j (0-based) iff it is >= _POW7[j].
_POW7 = np.array([1 << (7 * j) for j in range(10)], dtype=np.uint64)
_SHIFT7 = np.arange(10, dtype=np.uint64) * np.uint64(7)
_LENGTH_BYTES = [bytes((n,)) for n in range(0x80)]


def _length(n: int) -> bytes:
    """``_varint(n)`` for a length (non-negative), without the loop for the usual sizes."""
    if n < 0x80:
        return _LENGTH_BYTES[n]
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    return _varint(n)


def _varint_matrix(values) -> tuple[np.ndarray, np.ndarray]:
    """Varints of int64 ``values`` as rows of a ``[n, k]`` uint8 matrix and the mask of bytes in use."""
    v = np.asarray(values).ravel()
    if v.size and v.min() >= 0 and v.max() < 0x4000:  # the common case, in 16-bit arithmetic
        v = v.astype(np.uint16)
        big = v >= 0x80
        groups = np.empty((v.size, 2), dtype=np.uint8)
        groups[:, 0] = (v & 0x7F) | (big.astype(np.uint16) << 7)
        groups[:, 1] = v >> 7
        present = np.empty(groups.shape, dtype=bool)
        present[:, 0] = True
        present[:, 1] = big
        return groups, present
    u = np.ascontiguousarray(v, dtype=np.int64).ravel().view(np.uint64)
    width = max(int(np.searchsorted(_POW7, u.max(), side="right")), 1) if u.size else 1
    present = u[:, None] >= _POW7[:width]
    more = np.zeros(present.shape, dtype=np.uint8)
    more[:, :-1] = present[:, 1:]
    groups = ((u[:, None] >> _SHIFT7[:width]) & np.uint64(0x7F)).astype(np.uint8) | (more << 7)
    present[:, 0] = True  # zero still takes one byte
    return groups, present


_LOW7 = np.uint64(0x7F)
_MORE = np.uint64(0x80)
_SEVEN = np.uint64(7)


@njit(cache=True)
def _varints(u):
    """Varint bytes of each of the uint64 values ``u`` (int64 two's complement for negatives)."""
    out = np.empty(u.size * 10, dtype=np.uint8)
    j = 0
    for i in range(u.size):
        x = u[i]
        while x >= _MORE:
            out[j] = np.uint8((x & _LOW7) | _MORE)
            j += 1
            x >>= _SEVEN
        out[j] = np.uint8(x)
        j += 1
    return out[:j]


def packed_varints(values) -> bytes:
    """The concatenated varints of int64 ``values`` (a packed repeated field's payload).

    Same bytes as ``b"".join(_varint(int(v)) for v in values)``, negatives included.  One compiled
    loop: a record packs four short arrays, where numpy's per-call costs outweighed the work.
    """
    v = np.ascontiguousarray(values, dtype=np.int64).ravel()
    if v.size == 0:
        return b""
    return _varints(v.view(np.uint64)).tobytes()


def _ld(tag: bytes, payload: bytes) -> bytes:
    """:func:`_field` with the tag byte given (field numbers < 16)."""
    return tag + _length(len(payload)) + payload


def example_packed(packed_features: Mapping[str, bytes]) -> bytes:
    """:func:`example` for features already encoded with :func:`packed_varints`."""
    pieces = []
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
    if width == 0:
        inputs_list = _field(1, _float_feature([])) * steps
    else:
        prefix = np.frombuffer(_float_row_prefix(width), dtype=np.uint8)
        matrix = np.zeros((steps, prefix.size + 4 * width), dtype=np.uint8)
        matrix[:, : prefix.size] = prefix
        at = prefix.size + 4 * np.asarray(cols)
        matrix[rows, at + 2] = 0x80
        matrix[rows, at + 3] = np.where(negative, 0xBF, 0x3F)
        inputs_list = memoryview(matrix.reshape(-1))
    return _sequence_example_joined(inputs_list, _label_entries(labels))


def _label_entries(labels) -> bytes:
    """``b"".join(_field(1, _int64_feature([label])) for label in labels)``, vectorized."""
    labels = np.asarray(labels)
    steps = labels.size
    if not steps:
        return b""
    # FeatureList.feature (1) → Feature.int64_list (3) → Int64List.value (1) = one n-byte varint:
    # 0x0a, n+4, 0x1a, n+2, 0x0a, n, varint.
    if labels.min() >= 0 and labels.max() < 0x80:
        entries = np.empty((steps, 7), dtype=np.uint8)
        entries[:, :6] = (0x0A, 5, 0x1A, 3, 0x0A, 1)
        entries[:, 6] = labels
        return entries.tobytes()
    groups, present = _varint_matrix(labels)
    n = present.sum(axis=1).astype(np.uint8)
    entries = np.empty((steps, 6 + present.shape[1]), dtype=np.uint8)
    entries[:, 0], entries[:, 1], entries[:, 2], entries[:, 3], entries[:, 4], entries[:, 5] = (
        0x0A, n + 4, 0x1A, n + 2, 0x0A, n)
    entries[:, 6:] = groups
    keep = np.ones(entries.shape, dtype=bool)
    keep[:, 6:] = present
    return entries[keep].tobytes()


_INPUTS_KEY, _LABELS_KEY = _field(1, b"inputs"), _field(1, b"labels")


def _sequence_example_joined(inputs_list: bytes, labels_list: bytes) -> bytes:
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
