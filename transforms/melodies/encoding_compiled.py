"""note-seq's melody squash and encoders re-derived as array operations over a whole melody.

note-seq computes every step's input vector on its own, and KeyMelodyEncoderDecoder rebuilds the
whole prefix melody for each step (quadratic in length); over a corpus that dominates record building.
Every quantity those encoders read per step is a prefix scan of the event list (last note-on, last
non-rest event, running pitch-class counts, the three most recently used pitches), so one pass of
cumulative array operations yields all steps at once.  Each step is returned as its non-zero input
positions (every value is -1, 0 or 1) rather than a dense float row.

The arithmetic, tie-breaking (lowest key index on ties, every maximal key flagged in the key inputs,
round-half-even centring) and constants are copied from note-seq's ``melodies_lib`` /
``melody_encoder_decoder`` / ``encoder_decoder``; tests compare the resulting records byte for byte
with note-seq's own encoders.  Nothing depends on steps_per_bar/steps_per_quarter of the melody:
note-seq's encoders use its module constant ``DEFAULT_STEPS_PER_BAR`` (16) for lookbacks and bars.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from melodyflow.transforms.melodies.configs import MelodyConfig

NOTES_PER_OCTAVE = 12
MELODY_NOTE_OFF = -1
MELODY_NO_EVENT = -2
STEPS_PER_BAR = 16  # note_seq.constants.DEFAULT_STEPS_PER_BAR, hard-wired in its encoders
LOOKBACK_DISTANCES = (STEPS_PER_BAR, 2 * STEPS_PER_BAR)  # encoder_decoder.DEFAULT_LOOKBACK_DISTANCES
LOOKBACK_COUNTER_BITS = 5  # LookbackEventSequenceEncoderDecoder default
KEY_MELODY_COUNTER_BITS = 7  # KeyMelodyEncoderDecoder default
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
# NOTE_KEYS[note] = major keys containing that pitch class; as a 0/1 matrix [note, key].
NOTE_KEYS = tuple(tuple(j for j in range(12) if (i - j) % 12 in MAJOR_SCALE) for i in range(12))
KEY_MATRIX = np.zeros((NOTES_PER_OCTAVE, NOTES_PER_OCTAVE), dtype=np.int64)
for _note, _keys in enumerate(NOTE_KEYS):
    KEY_MATRIX[_note, list(_keys)] = 1


def _as_array(events) -> np.ndarray:
    if isinstance(events, (list, tuple)):
        try:
            return np.fromiter(events, dtype=np.int64, count=len(events))
        except (OverflowError, TypeError):
            pass
    return np.array(events, dtype=np.int64).ravel()


@lru_cache(maxsize=1024)
def _transposition(min_note: int, max_note: int, amount: int) -> tuple[np.ndarray, bool]:
    """Event table (indexed by event + 2) of note-seq's ``Melody.transpose(amount, min_note, max_note)``.

    Returns the table and whether every note lands in [min_note, max_note).
    """
    notes = np.arange(128) + amount
    below, above = notes < min_note, notes >= max_note  # both decided before folding, like its if/elif
    notes[below] = min_note + (notes[below] - min_note) % NOTES_PER_OCTAVE
    notes[above] = max_note - NOTES_PER_OCTAVE + (notes[above] - max_note) % NOTES_PER_OCTAVE
    table = np.r_[MELODY_NO_EVENT, MELODY_NOTE_OFF, notes]
    table.flags.writeable = False
    return table, bool(notes.min() >= min_note and notes.max() < max_note)


_OK, _OUT_OF_RANGE, _NO_NOTES = 0, 1, 2


@njit(cache=True)
def _squash_plan(ev, min_note, max_note, to_key, transpose_to_key, key_matrix):
    """One pass of :func:`squashed_events`' checks and sums, in place on ``ev``: ``(status, value)``.

    ``_OUT_OF_RANGE`` with the offending event (the lowest if below -2, else the highest); ``_NO_NOTES``
    with every event made a no-event; else ``_OK`` with the transposition amount, after turning the
    note-offs before the first note-on into no-events.  note-seq works on a float histogram and numpy
    scalars; counts are exact either way, the first maximal key wins either way, and ``np.rint`` rounds
    half to even like Python's ``round``.  (Compiled: a melody is a few hundred events, where a dozen
    numpy calls cost more than the work.)
    """
    lowest = highest = ev[0]
    for e in ev:
        lowest = min(lowest, e)
        highest = max(highest, e)
    if lowest < MELODY_NO_EVENT:
        return _OUT_OF_RANGE, lowest
    if highest > 127:
        return _OUT_OF_RANGE, highest
    if highest < 0:  # no notes: every note-off precedes the (absent) first note
        ev[:] = MELODY_NO_EVENT
        return _NO_NOTES, 0
    first = 0
    while ev[first] < 0:
        ev[first] = MELODY_NO_EVENT
        first += 1
    if not to_key:
        return _OK, 0
    counts = np.zeros(NOTES_PER_OCTAVE, dtype=np.int64)
    low = highest
    for i in range(first, ev.size):
        if ev[i] >= 0:
            counts[ev[i] % NOTES_PER_OCTAVE] += 1
            low = min(low, ev[i])
    melody_key, best = 0, -1
    for key in range(NOTES_PER_OCTAVE):
        score = 0
        for pitch_class in range(NOTES_PER_OCTAVE):
            score += counts[pitch_class] * key_matrix[pitch_class, key]
        if score > best:
            melody_key, best = key, score
    key_diff = transpose_to_key - melody_key
    melody_center = (low + highest) / 2
    target_center = (min_note + max_note - 1) / 2
    center_diff = target_center - (melody_center + key_diff)
    return _OK, key_diff + NOTES_PER_OCTAVE * int(np.rint(center_diff / float(NOTES_PER_OCTAVE)))


def squashed_events(events, min_note: int, max_note: int, transpose_to_key: int | None) -> np.ndarray:
    """``m = note_seq.Melody(events); m.squash(min_note, max_note, transpose_to_key)``'s events.

    That is: validate (-2..127), turn note-offs before the first note-on into no-events (as ``Melody``
    does), transpose to the key and centre of the range, and fold notes into [min_note, max_note) by
    octaves.  Raises ValueError where a note still lies outside the range (only possible when the
    range is narrower than an octave), as note-seq's one-hot encoding would (its key-melody encoder
    silently mis-encodes such notes instead).
    """
    ev = _as_array(events)
    if not ev.size:
        return ev
    status, amount = _squash_plan(ev, min_note, max_note, transpose_to_key is not None,
                                  transpose_to_key or 0, KEY_MATRIX)
    if status == _OUT_OF_RANGE:
        raise ValueError("Melody event out of range: %d" % amount)
    if status == _NO_NOTES:
        return ev
    table, in_range = _transposition(min_note, max_note, amount)
    ev = table[ev + 2]
    if not in_range and ev.size > 1:  # range narrower than an octave; a 1-event melody encodes nothing
        outside = np.flatnonzero((ev >= 0) & ((ev < min_note) | (ev >= max_note)))
        if outside.size:  # note-seq's encode_event message for the first such event
            bad = int(ev[outside[0]])
            if bad < min_note:
                raise ValueError("melody event less than min note: %d < %d" % (bad, min_note))
            raise ValueError("melody event greater than max note: %d >= %d" % (bad, max_note))
    return ev


def _last_index(mask: np.ndarray) -> np.ndarray:
    """For each position, the index of the last True at or before it (-1 if none)."""
    return np.maximum.accumulate(np.where(mask, np.arange(mask.size), -1)) if mask.size else mask.astype(np.int64)


def _repeats(ev: np.ndarray, start: int, stop: int, distance: int) -> np.ndarray:
    """For positions start..stop-1: whether the event equals the one ``distance`` steps earlier."""
    out = np.zeros(max(stop - start, 0), dtype=bool)
    first = max(start, distance)
    if first < stop:
        out[first - start :] = ev[first:stop] == ev[first - distance : stop - distance]
    return out


_COUNTERS: dict[int, np.ndarray] = {}


def _counter(steps: int, bits: int) -> np.ndarray:
    """Binary counter inputs for steps 0..steps-1 (n = step + 1): +1 where bit i of n is set, else -1."""
    table = _COUNTERS.get(bits)
    if table is None or table.shape[0] < steps:
        n = np.arange(1, max(steps, 1024) + 1)
        table = _COUNTERS[bits] = np.where((n[:, None] >> np.arange(bits)) & 1, 1, -1).astype(np.int8)
    return table[:steps]


@lru_cache(maxsize=None)
def _one_hot_table(min_note: int) -> np.ndarray:
    table = np.r_[0, 1, np.arange(128) - min_note + 2]  # indexed by event + 2
    table.flags.writeable = False
    return table


def _one_hot_index(ev: np.ndarray, min_note: int) -> np.ndarray:
    """MelodyOneHotEncoding.encode_event: 0 = no event, 1 = note-off, 2 + pitch - min_note."""
    return _one_hot_table(min_note)[ev + 2]


def _one_hot(ev, config):
    index = _one_hot_index(ev, config.min_note)
    return index[:-1, None], None, index[1:]


def _lookback(ev, config):
    """LookbackEventSequenceEncoderDecoder: one-hot event, the next event one and two bars ago, a
    5-bit counter of the next step, whether the event repeats one/two bars ago."""
    steps = max(ev.size - 1, 0)
    nc = config.max_note - config.min_note + 2
    n_back = len(LOOKBACK_DISTANCES)
    index = _one_hot_index(ev, config.min_note)
    cols = np.empty((steps, 1 + n_back + LOOKBACK_COUNTER_BITS + n_back), dtype=np.int64)
    vals = np.ones(cols.shape, dtype=np.int8)
    cols[:, 0] = index[:steps]
    for i, distance in enumerate(LOOKBACK_DISTANCES):  # next event one lookback ago (default: no event)
        cols[:, 1 + i] = nc * (i + 1)
        cols[distance - 1 :, 1 + i] += index[: max(steps - distance + 1, 0)]
    c, offset = 1 + n_back, nc * (n_back + 1)
    cols[:, c : c + LOOKBACK_COUNTER_BITS] = offset + np.arange(LOOKBACK_COUNTER_BITS)
    vals[:, c : c + LOOKBACK_COUNTER_BITS] = _counter(steps, LOOKBACK_COUNTER_BITS)
    c, offset = c + LOOKBACK_COUNTER_BITS, offset + LOOKBACK_COUNTER_BITS
    for i, distance in enumerate(LOOKBACK_DISTANCES):  # current event repeats one lookback ago
        cols[:, c + i] = offset + i
        vals[:, c + i] = _repeats(ev, 0, steps, distance)

    labels = index[1:].copy()
    for i, distance in enumerate(LOOKBACK_DISTANCES):  # later (longer) lookbacks take precedence
        labels[_repeats(ev, 1, ev.size, distance)] = nc + i
    # A no-event at a position before the longest lookback is labelled as repeating that lookback.
    early = labels[: LOOKBACK_DISTANCES[-1] - 1]
    early[ev[1 : LOOKBACK_DISTANCES[-1]] == MELODY_NO_EVENT] = nc + n_back - 1
    return cols, vals, labels


def _key_flags(pitch_class_counts: np.ndarray) -> np.ndarray:
    """Per row, which of the 12 major keys hold the most of the counted notes (all of them on ties)."""
    histogram = pitch_class_counts @ KEY_MATRIX
    return histogram == histogram.max(axis=1, keepdims=True)


def _key_melody(ev, config):
    """KeyMelodyEncoderDecoder: sounding pitch, note/silence, attack, direction, repeats one/two bars
    ago, a 7-bit counter, start of bar, best keys so far, best keys of the last three pitches."""
    length = ev.size
    steps = max(length - 1, 0)
    note_range = config.max_note - config.min_note
    is_note = ev >= 0
    note_pos = np.flatnonzero(is_note)
    pitches = ev[note_pos]

    # Current note: the last event other than no-event, if it is a note-on (pitch 0 counts as silence,
    # as note-seq tests `if current_note:`).
    last = _last_index(ev != MELODY_NO_EVENT)
    current = np.where(last >= 0, ev[last], -1)
    playing = current > 0
    # Attack: the last event other than note-off is a note-on.
    last = _last_index(ev != MELODY_NOTE_OFF)
    attack = (last >= 0) & (ev[last] >= 0)
    # Direction of the last note-on that differed in pitch from the note-on before it.
    direction = np.zeros(length, dtype=np.int8)
    direction[note_pos[1:]] = np.sign(pitches[1:] - pitches[:-1])
    last = _last_index(direction != 0)
    ascending = np.where(last >= 0, direction[last], 0).astype(np.int8)

    # Key of everything so far: running pitch-class counts.
    counts = np.zeros((length, NOTES_PER_OCTAVE), dtype=np.int64)
    counts[note_pos, pitches % NOTES_PER_OCTAVE] = 1
    keys_all = _key_flags(np.cumsum(counts, axis=0))
    keys_recent = _recent_pitch_keys(pitches, is_note, length)
    cols, vals = _key_melody_inputs(ev, config, steps, playing, current, attack, ascending, keys_all, keys_recent)
    labels = _lookback_labels(ev, length, config.min_note, note_range)
    return cols, vals, labels


def _recent_pitch_keys(pitches: np.ndarray, is_note: np.ndarray, length: int) -> np.ndarray:
    """Per step, the best keys of the three most recently used pitches (all keys before any note)."""
    # Key of the last three distinct pitches (note-seq's deque(maxlen=3) with move-to-end on repeats,
    # i.e. the three most recently used pitches).  Over runs of equal pitches R: the latest is R[r],
    # the one before is R[r-1], and the third is R[k] for the last k <= r-2 with R[k] != R[k+2]
    # (until then the runs alternate between the first two).
    new_run = np.ones(pitches.size, dtype=bool)
    new_run[1:] = pitches[1:] != pitches[:-1]
    runs = pitches[new_run]
    n_runs = runs.size
    recent = np.zeros((n_runs, NOTES_PER_OCTAVE), dtype=np.int64)
    r = np.arange(n_runs)
    recent[r, runs % NOTES_PER_OCTAVE] += 1
    recent[r[1:], runs[:-1] % NOTES_PER_OCTAVE] += 1
    if n_runs > 2:
        third = _last_index(runs[:-2] != runs[2:])  # indexed by r - 2
        has = third >= 0
        recent[r[2:][has], runs[third[has]] % NOTES_PER_OCTAVE] += 1
    keys_recent_runs = _key_flags(recent)
    note_ordinal = np.cumsum(is_note) - 1
    run_of_note = np.cumsum(new_run) - 1
    keys_recent = np.ones((length, NOTES_PER_OCTAVE), dtype=bool)  # no notes yet: every key ties at 0
    seen = note_ordinal >= 0
    keys_recent[seen] = keys_recent_runs[run_of_note[note_ordinal[seen]]]
    return keys_recent


def _key_melody_inputs(ev, config, steps, playing, current, attack, ascending, keys_all, keys_recent):
    """The non-zero input positions (``cols``) and values of every step of the key-melody encoding."""
    min_note, note_range = config.min_note, config.max_note - config.min_note
    p = np.arange(steps)
    offset_attack = note_range + 2
    offset_counter = offset_attack + 2 + len(LOOKBACK_DISTANCES)
    offset_bar = offset_counter + KEY_MELODY_COUNTER_BITS
    offset_keys = offset_bar + 1
    cols = np.empty((steps, 2 + 2 + len(LOOKBACK_DISTANCES) + KEY_MELODY_COUNTER_BITS + 1 + 24), dtype=np.int64)
    vals = np.zeros(cols.shape, dtype=np.int8)
    cols[:, 0] = np.where(playing[:steps], current[:steps] - min_note, 0)
    vals[:, 0] = playing[:steps]
    cols[:, 1] = np.where(playing[:steps], note_range, note_range + 1)
    vals[:, 1] = 1
    cols[:, 2] = offset_attack
    vals[:, 2] = attack[:steps]
    cols[:, 3] = offset_attack + 1
    vals[:, 3] = ascending[:steps]
    c = 4
    for i, distance in enumerate(LOOKBACK_DISTANCES):
        cols[:, c] = offset_attack + 2 + i
        vals[:, c] = _repeats(ev, 0, steps, distance)
        c += 1
    cols[:, c : c + KEY_MELODY_COUNTER_BITS] = offset_counter + np.arange(KEY_MELODY_COUNTER_BITS)
    vals[:, c : c + KEY_MELODY_COUNTER_BITS] = _counter(steps, KEY_MELODY_COUNTER_BITS)
    c += KEY_MELODY_COUNTER_BITS
    cols[:, c] = offset_bar
    vals[:, c] = (p + 1) % STEPS_PER_BAR == 0
    c += 1
    cols[:, c:] = offset_keys + np.arange(24)
    vals[:, c : c + 12] = keys_all[:steps]
    vals[:, c + 12 :] = keys_recent[:steps]
    return cols, vals


def _lookback_labels(ev: np.ndarray, length: int, min_note: int, note_range: int) -> np.ndarray:
    """Class labels with lookback classes (a repeat of one or two bars ago wins over the event itself)."""
    nxt = ev[1:]
    labels = np.where(nxt >= 0, nxt - min_note, np.where(nxt == MELODY_NOTE_OFF, note_range + 1, note_range))
    for i, distance in enumerate(LOOKBACK_DISTANCES):  # later (longer) lookbacks take precedence
        labels[_repeats(ev, 1, length, distance)] = note_range + 2 + i
    early = labels[: LOOKBACK_DISTANCES[-1] - 1]  # no-events before the longest lookback: as above
    early[nxt[: LOOKBACK_DISTANCES[-1] - 1] == MELODY_NO_EVENT] = note_range + len(LOOKBACK_DISTANCES) + 1
    return labels


def input_size(config: MelodyConfig) -> int:
    """``config.input_size`` without building note-seq's encoder (importing note-seq takes seconds)."""
    one_hot = config.max_note - config.min_note + 2
    if config.encoding == "one_hot":
        return one_hot
    if config.encoding == "lookback":
        return one_hot * (1 + len(LOOKBACK_DISTANCES)) + LOOKBACK_COUNTER_BITS + len(LOOKBACK_DISTANCES)
    return (config.max_note - config.min_note + 2 + 1 + 1 + len(LOOKBACK_DISTANCES) + KEY_MELODY_COUNTER_BITS
            + 1 + 2 * NOTES_PER_OCTAVE)


def num_classes(config: MelodyConfig) -> int:
    """``config.num_classes`` without building note-seq's encoder: the melody events, plus a class per
    lookback distance for the lookback and key-melody encodings."""
    events = config.max_note - config.min_note + 2
    return events if config.encoding == "one_hot" else events + len(LOOKBACK_DISTANCES)


_ENCODERS = {"one_hot": _one_hot, "lookback": _lookback, "key_melody": _key_melody}


def encode(ev: np.ndarray, config: MelodyConfig) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Inputs and labels of a melody squashed by :func:`squashed_events` for the same config.

    Returns ``(cols, vals, labels)``: ``cols``/``vals`` are ``[T, K]`` with step t's non-zero inputs at
    ``cols[t][vals[t] != 0]`` (strictly increasing), values in {-1, 1}; ``vals`` None means every entry
    is 1.  ``labels`` is ``[T]``; T = len(ev) - 1 (0 for an empty melody).
    """
    return _ENCODERS[config.encoding](ev, config)
