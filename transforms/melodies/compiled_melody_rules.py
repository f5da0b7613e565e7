"""note-seq's monophonic melody extraction rules on quantized note arrays (compiled): each note is tested
against the last one kept, so the loop is sequential."""

from __future__ import annotations

import numpy as np
from numba import njit


MELODY_NOTE_OFF = -1


MELODY_NO_EVENT = -2


_SHORT, _TRUNCATED, _FEW_PITCHES, _POLYPHONIC = range(4)  # indices into COUNTER_NAMES
COUNTER_NAMES = ("melodies_discarded_too_short", "melodies_truncated", "melodies_discarded_too_few_pitches",
                  "polyphonic_tracks_discarded")


# One compiled pass over a subsequence's notes: its rules are sequential (each note against the last kept),
# and a call per step would cost more than the work, so the loop stays whole (longer than 80 lines).
@njit(cache=True)
def extract_melodies_kernel(rows, shift, qs, qe, pitch, velocity, instrument, drum, steps_per_bar, gap_steps, filter_drums,
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
