"""Standard MIDI File bytes → flat event arrays (compiled), accepting only the subset that mido and
pretty_midi read without an unusual path; anything else makes the reader hand the file to note-seq."""

from __future__ import annotations

import math
import numpy as np
from numba import njit


# Event kinds recorded by the tokenizer.
NOTE_OFF, NOTE_ON, PROGRAM, CONTROL, PITCHWHEEL, TRACK_NAME, TEMPO, TIME_SIG, KEY_SIG = range(1, 10)


MAX_TICK = 10_000_000  # pretty_midi.MAX_TICK


MAX_MESSAGE_LENGTH = 1_000_000  # mido's limit on meta/sysex payloads


# mido refuses a time-signature denominator 2**k when ``math.log(2**k, 2)`` is not an integer (float error).
DENOMINATOR_REFUSED = np.array([math.log(2**k, 2) != int(math.log(2**k, 2)) for k in range(256)])


@njit(cache=True)
def _varlen(data, pos, end):
    value = 0
    for _ in range(4):
        if pos >= end:
            return 0, -1
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos
    return 0, -1


@njit(cache=True)
def _known_meta(meta):
    return meta <= 0x07 or meta == 0x09 or meta == 0x20 or meta == 0x21 or meta == 0x2F or meta == 0x51 \
        or meta == 0x54 or meta == 0x58 or meta == 0x59 or meta == 0x7F


# One compiled pass over the file's bytes; a byte-level state machine reads best as one loop (longer
# than 80 lines).
@njit(cache=True)
def tokenize(data, fill, ev_track, ev_tick, ev_kind, ev_a, ev_b, ev_off, ev_len):
    """Walk the file as mido does; record the events pretty_midi uses.

    Returns ``(ok, events_recorded, division, tracks)``; ``ok`` is False when the file is outside the
    subset this module reproduces.  Called twice: once to count (``fill`` False), once to fill arrays.
    """
    n = data.shape[0]
    if n < 14 or data[0] != 77 or data[1] != 84 or data[2] != 104 or data[3] != 100:
        return False, 0, 0, 0
    header = (data[4] << 24) | (data[5] << 16) | (data[6] << 8) | data[7]
    if header < 6 or 8 + header > n:
        return False, 0, 0, 0
    tracks = (data[10] << 8) | data[11]
    division = (data[12] << 8) | data[13]
    if tracks == 0 or tracks >= 0x8000 or division == 0 or division >= 0x8000:
        return False, 0, 0, 0
    pos = 8 + header
    count = 0
    max_tick = 0
    for track in range(tracks):
        if pos + 8 > n or data[pos] != 77 or data[pos + 1] != 84 or data[pos + 2] != 114 or data[pos + 3] != 107:
            return False, 0, 0, 0
        size = (data[pos + 4] << 24) | (data[pos + 5] << 16) | (data[pos + 6] << 8) | data[pos + 7]
        pos += 8
        end = pos + size
        if size == 0 or end > n:
            return False, 0, 0, 0
        tick = 0
        last_status = 0
        while pos < end:
            delta, pos = _varlen(data, pos, end)
            if pos < 0 or pos >= end:
                return False, 0, 0, 0
            byte = data[pos]
            if byte < 0x80:
                if last_status == 0 or last_status >= 0xF0:
                    return False, 0, 0, 0
                status = last_status
            else:
                status = byte
                pos += 1
                if status != 0xFF:
                    last_status = status
            kind = 0
            a = 0
            b = 0
            off = 0
            length = 0
            if status == 0xFF:
                if pos >= end:
                    return False, 0, 0, 0
                meta = data[pos]
                if _known_meta(meta):  # mido drops the delta time of meta types it does not know
                    tick += delta
                length, pos = _varlen(data, pos + 1, end)
                if pos < 0 or length > MAX_MESSAGE_LENGTH or pos + length > end:
                    return False, 0, 0, 0
                off = pos
                pos += length
                if (meta == 0x00 and length == 1) or (meta == 0x20 and length == 0):
                    return False, 0, 0, 0
                if meta == 0x54:  # SMPTE offsets: rare, and mido checks each field
                    return False, 0, 0, 0
                if meta == 0x03:
                    kind = TRACK_NAME
                elif meta == 0x51:
                    if length < 3:
                        return False, 0, 0, 0
                    kind = TEMPO
                    a = (data[off] << 16) | (data[off + 1] << 8) | data[off + 2]
                    if a == 0 and track == 0:
                        return False, 0, 0, 0
                elif meta == 0x58:
                    if length < 4:
                        return False, 0, 0, 0
                    kind = TIME_SIG
                    a = data[off]
                    b = data[off + 1]
                    if DENOMINATOR_REFUSED[b] or (track == 0 and (a == 0 or b > 30)):
                        return False, 0, 0, 0
                elif meta == 0x59:
                    if length < 2:
                        return False, 0, 0, 0
                    kind = KEY_SIG
                    a = data[off] if data[off] < 128 else data[off] - 256
                    b = data[off + 1]
                    if a < -7 or a > 7 or b > 1:
                        return False, 0, 0, 0
            elif status == 0xF0 or status == 0xF7:
                tick += delta
                length, pos = _varlen(data, pos, end)
                if pos < 0 or length > MAX_MESSAGE_LENGTH or pos + length > end:
                    return False, 0, 0, 0
                lo, hi = pos, pos + length  # mido strips one leading F0 and one trailing F7, checks the rest
                if lo < hi and data[lo] == 0xF0:
                    lo += 1
                if lo < hi and data[hi - 1] == 0xF7:
                    hi -= 1
                for k in range(lo, hi):
                    if data[k] > 127:
                        return False, 0, 0, 0
                pos += length
            elif status > 0xF0:
                return False, 0, 0, 0
            else:
                tick += delta
                high = status & 0xF0
                width = 1 if (high == 0xC0 or high == 0xD0) else 2
                if pos + width > end:
                    return False, 0, 0, 0
                a = data[pos]
                if width == 2:
                    b = data[pos + 1]
                if a > 127 or b > 127:
                    return False, 0, 0, 0
                pos += width
                if high == 0x90:
                    kind = NOTE_ON if b > 0 else NOTE_OFF
                elif high == 0x80:
                    kind = NOTE_OFF
                elif high == 0xC0:
                    kind = PROGRAM
                elif high == 0xB0:
                    kind = CONTROL
                elif high == 0xE0:
                    kind = PITCHWHEEL
                    a = a + (b << 7) - 8192
                off = status & 0x0F  # the channel
            if tick > max_tick:
                max_tick = tick
            if kind != 0:
                if fill:
                    ev_track[count] = track
                    ev_tick[count] = tick
                    ev_kind[count] = kind
                    ev_a[count] = a
                    ev_b[count] = b
                    ev_off[count] = off
                    ev_len[count] = length
                count += 1
    if max_tick + 1 > MAX_TICK:
        return False, 0, 0, 0
    return True, count, division, tracks
