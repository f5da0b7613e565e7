"""The longest stretch of a melody that also occurs in a training melody, from a hashed n-gram index.

**Tokens.** A melody becomes one token per event that is not ``-2``: a note start is coded by its
interval from the previous note start (the melody's first note by a code of its own), a note-off as
such, each with its *hold*, the steps until the next event. So a copy is found in any key (Magenta's
datasets transpose melodies, judged files may not be), and a note held for two bars is one token, not
32. A leading rest makes no token. A run of matching tokens covers the steps from its first token to
the end of its last one's hold; that is the span's length in steps.

**Index.** The training melodies' tokens form one stream, a separator after each melody, with a
polynomial rolling hash (mod 2^64) over it. Every n-gram of ``n = 1 … anchor`` tokens lying inside one
melody goes into a sorted table
of its mixed hash with the low bits replaced by its position (one ``np.sort``, no argsort), with a
directory on the top bits. To learn whether a query window of ``L > anchor`` tokens occurs in a
training melody, its rarest anchor-gram is looked up; each occurrence gives one candidate alignment,
checked by comparing the window's hash with the stream's (prefix hashes make that O(1); a window
across a separator never matches, since queries have none); a window with an anchor-gram that occurs
nowhere fails at once. The longest match starting at each query token
(its *matching statistic*) is found left to right; since it shrinks by at most one token per
position, a query of T tokens needs at most 2T window checks, and no melody is compared with another.
A hash collision could report a false match; the odds per lookup are about the number of n-grams over
2^(64 - position bits), around 1e-7 for a million training tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

ANCHOR = 4
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, so powers never vanish mod 2**64
_OFF, _FIRST, _HOLD_CAP = 0, 256, 4095
_SEPARATOR = 0  # between melodies in the training stream; every token is at least 1


@dataclass(frozen=True)
class CopySpan:
    """A judged melody's longest copied span: its length and where it is, in both melodies."""

    steps: int
    start_step: int
    reference: int  # index of the training melody (-1 when nothing matched)
    reference_step: int


@njit(cache=True)
def _tokens_many(events, offsets, starts):
    """Tokens, step positions and holds of every melody ``events[offsets[i]:offsets[i + 1]]`` from step
    ``starts[i]`` on, concatenated, with each melody's token offsets."""
    n = events.size
    tokens = np.empty(n, np.int64)
    pos = np.empty(n, np.int64)
    hold = np.empty(n, np.int64)
    token_offsets = np.zeros(offsets.size, np.int64)
    k = 0
    for m in range(offsets.size - 1):
        first, previous = k, -1
        for i in range(offsets[m], offsets[m + 1]):
            e = events[i]
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
            if i - offsets[m] >= starts[m]:
                tokens[k] = code
                pos[k] = i - offsets[m]
                k += 1
        length = offsets[m + 1] - offsets[m]
        for j in range(first, k):
            hold[j] = (pos[j + 1] if j + 1 < k else length) - pos[j]
            tokens[j] = tokens[j] * (_HOLD_CAP + 1) + min(hold[j], _HOLD_CAP) + 1
        token_offsets[m + 1] = k
    return tokens[:k], pos[:k], hold[:k], token_offsets


def _concatenated(melodies: Sequence) -> tuple[np.ndarray, np.ndarray]:
    arrays = [np.asarray(m, dtype=np.int64).ravel() for m in melodies]
    offsets = np.concatenate(([0], np.cumsum([a.size for a in arrays]))).astype(np.int64)
    return (np.concatenate(arrays) if arrays else np.zeros(0, np.int64)), offsets


def tokens_of(events, start_step: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tokens, step of each token, hold of each token)`` of a melody, from ``start_step`` on."""
    ev, offsets = _concatenated([events])
    tokens, pos, hold, _ = _tokens_many(ev, offsets, np.array([start_step], dtype=np.int64))
    return tokens, pos, hold


@njit(cache=True)
def _prefix_hashes(tokens):
    """``h[i] = hash(tokens[:i])``: the window [i, i + L) hashes to ``h[i + L] - h[i]·B^L`` (mod 2^64),
    whatever precedes it, so one array serves every melody of a concatenated stream."""
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
def _mix(x):
    """splitmix64's finalizer: a bijection that spreads every input bit over the high bits, which the
    tables key on (a polynomial hash keeps its last token in the low bits)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True)
def _packed_grams(h, powers, tokens, length, bits):
    """Every ``length``-gram without a separator as its mixed hash with the low ``bits`` replaced by the
    gram's start: sorting these keeps each gram's position without an argsort."""
    n = tokens.size
    out = np.empty(n, np.uint64)
    low = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    k = 0
    run = 0  # tokens since the last separator
    for end in range(n):
        run = 0 if tokens[end] == _SEPARATOR else run + 1
        if run >= length:
            i = end - length + 1
            out[k] = (_mix(_window_hash(h, powers, i, length)) & ~low) | np.uint64(i)
            k += 1
    return out[:k]


@njit(cache=True)
def _bucket(table, directory, value, bits, shift):
    """Index range of ``table`` (sorted packed grams) of the window hashing to ``value``: entries whose
    mixed hash has the same high bits. The directory (first index per top ``64 - shift`` bits) narrows
    the binary search to a few entries."""
    low = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    mixed = _mix(value)
    key = mixed & ~low
    top = np.int64(mixed >> np.uint64(shift))
    a, b = directory[top], directory[top + 1]
    part = table[a:b]
    return a + np.searchsorted(part, key), a + np.searchsorted(part, key | low, side="right")


def _directory(table: np.ndarray, shift: int) -> np.ndarray:
    counts = np.bincount((table >> np.uint64(shift)).astype(np.int64), minlength=1 << (64 - shift))
    return np.concatenate(([0], np.cumsum(counts))).astype(np.int32)


@njit(cache=True)
def _window_found(qh, powers, p, length, tables, dirs, counts, firsts, rh, anchor, bits, shift):
    """Where the query window [p, p + length) occurs in the training stream (its start), or -1. A window
    across two training melodies contains a separator, which no query has, so it never matches."""
    if length == anchor:
        return firsts[p] if counts[p] > 0 else -1
    target = _window_hash(qh, powers, p, length)
    low = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    if length < anchor:
        # Short windows are looked up by the hash's high 64 - bits bits alone (43 for a million tokens: a
        # false hit has odds of about grams / 2^43, 1e-7); checking the full hash would cost two cache
        # misses per lookup, the largest cost of a query.
        table = tables[length - 1]
        lo, hi = _bucket(table, dirs[length - 1], target, bits, shift)
        return np.int64(table[lo] & low) if lo < hi else -1
    best, best_count = -1, np.int64(1) << 62
    for a in range(p, p + length - anchor + 1):  # the rarest anchor-gram of the window
        if counts[a] < best_count:
            best, best_count = a, counts[a]
            if best_count == 0:
                return -1
    table = tables[anchor - 1]
    lo, hi = _bucket(table, dirs[anchor - 1], _window_hash(qh, powers, best, anchor), bits, shift)
    stream = rh.size - 1
    for k in range(lo, hi):
        start = np.int64(table[k] & low) - (best - p)
        if start >= 0 and start + length <= stream and _window_hash(rh, powers, start, length) == target:
            return start
    return -1


@njit(cache=True)
def _longest_match(tokens, pos, hold, qh, powers, tables, dirs, rh, anchor, bits, shift):
    """``(steps, query token, reference stream position)`` of one query's longest copied span."""
    n = tokens.size
    low = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    counts = np.zeros(n, np.int64)
    firsts = np.full(n, -1, np.int64)
    table = tables[anchor - 1]
    for a in range(n - anchor + 1):  # occurrences of every anchor-gram of the query, and where one is
        lo, hi = _bucket(table, dirs[anchor - 1], _window_hash(qh, powers, a, anchor), bits, shift)
        counts[a] = hi - lo
        if hi > lo:
            firsts[a] = np.int64(table[lo] & low)
    best_steps, best_p, best_ref = 0, -1, -1
    m, ref = 0, -1
    for p in range(n):
        if m > 0:  # the match at p - 1, less its first token, still matches here
            m -= 1
            ref += 1
        while p + m < n:
            found = _window_found(qh, powers, p, m + 1, tables, dirs, counts, firsts, rh, anchor, bits, shift)
            if found < 0:
                break
            m += 1
            ref = found
        if m > 0:
            steps = pos[p + m - 1] + hold[p + m - 1] - pos[p]
            if steps > best_steps:
                best_steps, best_p, best_ref = steps, p, ref
    return best_steps, best_p, best_ref


@njit(cache=True)
def _longest_matches(tokens, pos, hold, offsets, powers, tables, dirs, rh, anchor, bits, shift):
    """:func:`_longest_match` for every query melody of a concatenated batch."""
    queries = offsets.size - 1
    steps = np.zeros(queries, np.int64)
    first = np.full(queries, -1, np.int64)
    ref = np.full(queries, -1, np.int64)
    qh = _prefix_hashes(tokens)
    for q in range(queries):
        a, b = offsets[q], offsets[q + 1]
        if b > a:
            s, p, r = _longest_match(tokens[a:b], pos[a:b], hold[a:b], qh[a:b + 1], powers, tables, dirs, rh,
                                     anchor, bits, shift)
            steps[q], first[q], ref[q] = s, (a + p if p >= 0 else -1), r
    return steps, first, ref


class CopyIndex:
    """Hashed n-gram index over training melodies; :meth:`longest_copy` queries it."""

    def __init__(self, melodies: Sequence, anchor: int = ANCHOR):
        self.anchor = anchor
        events, offsets = _concatenated(melodies)
        tokens, steps, _, token_offsets = _tokens_many(events, offsets, np.zeros(len(melodies), np.int64))
        self.count = len(melodies)
        # One stream: each melody's tokens, then a separator, so no match runs from one into the next.
        sizes = np.diff(token_offsets)
        at = token_offsets[:-1] + np.arange(len(melodies))  # where each melody starts in the stream
        inside = np.repeat(at, sizes) + (np.arange(tokens.size) - np.repeat(token_offsets[:-1], sizes))
        self.tokens = np.full(tokens.size + len(melodies), _SEPARATOR, np.int64)
        self.tokens[inside] = tokens
        self.steps = np.full(self.tokens.size, -1, np.int64)
        self.steps[inside] = steps
        self.melody_of = np.full(self.tokens.size, -1, np.int64)
        self.melody_of[inside] = np.repeat(np.arange(len(melodies)), sizes)
        self.hashes = _prefix_hashes(self.tokens)
        self.powers = _powers(max(self.tokens.size, 1) + 1)
        self.bits = max(int(self.tokens.size).bit_length(), 1)  # low hash bits that hold a gram's start
        # Sorted packed grams of every length 1..anchor: presence tables and the anchor index.
        self.tables = tuple(np.sort(_packed_grams(self.hashes, self.powers, self.tokens, length, self.bits))
                            for length in range(1, anchor + 1))
        # A directory entry per about four grams (at most 4M): small enough to stay in cache.
        self.shift = 64 - min(max(self.bits - 2, 1), 22)
        self.dirs = tuple(_directory(t, self.shift) for t in self.tables)

    def __len__(self) -> int:
        return self.count

    def longest_copy(self, events, start_step: int = 0) -> CopySpan:
        """The longest span of ``events`` (from ``start_step`` on) found in one training melody."""
        return self.longest_copies([events], [start_step])[0]

    def longest_copies(self, melodies: Sequence, start_steps: Sequence[int] | None = None) -> list[CopySpan]:
        """:meth:`longest_copy` of each melody, in one compiled pass."""
        starts = np.asarray(start_steps if start_steps is not None else [0] * len(melodies), dtype=np.int64)
        events, offsets = _concatenated(melodies)
        tokens, pos, hold, token_offsets = _tokens_many(events, offsets, starts)
        if not self.count or not tokens.size:
            return [CopySpan(0, int(s), -1, 0) for s in starts]
        longest = int(np.diff(token_offsets).max())
        powers = self.powers if self.powers.size > longest + 1 else _powers(longest + 1)
        steps, first, ref = _longest_matches(tokens, pos, hold, token_offsets, powers, self.tables, self.dirs,
                                             self.hashes, self.anchor, self.bits, self.shift)
        return [CopySpan(int(steps[i]), int(pos[first[i]]), int(self.melody_of[ref[i]]), int(self.steps[ref[i]]))
                if first[i] >= 0 else CopySpan(0, int(starts[i]), -1, 0) for i in range(len(starts))]
