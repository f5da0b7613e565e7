"""MIDI ticks → seconds with pretty_midi's float64 tempo-map arithmetic (compiled)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def tempo_map(division, tempo_ticks, tempo_values):
    """pretty_midi's ``_tick_scales`` and the time at which each starts (its float64 ops, in order)."""
    starts = np.zeros(len(tempo_ticks) + 1, np.int64)
    scales = np.zeros(len(tempo_ticks) + 1, np.float64)
    scales[0] = 60.0 / (120.0 * division)
    n = 1
    for i in range(len(tempo_ticks)):
        if tempo_ticks[i] == 0:
            bpm = 6e7 / tempo_values[i]
            scales[0] = 60.0 / (bpm * division)
            n = 1
        else:
            scale = 60.0 / ((6e7 / tempo_values[i]) * division)
            if scale != scales[n - 1]:
                starts[n] = tempo_ticks[i]
                scales[n] = scale
                n += 1
    offsets = np.zeros(n, np.float64)
    for i in range(1, n):  # ``last_end_time + tick_scale * ticks``, segment by segment
        offsets[i] = offsets[i - 1] + scales[i - 1] * np.float64(starts[i] - starts[i - 1])
    return starts[:n], scales[:n], offsets


@njit(cache=True)
def ticks_to_seconds(ticks, starts, scales, offsets):
    out = np.empty(len(ticks), np.float64)
    for j in range(len(ticks)):
        tick = ticks[j]
        lo, hi = 0, len(starts)
        while hi - lo > 1:  # the last tempo segment starting at or before ``tick``
            mid = (lo + hi) // 2
            if starts[mid] <= tick:
                lo = mid
            else:
                hi = mid
        out[j] = offsets[lo] + scales[lo] * np.float64(tick - starts[lo])
    return out
