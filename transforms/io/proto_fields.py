"""Protobuf tags of the note-seq message fields that the compiled MIDI reader writes and the compiled
melody extractor reads.

A tag is ``(field number << 3) | wire type``.  Numba freezes module globals into compiled code, so plain
constants serve there without importing note-seq; ``tests/test_proto_fields.py`` checks every number and
wire type against ``note_seq.protobuf.music_pb2``'s descriptors.
"""

from __future__ import annotations

VARINT, FIXED64, LEN = 0, 1, 2


def tag(number: int, wire_type: int) -> int:
    return (number << 3) | wire_type


# NoteSequence
SEQUENCE_ID = 1
SEQUENCE_FILENAME = 2
SEQUENCE_COLLECTION_NAME = 3
SEQUENCE_TICKS_PER_QUARTER = tag(4, VARINT)
SEQUENCE_TIME_SIGNATURES = tag(5, LEN)
SEQUENCE_KEY_SIGNATURES = tag(6, LEN)
SEQUENCE_TEMPOS = tag(7, LEN)
SEQUENCE_NOTES = tag(8, LEN)
SEQUENCE_TOTAL_TIME = tag(9, FIXED64)
SEQUENCE_PITCH_BENDS = tag(10, LEN)
SEQUENCE_CONTROL_CHANGES = tag(11, LEN)
SEQUENCE_INSTRUMENT_INFOS = tag(23, LEN)

# TimeSignature {time, numerator, denominator}; KeySignature {time, key, mode} share the same tags.
TIME_SIGNATURE_TIME = tag(1, FIXED64)
TIME_SIGNATURE_NUMERATOR = tag(2, VARINT)
TIME_SIGNATURE_DENOMINATOR = tag(3, VARINT)
KEY_SIGNATURE_TIME = tag(1, FIXED64)
KEY_SIGNATURE_KEY = tag(2, VARINT)
KEY_SIGNATURE_MODE = tag(3, VARINT)

# Tempo {time, qpm}
TEMPO_TIME = tag(1, FIXED64)
TEMPO_QPM = tag(2, FIXED64)

# Note
NOTE_PITCH = tag(1, VARINT)
NOTE_VELOCITY = tag(2, VARINT)
NOTE_START_TIME = tag(3, FIXED64)
NOTE_END_TIME = tag(4, FIXED64)
NOTE_INSTRUMENT = tag(7, VARINT)
NOTE_PROGRAM = tag(8, VARINT)
NOTE_IS_DRUM = tag(9, VARINT)

# PitchBend {time, bend, instrument, program, is_drum}
PITCH_BEND_TIME = tag(1, FIXED64)
PITCH_BEND_BEND = tag(2, VARINT)
PITCH_BEND_INSTRUMENT = tag(3, VARINT)
PITCH_BEND_PROGRAM = tag(4, VARINT)
PITCH_BEND_IS_DRUM = tag(5, VARINT)

# ControlChange {time, control_number, control_value, instrument, program, is_drum}
CONTROL_CHANGE_TIME = tag(1, FIXED64)
CONTROL_CHANGE_NUMBER = tag(2, VARINT)
CONTROL_CHANGE_VALUE = tag(3, VARINT)
CONTROL_CHANGE_INSTRUMENT = tag(4, VARINT)
CONTROL_CHANGE_PROGRAM = tag(5, VARINT)
CONTROL_CHANGE_IS_DRUM = tag(6, VARINT)

# InstrumentInfo {instrument, name}
INSTRUMENT_INFO_INSTRUMENT = tag(1, VARINT)
INSTRUMENT_INFO_NAME = 2

# (message, field) → constant, for the descriptor check.
CHECKED = {
    ("NoteSequence", "id"): (SEQUENCE_ID, None),
    ("NoteSequence", "filename"): (SEQUENCE_FILENAME, None),
    ("NoteSequence", "collection_name"): (SEQUENCE_COLLECTION_NAME, None),
    ("NoteSequence", "ticks_per_quarter"): SEQUENCE_TICKS_PER_QUARTER,
    ("NoteSequence", "time_signatures"): SEQUENCE_TIME_SIGNATURES,
    ("NoteSequence", "key_signatures"): SEQUENCE_KEY_SIGNATURES,
    ("NoteSequence", "tempos"): SEQUENCE_TEMPOS,
    ("NoteSequence", "notes"): SEQUENCE_NOTES,
    ("NoteSequence", "total_time"): SEQUENCE_TOTAL_TIME,
    ("NoteSequence", "pitch_bends"): SEQUENCE_PITCH_BENDS,
    ("NoteSequence", "control_changes"): SEQUENCE_CONTROL_CHANGES,
    ("NoteSequence", "instrument_infos"): SEQUENCE_INSTRUMENT_INFOS,
    ("NoteSequence.TimeSignature", "time"): TIME_SIGNATURE_TIME,
    ("NoteSequence.TimeSignature", "numerator"): TIME_SIGNATURE_NUMERATOR,
    ("NoteSequence.TimeSignature", "denominator"): TIME_SIGNATURE_DENOMINATOR,
    ("NoteSequence.KeySignature", "time"): KEY_SIGNATURE_TIME,
    ("NoteSequence.KeySignature", "key"): KEY_SIGNATURE_KEY,
    ("NoteSequence.KeySignature", "mode"): KEY_SIGNATURE_MODE,
    ("NoteSequence.Tempo", "time"): TEMPO_TIME,
    ("NoteSequence.Tempo", "qpm"): TEMPO_QPM,
    ("NoteSequence.Note", "pitch"): NOTE_PITCH,
    ("NoteSequence.Note", "velocity"): NOTE_VELOCITY,
    ("NoteSequence.Note", "start_time"): NOTE_START_TIME,
    ("NoteSequence.Note", "end_time"): NOTE_END_TIME,
    ("NoteSequence.Note", "instrument"): NOTE_INSTRUMENT,
    ("NoteSequence.Note", "program"): NOTE_PROGRAM,
    ("NoteSequence.Note", "is_drum"): NOTE_IS_DRUM,
    ("NoteSequence.PitchBend", "time"): PITCH_BEND_TIME,
    ("NoteSequence.PitchBend", "bend"): PITCH_BEND_BEND,
    ("NoteSequence.PitchBend", "instrument"): PITCH_BEND_INSTRUMENT,
    ("NoteSequence.PitchBend", "program"): PITCH_BEND_PROGRAM,
    ("NoteSequence.PitchBend", "is_drum"): PITCH_BEND_IS_DRUM,
    ("NoteSequence.ControlChange", "time"): CONTROL_CHANGE_TIME,
    ("NoteSequence.ControlChange", "control_number"): CONTROL_CHANGE_NUMBER,
    ("NoteSequence.ControlChange", "control_value"): CONTROL_CHANGE_VALUE,
    ("NoteSequence.ControlChange", "instrument"): CONTROL_CHANGE_INSTRUMENT,
    ("NoteSequence.ControlChange", "program"): CONTROL_CHANGE_PROGRAM,
    ("NoteSequence.ControlChange", "is_drum"): CONTROL_CHANGE_IS_DRUM,
    ("NoteSequence.InstrumentInfo", "instrument"): INSTRUMENT_INFO_INSTRUMENT,
    ("NoteSequence.InstrumentInfo", "name"): (INSTRUMENT_INFO_NAME, None),
}
