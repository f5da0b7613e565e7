"""NoteSequence → monophonic melodies, with Magenta's Melody RNN rules and counters.

Pure functions (no Beam): each returns its results *and* a ``Counter`` of what it discarded, named as
Magenta names them, so the Beam wrapper only sums counters.  Order of steps, as in Magenta 2.1.4's
``melody_rnn_pipeline``: split on time changes → quantize → transpose → extract → squash → encode.

Differences from Magenta, all additive:
- sequences whose quantization hits a negative time are counted (Magenta crashes the job);
- drums-only and empty sequences are counted (Magenta drops them silently);
- notes ending before they start are counted (Magenta crashes), and sequences over ``max_notes`` notes or
  ``max_seconds`` long are refused before quantizing;
- ``keep_polyphonic_tracks`` takes the highest note of a chord instead of discarding the track.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Magenta's melody-length histogram buckets (in bars) for min_bars=7, sorted; a melody of length L bars
# falls in the last bucket edge <= L.
def _histogram_edges(min_bars: int) -> tuple[int, ...]:
    return tuple(sorted({0, 1, 10, 20, 30, 40, 50, 100, 200, 500,
                         min_bars // 2, min_bars, min_bars + 1, min_bars - 1}))


# Every counter a dataset build reports (zeros included), Magenta's names first.
COUNTERS = (
    "sequences_discarded_because_multiple_time_signatures",
    "sequences_discarded_because_multiple_tempos",
    "sequences_discarded_because_bad_time_signature",
    "skipped_due_to_range_exceeded",
    "transpositions_generated",
    "non_integer_steps_per_bar",
    "polyphonic_tracks_discarded",
    "melodies_discarded_too_short",
    "melodies_discarded_too_few_pitches",
    "melodies_discarded_too_long",
    "melodies_truncated",
    # melodyflow's additions
    "sequences_read",
    "sequences_empty",
    "sequences_drums_only",
    "sequences_discarded_because_negative_time",
    "sequences_discarded_because_too_large",
    "sequences_discarded_because_bad_notes",
    "sequences_without_melodies",
    "sequences_failed",
    "melodies_extracted",
    "examples_written",
)


@dataclass(frozen=True)
class MelodySettings:
    """Melody extraction settings; defaults are Magenta's melody_rnn pipeline values."""

    steps_per_quarter: int = 4
    min_bars: int = 7
    max_steps_truncate: int = 512
    min_unique_pitches: int = 5
    gap_bars: float = 1.0
    ignore_polyphonic_notes: bool = False
    filter_drums: bool = True
    transpositions: tuple[int, ...] = (0,)
    # Hostile-input guards, checked before the expensive split/quantize/extract steps.
    max_notes: int = 500_000
    max_seconds: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if self.max_notes < 1 or not self.max_seconds > 0:
            raise ValueError("max_notes must be >= 1 and max_seconds > 0")
        if self.steps_per_quarter < 1 or self.min_bars < 0 or self.max_steps_truncate < 1:
            raise ValueError("steps_per_quarter, max_steps_truncate must be >= 1 and min_bars >= 0")
        if self.min_unique_pitches < 0 or self.gap_bars <= 0:
            raise ValueError("min_unique_pitches must be >= 0 and gap_bars > 0")
        if not self.transpositions or len(set(self.transpositions)) != len(self.transpositions):
            raise ValueError("transpositions must be a non-empty list of distinct semitone shifts")
        if any(abs(t) > 127 for t in self.transpositions):
            raise ValueError("transpositions must be within -127..127 semitones")

    @property
    def histogram_edges(self) -> tuple[int, ...]:
        return _histogram_edges(self.min_bars)


def parse_transpose_range(text: str) -> tuple[int, ...]:
    """``"LO:HI"`` (inclusive) → the tuple of shifts; ``"0:0"`` is no augmentation."""
    try:
        lo, hi = (int(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"--transpose-range expects LO:HI with integers, got {text!r}") from None
    if lo > hi:
        raise ValueError(f"--transpose-range {text!r}: LO must not exceed HI")
    return tuple(range(lo, hi + 1))


@dataclass
class ExtractedMelody:
    """One melody ready to encode, with the provenance that makes its key unique and stable."""

    subsequence: int
    transposition: int
    instrument: int
    index: int  # order of extraction within (subsequence, transposition)
    melody: Any = field(repr=False)  # note_seq.Melody (note-seq is imported only where it is used)


def _histogram_bucket(edges: tuple[int, ...], bars: int) -> str:
    lower = max(e for e in edges if e <= bars)
    above = [e for e in edges if e > bars]
    return f"[{lower},{above[0]})" if above else f"[{lower},inf)"


def extract_melodies(quantized, settings: MelodySettings, stats: Counter, histogram: Counter) -> list:
    """Magenta's ``extract_melodies`` rules on one quantized sequence; returns ``(instrument, melody)``.

    Raises ``NonIntegerStepsPerBarError`` like Magenta, so the caller can discard this sequence's
    counters as Magenta's ``MelodyExtractor`` does.
    """
    import numpy as np
    from note_seq import sequences_lib
    from note_seq.melodies_lib import Melody, PolyphonicMelodyError

    local: Counter[str] = Counter()
    local_hist: Counter[str] = Counter()
    melodies = []
    steps_per_bar = int(sequences_lib.steps_per_bar_in_quantized_sequence(quantized))
    for instrument in sorted({n.instrument for n in quantized.notes}):
        start = 0
        while True:
            melody = Melody()
            try:
                melody.from_quantized_sequence(
                    quantized, instrument=instrument, search_start_step=start,
                    gap_bars=settings.gap_bars, ignore_polyphonic_notes=settings.ignore_polyphonic_notes,
                    pad_end=False, filter_drums=settings.filter_drums)
            except PolyphonicMelodyError:
                local["polyphonic_tracks_discarded"] += 1
                break
            next_start = melody.end_step + (0 - melody.end_step) % steps_per_bar
            if not melody or next_start <= start:
                break
            start = next_start
            if len(melody) < melody.steps_per_bar * settings.min_bars:
                local["melodies_discarded_too_short"] += 1
                continue
            if len(melody) > settings.max_steps_truncate:
                melody.set_length(settings.max_steps_truncate)
                local["melodies_truncated"] += 1
            if np.count_nonzero(melody.get_note_histogram()) < settings.min_unique_pitches:
                local["melodies_discarded_too_few_pitches"] += 1
                continue
            local_hist[_histogram_bucket(settings.histogram_edges, len(melody) // melody.steps_per_bar)] += 1
            melodies.append((instrument, melody))
    stats.update(local)
    histogram.update(local_hist)
    return melodies


def _transpose(sequence, amount: int):
    """Magenta's TranspositionPipeline: None when a non-drum pitch leaves 0..127."""
    shifted = copy.deepcopy(sequence)
    for note in shifted.notes:
        if not note.is_drum:
            note.pitch += amount
            if note.pitch < 0 or note.pitch > 127:
                return None
    return shifted


def sequence_to_melodies(sequence, settings: MelodySettings) -> tuple[list[ExtractedMelody], Counter, Counter]:
    """All melodies of one NoteSequence, with Magenta's counters and the length histogram."""
    stats: Counter = Counter({"sequences_read": 1})
    histogram: Counter = Counter()
    if not sequence.notes:
        stats["sequences_empty"] += 1
    elif all(n.is_drum for n in sequence.notes):
        stats["sequences_drums_only"] += 1
    if len(sequence.notes) > settings.max_notes or not sequence.total_time <= settings.max_seconds:
        # Quantizing a days-long sequence allocates a step per sixteenth: refuse it up front.
        stats["sequences_discarded_because_too_large"] += 1
        stats["sequences_without_melodies"] += 1
        return [], stats, histogram
    from note_seq import events_lib, melodies_lib, sequences_lib  # after the refusal: a second of imports

    out: list[ExtractedMelody] = []
    for sub_index, subsequence in enumerate(sequences_lib.split_note_sequence_on_time_changes(sequence)):
        try:
            quantized = sequences_lib.quantize_note_sequence(subsequence, settings.steps_per_quarter)
        except sequences_lib.MultipleTimeSignatureError:
            stats["sequences_discarded_because_multiple_time_signatures"] += 1
            continue
        except sequences_lib.MultipleTempoError:
            stats["sequences_discarded_because_multiple_tempos"] += 1
            continue
        except sequences_lib.BadTimeSignatureError:
            stats["sequences_discarded_because_bad_time_signature"] += 1
            continue
        except sequences_lib.NegativeTimeError:
            stats["sequences_discarded_because_negative_time"] += 1
            continue
        if sequences_lib.steps_per_bar_in_quantized_sequence(quantized) < 1:
            # e.g. a numerator of -1 passes note-seq's checks and would make extraction loop forever
            stats["sequences_discarded_because_bad_time_signature"] += 1
            continue
        for amount in settings.transpositions:
            transposed = _transpose(quantized, amount)
            if transposed is None:
                stats["skipped_due_to_range_exceeded"] += 1
                continue
            stats["transpositions_generated"] += 1
            try:
                found = extract_melodies(transposed, settings, stats, histogram)
            except events_lib.NonIntegerStepsPerBarError:
                stats["non_integer_steps_per_bar"] += 1
                continue
            except melodies_lib.BadNoteError:  # a note ending before it starts (Magenta crashes here)
                stats["sequences_discarded_because_bad_notes"] += 1
                continue
            out += [ExtractedMelody(sub_index, amount, instrument, i, melody)
                    for i, (instrument, melody) in enumerate(found)]
    stats["melodies_extracted"] += len(out)
    if not out:
        stats["sequences_without_melodies"] += 1
    return out, stats, histogram
