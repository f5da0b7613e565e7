"""Primer windows: whole bars of a longer file, cut on its own bar lines, melody chosen within them."""

from __future__ import annotations

import io

import note_seq
import pytest
from note_seq.protobuf import music_pb2

from melodyflow.models.generation.primers import PrimerError, PrimerWindow, excerpt_midi, primer_from_midi

QPM = 120.0
BEAT = 60.0 / QPM
BAR = 3 * BEAT  # 3/4: a bar is 1.5 s, 12 sixteenth steps
BARS = 8


def _song() -> bytes:
    """3/4 at 120 qpm. Bar 1 is silent; in bars 2-8 the lead (instrument 0) plays three quarter notes of
    pitch 59 + bar; in bars 5-6 a busier line (instrument 1, six eighths a bar) joins it."""
    seq = music_pb2.NoteSequence(ticks_per_quarter=480)
    seq.tempos.add(qpm=QPM)
    seq.time_signatures.add(numerator=3, denominator=4)
    for bar in range(2, BARS + 1):
        for beat in range(3):
            start = (bar - 1) * BAR + beat * BEAT
            seq.notes.add(pitch=59 + bar, velocity=80, start_time=start, end_time=start + BEAT, instrument=0)
        if bar in (5, 6):
            for eighth in range(6):
                start = (bar - 1) * BAR + eighth * BEAT / 2
                seq.notes.add(pitch=72 + eighth, velocity=80, start_time=start, end_time=start + BEAT / 2,
                              instrument=1, program=1)
    seq.total_time = BARS * BAR
    buf = io.BytesIO()
    note_seq.note_sequence_to_pretty_midi(seq).write(buf)
    return buf.getvalue()


SONG = _song()


def _onsets(melody) -> list[int]:
    return [e for e in melody if e >= 0]


def test_a_window_is_whole_bars_of_the_files_own_meter():
    primer = primer_from_midi(SONG, window=PrimerWindow(bars=2, start_bar=3))
    assert primer.melody.steps_per_bar == 12
    assert list(primer.melody) == [62, -2, -2, -2] * 3 + [63, -2, -2, -2] * 3
    assert primer.instrument == 0 and primer.qpm == QPM


def test_without_a_start_bar_the_window_begins_at_the_first_notes_bar():
    primer = primer_from_midi(SONG, window=PrimerWindow(bars=1))
    assert _onsets(primer.melody) == [61, 61, 61]


def test_the_melody_is_chosen_within_the_window():
    assert primer_from_midi(SONG).instrument == 0  # the whole file: the lead has the most note-ons
    busy = primer_from_midi(SONG, window=PrimerWindow(bars=2, start_bar=5))
    assert busy.instrument == 1 and _onsets(busy.melody) == [72, 73, 74, 75, 76, 77] * 2


def test_a_window_outside_the_music_is_a_clear_error():
    with pytest.raises(PrimerError, match="past the end of the primer, which has 8 bar"):
        primer_from_midi(SONG, window=PrimerWindow(bars=2, start_bar=9))
    with pytest.raises(PrimerError, match="bars 1-1 of the primer have no pitched notes"):
        primer_from_midi(SONG, window=PrimerWindow(bars=1, start_bar=1))


def test_window_settings_are_checked():
    for bars, start in ((0, None), (2, 0), (-1, 3)):
        with pytest.raises(ValueError, match="at least 1"):
            PrimerWindow(bars=bars, start_bar=start)
    assert PrimerWindow(2).describe() == "2 bar(s) from the first note's bar"
    assert PrimerWindow(4, 7).describe() == "4 bar(s) from bar 7"


def test_excerpt_midi_writes_the_window_starting_at_zero():
    excerpt = note_seq.midi_to_note_sequence(excerpt_midi(SONG, PrimerWindow(bars=2, start_bar=3)))
    assert sorted({n.pitch for n in excerpt.notes}) == [62, 63]
    assert min(n.start_time for n in excerpt.notes) == pytest.approx(0.0)
    assert max(n.end_time for n in excerpt.notes) == pytest.approx(2 * BAR)
    assert excerpt.time_signatures[0].numerator == 3 and excerpt.tempos[0].qpm == pytest.approx(QPM)
