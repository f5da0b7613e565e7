"""The longest stretch of a melody that also occurs in a training melody, from a hashed n-gram index.

**Tokens.** A melody becomes one token per event that is not ``-2``: a note start is coded by its
interval from the previous note start (the melody's first note by a code of its own), a note-off as
such, each with its *hold*, the steps until the next event. So a copy is found in any key (Magenta's
datasets transpose melodies, judged files may not be), and a note held for two bars is one token, not
32. A leading rest makes no token. A run of matching tokens covers the steps from its first token to
the end of its last one's hold; that is the span's length in steps.

**Index.** Every training melody's tokens are hashed with a polynomial rolling hash (mod 2^64); the
hashes of all n-grams of ``n = 1 … anchor`` tokens are kept in sorted arrays, the anchor-grams with
their positions. To learn whether a query's window of ``L > anchor`` tokens occurs in the training
set, the window's rarest anchor-gram is looked up; each of its occurrences gives one candidate
alignment, checked by comparing the window's hash with the training stream's (prefix hashes make that
O(1)). A window with an anchor-gram that occurs nowhere fails at once. The longest match starting at
each query token (its *matching statistic*) is found left to right; since it shrinks by at most one
token per position, a query of T tokens needs at most 2T window checks — no pairwise comparison of
melodies. A 64-bit hash collision could report a false match; with melodies of at most a few thousand
tokens the chance is negligible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

ANCHOR = 4
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, so powers never vanish mod 2**64
_OFF, _FIRST, _HOLD_CAP = 0, 256, 4095


@dataclass(frozen=True)
class CopySpan:
    """A judged melody's longest copied span: its length and where it is, in both melodies."""

    steps: int
    start_step: int
    reference: int  # index of the training melody (-1 when nothing matched)
    reference_step: int


@njit(cache=True)
def _tokens_kernel(ev, start):
    """Tokens, their step positions and holds for events ``ev``; only tokens at steps >= start."""
    n = ev.size
    tokens = np.empty(n, np.int64)
    pos = np.empty(n, np.int64)
    hold = np.empty(n, np.int64)
    k = 0
    previous = -1
    for i in range(n):
        e = ev[i]
        if e == -2:
            continue
        if e == -1:
            code = _OFF
        elif previous < 0:
            code = _FIRST
        else:
            code = e - previous + 128
        if e >= 0:
            previous = e
        if i >= start:
            tokens[k] = code
            pos[k] = i
            k += 1
    for j in range(k):
        hold[j] = (pos[j + 1] if j + 1 < k else n) - pos[j]
        tokens[j] = tokens[j] * (_HOLD_CAP + 1) + min(hold[j], _HOLD_CAP) + 1
    return tokens[:k], pos[:k], hold[:k]


def tokens_of(events, start_step: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tokens, step of each token, hold of each token)`` of a melody, from ``start_step`` on."""
    return _tokens_kernel(np.asarray(events, dtype=np.int64).ravel(), int(start_step))


@njit(cache=True)
def _prefix_hashes(tokens):
    h = np.zeros(tokens.size + 1, np.uint64)
    for i in range(tokens.size):
        h[i + 1] = h[i] * _BASE + np.uint64(tokens[i])
    return h


@njit(cache=True)
def _powers(n):
    p = np.ones(n + 1, np.uint64)
    for i in range(n):
        p[i + 1] = p[i] * _BASE
    return p


@njit(cache=True)
def _window_hash(h, powers, i, length):
    return h[i + length] - h[i] * powers[length]


@njit(cache=True)
def _gram_hashes(h, powers, melody_end, length):
    """Hash and start of every ``length``-gram lying inside one melody of the stream."""
    n = h.size - 1
    out = np.empty(n, np.uint64)
    starts = np.empty(n, np.int64)
    k = 0
    for i in range(n - length + 1):
        if i + length <= melody_end[i]:
            out[k] = _window_hash(h, powers, i, length)
            starts[k] = i
            k += 1
    return out[:k], starts[:k]


@njit(cache=True)
def _count(sorted_hashes, value):
    return np.searchsorted(sorted_hashes, value, side="right") - np.searchsorted(sorted_hashes, value)


@njit(cache=True)
def _window_found(qh, powers, p, length, small, small_starts, counts, rh, melody_start, melody_end, anchor):
    """Where the query window [p, p + length) occurs inside one training melody (stream position), or -1."""
    target = _window_hash(qh, powers, p, length)
    if length <= anchor:
        table = small[length - 1]
        i = np.searchsorted(table, target)
        return small_starts[length - 1][i] if i < table.size and table[i] == target else -1
    anchor_sorted, anchor_starts = small[anchor - 1], small_starts[anchor - 1]
    best, best_count = -1, np.int64(1) << 62
    for a in range(p, p + length - anchor + 1):
        if counts[a] < best_count:
            best, best_count = a, counts[a]
            if best_count == 0:
                return -1
    gram = _window_hash(qh, powers, best, anchor)
    first = np.searchsorted(anchor_sorted, gram)
    for k in range(first, first + best_count):
        start = anchor_starts[k] - (best - p)
        if start < melody_start[anchor_starts[k]] or start + length > melody_end[anchor_starts[k]]:
            continue
        if _window_hash(rh, powers, start, length) == target:
            return start
    return -1


@njit(cache=True)
def _longest_match(tokens, pos, hold, small, small_starts, rh, powers, melody_start, melody_end, anchor):
    """``(steps, query token, reference stream position)`` of the longest copied span (in steps)."""
    n = tokens.size
    qh = _prefix_hashes(tokens)
    counts = np.zeros(n, np.int64)
    for a in range(n - anchor + 1):
        counts[a] = _count(small[anchor - 1], _window_hash(qh, powers, a, anchor))
    best_steps, best_p, best_ref = 0, -1, -1
    m, ref = 0, -1
    for p in range(n):
        if m > 0:  # the match at p - 1, less its first token, still matches here
            m -= 1
            ref += 1
        while p + m < n:
            found = _window_found(qh, powers, p, m + 1, small, small_starts, counts, rh, melody_start,
                                  melody_end, anchor)
            if found < 0:
                break
            m += 1
            ref = found
        if m > 0:
            steps = pos[p + m - 1] + hold[p + m - 1] - pos[p]
            if steps > best_steps:
                best_steps, best_p, best_ref = steps, p, ref
    return best_steps, best_p, best_ref


class CopyIndex:
    """Hashed n-gram index over training melodies; :meth:`longest_copy` queries it."""

    def __init__(self, melodies: Sequence, anchor: int = ANCHOR):
        self.anchor = anchor
        streams = [tokens_of(m) for m in melodies]
        sizes = np.array([s[0].size for s in streams], dtype=np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(sizes)))
        self.tokens = np.concatenate([s[0] for s in streams]) if streams else np.zeros(0, np.int64)
        self.steps = np.concatenate([s[1] for s in streams]) if streams else np.zeros(0, np.int64)
        which = np.repeat(np.arange(len(streams)), sizes)
        self.melody_of = which
        self.melody_start = self.offsets[:-1][which] if which.size else np.zeros(0, np.int64)
        self.melody_end = self.offsets[1:][which] if which.size else np.zeros(0, np.int64)
        self.hashes = _prefix_hashes(self.tokens)
        self.powers = _powers(max(self.tokens.size, 1) + 1)
        small, small_starts = [], []
        for length in range(1, anchor + 1):  # sorted hashes of every 1..anchor-gram, with their positions
            grams, starts = _gram_hashes(self.hashes, self.powers, self.melody_end, length)
            order = np.argsort(grams, kind="stable")
            small.append(grams[order])
            small_starts.append(starts[order])
        self.small, self.small_starts = tuple(small), tuple(small_starts)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def longest_copy(self, events, start_step: int = 0) -> CopySpan:
        """The longest span of ``events`` (from ``start_step`` on) found in one training melody."""
        tokens, pos, hold = tokens_of(events, start_step)
        if not tokens.size or not self.tokens.size:
            return CopySpan(0, start_step, -1, 0)
        powers = self.powers if self.powers.size > tokens.size + 1 else _powers(tokens.size + 1)
        steps, p, ref = _longest_match(tokens, pos, hold, self.small, self.small_starts, self.hashes, powers,
                                       self.melody_start, self.melody_end, self.anchor)
        if p < 0:
            return CopySpan(0, start_step, -1, 0)
        return CopySpan(int(steps), int(pos[p]), int(self.melody_of[ref]), int(self.steps[ref]))

    def longest_copies(self, melodies: Sequence, start_steps: Sequence[int] | None = None) -> list[CopySpan]:
        starts = start_steps if start_steps is not None else [0] * len(melodies)
        return [self.longest_copy(m, s) for m, s in zip(melodies, starts)]
