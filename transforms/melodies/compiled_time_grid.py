"""note-seq 0.0.5's split on time changes and quantization, replayed on note arrays with the same float64
operations in the same order, so every step index equals the reference's."""

from __future__ import annotations

import numpy as np
from numba import njit


DEFAULT_QPM = 120.0


# Beyond this, ``int(x * steps_per_second + 0.5)`` on float64 is no longer what int64 arithmetic gives.
MAX_EXACT_STEP = float(2**52)


def split_times(time_signatures, tempos, total_time):
    """``split_note_sequence_on_time_changes``' split times (skip_splits_inside_notes=False)."""
    numerator, denominator, qpm = 4, 4, DEFAULT_QPM
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


def distribute(events, splits):
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


def check_time_changes(time_signatures, tempos):
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
        if ordered[0][0] != 0 and ordered[0][1] != DEFAULT_QPM:
            return "sequences_discarded_because_multiple_tempos"
        qpm = tempos[0][1]
        for tempo in ordered[1:]:
            if tempo[1] != qpm:
                return "sequences_discarded_because_multiple_tempos"
    else:
        qpm = DEFAULT_QPM
    return numerator, denominator, qpm


# One compiled pass that places each note in its subsequence and quantizes it, in note-seq's order of
# float64 operations; kept whole so that order is visible in one place (longer than 80 lines).
@njit(cache=True)
def place_and_quantize(start, end, pitch, instrument, drum, splits, steps_per_second, quantize, limit,
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
