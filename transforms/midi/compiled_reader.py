"""MIDI bytes → a serialized ``NoteSequence`` equal to note-seq's, without mido, pretty_midi or note-seq.

Why: note-seq's ``midi_to_note_sequence`` builds a mido object per event and a pretty_midi object per
note (~20 µs a note), which made parsing the most expensive stage of ingestion.  Here a compiled loop
(numba) tokenizes the file and pairs notes with pretty_midi's rules, numpy converts ticks to seconds, and
the proto's wire format is written directly (field-number order, proto3 defaults omitted, as upb's
deterministic serializer writes it).

Exactness is by construction, not by tolerance:
- The reader accepts only the well-formed subset of Standard MIDI Files where mido, pretty_midi and
  note-seq neither fail nor take an unusual path.  For anything else (truncation, running status after
  a sysex, system-common messages, data bytes over 127, meta events whose decoding would raise, SMPTE
  time division, empty tracks, ticks past pretty_midi's limit, …) :func:`midi_to_sequence_bytes` returns
  ``None`` and the caller runs note-seq itself, so the output — or the error — is note-seq's own.
- Within that subset, pretty_midi's semantics are reproduced: tempos, time and key signatures come from
  the first track only; ticks become seconds with pretty_midi's float64 arithmetic; a note-off ends every
  open note of that pitch and channel that did not start on the same tick (those stay open, or are
  dropped when nothing else closed); the program is the one current at the note-off; instruments are
  keyed by (program, channel, track) in order of their first closed note and named after the track name
  seen so far; control changes and pitch bends that arrive before a channel's first instrument are
  shared, list and all, with every instrument later created on that channel.
``tests/test_midi_compiled_reader.py`` compares the bytes with note-seq's on generated files built to hit each rule."""

from __future__ import annotations

import struct
import numpy as np
from numba import njit

from melodyflow.transforms.io import proto_fields as F
from melodyflow.transforms.midi.note_pairing import pair_notes
from melodyflow.transforms.midi.smf_tokenizer import KEY_SIG, TEMPO, TIME_SIG, tokenize
from melodyflow.transforms.midi.tick_time import ticks_to_seconds, tempo_map
from melodyflow.transforms.midi.wire_format import encode_messages, put_varint, wire_bytes, wire_varint


_SOURCE_INFO = b"\x6a\x04\x10\x03\x18\x02"  # SourceInfo{encoding_type: MIDI, parser: PRETTY_MIDI}


# Sub-message field tags, in the order of the rows of the values that encode_messages writes.
_TIME_SIGNATURE_FIELDS = np.array([F.TIME_SIGNATURE_TIME, F.TIME_SIGNATURE_NUMERATOR, F.TIME_SIGNATURE_DENOMINATOR])
_KEY_SIGNATURE_FIELDS = np.array([F.KEY_SIGNATURE_TIME, F.KEY_SIGNATURE_KEY, F.KEY_SIGNATURE_MODE])
_TEMPO_FIELDS = np.array([F.TEMPO_TIME, F.TEMPO_QPM])
_NOTE_FIELDS = np.array(
    [F.NOTE_PITCH, F.NOTE_VELOCITY, F.NOTE_START_TIME, F.NOTE_END_TIME, F.NOTE_INSTRUMENT, F.NOTE_PROGRAM, F.NOTE_IS_DRUM]
)
_PITCH_BEND_FIELDS = np.array(
    [F.PITCH_BEND_TIME, F.PITCH_BEND_BEND, F.PITCH_BEND_INSTRUMENT, F.PITCH_BEND_PROGRAM, F.PITCH_BEND_IS_DRUM]
)
_CONTROL_CHANGE_FIELDS = np.array(
    [
        F.CONTROL_CHANGE_TIME,
        F.CONTROL_CHANGE_NUMBER,
        F.CONTROL_CHANGE_VALUE,
        F.CONTROL_CHANGE_INSTRUMENT,
        F.CONTROL_CHANGE_PROGRAM,
        F.CONTROL_CHANGE_IS_DRUM,
    ]
)


@njit(cache=True)
def _list_members(list_ids, events, wanted):
    """Events of each wanted list (lists may repeat), in list then append order, and each one's owner."""
    n_lists = 1
    for x in list_ids:
        n_lists = max(n_lists, x + 1)
    for x in wanted:
        n_lists = max(n_lists, x + 1)
    first = np.zeros(n_lists + 1, np.int64)
    for x in list_ids:
        first[x + 1] += 1
    for i in range(n_lists):
        first[i + 1] += first[i]
    fill = first[:-1].copy()
    grouped = np.empty(len(events), np.int64)
    for k in range(len(events)):
        grouped[fill[list_ids[k]]] = events[k]
        fill[list_ids[k]] += 1
    total = 0
    for w in wanted:
        total += first[w + 1] - first[w]
    out = np.empty(total, np.int64)
    owner = np.empty(total, np.int64)
    pos = 0
    for i in range(len(wanted)):
        for k in range(first[wanted[i]], first[wanted[i] + 1]):
            out[pos] = grouped[k]
            owner[pos] = i
            pos += 1
    return out, owner


# Compiled: builds every NoteSequence field in one call, since crossing into numba per field costs more
# than the work (longer than 80 lines).
@njit(cache=True)
def _sequence_fields(data):
    """NoteSequence fields 4–11 as wire bytes, plus each instrument's name (offset, length or -1).

    ``ok`` is False when the file is outside the reproduced subset.
    """
    none = np.zeros(0, np.int64)
    ok, count, division, _ = tokenize(data, False, none, none, none, none, none, none, none)
    if not ok:
        return False, np.zeros(0, np.uint8), none, none
    track = np.empty(count, np.int64)
    tick = np.empty(count, np.int64)
    kind = np.empty(count, np.int64)
    a = np.empty(count, np.int64)
    b = np.empty(count, np.int64)
    where = np.empty(count, np.int64)  # a channel message's channel; a meta event's payload offset
    length = np.empty(count, np.int64)
    tokenize(data, True, track, tick, kind, a, b, where, length)
    paired = pair_notes(track, tick, kind, a, b, where)

    first_track = track == 0
    tempo_at = np.flatnonzero(first_track & (kind == TEMPO))
    starts, scales, offsets = tempo_map(division, tick[tempo_at], a[tempo_at])

    # 4 ticks_per_quarter; 5 time signatures, 6 key signatures, 7 tempos: from the first track only.
    head = np.empty(11, np.uint8)
    head[0] = F.SEQUENCE_TICKS_PER_QUARTER
    head_len = put_varint(head, 1, division)
    sig = np.flatnonzero(first_track & (kind == TIME_SIG))
    values = np.zeros((3, len(sig)), np.int64)
    values[0] = ticks_to_seconds(tick[sig], starts, scales, offsets).view(np.int64)
    values[1] = a[sig]
    values[2] = np.left_shift(1, b[sig])
    time_sigs = encode_messages(
        F.SEQUENCE_TIME_SIGNATURES, values, _TIME_SIGNATURE_FIELDS, np.array([True, False, False]), len(sig)
    )
    key = np.flatnonzero(first_track & (kind == KEY_SIG))
    values = np.zeros((3, len(key)), np.int64)
    values[0] = ticks_to_seconds(tick[key], starts, scales, offsets).view(np.int64)
    for j in range(len(key)):  # sharps/flats and mode → tonic pitch class (of the relative minor)
        values[1, j] = (7 * a[key[j]] + 9 * b[key[j]]) % 12
        values[2, j] = b[key[j]]
    key_sigs = encode_messages(F.SEQUENCE_KEY_SIGNATURES, values, _KEY_SIGNATURE_FIELDS, np.array([True, False, False]), len(key))
    values = np.zeros((2, len(starts)), np.int64)
    values[0] = offsets.view(np.int64)
    qpm = np.empty(len(starts), np.float64)
    for j in range(len(starts)):
        qpm[j] = 60.0 / (scales[j] * division)
    values[1] = qpm.view(np.int64)
    tempos = encode_messages(F.SEQUENCE_TEMPOS, values, _TEMPO_FIELDS, np.array([True, True]), len(starts))

    # 8 notes, instrument by instrument in creation order (a stable counting sort); 9 the last note-off.
    n_inst = len(paired.inst_program)
    first = np.zeros(n_inst + 1, np.int64)
    for i in paired.note_inst:
        first[i + 1] += 1
    for i in range(n_inst):
        first[i + 1] += first[i]
    order = np.empty(len(paired.note_inst), np.int64)
    for k in range(len(paired.note_inst)):
        order[first[paired.note_inst[k]]] = k
        first[paired.note_inst[k]] += 1
    inst = paired.note_inst[order]
    drum = (paired.inst_channel == 9).astype(np.int64)
    ends = ticks_to_seconds(paired.note_end[order], starts, scales, offsets)
    values = np.zeros((7, len(order)), np.int64)
    values[0] = paired.note_pitch[order]
    values[1] = paired.note_vel[order]
    values[2] = ticks_to_seconds(paired.note_start[order], starts, scales, offsets).view(np.int64)
    values[3] = ends.view(np.int64)
    values[4] = inst
    values[5] = paired.inst_program[inst]
    values[6] = drum[inst]
    notes = encode_messages(
        F.SEQUENCE_NOTES, values, _NOTE_FIELDS, np.array([False, False, True, True, False, False, False]), len(order)
    )
    total = np.zeros(9, np.uint8)
    total_len = 0
    if len(ends) and ends.max() != 0.0:
        bits = np.array([ends.max()]).view(np.int64)[0]
        total[0] = F.SEQUENCE_TOTAL_TIME
        for k in range(8):
            total[1 + k] = (bits >> (8 * k)) & 0xFF
        total_len = 9

    # 10 pitch bends, 11 control changes: each instrument's (possibly shared) list.
    bend, owner = _list_members(paired.pb_list, paired.pb_event, paired.inst_pb)
    values = np.zeros((5, len(bend)), np.int64)
    values[0] = ticks_to_seconds(tick[bend], starts, scales, offsets).view(np.int64)
    values[1] = a[bend]
    values[2] = owner
    values[3] = paired.inst_program[owner]
    values[4] = drum[owner]
    bends = encode_messages(
        F.SEQUENCE_PITCH_BENDS, values, _PITCH_BEND_FIELDS, np.array([True, False, False, False, False]), len(bend)
    )
    control, owner = _list_members(paired.cc_list, paired.cc_event, paired.inst_cc)
    values = np.zeros((6, len(control)), np.int64)
    values[0] = ticks_to_seconds(tick[control], starts, scales, offsets).view(np.int64)
    values[1] = a[control]
    values[2] = b[control]
    values[3] = owner
    values[4] = paired.inst_program[owner]
    values[5] = drum[owner]
    controls = encode_messages(
        F.SEQUENCE_CONTROL_CHANGES,
        values,
        _CONTROL_CHANGE_FIELDS,
        np.array([True, False, False, False, False, False]),
        len(control),
    )

    name_off = np.full(n_inst, -1, np.int64)
    name_len = np.zeros(n_inst, np.int64)
    for i in range(n_inst):
        if paired.inst_name[i] >= 0:
            name_off[i] = where[paired.inst_name[i]]
            name_len[i] = length[paired.inst_name[i]]
    body = np.concatenate((head[:head_len], time_sigs, key_sigs, tempos, notes, total[:total_len], bends, controls))
    return True, body, name_off, name_len


def midi_to_sequence_bytes(data: bytes, *, sequence_id: str = "", filename: str = "", collection: str = "") -> bytes | None:
    """The deterministic serialization of note-seq's NoteSequence for ``data``, or ``None``.

    ``None`` means the file is outside the subset reproduced here; run note-seq on it.  ``sequence_id``,
    ``filename`` and ``collection`` fill fields 1–3, as ingestion sets them on note-seq's result.
    """
    ok, body, name_off, name_len = _sequence_fields(np.frombuffer(data, dtype=np.uint8))
    if not ok:
        return None
    parts = [
        wire_bytes(F.SEQUENCE_ID, sequence_id.encode()),
        wire_bytes(F.SEQUENCE_FILENAME, filename.encode()),
        wire_bytes(F.SEQUENCE_COLLECTION_NAME, collection.encode()),
        body.tobytes(),
        _SOURCE_INFO,
    ]
    for number, (off, size) in enumerate(zip(name_off.tolist(), name_len.tolist())):
        if size > 0:  # 23 instrument_infos: instruments whose track was named when they were created
            name = data[off : off + size].decode("latin-1").encode()
            info = (wire_varint(F.INSTRUMENT_INFO_INSTRUMENT) + wire_varint(number) if number else b"") + wire_bytes(
                F.INSTRUMENT_INFO_NAME, name
            )
            parts.append(wire_varint(F.SEQUENCE_INSTRUMENT_INFOS) + wire_varint(len(info)) + info)
    return b"".join(parts)


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel, so the first file's time limit is not spent on it."""
    track = _file_for_warm_up()
    assert midi_to_sequence_bytes(track) is not None


def _file_for_warm_up() -> bytes:
    body = bytes(
        [0, 0xFF, 0x51, 3, 7, 0xA1, 0x20, 0, 0xB0, 7, 100, 0, 0xE0, 0, 0x40, 0, 0x90, 60, 80, 0x60, 0x80, 60, 0, 0, 0xFF, 0x2F, 0]
    )
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + b"MTrk" + struct.pack(">I", len(body)) + body
