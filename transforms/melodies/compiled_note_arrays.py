"""A NoteSequence's notes as parallel arrays, decoded straight from its wire bytes (compiled): upb's
per-attribute access costs more than the whole melody pipeline that follows."""

from __future__ import annotations

import operator
import numpy as np
from numba import njit


_NOTE_FIELDS = operator.attrgetter("start_time", "end_time", "pitch", "velocity", "instrument", "is_drum")


def notes_by_attribute(notes):
    rows = list(map(_NOTE_FIELDS, notes))
    if not rows:
        empty_i = np.zeros(0, np.int64)
        return np.zeros(0), np.zeros(0), empty_i, empty_i, empty_i, np.zeros(0, bool)
    table = np.array(rows, dtype=np.float64)
    # int32 fields are exact in float64.
    return (table[:, 0].copy(), table[:, 1].copy(), table[:, 2].astype(np.int64),
            table[:, 3].astype(np.int64), table[:, 4].astype(np.int64), table[:, 5] != 0)


@njit(cache=True)
def _varint(data, pos, stop):
    value = np.uint64(0)
    shift = np.uint64(0)
    for _ in range(10):
        if pos >= stop:
            return value, -1
        byte = data[pos]
        pos += 1
        value |= np.uint64(byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += np.uint64(7)
    return value, -1


# One compiled pass over the wire bytes; a wire-format switch reads best as one loop (longer than 80 lines).
@njit(cache=True)
def _decode_notes(data, start, end, pitch, velocity, instrument, drum):
    """Fills the arrays from a serialized NoteSequence; returns the note count, or -1 when unsure.

    Only wire-format facts are used (any field order, unknown fields skipped, last value wins), and any
    int32 outside 0..2**31-1 or malformed record gives -1, so the caller reads attributes instead.
    """
    size = len(data)
    capacity = len(start)
    scratch = np.empty(1, np.uint64)
    pos = 0
    count = 0
    while pos < size:
        tag, pos = _varint(data, pos, size)
        if pos < 0:
            return -1
        wire = tag & np.uint64(7)
        if tag == np.uint64(0x42):
            length, pos = _varint(data, pos, size)
            if pos < 0 or length > np.uint64(size - pos) or count >= capacity:
                return -1
            stop = pos + np.int64(length)
            note_start = 0.0
            note_end = 0.0
            note_pitch = 0
            note_velocity = 0
            note_instrument = 0
            note_drum = False
            while pos < stop:
                if data[pos] < 0x80 and pos + 1 < stop and data[pos + 1] < 0x80:
                    # One-byte tag and value, the usual case: pitch, velocity, instrument, program, is_drum.
                    single = data[pos]
                    if single == 0x08:
                        note_pitch = data[pos + 1]
                        pos += 2
                        continue
                    if single == 0x10:
                        note_velocity = data[pos + 1]
                        pos += 2
                        continue
                    if single == 0x38:
                        note_instrument = data[pos + 1]
                        pos += 2
                        continue
                    if single == 0x40:
                        pos += 2
                        continue
                    if single == 0x48:
                        note_drum = data[pos + 1] != 0
                        pos += 2
                        continue
                ftag, pos = _varint(data, pos, stop)
                if pos < 0:
                    return -1
                field = ftag >> np.uint64(3)
                fwire = ftag & np.uint64(7)
                if fwire == 0:
                    value, pos = _varint(data, pos, stop)
                    if pos < 0:
                        return -1
                    if field == 1 or field == 2 or field == 7:
                        if value > np.uint64(0x7FFFFFFF):
                            return -1
                        if field == 1:
                            note_pitch = np.int64(value)
                        elif field == 2:
                            note_velocity = np.int64(value)
                        else:
                            note_instrument = np.int64(value)
                    elif field == 9:
                        note_drum = value != np.uint64(0)
                    elif field == 3 or field == 4:
                        return -1
                elif fwire == 1:
                    if pos + 8 > stop:
                        return -1
                    if field == 3 or field == 4:
                        bits = np.uint64(0)
                        for k in range(8):
                            bits |= np.uint64(data[pos + k]) << np.uint64(8 * k)
                        scratch[0] = bits
                        if field == 3:
                            note_start = scratch.view(np.float64)[0]
                        else:
                            note_end = scratch.view(np.float64)[0]
                    elif field == 1 or field == 2 or field == 7 or field == 9:
                        return -1
                    pos += 8
                elif fwire == 2:
                    if field == 1 or field == 2 or field == 3 or field == 4 or field == 7 or field == 9:
                        return -1
                    length, pos = _varint(data, pos, stop)
                    if pos < 0 or length > np.uint64(stop - pos):
                        return -1
                    pos += np.int64(length)
                elif fwire == 5:
                    if field == 1 or field == 2 or field == 3 or field == 4 or field == 7 or field == 9:
                        return -1
                    pos += 4
                else:
                    return -1
            if pos != stop:
                return -1
            start[count] = note_start
            end[count] = note_end
            pitch[count] = note_pitch
            velocity[count] = note_velocity
            instrument[count] = note_instrument
            drum[count] = note_drum
            count += 1
        elif wire == 0:
            _, pos = _varint(data, pos, size)
            if pos < 0:
                return -1
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(data, pos, size)
            if pos < 0 or length > np.uint64(size - pos):
                return -1
            pos += np.int64(length)
        elif wire == 5:
            pos += 4
        else:
            return -1
        if pos > size:
            return -1
    return count


def notes_from_wire(data: bytes, count: int):
    start = np.empty(count)
    end = np.empty(count)
    pitch = np.empty(count, np.int64)
    velocity = np.empty(count, np.int64)
    instrument = np.empty(count, np.int64)
    drum = np.empty(count, np.bool_)
    found = _decode_notes(np.frombuffer(data, np.uint8), start, end, pitch, velocity, instrument, drum)
    if found != count:
        return None
    return start, end, pitch, velocity, instrument, drum


def read_notes(sequence, serialized=None):
    count = len(sequence.notes)
    if count:
        decoded = notes_from_wire(sequence.SerializeToString() if serialized is None else serialized, count)
        if decoded is not None:
            return decoded
    return notes_by_attribute(sequence.notes)


@njit(cache=True)
def note_flags(start, end, pitch, drum):
    """(every note a drum, every time finite, a drum pitch outside 0..127)."""
    all_drums = True
    finite = True
    wild_drum = False
    for i in range(len(start)):
        if drum[i]:
            if pitch[i] < 0 or pitch[i] > 127:
                wild_drum = True
        else:
            all_drums = False
        if not (np.isfinite(start[i]) and np.isfinite(end[i])):
            finite = False
    return all_drums, finite, wild_drum
