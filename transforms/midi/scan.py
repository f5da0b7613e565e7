"""A cheap structural scan of Standard MIDI File bytes, run before the expensive parse.

The full parse (note-seq → pretty_midi → mido) costs ~20 µs per note and holds every event in memory;
counting note-ons over the raw bytes costs a fraction of that and stops as soon as a limit is passed, so a
file with millions of notes is refused before it can eat a worker's time or memory.
"""

from __future__ import annotations

# Data bytes that follow each channel-message status nibble.
_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
_MIN_BYTES_PER_NOTE = 3  # a note-on needs at least a one-byte delta and two data bytes (running status)


def _varlen(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = 0
    for _ in range(4):
        if pos >= end:
            raise ValueError("truncated variable-length number")
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos
    raise ValueError("variable-length number longer than 4 bytes")


def note_on_upper_bound(data: bytes) -> int:
    """An upper bound on the number of notes, from the size alone."""
    return len(data) // _MIN_BYTES_PER_NOTE


def count_note_ons(data: bytes, stop_after: int) -> int | None:
    """Note-on events (velocity > 0) in a Standard MIDI File, counting no further than ``stop_after + 1``.

    Returns None when the bytes are not a well-formed SMF: the parser then decides, and reports, what is
    wrong with them.  Files whose size alone proves they are under the limit are not scanned.
    """
    if note_on_upper_bound(data) <= stop_after:
        return None
    return scan_note_ons(data, stop_after)


def scan_note_ons(data: bytes, stop_after: int) -> int | None:
    """The scan itself (see ``count_note_ons``), without the size shortcut."""
    if data[:4] != b"MThd" or len(data) < 14:
        return None
    count = 0
    pos = 8 + int.from_bytes(data[4:8], "big")
    try:
        while pos + 8 <= len(data):
            kind, length = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "big")
            pos += 8
            end = min(len(data), pos + length)
            if kind != b"MTrk":
                pos = end
                continue
            status = 0
            while pos < end:
                _, pos = _varlen(data, pos, end)
                if pos >= end:
                    break
                byte = data[pos]
                if byte & 0x80:
                    status = byte
                    pos += 1
                if status == 0xFF:  # meta: type, length, payload
                    pos += 1
                    size, pos = _varlen(data, pos, end)
                    pos += size
                    status = 0
                elif status in (0xF0, 0xF7):  # sysex
                    size, pos = _varlen(data, pos, end)
                    pos += size
                    status = 0
                elif status & 0x80:
                    kind_nibble = status & 0xF0
                    if kind_nibble == 0x90 and pos + 1 < end and data[pos + 1] > 0:
                        count += 1
                        if count > stop_after:
                            return count
                    pos += _DATA_BYTES.get(kind_nibble, 0)
                else:
                    return None  # data byte without a running status
            pos = end
    except ValueError:
        return None
    return count
