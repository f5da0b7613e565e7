"""Magenta's melody rules on hand-built sequences: every discard reason, polyphony, drums, time changes."""

from __future__ import annotations

import pytest

from sequences import BAR, STEP, add_notes, new_sequence, scale_run
from melodyflow.transforms.melodies.extraction_reference import MelodySettings, parse_transpose_range, sequence_to_melodies

DEFAULT = MelodySettings()


def _run(seq, settings=DEFAULT):
    melodies, stats, histogram = sequence_to_melodies(seq, settings)
    return melodies, {k: v for k, v in stats.items() if v}, dict(histogram)


def test_eight_bar_melody_is_extracted_whole():
    seq = add_notes(new_sequence(), 0, scale_run(8))
    melodies, stats, hist = _run(seq)
    assert len(melodies) == 1
    melody = melodies[0].melody
    assert len(melody) == 8 * BAR and melody.steps_per_bar == BAR
    assert list(melody)[:4] == [60, -2, 62, -2]
    assert stats == {"sequences_read": 1, "transpositions_generated": 1, "melodies_extracted": 1}
    assert hist == {"[8,10)": 1}


def test_too_short_and_too_few_pitches_are_discarded_and_counted():
    short = add_notes(new_sequence(), 0, scale_run(6))
    _, stats, _ = _run(short)
    assert stats["melodies_discarded_too_short"] == 1 and stats["sequences_without_melodies"] == 1
    dull = add_notes(new_sequence(), 0, scale_run(8, pitches=(60, 62, 64, 65)))  # 4 unique < 5
    _, stats, _ = _run(dull)
    assert stats["melodies_discarded_too_few_pitches"] == 1
    # Unique pitches are counted with octave equivalence: 72 and 74 repeat 60 and 62.
    octaves = add_notes(new_sequence(), 0, scale_run(8, pitches=(60, 62, 64, 72, 74)))
    assert _run(octaves)[1]["melodies_discarded_too_few_pitches"] == 1
    five = add_notes(new_sequence(), 0, scale_run(8, pitches=(60, 62, 64, 65, 67)))
    assert len(_run(five)[0]) == 1


def test_long_melody_is_truncated_to_512_steps():
    seq = add_notes(new_sequence(), 0, scale_run(40))
    melodies, stats, hist = _run(seq)
    assert [len(m.melody) for m in melodies] == [512]
    assert stats["melodies_truncated"] == 1 and hist == {"[30,40)": 1}


def test_polyphonic_track_is_discarded_unless_kept_with_highest_note():
    notes = scale_run(8) + [(72, 0, 2)]  # a second note starting with the first: a chord
    seq = add_notes(new_sequence(), 0, notes)
    melodies, stats, _ = _run(seq)
    assert melodies == [] and stats["polyphonic_tracks_discarded"] == 1
    kept, stats, _ = _run(seq, MelodySettings(ignore_polyphonic_notes=True))
    assert len(kept) == 1 and list(kept[0].melody)[0] == 72
    assert "polyphonic_tracks_discarded" not in stats


def test_each_instrument_is_searched_and_drums_are_filtered():
    seq = add_notes(new_sequence(), 0, scale_run(8))
    add_notes(seq, 1, scale_run(8, pitches=(48, 50, 52, 53, 55)))
    add_notes(seq, 9, scale_run(8, pitches=(36, 38, 42, 46, 49)), is_drum=True)
    melodies, stats, _ = _run(seq)
    assert sorted(m.instrument for m in melodies) == [0, 1]
    drums = add_notes(new_sequence(), 9, scale_run(8, pitches=(36, 38, 42, 46, 49)), is_drum=True)
    melodies, stats, _ = _run(drums)
    assert melodies == [] and stats["sequences_drums_only"] == 1
    assert len(_run(drums, MelodySettings(filter_drums=False))[0]) == 1


def test_a_gap_of_a_bar_splits_a_track_into_two_melodies():
    notes = scale_run(8) + scale_run(8, start_step=8 * BAR + 2 * BAR)
    melodies, stats, _ = _run(add_notes(new_sequence(), 0, notes))
    assert len(melodies) == 2 and stats["melodies_extracted"] == 2
    assert [m.index for m in melodies] == [0, 1]


def test_tempo_change_splits_the_sequence_and_each_part_is_quantized_alone():
    # 12 bars of notes after the change last 24 s: 9 bars at the new 90 qpm, 6 if it were ignored.
    seq = add_notes(new_sequence(), 0, scale_run(8) + scale_run(12, start_step=8 * BAR))
    seq.tempos.add(qpm=90.0, time=8 * BAR * STEP)
    melodies, stats, hist = _run(seq)
    assert sorted(m.subsequence for m in melodies) == [0, 1]
    assert stats["transpositions_generated"] == 2
    assert hist == {"[8,10)": 2}


def test_bad_time_signature_is_counted():
    seq = add_notes(new_sequence(numerator=4, denominator=3), 0, scale_run(8))
    melodies, stats, _ = _run(seq)
    assert melodies == [] and stats["sequences_discarded_because_bad_time_signature"] == 1


def test_non_integer_bar_length_is_counted_and_its_counters_dropped():
    seq = add_notes(new_sequence(numerator=3, denominator=32), 0, scale_run(8))
    melodies, stats, hist = _run(seq)
    assert melodies == [] and hist == {}
    assert stats == {"sequences_read": 1, "transpositions_generated": 1, "non_integer_steps_per_bar": 1,
                     "sequences_without_melodies": 1}


def test_transposition_drops_out_of_range_copies_and_keeps_provenance():
    seq = add_notes(new_sequence(), 0, scale_run(8, pitches=(118, 120, 122, 123, 125)))
    settings = MelodySettings(transpositions=parse_transpose_range("-1:3"))
    melodies, stats, _ = _run(seq, settings)
    assert sorted(m.transposition for m in melodies) == [-1, 0, 1, 2]
    assert stats["skipped_due_to_range_exceeded"] == 1 and stats["transpositions_generated"] == 4


def test_empty_sequences_are_counted():
    _, stats, _ = _run(new_sequence())
    assert stats["sequences_empty"] == 1 and stats["sequences_without_melodies"] == 1


@pytest.mark.parametrize("text", ["3", "a:b", "2:1"])
def test_bad_transpose_ranges_are_rejected(text):
    with pytest.raises(ValueError):
        parse_transpose_range(text)
