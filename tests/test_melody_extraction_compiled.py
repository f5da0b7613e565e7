"""The fast melody path against the reference (``sequence_to_melodies``) on inputs built to hit each rule.

Every comparison is on real outputs: each melody's events and provenance, and the stats and histogram
Counters with the same keys (zeros included) and values.
"""

from __future__ import annotations

import math
import random

import pytest
from note_seq import sequences_lib
from note_seq.protobuf import music_pb2

from sequences import BAR, STEP, add_notes, new_sequence, scale_run
from melodyflow.transforms.melodies import compiled_note_arrays, extraction_compiled
from melodyflow.transforms.melodies.extraction_reference import MelodySettings, sequence_to_melodies
from melodyflow.transforms.melodies.extraction_compiled import CompiledMelody, compiled_sequence_to_melodies

SETTINGS = [
    MelodySettings(),
    MelodySettings(steps_per_quarter=2),
    MelodySettings(min_bars=0, min_unique_pitches=0),
    MelodySettings(gap_bars=0.5, ignore_polyphonic_notes=True),
    MelodySettings(gap_bars=2.0, min_bars=2, max_steps_truncate=48),
    MelodySettings(filter_drums=False, min_bars=1, transpositions=(-3, 0, 2, 5)),
    MelodySettings(transpositions=(-60, -1, 0, 1, 40), min_bars=2, min_unique_pitches=3),
    MelodySettings(steps_per_quarter=2, min_bars=0, gap_bars=0.5, ignore_polyphonic_notes=True,
                   filter_drums=False, transpositions=(0, 7)),
    MelodySettings(min_bars=3, min_unique_pitches=6, max_steps_truncate=100),
    MelodySettings(max_notes=40, max_seconds=30.0, min_bars=1),
]


def _reference(seq, settings):
    melodies, stats, histogram = sequence_to_melodies(seq, settings)
    rows = [(m.subsequence, m.transposition, m.instrument, m.index, tuple(m.melody), m.melody.steps_per_bar,
             m.melody.steps_per_quarter, m.melody.start_step, m.melody.end_step) for m in melodies]
    return rows, dict(stats), dict(histogram)


def _fast(seq, settings, serialized=None):
    melodies, stats, histogram = compiled_sequence_to_melodies(seq, settings, serialized)
    assert all(isinstance(m, CompiledMelody) for m in melodies)
    rows = [(m.subsequence, m.transposition, m.instrument, m.index, m.events, m.steps_per_bar,
             m.steps_per_quarter, m.start_step, m.end_step) for m in melodies]
    assert all(type(e) is int for row in rows for e in row[4])
    return rows, dict(stats), dict(histogram)


def _assert_same(seq, settings):
    try:
        reference = _reference(seq, settings)
    except Exception as error:  # hostile input the reference itself chokes on: the same error, then
        with pytest.raises(type(error)):
            _fast(seq, settings)
        return None
    fast = _fast(seq, settings)
    assert _fast(seq, settings, seq.SerializeToString()) == fast  # notes read from given bytes
    assert fast[1] == reference[1], "stats differ"
    assert fast[2] == reference[2], "histograms differ"
    assert len(fast[0]) == len(reference[0])
    for got, want in zip(fast[0], reference[0]):
        assert got == want
    return reference


@pytest.fixture
def fallbacks(monkeypatch):
    """Counts the sequences handed to the reference."""
    calls = []
    original = extraction_compiled.from_reference

    def counting(seq, settings):
        calls.append(seq)
        return original(seq, settings)

    monkeypatch.setattr(extraction_compiled, "from_reference", counting)
    return calls


# ---------------------------------------------------------------------------------------------------
# Random sequences


def _random_sequence(rng: random.Random) -> music_pb2.NoteSequence:
    seq = music_pb2.NoteSequence(id="/random", ticks_per_quarter=220)
    qpm = rng.choice([120.0, 120.0, 90.0, 100.0, 133.3])
    step = 60.0 / qpm / 4
    note_times = []
    for instrument in range(rng.choice([0, 1, 1, 1, 2, 2, 3, 4])):
        drums = rng.random() < 0.2
        t = rng.choice([0, 0, 0, 3, 16])
        bars = rng.choice([1, 2, 6, 8, 9, 12, 20, 40])
        end = t + bars * 16
        low = rng.choice([0, 20, 48, 60, 100, 115])
        pitches = [min(127, low + rng.randrange(rng.choice([3, 6, 12, 24]))) for _ in range(12)]
        chords = rng.random() < 0.25
        while t < end:
            dur = rng.choice([1, 2, 2, 4, 8])
            if rng.random() < 0.08:
                t += rng.choice([8, 16, 24, 33, 40, 70])  # gaps around half a bar, a bar, two bars
            voices = rng.choice([1, 2, 3]) if chords or rng.random() < 0.03 else 1
            for v in range(voices):
                start_t = t * step
                end_t = (t + dur) * step
                if rng.random() < 0.1:
                    start_t += rng.uniform(-0.6, 0.6) * step  # off the grid, near the rounding cutoff
                if rng.random() < 0.05:
                    end_t = start_t + rng.uniform(0, 0.3) * step  # very short: same step as the start
                if rng.random() < 0.01:
                    end_t = start_t - rng.choice([0.01, 1.0, 5.0])  # ends before it starts
                pitch = pitches[rng.randrange(len(pitches))] if v == 0 else rng.randrange(128)
                velocity = 0 if rng.random() < 0.02 else rng.randrange(1, 128)
                seq.notes.add(pitch=pitch, velocity=velocity, start_time=start_t, end_time=end_t,
                              instrument=instrument if rng.random() > 0.02 else rng.randrange(6),
                              program=rng.randrange(3), is_drum=drums or rng.random() < 0.01)
                note_times.append(start_t)
                if rng.random() < 0.04:  # a twin on the same onset and pitch: ties go by proto order
                    seq.notes.add(pitch=min(127, max(0, pitch + rng.choice([0, 0, 2, -2]))), velocity=rng.choice([0, 50]),
                                  start_time=start_t, end_time=end_t + rng.choice([0.0, step, -step / 2]),
                                  instrument=instrument, is_drum=rng.random() < 0.5)
            t += dur
    if rng.random() < 0.05:
        seq.notes.add(pitch=60, velocity=80, start_time=-1.0, end_time=0.5)  # negative start: dropped
    if rng.random() < 0.03:
        seq.notes.add(pitch=62, velocity=80, start_time=0.5, end_time=-4.0)  # quantizes to a negative end
    if rng.random() < 0.3:  # proto order no longer follows time
        notes = [music_pb2.NoteSequence.Note().__class__.FromString(n.SerializeToString()) for n in seq.notes]
        rng.shuffle(notes)
        del seq.notes[:]
        seq.notes.extend(notes)

    def some_time():
        kind = rng.random()
        if kind < 0.3 or not note_times:
            return 0.0
        if kind < 0.45:
            return rng.choice(note_times)  # on a note onset
        if kind < 0.5:
            return -rng.random()
        return rng.uniform(0, max(note_times) + 2)

    for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
        num = rng.choice([4, 4, 3, 6, 5, 7, 2, 12, 0, -1, 1])
        den = rng.choice([4, 4, 8, 2, 1, 16, 32, 3, 0, 6])
        seq.time_signatures.add(numerator=num, denominator=den, time=some_time())
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
        seq.tempos.add(qpm=rng.choice([qpm, qpm, 120.0, 60.0, 200.0]), time=some_time())
    ends = [n.end_time for n in seq.notes] or [0.0]
    seq.total_time = rng.choice([max(ends), max(ends), max(ends) * 0.7, max(ends) + 3.0, 0.0])
    if rng.random() < 0.05:
        seq.total_time = -1.0
    return seq


@pytest.mark.parametrize("chunk", range(4))
def test_random_sequences_match_the_reference(chunk, fallbacks):
    rng = random.Random(1234 + chunk)
    expected_fallbacks = 0
    for i in range(100):
        seq = _random_sequence(rng)
        settings = SETTINGS[(i + chunk) % len(SETTINGS)]
        if len(seq.notes) > settings.max_notes or not seq.total_time <= settings.max_seconds:
            expected_fallbacks += 1
        _assert_same(seq, settings)
    # The guards' refusals go to the reference (twice each: with and without the bytes); nothing else.
    assert len(fallbacks) == 2 * expected_fallbacks


def test_random_sequences_hit_every_counter():
    """The random inputs above are only worth as much as the branches they reach.

    (Multiple time signatures or tempos cannot survive note-seq's split on time changes with finite
    times, so those two counters are left to the hand-built cases.)
    """
    seen = set()
    for chunk in range(4):
        rng = random.Random(1234 + chunk)
        for i in range(100):
            seq = _random_sequence(rng)
            _, stats, histogram = sequence_to_melodies(seq, SETTINGS[(i + chunk) % len(SETTINGS)])
            seen |= {k for k, v in stats.items() if v}
    expected = {
        "sequences_discarded_because_bad_time_signature", "skipped_due_to_range_exceeded",
        "transpositions_generated", "non_integer_steps_per_bar", "polyphonic_tracks_discarded",
        "melodies_discarded_too_short", "melodies_discarded_too_few_pitches", "melodies_truncated",
        "sequences_empty", "sequences_drums_only", "sequences_discarded_because_negative_time",
        "sequences_discarded_because_too_large", "sequences_discarded_because_bad_notes",
        "sequences_without_melodies", "melodies_extracted",
    }
    assert expected <= seen, expected - seen


# ---------------------------------------------------------------------------------------------------
# Hand-built cases


def test_plain_melody_and_its_fields():
    seq = add_notes(new_sequence(), 0, scale_run(8))
    (rows, stats, hist) = _assert_same(seq, MelodySettings())
    assert len(rows) == 1 and rows[0][4][:4] == (60, -2, 62, -2) and rows[0][5:] == (16, 4, 0, 8 * BAR)
    assert stats["melodies_extracted"] == 1 and hist == {"[8,10)": 1}


def test_truncation_and_min_unique_pitches_edge():
    for pitches in [(60, 62, 64, 65), (60, 62, 64, 65, 67), (60, 62, 64, 72, 74)]:
        seq = add_notes(new_sequence(), 0, scale_run(40, pitches=pitches))
        _assert_same(seq, MelodySettings())
    # Only the first 512 steps count for the pitch classes once truncated.
    notes = scale_run(32, pitches=(60, 62, 64, 65)) + scale_run(8, pitches=(67, 69), start_step=32 * BAR)
    _assert_same(add_notes(new_sequence(), 0, notes), MelodySettings())
    _assert_same(add_notes(new_sequence(), 0, notes), MelodySettings(max_steps_truncate=600))


@pytest.mark.parametrize("settings", SETTINGS[:5])
def test_polyphony_gaps_and_overlaps(settings):
    seq = new_sequence()
    add_notes(seq, 0, scale_run(8) + [(72, 0, 4), (71, 32, 40)])  # chords at 0 and 32
    add_notes(seq, 1, scale_run(4) + scale_run(8, start_step=4 * BAR + 9))  # gap just over half a bar
    add_notes(seq, 2, [(60 + i % 7, i * 3, i * 3 + 7) for i in range(60)])  # overlapping notes
    add_notes(seq, 3, [(60, 0, 4), (60, 0, 8), (64, 4, 6)] + scale_run(8, start_step=8))  # unison pair
    _assert_same(seq, settings)


@pytest.mark.parametrize("numerator,denominator", [(3, 4), (6, 8), (5, 4), (7, 8), (0, 4), (4, 3), (1, 32),
                                                   (3, 32), (2, 1), (9, 16), (-1, 4), (4, 0)])
def test_time_signatures(numerator, denominator):
    seq = add_notes(new_sequence(numerator=numerator, denominator=denominator), 0, scale_run(10))
    for settings in (MelodySettings(), MelodySettings(steps_per_quarter=2, min_bars=0)):
        _assert_same(seq, settings)


def test_time_changes_mid_sequence_at_zero_and_on_notes():
    base = scale_run(8) + scale_run(12, start_step=8 * BAR)
    cases = []
    seq = add_notes(new_sequence(), 0, base)
    seq.tempos.add(qpm=90.0, time=8 * BAR * STEP)  # on a note onset
    cases.append(seq)
    seq = add_notes(new_sequence(), 0, base)
    seq.time_signatures.add(numerator=3, denominator=4, time=4 * BAR * STEP + 0.01)  # inside a note
    cases.append(seq)
    seq = add_notes(new_sequence(), 0, base)
    seq.time_signatures.add(numerator=3, denominator=4, time=0.0)  # two at 0: multiple time signatures
    seq.tempos.add(qpm=60.0, time=0.0)
    cases.append(seq)
    seq = add_notes(new_sequence(), 0, base)
    seq.time_signatures.add(numerator=6, denominator=8, time=5.0)
    seq.time_signatures.add(numerator=6, denominator=8, time=5.0)
    seq.tempos.add(qpm=150.0, time=5.0)
    seq.tempos.add(qpm=120.0, time=30.0)
    cases.append(seq)
    seq = add_notes(music_pb2.NoteSequence(), 0, base)  # no time signature, no tempo: implicit 4/4, 120
    seq.time_signatures.add(numerator=3, denominator=4, time=2.0)
    cases.append(seq)
    for seq in cases:
        for settings in SETTINGS[:4]:
            _assert_same(seq, settings)


def test_empty_drums_only_negative_and_bad_notes():
    _assert_same(new_sequence(), MelodySettings())
    drums = add_notes(new_sequence(), 9, scale_run(8, pitches=(36, 38, 42, 46, 49)), is_drum=True)
    _assert_same(drums, MelodySettings())
    _assert_same(drums, MelodySettings(filter_drums=False, transpositions=(0, 3)))
    negative = add_notes(new_sequence(), 0, scale_run(8))
    negative.notes.add(pitch=60, velocity=90, start_time=1.0, end_time=-2.0)
    _assert_same(negative, MelodySettings())
    bad = add_notes(new_sequence(), 0, scale_run(8))
    bad.notes.add(pitch=61, velocity=90, start_time=4.0, end_time=3.0, instrument=0)
    _assert_same(bad, MelodySettings())
    _assert_same(bad, MelodySettings(transpositions=(0, 1, 2)))
    early = add_notes(new_sequence(), 0, scale_run(8))
    early.notes.add(pitch=61, velocity=90, start_time=-0.5, end_time=1.0)
    _assert_same(early, MelodySettings())


def test_guards_and_fallback_inputs(fallbacks):
    seq = add_notes(new_sequence(), 0, scale_run(10))
    _assert_same(seq, MelodySettings(max_notes=10))
    _assert_same(seq, MelodySettings(max_seconds=5.0))
    assert len(fallbacks) == 4
    odd = []
    nan_note = add_notes(new_sequence(), 0, scale_run(10))
    nan_note.notes[3].start_time = math.nan
    odd.append(nan_note)
    inf_end = add_notes(new_sequence(), 0, scale_run(10))
    inf_end.notes[5].end_time = math.inf
    odd.append(inf_end)
    zero_tempo = add_notes(new_sequence(), 0, scale_run(10))
    zero_tempo.tempos.add(qpm=0.0, time=4.0)
    odd.append(zero_tempo)
    nan_total = add_notes(new_sequence(), 0, scale_run(10))
    nan_total.total_time = math.nan
    odd.append(nan_total)
    negative_drum = add_notes(new_sequence(), 0, scale_run(10))
    negative_drum.notes.add(pitch=-3, velocity=80, start_time=1.0, end_time=2.0, is_drum=True)
    odd.append(negative_drum)
    for seq in odd:
        for settings in (MelodySettings(filter_drums=False), MelodySettings()):
            before = len(fallbacks)
            _assert_same(seq, settings)
            # All go to the reference but the negative drum pitch when drums are filtered anyway.
            assert (len(fallbacks) > before) == (seq is not negative_drum or not settings.filter_drums)


def test_quantized_input_raises_like_the_reference():
    seq = add_notes(new_sequence(), 0, scale_run(10))
    quantized = sequences_lib.quantize_note_sequence(seq, 4)
    with pytest.raises(sequences_lib.QuantizationStatusError):
        sequence_to_melodies(quantized, MelodySettings())
    with pytest.raises(sequences_lib.QuantizationStatusError):
        compiled_sequence_to_melodies(quantized, MelodySettings())


def test_unusual_note_fields_are_read_like_attributes():
    """Fields the wire reader skips or refuses (negative pitch, voice, quantized steps) change nothing."""
    seq = add_notes(new_sequence(), 0, scale_run(10))
    for i, note in enumerate(seq.notes):
        note.voice = i
        note.numerator = 1
        note.denominator = 3
        note.quantized_end_step = 2**40
        note.pitch_name = 5
    _assert_same(seq, MelodySettings())
    seq.notes.add(pitch=-5, velocity=70, start_time=3.0, end_time=4.0, instrument=1)
    _assert_same(seq, MelodySettings(transpositions=(0, 10)))
    seq.notes.add(pitch=60, velocity=70, start_time=3.0, end_time=4.0, instrument=-2)
    _assert_same(seq, MelodySettings())


def test_wire_reader_agrees_with_attribute_access():
    rng = random.Random(7)
    for _ in range(50):
        seq = _random_sequence(rng)
        for note in seq.notes:
            if rng.random() < 0.1:
                note.part = rng.randrange(300)
            if rng.random() < 0.05:
                note.instrument = rng.randrange(1000)
        data = seq.SerializeToString()
        wire = compiled_note_arrays.notes_from_wire(data, len(seq.notes))
        attributes = compiled_note_arrays.notes_by_attribute(seq.notes)
        assert wire is not None
        for got, want in zip(wire, attributes):
            assert got.tolist() == want.tolist()


def test_long_sequences_with_many_subsequences():
    seq = new_sequence()
    add_notes(seq, 0, scale_run(60, pitches=(60, 62, 64, 65, 67, 69, 71)))
    add_notes(seq, 1, scale_run(60, pitches=(48, 50, 52), step_len=4))
    for k in range(1, 12):
        seq.tempos.add(qpm=120.0 - 3 * (k % 3), time=k * 5 * BAR * STEP)
        if k % 4 == 0:
            seq.time_signatures.add(numerator=3 + k % 2, denominator=4, time=k * 5 * BAR * STEP + 0.5)
    for settings in SETTINGS:
        _assert_same(seq, settings)


def test_very_long_melodies():
    """Hours-long notes: the reference builds every step; the fast path only the kept ones, same result."""
    seq = add_notes(new_sequence(), 0, scale_run(8))
    seq.notes.add(pitch=71, velocity=80, start_time=16.0, end_time=5000.0)
    seq.notes.add(pitch=72, velocity=80, start_time=300.0, end_time=301.0)  # inside the held note
    seq.notes.add(pitch=40, velocity=80, start_time=4000.0, end_time=4500.0, instrument=1)
    seq.total_time = 5000.0
    for settings in (MelodySettings(), MelodySettings(max_steps_truncate=5000, min_bars=0),
                     MelodySettings(max_steps_truncate=40_000, min_unique_pitches=2, gap_bars=0.5)):
        _assert_same(seq, settings)


@pytest.mark.parametrize("drum_first", [True, False])
def test_kept_drums_meeting_a_transposed_note_keep_proto_order(drum_first):
    """A drum and a moved note on the same step and pitch: the one first in the proto wins the onset."""
    seq = add_notes(new_sequence(), 0, scale_run(8))
    # Just after the run, so whichever is taken ends the melody with its own end step.
    pair = [dict(pitch=62, is_drum=True, end_time=17.5), dict(pitch=60, is_drum=False, end_time=17.0)]
    for note in pair if drum_first else pair[::-1]:
        seq.notes.add(velocity=80, start_time=16.25, instrument=0, **note)
    seq.total_time = 17.5
    for settings in (MelodySettings(filter_drums=False, ignore_polyphonic_notes=True, transpositions=(0, 2)),
                     MelodySettings(filter_drums=False, transpositions=(2, -1))):
        _assert_same(seq, settings)


def test_control_changes_and_annotations():
    """Pedals, chords and beats travel into subsequences; hostile ones make the reference raise."""
    def build(cc_time=3.0, beat_time=5.0, qpm=90.0):
        seq = add_notes(new_sequence(), 0, scale_run(8) + scale_run(8, start_step=8 * BAR))
        seq.tempos.add(qpm=qpm, time=8 * BAR * STEP)
        seq.control_changes.add(time=cc_time, control_number=64, control_value=100)
        seq.control_changes.add(time=-1.0, control_number=7, control_value=3)
        seq.text_annotations.add(time=beat_time, annotation_type=music_pb2.NoteSequence.TextAnnotation.BEAT)
        seq.text_annotations.add(time=20.0, text="C", annotation_type=music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL)
        return seq

    # A pedal far into a subsequence with an absurd tempo: its step overflows the proto's int64.
    overflow = add_notes(new_sequence(), 0, scale_run(8))
    overflow.tempos.add(qpm=1e16, time=8 * BAR * STEP)
    overflow.control_changes.add(time=20000.0, control_number=64, control_value=100)
    overflow.total_time = 30000.0
    for seq in (build(), build(cc_time=math.nan), build(beat_time=math.nan), build(beat_time=-2.0),
                build(cc_time=math.inf, beat_time=math.inf), overflow):
        for settings in (MelodySettings(), MelodySettings(min_bars=0, transpositions=(0, 1))):
            _assert_same(seq, settings)
