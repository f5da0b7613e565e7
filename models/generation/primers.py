"""Primer MIDI → primer melody for generation.

Magenta's generator reads instrument 0 only and crashes on primers with several instruments. Here the
melody track is chosen by a documented rule: among non-drum instruments, the one whose monophonic line
(highest note where notes start together) has the most note-ons; ties go to more distinct pitches,
then to the lower instrument number. A primer whose tempo or time signature changes keeps the first
ones (a primer is a few bars; quantizing must not fail on a tempo ramp).

A primer can be a window of a longer file (:class:`PrimerWindow`, ``--primer-bars`` and
``--primer-start-bar``): whole bars, cut on the bar lines of the file's own (first) time signature and
tempo, the melody then chosen within the window by the same rule. A whole song is a primer only up to
``--num-steps``; a window of it is the usual way to prime with it (Magenta's users asked for this in
magenta#267 and #516).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

DEFAULT_QPM = 120.0
# A primer is a few bars; anything far bigger is a mistake or an attack, refused before parsing.
MAX_PRIMER_BYTES = 1024 * 1024
MAX_PRIMER_NOTES = 20_000
MAX_PRIMER_SECONDS = 3600.0


class PrimerError(ValueError):
    """A primer file cannot provide a melody; the message says why."""


@dataclass(frozen=True)
class PrimerWindow:
    """``bars`` whole bars of a primer file from bar ``start_bar`` (counted from 1 at the file's start);
    ``start_bar=None``: from the bar of the first pitched note (leading silence is skipped)."""

    bars: int
    start_bar: int | None = None

    def __post_init__(self) -> None:
        if self.bars < 1 or (self.start_bar is not None and self.start_bar < 1):
            raise ValueError("--primer-bars and --primer-start-bar must be at least 1")

    def describe(self) -> str:
        start = "the first note's bar" if self.start_bar is None else f"bar {self.start_bar}"
        return f"{self.bars} bar(s) from {start}"


@dataclass
class Primer:
    melody: Any  # note_seq.Melody
    qpm: float
    instrument: int | None
    program: int


def primer_id(relative_path: str) -> str:
    """A filesystem-safe, collision-free id: sanitized stem plus a hash of the full path."""
    stem = relative_path.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:40] or "primer"
    return f"{safe}-{hashlib.sha1(relative_path.encode('utf-8')).hexdigest()[:8]}"


def _first_tempo_and_meter(sequence):
    """A copy keeping only the first tempo and time signature, moved to time 0."""
    trimmed = type(sequence).FromString(sequence.SerializeToString())
    for field_name in ("tempos", "time_signatures"):
        items = sorted(getattr(trimmed, field_name), key=lambda x: x.time)[:1]
        kept = [type(i).FromString(i.SerializeToString()) for i in items]
        trimmed.ClearField(field_name)
        for item in kept:
            item.time = 0.0
            getattr(trimmed, field_name).add().CopyFrom(item)
    return trimmed


def _quantize(sequence, steps_per_quarter: int):
    from note_seq import sequences_lib

    try:
        return sequences_lib.quantize_note_sequence(sequence, steps_per_quarter)
    except (sequences_lib.MultipleTempoError, sequences_lib.MultipleTimeSignatureError):
        return sequences_lib.quantize_note_sequence(_first_tempo_and_meter(sequence), steps_per_quarter)


def bar_seconds(sequence) -> float:
    """Length of a bar in seconds under the sequence's first tempo and time signature (4/4, 120 qpm
    when it has none)."""
    qpm = min(sequence.tempos, key=lambda t: t.time).qpm if sequence.tempos else DEFAULT_QPM
    ts = min(sequence.time_signatures, key=lambda t: t.time) if sequence.time_signatures else None
    quarters = ts.numerator * 4.0 / ts.denominator if ts and ts.numerator > 0 and ts.denominator > 0 else 4.0
    return quarters * 60.0 / qpm


def window_sequence(sequence, window: PrimerWindow):
    """The window's bars of ``sequence``, shifted to start at 0; notes that start before the window
    are left out, notes that outlast it are cut at its end."""
    from note_seq import sequences_lib

    trimmed = _first_tempo_and_meter(sequence)
    bar = bar_seconds(trimmed)
    pitched = [n.start_time for n in trimmed.notes if not n.is_drum]
    if not pitched:
        raise PrimerError("the primer has no pitched (non-drum) notes")
    bars_in_file = max(1, math.ceil(trimmed.total_time / bar - 1e-9))
    start_bar = window.start_bar if window.start_bar is not None else int(min(pitched) / bar + 1e-9) + 1
    if start_bar > bars_in_file:
        raise PrimerError(f"--primer-start-bar {start_bar} is past the end of the primer, which has "
                          f"{bars_in_file} bar(s)")
    start = (start_bar - 1) * bar
    excerpt = sequences_lib.extract_subsequence(trimmed, start, start + window.bars * bar)
    if not any(not n.is_drum for n in excerpt.notes):
        raise PrimerError(f"bars {start_bar}-{start_bar + window.bars - 1} of the primer have no pitched notes "
                          "starting in them; choose other bars with --primer-start-bar")
    return excerpt


def primer_from_midi(data: bytes, steps_per_quarter: int = 4, window: PrimerWindow | None = None) -> Primer:
    """The primer melody of a MIDI file, or of a window of it."""
    from note_seq import midi_io, sequences_lib
    from note_seq.melodies_lib import Melody

    from melodyflow.transforms.midi.scan import count_note_ons

    if not data:
        raise PrimerError("the primer is empty (0 bytes)")
    if len(data) > MAX_PRIMER_BYTES:
        raise PrimerError(f"the primer is {len(data)} bytes, over the {MAX_PRIMER_BYTES}-byte limit")
    notes = count_note_ons(data, MAX_PRIMER_NOTES)
    if notes is not None and notes > MAX_PRIMER_NOTES:
        raise PrimerError(f"the primer has more than {MAX_PRIMER_NOTES} notes")
    try:
        sequence = midi_io.midi_to_note_sequence(data)
    except midi_io.MIDIConversionError as exc:
        why = str(exc).rstrip(": ") or type(exc).__name__  # note-seq's messages may end in an empty reason
        if "EOFError" in why:
            why = "the data ends early (a truncated file)"
        raise PrimerError(f"not a readable MIDI file: {why}") from None
    if sequence.total_time > MAX_PRIMER_SECONDS:
        raise PrimerError(f"the primer lasts {sequence.total_time:.0f} s, over the {MAX_PRIMER_SECONDS:.0f}-s limit")
    qpm = sequence.tempos[0].qpm if sequence.tempos else DEFAULT_QPM
    if not any(not n.is_drum for n in sequence.notes):
        raise PrimerError("the primer has no pitched (non-drum) notes")
    if window is not None:
        sequence = window_sequence(sequence, window)
    try:
        quantized = _quantize(sequence, steps_per_quarter)
    except (sequences_lib.BadTimeSignatureError, sequences_lib.NegativeTimeError) as exc:
        raise PrimerError(f"the primer cannot be quantized: {exc}") from None
    candidates = []
    for instrument in sorted({n.instrument for n in quantized.notes if not n.is_drum}):
        melody = Melody()
        try:
            melody.from_quantized_sequence(quantized, instrument=instrument, gap_bars=10**6,
                                           ignore_polyphonic_notes=True, filter_drums=True)
        except Exception as exc:  # noqa: BLE001 - e.g. non-integer steps per bar
            raise PrimerError(f"no melody could be read from the primer: {exc}") from None
        onsets = [e for e in melody if e >= 0]
        if onsets:
            candidates.append((len(onsets), len(set(onsets)), -instrument, melody))
    if not candidates:
        raise PrimerError("the primer has no usable melody")
    _, _, neg_instrument, melody = max(candidates, key=lambda c: c[:3])
    program = next((n.program for n in sequence.notes if n.instrument == -neg_instrument), 0)
    return Primer(melody=melody, qpm=qpm, instrument=-neg_instrument, program=program)


def primer_from_events(events: list[int], qpm: float = DEFAULT_QPM) -> Primer:
    """``--primer-melody "[60, -2, 62, -2]"``: Magenta's event list (-2 no event, -1 note off)."""
    from note_seq.melodies_lib import Melody

    if not events or any(not isinstance(e, int) or e < -2 or e > 127 for e in events):
        raise PrimerError("a primer melody is a non-empty list of ints in -2..127 (-2 no event, -1 note off)")
    return Primer(melody=Melody(events), qpm=qpm, instrument=None, program=0)


def excerpt_midi(data: bytes, window: PrimerWindow) -> bytes:
    """A window of a MIDI file, as MIDI: a primer made from a tune, to write where people can hear it."""
    import io

    import note_seq
    from note_seq import midi_io

    try:
        sequence = midi_io.midi_to_note_sequence(data)
    except midi_io.MIDIConversionError as exc:
        raise PrimerError(f"not a readable MIDI file: {exc}") from None
    buf = io.BytesIO()
    note_seq.note_sequence_to_pretty_midi(window_sequence(sequence, window)).write(buf)
    return buf.getvalue()
