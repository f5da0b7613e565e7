"""The compiled path of melody extraction: the same melodies and counters as the reference
(``extraction_reference.sequence_to_melodies``), without its proto copies.

Why: the reference spends nearly all its time in note-seq's proto plumbing (a deep copy per subsequence,
quantization on proto fields, a re-filter and re-sort of the notes for every ``from_quantized_sequence``),
about 3 ms a tune.  Here the notes are read once into arrays (from the wire bytes: upb's per-attribute
access alone costs more than the rest), and note-seq 0.0.5's split, quantization and melody rules are
replayed on them with the same float64 operations in the same order, so every step index, every event and
every counter is identical.  The per-note rules are sequential (each note is tested against the last one
kept), so they run as numba kernels, as the compiled MIDI reader's do; numba comes with note-seq.

``sequence_to_melodies`` stays the oracle: any input this module does not reproduce by construction
(non-finite times, tempos <= 0, an already-quantized input, drum pitches outside 0..127 with drums kept,
steps or bars too large for exact int64 arithmetic, and the size guards' refusals) is handed to it whole
and its result converted, so the contract holds for every input; only the speed differs."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
import numpy as np

from melodyflow.transforms.melodies.extraction_reference import MelodySettings, _histogram_bucket, sequence_to_melodies
from melodyflow.transforms.melodies.compiled_melody_rules import COUNTER_NAMES, extract_melodies_kernel
from melodyflow.transforms.melodies.compiled_note_arrays import note_flags, read_notes
from melodyflow.transforms.melodies.compiled_time_grid import (MAX_EXACT_STEP, check_time_changes, distribute,
                                                             place_and_quantize, split_times)


@dataclass(frozen=True, slots=True)
class CompiledMelody:
    """One extracted melody; ``events`` equals ``list(melody)`` of the reference's ``note_seq.Melody``."""

    subsequence: int
    transposition: int
    instrument: int
    index: int  # order of extraction within (subsequence, transposition), as ExtractedMelody.index
    events: tuple
    steps_per_bar: int
    steps_per_quarter: int
    start_step: int
    end_step: int


class _Fallback(Exception):
    """This input is outside what the fast path reproduces exactly: use the reference."""


def from_reference(sequence, settings: MelodySettings) -> tuple[list[CompiledMelody], Counter, Counter]:
    """The reference's answer in CompiledMelody form (the fallback, and a convenience for tests)."""
    melodies, stats, histogram = sequence_to_melodies(sequence, settings)
    return [CompiledMelody(m.subsequence, m.transposition, m.instrument, m.index, tuple(m.melody),
                       m.melody.steps_per_bar, m.melody.steps_per_quarter, m.melody.start_step,
                       m.melody.end_step) for m in melodies], stats, histogram


def compiled_sequence_to_melodies(sequence, settings: MelodySettings,
                              serialized: bytes | None = None) -> tuple[list[CompiledMelody], Counter, Counter]:
    """``sequence_to_melodies`` with CompiledMelody results: equal events, provenance, stats and histogram.

    Equality is exact for every input (stats and histogram have the same keys and values, melodies come
    in the same order); exceptions the reference raises (e.g. an already-quantized input) are raised by
    the reference itself, through the fallback.

    ``serialized``, when given, must be the bytes ``sequence`` was parsed from (or its serialization): the
    notes are read from it instead of re-serializing the message.
    """
    try:
        return _extract(sequence, settings, serialized)
    except _Fallback:
        return from_reference(sequence, settings)




def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels now rather than on the first sequence."""
    from melodyflow.transforms.melodies.proto import note_sequence_class

    seq = note_sequence_class()(total_time=1.0)
    seq.notes.add(pitch=60, velocity=80, start_time=0.0, end_time=1.0)
    compiled_sequence_to_melodies(seq, MelodySettings(min_bars=0, min_unique_pitches=0))


def _finite(values) -> bool:
    return all(math.isfinite(v) for v in values)


def _time_changes(sequence, settings: MelodySettings) -> tuple[list, list]:
    """The sequence's time signatures and tempos as tuples; raises ``_Fallback`` where the reference would
    raise or take a path this module does not replay."""
    if len(sequence.notes) > settings.max_notes or not sequence.total_time <= settings.max_seconds:
        raise _Fallback  # rare, and the reference answers it without quantizing anything
    if settings.steps_per_quarter > 2**31 - 1:
        raise _Fallback  # does not fit quantization_info's int32: the reference raises
    info = sequence.quantization_info
    if info.steps_per_quarter > 0 or info.steps_per_second > 0:
        raise _Fallback  # the reference raises QuantizationStatusError (or not, if nothing to split)
    time_signatures = [(ts.time, ts.numerator, ts.denominator) for ts in sequence.time_signatures]
    tempos = [(t.time, t.qpm) for t in sequence.tempos]
    if not _finite(t[0] for t in time_signatures) or not _finite(v for t in tempos for v in t) \
            or any(t[1] <= 0 for t in tempos):
        raise _Fallback
    if sequence.control_changes and not _finite(cc.time for cc in sequence.control_changes):
        raise _Fallback  # NaN sorts unpredictably in _extract_subsequences
    if sequence.text_annotations and not _finite(ta.time for ta in sequence.text_annotations):
        raise _Fallback  # a NaN beat lands in the last subsequence and int(nan) raises
    return time_signatures, tempos


def _count_note_kinds(notes, settings: MelodySettings, stats: Counter) -> None:
    start, end, pitch, _velocity, _instrument, drum = notes
    if len(start) == 0:
        stats["sequences_empty"] += 1
        return
    all_drums, finite, wild_drum = note_flags(start, end, pitch, drum)
    if all_drums:
        stats["sequences_drums_only"] += 1
    if not finite:
        raise _Fallback  # NaN start times sort unpredictably in note-seq
    if wild_drum and not settings.filter_drums:
        raise _Fallback  # a negative drum pitch would read as NOTE_OFF in the reference's event scan


def _subsequences(time_signatures: list, tempos: list, total_time: float) -> tuple[list[float], list]:
    """Split times and, per subsequence, its checked (numerator, denominator, qpm) or a discard counter."""
    if len(time_signatures) <= 1 and len(tempos) <= 1 and all(t[0] <= 0.0 for t in time_signatures) \
            and all(t[0] <= 0.0 for t in tempos):
        # The usual file: at most one of each, at the start; nothing splits, and each becomes the state
        # at time 0 of the single subsequence (what the general path below computes, without its cost).
        splits = [0.0, total_time] if total_time > 0.0 else [0.0]
        return splits, [check_time_changes([(0.0,) + t[1:] for t in time_signatures],
                                           [(0.0,) + t[1:] for t in tempos])]
    splits = split_times(time_signatures, tempos, total_time)
    sub_ts = distribute(time_signatures, splits)
    sub_tempos = distribute(tempos, splits)
    return splits, [check_time_changes(sub_ts[k], sub_tempos[k]) for k in range(len(splits) - 1)]


def _extract(sequence, settings: MelodySettings, serialized=None):
    stats: Counter = Counter({"sequences_read": 1})
    histogram: Counter = Counter()
    time_signatures, tempos = _time_changes(sequence, settings)
    notes = read_notes(sequence, serialized)
    _count_note_kinds(notes, settings, stats)
    splits, checked = _subsequences(time_signatures, tempos, sequence.total_time)
    out: list[CompiledMelody] = []
    if len(splits) > 1:
        out = _quantized_melodies(sequence, notes, splits, checked, settings, stats, histogram)
    stats["melodies_extracted"] += len(out)
    if not out:
        stats["sequences_without_melodies"] += 1
    return out, stats, histogram


def _quantized_melodies(sequence, notes, splits: list[float], checked: list, settings: MelodySettings,
                        stats: Counter, histogram: Counter) -> list[CompiledMelody]:
    """Quantize every note once, then extract each subsequence's melodies (and their transpositions)."""
    start, end, pitch, velocity, instrument, drum = notes
    spq, subs = settings.steps_per_quarter, len(splits) - 1
    quantize = np.array([not isinstance(c, str) for c in checked])
    steps_per_second = np.array([1.0 if isinstance(c, str) else spq * c[2] / 60.0 for c in checked])
    if (sequence.control_changes or sequence.text_annotations) \
            and not sequence.total_time * steps_per_second.max() < MAX_EXACT_STEP:
        raise _Fallback  # a carried pedal or chord event's step may not fit the proto's int64
    qs = np.empty(len(start), np.int64)
    qe = np.empty(len(start), np.int64)
    sub_info = np.empty((4, subs), np.int64)
    status, order, sub = place_and_quantize(start, end, pitch, instrument, drum, np.array(splits),
                                            steps_per_second, quantize, MAX_EXACT_STEP, qs, qe, sub_info)
    if status == 1:
        raise _Fallback
    if status == 2:
        order = np.lexsort((start, -pitch, qs, instrument, np.where(sub < 0, subs, sub)))
    negative, low, high, counts = sub_info.tolist()
    out: list[CompiledMelody] = []
    bound = 0
    for k in range(subs):
        rows = order[bound:bound + counts[k]]
        bound += counts[k]
        if isinstance(checked[k], str):
            stats[checked[k]] += 1
            continue
        if negative[k]:
            stats["sequences_discarded_because_negative_time"] += 1
            continue
        numerator, denominator, _qpm = checked[k]
        steps_per_bar_float = spq * (4.0 / denominator * numerator)
        if steps_per_bar_float < 1:
            # e.g. a numerator of -1 passes note-seq's checks and would make extraction loop forever
            stats["sequences_discarded_because_bad_time_signature"] += 1
            continue
        if steps_per_bar_float * max(settings.min_bars, settings.gap_bars, 1) >= MAX_EXACT_STEP:
            raise _Fallback  # bar arithmetic would overflow the kernels' int64
        out += _transpositions(k, rows, qs, qe, pitch, velocity, instrument, drum, start,
                               low[k] if low[k] <= high[k] else None, high[k],
                               steps_per_bar_float, settings, stats, histogram)
    return out


def _run_kernel(rows, shift, qs, qe, pitch, velocity, instrument, drum, steps_per_bar, settings):
    n = len(rows)
    meta = np.empty((n, 4), np.int64)
    counters = np.zeros(4, np.int64)
    capacity = 4096
    while True:
        events = np.empty(capacity, np.int8)
        counters[:] = 0
        status, kept, needed = extract_melodies_kernel(
            rows, shift, qs, qe, pitch, velocity, instrument, drum, steps_per_bar,
            settings.gap_bars * steps_per_bar, settings.filter_drums, settings.ignore_polyphonic_notes,
            steps_per_bar * settings.min_bars, settings.max_steps_truncate, settings.min_unique_pitches,
            meta, events, counters)
        if status != 2:
            break
        capacity = max(2 * capacity, needed)
    if status == 1:
        return None
    return meta[:kept].tolist(), events, counters.tolist()


_BUCKETS: dict = {}


def _bucket(edges, bars):
    label = _BUCKETS.get((edges, bars))
    if label is None:
        label = _BUCKETS[(edges, bars)] = _histogram_bucket(edges, bars)
        if len(_BUCKETS) > 100_000:
            _BUCKETS.clear()
    return label


def _transpositions(sub_index, rows, qs, qe, pitch, velocity, instrument, drum, start, low, high,
                    steps_per_bar_float, settings, stats, histogram):
    out = []
    spq = settings.steps_per_quarter
    steps_per_bar = int(steps_per_bar_float)
    edges = settings.histogram_edges
    # With drums filtered, a shift moves every melody note alike, so one extraction serves all shifts.
    shared = None
    for amount in settings.transpositions:
        if low is not None and (low + amount < 0 or high + amount > 127):
            stats["skipped_due_to_range_exceeded"] += 1
            continue
        stats["transpositions_generated"] += 1
        if len(rows) == 0:
            continue
        if steps_per_bar_float % 1 != 0:
            stats["non_integer_steps_per_bar"] += 1
            continue
        if shared is None or not settings.filter_drums:
            ordered = rows
            if amount and not settings.filter_drums and drum[rows].any():
                # Drums keep their pitch while the others move: the (step, -pitch) order may change.
                placed = np.sort(rows)  # proto order, under the placement order's start-time key
                shifted = np.where(drum[placed], pitch[placed], pitch[placed] + amount)
                ordered = placed[np.lexsort((start[placed], -shifted, qs[placed], instrument[placed]))]
            found = _run_kernel(ordered, amount, qs, qe, pitch, velocity, instrument, drum, steps_per_bar,
                                settings)
            shared = (amount, found)
        base, found = shared
        if found is None:
            stats["sequences_discarded_because_bad_notes"] += 1
            continue
        meta, events, counters = found
        for name, value in zip(COUNTER_NAMES, counters):
            if value:
                stats[name] += value
        delta = amount - base
        for i, (inst, start_step, length, offset) in enumerate(meta):
            chunk = events[offset:offset + length]
            if delta:
                chunk = np.where(chunk >= 0, chunk.astype(np.int64) + delta, chunk)
            histogram[_bucket(edges, length // steps_per_bar)] += 1
            out.append(CompiledMelody(sub_index, amount, inst, i, tuple(chunk.tolist()), steps_per_bar, spq,
                                  start_step, start_step + length))
    return out
