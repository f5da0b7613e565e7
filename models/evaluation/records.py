"""Read melody dataset records back without TensorFlow: the labels and the first step's input.

Both record formats of ``transforms/melodies/encoding.py`` are read from the protobuf wire format
directly (TensorFlow's ``Example`` protos are not available without importing it, which costs seconds):

- ``compact``: ``Example.features`` (1) → map entries (1) → ``Feature.int64_list`` (3) → packed values
  (1) for ``labels``, ``input_lengths`` and ``input_codes``;
- ``sequence-example``: ``SequenceExample.feature_lists`` (2) → map entries (1) → ``FeatureList`` of
  ``Feature``s: ``labels`` one int64 per step, ``inputs`` one float list per step (only the first is read).

Unpacked repeated fields (wire type 0 or 5) are accepted too, so records written by other protobuf
writers read the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


class RecordError(ValueError):
    """A dataset record is not a melody example in the expected format."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise RecordError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)``: an int for varints, a memoryview for everything else."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise RecordError("truncated field")
            yield number, wire, buf[pos: pos + size]
            pos += size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, wire, buf[pos: pos + size]
            pos += size
        else:
            raise RecordError(f"unsupported wire type {wire}")


def packed_varints(payload) -> np.ndarray:
    """Decode a packed run of non-negative varints with array operations."""
    b = np.frombuffer(payload, dtype=np.uint8)
    if not b.size or b.max() < 0x80:
        return b.astype(np.int64)
    ends = np.flatnonzero(b < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    shift = (np.arange(b.size) - np.repeat(starts, ends - starts + 1)) * 7
    return np.add.reduceat((b & 0x7F).astype(np.int64) << shift, starts)


def _int64_list(feature: memoryview) -> np.ndarray:
    """``Feature`` → its ``int64_list`` values."""
    out: list[np.ndarray] = []
    for number, _, value in fields(feature):
        if number == 3:
            for n, wire, v in fields(value):
                if n == 1:
                    out.append(packed_varints(v) if wire == 2 else np.array([v], dtype=np.int64))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _float_list(feature: memoryview) -> np.ndarray:
    out: list[np.ndarray] = []
    for number, _, value in fields(feature):
        if number == 2:
            for n, _, v in fields(value):
                if n == 1:
                    out.append(np.frombuffer(v, dtype="<f4"))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _map(container: memoryview, field_number: int) -> dict[str, memoryview]:
    """A ``map<string, message>`` field of ``container`` as a dict."""
    entries = {}
    for number, _, entry in fields(container):
        if number != field_number:
            continue
        key, value = None, memoryview(b"")
        for n, _, v in fields(entry):
            if n == 1:
                key = bytes(v).decode("utf-8")
            elif n == 2:
                value = v
        if key is not None:
            entries[key] = value
    return entries


def _submessage(buf: memoryview, field_number: int) -> memoryview:
    for number, wire, value in fields(buf):
        if number == field_number and wire == 2:
            return value
    return memoryview(b"")


def read_compact(record: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, first-step non-zero input columns)`` of a compact ``Example``."""
    features = _map(_submessage(memoryview(record), 1), 1)
    if "labels" not in features:
        raise RecordError("a compact record without labels")
    labels = _int64_list(features["labels"])
    lengths = _int64_list(features.get("input_lengths", memoryview(b"")))
    codes = _int64_list(features.get("input_codes", memoryview(b"")))
    first = codes[: int(lengths[0])] if lengths.size else codes[:0]
    return labels, np.sort(first[first % 2 == 0] // 2)  # code = 2 * column + (1 if the value is -1)


def read_sequence_example(record: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, first-step columns equal to 1)`` of a dense ``SequenceExample``."""
    lists = _map(_submessage(memoryview(record), 2), 1)
    if "labels" not in lists:
        raise RecordError("a sequence example without labels")
    first_input = next((f for n, _, f in fields(lists.get("inputs", memoryview(b""))) if n == 1), None)
    row = _float_list(first_input) if first_input is not None else np.zeros(0, np.float32)
    return _label_list(lists["labels"]), np.flatnonzero(row == 1.0)


def _label_list(feature_list: memoryview) -> np.ndarray:
    """One int64 per ``Feature`` of a ``FeatureList``.

    Fast path: in the usual layout every byte belongs to a varint (tags, lengths and the packed value),
    seven per label: ``0x0a, n+4, 0x1a, n+2, 0x0a, n, value``; anything else is walked field by field.
    """
    words = packed_varints(feature_list)
    if words.size % 7 == 0:
        rows = words.reshape(-1, 7)
        if (rows[:, 0] == 0x0A).all() and (rows[:, 2] == 0x1A).all() and (rows[:, 4] == 0x0A).all() and (
                rows[:, 1] == rows[:, 5] + 4).all():
            return rows[:, 6]
    labels = [_int64_list(f) for n, _, f in fields(feature_list) if n == 1]
    return np.concatenate(labels) if labels else np.zeros(0, np.int64)


READERS = {"compact": read_compact, "sequence-example": read_sequence_example}
