"""Protobuf wire-format writers for the NoteSequence fields the compiled reader emits."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def put_varint(out, pos, value):
    v = np.uint64(value) if value >= 0 else np.uint64(value + (1 << 63)) | np.uint64(1 << 63)
    while v >= 0x80:
        out[pos] = np.uint8((v & np.uint64(0x7F)) | np.uint64(0x80))
        v >>= np.uint64(7)
        pos += 1
    out[pos] = np.uint8(v)
    return pos + 1


@njit(cache=True)
def varint_size(value):
    if value < 0:
        return 10
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


@njit(cache=True)
def encode_messages(tag, values, tags, doubles, n_items):
    """Repeated submessages under ``tag``: one row of ``values`` per field, in field-number order.

    ``tags`` holds each field's tag byte; rows flagged in ``doubles`` hold float64 bit patterns (written
    as fixed64), the others int32/bool values (varints, negatives in ten bytes).  Zeros are omitted, as
    proto3 does (a double's zero here is +0.0, the only zero pretty_midi's times can take).
    """
    m = values.shape[0]
    sizes = np.zeros(n_items, np.int64)
    total = 0
    for j in range(n_items):
        size = 0
        for r in range(m):
            if values[r, j] != 0:
                size += 9 if doubles[r] else 1 + varint_size(values[r, j])
        sizes[j] = size
        total += 1 + varint_size(size) + size
    out = np.empty(total, np.uint8)
    pos = 0
    for j in range(n_items):
        out[pos] = tag
        pos = put_varint(out, pos + 1, sizes[j])
        for r in range(m):
            value = values[r, j]
            if value != 0:
                out[pos] = tags[r]
                if doubles[r]:
                    for k in range(8):
                        out[pos + 1 + k] = np.uint8((value >> (8 * k)) & 0xFF)
                    pos += 9
                else:
                    pos = put_varint(out, pos + 1, value)
    return out


def wire_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def wire_bytes(field: int, payload: bytes) -> bytes:
    return wire_varint((field << 3) | 2) + wire_varint(len(payload)) + payload if payload else b""
