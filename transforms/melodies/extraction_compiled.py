"""A fast twin of ``extraction_reference.sequence_to_melodies``: same melodies, same counters, no proto copies.

Why: the reference spends nearly all its time in note-seq's proto plumbing (a deep copy per subsequence,
quantization on proto fields, a re-filter and re-sort of the notes for every ``from_quantized_sequence``),
about 3 ms a tune.  Here the notes are read once into arrays (from the wire bytes: upb's per-attribute
access alone costs more than the rest), and note-seq 0.0.5's split, quantization and melody rules are
replayed on them with the same float64 operations in the same order, so every step index, every event and
every counter is identical.  The per-note rules are sequential (each note is tested against the last one
kept), so they run as numba kernels, as ``midi_fast`` does; numba comes with note-seq (through librosa).

``sequence_to_melodies`` stays the oracle: any input this module does not reproduce by construction
(non-finite times, tempos <= 0, an already-quantized input, drum pitches outside 0..127 with drums kept,
steps or bars too large for exact int64 arithmetic, and the size guards' refusals) is handed to it whole
and its result converted, so the contract holds for every input; only the speed differs.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from dataclasses import dataclass

import numpy as np
from numba import njit

from melodyflow.transforms.melodies.extraction_reference import MelodySettings, _histogram_bucket, sequence_to_melodies

MELODY_NOTE_OFF = -1
MELODY_NO_EVENT = -2
_DEFAULT_QPM = 120.0
# Beyond this, ``int(x * steps_per_second + 0.5)`` on float64 is no longer what int64 arithmetic gives.
_MAX_EXACT_STEP = float(2**52)


@dataclass(frozen=True, slots=True)
class FastMelody:
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


def from_reference(sequence, settings: MelodySettings) -> tuple[list[FastMelody], Counter, Counter]:
    """The reference's answer in FastMelody form (the fallback, and a convenience for tests)."""
    melodies, stats, histogram = sequence_to_melodies(sequence, settings)
    return [FastMelody(m.subsequence, m.transposition, m.instrument, m.index, tuple(m.melody),
                       m.melody.steps_per_bar, m.melody.steps_per_quarter, m.melody.start_step,
                       m.melody.end_step) for m in melodies], stats, histogram


def fast_sequence_to_melodies(sequence, settings: MelodySettings,
                              serialized: bytes | None = None) -> tuple[list[FastMelody], Counter, Counter]:
    """``sequence_to_melodies`` with FastMelody results: equal events, provenance, stats and histogram.

    Equality is exact for every input (stats and histogram have the same keys and values, melodies come
    in the same order); exceptions the reference raises (e.g. an already-quantized input) are raised by
    the reference itself, through the fallback.

    ``serialized``, when given, must be the bytes ``sequence`` was parsed from (or its serialization): the
    notes are read from it instead of re-serializing the message.
    """
    try:
        return _fast(sequence, settings, serialized)
    except _Fallback:
        return from_reference(sequence, settings)


# ---------------------------------------------------------------------------------------------------
# Reading the notes


_NOTE_FIELDS = operator.attrgetter("start_time", "end_time", "pitch", "velocity", "instrument", "is_drum")


def _notes_by_attribute(notes):
    rows = list(map(_NOTE_FIELDS, notes))
    if not rows:
        empty_i = np.zeros(0, np.int64)
        return np.zeros(0), np.zeros(0), empty_i, empty_i, empty_i, np.zeros(0, bool)
    table = np.array(rows, dtype=np.float64)
    # int32 fields are exact in float64.
    return (table[:, 0].copy(), table[:, 1].copy(), table[:, 2].astype(np.int64),
            table[:, 3].astype(np.int64), table[:, 4].astype(np.int64), table[:, 5] != 0)


@njit(cache=True)
def _varint(data, pos, stop):
    value = np.uint64(0)
    shift = np.uint64(0)
    for _ in range(10):
        if pos >= stop:
            return value, -1
        byte = data[pos]
        pos += 1
        value |= np.uint64(byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += np.uint64(7)
    return value, -1


@njit(cache=True)
def _decode_notes(data, start, end, pitch, velocity, instrument, drum):
    """Fills the arrays from a serialized NoteSequence; returns the note count, or -1 when unsure.

    Only wire-format facts are used (any field order, unknown fields skipped, last value wins), and any
    int32 outside 0..2**31-1 or malformed record gives -1, so the caller reads attributes instead.
    """
    size = len(data)
    capacity = len(start)
    scratch = np.empty(1, np.uint64)
    pos = 0
    count = 0
    while pos < size:
        tag, pos = _varint(data, pos, size)
        if pos < 0:
            return -1
        wire = tag & np.uint64(7)
        if tag == np.uint64(0x42):
            length, pos = _varint(data, pos, size)
            if pos < 0 or length > np.uint64(size - pos) or count >= capacity:
                return -1
            stop = pos + np.int64(length)
            note_start = 0.0
            note_end = 0.0
            note_pitch = 0
            note_velocity = 0
            note_instrument = 0
            note_drum = False
            while pos < stop:
                if data[pos] < 0x80 and pos + 1 < stop and data[pos + 1] < 0x80:
                    # One-byte tag and value, the usual case: pitch, velocity, instrument, program, is_drum.
                    single = data[pos]
                    if single == 0x08:
                        note_pitch = data[pos + 1]
                        pos += 2
                        continue
                    if single == 0x10:
                        note_velocity = data[pos + 1]
                        pos += 2
                        continue
                    if single == 0x38:
                        note_instrument = data[pos + 1]
                        pos += 2
                        continue
                    if single == 0x40:
                        pos += 2
                        continue
                    if single == 0x48:
                        note_drum = data[pos + 1] != 0
                        pos += 2
                        continue
                ftag, pos = _varint(data, pos, stop)
                if pos < 0:
                    return -1
                field = ftag >> np.uint64(3)
                fwire = ftag & np.uint64(7)
                if fwire == 0:
                    value, pos = _varint(data, pos, stop)
                    if pos < 0:
                        return -1
                    if field == 1 or field == 2 or field == 7:
                        if value > np.uint64(0x7FFFFFFF):
                            return -1
                        if field == 1:
                            note_pitch = np.int64(value)
                        elif field == 2:
                            note_velocity = np.int64(value)
                        else:
                            note_instrument = np.int64(value)
                    elif field == 9:
                        note_drum = value != np.uint64(0)
                    elif field == 3 or field == 4:
                        return -1
                elif fwire == 1:
                    if pos + 8 > stop:
                        return -1
                    if field == 3 or field == 4:
                        bits = np.uint64(0)
                        for k in range(8):
                            bits |= np.uint64(data[pos + k]) << np.uint64(8 * k)
                        scratch[0] = bits
                        if field == 3:
                            note_start = scratch.view(np.float64)[0]
                        else:
                            note_end = scratch.view(np.float64)[0]
                    elif field == 1 or field == 2 or field == 7 or field == 9:
                        return -1
                    pos += 8
                elif fwire == 2:
                    if field == 1 or field == 2 or field == 3 or field == 4 or field == 7 or field == 9:
                        return -1
                    length, pos = _varint(data, pos, stop)
                    if pos < 0 or length > np.uint64(stop - pos):
                        return -1
                    pos += np.int64(length)
                elif fwire == 5:
                    if field == 1 or field == 2 or field == 3 or field == 4 or field == 7 or field == 9:
                        return -1
                    pos += 4
                else:
                    return -1
            if pos != stop:
                return -1
            start[count] = note_start
            end[count] = note_end
            pitch[count] = note_pitch
            velocity[count] = note_velocity
            instrument[count] = note_instrument
            drum[count] = note_drum
            count += 1
        elif wire == 0:
            _, pos = _varint(data, pos, size)
            if pos < 0:
                return -1
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(data, pos, size)
            if pos < 0 or length > np.uint64(size - pos):
                return -1
            pos += np.int64(length)
        elif wire == 5:
            pos += 4
        else:
            return -1
        if pos > size:
            return -1
    return count


def _notes_from_wire(data: bytes, count: int):
    start = np.empty(count)
    end = np.empty(count)
    pitch = np.empty(count, np.int64)
    velocity = np.empty(count, np.int64)
    instrument = np.empty(count, np.int64)
    drum = np.empty(count, np.bool_)
    found = _decode_notes(np.frombuffer(data, np.uint8), start, end, pitch, velocity, instrument, drum)
    if found != count:
        return None
    return start, end, pitch, velocity, instrument, drum


def _read_notes(sequence, serialized=None):
    count = len(sequence.notes)
    if count:
        decoded = _notes_from_wire(sequence.SerializeToString() if serialized is None else serialized, count)
        if decoded is not None:
            return decoded
    return _notes_by_attribute(sequence.notes)


@njit(cache=True)
def _note_flags(start, end, pitch, drum):
    """(every note a drum, every time finite, a drum pitch outside 0..127)."""
    all_drums = True
    finite = True
    wild_drum = False
    for i in range(len(start)):
        if drum[i]:
            if pitch[i] < 0 or pitch[i] > 127:
                wild_drum = True
        else:
            all_drums = False
        if not (np.isfinite(start[i]) and np.isfinite(end[i])):
            finite = False
    return all_drums, finite, wild_drum


# ---------------------------------------------------------------------------------------------------
# note-seq's split on time changes and quantization checks, on plain tuples


def _split_times(time_signatures, tempos, total_time):
    """``split_note_sequence_on_time_changes``' split times (skip_splits_inside_notes=False)."""
    numerator, denominator, qpm = 4, 4, _DEFAULT_QPM
    changes = sorted([(t, 0, n, d) for t, n, d in time_signatures] + [(t, 1, q, 0) for t, q in tempos],
                     key=lambda change: change[0])
    splits = [0.0]
    for time, kind, a, b in changes:
        if not time < total_time:
            continue
        if kind == 0:
            if a == numerator and b == denominator:
                continue
        elif a == qpm:
            continue
        if time > splits[-1]:
            splits.append(time)
        if kind == 0:
            numerator, denominator = a, b
        else:
            qpm = a
    if total_time > splits[-1]:
        splits.append(total_time)
    return splits


def _distribute(events, splits):
    """``_extract_subsequences``' placement of stateful events: per subsequence, ``(time, value)`` in order."""
    count = len(splits)
    containers = [[] for _ in range(count - 1)]
    previous = None
    index = -1
    for event in sorted(events, key=lambda e: e[0]):
        time = event[0]
        if time <= splits[0]:
            previous = event
            continue
        while index < count - 1 and time > splits[index + 1]:
            index += 1
            if index == count - 1:
                break
            if previous is not None:
                containers[index].append((0.0,) + previous[1:])
        if index == count - 1:
            break
        if time < splits[index + 1]:
            containers[index].append((time - splits[index],) + event[1:])
        previous = event
    while index < count - 2:
        index += 1
        if previous is not None:
            containers[index].append((0.0,) + previous[1:])
    return containers


def _is_power_of_2(x):
    return x and not x & (x - 1)


def _check_time_changes(time_signatures, tempos):
    """``quantize_note_sequence``' checks in its order: the counter to bump, or ``(num, den, qpm)``."""
    if time_signatures:
        ordered = sorted(time_signatures, key=lambda ts: ts[0])
        if ordered[0][0] != 0 and not (ordered[0][1] == 4 and ordered[0][2] == 4):
            return "sequences_discarded_because_multiple_time_signatures"
        first = time_signatures[0]
        for ts in ordered[1:]:
            if ts[1] != first[1] or ts[2] != first[2]:
                return "sequences_discarded_because_multiple_time_signatures"
        numerator, denominator = first[1], first[2]
    else:
        numerator, denominator = 4, 4
    if not _is_power_of_2(denominator) or numerator == 0:
        return "sequences_discarded_because_bad_time_signature"
    if tempos:
        ordered = sorted(tempos, key=lambda t: t[0])
        if ordered[0][0] != 0 and ordered[0][1] != _DEFAULT_QPM:
            return "sequences_discarded_because_multiple_tempos"
        qpm = tempos[0][1]
        for tempo in ordered[1:]:
            if tempo[1] != qpm:
                return "sequences_discarded_because_multiple_tempos"
    else:
        qpm = _DEFAULT_QPM
    return numerator, denominator, qpm


# ---------------------------------------------------------------------------------------------------
# _extract_subsequences' note placement + quantize_note_sequence's _quantize_notes


@njit(cache=True)
def _place_and_quantize(start, end, pitch, instrument, drum, splits, steps_per_second, quantize, limit,
                        qs, qe, info):
    """Places and quantizes every note as note-seq does, then orders them for extraction.

    A note belongs where ``splits[i] <= start < splits[i+1]`` (negative starts are dropped), its times
    are shifted by ``splits[i]`` and its end clipped to ``splits[i+1]``; then ``int(t * sps + 0.5)``,
    an end equal to its start moves one step later.  ``info`` rows per subsequence: a step went negative
    (NegativeTimeError), lowest and highest non-drum pitch (for transposition), note count.

    The order is (subsequence, instrument, step, -pitch), ties in placement order (start time, then
    proto order), packed into one int64 key for one argsort.  Returns (status, order, sub):
    status 0 ok, 1 a step too large for exact float64 → int64 (the caller falls back), 2 the key does
    not fit or has ties (the caller sorts with np.lexsort).
    """
    n = len(start)
    last = len(splits) - 1
    subs = last
    sub = np.empty(n, np.int64)
    for k in range(subs):
        info[0, k] = 0
        info[1, k] = 2**62
        info[2, k] = -(2**62)
        info[3, k] = 0
    top_instrument = 0
    top_step = 0
    plain = True
    for i in range(n):
        s = start[i]
        qs[i] = 0
        qe[i] = 0
        if not s >= splits[0] or not s < splits[last]:
            sub[i] = -1
            continue
        if last == 1:
            k = 0
        else:
            k = np.searchsorted(splits, s, side="right") - 1
        sub[i] = k
        info[3, k] += 1
        if not drum[i]:
            if pitch[i] < info[1, k]:
                info[1, k] = pitch[i]
            if pitch[i] > info[2, k]:
                info[2, k] = pitch[i]
        if instrument[i] < 0 or pitch[i] < 0 or pitch[i] > 127:
            plain = False
        elif instrument[i] > top_instrument:
            top_instrument = instrument[i]
        if not quantize[k]:
            continue
        offset = splits[k]
        e = end[i]
        if splits[k + 1] < e:
            e = splits[k + 1]
        fs = (s - offset) * steps_per_second[k] + 0.5
        fe = (e - offset) * steps_per_second[k] + 0.5
        if not (abs(fs) < limit and abs(fe) < limit):
            return 1, sub, sub
        a = np.int64(fs)
        b = np.int64(fe)
        if a == b:
            b += 1
        qs[i] = a
        qe[i] = b
        if a < 0 or b < 0:
            info[0, k] = 1
        if a > top_step:
            top_step = a
    if not plain:
        return 2, sub, sub
    step_bits = 1
    while (1 << step_bits) <= top_step:
        step_bits += 1
    instrument_bits = 1
    while (1 << instrument_bits) <= top_instrument:
        instrument_bits += 1
    sub_bits = 1
    while (1 << sub_bits) <= subs:
        sub_bits += 1
    if sub_bits + instrument_bits + step_bits + 7 > 62:
        return 2, sub, sub
    key = np.empty(n, np.int64)
    for i in range(n):
        k = sub[i] if sub[i] >= 0 else subs
        if k == subs:
            key[i] = k << (instrument_bits + step_bits + 7)
        else:
            key[i] = (((k << instrument_bits | instrument[i]) << step_bits | qs[i]) << 7) | (127 - pitch[i])
    order = np.argsort(key)  # unstable is fine: placed notes' keys are checked distinct below
    for i in range(1, n):
        if key[order[i]] == key[order[i - 1]] and sub[order[i]] >= 0:
            return 2, order, sub  # equal keys: placement order needs the start times
    return 0, order, sub


# ---------------------------------------------------------------------------------------------------
# Melody.from_quantized_sequence + extract_melodies, over one quantized (and transposed) subsequence

_SHORT, _TRUNCATED, _FEW_PITCHES, _POLYPHONIC = range(4)
_COUNTER_NAMES = ("melodies_discarded_too_short", "melodies_truncated", "melodies_discarded_too_few_pitches",
                  "polyphonic_tracks_discarded")


@njit(cache=True)
def _melodies(rows, shift, qs, qe, pitch, velocity, instrument, drum, steps_per_bar, gap_steps, filter_drums,
              ignore_polyphonic, min_length, max_length, min_unique, meta, events, counters):
    """One subsequence's notes ``rows``, sorted by (instrument, quantized start, -pitch, placement order).

    Replays ``Melody.from_quantized_sequence`` note by note (``_add_note``'s truncate-and-overwrite, the
    polyphony and gap tests against the last added note) and ``extract_melodies``' loop and filters, with
    non-drum pitches moved by ``shift``.  Kept melodies go to ``meta`` rows (instrument, start_step, length,
    offset into ``events``).  Returns (status, melodies, needed): status 0 ok, 1 BadNoteError, 2 ``events``
    too small (``needed``).
    """
    n = len(rows)
    kept = 0
    used = 0
    a = 0
    seen = np.zeros(12, np.bool_)
    while a < n:
        current = instrument[rows[a]]
        b = a
        while b < n and instrument[rows[b]] == current:
            b += 1
        first = a
        search = 0
        while True:
            while first < b and qs[rows[first]] < search:
                first += 1
            if first == b:
                break  # no notes left: an empty melody ends this instrument
            melody_start = qs[rows[first]] - (qs[rows[first]] - search) % steps_per_bar
            length = 0  # len(events) while building, final NOTE_OFF included
            added = False
            last_on = 0
            last_off = 0
            polyphonic = False
            for j in range(first, b):
                r = rows[j]
                if filter_drums and drum[r]:
                    continue
                if velocity[r] == 0:
                    continue
                on = qs[r] - melody_start
                off = qe[r] - melody_start
                if added:
                    if on == last_on:
                        if ignore_polyphonic:
                            continue  # notes are sorted by pitch descending: the highest is in
                        polyphonic = True
                        break
                    if on - last_off >= gap_steps:
                        break
                if on >= off:
                    return 1, kept, 0
                # Steps past max_length are cut before anything reads them, so they are not written.
                if used + min(off + 1, max_length) > len(events):
                    return 2, kept, used + min(off + 1, max_length)
                for t in range(min(length, max_length), min(on, max_length)):
                    events[used + t] = MELODY_NO_EVENT
                if on < max_length:
                    events[used + on] = pitch[r] if drum[r] else pitch[r] + shift
                for t in range(on + 1, min(off, max_length)):
                    events[used + t] = MELODY_NO_EVENT
                if off < max_length:
                    events[used + off] = MELODY_NOTE_OFF
                length = off + 1
                added = True
                last_on = on
                last_off = off
            if polyphonic:
                counters[_POLYPHONIC] += 1
                break
            if not added:
                break
            length -= 1  # strip the final NOTE_OFF
            end_step = melody_start + length
            next_search = end_step + (steps_per_bar - end_step % steps_per_bar) % steps_per_bar
            if next_search <= search:
                break
            search = next_search
            if length < min_length:
                counters[_SHORT] += 1
                continue
            if length > max_length:
                length = max_length
                counters[_TRUNCATED] += 1
            seen[:] = False
            unique = 0
            for t in range(length):
                e = events[used + t]
                if e >= 0 and not seen[e % 12]:
                    seen[e % 12] = True
                    unique += 1
            if unique < min_unique:
                counters[_FEW_PITCHES] += 1
                continue
            meta[kept, 0] = current
            meta[kept, 1] = melody_start
            meta[kept, 2] = length
            meta[kept, 3] = used
            kept += 1
            used += length
        a = b
    return 0, kept, 0


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels now rather than on the first sequence."""
    from melodyflow.transforms.melodies.proto import note_sequence_class

    seq = note_sequence_class()(total_time=1.0)
    seq.notes.add(pitch=60, velocity=80, start_time=0.0, end_time=1.0)
    fast_sequence_to_melodies(seq, MelodySettings(min_bars=0, min_unique_pitches=0))


# ---------------------------------------------------------------------------------------------------


def _finite(values) -> bool:
    return all(math.isfinite(v) for v in values)


def _fast(sequence, settings: MelodySettings, serialized=None):
    stats: Counter = Counter({"sequences_read": 1})
    histogram: Counter = Counter()
    count = len(sequence.notes)
    if count > settings.max_notes or not sequence.total_time <= settings.max_seconds:
        raise _Fallback  # rare, and the reference answers it without quantizing anything
    spq = settings.steps_per_quarter
    if spq > 2**31 - 1:
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
    total_time = sequence.total_time

    start, end, pitch, velocity, instrument, drum = _read_notes(sequence, serialized)
    if count == 0:
        stats["sequences_empty"] += 1
    else:
        all_drums, finite, wild_drum = _note_flags(start, end, pitch, drum)
        if all_drums:
            stats["sequences_drums_only"] += 1
        if not finite:
            raise _Fallback  # NaN start times sort unpredictably in note-seq
        if wild_drum and not settings.filter_drums:
            raise _Fallback  # a negative drum pitch would read as NOTE_OFF in the reference's event scan

    out: list[FastMelody] = []
    if len(time_signatures) <= 1 and len(tempos) <= 1 and all(t[0] <= 0.0 for t in time_signatures) \
            and all(t[0] <= 0.0 for t in tempos):
        # The usual file: at most one of each, at the start; nothing splits, and each becomes the state
        # at time 0 of the single subsequence (what the general path below computes, without its cost).
        splits = [0.0, total_time] if total_time > 0.0 else [0.0]
        checked = [_check_time_changes([(0.0,) + t[1:] for t in time_signatures],
                                       [(0.0,) + t[1:] for t in tempos])]
    else:
        splits = _split_times(time_signatures, tempos, total_time)
        sub_ts = _distribute(time_signatures, splits)
        sub_tempos = _distribute(tempos, splits)
        checked = [_check_time_changes(sub_ts[k], sub_tempos[k]) for k in range(len(splits) - 1)]
    subs = len(splits) - 1
    if subs > 0:
        quantize = np.array([not isinstance(c, str) for c in checked])
        steps_per_second = np.array([1.0 if isinstance(c, str) else spq * c[2] / 60.0 for c in checked])
        if (sequence.control_changes or sequence.text_annotations) \
                and not total_time * steps_per_second.max() < _MAX_EXACT_STEP:
            raise _Fallback  # a carried pedal or chord event's step may not fit the proto's int64
        qs = np.empty(count, np.int64)
        qe = np.empty(count, np.int64)
        sub_info = np.empty((4, subs), np.int64)
        status, order, sub = _place_and_quantize(start, end, pitch, instrument, drum, np.array(splits),
                                                 steps_per_second, quantize, _MAX_EXACT_STEP, qs, qe, sub_info)
        if status == 1:
            raise _Fallback
        if status == 2:
            order = np.lexsort((start, -pitch, qs, instrument, np.where(sub < 0, subs, sub)))
        negative, low, high, counts = sub_info.tolist()
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
            if steps_per_bar_float * max(settings.min_bars, settings.gap_bars, 1) >= _MAX_EXACT_STEP:
                raise _Fallback  # bar arithmetic would overflow the kernels' int64
            out += _transpositions(k, rows, qs, qe, pitch, velocity, instrument, drum, start,
                                   low[k] if low[k] <= high[k] else None, high[k],
                                   steps_per_bar_float, settings, stats, histogram)
    stats["melodies_extracted"] += len(out)
    if not out:
        stats["sequences_without_melodies"] += 1
    return out, stats, histogram


def _run_kernel(rows, shift, qs, qe, pitch, velocity, instrument, drum, steps_per_bar, settings):
    n = len(rows)
    meta = np.empty((n, 4), np.int64)
    counters = np.zeros(4, np.int64)
    capacity = 4096
    while True:
        events = np.empty(capacity, np.int8)
        counters[:] = 0
        status, kept, needed = _melodies(
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
        for name, value in zip(_COUNTER_NAMES, counters):
            if value:
                stats[name] += value
        delta = amount - base
        for i, (inst, start_step, length, offset) in enumerate(meta):
            chunk = events[offset:offset + length]
            if delta:
                chunk = np.where(chunk >= 0, chunk.astype(np.int64) + delta, chunk)
            histogram[_bucket(edges, length // steps_per_bar)] += 1
            out.append(FastMelody(sub_index, amount, inst, i, tuple(chunk.tolist()), steps_per_bar, spq,
                                  start_step, start_step + length))
    return out
