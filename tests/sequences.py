"""Hand-built NoteSequences for melody tests (120 qpm, 4/4: a 16th-note step is 0.125 s, a bar 2 s)."""

from __future__ import annotations

from note_seq.protobuf import music_pb2

STEP = 0.125
BAR = 16


def new_sequence(qpm: float = 120.0, numerator: int = 4, denominator: int = 4, seq_id: str = "/id/test/x"):
    seq = music_pb2.NoteSequence(id=seq_id, ticks_per_quarter=220)
    seq.tempos.add(qpm=qpm, time=0.0)
    seq.time_signatures.add(numerator=numerator, denominator=denominator, time=0.0)
    return seq


def add_notes(seq, instrument: int, notes, is_drum: bool = False, program: int = 0):
    """``notes``: (pitch, start_step, end_step) in 16th-note steps at 120 qpm."""
    for pitch, start, end in notes:
        seq.notes.add(pitch=pitch, velocity=90, start_time=start * STEP, end_time=end * STEP,
                      instrument=instrument, program=program, is_drum=is_drum)
    seq.total_time = max([seq.total_time] + [n.end_time for n in seq.notes])
    return seq


def scale_run(bars: int, pitches=(60, 62, 64, 65, 67, 69), start_step: int = 0, step_len: int = 2):
    """Consecutive notes of ``step_len`` steps cycling through ``pitches``, filling ``bars`` bars."""
    n = bars * BAR // step_len
    return [(pitches[i % len(pitches)], start_step + i * step_len, start_step + (i + 1) * step_len)
            for i in range(n)]
