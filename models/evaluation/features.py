"""Per-melody features of Magenta melody events, in plain numpy (no TensorFlow, no note-seq).

A melody is Magenta's event list at 4 steps per quarter: ``-2`` no event (the sounding note or rest
goes on), ``-1`` note off, ``0..127`` a note starts at that pitch. A note lasts until the next event
that is not ``-2`` (a note-off or the next note) or the end of the melody. Bars are 16 steps and
beats 4, whatever the piece's time signature, as Magenta's encoders assume.

Every feature is defined in ``docs/evaluation.md``; each function here is that definition. A feature
that a melody cannot define (an interval needs two notes) is NaN and left out of set comparisons.
Most follow MusPy's definitions (``pitch_class_entropy``, ``scale_consistency``, ``empty_beat_rate``,
``groove_consistency``) and Yang & Lerch's note-length histogram, so figures can be compared with
published ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

NO_EVENT = -2
NOTE_OFF = -1
STEPS_PER_BEAT = 4
STEPS_PER_BAR = 16

# Note lengths in steps (16ths), binned as note values: 16th, 8th, dotted 8th, quarter, up to a dotted
# quarter, up to a half, up to a dotted half, up to a whole, longer.
NOTE_LENGTH_BINS = ("1", "2", "3", "4", "5-6", "7-8", "9-12", "13-16", "17+")
_LENGTH_BIN_OF = np.array([0, 0, 1, 2, 3, 4, 4, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8], dtype=np.int64)  # index: steps
# MAJOR_SCALES[k] marks the pitch classes of the major scale on k (natural minor scales are the same sets).
MAJOR_SCALES = np.array([[(pc - k) % 12 in (0, 2, 4, 5, 7, 9, 11) for pc in range(12)] for k in range(12)],
                        dtype=np.int64)


@dataclass(frozen=True)
class Feature:
    """What a feature is, for tables and set comparisons.

    ``resolution`` is the smallest difference that matters musically (a semitone, one note per bar,
    1% of a rate); it is the floor of the kernel bandwidth when sets are compared, so a feature on
    which every melody agrees still has a well-defined density.
    """

    name: str
    unit: str
    resolution: float
    summary: str
    vector: bool = False


FEATURES: tuple[Feature, ...] = (
    Feature("pitch_class_entropy", "bits", 0.05, "Shannon entropy of the notes' pitch classes"),
    Feature("scale_consistency", "share", 0.01, "largest share of notes inside one major/minor scale"),
    Feature("pitch_range", "semitones", 0.5, "highest minus lowest pitch"),
    Feature("distinct_pitches", "pitches", 0.5, "number of different pitches"),
    Feature("mean_abs_interval", "semitones", 0.1, "mean absolute step between consecutive notes"),
    Feature("note_length_histogram", "shares", 0.01, "notes per length bin (16th ... longer than a whole)",
            vector=True),
    Feature("note_density", "notes/bar", 0.1, "notes started per 16-step bar"),
    Feature("empty_beat_rate", "share", 0.01, "beats in which no note starts"),
    Feature("groove_consistency", "share", 0.01, "1 - mean Hamming distance of consecutive bars' onsets"),
    Feature("bar_repetition", "share", 0.01, "bars identical to an earlier bar"),
)
# Computed against the training melodies by models/evaluation/copy_index.py, not from the melody alone.
COPIED_SPAN = Feature("longest_copied_span", "steps", 1.0, "longest run of events also in a training melody")
ALL_FEATURES: tuple[Feature, ...] = (*FEATURES, COPIED_SPAN)


@dataclass(frozen=True)
class Notes:
    """The notes of a melody: start step, pitch and length in steps, in order; ``steps`` is its length."""

    onsets: np.ndarray
    pitches: np.ndarray
    lengths: np.ndarray
    steps: int


def notes_of(events) -> Notes:
    ev = np.asarray(events, dtype=np.int64).ravel()
    changes = np.flatnonzero(ev != NO_EVENT)
    is_note = ev[changes] >= 0
    ends = np.append(changes[1:], ev.size)
    onsets = changes[is_note]
    return Notes(onsets=onsets, pitches=ev[onsets], lengths=(ends - changes)[is_note], steps=int(ev.size))


def _pitch_class_counts(notes: Notes) -> np.ndarray:
    return np.bincount(notes.pitches % 12, minlength=12)


def pitch_class_entropy(notes: Notes) -> float:
    if not notes.pitches.size:
        return float("nan")
    counts = _pitch_class_counts(notes)
    p = counts[counts > 0] / notes.pitches.size
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: no negative zero for one pitch class


def scale_consistency(notes: Notes) -> float:
    if not notes.pitches.size:
        return float("nan")
    return float((MAJOR_SCALES @ _pitch_class_counts(notes)).max() / notes.pitches.size)


def pitch_range(notes: Notes) -> float:
    return float(notes.pitches.max() - notes.pitches.min()) if notes.pitches.size else float("nan")


def distinct_pitches(notes: Notes) -> float:
    return float(np.count_nonzero(np.bincount(notes.pitches, minlength=1)))


def mean_abs_interval(notes: Notes) -> float:
    if notes.pitches.size < 2:
        return float("nan")
    return float(np.abs(np.diff(notes.pitches)).sum() / (notes.pitches.size - 1))


def note_length_histogram(notes: Notes) -> np.ndarray:
    """Share of notes in each of :data:`NOTE_LENGTH_BINS`; NaNs when there are no notes."""
    if not notes.lengths.size:
        return np.full(len(NOTE_LENGTH_BINS), np.nan)
    bins = _LENGTH_BIN_OF[np.minimum(notes.lengths, _LENGTH_BIN_OF.size - 1)]
    return np.bincount(bins, minlength=len(NOTE_LENGTH_BINS)) / notes.lengths.size


def note_density(notes: Notes) -> float:
    return notes.onsets.size / (notes.steps / STEPS_PER_BAR) if notes.steps else float("nan")


def empty_beat_rate(notes: Notes) -> float:
    """Share of beats (4 steps; a last partial beat counts) in which no note starts, as in MusPy."""
    if not notes.steps:
        return float("nan")
    beats = -(-notes.steps // STEPS_PER_BEAT)
    return 1.0 - np.count_nonzero(np.bincount(notes.onsets // STEPS_PER_BEAT, minlength=1)) / beats


def _complete_bars(notes: Notes) -> int:
    return notes.steps // STEPS_PER_BAR


def groove_consistency(notes: Notes) -> float:
    """1 - mean Hamming distance (share of the bar's 16 steps) between onset patterns of consecutive
    complete bars, as in MusPy; NaN with fewer than two complete bars."""
    bars = _complete_bars(notes)
    if bars < 2:
        return float("nan")
    onsets = np.zeros(bars * STEPS_PER_BAR, dtype=bool)
    onsets[notes.onsets[notes.onsets < onsets.size]] = True
    pattern = onsets.reshape(bars, STEPS_PER_BAR)
    return 1.0 - float((pattern[1:] != pattern[:-1]).mean())


def bar_repetition(events) -> float:
    """Share of complete bars, after the first, whose 16 events equal those of an earlier bar."""
    ev = np.asarray(events, dtype=np.int64).ravel()
    bars = ev.size // STEPS_PER_BAR
    if bars < 2:
        return float("nan")
    rows = np.ascontiguousarray(ev[: bars * STEPS_PER_BAR]).view(np.dtype((np.void, 8 * STEPS_PER_BAR)))
    return (bars - np.unique(rows).size) / (bars - 1)


def melody_features(events) -> dict[str, float | np.ndarray]:
    """Every feature of :data:`FEATURES` for one melody."""
    notes = notes_of(events)
    return {
        "pitch_class_entropy": pitch_class_entropy(notes),
        "scale_consistency": scale_consistency(notes),
        "pitch_range": pitch_range(notes),
        "distinct_pitches": distinct_pitches(notes),
        "mean_abs_interval": mean_abs_interval(notes),
        "note_length_histogram": note_length_histogram(notes),
        "note_density": note_density(notes),
        "empty_beat_rate": empty_beat_rate(notes),
        "groove_consistency": groove_consistency(notes),
        "bar_repetition": bar_repetition(events),
    }


def feature_table(melodies: Iterable) -> dict[str, np.ndarray]:
    """Features of many melodies: ``[n]`` per scalar feature, ``[n, bins]`` for the histogram."""
    rows = [melody_features(m) for m in melodies]
    table = {}
    for feature in FEATURES:
        values = [r[feature.name] for r in rows]
        if feature.vector:
            table[feature.name] = np.array(values, dtype=np.float64).reshape(len(rows), len(NOTE_LENGTH_BINS))
        else:
            table[feature.name] = np.array(values, dtype=np.float64)
    return table


def stall_share(events, start: int = 0) -> float:
    """Share of steps from ``start`` on that lie more than one bar after the last note start (or after
    ``start`` when no note has started since): a melody that stops playing, or holds one note on."""
    ev = np.asarray(events, dtype=np.int64).ravel()[start:]
    if not ev.size:
        return 0.0
    marks = np.concatenate(([0], np.flatnonzero(ev >= 0), [ev.size]))
    gaps = np.diff(marks)
    return float(np.maximum(gaps - STEPS_PER_BAR, 0).sum() / ev.size)


def loop_share(events, start: int = 0) -> float:
    """Share of complete bars from ``start`` on that are the third (or later) identical bar in a row and
    start a note: one repetition of a bar is music, a third is a loop (bars without a note start are
    :func:`stall_share`'s)."""
    ev = np.asarray(events, dtype=np.int64).ravel()[start:]
    bars = ev.size // STEPS_PER_BAR
    if bars < 3:
        return 0.0
    rows = ev[: bars * STEPS_PER_BAR].reshape(bars, STEPS_PER_BAR)
    same = (rows[1:] == rows[:-1]).all(axis=1)
    playing = (rows[2:] >= 0).any(axis=1)
    return float((same[1:] & same[:-1] & playing).sum() / (bars - 2))
